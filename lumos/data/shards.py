"""Split storage: images as uint8 `.npz` shards plus one `records.jsonl` of ground truth.

A split folder looks like::

    results/data/pool/
      shard-00000.npz      images (n, H, W, 3) uint8
      records.jsonl        one JSON record per image, in order
      index.json           {"n": ..., "image_size": ..., "shards": [...]}
      contact_sheet.png    a grid of the first images, to look at
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_split(out_dir, images: np.ndarray, records: list[dict], shard_size: int, **meta) -> None:
    """Write `images` and `records` to `out_dir` as shards of `shard_size` images."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images but {len(records)} records")
    shards = []
    for k, start in enumerate(range(0, len(images), shard_size)):
        name = f"shard-{k:05d}.npz"
        np.savez(out / name, images=images[start : start + shard_size])
        shards.append(name)
    with open(out / "records.jsonl", "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    sizes = [len(images[start : start + shard_size]) for start in range(0, len(images), shard_size)]
    index = {"n": int(len(images)), "image_size": int(images.shape[1]), "shards": shards, "shard_sizes": sizes, **meta}
    (out / "index.json").write_text(json.dumps(index, indent=1))


def _index(split_dir) -> dict:
    path = Path(split_dir) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"missing split index {path}: run the workflow rule that writes {split_dir}")
    return json.loads(path.read_text())


def read_images(split_dir, limit: int | None = None) -> np.ndarray:
    """All images of a split as one (n, H, W, 3) uint8 array (the first `limit` if given)."""
    index = _index(split_dir)
    parts, total = [], 0
    for name in index["shards"]:
        path = Path(split_dir) / name
        if not path.exists():
            raise FileNotFoundError(f"missing shard {path} listed in {Path(split_dir) / 'index.json'}")
        with np.load(path) as z:
            parts.append(z["images"])
        total += len(parts[-1])
        if limit is not None and total >= limit:
            break
    images = np.concatenate(parts)
    return images[:limit] if limit is not None else images


def read_records(split_dir, limit: int | None = None) -> list[dict]:
    """The ground-truth records of a split, in image order."""
    _index(split_dir)
    records = []
    with open(Path(split_dir) / "records.jsonl") as f:
        for line in f:
            records.append(json.loads(line))
            if limit is not None and len(records) >= limit:
                break
    return records


def write_arrays(path, **arrays) -> None:
    """Save named arrays to one `.npz` file, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def read_arrays(path) -> dict[str, np.ndarray]:
    """Load every array of an `.npz` file; a missing file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing feature file {path}: run the workflow rule that writes it")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
