"""Where a curated split's images come from: a list of sources, each read as a stream.

A source is a folder of images (read recursively, captions in `<image>.txt` / `<image>.long.txt`),
a folder of webdataset tar shards as img2dataset writes them (`<key>.jpg|png|webp` + `<key>.txt`
caption + `<key>.json` metadata), or a COCO folder with its captions annotation file. Each has its
own filters and quota (paper supplementary G.1, G.2). A source is cut into units (one tar shard,
or `files_per_unit` files of a folder); job `part` of `parts` reads every `parts`-th unit, so many
small jobs share a source and none holds more than one item at a time.

Reading yields `Item`s, or `Skip`s for what cannot be read (a bad tar member, bad JSON, a sample
without an image): counted by curation, never raised.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class Source:
    """One `data.sources.<split>` entry (schema defaults filled)."""

    name: str
    path: str
    format: str = "folder"
    quota: int | None = None
    min_side: int = 0
    aesthetic: dict | None = None  # {"min": keep scores above, and "key": metadata key | "model": {clip, head}}
    long_caption_key: str = "long_caption"
    labels: str = "none"  # "folder": the top-level sub-folder (ImageNet synset) -> class index
    annotations: str | None = None  # format coco: captions_val2014.json
    sample: int | None = None  # format coco: how many images to draw (one caption each)
    long_captions: str | None = None  # format coco: JSON {image file name: long caption}


@dataclass
class Item:
    """One readable sample of a source: its image (path or bytes) and what goes in its record."""

    key: str
    image: object  # Path or bytes
    caption: str | None = None
    long_caption: str | None = None
    meta: dict = field(default_factory=dict)
    label: int | None = None
    label_name: str | None = None


@dataclass
class Skip:
    """A sample curation cannot read, with the reason it is counted under."""

    reason: str
    detail: str = ""


def split_sources(cfg: dict, split: str) -> list[Source]:
    """The sources of a curated split: `data.sources.<split>`, or the shorthand `data.paths.<split>`
    (one folder, no filters). The config slice must hold those keys."""
    from lumos.config import validate_slice

    blocks = cfg.get(f"data.sources.{split}")
    if not blocks:
        folder = cfg.get(f"data.paths.{split}")
        if not folder:
            raise SystemExit(f"error: split '{split}' is curated but neither data.sources.{split} nor "
                             f"data.paths.{split} is set")
        blocks = [{"name": split, "path": folder}]
    blocks = validate_slice({f"data.sources.{split}": blocks})[f"data.sources.{split}"]
    for k, block in enumerate(blocks):
        check_aesthetic(block["aesthetic"], f"data.sources.{split}.{k}.aesthetic")
    sources = [Source(**b) for b in blocks]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise SystemExit(f"error: data.sources.{split} has repeated source names {names}")
    return sources


def check_aesthetic(aesthetic: dict | None, where: str) -> None:
    """A source's aesthetic filter takes its score from exactly one place: the metadata (`key`)
    or a model (`model`, scored by `lumos aesthetic-scores`). Raise ConfigError naming `where`."""
    from lumos.config import ConfigError

    if aesthetic and ("key" in aesthetic) == ("model" in aesthetic):
        got = "both" if "key" in aesthetic else "neither"
        raise ConfigError(f"config key '{where}': give exactly one of `key` (a score the metadata ships, e.g. "
                          f"aesthetic) or `model` ({{clip, head}}: score it with the LAION aesthetic predictor), "
                          f"got {got}")


def model_scored(source: Source) -> bool:
    """Whether a source's aesthetic score is computed by a model (GPU jobs) rather than read from
    its metadata."""
    return bool(source.aesthetic and source.aesthetic.get("model"))


def read_source(source: Source, part: int, parts: int, files_per_unit: int, seed: int = 0, offset: int = 0):
    """Yield the `Item`s and `Skip`s of job `part`'s units of `source` (unit u is this job's when
    (u + offset) % parts == part; `offset` spreads small sources over different jobs)."""
    root = Path(source.path)
    if not root.exists():
        raise FileNotFoundError(f"source '{source.name}': '{source.path}' not found (config data.sources / data.paths)")
    mine = lambda unit: (unit + offset) % parts == part  # noqa: E731
    if source.format == "webdataset":
        shards = sorted(root.glob("*.tar")) if root.is_dir() else [root]
        for unit, shard in enumerate(shards):
            if mine(unit):
                yield from _read_tar(source, shard)
    elif source.format == "coco":
        yield from _read_coco(source, mine, files_per_unit, seed)
    else:
        classes = _classes(root) if source.labels == "folder" else None
        for i, path in enumerate(_walk(root)):
            if mine(i // files_per_unit):
                yield _folder_item(source, root, path, classes)


def _walk(root: Path):
    """Image files under `root` in sorted order, one directory listed at a time (links included,
    broken ones too: reading them is a counted skip)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_SUFFIXES):
                yield Path(dirpath) / name


def _classes(root: Path) -> dict[str, int]:
    """Top-level sub-folders (ImageNet's 1,000 synsets, n01440764 ...) -> class index, sorted."""
    return {d: i for i, d in enumerate(sorted(e.name for e in os.scandir(root) if e.is_dir()))}


def _folder_item(source: Source, root: Path, path: Path, classes) -> Item:
    rel = path.relative_to(root)
    raw, long = path.with_suffix(".txt"), path.with_suffix(".long.txt")
    caption = raw.read_text().strip() if raw.exists() else None
    long_caption = long.read_text().strip() if long.exists() else None
    label = label_name = None
    if classes is not None and len(rel.parts) > 1:
        label_name = rel.parts[0]
        label = classes[label_name]
    return Item(f"{source.name}/{rel.as_posix()}", path, caption, long_caption, label=label, label_name=label_name)


def tar_items(shard: Path, payload_keys, missing: str, prefix: str = ""):
    """The samples of one webdataset shard (img2dataset, video2dataset) as (key, payload bytes,
    metadata dict, caption or None), key `<prefix><shard stem>/<sample key>` and payload the first
    member among `payload_keys`; or a Skip: `bad_tar` for an unreadable member or a broken shard
    (one per burst), `missing` for a sample without a payload, `bad_json` for bad metadata."""
    from lumos.data.shards import tar_samples

    errors = []
    handler = lambda exc: errors.append(exc) or True  # noqa: E731  (count and go on)
    for sample in tar_samples(shard, handler=handler):
        if errors:  # the library reports a broken member at each layer: one skip per burst
            yield Skip("bad_tar", f"{shard}: {errors[-1]}")
            errors.clear()
        key = f"{prefix}{shard.stem}/{sample['__key__'].rsplit('/', 1)[-1]}"
        payload = next((sample[k] for k in payload_keys if k in sample), None)
        if payload is None:
            yield Skip(missing, key)
            continue
        try:
            meta = json.loads(sample["json"]) if "json" in sample else {}
            if not isinstance(meta, dict):
                raise ValueError("metadata is not a JSON object")
        except (ValueError, UnicodeDecodeError) as err:
            yield Skip("bad_json", f"{key}: {err}")
            continue
        caption = sample["txt"].decode("utf-8", "replace").strip() if "txt" in sample else meta.get("caption")
        yield key, payload, meta, caption
    if errors:
        yield Skip("bad_tar", f"{shard}: {errors[-1]}")


def _read_tar(source: Source, shard: Path):
    """The samples of one img2dataset shard (`tar_items`) as Items."""
    for item in tar_items(shard, WDS_IMAGE_KEYS, "no_image", prefix=f"{source.name}/"):
        if isinstance(item, Skip):
            yield item
            continue
        key, image, meta, caption = item
        long_caption = meta.get(source.long_caption_key) or None
        label = meta.get("label") if isinstance(meta.get("label"), int) else None
        yield Item(key, image, caption, long_caption, meta, label)


def _read_coco(source: Source, mine, files_per_unit: int, seed: int):
    """COCO val2014 for FID-30K: `sample` images drawn with a fixed seed (all when unset), one of
    each image's captions drawn with the same seed, as the usual FID-30K protocol does."""
    import numpy as np

    if not source.annotations or not Path(source.annotations).exists():
        raise FileNotFoundError(f"source '{source.name}' (format coco) needs `annotations`: the COCO captions "
                                f"file, e.g. annotations/captions_val2014.json (got {source.annotations})")
    ann = json.loads(Path(source.annotations).read_text())
    captions: dict[int, list[str]] = {}
    for a in ann["annotations"]:
        captions.setdefault(a["image_id"], []).append(a["caption"].strip())
    images = sorted((im for im in ann["images"] if im["id"] in captions), key=lambda im: im["id"])
    long = json.loads(Path(source.long_captions).read_text()) if source.long_captions else {}
    if source.sample and source.sample < len(images):
        chosen = np.random.default_rng(seed).choice(len(images), source.sample, replace=False)
        images = [images[i] for i in sorted(chosen)]
    for i, im in enumerate(images):
        if mine(i // files_per_unit):
            options = sorted(captions[im["id"]])  # drawn per image: the same whatever the job split
            caption = options[int(np.random.default_rng([seed, im["id"]]).integers(len(options)))]
            yield Item(f"{source.name}/{im['file_name']}", Path(source.path) / im["file_name"], caption,
                       long.get(im["file_name"]))
