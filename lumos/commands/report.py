"""Report commands: the paper's tables and figures from the evaluation outputs."""

from __future__ import annotations

from pathlib import Path

from lumos.commands import setup

FIGURES = ["fig2a", "figS1", "fig2b", "fig8", "fig11", "fig11b"]
ABLATION_FIGURES = ["fig9", "fig10", "fig2c", "figS2", "figS3", "figG1"]


def _write_table(df, csv: str, md: str, markdown: str) -> None:
    """A table as CSV and Markdown (folders created), echoed to the log."""
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv, index=False)
    Path(md).write_text(markdown)
    print(df.to_string(index=False))


def cmd_table1(args):
    """Write Table 1 (CSV + Markdown) and the eval | Lumos-I2I | RCG sample grid."""
    from lumos.data.shards import read_images
    from lumos.report.table1 import build_table1, to_markdown, write_grid
    from lumos.sample import read_pngs

    cfg, _ = setup(args)
    df = build_table1(args.fid, cfg["preset"])
    _write_table(df, args.csv, args.md, to_markdown(df, args.splits))
    n = cfg["eval.grid_images"]
    cols = dict(kv.split("=", 1) for kv in args.grid_samples)
    write_grid(read_images(args.grid_data, n), {k: read_pngs(v, n) for k, v in cols.items()}, args.grid, n)


def cmd_table2(args):
    """Write Table 2 (T2I FID, short vs long captions) as CSV + Markdown."""
    from lumos.report.table2 import build_table2, to_markdown

    cfg, _ = setup(args)
    df = build_table2(args.short, args.long, args.untrained, args.real, args.summary, cfg["preset"], args.released)
    _write_table(df, args.csv, args.md, to_markdown(df, cfg.get("released.t2i_sample"), args.splits))


def cmd_table3(args):
    """Write Table 3 (GenEval + DPG-Bench) as CSV + Markdown."""
    from lumos.report.table3 import build_table3, to_markdown

    cfg, _ = setup(args)
    measured = {}
    for item in args.row:  # LABEL=GENEVAL_JSON,DPG_JSON[,MODEL_DIR]
        label, paths = item.split("=", 1)
        parts = paths.split(",")
        measured[label] = (parts[0], parts[1], parts[2] if len(parts) > 2 else None)
    df = build_table3(measured, cfg["preset"])
    source = ("official GenEval", "official DPG-Bench") if args.official else ("Shapes-world analogue",) * 2
    _write_table(df, args.csv, args.md, to_markdown(df, *source, cfg.get("released.t2i_sample")))


def cmd_figure(args):
    """Write one of the T2I figures (PNG + CSV) from metric json files."""
    from lumos.report.figures import build_figure

    setup(args)
    runs = dict(kv.split("=", 1) for kv in args.runs)
    print(build_figure(args.figure, args.metrics, runs, args.png, args.csv).to_string(index=False))


def cmd_fig12(args):
    """Figure 12 (PNG + CSV): I2I FID against condition dropout (a) and guidance scale (b)."""
    from lumos.report.figures import build_fig12

    setup(args)
    dropout = {int(k): v for k, v in (kv.split("=", 1) for kv in args.dropout)}
    guidance = {float(k): v for k, v in (kv.split("=", 1) for kv in args.guidance)}
    print(build_fig12(dropout, guidance, args.png, args.csv).to_string(index=False))


def cmd_ablation_figure(args):
    """An ablation figure (9, 10, 2c, S2, S3; PNG + CSV) from FID files given as LABEL=STEP:FILE."""
    from lumos.report.figures import build_ablation_figure

    setup(args)

    def points(items):
        out = []
        for item in items:
            label, rest = item.rsplit("=", 1)
            step, path = rest.split(":", 1)
            out.append((label, int(step), path))
        return out

    print(build_ablation_figure(args.figure, points(args.i2i), points(args.t2i), args.png, args.csv).to_string(index=False))


def cmd_interpolate(args):
    """Figure S7: interpolation strips between pairs of evaluation images (PNG + CSV)."""
    import pandas as pd

    from lumos.components.encoders import load_encoder
    from lumos.components.vae import load_vae
    from lumos.data.shards import read_images
    from lumos.features import read_features
    from lumos.interpolate import interpolation_figure, save_strips
    from lumos.sample import load_model
    from lumos.settings import RunSettings

    cfg, device = setup(args)
    spec = cfg["pretrain.interpolation"]
    key = f"pretrain.runs.{spec['run']}"
    run = RunSettings.from_config(cfg[key], key)
    if run.injection not in ("cross_attn", "adaln") or run.tokens != "cls":
        raise SystemExit(f"error: interpolation needs a run conditioned on a CLS token ({key})")
    images = read_images(args.data)
    cls = read_features(args.features, [f"{run.encoder}_cls"])[f"{run.encoder}_cls"].astype("float32")
    model = load_model(args.model).to(device).eval()
    codec = load_vae(cfg["components.vae"], device)
    encoder = load_encoder(cfg[f"components.{run.encoder}"], run.encoder, device)
    rows, strips = interpolation_figure(model, codec, encoder, images, cls, run.injection, spec["points"],
                                        spec["pairs"], cfg["sample"], cfg["seed"], device)
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.insert(0, "source", "measured")
    df.to_csv(args.csv, index=False)
    save_strips(args.png, strips)
    print(df.to_string(index=False))


def cmd_job_benchmarks(args):
    """Gather the per-job benchmark files (wall time, memory) of a run into one CSV."""
    from lumos.report.benchmarks import collect

    df = collect(args.folder)
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.csv, index=False)
    print(f"{len(df)} benchmark records under {args.folder}")
    print(df.to_string(index=False))


def register(add):
    req = {"required": True}
    splits = ("the data splits the table rests on: a curated one short of its n is noted", {"nargs": "*", "default": []})
    add("table1", cmd_table1, fid=("FID json files", {"nargs": "+", "required": True}), csv=("output CSV", req),
        md=("output Markdown", req), grid=("output PNG grid", req), grid_data=("eval split folder", req),
        grid_samples=("NAME=FOLDER sample folders", {"nargs": "+", "required": True}), splits=splits)
    add("table2", cmd_table2, short=("FID json, short captions", req), long=("FID json, long captions", req),
        untrained=("FID json of the untrained model", req), real=("FID json of the real floor", req),
        summary=("train_summary.json of the fine-tune", req), csv=("output CSV", req), md=("output Markdown", req),
        released=("FID json of the released T2I model (config released.t2i; adds its row)", {"default": None}),
        splits=splits)
    add("table3", cmd_table3, row=("LABEL=GENEVAL_JSON,DPG_JSON[,MODEL_DIR]", {"nargs": "+", "required": True}),
        official=("the scores come from the official evaluators (paper preset)", {"action": "store_true"}),
        csv=("output CSV", req), md=("output Markdown", req))
    add("figure", cmd_figure, figure=("which figure", {"choices": FIGURES, "required": True}),
        metrics=("metric json files", {"nargs": "+", "required": True}),
        runs=("LABEL=FINETUNE pairs", {"nargs": "+", "required": True}), png=("output PNG", req),
        csv=("output CSV", req))
    add("fig12", cmd_fig12, dropout=("PERCENT=FID_JSON points of panel a", {"nargs": "+", "required": True}),
        guidance=("SCALE=FID_JSON points of panel b", {"nargs": "+", "required": True}), png=("output PNG", req),
        csv=("output CSV", req))
    add("ablation-figure", cmd_ablation_figure,
        figure=("which figure", {"required": True, "choices": ABLATION_FIGURES}),
        i2i=("LABEL=STEP:FID_JSON points of panel a (I2I FID per pretraining snapshot)", {"nargs": "*", "default": []}),
        t2i=("LABEL=STEP:FID_JSON points of panel b (T2I FID per fine-tuning snapshot)", {"nargs": "+", "required": True}),
        png=("output PNG", req), csv=("output CSV", req))
    add("job-benchmarks", cmd_job_benchmarks, config=False,
        folder=("folder of the rules' benchmark: files (<stage>/<job>.tsv)", req), csv=("output CSV", req))
    add("interpolate", cmd_interpolate, model=("the I2I prior's model folder", req),
        data=("evaluation split folder", req), features=("its features folder", req), png=("output PNG", req),
        csv=("output CSV", req))
