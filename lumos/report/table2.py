"""Table 2: text-to-image FID-30K analogue, short raw captions vs long captions (†).

Reported rows are the paper's Table 2 exactly (Inception FID-30K on MS-COCO, literature numbers
as the paper quotes them); measured rows come from this workflow: the main Lumos-T2I fine-tune
sampled from the COCO-role split's short and long captions, plus an untrained model (ceiling)
and an independent real sample (floor), all in the same feature space; with config `released.t2i`,
the authors' released T2I model sampled from the same short captions (its own sampling settings,
`released.t2i_sample`, stated in the note).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lumos.report.markdown import fid_comparability, markdown_table, short_split_notes
from lumos.report.released import RELEASED_T2I_LABEL, released_t2i_sampling

# The paper's Table 2: (method, type, text-image pairs, steps, FID-30K). '-' = unknown.
REPORTED = [
    ("DALL-E", "Diff", "250M", "-", 27.50),
    ("GLIDE", "Diff", "250M", "2500k", 12.24),
    ("LDM", "Diff", "400M", "-", 12.64),
    ("DALL-E2", "Diff", "650M", "2400k", 10.39),
    ("SDv1.5", "Diff", "2000M", "1026k", 9.62),
    ("GigaGAN", "GAN", "2700M", "1350k", 9.09),
    ("Imagen", "Diff", "860M", "5000k", 7.27),
    ("RAPHAEL", "Diff", "5000M+", "-", 6.61),
    ("PixArt-α", "Diff", "24M", "240k", 7.32),
    ("PixArt-α*", "Diff", "24M", "240k", 23.67),
    ("PixArt-α*†", "Diff", "24M", "240k", 21.35),
    ("Flux.1", "Diff", "-", "-", 22.76),
    ("Kolors", "Diff", "-", "-", 23.15),
    ("Qihoo-T2I", "Diff", "50M", "100k", 15.70),
    ("Lumos-T2I", "Diff", "30M", "65k", 12.20),
    ("Lumos-T2I†", "Diff", "30M", "65k", 6.44),
]
COLUMNS = ["method", "source", "type", "pairs", "steps", "fid", "captions", "samples", "feature_extractor", "preset"]


def _load(path) -> dict:
    return json.loads(Path(path).read_text())


def build_table2(short: str, long: str, untrained: str, real: str, summary: str, preset: str,
                 released: str | None = None) -> pd.DataFrame:
    """Rows from the FID json files of the main fine-tune (short / long captions), the untrained
    model, the real floor, and the fine-tune's train_summary.json; `released`: the FID json of the
    released T2I model (short captions), a row only when given."""
    train = _load(summary)
    measured = [
        ("Lumos-T2I", short, "short (raw)", "Diff", train["pairs"], train["steps"]),
        ("Lumos-T2I†", long, "long", "Diff", train["pairs"], train["steps"]),
        ("untrained DiT (ceiling)", untrained, "short (raw)", "Diff", 0, 0),
        ("real images, independent sample (floor)", real, "-", "-", None, None),
    ]
    if released:  # its training pairs and steps are not known here
        measured.append((RELEASED_T2I_LABEL, released, "short (raw)", "Diff", None, None))
    rows = []
    for label, path, captions, kind, pairs, steps in measured:
        r = _load(path)
        rows.append({"method": label, "source": "measured", "type": kind, "pairs": pairs, "steps": steps,
                     "fid": round(r["fid"], 3), "captions": captions, "samples": r["n_samples"],
                     "feature_extractor": r["extractor"], "preset": preset})
    for method, kind, pairs, steps, fid in REPORTED:
        rows.append({"method": method, "source": "reported (paper)", "type": kind, "pairs": pairs, "steps": steps,
                     "fid": fid, "captions": "long" if "†" in method else "raw", "samples": 30000,
                     "feature_extractor": "inception-v3 (paper)", "preset": "paper"})
    return pd.DataFrame(rows)[COLUMNS]


def to_markdown(df: pd.DataFrame, released_sampling: dict | None = None, splits=()) -> str:
    """A Markdown table with a note on what is comparable (by the feature network; with the
    released row, how it was sampled: `released_sampling`, config `released.t2i_sample`) and on
    any of `splits` (curated split folders) that came out short of its `n`."""
    note = ("Table 2 (T2I FID). `measured` rows: this workflow's Lumos-T2I, fine-tuned from the Lumos-I2I prior on "
            "the pair set, one sample per caption of the COCO-role split, FID in the feature space named in "
            "`feature_extractor`; † = sampled from the long captions. `reported (paper)` rows are the paper's "
            "Table 2 (Inception FID-30K on MS-COCO; literature rows as the paper quotes them; * = PixArt-α-256). "
            + fid_comparability(df))
    if released_sampling and (df["method"] == RELEASED_T2I_LABEL).any():
        note += (f" {released_t2i_sampling(released_sampling)} It is sampled from the same short captions; its FID "
                 "reference is the same COCO images at 299 px, the Inception input size, so that neither side is "
                 "upscaled.")
    short = short_split_notes(splits)
    return markdown_table(df, "Table 2: T2I FID, short vs long captions", note + (" " + short if short else ""))
