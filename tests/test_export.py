"""Shapes world exported in img2dataset's webdataset layout (lumos.data.export)."""

import io
import json
import re

import pandas as pd
import pytest
import webdataset as wds
from PIL import Image

from lumos.data.export import export_shapes_webdataset

SPLIT = {"n": 25, "min_objects": 1, "max_objects": 3}


def read_samples(folder) -> list[dict]:
    """All samples of the tars in `folder`, in shard order, as dicts of raw member bytes."""
    urls = [str(p) for p in sorted(folder.glob("*.tar"))]
    return list(wds.WebDataset(urls, shardshuffle=False))


def export(tmp_path, sub, split=SPLIT, image_size=16, **kw) -> tuple:
    """Export `split` into tmp_path/sub; return (folder, result)."""
    out = tmp_path / sub
    return out, export_shapes_webdataset("pool", split, image_size, 0, str(out), **kw)


def test_layout_and_members(tmp_path):
    out, res = export(tmp_path, "web", shard_size=10)
    assert res == {"n": 25, "shards": ["00000.tar", "00001.tar", "00002.tar"]}
    assert sorted(p.name for p in out.iterdir()) == [
        f"0000{k}{ext}" for k in range(3) for ext in (".parquet", ".tar", "_stats.json")]
    samples = read_samples(out)
    assert len(samples) == 25
    for k, count in enumerate([10, 10, 5]):
        stats = json.loads((out / f"{k:05d}_stats.json").read_text())
        assert stats["count"] == stats["successes"] == count and stats["failed_to_download"] == 0
        table = pd.read_parquet(out / f"{k:05d}.parquet")
        assert len(table) == count and set(table.status) == {"success"}
        assert {"key", "caption", "width", "height", "original_width", "original_height", "aesthetic",
                "url"} <= set(table.columns)
    for i, s in enumerate(samples):
        assert {"png", "txt", "json"} <= set(s)
        meta = json.loads(s["json"])
        assert re.fullmatch(r"\d{9}", s["__key__"]) and s["__key__"] == meta["key"] == f"{i // 10:05d}{i % 10:04d}"
        img = Image.open(io.BytesIO(s["png"]))
        assert img.size == (meta["width"], meta["height"]) == (meta["original_width"], meta["original_height"])
        assert s["txt"].decode("utf-8") == meta["caption"] and meta["long_caption"]
        assert meta["url"] == f"shapes://pool/{i}" and meta["status"] == "success"
    table = pd.concat([pd.read_parquet(out / f"{k:05d}.parquet") for k in range(3)], ignore_index=True)
    assert list(table.key) == [s["__key__"] for s in samples]
    assert list(table.caption) == [s["txt"].decode() for s in samples]


def test_parts_match_single_job(tmp_path):
    one, _ = export(tmp_path, "one", shard_size=10)
    r0 = export(tmp_path, "two", shard_size=10, part=0, parts=2)[1]
    two, r1 = export(tmp_path, "two", shard_size=10, part=1, parts=2)
    assert r0 == {"n": 15, "shards": ["00000.tar", "00002.tar"]} and r1 == {"n": 10, "shards": ["00001.tar"]}
    a, b = read_samples(one), read_samples(two)
    drop = ("__url__", "__local_path__")
    assert [{k: v for k, v in s.items() if k not in drop} for s in a] == \
           [{k: v for k, v in s.items() if k not in drop} for s in b]
    for k in range(3):
        assert pd.read_parquet(one / f"{k:05d}.parquet").equals(pd.read_parquet(two / f"{k:05d}.parquet"))


def test_small_fraction_and_aesthetic(tmp_path):
    """Over n=400 at image_size 16 (seed 0, 1-3 objects): 57 small items (0.1425; tolerance
    0.1 +- 0.05, ~3.3 binomial sd; seeds 1-5 give 0.045-0.10, n=20000 gives 0.1001) and 156
    items with aesthetic <= 5.0 (0.39; documented range 0.25-0.45)."""
    split = {"n": 400, "min_objects": 1, "max_objects": 3}
    out, _ = export(tmp_path, "a", split=split, shard_size=200)
    table = pd.concat([pd.read_parquet(out / f"{k:05d}.parquet") for k in range(2)], ignore_index=True)
    small = table.width == 16
    assert set(table.width[~small]) == {32} and (table.width == table.height).all()
    meta = [json.loads(s["json"]) for s in read_samples(out)]
    assert [m["width"] == 16 for m in meta] == list(small)
    assert abs(small.mean() - 0.1) <= 0.05
    low = (table.aesthetic <= 5.0).mean()
    assert 0.25 <= low <= 0.45, low
    assert table.aesthetic.between(1, 10).all() and (table.aesthetic.round(3) == table.aesthetic).all()
    again, _ = export(tmp_path, "b", split=split, shard_size=200)
    for k in range(2):
        assert pd.read_parquet(again / f"{k:05d}.parquet").equals(pd.read_parquet(out / f"{k:05d}.parquet"))


def test_jpg_and_bad_arguments(tmp_path):
    out, _ = export(tmp_path, "jpg", split={**SPLIT, "n": 3}, image_format="jpg")
    samples = read_samples(out)
    assert all("jpg" in s and Image.open(io.BytesIO(s["jpg"])).format == "JPEG" for s in samples)
    with pytest.raises(ValueError, match="shard_size"):
        export(tmp_path, "big", shard_size=10001)
    with pytest.raises(ValueError, match="unknown split"):
        export_shapes_webdataset("nope", SPLIT, 16, 0, str(tmp_path / "x"))
