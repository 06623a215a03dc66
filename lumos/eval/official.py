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

Neither evaluator checks that it scored every image: GenEval scores whatever prompt folders it
finds, and ``compute_dpg_bench.py`` skips (printing ``Failed filename``) any image whose scoring
raises, then averages over the rest. Both parsers here therefore compare the images scored with
the benchmark's prompt files (553 GenEval prompts x 4 images, 1,065 DPG-Bench prompts in the
upstream repositories) and fail, naming how many are missing, rather than report a score over a
subset.

``compute_dpg_bench.py`` cuts each grid into tiles of ``--resolution`` pixels; the workflow takes
that number from the images actually written (:func:`written_resolution`), not from the config.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from lumos.utils import atomic_write, png_complete

GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
DPG_CATEGORIES = ("global", "entity", "attribute", "relation", "other")
DPG_GRID = 2  # DPG-Bench reads four samples per prompt as a 2x2 grid (`--pic-num 4`)


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
            atomic_write(samples / f"{k:04d}.png", Image.fromarray(img).save)
        (folder / "metadata.jsonl").write_text(json.dumps(meta) + "\n")  # written last: marks it done
    return i + 1


def write_dpg_images(generate, repo: str, out_dir: str) -> int:
    """Four samples per DPG-Bench prompt tiled 2x2 into `<prompt id>.png` (resumable)."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = dpg_prompts(repo)
    for i, (pid, text) in enumerate(prompts.items()):
        if png_complete(out / f"{pid}.png"):
            continue
        a, b, c, d = generate([text] * 4, i)
        grid = np.concatenate([np.concatenate([a, b], 1), np.concatenate([c, d], 1)], 0)
        atomic_write(out / f"{pid}.png", Image.fromarray(grid).save)
    return len(prompts)


def written_resolution(bench: str, out_dir: str) -> int:
    """The side in pixels of one sample as written in `out_dir` (GenEval: each sample image; DPG-
    Bench: each tile of the 2x2 grids), checked to be the same square size in every file: the
    `--resolution` that compute_dpg_bench.py needs to cut the grids."""
    from PIL import Image

    root = Path(out_dir)
    files = sorted(root.glob("*/samples/*.png") if bench == "geneval" else root.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no images in {root}")
    sizes = {}
    for f in files:
        with Image.open(f) as im:  # reads the header only
            sizes.setdefault(im.size, f)
    if len(sizes) > 1:
        raise ValueError(f"images of different sizes in {root}: " + ", ".join(f"{w}x{h} ({f})" for (w, h), f in sizes.items()))
    (w, h), f = next(iter(sizes.items()))
    tiles = DPG_GRID if bench == "dpg" else 1
    if w != h or w % tiles:
        raise ValueError(f"{f} is {w}x{h}: expected a square {'2x2 grid of square samples' if tiles > 1 else 'sample'}")
    return w // tiles


def _require_complete(found: set, expected: set, what: str, path: str) -> None:
    """Fail unless `path` scored exactly the `expected` items: name how many are missing (and a
    few of them), or which scored items the benchmark does not have."""
    missing, extra = sorted(expected - found), sorted(found - expected)
    if missing:
        raise ValueError(f"{path} scores {len(expected) - len(missing)} of {len(expected)} {what}: {len(missing)} missing "
                         f"(e.g. {', '.join(map(str, missing[:5]))}). The evaluator skips what it cannot read or "
                         "score: see its log, fix the images and rerun it; a score over a subset is not reported")
    if extra:
        raise ValueError(f"{path} scores {len(extra)} items the benchmark's prompt files do not have (e.g. "
                         f"{', '.join(map(str, extra[:5]))}): the image folder was made for other prompts")


_GENEVAL_FILE = re.compile(r"(\d+)[/\\]samples[/\\](\d+)\.png$")


def parse_geneval_results(path: str, prompts: list[dict], per_prompt: int) -> dict:
    """Per-tag accuracy and overall (mean over tags, as GenEval's summary_scores.py) from
    evaluate_images.py's JSON lines, after checking that they score every one of the
    `per_prompt` images of every prompt in `prompts` (GenEval's evaluation_metadata.jsonl), each
    against its own prompt."""
    hits: dict[str, list[bool]] = {}
    found = set()
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        m = _GENEVAL_FILE.search(row["filename"])
        if not m:
            raise ValueError(f"{path}: result for {row['filename']!r} is not a <prompt>/samples/<k>.png image")
        index, sample = int(m.group(1)), int(m.group(2))
        if index < len(prompts) and row["prompt"] != prompts[index]["prompt"]:
            raise ValueError(f"{path}: {row['filename']} was scored against {row['prompt']!r}, but GenEval's prompt "
                             f"{index} is {prompts[index]['prompt']!r}: the image folder does not match the prompt file")
        found.add((index, sample))
        hits.setdefault(row["tag"], []).append(bool(row["correct"]))
    expected = {(i, k) for i in range(len(prompts)) for k in range(per_prompt)}
    _require_complete(found, expected, f"images ({len(prompts)} prompts x {per_prompt}; missing as (prompt, sample))",
                      path)
    scores = {tag: float(np.mean(v)) for tag, v in hits.items()}
    scores["overall"] = float(np.mean([scores[t] for t in hits]))
    scores["images"] = len(found)
    return scores


_DPG_IMAGE_LINE = re.compile(r"^(.+\.png)((?:, [-+0-9.eE]+)+)$")


def parse_dpg_report(path: str, prompt_ids) -> dict:
    """Level-1 category scores and the overall score (both x100, as the report prints them)
    from the summary block of compute_dpg_bench.py's results file, after checking from its
    per-image lines that it scored the grid of every prompt id in `prompt_ids`."""
    text = Path(path).read_text()
    start = text.rfind("L1 category scores:")
    end = text.find("L2 category scores:", start)
    if start < 0 or end < 0:
        raise ValueError(f"no 'L1 category scores:' / 'L2 category scores:' block in the DPG-Bench report {path}")
    # compute_dpg_bench.py keys an image by its file name up to the first dot
    scored = {Path(m.group(1)).name.split(".")[0]
              for m in map(_DPG_IMAGE_LINE.match, text[:start].splitlines()) if m}
    _require_complete(scored, set(prompt_ids), "prompts", path)
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
    scores["images"] = len(scored)
    return scores
