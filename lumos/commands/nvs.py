"""Novel view synthesis commands: rendered-view splits, Lumos-NVS fine-tuning, its evaluation, and
Table 4 / Figures 5 and 7."""

from __future__ import annotations

import json
from pathlib import Path

from lumos.commands import finish_training, optional_path, outputs_of, setup, state_folder, train_outputs

SPLIT_KINDS = {"nvs_train": "train", "nvs_test": "test"}
VIEWS = {"train": 32, "test": 33}  # views per object (lumos.data.worlds.shapes3d): 32 random; input + 2 x 16 azimuths


def cmd_views(args):
    """Build job `--part` of `--parts` of a rendered-views split: from the 3D Shapes world (one job),
    or imported from a folder of renders (`nvs.paths.<split>`, paper preset: many jobs)."""
    from lumos.data.worlds.shapes3d import build_views_split, import_views_folder

    cfg, _ = setup(args)
    kind = SPLIT_KINDS[args.split]
    path = (cfg.get("nvs.paths") or {}).get(args.split)
    common = dict(image_size=cfg["data.image_size"], shard_size=cfg["data.shard_size"])
    split = cfg[f"nvs.splits.{args.split}"]
    if path:
        import_views_folder(path, args.out, camera=cfg["nvs.camera"], kind=kind, limit=split["objects"],
                            views=split.get("views", VIEWS[kind]), part=args.part, parts=args.parts, **common)
    else:
        if args.parts != 1:
            raise SystemExit("error: a 3D Shapes-world split is rendered by one job (--parts 1)")
        build_views_split(args.split, split["objects"], kind, seed=cfg["seed"],
                          out_dir=args.out, **common)


def cmd_gather_views(args):
    """Join a rendered-views split's job folders: shards, index, import counts, contact sheet."""
    from lumos.data.worlds.shapes3d import gather_views
    from lumos.utils import setup_logging

    setup_logging()
    gather_views(args.parts, args.out)


def cmd_nvs_train(args):
    """Fine-tune Lumos-NVS from a prior (or from scratch) on a rendered-views split; resumable."""
    from lumos.tasks.nvs import finetune_nvs
    from lumos.settings import ModelSettings, TrainSettings

    cfg, device = setup(args, ("nvs.prediction_type",))
    train = TrainSettings.from_config(cfg["nvs.train"], "nvs.train")
    model = ModelSettings.from_config(cfg["pretrain.model"], "pretrain.model")
    snapshot_every = cfg.get("nvs.snapshot_every") if args.out_snapshots else None
    prediction_type = cfg["nvs.prediction_type"]
    finish_training(finetune_nvs(args.features, args.prior, args.prior_kind, cfg["nvs.encoder"], model, train,
                                 cfg["nvs.cond_dropout"], outputs_of(args), state_folder(args, cfg), cfg["seed"],
                                 device, stop_after=args.stop_after, snapshot_every=snapshot_every,
                                 prediction_type=prediction_type))


def cmd_nvs_decoder(args):
    """The VAE with its decoder fine-tuned on the first `nvs.decoder.images` training renders (the
    encoder frozen): what the NVS evaluation decodes views with, where `nvs.decoder` is set."""
    from lumos.components.vae import finetune_decoder, load_vae
    from lumos.data.shards import read_images

    cfg, device = setup(args)
    ft = cfg["nvs.decoder"]
    if not ft:
        raise SystemExit("error: nvs.decoder is not set (null: the evaluation decodes with components.vae as is)")
    vae = load_vae(cfg["components.vae"], device).vae
    summary = finetune_decoder(vae, read_images(args.data, limit=ft["images"]), ft, seed=cfg["seed"], device=device)
    vae.save_pretrained(args.out)
    summary["scaling_factor"] = vae.config.scaling_factor
    (Path(args.out) / "decoder_finetune.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


def cmd_nvs_eval(args):
    """Generate every target view of the test objects from their input view and score them
    (PSNR, SSIM, LPIPS); `--model input` scores the baseline that returns the input view."""
    from lumos.eval.image_similarity import LPIPS
    from lumos.tasks.nvs import evaluate_nvs

    cfg, device = setup(args)
    ev = cfg["nvs.eval"]
    metric, why = LPIPS.load(ev.get("lpips_alexnet"), device)
    if metric is None:
        print(f"LPIPS not computed: {why}")
    model = codec = None
    if args.model != "input":
        from lumos.components.loading import from_pretrained
        from lumos.components.vae import load_vae
        from lumos.models import LumosDiT

        codec = load_vae(cfg["components.vae"], device, folder=args.decoder)
        model = "vae" if args.model == "vae" else from_pretrained(LumosDiT, args.model, "Lumos-NVS model",
                                                                   "nvs (run the nvs_finetune rule)")
    summary = evaluate_nvs(model, codec, args.data, args.features, cfg["nvs.encoder"], args.out, cfg["sample"],
                           ev["guidance_scale"], cfg["seed"], device, objects=args.objects, lpips_metric=metric,
                           save_views=args.save_views)
    if args.model != "input":
        summary["decoder"] = "fine-tuned on the NVS training renders" if args.decoder else "the VAE's"
    if hasattr(model, "config"):  # a Lumos-NVS model, not a baseline
        summary["prediction_type"] = model.config.prediction_type
    summary_path = Path(args.out) / "summary.json"
    summary_path.write_text(json.dumps({**summary, "lpips_missing": why} if why else summary, indent=1))
    print(json.dumps(summary))


def _lpips_note(summaries) -> str:
    """The reason LPIPS is missing, as the evaluation recorded it ('' when computed)."""
    for path in summaries:
        why = json.loads(Path(path).read_text()).get("lpips_missing")
        if why:
            return f"not computed ({why})"
    return ""


def decoder_note(summary: dict) -> str:
    """What decoded the evaluated views, as the evaluation recorded it."""
    if summary.get("decoder", "").startswith("fine-tuned"):
        return ("the VAE with its decoder fine-tuned on the NVS training renders (nvs.decoder; the encoder, "
                "the latents and the priors unchanged)")
    return "the VAE (components.vae)"


def prediction_note(summary: dict) -> str:
    """What the evaluated Lumos-NVS model predicts, when it departs from the paper's epsilon (eq. S1)."""
    kind = summary.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return ""
    what = {"sample": "x0", "v_prediction": "v"}.get(kind, kind)
    return f" The fine-tunes predict {what} (nvs.prediction_type: {kind}), not the paper's epsilon (eq. S1)."


def cmd_table4(args):
    """Table 4 (CSV + Markdown): PSNR / SSIM / LPIPS at elevations 0 and 30 for each measured
    model and the baseline, beside the paper's reported rows."""
    from lumos.commands.report import _write_table
    from lumos.report.table4 import build_table4, table4_markdown

    cfg, _ = setup(args)
    measured = dict(kv.split("=", 1) for kv in args.rows)
    note = _lpips_note(measured.values())
    df = build_table4(measured, cfg["nvs.main"], cfg["nvs.priors"], cfg["preset"], note)
    summaries = {label: json.loads(Path(path).read_text()) for label, path in measured.items()}
    views = {k: v["views"] for k, v in next(iter(summaries.values())).items() if k.startswith("elev")}
    protocol = (f"measured on the held-out test objects: one input view each, its targets at 16 azimuths per "
                f"elevation ({', '.join(f'{n} at {k[4:]} deg' for k, n in views.items())} views), sampler "
                f"{cfg['sample']['sampler']} {cfg['sample']['steps']} steps, guidance "
                f"{cfg['nvs.eval']['guidance_scale']}; views decoded by "
                f"{decoder_note(summaries.get(cfg['nvs.main'], {}))}.{prediction_note(summaries.get(cfg['nvs.main'], {}))}")
    _write_table(df, args.csv, args.md, table4_markdown(df, protocol, note))


def cmd_fig5(args):
    """Figure 5 (PNG + CSV): the NVS metrics against fine-tuning steps, one line per prior."""
    from lumos.report.table4 import build_fig5

    setup(args)
    points: dict[str, dict[int, str]] = {}
    for item in args.points:  # LABEL:STEP=SUMMARY_JSON
        key, path = item.split("=", 1)
        label, step = key.rsplit(":", 1)
        points.setdefault(label, {})[int(step)] = path
    df = build_fig5(points, args.png, args.csv, _lpips_note(p for by in points.values() for p in by.values()))
    print(df.to_string(index=False))


def cmd_fig7(args):
    """Figure 7 (PNG): input | generated views | ground truth, for the first test objects."""
    from lumos.tasks.nvs import test_objects
    from lumos.report.table4 import build_fig7

    cfg, _ = setup(args)
    n = cfg["nvs.eval"]["figure_objects"]
    strips = sorted(Path(args.views).glob("object-*.png"))[:n]
    if not strips:
        raise FileNotFoundError(f"no object-*.png strips in {args.views}: evaluate with --save-views")
    truth = [images for _, images, _ in test_objects(args.data, len(strips))]
    build_fig7([str(s) for s in strips], truth, args.png)
    print(f"wrote {args.png} ({len(strips)} objects)")


def cmd_lgm_inputs(args):
    """LGM's input from the generated views of the first test objects: for each, the four views at
    elevation 0 and azimuths 0 / 90 / 180 / 270 degrees from the input view, resized to LGM's input
    size, with their cameras in LGM's convention (`lumos.tasks.lgm`)."""
    from lumos.tasks.lgm import prepare_lgm_inputs
    from lumos.utils import setup_logging

    setup_logging()
    summary = prepare_lgm_inputs(args.views, args.data, args.out, args.objects)
    print(json.dumps(summary))


def register(add):
    req = {"required": True}
    add("views", cmd_views, split=("rendered-views split", {"choices": sorted(SPLIT_KINDS), "required": True}),
        out=("output folder of this job", req), parallel=True)
    add("gather-views", cmd_gather_views, config=False, parts=("the job folders, in order", {"nargs": "+", **req}),
        out=("the split folder", req))
    add("nvs-train", cmd_nvs_train,
        prior=("prior model folder, or 'none' (from scratch)", {"type": optional_path, "default": None}),
        prior_kind=("what the prior is", {"choices": ["none", "i2i", "t2i"], "default": "none"}),
        features=("nvs_train features folder", req), state=("resumable state folder (outside declared outputs)", req),
        stop_after=("stop after this many steps (simulates a kill; for tests)", {"type": int, "default": None}),
        **train_outputs({"out_snapshots": ("EMA snapshots folder (Figure 5's curves)", {"default": None})}))
    add("nvs-eval", cmd_nvs_eval, model=("Lumos-NVS model folder, 'input' (the baseline returning the input view) "
                                        "or 'vae' (the targets through the VAE: the ceiling)", req),
        data=("nvs_test split folder", req), features=("its features folder", req), out=("output folder", req),
        objects=("test objects to evaluate (default: all)", {"type": int, "default": None}),
        save_views=("keep the generated views of this many objects (Figure 7)", {"type": int, "default": 0}),
        decoder=("a VAE folder whose decoder decodes the views (nvs-decoder; default: components.vae)",
                 {"type": optional_path, "default": None}))
    add("nvs-decoder", cmd_nvs_decoder, data=("nvs_train split folder", req), out=("output VAE folder", req))
    add("table4", cmd_table4, rows=("LABEL=SUMMARY_JSON (labels `input`, `vae`: the baseline and the ceiling)",
                                    {"nargs": "+", **req}),
        csv=("output CSV", req), md=("output Markdown", req))
    add("fig5", cmd_fig5, points=("LABEL:STEP=SUMMARY_JSON", {"nargs": "+", **req}), png=("output PNG", req),
        csv=("output CSV", req))
    add("fig7", cmd_fig7, views=("folder of object-<k>.png strips (nvs-eval --save-views)", req),
        data=("nvs_test split folder", req), png=("output PNG", req))
    add("lgm-inputs", cmd_lgm_inputs, config=False,
        views=("folder of object-<k>.png strips (nvs-eval --save-views)", req),
        data=("nvs_test split folder", req), out=("output folder (object-<k>/ view PNGs + cameras.json)", req),
        objects=("the first this many test objects (nvs.lgm.objects)", {"type": int, **req}))
