"""Aesthetic scoring jobs: the LAION aesthetic score of every image a curation job will read, for
the sources whose `aesthetic` has a `model` (sources that ship no score, e.g. SAM, JourneyDB).

Scoring job k of P reads exactly the units curation job k of P reads (same `read_source` call,
same offsets), decodes each image as curation does, scores them in batches on the GPU
(`lumos.components.aesthetic.AestheticScorer`) and streams one JSON line per image,
`{"key": ..., "score": ...}`: one batch in memory at a time. Curation job k then loads that one
file (`load_scores`) and filters on it. A file it cannot decode is left out here (curation
counts it under its own reason); so is an item without a caption in a captioned split (curation
skips it before asking for a score).

The job scores every item of its units: it cannot know where curation will stop at the source's
quota, which depends on the other filters.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lumos.data.decode import BadImage, open_image
from lumos.data.sources import Skip, model_scored, read_source
from lumos.utils import log, progress

CAPTIONED = ("pairs", "coco")  # splits whose images need captions (curation skips an item without one)


def score_part(split: str, sources, out: str, part: int = 0, parts: int = 1, files_per_unit: int = 10000,
               seed: int = 0, batch_size: int = 256, max_pixels: int = 1 << 28, device="cpu",
               workers: int | None = None) -> dict:
    """Score job `part` of `parts` of split `split`: write `{"key", "score"}` JSON lines to `out`
    for every decodable item of the model-scored `sources` (in curation's order). `workers`
    threads decode and resize (default: the CPUs this process may use). Returns the counts."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts, scorers = Counter(), {}
    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    start = time.time()
    bar = progress(desc=f"aesthetic {split} part {part}/{parts}", unit="img")
    with open(out, "w") as f, ThreadPoolExecutor(workers) as pool:
        for k, source in enumerate(sources):
            if not model_scored(source):
                continue
            scorer = _scorer(scorers, source.aesthetic["model"], f"data.sources.{split}.{k}.aesthetic.model", device)
            items = _wanted(read_source(source, part, parts, files_per_unit, seed, offset=k), split, counts)
            for batch in _batches(items, batch_size):
                fitted = list(pool.map(lambda item: _fit(scorer, item.image, max_pixels), batch))
                done = [(item.key, image) for item, image in zip(batch, fitted) if image is not None]
                for (key, _), score in zip(done, scorer.scores([image for _, image in done])):
                    f.write(json.dumps({"key": key, "score": float(score)}) + "\n")
                counts["scored"] += len(done)
                counts["unreadable"] += len(batch) - len(done)
                bar.update(len(batch))
    bar.close()
    secs = time.time() - start
    log.info("aesthetic %s part %d/%d: %s in %.1f s (%.1f images/s) -> %s", split, part, parts, dict(counts), secs,
             counts["scored"] / max(secs, 1e-9), out)
    return {**counts, "seconds": secs}


def load_scores(path: str) -> dict[str, float]:
    """{key: score} of one scoring job's file. It holds one curation job's share only (~0.5M
    keys at paper scale, some 50-80 MB as a dict), never a whole source."""
    scores = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                scores[row["key"]] = row["score"]
    return scores


def _scorer(cache: dict, spec: dict, key: str, device):
    """One AestheticScorer per distinct model block (sources sharing a model share it)."""
    from lumos.components.aesthetic import AestheticScorer

    name = json.dumps(spec, sort_keys=True)
    if name not in cache:
        cache[name] = AestheticScorer(spec, device, key)
    return cache[name]


def _wanted(items, split: str, counts: Counter):
    """The items curation would ask a score for: readable ones (Skips counted and dropped), with a
    caption in a captioned split."""
    for item in items:
        if isinstance(item, Skip):
            counts["unreadable"] += 1
        elif split in CAPTIONED and not item.caption:
            counts["no_caption"] += 1
        else:
            yield item


def _batches(items, size: int):
    """Lists of `size` consecutive items (the last one shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fit(scorer, image, max_pixels: int):
    """Decode one image as curation does and bring it to the scorer's input size; None when it
    cannot be decoded (curation counts it)."""
    try:
        return scorer.fit(open_image(image, max_pixels))
    except BadImage:
        return None
