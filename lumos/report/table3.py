"""Table 3: text-image alignment, the GenEval and DPG-Bench analogues (or the official ones).

Measured rows: the main Lumos-T2I fine-tune, an untrained model, and the detector scored on
ground-truth renders of the same prompts (its own accuracy: the ceiling a perfect generator
reaches). Reported rows: the paper's Table 3 exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lumos.report.markdown import markdown_table
from lumos.report.released import RELEASED_T2I_LABEL, released_t2i_sampling

GENEVAL = ["single_object", "two_object", "counting", "colors", "color_attr", "position", "geneval_overall"]
DPG = ["dpg_global", "dpg_entity", "dpg_attribute", "dpg_relation", "dpg_other", "dpg_average"]
NAN = math.nan
# The paper's Table 3: params, GenEval (single, two, counting, colors, color attribution, position,
# overall), DPG-Bench (global, entity, attribute, relation, other, average). '-' in the paper = NaN.
REPORTED = [
    ("LUMINA-Next", "2.0B", [0.92, 0.46, 0.48, 0.70, 0.13, 0.09, 0.46], [82.8, 88.7, 86.4, 80.5, 81.8, 74.6]),
    ("SDXL", "2.6B", [0.98, 0.74, 0.39, 0.85, 0.23, 0.15, 0.55], [83.3, 82.4, 80.9, 86.8, 80.4, 74.7]),
    ("Playground v2.5", "2.6B", [0.98, 0.77, 0.52, 0.84, 0.17, 0.11, 0.56], [83.1, 82.6, 81.2, 84.1, 83.5, 75.5]),
    ("SD3-8B", "8.0B", [0.99, 0.94, 0.72, 0.89, 0.60, 0.33, 0.74], [NAN] * 6),
    ("FLUX-dev", "12.0B", [0.99, 0.81, 0.79, 0.74, 0.47, 0.20, 0.67], [82.1, 89.5, 88.7, 91.1, 89.4, 84.0]),
    ("FLUX-schnell", "12.0B", [0.99, 0.92, 0.73, 0.78, 0.54, 0.28, 0.71], [91.2, 91.3, 89.7, 86.5, 87.0, 84.8]),
    ("SDv1.5", "0.9B", [0.97, 0.38, 0.35, 0.76, 0.06, 0.04, 0.43], [74.6, 74.2, 75.4, 73.5, 67.8, 63.2]),
    ("SDv2.1", "0.9B", [0.98, 0.51, 0.44, 0.85, 0.17, 0.07, 0.50], [77.7, 78.1, 74.9, 80.7, 80.7, 68.1]),
    ("PixArt-α", "0.6B", [0.98, 0.50, 0.44, 0.80, 0.07, 0.08, 0.48], [81.7, 80.1, 80.4, 81.7, 76.5, 71.6]),
    ("PixArt-Σ", "0.6B", [0.98, 0.59, 0.50, 0.80, 0.15, 0.10, 0.52], [87.5, 87.1, 86.5, 84.0, 86.1, 79.5]),
    ("SD3-1B", "1.0B", [0.97, 0.72, 0.52, 0.78, 0.34, 0.16, 0.58], [NAN] * 6),
    ("Lumos-T2I", "0.8B", [0.99, 0.64, 0.52, 0.84, 0.30, 0.15, 0.57], [87.4, 87.4, 86.5, 87.2, 88.1, 79.9]),
]
# Our analogue's names -> the table's columns.
_GENEVAL_KEYS = ["single_object", "two_object", "counting", "colors", "color_attr", "position", "overall"]
_DPG_KEYS = ["global", "entity", "attribute", "relation", "other", "average"]


def _row(method: str, params, geneval: dict, dpg: dict) -> dict:
    row = {"method": method, "source": "measured", "params": params}
    row.update({col: round(geneval.get(k, NAN), 3) for col, k in zip(GENEVAL, _GENEVAL_KEYS)})
    row.update({col: round(dpg.get(k, NAN), 1) for col, k in zip(DPG, _DPG_KEYS)})
    return row


def build_table3(measured: dict[str, tuple[str, str, str | None]], preset: str) -> pd.DataFrame:
    """`measured`: row label -> (GenEval scores.json, DPG scores.json, model folder or None)."""
    rows = []
    for label, (geneval, dpg, model) in measured.items():
        params = _params(model) if model else "-"
        row = _row(label, params, json.loads(Path(geneval).read_text()), json.loads(Path(dpg).read_text()))
        rows.append({**row, "preset": preset})
    for method, params, g, d in REPORTED:
        row = {"method": method, "source": "reported (paper)", "params": params,
               **dict(zip(GENEVAL, g)), **dict(zip(DPG, d)), "preset": "paper"}
        rows.append(row)
    return pd.DataFrame(rows)[["method", "source", "params", *GENEVAL, *DPG, "preset"]]


def _params(model_dir: str) -> str:
    """Parameter count of a saved model folder (safetensors header only), e.g. '5.1M'."""
    from safetensors import safe_open

    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            for k in st.keys():
                total += math.prod(st.get_slice(k).get_shape())
    return f"{total / 1e6:.1f}M" if total < 1e9 else f"{total / 1e9:.1f}B"


def to_markdown(df: pd.DataFrame, geneval_source: str, dpg_source: str, released_sampling: dict | None = None) -> str:
    """A Markdown table with a note on the evaluators and what is comparable (and, with the released
    T2I row, how it was sampled: `released_sampling`, config `released.t2i_sample`)."""
    note = (f"Table 3 (alignment). GenEval: {geneval_source}; DPG-Bench: {dpg_source}. GenEval columns are "
            "accuracies (0-1), overall = mean of the six families; DPG columns are x100, child questions zeroed "
            "when their parent fails, average = mean prompt score. The `ground-truth renders` row is the detector "
            "scoring real renders of the same prompts (its own accuracy). `reported (paper)` rows are the paper's "
            "Table 3 and are not comparable to measured rows unless the preset is `paper`.")
    if released_sampling and (df["method"] == RELEASED_T2I_LABEL).any():
        note += " " + released_t2i_sampling(released_sampling)
    return markdown_table(df, "Table 3: GenEval and DPG-Bench", note)
