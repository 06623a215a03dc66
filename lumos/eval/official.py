"""The official GenEval and DPG-Bench evaluators (paper preset): our images in their folder
layouts, their outputs parsed into the same score dictionaries as the Shapes-world analogues.

GenEval (github.com/djghosh13/geneval) reads ``<root>/<prompt index:05d>/metadata.jsonl`` (the
prompt's line of ``prompts/evaluation_metadata.jsonl``) and ``<root>/<index>/samples/<k:04d>.png``;
``evaluation/evaluate_images.py`` writes one JSON line per image with its ``tag`` (task family)
and ``correct``. Scores: accuracy per tag, overall = mean over tags (its ``summary_scores.py``).

DPG-Bench (ELLA repository, ``dpg_bench/``) reads one ``<prompt id>.png`` per prompt of
``dpg_bench/prompts/<prompt id>.txt``: a 2x2 grid of four samples (``--pic-num 4``).
``compute_dpg_bench.py`` appends to its ``--res-path`` one line per image (path, per-sample
scores, mean) and then a summary block::

    Model: <folder name>
    L1 category scores:
    \t<category>: <score x100>        (one line per level-1 category)
    L2 category scores:
    \t<category> - <detail>: <score x100>
    Image path: ...
    Save results to: ...
    DPG-Bench score: <mean over images x100>

The parser reads the level-1 lines and the ``DPG-Bench score`` line of the last such block and
fails naming the file when any of them is missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
DPG_CATEGORIES = ("global", "entity", "attribute", "relation", "other")


def geneval_prompts(repo: str) -> list[dict]:
    """GenEval's prompt metadata (one dict per prompt, with `prompt` and `tag`)."""
    path = Path(repo) / "prompts" / "evaluation_metadata.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"GenEval prompts not found at {path}: clone GenEval there or set "
                                "config key t2i.eval.official.geneval_repo")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dpg_prompts(repo: str) -> dict[str, str]:
    """DPG-Bench's prompts: {prompt id: text}."""
    folder = Path(repo) / "dpg_bench" / "prompts"
    if not folder.is_dir():
        raise FileNotFoundError(f"DPG-Bench prompts not found at {folder}: clone ELLA there or set "
                                "config key t2i.eval.official.dpg_repo")
    return {p.stem: p.read_text().strip() for p in sorted(folder.glob("*.txt"))}


def write_geneval_images(generate, repo: str, out_dir: str, per_prompt: int = 4) -> int:
    """Generate `per_prompt` images per GenEval prompt with `generate(list[str], seed) -> uint8
    (n, H, W, 3)` into GenEval's layout; prompts already written are skipped (resumable)."""
    from PIL import Image

    out = Path(out_dir)
    for i, meta in enumerate(geneval_prompts(repo)):
        folder = out / f"{i:05d}"
        samples = folder / "samples"
        if (folder / "metadata.jsonl").exists() and len(list(samples.glob("*.png"))) == per_prompt:
            continue
        samples.mkdir(parents=True, exist_ok=True)
        for k, img in enumerate(generate([meta["prompt"]] * per_prompt, i)):
            Image.fromarray(img).save(samples / f"{k:04d}.png")
        (folder / "metadata.jsonl").write_text(json.dumps(meta) + "\n")  # written last: marks it done
    return i + 1


def write_dpg_images(generate, repo: str, out_dir: str) -> int:
    """Four samples per DPG-Bench prompt tiled 2x2 into `<prompt id>.png` (resumable)."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = dpg_prompts(repo)
    for i, (pid, text) in enumerate(prompts.items()):
        if (out / f"{pid}.png").exists():
            continue
        a, b, c, d = generate([text] * 4, i)
        Image.fromarray(np.concatenate([np.concatenate([a, b], 1), np.concatenate([c, d], 1)], 0)).save(out / f"{pid}.png")
    return len(prompts)


def parse_geneval_results(path: str) -> dict:
    """Per-tag accuracy and overall (mean over tags) from evaluate_images.py's JSON lines."""
    hits: dict[str, list[bool]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            hits.setdefault(row["tag"], []).append(bool(row["correct"]))
    if not hits:
        raise ValueError(f"no GenEval results in {path}")
    scores = {tag: float(np.mean(v)) for tag, v in hits.items()}
    scores["overall"] = float(np.mean([scores[t] for t in hits]))
    return scores


def parse_dpg_report(path: str) -> dict:
    """Level-1 category scores and the overall score (both x100, as the report prints them)
    from the summary block of compute_dpg_bench.py's results file."""
    text = Path(path).read_text()
    start = text.rfind("L1 category scores:")
    end = text.find("L2 category scores:", start)
    if start < 0 or end < 0:
        raise ValueError(f"no 'L1 category scores:' / 'L2 category scores:' block in the DPG-Bench report {path}")
    scores = {}
    for line in text[start:end].splitlines()[1:]:
        name, sep, value = line.strip().rpartition(":")
        if sep and name.strip().lower() in DPG_CATEGORIES:
            scores[name.strip().lower()] = float(value)
    m = re.search(r"^DPG-Bench score:\s*([0-9.eE+-]+)\s*$", text[end:], re.MULTILINE)
    if m:
        scores["average"] = float(m.group(1))
    missing = [k for k in (*DPG_CATEGORIES, "average") if k not in scores]
    if missing:
        raise ValueError(f"could not find {missing} in the DPG-Bench report {path}")
    return scores
