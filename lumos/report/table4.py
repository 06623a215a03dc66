"""Table 4 (novel view synthesis), Figure 5 (metrics over fine-tuning per prior) and Figure 7
(input | generated views | ground truth).

Measured rows come from `lumos nvs-eval` summaries (means over the test objects' views at each
elevation); the paper's rows are labelled `reported (paper)` (GSO, 16 views per elevation) and
are never mixed with measured numbers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from lumos.report.markdown import markdown_table

METRICS = ("psnr", "ssim", "lpips")
ELEVATIONS = (0, 30)

# Table 4 of the paper (GSO; elevation 0 then 30: PSNR, SSIM, LPIPS). SyncDreamer has no elevation-0 row.
REPORTED = [
    ("Zero123", (17.73, 0.8115, 0.1763), (18.12, 0.8099, 0.1584)),
    ("Zero123-XL", (17.68, 0.7984, 0.1988), (19.20, 0.8210, 0.1521)),
    ("SyncDreamer", (None, None, None), (18.98, 0.8284, 0.1535)),
    ("Lumos-NVS", (19.63, 0.8439, 0.1526), (20.28, 0.8419, 0.1317)),
]


def _cells(summary: dict, lpips_note: str) -> dict:
    """The six metric cells of one summary (LPIPS: the note when it was not computed)."""
    row = {}
    for elev in ELEVATIONS:
        part = summary.get(f"elev{elev}", {})
        for m in METRICS:
            value = part.get(m)
            row[f"{m}_elev{elev}"] = round(value, 4) if value is not None else ("n/a" if m == "lpips" and lpips_note
                                                                                else None)
        row[f"views_elev{elev}"] = part.get("views")
    return row


def build_table4(measured: dict[str, str], main: str, priors: dict[str, str], preset: str,
                 lpips_note: str = "") -> pd.DataFrame:
    """Rows: each measured model (`label -> summary.json`; `input` is the baseline returning the
    input view), then the paper's reported rows."""
    rows = []
    for label, path in measured.items():
        summary = json.loads(Path(path).read_text())
        if label == "input":
            method = "baseline: return the input view"
        elif label == "vae":
            method = "the target views through the VAE (ceiling)"
        elif label == main:
            method = f"Lumos-NVS ({label} prior: {priors[label]})"
        else:
            method = f"NVS from the {label} prior ({priors.get(label, label)})"
        rows.append({"method": method, "source": "measured", **_cells(summary, lpips_note), "preset": preset})
    for name, e0, e30 in REPORTED:
        row = {"method": name, "source": "reported (paper)"}
        for elev, values in ((0, e0), (30, e30)):
            row.update({f"{m}_elev{elev}": v for m, v in zip(METRICS, values)})
            row[f"views_elev{elev}"] = None
        rows.append({**row, "preset": "paper (GSO)"})
    cols = ["method", "source", *(f"{m}_elev{e}" for e in ELEVATIONS for m in METRICS),
            "views_elev0", "views_elev30", "preset"]
    df = pd.DataFrame(rows)[cols]
    return df.astype({"views_elev0": "Int64", "views_elev30": "Int64"})


def table4_markdown(df: pd.DataFrame, protocol: str, lpips_note: str = "") -> str:
    note = ("Table 4 (novel view synthesis). PSNR (dB) and SSIM higher is better, LPIPS lower. `measured` rows: "
            f"this workflow's run; {protocol} `reported (paper)` rows are copied from the paper (Google Scanned "
            "Objects, 16 views per elevation) and are not comparable to measured rows unless the preset is `paper`.")
    if lpips_note:
        note += f" LPIPS `n/a`: {lpips_note}."
    return markdown_table(df, "Table 4: novel view synthesis", note)


def build_fig5(points: dict[str, dict[int, str]], png: str, csv: str, lpips_note: str = "") -> pd.DataFrame:
    """Figure 5: PSNR / SSIM / LPIPS (both elevations' views together) against fine-tuning steps,
    one line per prior. `points`: prior label -> {step: summary.json}."""
    rows = []
    for label, by_step in points.items():
        for step, path in sorted(by_step.items()):
            summary = json.loads(Path(path).read_text())
            parts = [v for k, v in summary.items() if k.startswith("elev")]
            views = sum(p["views"] for p in parts)
            row = {"prior": label, "step": step, "source": "measured", "views": views}
            for m in METRICS:
                have = [p for p in parts if m in p]
                row[m] = round(sum(p[m] * p["views"] for p in have) / views, 4) if have else None
            rows.append(row)
    df = pd.DataFrame(rows)
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv, index=False)
    _plot_fig5(df, png, lpips_note)
    return df


def _plot_fig5(df: pd.DataFrame, png: str, lpips_note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=120)
    for ax, m, arrow in zip(axes, METRICS, ("higher is better", "higher is better", "lower is better")):
        for label, part in df.groupby("prior", sort=False):
            if part[m].notna().any():
                ax.plot(part["step"], part[m], marker="o", label=f"{label} prior")
        ax.set_title(f"{m.upper()} ({arrow})")
        ax.set_xlabel("fine-tuning step")
        if not df[m].notna().any():
            ax.text(0.5, 0.5, textwrap.fill(lpips_note or "not computed", 40), ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
    axes[0].legend()
    fig.suptitle("Figure 5: novel view synthesis from each prior (measured)")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def build_fig7(strips: list[str], truth: list[np.ndarray], png: str, views: int = 8) -> None:
    """Figure 7 / S6: per test object, a row `input | generated views` and below it
    `input | ground-truth views`, `views` azimuths of the elevation-30 ring (every 16/views-th).
    `strips`: the saved `object-<k>.png` strips (input then the 32 generated targets);
    `truth`: each object's rendered views (33, H, W, 3)."""
    from PIL import Image

    from lumos.viz import save_grid

    tiles, labels = [], []
    pick = 17 + np.arange(0, 16, 16 // views)  # the elevation-30 ring, views 17..32
    for path, gt in zip(strips, truth):
        strip = np.asarray(Image.open(path).convert("RGB"))
        h = strip.shape[0]
        gen = strip.reshape(h, -1, h, 3).transpose(1, 0, 2, 3)  # (33, H, W, 3)
        for row, source in ((gen, "generated"), (gt, "ground truth")):
            tiles += [gt[0], *row[pick]]
            labels += ["input" if source == "generated" else "", source] + [""] * (len(pick) - 1)
    save_grid(png, np.stack(tiles), ncols=1 + len(pick), scale=max(1, 96 // truth[0].shape[1]), labels=labels)
