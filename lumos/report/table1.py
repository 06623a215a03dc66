"""Table 1: I2I generation, RCG vs Lumos-I2I, FID on the COCO-role and ImageNet-role splits.

Measured rows (this run) and the paper's rows (reported, Inception FID-30K/50K on the real
datasets) are kept apart by the `source` column; the two are never comparable number to number.
Beyond the paper, REPA and REG priors (`pretrain.runs.repa` / `reg`, `lumos.models.guidance`) are
measured rows with no reported counterpart (`BEYOND`), built when their FID files are given.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lumos.report.markdown import fid_comparability, markdown_table, short_split_notes

# Table 1 of the paper: MS-COCO FID-30K and ImageNet FID-50K.
REPORTED = [
    {"method": "RCG", "coco_fid": 12.70, "imagenet_fid": 4.89},
    {"method": "Lumos-I2I", "coco_fid": 4.82, "imagenet_fid": 2.60},
]
MEASURED = [  # (run name in the DAG, row label)
    ("lumos_i2i", "Lumos-I2I"),
    ("rcg", "RCG"),
    ("untrained", "untrained DiT (ceiling)"),
    ("real", "real images, independent sample (floor)"),
    ("released_i2i", "Lumos-I2I (released weights, evaluated here)"),  # only with config released.i2i
    ("repa", "REPA (beyond the paper)"),  # only with config pretrain.runs.repa
    ("reg", "REG (beyond the paper)"),  # only with config pretrain.runs.reg
]
BEYOND = {"repa", "reg"}  # rows beyond the paper: no reported numbers; unconditional samples
OPTIONAL = {"released_i2i", *BEYOND}  # rows built only when their FID files are given
BEYOND_NOTE = ("Rows marked `beyond the paper` (REPA, Yu et al. 2024; REG, Wu et al. 2025) have no paper numbers: "
               "the same DiT, budget and sampler (data: their runs' `data`), trained with the encoder guiding the "
               "DiT instead of conditioning it. Neither takes a condition at sampling, so their FID is of "
               "unconditional samples (REPA) or of images generated jointly with their class token from noise "
               "(REG), while Lumos-I2I's and RCG's "
               "samples are conditioned on each eval image's features.")


def build_table1(fid_files: list[str], preset: str) -> pd.DataFrame:
    """Collect FID json files (one per run and split) into Table 1's rows."""
    results = {}
    for f in fid_files:
        r = json.loads(Path(f).read_text())
        results[(r["run"], r["split"])] = r
    rows = []
    for run, label in MEASURED:
        if run in OPTIONAL and not any(r == run for r, _ in results):
            continue
        row = {"method": label, "source": "measured", "preset": preset}
        for split in ("coco", "imagenet"):
            r = results.get((run, split))
            row[f"{split}_fid"] = round(r["fid"], 3) if r else None
            row[f"{split}_samples"] = r["n_samples"] if r else None
            row["feature_extractor"] = r["extractor"] if r else row.get("feature_extractor")
        rows.append(row)
    for rep in REPORTED:
        rows.append({**rep, "source": "reported (paper)", "preset": "paper", "coco_samples": 30000,
                     "imagenet_samples": 50000, "feature_extractor": "inception-v3 (paper)"})
    cols = ["method", "source", "coco_fid", "imagenet_fid", "coco_samples", "imagenet_samples", "feature_extractor", "preset"]
    return pd.DataFrame(rows)[cols]


def to_markdown(df: pd.DataFrame, splits=()) -> str:
    """A Markdown table with a note on what is comparable (by the feature network) and on any of
    `splits` (curated split folders) that came out short of its `n`."""
    note = ("Table 1 (I2I generation). `measured` rows come from this workflow's run (FID in the feature space "
            "named in `feature_extractor`, one sample per eval image); `reported (paper)` rows are copied from "
            "the paper (Inception FID on MS-COCO 30K / ImageNet 50K). " + fid_comparability(df))
    labels = {label for run, label in MEASURED if run in BEYOND}
    if labels & set(df["method"]):
        note += " " + BEYOND_NOTE
    short = short_split_notes(splits)
    return markdown_table(df, "Table 1: RCG vs Lumos-I2I", note + (" " + short if short else ""))


def write_grid(eval_images, columns: dict, path: str, n: int) -> None:
    """PNG grid: each triple is eval image | one sample per run in `columns`, 4 triples a row."""
    import numpy as np

    from lumos.viz import save_grid

    tiles, labels = [], []
    for i in range(min(n, len(eval_images))):
        tiles.append(eval_images[i])
        labels.append("eval")
        for name, imgs in columns.items():
            tiles.append(imgs[i])
            labels.append(name)
    save_grid(path, np.stack(tiles), ncols=4 * (1 + len(columns)), scale=3, labels=labels)
