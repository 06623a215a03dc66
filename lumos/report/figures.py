"""The paper's T2I figures as PNG + CSV, from the workflow's metric files.

- fig2a: CLIP score against the caption-noise ratio, with vs without the I2I prior (paper Fig. 2a).
- figS1: the same runs' FID against the noise ratio (paper Fig. S1, the motivation experiment's FID).
- fig2b: FID against fine-tuning steps, one line per I2I pool size (paper Fig. 2b).
- fig8:  FID against fine-tuning steps, one line per prior (none, Lumos-I2I, RCG, class, uncond).
- fig11: FID against fine-tuning steps, T5 vs CLIP text encoder on the Lumos-I2I prior (11b: on
  a CLIP-image prior).
- the ablations (fig9, fig10, fig2c, figS2, figS3, `build_ablation_figure`): I2I FID against
  pretraining steps and the T2I fine-tune's FID against fine-tuning steps, one line per prior;
  figG1 (beyond the paper) the same for Lumos-I2I, RCG, REPA and REG.
- class curves (beyond the paper, `build_class_curves`): the class-grid scores of class-to-image
  priors (the levers for shapes, config/levers.yaml) against pretraining steps.

Metric files live at results/eval/t2i/<fine-tune>/<final|step-N>/<fid|clip>_<split>_<captions>.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

TITLES = {
    "fig2a": ("caption noise (% of pairs)", "CLIP score (measured)", "Fig. 2a: T2I vs caption noise"),
    "figS1": ("caption noise (% of pairs)", "FID (measured)", "Fig. S1: FID vs caption noise"),
    "fig2b": ("fine-tuning step", "FID (measured)", "Fig. 2b: I2I pool size"),
    "fig8": ("fine-tuning step", "FID (measured)", "Fig. 8: priors for T2I"),
    "fig11": ("fine-tuning step", "FID (measured)", "Fig. 11: T5 vs CLIP text encoder"),
    "fig11b": ("fine-tuning step", "FID (measured)", "Fig. 11b: T5 vs CLIP text encoder, CLIP-image prior"),
}
ABLATION_TITLES = {
    "fig9": "Fig. 9: condition tokens",
    "fig10": "Fig. 10: vision encoders",
    "fig2c": "Fig. 2c: vision encoders, T2I transfer",
    "figS2": "Fig. S2: CLS + patch-token subsets",
    "figS3": "Fig. S3: encoder scale",
    "figG1": "Beyond the paper: encoder-guided priors (Lumos-I2I and RCG condition, REPA and REG align)",
}


def collect(files: list[str], runs: dict[str, str]) -> pd.DataFrame:
    """One row per metric file: line label, fine-tune, checkpoint step, metric, value."""
    names = {v: k for k, v in runs.items()}
    rows = []
    for f in files:
        path = Path(f)
        ft, ckpt = path.parent.parent.name, path.parent.name
        metric = path.name.split("_")[0]
        data = json.loads(path.read_text())
        value = data["fid"] if metric == "fid" else data["clip_score"]
        rows.append({"label": names[ft], "finetune": ft, "checkpoint": ckpt,
                     "step": None if ckpt == "final" else int(ckpt.split("-")[1]), "metric": metric,
                     "value": value, "samples": data.get("n_samples", data.get("n"))})
    return pd.DataFrame(rows)


def build_figure(fig: str, files: list[str], runs: dict[str, str], png: str, csv: str) -> pd.DataFrame:
    """Write the figure's CSV (the plotted numbers) and PNG; return the plotted table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = collect(files, runs)
    xlabel, ylabel, title = TITLES[fig]
    fig_, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    if fig in ("fig2a", "figS1"):
        df = df[df.metric == ("clip" if fig == "fig2a" else "fid")].copy()
        df["prior"] = df.label.str.split("@").str[0]
        df["noise_percent"] = df.label.str.split("@").str[1].astype(int)
        df = df.sort_values(["prior", "noise_percent"])
        for prior, part in df.groupby("prior"):
            ax.plot(part.noise_percent, part.value, marker="o",
                    label="w/o I2I prior" if prior == "none" else f"w/ I2I prior ({prior})")
        out = df[["prior", "noise_percent", "value", "samples", "finetune"]].rename(columns={"value": df.metric.iloc[0]})
    else:
        # Lines in the configured order (pool sizes as numbers, priors as the paper lists them).
        df = df.assign(order=df.label.map(list(runs).index)).sort_values(["order", "step"])
        for label, part in df.groupby("label", sort=False):
            ax.plot(part.step, part.value, marker="o", label=label)
        out = df[["label", "step", "value", "samples", "finetune"]].rename(columns={"value": "fid"})
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig_, png, out, csv)


def _save(fig, png: str, table: pd.DataFrame, csv: str) -> pd.DataFrame:
    """Write a figure's PNG (folders created) and the CSV of its plotted numbers; return the table."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    table.to_csv(csv, index=False)
    return table


def build_fig12(dropout: dict[int, str], guidance: dict[float, str], png: str, csv: str) -> pd.DataFrame:
    """Figure 12: I2I FID against (a) the condition-dropout percentage the prior was trained with
    and (b) the classifier-free guidance scale it is sampled with; `dropout` / `guidance` map each
    value to its FID json. Writes the CSV (every plotted number) and the two-panel PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for panel, points in (("a: condition dropout (%)", dropout), ("b: guidance scale", guidance)):
        for value, path in sorted(points.items()):
            data = json.loads(Path(path).read_text())
            rows.append({"panel": panel, "value": value, "fid": data["fid"], "samples": data.get("n_samples"),
                         "run": data.get("run"), "source": "measured"})
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=120)
    for ax, (panel, part) in zip(axes, df.groupby("panel", sort=False)):
        ax.plot(part["value"], part["fid"], marker="o")
        ax.set_xlabel(panel.split(": ")[1])
        ax.set_ylabel("FID (measured)")
        ax.set_title(f"Fig. 12{panel[0]}", fontsize=9)
    return _save(fig, png, df, csv)


def build_ablation_figure(fig: str, i2i: list[tuple[str, int, str]], t2i: list[tuple[str, int, str]],
                          png: str, csv: str) -> pd.DataFrame:
    """An ablation figure: panel a, I2I FID against pretraining steps; panel b, the FID of each
    prior's T2I fine-tune against fine-tuning steps (Figure 2c: panel b alone). `i2i` / `t2i` are
    (line label, step, FID json) points, lines in the order given. Writes the CSV (every plotted
    number) and the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, points) for name, points in (("a: I2I", i2i), ("b: T2I", t2i)) if points]
    rows = []
    for panel, points in panels:
        for label, step, path in points:
            data = json.loads(Path(path).read_text())
            rows.append({"panel": panel, "label": label, "step": int(step), "fid": data["fid"],
                         "samples": data.get("n_samples", data.get("n")), "source": "measured"})
    df = pd.DataFrame(rows)
    order = list(dict.fromkeys(label for _, points in panels for label, _, _ in points))
    df = df.assign(order=df.label.map(order.index)).sort_values(["panel", "order", "step"]).drop(columns="order")
    fig_, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), dpi=120, squeeze=False)
    for ax, (panel, _) in zip(axes[0], panels):
        for label, part in df[df.panel == panel].groupby("label", sort=False):
            ax.plot(part.step, part.fid, marker="o", label=label)
        kind = panel.split(": ")[1]
        ax.set_xlabel("pretraining step" if kind == "I2I" else "fine-tuning step")
        ax.set_ylabel(f"{kind} FID (measured)")
        ax.set_title(f"({panel[0]}) {kind}" if len(panels) > 1 else kind, fontsize=9)
        ax.legend(fontsize=7)
    fig_.suptitle(ABLATION_TITLES[fig], fontsize=10)
    return _save(fig_, png, df, csv)


#: The class-grid score a lever must reach on shape (issue 31's moonshot), drawn on the shape panel.
SHAPE_TARGET = 0.60


def build_class_curves(rows: list[dict], png: str, csv: str) -> pd.DataFrame:
    """The levers' curves: for each class-to-image prior (rows: label, step, colour, shape, pair,
    samples; step 0 is the untrained model), the Shapes classifier's rate of the requested colour,
    shape and (shape, colour) pair in its class-grid samples against pretraining steps, one panel
    each, lines in the order given. Writes the CSV (every plotted number) and the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(rows)[["label", "step", "colour", "shape", "pair", "samples"]].assign(source="measured")
    fig_, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=120)
    for ax, score in zip(axes, ("colour", "shape", "pair")):
        for label, part in df.groupby("label", sort=False):
            ax.plot(part.step, part[score], marker="o", label=label)
        if score == "shape":
            ax.axhline(SHAPE_TARGET, color="grey", linestyle="--", linewidth=1, label=f"target {SHAPE_TARGET}")
        ax.set_xlabel("pretraining step (0: untrained)")
        ax.set_ylabel(f"requested {score} present (measured)")
        ax.set_ylim(0, 1)
        ax.set_title(score, fontsize=9)
    axes[1].legend(fontsize=7)
    fig_.suptitle("Beyond the paper: levers for shapes (class-to-image priors, lumos class-grid scores)", fontsize=10)
    return _save(fig_, png, df, csv)
