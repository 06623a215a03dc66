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


def build_shapes_split(name: str, split: dict, image_size: int, seed: int, shard_size: int, out_dir: str) -> dict:
    """Generate a Shapes-world split deterministically and write shards plus a contact sheet."""
    from lumos.data.shapes import generate_split
    from lumos.viz import save_grid

    if name not in SPLIT_IDS:
        raise ValueError(f"unknown split '{name}': known splits are {sorted(SPLIT_IDS)}")
    images, records = generate_split(
        split["n"], seed, image_size=image_size, min_objects=split.get("min_objects", 1),
        max_objects=split.get("max_objects", 4), split_id=SPLIT_IDS[name],
    )
    write_split(out_dir, images, records, shard_size, source="shapes", split=name, seed=seed)
    save_grid(Path(out_dir) / "contact_sheet.png", images[:48], ncols=8, scale=3,
              labels=[r["short_caption"] for r in records[:48]])
    log.info("%s: %d images of %dpx written to %s", name, len(images), image_size, out_dir)
    return {"n": len(images)}


def _center_crop_resize(img, size: int) -> np.ndarray:
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def curate_folder(name: str, folder: str, n: int, image_size: int, min_side: int, shard_size: int, out_dir: str) -> dict:
    """Curate up to `n` images from `folder` (recursive): drop corrupt or non-RGB-convertible
    files and images whose shorter side is not greater than `min_side`; center-crop and resize
    the rest to `image_size`. Captioned splits (pairs, coco) read the raw caption from
    `<image>.txt` and the long one from `<image>.long.txt` (the raw one when absent) and skip
    images without a caption. Every skipped file is counted by reason in `curation.json`."""
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder for split '{name}' not found: '{folder}' (config key data.paths.{name})")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    counts = {"seen": 0, "kept": 0, "corrupt": 0, "too_small": 0, "no_caption": 0}
    images, records = [], []
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
                images.append(_center_crop_resize(img.convert("RGB"), image_size))
        except (UnidentifiedImageError, OSError, ValueError) as err:
            counts["corrupt"] += 1
            log.warning("skipping corrupt image %s: %s", path, err)
            continue
        records.append({"index": len(records), "source": str(path.relative_to(root)), "label": path.parent.name,
                        **captions})
        counts["kept"] += 1
    if not images:
        raise ValueError(f"no usable images in '{folder}' for split '{name}': {counts}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "curation.json").write_text(json.dumps(counts, indent=1))
    write_split(out_dir, np.stack(images), records, shard_size, source="paths", split=name, folder=str(folder))
    log.info("%s: curated %s", name, counts)
    return counts
