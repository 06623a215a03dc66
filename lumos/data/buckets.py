"""Aspect-ratio buckets for the multi-scale stage (Table S1 stage 4, after SDXL and PixArt-alpha).

A bucket is an image size ``(height, width)`` whose area is about ``resolution**2`` and whose sides
are multiples of ``multiple`` (the VAE's downsampling factor times the DiT patch size, so every
bucket has a whole number of tokens). Each training batch comes from one bucket.
A bucketed split is a folder holding one ordinary split per bucket, ``<height>x<width>/``, and a
``buckets.json`` listing them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def aspect_buckets(resolution: int, ratios, multiple: int) -> list[tuple[int, int]]:
    """One ``(height, width)`` per height/width ratio, area about ``resolution**2``, sides rounded
    to multiples of ``multiple``; duplicates after rounding are dropped, order kept."""
    if multiple < 1 or resolution < multiple:
        raise ValueError(f"resolution {resolution} must be at least the bucket multiple {multiple}")
    out = []
    for r in ratios:
        if r <= 0:
            raise ValueError(f"aspect ratio {r} must be positive (height / width)")
        h = max(multiple, round(resolution * math.sqrt(r) / multiple) * multiple)
        w = max(multiple, round(resolution / math.sqrt(r) / multiple) * multiple)
        if (h, w) not in out:
            out.append((h, w))
    return out


def nearest_bucket(height: int, width: int, buckets) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to ``height / width`` (in log ratio)."""
    target = math.log(height / width)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - target))


def bucket_name(bucket) -> str:
    """``(48, 88)`` -> ``"48x88"`` (height x width): the bucket's sub-folder."""
    return f"{bucket[0]}x{bucket[1]}"


def write_bucket_index(out_dir, buckets, counts: dict | None = None) -> None:
    """Write ``buckets.json``: the bucket sub-folders (sizes or names) and items per bucket."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    index = {"buckets": [b if isinstance(b, str) else bucket_name(b) for b in buckets], "counts": counts or {}}
    (Path(out_dir) / "buckets.json").write_text(json.dumps(index, indent=1))


def bucket_dirs(folder) -> list[Path] | None:
    """The bucket sub-folders of a bucketed split or feature folder, or None for an ordinary one."""
    index = Path(folder) / "buckets.json"
    if not index.exists():
        return None
    return [Path(folder) / name for name in json.loads(index.read_text())["buckets"]]


def per_bucket(fn, src_dir, out_dir, *args, **kwargs) -> dict | None:
    """Run ``fn(src_bucket, out_bucket, *args, **kwargs)`` for every bucket of a bucketed `src_dir`
    and index the results in `out_dir` (``buckets.json`` and an ``index.json`` summing ``n``);
    None when `src_dir` is an ordinary folder."""
    dirs = bucket_dirs(src_dir)
    if dirs is None:
        return None
    return index_buckets(out_dir, {d.name: fn(str(d), str(Path(out_dir) / d.name), *args, **kwargs) for d in dirs})


def index_buckets(out_dir, metas: dict, **extra) -> dict:
    """Index a bucketed folder from its buckets' index dicts {name: meta}: ``buckets.json`` and an
    ``index.json`` with the summed ``n``, no shards of its own, and `extra` keys."""
    write_bucket_index(out_dir, list(metas), {k: m.get("n") for k, m in metas.items()})
    meta = {"n": sum(m.get("n", 0) for m in metas.values()), "buckets": list(metas), "shards": [], **extra}
    (Path(out_dir) / "index.json").write_text(json.dumps(meta, indent=1))
    return meta
