"""Table 5 (image-to-video: FVD / KVD / PIC per prior), Figure 2d (the priors on NVS and I2V side
by side) and Figure S8 (input frame | generated frames | real clip).

Measured rows come from `lumos i2v-metrics` json files; the paper's rows are labelled
`reported (paper)` (UCF-101 and MSR-VTT) and never mixed with measured numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lumos.report.markdown import markdown_table

SPLITS = ("ucf", "msrvtt")
METRICS = ("fvd", "kvd", "pic")
PRIOR_NAMES = {"none": "w/o prior", "t2i": "w T2I prior", "i2i": "w I2I prior"}

# Table 5 of the paper: UCF-101 then MSR-VTT, FVD / KVD / PIC.
REPORTED = [
    ("w/o Prior", (2892.09, 170.81, 0.3795), (1490.64, 72.97, 0.3999)),
    ("w T2I Prior", (532.77, 52.53, 0.7321), (313.50, 19.61, 0.7321)),
    ("w I2I Prior", (399.59, 39.17, 0.7930), (271.00, 21.16, 0.7869)),
]


def _load(files) -> dict[tuple[str, str], dict]:
    """{(label, split): metrics} from i2v-metrics json files at results/i2v/<label>/eval/<split>.json."""
    out = {}
    for f in files:
        path = Path(f)
        out[(path.parent.parent.name, path.stem)] = json.loads(path.read_text())
    return out


def build_table5(metric_files: list[str], priors: dict[str, str], preset: str) -> pd.DataFrame:
    """Measured rows per prior label, the real-clip sanity rows, then the paper's rows."""
    results = _load(metric_files)
    rows = []
    order = sorted(priors, key=lambda k: (list(PRIOR_NAMES).index(k) if k in PRIOR_NAMES else len(PRIOR_NAMES), k))
    for label in order:
        source = priors[label]
        row = {"method": f"{PRIOR_NAMES.get(label, label)} ({source})", "source": "measured"}
        for split in SPLITS:
            r = results.get((label, split), {})
            row.update({f"{split}_{m}": _round(r.get(m)) for m in METRICS})
            row[f"{split}_clips"] = r.get("clips")
        rows.append({**row, "preset": preset})
    for kind, what in (("halves", "real clips (FVD/KVD: two halves of the split, the floor)"),
                       ("shuffled", "real clips with shuffled frames (vs the real clips)")):
        row = {"method": what, "source": "measured"}
        for split in SPLITS:
            r = results.get(("real", split), {})
            row.update({f"{split}_fvd": _round(r.get(f"fvd_{kind}")), f"{split}_kvd": _round(r.get(f"kvd_{kind}")),
                        f"{split}_pic": _round(r.get(f"pic_{kind}")), f"{split}_clips": r.get("clips")})
        rows.append({**row, "preset": preset})
    for name, ucf, msrvtt in REPORTED:
        row = {"method": name, "source": "reported (paper)", "preset": "paper (UCF-101, MSR-VTT)"}
        for split, values in (("ucf", ucf), ("msrvtt", msrvtt)):
            row.update({f"{split}_{m}": v for m, v in zip(METRICS, values)})
        rows.append(row)
    cols = ["method", "source", *(f"{s}_{m}" for s in SPLITS for m in METRICS), "ucf_clips", "msrvtt_clips", "preset"]
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df:
            df[c] = None
    return df[cols].astype({"ucf_clips": "Int64", "msrvtt_clips": "Int64"})


def _round(v):
    return None if v is None else round(float(v), 4)


def table5_markdown(df: pd.DataFrame, cfg: dict) -> str:
    net = cfg["components.video_net"]
    pic = cfg["components.pic"]
    note = (f"Table 5 (image-to-video). FVD and KVD lower is better, PIC higher. `measured` rows: this workflow's "
            f"run: {cfg['i2v.frames']} frames at a stride of {cfg['i2v.stride']}, {cfg['data.image_size']} px, one "
            f"generated clip per evaluation clip from its first frame, sampler {cfg['sample']['sampler']} "
            f"{cfg['sample']['steps']} steps, guidance {cfg['i2v.eval']['guidance_scale']}; FVD / KVD on the features "
            f"of `{net.get('kind', 'video_net')}` ({net['pretrained']}), KVD = unbiased MMD^2 with the cubic "
            f"polynomial kernel (raw, not x1000) over {cfg['i2v.eval']['kvd_subsets']} subsets of "
            f"{cfg['i2v.eval']['kvd_subset_size']}; PIC = mean similarity of the input frame to every later frame in "
            f"`{pic.get('kind')}` features ({pic.get('encoder') or pic.get('pretrained')}). `reported (paper)` rows "
            "are the paper's UCF-101 / MSR-VTT numbers (I3D FVD, DreamSim PIC) and are not comparable to measured "
            "rows unless the preset is `paper`.")
    return markdown_table(df, "Table 5: image-to-video priors", note)


def build_fig2d(nvs: dict[str, str], i2v_files: list[str], png: str, csv: str) -> pd.DataFrame:
    """Figure 2d: per prior, NVS PSNR at each elevation (`label -> summary.json`) and I2V FVD per
    evaluation split (i2v-metrics files), as bars."""
    rows = []
    for label, path in nvs.items():
        summary = json.loads(Path(path).read_text())
        for key, part in summary.items():
            if key.startswith("elev"):
                rows.append({"task": "NVS", "prior": label, "metric": f"PSNR {key[4:]} deg", "value": part["psnr"],
                             "better": "higher"})
    for (label, split), r in _load(i2v_files).items():
        rows.append({"task": "I2V", "prior": label, "metric": f"FVD {split}", "value": r["fvd"], "better": "lower"})
    df = pd.DataFrame(rows)
    df.insert(0, "source", "measured")
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv, index=False)
    _plot_fig2d(df, png)
    return df


def _plot_fig2d(df: pd.DataFrame, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(df["metric"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), dpi=120)
    for ax, metric in zip(np.atleast_1d(axes), panels):
        part = df[df["metric"] == metric]
        colours = {"none": "#999999", "t2i": "#4c72b0", "i2i": "#dd8452"}  # one colour per prior, in every panel
        bars = ax.bar(part["prior"], part["value"], color=[colours.get(p, "#55a868") for p in part["prior"]])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)  # the differences are small next to the bars' height
        ax.set_title(f"{part['task'].iloc[0]}: {metric}\n({part['better'].iloc[0]} is better)", fontsize=9)
    fig.suptitle("Figure 2d: priors on text-irrelevant tasks (measured)")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def build_figS8(samples_dir: str, data_dir: str, png: str, clips: int = 4) -> None:
    """Figure S8: per clip, the generated frames (the first is the given input frame) above the
    real clip's frames."""
    from PIL import Image

    from lumos.data.worlds.shapes_video import read_clips, split_frames
    from lumos.viz import save_grid

    tiles, labels = [], []
    strips = sorted(Path(samples_dir).glob("*.png"))[:clips]
    if not strips:
        raise FileNotFoundError(f"no generated clips in {samples_dir}")
    for path, (real, _) in zip(strips, read_clips(data_dir, len(strips))):
        gen = split_frames(np.asarray(Image.open(path).convert("RGB")), len(real))
        tiles += [*gen, *real]
        labels += ["input", "generated"] + [""] * (len(gen) - 2) + ["real"] + [""] * (len(real) - 1)
    save_grid(png, np.stack(tiles), ncols=len(real), scale=max(1, 64 // real.shape[1]), labels=labels)
