"""The paper's T2I figures as PNG + CSV, from the workflow's metric files.

- fig2a: CLIP score against the caption-noise ratio, with vs without the I2I prior (paper Fig. 2a).
- figS1: the same runs' FID against the noise ratio (paper Fig. S1, the motivation experiment's FID).
- fig2b: FID against fine-tuning steps, one line per I2I pool size (paper Fig. 2b).
- fig8:  FID against fine-tuning steps, one line per prior (none, Lumos-I2I, RCG, class, uncond).
- fig11: FID against fine-tuning steps, T5 vs CLIP text encoder on the Lumos-I2I prior.

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
