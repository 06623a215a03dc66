"""Split storage: webdataset tar shards of encoded images, each image with its JSON record.

A split folder looks like::

    results/data/pool/
      shard-00000.tar      00000000.png + 00000000.json, 00000001.png + ..., in order
      index.json           {"n": ..., "image_size": ..., "shards": [...], "shard_sizes": [...]}
      contact_sheet.png    a grid of the first images, to look at
      curation.json        curated splits: what was kept and skipped, by source and reason

Images are PNG (lossless: evaluation splits, the small presets) or JPEG (`image_format: jpg`, the
paper's 190M-image pool: ~30 KB per 256 px image instead of 196 KB as raw pixels). A shard is read
on its own, records included, so a job that handles some shards never reads the rest of the split.
Shards are read with the `webdataset` library, so any webdataset tool can read a split too.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from lumos.utils import fault_point

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")


def encode_image(image: np.ndarray, image_format: str = "png", quality: int = 95) -> bytes:
    """A uint8 (H, W, 3) array as PNG or JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    elif image_format == "jpg":
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"image_format must be png or jpg, not '{image_format}'")
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes of a stored split image -> uint8 (H, W, 3)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def tar_samples(path, handler=None, images: bool = True):
    """The samples of one tar shard, in order: dicts of member extension -> bytes plus `__key__`,
    grouped by key (webdataset's iterators). `handler(exc)` decides about unreadable members
    (return True to go on); without one an error is raised. `images=False` skips image members
    unread (records only)."""
    from webdataset import tariterators

    select = None if images else (lambda name: not name.lower().endswith(IMAGE_EXTENSIONS))
    kwargs = {"handler": handler} if handler else {}
    streams = tariterators.url_opener([{"url": str(path)}], **kwargs)
    files = tariterators.tar_file_expander(streams, select_files=select, **kwargs)
    yield from tariterators.group_by_keys(files, **kwargs)


class ShardWriter:
    """Write images and records to `out_dir` as shards of `shard_size`, one shard open at a time,
    so memory does not grow with the split; `close()` writes `index.json` and returns it."""

    def __init__(self, out_dir, shard_size: int, image_format: str = "png", prefix: str = "shard", **meta):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.shard_size, self.image_format, self.prefix, self.meta = shard_size, image_format, prefix, meta
        self.shards, self.sizes, self.image_size, self._tar = [], [], None, None

    def write(self, image: np.ndarray, record: dict) -> None:
        from webdataset import TarWriter

        if self._tar is None or self.sizes[-1] >= self.shard_size:
            self._close_shard()
            self.shards.append(f"{self.prefix}-{len(self.shards):05d}.tar")
            self.sizes.append(0)
            self._tar = TarWriter(str(self.out / self.shards[-1]), mtime=0)
        if self.image_size is None:
            self.image_size = int(image.shape[0])
        ext = "jpg" if self.image_format == "jpg" else "png"
        self._tar.write({"__key__": f"{self.sizes[-1]:08d}", ext: encode_image(image, self.image_format),
                         "json": json.dumps(record).encode()})
        self.sizes[-1] += 1
        fault_point("shard")

    def _close_shard(self):
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def close(self) -> dict:
        self._close_shard()
        index = {"n": int(sum(self.sizes)), "image_size": self.image_size, "shards": self.shards,
                 "shard_sizes": self.sizes, "image_format": self.image_format, **self.meta}
        (self.out / "index.json").write_text(json.dumps(index, indent=1))
        return index


def write_split(out_dir, images, records: list[dict], shard_size: int, image_format: str = "png", **meta) -> dict:
    """Write `images` and `records` to `out_dir` as shards of `shard_size` images."""
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images but {len(records)} records")
    writer = ShardWriter(out_dir, shard_size, image_format, **meta)
    for image, record in zip(images, records):
        writer.write(np.asarray(image), record)
    return writer.close()


def split_index(split_dir) -> dict:
    """A split's index.json; a missing one names the rule to run."""
    path = Path(split_dir) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"missing split index {path}: run the workflow rule that writes {split_dir}")
    return json.loads(path.read_text())


def read_shard(split_dir, name: str, images: bool = True) -> tuple[np.ndarray | None, list[dict]]:
    """One shard's images (n, H, W, 3) uint8 (None with `images=False`) and records, in order."""
    path = Path(split_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"missing shard {path} listed in {Path(split_dir) / 'index.json'}")
    pixels, records = [], []
    for sample in tar_samples(path, images=images):
        records.append(json.loads(sample["json"]))
        if images:
            pixels.append(decode_image(next(sample[e] for e in IMAGE_EXTENSIONS if e in sample)))
    return (np.stack(pixels) if pixels else None), records


def iter_shards(split_dir, images: bool = True, limit: int | None = None):
    """(shard name, images, records) for each shard in order; with `limit`, stops after the shard
    holding the limit-th image (the caller cuts)."""
    total = 0
    for name in split_index(split_dir)["shards"]:
        if limit is not None and total >= limit:
            return
        pixels, records = read_shard(split_dir, name, images)
        total += len(records)
        yield name, pixels, records


def read_images(split_dir, limit: int | None = None) -> np.ndarray:
    """All images of a split as one (n, H, W, 3) uint8 array (the first `limit` if given): for
    the small evaluation splits; large splits are read shard by shard (`iter_shards`)."""
    images = np.concatenate([imgs for _, imgs, _ in iter_shards(split_dir, limit=limit)])
    return images[:limit] if limit is not None else images


def read_records(split_dir, limit: int | None = None) -> list[dict]:
    """The records of a split, in image order (image bytes are not read)."""
    records = [r for _, _, recs in iter_shards(split_dir, images=False, limit=limit) for r in recs]
    return records[:limit] if limit is not None else records


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
