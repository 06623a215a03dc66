"""Feature caching: VAE latents, vision-encoder tokens and caption tokens, extracted once per split.

Training and sampling read these features; no VAE or encoder runs in the training loop. A split's
features folder has one shard per data shard, each array a memory-mappable `.npy` (the layout, and
its size at paper scale, is in `lumos.store`); `lumos.store.FeatureStore` reads rows from it.

Every job reads only its own data shards (records included): labels and the subset hash of a
feature shard come from that shard's records, caption widths from that shard's captions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from lumos.data.shards import read_shard, split_index
from lumos.data.subsets import subset_values
from lumos.settings import PATCH_SUBSETS
from lumos.store import FeatureStore, max_tokens, to_ragged, write_shard
from lumos.utils import log, progress

CAPTION_KINDS = ("short", "long")


def my_shards(split_dir: str, part: int, parts: int) -> tuple[dict, list[tuple[int, str, int, int]]]:
    """A split's index and the data shards job `part` of `parts` handles, as (shard number, file
    name, offset of its first image, image count): every `parts`-th shard, so jobs get equal
    shares (the last may get none)."""
    index = split_index(split_dir)
    if len(index.get("shard_sizes") or []) != len(index["shards"]):
        raise ValueError(f"{Path(split_dir) / 'index.json'} has no `shard_sizes` for its shards: rebuild the split")
    out, offset = [], 0
    for k, (name, size) in enumerate(zip(index["shards"], index["shard_sizes"])):
        if k % parts == part:
            out.append((k, name, offset, size))
        offset += size
    return index, out


def feature_shard_name(k: int) -> str:
    """The features shard folder of data shard number `k`."""
    return f"shard-{k:05d}"


def record_key(record: dict, where) -> str:
    """The record's unique key (`key`, or the Shapes-world `index` as a string)."""
    if "key" in record:
        return str(record["key"])
    if "index" in record:
        return str(record["index"])
    raise ValueError(f"{where}: a record has neither 'key' nor 'index' ({sorted(record)})")


def key_hashes(keys) -> np.ndarray:
    """64-bit blake2b hash of each key (uint64): how reused caption rows are found by key."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") for k in keys),
                       dtype=np.uint64)


def shard_labels(records: list[dict]) -> np.ndarray | None:
    """Class labels of one shard's images: the Shapes-world class of the largest object (records
    with a scene), else the records' int `label` (ImageNet-style sources) when every record has
    one; None otherwise (no labels array)."""
    if not records:
        return None
    if "scene" in records[0]:
        return scene_labels(records)
    if all(isinstance(r.get("label"), int) and not isinstance(r.get("label"), bool) for r in records):
        return np.array([r["label"] for r in records], dtype=np.int64)
    return None


def view_columns(records: list[dict], where) -> dict[str, np.ndarray]:
    """Rendered views (`lumos.data.worlds.shapes3d` splits: records with a camera): `c2w` (n, 4, 4)
    float32, each view's camera-to-world matrix, and `object` (n,) int64, the object it shows;
    {} for other splits."""
    if not records or "c2w" not in records[0]:
        return {}
    try:
        c2w = np.array([r["c2w"] for r in records], dtype=np.float32).reshape(len(records), 4, 4)
        objects = np.array([r["object"] for r in records], dtype=np.int64)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{where}: a view record lacks a 16-number `c2w` or an `object` ({err})") from None
    return {"c2w": c2w, "object": objects}


def extract_features(split_dir: str, out_dir: str, components: dict, encoders: list[str],
                     batch_size: int, patch_tokens: bool | list[str] = False, device="cpu", part: int = 0,
                     parts: int = 1, seed: int = 0) -> dict:
    """Encode the images of `split_dir` with the VAE and each named encoder; write shards: the
    CLS token of each encoder, and its patch tokens for the encoders in `patch_tokens` (True: all).

    With `parts` > 1 this job encodes only its share of the data shards (see `my_shards`);
    `lumos.store.gather_parts` joins the parts' folders into one. A bucketed split (Table S1's aspect-ratio
    buckets) gets one features folder per bucket, encoded by the same loaded models. `seed` (the
    config's) seeds each row's `subset_u`, the hash that picks Figure 2b's nested pool subsets."""
    from lumos.components.encoders import load_encoder
    from lumos.components.vae import load_vae
    from lumos.data.buckets import per_bucket

    codec = load_vae(components["vae"], device)
    encs = {name: load_encoder(components[name], name, device) for name in encoders}
    patch_tokens = list(encoders) if patch_tokens is True else sorted(set(patch_tokens or []) & set(encoders))
    args = (codec, encs, encoders, batch_size, patch_tokens, part, parts, seed)
    return per_bucket(_encode_split, split_dir, out_dir, *args) or _encode_split(split_dir, out_dir, *args)


def _encode_split(split_dir, out_dir, codec, encs, encoders, batch_size, patch_tokens, part, parts, seed=0) -> dict:
    """`extract_features` for one ordinary split, with the models already loaded."""
    index, mine = my_shards(split_dir, part, parts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards, sizes, meta_extra = [], [], {}
    for k, shard, _, count in mine:
        images, records = read_shard(split_dir, shard)
        where = Path(split_dir) / shard
        if len(records) != count:
            raise ValueError(f"{where} holds {len(records)} images but its index.json says {count}")
        arrays: dict[str, list] = {}
        for start in progress(range(0, count, batch_size), desc=f"features {shard}"):
            batch = images[start : start + batch_size]
            arrays.setdefault("latents", []).append(codec.encode(batch).cpu().half().numpy())
            for name, enc in encs.items():
                cls, patch = enc(batch)
                arrays.setdefault(f"{name}_cls", []).append(cls.cpu().half().numpy())
                if name in patch_tokens:
                    arrays.setdefault(f"{name}_patch", []).append(patch.cpu().half().numpy())
        columns = {key: np.concatenate(v) for key, v in arrays.items()}
        labels = shard_labels(records)
        if labels is not None:
            columns["labels"] = labels
        columns["subset_u"] = subset_values([record_key(r, where) for r in records], seed)
        columns.update(view_columns(records, where))
        write_shard(out, feature_shard_name(k), columns)
        shards.append(feature_shard_name(k))
        sizes.append(count)
        meta_extra["latent_shape"] = list(columns["latents"].shape[1:])
    meta = {"n": index["n"], "shards": shards, "shard_sizes": sizes, "encoders": encoders,
            "patch_tokens": patch_tokens, "subset_seed": seed, **meta_extra,
            **{k: index[k] for k in ("views_per_object", "kind") if k in index}}  # rendered views
    (out / "index.json").write_text(json.dumps(meta, indent=1))
    log.info("features of %s: %s", split_dir, {k: v for k, v in meta.items() if k not in ("shards", "shard_sizes")})
    return meta


def extract_text_features(split_dir: str, out_dir: str, components: dict, encoders: list[str], batch_size: int,
                          device="cpu", part: int = 0, parts: int = 1, reuse: tuple[str, str] | None = None) -> dict:
    """Encode every image's short and long caption with each text encoder; write shards.

    Arrays per shard (ragged, see `lumos.store`): `<enc>_short`, `<enc>_long` (valid tokens, D)
    fp16 with their lengths `<enc>_<kind>_len`, and `key_hash` (each record's key, hashed). Each
    shard's longest caption per encoder goes into the index (`shard_tokens`), and `tokens` is the
    longest of all (the width reads pad to; a gather takes the maximum over its parts).
    A bucketed split gets one folder per bucket, encoded by the same loaded encoders; with
    `reuse` = (text features folder, split folder) of the same curated images at a square size,
    its rows are copied from there instead (`reuse_text_features`) and no encoder runs.
    """
    from lumos.components.text import load_text_encoder
    from lumos.data.buckets import bucket_dirs, per_bucket

    if reuse and bucket_dirs(split_dir):
        return reuse_text_features(*reuse, split_dir, out_dir, part, parts)
    encs = {name: load_text_encoder(components[name], name, device) for name in encoders}
    args = (encs, encoders, batch_size, part, parts)
    return per_bucket(_encode_captions, split_dir, out_dir, *args) or _encode_captions(split_dir, out_dir, *args)


def _encode_captions(split_dir, out_dir, encs, encoders, batch_size, part, parts) -> dict:
    """`extract_text_features` for one ordinary split, with the encoders already loaded."""
    index, mine = my_shards(split_dir, part, parts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards, sizes, widths, long_from_raw = [], [], {}, {}
    for k, shard, _, count in mine:  # captions come from the records: the images are not read
        _, records = read_shard(split_dir, shard, images=False)
        where = Path(split_dir) / shard
        if records and "short_caption" not in records[0]:
            raise ValueError(f"split {split_dir} has no captions ({where}): text features need a captioned split "
                             "(pairs, coco)")
        arrays: dict[str, list] = {}
        for start in progress(range(0, count, batch_size), desc=f"text features {shard}"):
            recs = records[start : start + batch_size]
            for name, enc in encs.items():
                for kind in CAPTION_KINDS:
                    tokens, mask = enc([r[f"{kind}_caption"] for r in recs])
                    flat, lengths = to_ragged(tokens.cpu().half().numpy(), mask.cpu().numpy(),
                                              f"{name} {kind} captions of {where}")
                    arrays.setdefault(f"{name}_{kind}", []).append(flat)
                    arrays.setdefault(f"{name}_{kind}_len", []).append(lengths)
        columns = {key: np.concatenate(v) for key, v in arrays.items()}
        columns["key_hash"] = key_hashes([record_key(r, where) for r in records])
        name = feature_shard_name(k)
        long_from_raw[name] = sum(bool(r.get("long_from_raw")) for r in records)
        write_shard(out, name, columns)
        shards.append(name)
        sizes.append(count)
        widths[name] = {enc: int(max(columns[f"{enc}_{kind}_len"].max(initial=0) for kind in CAPTION_KINDS))
                        for enc in encs}
    meta = {"n": index["n"], "shards": shards, "shard_sizes": sizes, "encoders": encoders,
            "tokens": {**{enc: 0 for enc in encs}, **max_tokens(widths.values())}, "shard_tokens": widths,
            "max_length": {name: enc.max_length for name, enc in encs.items()},
            "long_from_raw": long_from_raw}  # per shard: captions whose long caption is the raw one
    (out / "index.json").write_text(json.dumps(meta, indent=1))
    log.info("text features of %s: %d captions, tokens %s, %d without a long caption", split_dir, sum(sizes),
             meta["tokens"], sum(long_from_raw.values()))
    return meta


def reuse_text_features(text_dir: str, source_split: str, split_dir: str, out_dir: str, part: int = 0,
                        parts: int = 1) -> dict:
    """Text features of a bucketed curated split, copied row by row from `text_dir`, the text
    features of `source_split`: the same sources curated at one square size, so the same images
    with the same captions. Each bucket image is found there by its record's key (`key_hash`); a
    key that is not there stops this. Job `part` of `parts` writes every `parts`-th shard of each
    bucket (see `my_shards`); it reads only its own bucket shards' records, one pass over the key
    hashes of `text_dir`, and the caption rows it copies. The width (`tokens`) stays `text_dir`'s."""
    from lumos.data.buckets import bucket_dirs, index_buckets

    source = FeatureStore(text_dir)
    if source.n != split_index(source_split)["n"]:
        raise ValueError(f"{text_dir} holds {source.n} caption rows but {source_split} has "
                         f"{split_index(source_split)['n']} images: not its text features")
    keys = [f[: -len("_len")] for f in source.files(0) if f.endswith("_len")] if source.shards else []
    todo, metas = [], {}  # (bucket, shard name, record keys); bucket -> index
    for bucket in bucket_dirs(split_dir):
        index, mine = my_shards(bucket, part, parts)
        metas[bucket.name] = {**{k: source.meta[k] for k in ("encoders", "tokens", "max_length")}, "n": index["n"],
                              "shards": [], "shard_sizes": [], "shard_tokens": {}, "reused_from": str(text_dir)}
        for k, shard, _, _ in mine:
            _, records = read_shard(bucket, shard, images=False)
            todo.append((bucket, feature_shard_name(k), [record_key(r, Path(bucket) / shard) for r in records]))
    hashes = [key_hashes(names) for _, _, names in todo]
    rows = _rows_of(source, np.concatenate(hashes) if hashes else np.zeros(0, np.uint64))
    at = 0
    for (bucket, name, names), h in zip(todo, hashes):
        mine, at = rows[at : at + len(h)], at + len(h)
        if (mine < 0).any():
            missing = names[int(np.flatnonzero(mine < 0)[0])]
            raise ValueError(f"{bucket}: image {missing} is not in {source_split}; curate both from the same "
                             "folder, or encode its captions")
        columns = {"key_hash": h}
        for key in keys:
            columns[key], columns[f"{key}_len"] = source.ragged(mine, key)
        write_shard(Path(out_dir) / bucket.name, name, columns)
        meta = metas[bucket.name]
        meta["shards"].append(name)
        meta["shard_sizes"].append(len(names))
        meta["shard_tokens"][name] = max_tokens({k.rsplit("_", 1)[0]: columns[f"{k}_len"].max(initial=0)}
                                                for k in keys)
    for bucket, bucket_meta in metas.items():
        (Path(out_dir) / bucket).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / bucket / "index.json").write_text(json.dumps(bucket_meta, indent=1))
    log.info("text features of %s: %d rows copied from %s", split_dir, len(rows), text_dir)
    return index_buckets(out_dir, metas)


def _rows_of(store: FeatureStore, hashes: np.ndarray) -> np.ndarray:
    """The store row of each key hash (-1 where absent), in one pass over the shards' `key_hash`."""
    wanted = np.unique(hashes)
    found = np.full(len(wanted), -1, np.int64)
    for s in progress(range(len(store.shards)) if len(wanted) else [], desc="find reused rows"):
        h = store.array(s, "key_hash")
        pos = np.minimum(np.searchsorted(wanted, h), len(wanted) - 1)
        hit = wanted[pos] == h
        found[pos[hit]] = store.offsets[s] + np.flatnonzero(hit)
    return found[np.searchsorted(wanted, hashes)] if len(hashes) else np.zeros(0, np.int64)


def scene_labels(records: list[dict]) -> np.ndarray | None:
    """Class label (shape x colour) of each Shapes-world image's largest object, for the
    class-to-image prior; None for curated folders (no scene ground truth)."""
    from lumos.data.worlds.shapes import class_index

    if not records or "scene" not in records[0]:
        return None
    return np.array([class_index(*max(((o["size"], o["shape"], o["colour"]) for o in r["scene"]["objects"]))[1:])
                     for r in records], dtype=np.int64)


def read_features(features_dir: str, keys: list[str], limit: int | None = None) -> dict[str, np.ndarray]:
    """The named arrays of the first `limit` rows (all without it) of a features folder, fp16 as
    float32, caption keys padded with their masks: for small splits (evaluation). Training reads
    rows by index through `lumos.store.FeatureStore` instead."""
    store = FeatureStore(features_dir)
    n = min(limit, store.n) if limit else store.n
    feats = store.get(np.arange(n), keys)
    return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in feats.items()}


def condition_tokens(features: dict[str, np.ndarray], encoder: str, tokens: str, injection: str,
                     patch_k: int | None = None, rows=None):
    """Condition tokens (n, L, D) and mask (n, L) for a run.

    cls: the encoder's CLS token; patch: its patch tokens; cls_patch: both. Figure S2's subsets:
    cls_top keeps the CLS and the `patch_k` patch tokens most similar to it (cosine of the final
    tokens: the paper's "tokens with a high correlation with the class token"), cls_random the CLS
    and `patch_k` random patch tokens, a fixed draw per image (seeded by its feature row, `rows`),
    the same at every epoch and at sampling. Cross-attention runs use L2-normalised tokens (as
    Lumos normalises the DINO CLS); adaLN (RCG) runs pass the raw global vector, which the model
    standardises per sample.
    """
    parts = []
    if tokens != "patch":
        parts.append(features[f"{encoder}_cls"][:, None])
    if tokens in ("patch", "cls_patch"):
        parts.append(features[f"{encoder}_patch"])
    elif tokens in PATCH_SUBSETS:
        parts.append(patch_subset(features[f"{encoder}_cls"], features[f"{encoder}_patch"], tokens, patch_k, rows))
    cond = torch.from_numpy(np.concatenate(parts, axis=1))
    if injection == "cross_attn":
        cond = torch.nn.functional.normalize(cond, dim=-1)
    mask = torch.ones(cond.shape[:2], dtype=torch.bool)
    return cond, mask


RANDOM_PATCH_SEED = 119  # seeds cls_random's per-image draw (with the row number)


def patch_subset(cls: np.ndarray, patch: np.ndarray, tokens: str, k: int, rows=None) -> np.ndarray:
    """`k` of each image's patch tokens (n, k, D), in their grid order: the most similar to its CLS
    (`cls_top`) or a random draw seeded by its row number (`cls_random`; `rows` the feature rows)."""
    n, count = patch.shape[:2]
    if not k or k > count:
        raise ValueError(f"patch_k must lie in [1, {count}] (the encoder's patch tokens), got {k}")
    if tokens == "cls_top":
        unit = patch / np.maximum(np.linalg.norm(patch, axis=-1, keepdims=True), 1e-12)
        sim = np.einsum("npd,nd->np", unit, cls / np.maximum(np.linalg.norm(cls, axis=-1, keepdims=True), 1e-12))
        keep = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    else:
        if rows is None:
            raise ValueError("cls_random needs the feature rows (a fixed draw per image)")
        keep = np.stack([np.random.default_rng([RANDOM_PATCH_SEED, int(r)]).choice(count, k, replace=False)
                         for r in rows])
    return np.take_along_axis(patch, np.sort(keep, axis=1)[..., None], axis=1)


def feature_keys(encoder: str, tokens: str) -> list[str]:
    """The feature arrays a run with this encoder and token set needs (besides latents)."""
    keys = [f"{encoder}_cls"] if tokens != "patch" else []
    return keys + ([f"{encoder}_patch"] if tokens != "cls" else [])
