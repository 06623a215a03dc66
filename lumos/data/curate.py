"""Curation: many small jobs stream their share of a split's sources into shards; a gather joins them.

A curation job (`curate_part`) reads its units of every source (`lumos.data.sources`), applies the
source's filters (caption present for captioned splits, aesthetic score from the metadata or from
the job's scores file (`lumos.data.aesthetic_scores`), shorter side > min_side, read from the
header), decodes what passes at the smallest JPEG scale its crop allows (`lumos.data.decode`:
reduced decode, resize straight from the crop box), and writes it at once to its own
shards (`lumos.data.shards.ShardWriter`): its memory does not depend on how many images it sees
(a scores file is one job's share, loaded whole). Every item is counted, by source and by
reason, in `curation.json`. `gather_split` links the parts' shards into the split folder,
renumbered, and sums the counts.

Why copies and not a manifest: a kept image is stored once at training size (256 px JPEG, ~30 KB:
~6 TB for the 190M pool, ~1 TB for the 30M pairs), while the sources hold it at > 512 px (4x or
more the pixels). Feature jobs then read compact shards that are independent of the source
layout, and a resolution variant or bucketed stage re-curates from the sources on its own.
A manifest (~200 B per row, ~40 GB) would make every feature job re-read and re-decode the full-size
source images.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from lumos.data.aesthetic_scores import CAPTIONED, load_scores
from lumos.data.decode import BadImage, center_box, open_image, open_lazy
from lumos.data.shards import ShardWriter, read_shard, split_index
from lumos.data.sources import Item, Skip, model_scored, read_source
from lumos.utils import link_or_copy, log, progress


def center_crop_resize(img, height: int, width: int | None = None) -> np.ndarray:
    """Center-crop a PIL image to the aspect ratio of `height` x `width` (square by default,
    `lumos.data.decode.center_box`) and resize it to that size (bicubic). Curation's own images take
    `LazyImage.crop_resize` instead (reduced decode, resize from the crop box)."""
    from PIL import Image

    width = width or height
    return np.asarray(img.crop(center_box(*img.size, height, width)).resize((width, height), Image.BICUBIC),
                      dtype=np.uint8)


class _Writers:
    """One ShardWriter, or one per aspect-ratio bucket (Table S1's multi-scale stage)."""

    def __init__(self, out_dir, shard_size, image_format, buckets, **meta):
        from lumos.data.buckets import bucket_name

        self.buckets = [tuple(b) for b in buckets] if buckets else None
        keys = self.buckets or [None]
        self.writers = {b: ShardWriter(Path(out_dir) / bucket_name(b) if b else out_dir, shard_size, image_format,
                                       **({"bucket": list(b)} if b else {}), **meta) for b in keys}

    def size_for(self, img, image_size: int) -> tuple[int, int]:
        from lumos.data.buckets import nearest_bucket

        return tuple(nearest_bucket(img.size[1], img.size[0], self.buckets)) if self.buckets else (image_size, image_size)

    def write(self, image, record, size):
        self.writers[size if self.buckets else None].write(image, record)

    def close(self, out_dir) -> dict:
        from lumos.data.buckets import bucket_name, write_bucket_index

        indexes = {b: w.close() for b, w in self.writers.items()}
        if not self.buckets:
            return {}
        for b, index in indexes.items():  # an empty bucket is no split
            if not index["n"]:
                shutil.rmtree(self.writers[b].out)
        kept = [b for b in self.buckets if indexes[b]["n"]]
        counts = {bucket_name(b): indexes[b]["n"] for b in kept}
        write_bucket_index(out_dir, kept, counts)
        return counts


def curate_part(name: str, sources, n: int, image_size: int, shard_size: int, out_dir: str, part: int = 0,
                parts: int = 1, buckets=None, image_format: str = "png", max_pixels: int = 1 << 28,
                files_per_unit: int = 10000, seed: int = 0, scores: str | None = None) -> dict:
    """Curate job `part` of `parts` of split `name` from `sources` into `out_dir`.

    Each job keeps at most the split's `n` (the gather cuts the joined split to `n`) and
    ceil(quota / parts) of each source: a source's quota is shared evenly by the jobs, which is
    even when the source has many units (LAION: tens of thousands of shards). Returns and writes
    `curation.json`: counts by source ({seen, kept, <skip reason>: k}) and their totals.

    `scores`: the file of scoring job `part` of `parts` (`lumos aesthetic-scores`), needed when a
    source's aesthetic has a `model`. It is loaded whole as {key: score}: this job's share only
    (~0.5M keys at paper scale, some 50-80 MB)."""
    scored = [s.name for s in sources if model_scored(s)]
    if scored and not scores:
        raise ValueError(f"split {name}: sources {scored} compute their aesthetic score with a model; curation "
                         "needs this job's scores file (lumos aesthetic-scores, then lumos data --scores)")
    table = load_scores(scores) if scored else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writers = _Writers(out, shard_size, image_format, buckets, source="curated", split=name)
    counts: dict[str, Counter] = {}
    left = n
    bar = progress(desc=f"curate {name} part {part}/{parts}", unit="img")
    for k, source in enumerate(sources):
        c = counts.setdefault(source.name, Counter())
        quota = math.ceil(source.quota / parts) if source.quota else None
        for item in read_source(source, part, parts, files_per_unit, seed, offset=k):
            if left <= 0 or (quota is not None and c["kept"] >= quota):
                break
            c["seen"] += 1
            bar.update()
            reason = item.reason if isinstance(item, Skip) else _keep(item, source, name, image_size, max_pixels,
                                                                      writers, table)
            if reason:
                c[reason] += 1
                if isinstance(item, Skip):
                    log.warning("skipped (%s) %s", item.reason, item.detail)
                continue
            c["kept"] += 1
            left -= 1
    bar.close()
    by_bucket = writers.close(out)
    totals = sum(counts.values(), Counter())
    report = {"split": name, "part": part, "parts": parts, "totals": dict(totals),
              "by_source": {s: dict(c) for s, c in counts.items()}, **({"buckets": by_bucket} if by_bucket else {})}
    (out / "curation.json").write_text(json.dumps(report, indent=1))
    log.info("%s part %d/%d: %s", name, part, parts, dict(totals))
    return report


def _aesthetic(item: Item, source, scores: dict | None):
    """An item's aesthetic score: from its scoring job's file when the source's aesthetic has a
    `model`, else the metadata's `key`; None when absent or not a number."""
    score = scores.get(item.key) if model_scored(source) else item.meta.get(source.aesthetic["key"])
    if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score):
        return None
    return score


def _unscored(item: Item, source, max_pixels: int) -> str:
    """Why an item has no aesthetic score: `no_aesthetic_score`, or, for a model-scored source, the
    decode reason of an image its scoring job could not read (it is counted as such)."""
    if model_scored(source):
        try:
            open_image(item.image, max_pixels)
        except BadImage as bad:
            log.warning("skipped (%s) %s: %s", bad.reason, item.key, bad.detail)
            return bad.reason
    return "no_aesthetic_score"


def _keep(item: Item, source, split: str, image_size: int, max_pixels: int, writers: _Writers,
          scores: dict | None = None) -> str | None:
    """Filter, decode and write one item; the skip reason, or None when it was kept."""
    if split in CAPTIONED and not item.caption:
        return "no_caption"
    score = None
    if source.aesthetic:
        score = _aesthetic(item, source, scores)
        if score is None:
            return _unscored(item, source, max_pixels)
        if score <= source.aesthetic["min"]:
            return "low_aesthetic"
    try:  # the header first: a too large or too small image is never decoded
        with open_lazy(item.image, max_pixels) as img:
            if min(img.stored_size) <= source.min_side:
                return "too_small"
            size = writers.size_for(img, image_size)  # the upright size (EXIF orientation)
            pixels = img.crop_resize(*size)  # reduced decode of what is kept (lumos.data.decode)
    except BadImage as bad:
        log.warning("skipped (%s) %s: %s", bad.reason, item.key, bad.detail)
        return bad.reason
    record = {"key": item.key, "source": source.name, "label": item.label, "width": img.size[0],
              "height": img.size[1]}
    if item.label_name:
        record["label_name"] = item.label_name
    if score is not None:
        record["aesthetic"] = score
    if item.caption:  # a missing long caption repeats the raw one, flagged: long-caption uses refuse it
        record.update(short_caption=item.caption, long_caption=item.long_caption or item.caption)
        if not item.long_caption:
            record["long_from_raw"] = True
    writers.write(pixels, record, size)
    return None


def gather_split(parts: list[str], out_dir: str, limit: int | None = None, sheet: bool = True,
                 min_fraction: float = 0.0) -> dict:
    """Join the part folders of a split: shards hard-linked in part order and renumbered, index and
    `curation.json` (counts summed by source and reason, and the split's `n`) written, a contact
    sheet drawn. With `limit` (the split's n) only the first `limit` images are kept, the rest
    counted as `over_n`; a curated split short of it is a WARNING, and an error below
    `min_fraction` of it. Bucketed parts are joined bucket by bucket (and not cut to `limit`)."""
    from lumos.data.buckets import bucket_dirs, write_bucket_index

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buckets = bucket_dirs(parts[0])
    if buckets is not None:
        counts = {b.name: _gather_shards([str(Path(p) / b.name) for p in parts], out / b.name, sheet)[0]["n"]
                  for b in buckets}
        write_bucket_index(out, [b.name for b in buckets], counts)
        (out / "index.json").write_text(json.dumps({"n": sum(counts.values()), "buckets": list(counts), "shards": []}))
        index, dropped = {"n": sum(counts.values()), "buckets": counts}, Counter()
    else:
        index, dropped = _gather_shards(parts, out, sheet, limit)
    reports = [json.loads((Path(p) / "curation.json").read_text()) for p in parts
               if (Path(p) / "curation.json").exists()]
    if reports:
        by_source: dict[str, Counter] = {}
        for r in reports:
            for s, c in r["by_source"].items():
                by_source.setdefault(s, Counter()).update(c)
        for s, k in dropped.items():
            by_source[s].update(kept=-k, over_n=k)
        totals = sum(by_source.values(), Counter())
        report = {"split": reports[0]["split"], "parts": len(parts), "n": limit if buckets is None else None,
                  "totals": dict(totals), "by_source": {s: dict(c) for s, c in by_source.items()}}
        (out / "curation.json").write_text(json.dumps(report, indent=1))
        if not totals.get("kept"):
            raise ValueError(f"no usable images for split {report['split']}: {dict(totals)} (see {out}/curation.json)")
        log.info("%s: kept %d of %d seen; skipped %s", report["split"], totals["kept"], totals["seen"],
                 {k: v for k, v in totals.items() if k not in ("seen", "kept")})
        check_shortfall(report, min_fraction, out / "curation.json")
    return index


def check_shortfall(report: dict, min_fraction: float, path) -> None:
    """A split that kept fewer images than its n: a WARNING naming it, its n and what was kept
    (the tables note it too), or an error below `min_fraction` of n (data.curation.min_fraction)."""
    n, kept = report.get("n"), report["totals"].get("kept", 0)
    if not n or kept >= n:
        return
    what = (f"split {report['split']} is short of its n: kept {kept} of n = {n} ({100 * kept / n:.0f}%; "
            f"skipped {({k: v for k, v in report['totals'].items() if k not in ('seen', 'kept')})}, see {path})")
    if kept < min_fraction * n:
        raise ValueError(f"{what}: below data.curation.min_fraction = {min_fraction}. Add sources, loosen their "
                         f"filters, or lower data.splits.{report['split']}.n")
    log.warning("%s; the tables note it", what)


def _gather_shards(parts: list[str], out: Path, sheet: bool, limit: int | None = None) -> tuple[dict, Counter]:
    """Link the parts' shards into `out`, renumbered; with `limit`, keep only the first `limit`
    images (the shard that crosses it is rewritten with its head, member bytes copied as they
    are). Returns the index and the images dropped over the limit, by source."""
    out.mkdir(parents=True, exist_ok=True)
    metas = [split_index(p) for p in parts]
    shards, sizes, dropped = [], [], Counter()
    for p, meta in zip(parts, metas):
        for name, size in zip(meta["shards"], meta["shard_sizes"]):
            keep = size if limit is None else min(size, limit - sum(sizes))
            if keep < size:
                dropped.update(r["source"] for r in read_shard(p, name, images=False)[1][keep:])
            if keep <= 0:
                continue
            shards.append(f"shard-{len(shards):05d}.tar")
            sizes.append(keep)
            if keep == size:
                link_or_copy(Path(p) / name, out / shards[-1])
            else:
                _copy_head(Path(p) / name, out / shards[-1], keep)
    sized = [m for m in metas if m.get("image_size")]
    index = {**(sized[0] if sized else metas[0]), "n": int(sum(sizes)), "shards": shards, "shard_sizes": sizes,
             "parts": len(parts)}
    (out / "index.json").write_text(json.dumps(index, indent=1))
    if sheet and shards:
        contact_sheet(out)
    return index, dropped


def _copy_head(src: Path, dst: Path, k: int) -> None:
    """Write the first `k` samples of tar shard `src` to `dst`, bytes unchanged."""
    from webdataset import TarWriter

    from lumos.data.shards import tar_samples

    with TarWriter(str(dst), mtime=0) as tar:
        for i, sample in enumerate(tar_samples(src)):
            if i >= k:
                break
            tar.write({k_: v for k_, v in sample.items() if k_ == "__key__" or not k_.startswith("__")})


def contact_sheet(split_dir, n: int = 48) -> None:
    """`contact_sheet.png`: the split's first `n` images with their captions or labels, to look at."""
    from lumos.viz import save_grid

    images, records = read_shard(split_dir, split_index(split_dir)["shards"][0])
    labels = [str(r.get("short_caption", r.get("label_name", r.get("label", ""))) or "") for r in records[:n]]
    scale = max(1, 96 // max(images.shape[1:3]))
    save_grid(Path(split_dir) / "contact_sheet.png", images[:n], ncols=8, scale=scale, labels=labels)
