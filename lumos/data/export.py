"""Export a Shapes-world split in the layout img2dataset writes with ``--output_format webdataset``.

At paper scale the pool comes from LAION/COYO downloads made by img2dataset; exporting the
small presets' Shapes world in the same layout makes them run the same curation path::

    results/web/pool/
      00000.tar            000000000.png  000000000.txt  000000000.json  000000001.png ...
      00000.parquet        one row per sample: key, caption, status, width, height,
                           original_width, original_height, aesthetic, url, error_message
      00000_stats.json     {"count", "successes", "failed_to_download", "failed_to_resize", ...}
      00001.tar ...

Item ``i`` lies in shard ``i // shard_size`` under the key ``f"{shard:05d}{i % shard_size:04d}"``.
``<key>.txt`` is the short (web-like) caption; ``<key>.json`` also holds the long caption, the
scene, the class label, a synthetic ``aesthetic`` score and ``url = shapes://<split>/<i>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lumos.data.shards import encode_image
from lumos.utils import log, progress

MAX_SHARD_SIZE = 10000  # keys hold 4 digits for the index within a shard


def render_size(seed: int, split_id: int, i: int, image_size: int, small_fraction: float) -> int:
    """Size item ``i`` is rendered at: ``image_size`` for a seeded ``small_fraction`` of items
    (curation's "shorter side > image_size" filter drops them), ``2 * image_size`` otherwise."""
    small = np.random.default_rng([seed, split_id, i, 7]).random() < small_fraction
    return image_size if small else 2 * image_size


def aesthetic_score(seed: int, split_id: int, i: int, record: dict, size: int) -> float:
    """Synthetic aesthetic score of item ``i``: ``normal(5.0, 0.5)`` drawn from
    ``rng([seed, split_id, i, 8])``, plus 0.3 if the largest object's half-extent lies strictly in
    the upper half of ``size_range(size)``; clipped to [1, 10], rounded to 3 decimals.
    33-43% of items score <= 5.0 (measured over 16-64 px, 1-4 objects), so the paper's
    "aesthetic > 5.0" filter has work to do."""
    from lumos.data.worlds.shapes import size_range

    lo, hi = size_range(size)
    largest = max((o["size"] for o in record["scene"]["objects"]), default=0)
    score = np.random.default_rng([seed, split_id, i, 8]).normal(5.0, 0.5) + (0.3 if 2 * largest > lo + hi else 0.0)
    return round(float(np.clip(score, 1.0, 10.0)), 3)


def write_shard_tables(out: Path, shard: int, rows: list[dict]) -> None:
    """Write ``<shard>.parquet`` (one row per sample) and ``<shard>_stats.json`` beside the tar."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("key", pa.string()), ("caption", pa.string()), ("status", pa.string()),
                        ("width", pa.int64()), ("height", pa.int64()), ("original_width", pa.int64()),
                        ("original_height", pa.int64()), ("aesthetic", pa.float64()), ("url", pa.string()),
                        ("error_message", pa.string())])
    table = pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)
    pq.write_table(table, out / f"{shard:05d}.parquet")
    stats = {"count": len(rows), "successes": len(rows), "failed_to_download": 0, "failed_to_resize": 0,
             "status_dict": {"success": len(rows)}}
    (out / f"{shard:05d}_stats.json").write_text(json.dumps(stats, indent=1))


def export_shapes_webdataset(name: str, split: dict, image_size: int, seed: int, out_dir: str,
                             shard_size: int = 1000, part: int = 0, parts: int = 1,
                             small_fraction: float = 0.1, image_format: str = "png") -> dict:
    """Write split ``name`` (a key of ``SPLIT_IDS``; ``split`` has n, min_objects, max_objects) as
    img2dataset-layout webdataset shards in ``out_dir``. Job ``part`` of ``parts`` writes the shards
    ``k`` with ``k % parts == part``; shard contents do not depend on ``parts``. Streams one shard
    at a time (each tar is written to a temporary name, then renamed).
    Returns ``{"n": items written by this job, "shards": [tar names]}``."""
    import webdataset as wds

    from lumos.data.build import SPLIT_IDS
    from lumos.data.worlds.shapes import generate_item

    if name not in SPLIT_IDS:
        raise ValueError(f"unknown split '{name}': known splits are {sorted(SPLIT_IDS)}")
    if not 0 < shard_size <= MAX_SHARD_SIZE:
        raise ValueError(f"shard_size must be in 1..{MAX_SHARD_SIZE} (keys hold 4 digits), got {shard_size}")
    if not 0 <= part < parts:
        raise ValueError(f"part must be in 0..{parts - 1}, got {part}")
    n, lo, hi, sid = split["n"], split.get("min_objects", 1), split.get("max_objects", 4), SPLIT_IDS[name]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mine = [k for k in range((n + shard_size - 1) // shard_size) if k % parts == part]
    bar = progress(total=sum(min(n, (k + 1) * shard_size) - k * shard_size for k in mine), desc=f"export {name}")
    written, shards = 0, []
    for k in mine:
        tar, rows = out / f"{k:05d}.tar", []
        with wds.TarWriter(str(tar) + ".tmp") as sink:
            for i in range(k * shard_size, min(n, (k + 1) * shard_size)):
                size = render_size(seed, sid, i, image_size, small_fraction)
                image, record = generate_item(seed, i, size, lo, hi, sid)
                h, w = image.shape[:2]
                meta = {"key": f"{k:05d}{i % shard_size:04d}", "caption": record["short_caption"],
                        "long_caption": record["long_caption"], "status": "success", "error_message": None,
                        "width": w, "height": h, "original_width": w, "original_height": h,
                        "url": f"shapes://{name}/{i}", "aesthetic": aesthetic_score(seed, sid, i, record, size),
                        "label": record["label"], "scene": record["scene"]}
                sink.write({"__key__": meta["key"], image_format: encode_image(image, image_format),
                            "txt": meta["caption"].encode("utf-8"), "json": json.dumps(meta).encode("utf-8")})
                rows.append(meta)
                bar.update(1)
        os.replace(str(tar) + ".tmp", tar)
        write_shard_tables(out, k, rows)
        written, shards = written + len(rows), shards + [tar.name]
    bar.close()
    log.info("%s: exported %d items in %d webdataset shards (part %d/%d) to %s", name, written, len(shards),
             part, parts, out)
    return {"n": written, "shards": shards}
