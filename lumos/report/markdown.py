"""Markdown copies of the result tables."""

from __future__ import annotations

import pandas as pd


def markdown_table(df: pd.DataFrame, title: str, note: str) -> str:
    """`df` as a Markdown table under a `# title`, followed by `note`."""
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join("| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |\n"
                   for row in df.itertuples(index=False))
    return f"# {title}\n\n{head}{body}\n{note}\n"
