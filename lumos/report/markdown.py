"""Markdown copies of the result tables, and the notes they share."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def markdown_table(df: pd.DataFrame, title: str, note: str) -> str:
    """`df` as a Markdown table under a `# title`, followed by `note`."""
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join("| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |\n"
                   for row in df.itertuples(index=False))
    return f"# {title}\n\n{head}{body}\n{note}\n"


def fid_comparability(df: pd.DataFrame) -> str:
    """Whether the measured FID rows compare with the paper's reported ones. That follows the
    feature network (column `feature_extractor`), not the preset: only Inception-v3, as the
    paper's FIDs, gives numbers on the same scale."""
    extractors = sorted(df.loc[df["source"] == "measured", "feature_extractor"].dropna().unique())
    if extractors and all(e.startswith("inception-v3") for e in extractors):
        return ("Measured rows use Inception-v3, as the paper's FIDs do: they compare with the `reported (paper)` "
                "rows where the data and the sample counts match theirs.")
    return (f"Measured rows use {', '.join(extractors) or 'no feature network'}, not the paper's Inception-v3: "
            "they are not comparable with the `reported (paper)` rows.")


def short_split_notes(split_dirs) -> str:
    """A sentence per curated split that kept fewer images than its `n` (its `curation.json`);
    '' when none is short."""
    notes = []
    for folder in split_dirs:
        path = Path(folder) / "curation.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        n, kept = report.get("n"), report.get("totals", {}).get("kept")
        if n and kept is not None and kept < n:
            notes.append(f"Split {report['split']} is short: {kept} of n = {n} images kept "
                         f"({100 * kept / n:.0f}%; {path}).")
    return " ".join(notes)
