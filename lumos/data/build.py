"""Building one data split: generated from the Shapes world, or curated from image folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lumos.data.shards import write_split
from lumos.utils import log, progress

# A fixed id per split keeps every split's random stream independent of the others.
SPLIT_IDS = {"pool": 0, "coco": 1, "imagenet": 2, "coco_ref": 3, "imagenet_ref": 4, "classifier": 5, "pairs": 6}
CAPTIONED = ("pairs", "coco")  # curated splits whose images need captions (<image>.txt, <image>.long.txt)
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def build_shapes_split(name: str, split: dict, image_size: int, seed: int, shard_size: int, out_dir: str,
                       buckets=None) -> dict:
    """Generate a Shapes-world split deterministically and write shards plus a contact sheet.

    With `buckets` (a list of (height, width), Table S1's multi-scale stage) every item draws a
    bucket uniformly (from its own seed) and is rendered at that size; each bucket is written as an
    ordinary split in its own sub-folder (see `lumos.data.buckets`)."""
    from lumos.data.shapes import generate_item, generate_split

    if name not in SPLIT_IDS:
        raise ValueError(f"unknown split '{name}': known splits are {sorted(SPLIT_IDS)}")
    lo, hi, sid = split.get("min_objects", 1), split.get("max_objects", 4), SPLIT_IDS[name]
    if not buckets:
        images, records = generate_split(split["n"], seed, image_size=image_size, min_objects=lo, max_objects=hi,
                                          split_id=sid)
        _write_with_sheet(out_dir, images, records, shard_size, source="shapes", split=name, seed=seed)
        log.info("%s: %d images of %dpx written to %s", name, len(images), image_size, out_dir)
        return {"n": len(images)}
    images, records, sizes = [], [], []
    for i in progress(range(split["n"]), desc=f"{name} buckets"):
        h, w = buckets[int(np.random.default_rng([seed, sid, i, 1]).integers(len(buckets)))]
        image, record = generate_item(seed, i, h, lo, hi, sid, image_width=w)
        images.append(image)
        records.append(record)
        sizes.append((h, w))
    return _write_buckets(out_dir, images, records, sizes, buckets, shard_size, source="shapes", split=name, seed=seed)


def _write_with_sheet(out_dir, images, records, shard_size, **meta) -> None:
    from lumos.viz import save_grid

    write_split(out_dir, images, records, shard_size, **meta)
    labels = [r.get("short_caption", r.get("label", "")) or "" for r in records[:48]]
    save_grid(Path(out_dir) / "contact_sheet.png", images[:48], ncols=8, scale=3, labels=labels)


def _write_buckets(out_dir, images: list, records: list, sizes: list, buckets, shard_size: int, **meta) -> dict:
    """Group images and records by their (h, w) in `sizes`; write each non-empty bucket, in the
    order of `buckets`, as a split in its own sub-folder, and buckets.json."""
    from lumos.data.buckets import bucket_name, write_bucket_index

    groups = {tuple(b): ([], []) for b in buckets}
    for image, record, size in zip(images, records, sizes):
        groups[tuple(size)][0].append(image)
        groups[tuple(size)][1].append(record)
    kept = {b: g for b, g in groups.items() if g[0]}
    if not kept:
        raise ValueError(f"no images in any bucket for {out_dir}")
    for bucket, (images, records) in kept.items():
        _write_with_sheet(Path(out_dir) / bucket_name(bucket), np.stack(images), records, shard_size,
                          bucket=list(bucket), **meta)
    counts = {bucket_name(b): len(g[0]) for b, g in kept.items()}
    write_bucket_index(out_dir, list(kept), counts)
    log.info("%s: %d images in %d aspect-ratio buckets %s", out_dir, sum(counts.values()), len(counts), counts)
    return {"n": sum(counts.values()), "buckets": counts}


def _center_crop_resize(img, height: int, width: int | None = None) -> np.ndarray:
    """Center-crop a PIL image to the aspect ratio of `height` x `width` (square by default) and
    resize it to that size."""
    from PIL import Image

    width = width or height
    w, h = img.size
    scale = min(w / width, h / height)
    cw, ch = round(width * scale), round(height * scale)
    img = img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
    return np.asarray(img.resize((width, height), Image.BICUBIC), dtype=np.uint8)


def curate_folder(name: str, folder: str, n: int, image_size: int, min_side: int, shard_size: int, out_dir: str,
                  buckets=None) -> dict:
    """Curate up to `n` images from `folder` (recursive): drop corrupt or non-RGB-convertible
    files and images whose shorter side is not greater than `min_side`; center-crop and resize
    the rest to `image_size` (with `buckets`: to the (height, width) bucket nearest in aspect
    ratio, each bucket written as its own split, Table S1's multi-scale stage). Captioned splits
    (pairs, coco) read the raw caption from `<image>.txt` and the long one from `<image>.long.txt` (the raw one when absent) and skip
    images without a caption. Every skipped file is counted by reason in `curation.json`."""
    from PIL import Image, UnidentifiedImageError

    from lumos.data.buckets import nearest_bucket

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder for split '{name}' not found: '{folder}' (config key data.paths.{name})")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    counts = {"seen": 0, "kept": 0, "corrupt": 0, "too_small": 0, "no_caption": 0}
    images, records, sizes = [], [], []
    for path in progress(files, desc=f"curate {name}"):
        if len(images) >= n:
            break
        counts["seen"] += 1
        captions = {}
        if name in CAPTIONED:
            raw, long = path.with_suffix(".txt"), path.with_suffix(".long.txt")
            if not raw.exists():
                counts["no_caption"] += 1
                continue
            captions["short_caption"] = raw.read_text().strip()
            captions["long_caption"] = long.read_text().strip() if long.exists() else captions["short_caption"]
        try:
            with Image.open(path) as img:
                img.load()
                if min(img.size) <= min_side:
                    counts["too_small"] += 1
                    continue
                size = tuple(nearest_bucket(img.size[1], img.size[0], buckets)) if buckets else (image_size, image_size)
                images.append(_center_crop_resize(img.convert("RGB"), *size))
                sizes.append(size)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            counts["corrupt"] += 1
            log.warning("skipping corrupt image %s: %s", path, err)
            continue
        records.append({"index": len(records), "source": str(path.relative_to(root)), "label": path.parent.name,
                        **captions})
        counts["kept"] += 1
    if not images:
        raise ValueError(f"no usable images in '{folder}' for split '{name}': {counts}")
    if buckets:
        counts["buckets"] = _write_buckets(out_dir, images, records, sizes, buckets, shard_size, source="paths",
                                           split=name, folder=str(folder))["buckets"]
    else:
        write_split(out_dir, np.stack(images), records, shard_size, source="paths", split=name, folder=str(folder))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "curation.json").write_text(json.dumps(counts, indent=1))
    log.info("%s: curated %s", name, counts)
    return counts
