"""Feature caching: VAE latents, vision-encoder tokens and caption tokens, extracted once per split.

Training and sampling read these shards; no VAE or encoder runs in the training loop.
A split's features folder mirrors its image shards::

    results/features/pool/shard-00000.npz   latents (n, C, h, w) fp16, dino_cls (n, D), moco_cls, ...
    results/features/pool/index.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lumos.data.shards import read_records
from lumos.utils import link_or_copy, log, progress


def my_shards(split_dir: str, part: int, parts: int) -> tuple[dict, list[tuple[int, str, int, int]]]:
    """A split's index and the data shards job `part` of `parts` handles, as (shard number, file
    name, offset of its first image, image count): every `parts`-th shard, so jobs get equal
    shares (the last may get none)."""
    index = json.loads((Path(split_dir) / "index.json").read_text())
    sizes = index.get("shard_sizes") or [None] * len(index["shards"])
    out, offset = [], 0
    for k, (name, size) in enumerate(zip(index["shards"], sizes)):
        if size is None:  # older split folders without shard sizes: read the shard
            with np.load(Path(split_dir) / name) as z:
                size = len(z["images"])
        if k % parts == part:
            out.append((k, name, offset, size))
        offset += size
    return index, out


def extract_features(split_dir: str, out_dir: str, components: dict, encoders: list[str],
                     batch_size: int, patch_tokens: bool = False, device="cpu", part: int = 0, parts: int = 1) -> dict:
    """Encode the images of `split_dir` with the VAE and each named encoder; write shards.

    With `parts` > 1 this job encodes only its share of the data shards (see `my_shards`);
    `gather_parts` joins the parts' folders into one. A bucketed split (Table S1's aspect-ratio
    buckets) gets one features folder per bucket, encoded by the same loaded models."""
    from lumos.components.encoders import load_encoder
    from lumos.components.vae import load_vae
    from lumos.data.buckets import per_bucket

    codec = load_vae(components["vae"], device)
    encs = {name: load_encoder(components[name], name, device) for name in encoders}
    args = (codec, encs, encoders, batch_size, patch_tokens, part, parts)
    return per_bucket(_encode_split, split_dir, out_dir, *args) or _encode_split(split_dir, out_dir, *args)


def _encode_split(split_dir, out_dir, codec, encs, encoders, batch_size, patch_tokens, part, parts) -> dict:
    """`extract_features` for one ordinary split, with the models already loaded."""
    index, mine = my_shards(split_dir, part, parts)
    labels = scene_labels(read_records(split_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards, meta_extra = [], {}
    for k, shard, offset, _ in mine:
        with np.load(Path(split_dir) / shard) as z:
            images = z["images"]
        arrays: dict[str, list] = {}
        for start in progress(range(0, len(images), batch_size), desc=f"features {shard}"):
            batch = images[start : start + batch_size]
            arrays.setdefault("latents", []).append(codec.encode(batch).cpu().half().numpy())
            for name, enc in encs.items():
                cls, patch = enc(batch)
                arrays.setdefault(f"{name}_cls", []).append(cls.cpu().half().numpy())
                if patch_tokens:
                    arrays.setdefault(f"{name}_patch", []).append(patch.cpu().half().numpy())
        name = f"shard-{k:05d}.npz"
        if labels is not None:
            arrays["labels"] = [labels[offset : offset + len(images)]]
        np.savez(out / name, **{key: np.concatenate(v) for key, v in arrays.items()})
        shards.append(name)
        meta_extra["latent_shape"] = list(arrays["latents"][0].shape[1:])
    meta = {"n": index["n"], "shards": shards, "encoders": encoders, "patch_tokens": patch_tokens, **meta_extra}
    (out / "index.json").write_text(json.dumps(meta, indent=1))
    log.info("features of %s: %s", split_dir, meta)
    return meta


CAPTION_KINDS = ("short", "long")


def extract_text_features(split_dir: str, out_dir: str, components: dict, encoders: list[str], batch_size: int,
                          device="cpu", part: int = 0, parts: int = 1, reuse: tuple[str, str] | None = None) -> dict:
    """Encode every image's short and long caption with each text encoder; write shards.

    Arrays per shard: `<enc>_short`, `<enc>_long` (n, L, D) fp16 and their masks (n, L). Tokens
    are padded to the encoder's max_length (120 for T5) and masked; the stored width is cut to the
    longest caption of the split, which changes nothing the model reads (padding is masked).
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
    records = read_records(split_dir)
    if not records or "short_caption" not in records[0]:
        raise ValueError(f"split {split_dir} has no captions: text features need a captioned split (pairs, coco)")
    widths = {name: max(int(enc.tokenize(batch)["attention_mask"].sum(1).max())
                        for kind in CAPTION_KINDS
                        for batch in _chunks([r[f"{kind}_caption"] for r in records], 4096))
              for name, enc in encs.items()}
    index, mine = my_shards(split_dir, part, parts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for k, shard, offset, count in mine:  # captions come from the records: the images are not read
        recs = records[offset : offset + count]
        arrays: dict[str, list] = {}
        for start in progress(range(0, count, batch_size), desc=f"text features {shard}"):
            for name, enc in encs.items():
                for kind in CAPTION_KINDS:
                    tokens, mask = enc([r[f"{kind}_caption"] for r in recs[start : start + batch_size]])
                    arrays.setdefault(f"{name}_{kind}", []).append(tokens[:, : widths[name]].cpu().half().numpy())
                    arrays.setdefault(f"{name}_{kind}_mask", []).append(mask[:, : widths[name]].cpu().numpy())
        name = f"shard-{k:05d}.npz"
        np.savez(out / name, **{key: np.concatenate(v) for key, v in arrays.items()})
        shards.append(name)
    meta = {"n": index["n"], "shards": shards, "encoders": encoders, "tokens": widths,
            "max_length": {name: enc.max_length for name, enc in encs.items()}}
    (out / "index.json").write_text(json.dumps(meta, indent=1))
    log.info("text features of %s: %s", split_dir, meta)
    return meta


def gather_parts(parts: list[str], out_dir: str) -> dict:
    """Join the folders of a split's feature jobs into one: shard files are hard-linked (copied
    across filesystems) and the indexes merged; every data shard must appear exactly once.
    Bucketed parts are joined bucket by bucket."""
    from lumos.data.buckets import bucket_dirs, index_buckets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buckets = bucket_dirs(parts[0])
    if buckets is not None:
        metas = {b.name: gather_parts([str(Path(p) / b.name) for p in parts], str(out / b.name)) for b in buckets}
        return index_buckets(out, metas, parts=len(parts))
    metas = [json.loads((Path(p) / "index.json").read_text()) for p in parts]
    shards = sorted(s for m in metas for s in m["shards"])
    if len(shards) != len(set(shards)):
        raise ValueError(f"feature parts overlap: {parts}")
    for p, m in zip(parts, metas):
        for name in m["shards"]:
            link_or_copy(Path(p) / name, out / name)
    meta = {k: v for m in metas for k, v in m.items()}  # shared keys; latent_shape from any part with shards
    meta.update(shards=shards, parts=len(parts))
    (out / "index.json").write_text(json.dumps(meta, indent=1))
    return meta


def reuse_text_features(text_dir: str, source_split: str, split_dir: str, out_dir: str, part: int = 0,
                        parts: int = 1) -> dict:
    """Text features of a bucketed curated split, copied row by row from `text_dir`, the text
    features of `source_split`: the same folder curated at one square size, so the same images in
    the same order with the same captions. Each bucket record's `index` is its row there (its
    `source` file must match, or this stops). One pass over `text_dir`'s shards; a bucket shard is
    written as soon as its rows are in. Job `part` of `parts` writes every `parts`-th shard of
    each bucket (see `my_shards`)."""
    from lumos.data.buckets import bucket_dirs, index_buckets

    source = read_records(source_split)
    meta = json.loads((Path(text_dir) / "index.json").read_text())
    offsets = {name: (offset, count) for _, name, offset, count in my_shards(source_split, 0, 1)[1]}
    todo, metas = {}, {}  # (bucket, shard name) -> rows of text_dir it takes, in order; bucket -> index
    for bucket in bucket_dirs(split_dir):
        records = read_records(bucket)
        index, mine = my_shards(bucket, part, parts)
        metas[bucket.name] = {**{k: meta[k] for k in ("encoders", "tokens", "max_length")}, "n": index["n"],
                              "shards": [name for _, name, _, _ in mine], "reused_from": str(text_dir)}
        for _, name, offset, count in mine:
            rows = []
            for r in records[offset : offset + count]:
                if "index" not in r or r["index"] >= len(source) or source[r["index"]]["source"] != r["source"]:
                    raise ValueError(f"{bucket}: image {r.get('source')} is not row {r.get('index')} of "
                                     f"{source_split}; curate both from the same folder, or encode its captions")
                rows.append(r["index"])
            todo[(bucket.name, name)] = np.asarray(rows)
    filling: dict = {}
    for shard in progress(sorted(meta["shards"]), desc="reuse text features"):
        start, count = offsets[shard]
        with np.load(Path(text_dir) / shard) as z:
            arrays = {k: z[k] for k in z.files}
        for (bucket, name), rows in list(todo.items()):
            here = (rows >= start) & (rows < start + count)
            if not here.any():
                continue
            out = filling.setdefault((bucket, name), {k: np.zeros((len(rows), *a.shape[1:]), a.dtype)
                                                      for k, a in arrays.items()})
            for k, a in arrays.items():
                out[k][here] = a[rows[here] - start]
            if rows[-1] < start + count:  # rows only increase, so the shard is complete
                (Path(out_dir) / bucket).mkdir(parents=True, exist_ok=True)
                np.savez(Path(out_dir) / bucket / name, **filling.pop((bucket, name)))
                del todo[(bucket, name)]
    if todo:
        raise ValueError(f"rows of {sorted(todo)} are not in {text_dir}")
    for bucket, bucket_meta in metas.items():
        (Path(out_dir) / bucket).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / bucket / "index.json").write_text(json.dumps(bucket_meta, indent=1))
    log.info("text features of %s: %d rows copied from %s", split_dir, sum(m["n"] for m in metas.values()), text_dir)
    return index_buckets(out_dir, metas)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def scene_labels(records: list[dict]) -> np.ndarray | None:
    """Class label (shape x colour) of each Shapes-world image's largest object, for the
    class-to-image prior; None for curated folders (no scene ground truth)."""
    from lumos.data.shapes import class_index

    if not records or "scene" not in records[0]:
        return None
    return np.array([class_index(*max(((o["size"], o["shape"], o["colour"]) for o in r["scene"]["objects"]))[1:])
                     for r in records], dtype=np.int64)


def feature_index(features_dir: str) -> dict:
    """A features folder's index.json; a missing one names the rule to run."""
    path = Path(features_dir) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"missing feature index {path}: run the `features` rule for this split")
    return json.loads(path.read_text())


def read_features(features_dir: str, keys: list[str], limit: int | None = None) -> dict[str, np.ndarray]:
    """Concatenate the named arrays over a features folder's shards (float32); with `limit`, only
    the first `limit` rows (later shards are not read)."""
    parts: dict[str, list] = {k: [] for k in keys}
    total = 0
    for shard in feature_index(features_dir)["shards"]:
        if limit and total >= limit:
            break
        with np.load(Path(features_dir) / shard) as z:
            for k in keys:
                if k not in z.files:
                    raise KeyError(f"feature '{k}' not in {Path(features_dir) / shard} (has {z.files})")
                parts[k].append(z[k].astype(np.float32))
        total += len(parts[keys[0]][-1])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    return {k: v[:limit] for k, v in out.items()} if limit else out


def condition_tokens(features: dict[str, np.ndarray], encoder: str, tokens: str, injection: str):
    """Condition tokens (n, L, D) and mask (n, L) for a run.

    cls: the encoder's CLS token; patch: its patch tokens; cls_patch: both. Cross-attention runs
    use L2-normalised tokens (as Lumos normalises the DINO CLS); adaLN (RCG) runs pass the raw
    global vector, which the model standardises per sample.
    """
    parts = []
    if tokens in ("cls", "cls_patch"):
        parts.append(features[f"{encoder}_cls"][:, None])
    if tokens in ("patch", "cls_patch"):
        parts.append(features[f"{encoder}_patch"])
    cond = torch.from_numpy(np.concatenate(parts, axis=1))
    if injection == "cross_attn":
        cond = torch.nn.functional.normalize(cond, dim=-1)
    mask = torch.ones(cond.shape[:2], dtype=torch.bool)
    return cond, mask


def feature_keys(encoder: str, tokens: str) -> list[str]:
    """The feature arrays a run with this encoder and token set needs (besides latents)."""
    keys = [f"{encoder}_cls"] if tokens in ("cls", "cls_patch") else []
    return keys + ([f"{encoder}_patch"] if tokens in ("patch", "cls_patch") else [])
