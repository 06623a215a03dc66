"""Building one data split from the Shapes world (curated splits: `lumos.data.curate`)."""

from __future__ import annotations

import numpy as np

from lumos.utils import log, progress

# A fixed id per split keeps every split's random stream independent of the others.
SPLIT_IDS = {"pool": 0, "coco": 1, "imagenet": 2, "coco_ref": 3, "imagenet_ref": 4, "classifier": 5, "pairs": 6,
             "imagenet1k": 7}


def build_shapes_split(name: str, split: dict, image_size: int, seed: int, shard_size: int, out_dir: str,
                       buckets=None) -> dict:
    """Generate a Shapes-world split deterministically, one image at a time, into shards plus a
    contact sheet; every record gets a `key` (`shapes/<split>/<index>`).

    With `buckets` (a list of (height, width), Table S1's multi-scale stage) every item draws a
    bucket uniformly (from its own seed) and is rendered at that size; each bucket is written as an
    ordinary split in its own sub-folder (see `lumos.data.buckets`)."""
    from lumos.data.curate import _Writers, contact_sheet
    from lumos.data.worlds.shapes import generate_item

    if name not in SPLIT_IDS:
        raise ValueError(f"unknown split '{name}': known splits are {sorted(SPLIT_IDS)}")
    lo, hi, sid = split.get("min_objects", 1), split.get("max_objects", 4), SPLIT_IDS[name]
    writers = _Writers(out_dir, shard_size, "png", buckets, source="shapes", split=name, seed=seed)
    for i in progress(range(split["n"]), desc=f"generate {name}"):
        h, w = image_size, image_size
        if buckets:
            h, w = buckets[int(np.random.default_rng([seed, sid, i, 1]).integers(len(buckets)))]
        image, record = generate_item(seed, i, h, lo, hi, sid, image_width=w if buckets else None)
        writers.write(image, {"key": f"shapes/{name}/{i}", **record}, (h, w))
    counts = writers.close(out_dir)
    for folder in ([f"{out_dir}/{b}" for b, k in counts.items() if k] if counts else [out_dir]):
        contact_sheet(folder)
    log.info("%s: %d images of %dpx written to %s%s", name, split["n"], image_size, out_dir,
             f" in buckets {counts}" if counts else "")
    return {"n": split["n"], **({"buckets": counts} if counts else {})}
