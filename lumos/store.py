"""The feature store: a split's cached features as memory-mapped arrays, read by row.

A features folder (one per split, or one per aspect-ratio bucket of a bucketed split) holds one
sub-folder per data shard, and in it one uncompressed ``.npy`` file per array, so every array
opens with ``np.load(path, mmap_mode="r")`` and a batch reads only its own rows::

    results/features/pool/
      index.json            {"n", "shards": ["shard-00000", ...], "shard_sizes": [...], "encoders",
                             "patch_tokens", "latent_shape", "subset_seed", "parts"}
      shard-00000/
        latents.npy         (n, C, h, w) fp16: VAE latents
        dino_cls.npy        (n, D) fp16: an encoder's CLS token (<enc>_patch.npy (n, P, D) with patch tokens)
        labels.npy          (n,) int64: class labels, only where the shard's records carry them
        subset_u.npy        (n,) float64: seeded hash of each record's key (`lumos.data.subsets`)
      shard-00001/ ...

    results/features/pool+clip/   the same layout for a run whose condition encoder is not one of
                                  features.main_encoders: latents + that encoder's tokens

    results/features/pairs_text/
      index.json            {..., "tokens": {"t5": width}, "shard_tokens": {"shard-00000": {"t5": longest}},
                             "max_length": {"t5": 120}}
      shard-00000/
        t5_short.npy        (valid tokens of the shard's captions, D) fp16, caption after caption
        t5_short_len.npy    (n,) int32: each caption's token count
        t5_long.npy, t5_long_len.npy, clip_short.npy, ...

Caption tokens are ragged: only each caption's valid tokens are stored. A read pads them with
zeros to the folder's width (``tokens[enc]``: the longest caption of any shard, as the old dense
layout cut its width) and rebuilds the mask (`<key>_mask`, True for valid tokens); the model
never reads masked positions, so it sees exactly what the dense layout gave it.

Sizes at paper scale (30M caption pairs, Flan-T5-XXL D=4096 fp16: 8 KiB per token): padded to 120
tokens, 30M x 2 kinds x 120 x 8 KiB = 59 TB; ragged, with ~15 tokens per short (raw) caption and
~90 per long caption, 30M x (15 + 90) x 8 KiB = 25.8 TB (short 3.7 TB, long 22.1 TB), plus 0.24 GB
of lengths.

`FeatureStore` opens a folder lazily: memory-maps are opened on first use, per process (a
DataLoader worker opens its own after fork) and at most `max_open` at a time.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from lumos.data.subsets import in_subset
from lumos.data.buckets import bucket_dirs, index_buckets
from lumos.utils import atomic_write, fault_point, link_or_copy


def feature_index(features_dir) -> dict:
    """A features folder's index.json; a missing one names the rule to run."""
    path = Path(features_dir) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"missing feature index {path}: run the `features` rule for this split")
    return json.loads(path.read_text())


def to_ragged(tokens: np.ndarray, mask: np.ndarray, what: str = "tokens") -> tuple[np.ndarray, np.ndarray]:
    """Dense (n, L, D) tokens and (n, L) mask -> (valid tokens (T, D), lengths (n,) int32). The
    valid tokens of each row must come first (right padding), as tokenizers pad."""
    mask = np.asarray(mask).astype(bool)
    lengths = mask.sum(1).astype(np.int32)
    if not np.array_equal(mask, np.arange(mask.shape[1])[None] < lengths[:, None]):
        raise ValueError(f"{what}: the mask is not a prefix of each row (padding must come last)")
    keep = np.arange(mask.shape[1])[None] < lengths[:, None]
    return np.asarray(tokens)[keep], lengths


def write_shard(folder, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Write one feature shard: `folder/name/<key>.npy` for each array."""
    out = Path(folder) / name
    out.mkdir(parents=True, exist_ok=True)
    for key, value in arrays.items():
        atomic_write(out / f"{key}.npy", lambda tmp, v=value: np.save(tmp, np.ascontiguousarray(v)))
    fault_point("features")


def write_store(folder, arrays: dict[str, np.ndarray], shard_size: int | None = None, **meta) -> dict:
    """Write whole arrays as a features folder in shards of `shard_size` rows (tests, small tools).

    A key `k` with a companion `k_mask` is stored ragged (`k.npy` + `k_len.npy`); the index's
    `tokens` gets the longest caption per encoder (the key's prefix before its last `_`)."""
    n = len(next(iter(arrays.values())))
    shard_size = shard_size or max(n, 1)
    ragged = [k for k in arrays if f"{k}_mask" in arrays]
    Path(folder).mkdir(parents=True, exist_ok=True)
    shards, sizes, shard_tokens = [], [], {}
    for k, start in enumerate(range(0, n, shard_size)):
        name, part, rows = f"shard-{k:05d}", {}, slice(start, start + shard_size)
        for key, value in arrays.items():
            if key in ragged:
                part[key], part[f"{key}_len"] = to_ragged(value[rows], arrays[f"{key}_mask"][rows], key)
                enc = key.rsplit("_", 1)[0]
                widest = shard_tokens.setdefault(name, {})
                widest[enc] = max(widest.get(enc, 0), int(part[f"{key}_len"].max(initial=0)))
            elif not (key.endswith("_mask") and key[: -len("_mask")] in ragged):
                part[key] = value[rows]
        write_shard(folder, name, part)
        shards.append(name)
        sizes.append(min(shard_size, n - start))
    index = {"n": n, "shards": shards, "shard_sizes": sizes, **meta}
    if ragged:
        index["shard_tokens"] = shard_tokens
        index["tokens"] = max_tokens(shard_tokens.values())
    (Path(folder) / "index.json").write_text(json.dumps(index, indent=1))
    return index


def max_tokens(widths) -> dict[str, int]:
    """The per-encoder maximum of several {encoder: token count} dicts."""
    out: dict[str, int] = {}
    for w in widths:
        for enc, value in w.items():
            out[enc] = max(out.get(enc, 0), int(value))
    return out


class FeatureStore:
    """Random row access to a features folder (see the module docstring).

    `get(rows, keys)` returns the named arrays for any rows (sorted or not, repeats allowed) in the
    order asked: rows are grouped by shard and each shard's memory-map is read once. A ragged
    caption key `k` comes back as (B, width, D) zero-padded, and `k_mask` as its (B, width) mask.
    """

    def __init__(self, features_dir, max_open: int = 1024):
        self.folder = Path(features_dir)
        self.meta = feature_index(features_dir)
        self.shards = list(self.meta["shards"])
        if any(s.endswith(".npz") for s in self.shards):
            raise ValueError(f"{self.folder} holds features in the old .npz layout: rerun the features rule "
                             "(lumos features / text-features) to write memory-mappable shards")
        if "shard_sizes" not in self.meta or len(self.meta["shard_sizes"]) != len(self.shards):
            raise ValueError(f"{self.folder / 'index.json'}: `shard_sizes` must list one size per shard")
        self.sizes = [int(s) for s in self.meta["shard_sizes"]]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.n = int(self.offsets[-1])
        self.max_open = max_open
        self._cache, self._pid, self._listing = OrderedDict(), os.getpid(), {}

    def __getstate__(self):  # memory-maps are per process: a pickled store reopens them lazily
        return {**self.__dict__, "_cache": OrderedDict(), "_pid": None}

    def __len__(self) -> int:
        return self.n

    # -- files ----------------------------------------------------------------------------------

    def files(self, shard: int) -> list[str]:
        """The array names stored in shard number `shard` (without `.npy`)."""
        if shard not in self._listing:
            self._listing[shard] = sorted(p.stem for p in (self.folder / self.shards[shard]).glob("*.npy"))
        return self._listing[shard]

    def array(self, shard: int, name: str) -> np.ndarray:
        """The memory-mapped array `name` of shard number `shard` (opened once per process)."""
        if self._pid != os.getpid():
            self._cache, self._pid = OrderedDict(), os.getpid()
        key = (shard, name)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.folder / self.shards[shard] / f"{name}.npy"
        if not path.exists():
            raise KeyError(f"feature '{name}' not in {path.parent} (has {self.files(shard)})")
        value = np.load(path, mmap_mode="r")
        if name.endswith("_len"):  # ragged lengths: keep the start offsets beside them
            value = (np.asarray(value), np.concatenate([[0], np.cumsum(value, dtype=np.int64)]))
        self._cache[key] = value
        if len(self._cache) > self.max_open:
            self._cache.popitem(last=False)
        return value

    def kind(self, key: str) -> str:
        """'dense', 'ragged' (caption tokens) or 'mask' (a ragged key's rebuilt mask), from shard 0."""
        files = set(self.files(0)) if self.shards else set()
        if key in files and f"{key}_len" in files:
            return "ragged"
        if key.endswith("_mask") and f"{key[: -len('_mask')]}_len" in files:
            return "mask"
        if key in files:
            return "dense"
        where = self.folder / self.shards[0] if self.shards else self.folder
        raise KeyError(f"feature '{key}' not in {where} (has {sorted(files)})")

    def width(self, key: str) -> int:
        """The padded token count of a ragged key (or its mask): the folder's `tokens[encoder]`."""
        base = key[: -len("_mask")] if key.endswith("_mask") else key
        enc = base.rsplit("_", 1)[0]
        try:
            return int(self.meta["tokens"][enc])
        except KeyError:
            raise KeyError(f"{self.folder / 'index.json'} has no token width for encoder '{enc}' "
                           "(key 'tokens')") from None

    def row_shape(self, key: str) -> tuple[int, ...]:
        """The shape of one row of `key` as `get` returns it."""
        kind = self.kind(key)
        if kind == "dense":
            return tuple(self.array(0, key).shape[1:])
        if kind == "mask":
            return (self.width(key),)
        return (self.width(key), *self.array(0, key).shape[1:])

    # -- reading --------------------------------------------------------------------------------

    def _groups(self, rows: np.ndarray):
        """(shard, positions in `rows`, rows within the shard) for each shard `rows` touch, the
        rows within a shard ascending (memory-map friendly)."""
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n):
            raise IndexError(f"rows out of range 0..{self.n - 1} of {self.folder}")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        shard = np.searchsorted(self.offsets, ordered, side="right") - 1
        cuts = np.flatnonzero(np.diff(shard)) + 1
        for group in np.split(np.arange(len(rows)), cuts) if len(rows) else []:
            s = int(shard[group[0]])
            yield s, order[group], ordered[group] - self.offsets[s]

    def get(self, rows, keys: list[str]) -> dict[str, np.ndarray]:
        """The arrays `keys` at global `rows`, in the order of `rows` (stored dtypes: fp16 stays fp16)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = {}
        for key in keys:
            kind = self.kind(key)
            if kind == "dense":
                out[key] = self._dense(rows, key)
            else:
                base = key[: -len("_mask")] if kind == "mask" else key
                if base not in out:
                    out[base], out[f"{base}_mask"] = self._padded(rows, base)
        return {k: out[k] for k in keys}

    def _dense(self, rows: np.ndarray, key: str) -> np.ndarray:
        first = self.array(0, key)
        out = np.empty((len(rows), *first.shape[1:]), first.dtype)
        for s, where, local in self._groups(rows):
            arr = self.array(s, key)
            if arr.shape[1:] != out.shape[1:]:
                raise ValueError(f"{self.folder / self.shards[s] / key}.npy has rows of shape {arr.shape[1:]}, "
                                 f"shard 0 has {out.shape[1:]}")
            out[where] = arr[local]
        return out

    def _padded(self, rows: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Ragged `key` rebuilt as zero-padded (B, width, D) tokens and (B, width) mask."""
        width, dim = self.width(key), self.array(0, key).shape[1:]
        tokens = np.zeros((len(rows), width, *dim), self.array(0, key).dtype)
        lengths = np.zeros(len(rows), np.int64)
        for where, flat, starts, lens in self._ragged_groups(rows, key):
            if lens.max(initial=0) > width:
                raise ValueError(f"{self.folder}: a caption of '{key}' has {lens.max()} tokens, more than the "
                                 f"index's width {width} (key 'tokens')")
            for i, start, count in zip(where, starts, lens):
                tokens[i, :count] = flat[start : start + count]
            lengths[where] = lens
        return tokens, np.arange(width)[None] < lengths[:, None]

    def _ragged_groups(self, rows: np.ndarray, key: str):
        """(positions, the shard's token array, start offsets, lengths) per shard `rows` touch."""
        for s, where, local in self._groups(rows):
            lens, starts = self.array(s, f"{key}_len")
            yield where, self.array(s, key), starts[local], lens[local]

    def ragged(self, rows, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The stored valid tokens of `rows` of a ragged key, unpadded: ((T, D), lengths (B,) int32)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        pieces, lengths = [None] * len(rows), np.zeros(len(rows), np.int32)
        for where, flat, starts, lens in self._ragged_groups(rows, key):
            for i, start, count in zip(where, starts, lens):
                pieces[i] = flat[start : start + count]
            lengths[where] = lens
        dim = self.array(0, key).shape[1:]
        flat = np.concatenate(pieces) if len(rows) else np.zeros((0, *dim), self.array(0, key).dtype)
        return flat, lengths


class SubsetRows:
    """The rows of a store inside its nested subset of `size` (`lumos.data.subsets.in_subset` on
    each shard's `subset_u`), addressed by position 0..len-1 in store order.

    Memory is per shard, not per row: the member count of each shard is kept, and a shard's
    member list is rebuilt from its (memory-mapped) `subset_u` when a batch needs it."""

    def __init__(self, store: FeatureStore, size: int | None):
        self.store, self.size = store, size
        self.everything = size is None or size >= store.n
        counts = store.sizes if self.everything else [self._members(s).size for s in range(len(store.shards))]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _members(self, shard: int) -> np.ndarray:
        """Rows within `shard` that are in the subset."""
        return np.flatnonzero(in_subset(self.store.array(shard, "subset_u"), self.size, self.store.n))

    def rows(self, positions) -> np.ndarray:
        """Global store rows of subset positions (in the order given)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if self.everything:
            return positions
        shard = np.searchsorted(self.offsets, positions, side="right") - 1
        out = np.empty(len(positions), np.int64)
        for s in np.unique(shard):
            here = shard == s
            out[here] = self.store.offsets[s] + self._members(int(s))[positions[here] - self.offsets[s]]
        return out


def gather_parts(parts: list[str], out_dir: str) -> dict:
    """Join the folders of a split's feature jobs into one: each shard's files are hard-linked
    (copied across filesystems) and the indexes merged; every data shard must appear exactly once.
    Caption widths: `tokens` is the maximum over the parts. Bucketed parts are joined bucket by bucket."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buckets = bucket_dirs(parts[0])
    if buckets is not None:
        metas = {b.name: gather_parts([str(Path(p) / b.name) for p in parts], str(out / b.name)) for b in buckets}
        return index_buckets(out, metas, parts=len(parts))
    metas = [feature_index(p) for p in parts]
    shards = sorted(s for m in metas for s in m["shards"])
    if len(shards) != len(set(shards)):
        raise ValueError(f"feature parts overlap: {parts}")
    sizes, widths = {}, {}
    for p, m in zip(parts, metas):
        if len(m.get("shard_sizes") or []) != len(m["shards"]):
            raise ValueError(f"{Path(p) / 'index.json'} lists no `shard_sizes`: features of an older lumos; "
                             "rerun the features rule")
        for name, size in zip(m["shards"], m["shard_sizes"]):
            src = Path(p) / name
            if not src.is_dir():
                raise ValueError(f"{src} is not a feature shard folder (old .npz layout?): rerun the features rule")
            (out / name).mkdir(exist_ok=True)
            for f in sorted(src.iterdir()):
                link_or_copy(f, out / name / f.name)
            sizes[name] = size
        widths.update(m.get("shard_tokens", {}))
    meta = {k: v for m in metas for k, v in m.items()}  # shared keys; latent_shape from any part with shards
    meta.update(shards=shards, shard_sizes=[sizes[s] for s in shards], parts=len(parts))
    if any("tokens" in m for m in metas):
        meta.update(tokens=max_tokens(m.get("tokens", {}) for m in metas), shard_tokens=widths)
    if any("long_from_raw" in m for m in metas):
        meta["long_from_raw"] = {k: v for m in metas for k, v in m.get("long_from_raw", {}).items()}
    (out / "index.json").write_text(json.dumps(meta, indent=1))
    return meta
