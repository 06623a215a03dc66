"""Nested random subsets of a split (Figure 2b's pool-size ladder).

An image belongs to the subset of size N of a split of n images when its key's seeded hash,
read as a number u in [0, 1), is below N / n. Membership depends only on (seed, key): a 10M
subset is inside the 50M subset, and neither depends on folder or shard order.
"""

from __future__ import annotations

import hashlib

import numpy as np


def subset_value(key: str, seed: int) -> float:
    """The key's seeded hash as a number in [0, 1) (64 bits of blake2b)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def subset_values(keys, seed: int) -> np.ndarray:
    """`subset_value` of each key, float64."""
    return np.fromiter((subset_value(k, seed) for k in keys), dtype=np.float64)


def in_subset(values: np.ndarray, size: int | None, total: int) -> np.ndarray:
    """Boolean membership of rows with hash `values` in the subset of `size` of `total` images
    (every row when size is None or at least total)."""
    if size is None or size >= total:
        return np.ones(len(values), dtype=bool)
    return values < size / total
