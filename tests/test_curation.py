"""Curation from sources: folders and img2dataset webdataset shards, per-source filters, every bad
file a counted skip, many jobs gathered to what one job gives, labels, COCO captions, subsets."""

import io
import json
import tarfile
import zlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from lumos.data.curate import curate_part, gather_split
from lumos.data.shards import read_images, read_records
from lumos.data.sources import Source


def _png(size, colour=(255, 0, 0), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    """A 1x1 PNG whose header claims 30000 x 30000 pixels (crc fixed): a decompression bomb."""
    data = bytearray(_png((1, 1)))
    data[16:24] = (30000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _wds_shard(path, samples):
    """Write a tar shard of img2dataset-style members {key: {ext: bytes}}."""
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                _add(tar, f"{key}.{ext}", data)


def _meta(score, **kw):
    return json.dumps({"aesthetic": score, **kw}).encode()


def test_bad_file_corpus_every_reason_counted(tmp_path):
    """A folder of bad and odd files: each is kept (converted) or skipped under its own reason."""
    src = tmp_path / "src"
    src.mkdir()
    good = _png((80, 60))
    (src / "good.png").write_bytes(good)
    (src / "empty.jpg").write_bytes(b"")
    (src / "html.jpg").write_bytes(b"<html>not an image</html>")
    (src / "truncated.png").write_bytes(_png((90, 90), (0, 255, 0))[:60])
    (src / "bomb.png").write_bytes(_bomb())
    (src / "broken_link.png").symlink_to(src / "absent.png")
    (src / "small.png").write_bytes(_png((40, 40)))
    Image.new("CMYK", (70, 70), (0, 0, 0, 0)).save(src / "cmyk.jpg")  # white
    Image.fromarray(np.full((70, 70), 65535, np.uint16)).save(src / "grey16.png")  # white, not clipped grey
    rgba = Image.new("RGBA", (70, 70), (0, 0, 255, 0))  # fully transparent: white on composite
    rgba.save(src / "alpha.png")
    pal = Image.new("P", (70, 70), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.save(src / "palette.png", transparency=0)
    report = curate_part("imagenet", [Source("web", str(src), min_side=50)], 100, 16, 100, str(tmp_path / "out"))
    assert report["totals"] == {"seen": 11, "kept": 5, "empty": 1, "not_an_image": 1, "corrupt": 1, "too_large": 1,
                                "missing": 1, "too_small": 1}
    assert report["by_source"]["web"] == report["totals"]
    records = read_records(tmp_path / "out")
    images = dict(zip([r["key"] for r in records], read_images(tmp_path / "out")))
    assert set(images) == {f"web/{n}" for n in ("good.png", "cmyk.jpg", "grey16.png", "alpha.png", "palette.png")}
    for name in ("cmyk.jpg", "grey16.png", "alpha.png", "palette.png"):  # all white after conversion (±5)
        assert images[f"web/{name}"].min() >= 250, name
    assert tuple(images["web/good.png"][8, 8]) == (255, 0, 0)


def test_one_bomb_among_good_images_is_counted_and_the_job_finishes(tmp_path):
    _wds_shard(tmp_path / "00000.tar", {f"{i:09d}": {"png": _bomb() if i == 3 else _png((64, 64)), "txt": b"a",
                                                     "json": _meta(6.0)} for i in range(8)})
    report = curate_part("pool", [Source("laion", str(tmp_path), format="webdataset")], 100, 16, 100,
                         str(tmp_path / "out"))
    assert report["totals"] == {"seen": 8, "kept": 7, "too_large": 1}


def test_webdataset_source_filters_and_bad_members(tmp_path):
    """img2dataset shards: aesthetic > min from the metadata, min_side, missing caption (captioned
    split), missing image, unreadable JSON, a truncated shard; counts by source."""
    wds = tmp_path / "laion"
    wds.mkdir()
    _wds_shard(wds / "00000.tar", {
        "000000000": {"png": _png((600, 520)), "txt": b"a red thing", "json": _meta(5.6, long_caption="long one")},
        "000000001": {"png": _png((600, 520)), "txt": b"ugly", "json": _meta(5.5)},  # not > 5.5
        "000000002": {"png": _png((600, 500)), "txt": b"small", "json": _meta(6.0)},  # side 500 <= 512
        "000000003": {"png": _png((700, 700)), "json": _meta(6.1)},  # no caption
        "000000004": {"txt": b"no image", "json": _meta(6.2)},
        "000000005": {"png": _png((700, 700)), "txt": b"bad json", "json": b"{not json"},
        "000000006": {"png": _png((700, 700)), "txt": b"no score", "json": b"{}"},
        "000000007": {"png": _png((800, 600), (0, 0, 255)), "txt": b"blue", "json": _meta(7.0)},
    })
    full = (wds / "00000.tar").read_bytes()
    with tarfile.open(wds / "00000.tar") as tar:
        cut = tar.getmember("000000007.png").offset_data + 10
    (wds / "00001.tar").write_bytes(full[:cut])  # a copy cut inside the last image
    folder = tmp_path / "sam"
    folder.mkdir()
    (folder / "sam1.png").write_bytes(_png((300, 200)))
    (folder / "sam1.txt").write_text("from sam")
    sources = [Source("laion", str(wds), format="webdataset", min_side=512, aesthetic={"key": "aesthetic", "min": 5.5}),
               Source("sam", str(folder))]
    report = curate_part("pairs", sources, 100, 16, 100, str(tmp_path / "out"))
    laion = report["by_source"]["laion"]
    # shard 0 keeps 0 and 7; its cut copy keeps 0, counts 1-6 again, and its cut member as bad_tar
    assert laion == {"seen": 16, "kept": 3, "low_aesthetic": 2, "too_small": 2, "no_caption": 2, "no_image": 2,
                     "bad_json": 2, "no_aesthetic_score": 2, "bad_tar": 1}
    assert report["by_source"]["sam"] == {"seen": 1, "kept": 1}  # no filters on that source
    assert laion["seen"] == sum(v for k, v in laion.items() if k != "seen")
    records = read_records(tmp_path / "out")
    assert records[0]["key"] == "laion/00000/000000000" and records[0]["long_caption"] == "long one"
    assert records[0]["aesthetic"] == 5.6 and (records[0]["width"], records[0]["height"]) == (600, 520)
    assert [r["short_caption"] for r in records] == ["a red thing", "blue", "a red thing", "from sam"]


def test_jobs_gather_to_what_one_job_keeps_and_caps_are_shared(tmp_path):
    src = tmp_path / "src"
    for c in range(3):
        (src / f"class{c}").mkdir(parents=True)
        for i in range(7):
            (src / f"class{c}" / f"{i}.png").write_bytes(_png((40 + i, 40), (10 * c, 10 * i, 0)))
    source = [Source("imagenet", str(src), labels="folder")]
    one = curate_part("imagenet", source, 100, 16, 4, str(tmp_path / "one"), files_per_unit=5)
    for part in range(3):
        curate_part("imagenet", source, 100, 16, 4, str(tmp_path / f"p{part}"), part, 3, files_per_unit=5)
    gather_split([str(tmp_path / f"p{k}") for k in range(3)], str(tmp_path / "joined"))
    joined = json.loads((tmp_path / "joined" / "curation.json").read_text())
    assert joined["totals"] == one["totals"] == {"seen": 21, "kept": 21}
    a, b = read_records(tmp_path / "one"), read_records(tmp_path / "joined")
    assert sorted(r["key"] for r in a) == sorted(r["key"] for r in b)  # same images, in job order
    assert Counter(r["label"] for r in a) == {0: 7, 1: 7, 2: 7}
    assert {r["label_name"] for r in a if r["label"] == 2} == {"class2"}
    assert (tmp_path / "joined" / "contact_sheet.png").exists()
    # the split's n caps each job, and the gather cuts the joined split to n (the shard crossing it
    # rewritten with its head): units of 5 files, job k reads units k, k + 3, ...
    capped = [curate_part("imagenet", source, 10, 16, 4, str(tmp_path / f"c{k}"), k, 3, files_per_unit=5)
              for k in range(3)]
    assert [c["totals"]["kept"] for c in capped] == [10, 6, 5]
    index = gather_split([str(tmp_path / f"c{k}") for k in range(3)], str(tmp_path / "cut"), limit=13)
    assert index["n"] == 13 and index["shard_sizes"] == [4, 4, 2, 3]
    cut = json.loads((tmp_path / "cut" / "curation.json").read_text())["totals"]
    assert cut == {"seen": 21, "kept": 13, "over_n": 8}
    whole = read_records(tmp_path / "c0") + read_records(tmp_path / "c1")
    assert read_records(tmp_path / "cut") == whole[:13]
    assert np.array_equal(read_images(tmp_path / "cut"), np.concatenate([read_images(tmp_path / "c0"),
                                                                         read_images(tmp_path / "c1")])[:13])
    quota = curate_part("imagenet", [Source("imagenet", str(src), quota=5)], 100, 16, 4, str(tmp_path / "q"))
    assert quota["totals"]["kept"] == 5


def test_a_short_split_is_a_warning_noted_under_the_tables_or_an_error(tmp_path, caplog):
    """16 images for n = 24: a WARNING naming the split, its n and what was kept, `n` in
    curation.json and a note under Tables 1 and 2; with min_fraction 0.7 (16 < 0.7 x 24) an error."""
    import logging

    from lumos.report.markdown import short_split_notes

    src = tmp_path / "src"
    src.mkdir()
    for i in range(16):
        (src / f"{i}.png").write_bytes(_png((40, 40), (10 * i, 0, 0)))
    curate_part("pool", [Source("folder", str(src))], 24, 16, 8, str(tmp_path / "p0"))
    with caplog.at_level(logging.WARNING, logger="lumos"):
        gather_split([str(tmp_path / "p0")], str(tmp_path / "pool"), limit=24, min_fraction=0.5)
    assert "split pool is short of its n: kept 16 of n = 24 (67%" in caplog.text
    assert json.loads((tmp_path / "pool" / "curation.json").read_text())["n"] == 24
    note = short_split_notes([tmp_path / "pool", tmp_path / "absent"])
    assert note.startswith("Split pool is short: 16 of n = 24 images kept (67%")
    with pytest.raises(ValueError, match=r"kept 16 of n = 24 .*below data.curation.min_fraction = 0.7.*data.splits.pool.n"):
        gather_split([str(tmp_path / "p0")], str(tmp_path / "pool2"), limit=24, min_fraction=0.7)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lumos"):
        gather_split([str(tmp_path / "p0")], str(tmp_path / "pool3"), limit=16, min_fraction=0.7)
    assert "short" not in caplog.text and short_split_notes([tmp_path / "pool3"]) == ""


def test_coco_source_draws_images_and_one_caption_each_with_the_seed(tmp_path):
    (tmp_path / "val2014").mkdir()
    images, anns = [], []
    for i in range(10):
        name = f"COCO_val2014_{i:012d}.jpg"
        Image.new("RGB", (64, 48), (i * 20, 0, 0)).save(tmp_path / "val2014" / name)
        images.append({"id": i, "file_name": name})
        anns += [{"image_id": i, "caption": f"caption {k} of image {i}"} for k in range(5)]
    (tmp_path / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    source = Source("coco", str(tmp_path / "val2014"), format="coco", annotations=str(tmp_path / "captions.json"),
                    sample=6)
    runs = [curate_part("coco", [source], 100, 16, 100, str(tmp_path / f"out{k}"), seed=3) for k in range(2)]
    assert runs[0]["totals"] == {"seen": 6, "kept": 6}
    a, b = read_records(tmp_path / "out0"), read_records(tmp_path / "out1")
    assert a == b and len({r["key"] for r in a}) == 6  # six distinct images, deterministic
    for r in a:
        image = int(r["key"].split("_")[-1].split(".")[0])
        assert r["short_caption"].endswith(f"of image {image}")
        assert r["long_from_raw"] and r["long_caption"] == r["short_caption"]  # no long captions given: flagged
    long = {im["file_name"]: f"a long caption of image {im['id']}" for im in images}
    (tmp_path / "long.json").write_text(json.dumps(long))
    with_long = Source("coco", str(tmp_path / "val2014"), format="coco", annotations=str(tmp_path / "captions.json"),
                       sample=6, long_captions=str(tmp_path / "long.json"))
    curate_part("coco", [with_long], 100, 16, 100, str(tmp_path / "out_long"), seed=3)
    for r in read_records(tmp_path / "out_long"):
        assert "long_from_raw" not in r and r["long_caption"] == long[r["key"].split("/", 1)[1]]
    with pytest.raises(FileNotFoundError, match="annotations"):
        list(curate_part("coco", [Source("coco", str(tmp_path), format="coco")], 10, 16, 10, str(tmp_path / "x")))


def test_nested_subsets_do_not_depend_on_order():
    from lumos.data.subsets import in_subset, subset_values

    keys = [f"laion/{i:09d}" for i in range(5000)]
    u = subset_values(keys, seed=0)
    small, large = in_subset(u, 1000, 5000), in_subset(u, 2500, 5000)
    assert (small <= large).all()  # the 1000-subset is inside the 2500-subset
    assert abs(small.sum() - 1000) < 4 * np.sqrt(1000) and abs(large.sum() - 2500) < 4 * np.sqrt(1250)
    order = np.random.default_rng(1).permutation(5000)
    shuffled = in_subset(subset_values([keys[i] for i in order], seed=0), 1000, 5000)
    assert {keys[i] for i in order[shuffled]} == {k for k, s in zip(keys, small) if s}
    assert in_subset(u, None, 5000).all() and in_subset(u, 9000, 5000).all()
    assert (in_subset(subset_values(keys, seed=1), 1000, 5000) != small).any()  # the seed matters


def test_imagenet_labels_reach_features_and_class_runs_check_their_range(tmp_path):
    """Synset folders -> int labels in the records -> the feature shard's labels; a class run over
    ImageNet-1K has 1,000 classes, over the Shapes world 40, and a label outside stops it clearly."""
    from lumos.features import shard_labels
    from lumos.tasks.i2i import PoolRows, class_count
    from lumos.settings import RunSettings
    from lumos.store import write_store

    src = tmp_path / "train"
    for synset in ("n01440764", "n01443537"):
        (src / synset).mkdir(parents=True)
        (src / synset / "a.JPEG").write_bytes(_png((20, 20)))
    curate_part("imagenet1k", [Source("imagenet", str(src), labels="folder")], 10, 16, 10, str(tmp_path / "out"))
    records = read_records(tmp_path / "out")
    assert [(r["label"], r["label_name"]) for r in records] == [(0, "n01440764"), (1, "n01443537")]
    assert shard_labels(records).tolist() == [0, 1]
    imagenet = RunSettings.from_config({"injection": "class", "data": "imagenet1k"}, "pretrain.runs.class_i2i")
    shapes = RunSettings.from_config({"injection": "class"}, "pretrain.runs.class_i2i")
    assert (class_count(imagenet), class_count(shapes)) == (1000, 40)
    latents = np.zeros((4, 4, 2, 2), np.float16)
    write_store(tmp_path / "ok", {"latents": latents, "labels": np.array([0, 5, 999, 3])})
    assert PoolRows(str(tmp_path / "ok"), imagenet).sizes == [4]
    with pytest.raises(ValueError, match="outside the run's 40 classes"):
        PoolRows(str(tmp_path / "ok"), shapes)


def _jpeg(size, orientation=1, seed=0) -> bytes:
    """A smooth colour JPEG (q90) of `size` stored as is, with an EXIF orientation tag."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, exif=exif)
    return buf.getvalue()


def test_curation_decodes_only_what_it_keeps(tmp_path, monkeypatch):
    """Size checks come from the header: a too small image is never decoded (a truncated one is
    counted too_small, not corrupt), a too large one neither; what is kept is decoded once, reduced
    (1/2 here), and a truncated kept-size JPEG is corrupt."""
    from lumos.data import decode

    calls = []
    crop_resize = decode.LazyImage.crop_resize

    def spy(self, *args, **kwargs):
        try:
            return crop_resize(self, *args, **kwargs)
        finally:
            calls.append((self.stored_size, self._img.size))  # the size it was decoded at

    monkeypatch.setattr(decode.LazyImage, "crop_resize", spy)
    src = tmp_path / "src"
    src.mkdir()
    big = _jpeg((1200, 900))
    (src / "big.jpg").write_bytes(big)
    (src / "small.jpg").write_bytes(_jpeg((640, 480)))
    (src / "small_truncated.jpg").write_bytes(_jpeg((640, 480))[:3000])
    (src / "big_truncated.jpg").write_bytes(big[: len(big) // 2])
    (src / "huge.png").write_bytes(_bomb())
    report = curate_part("pool", [Source("web", str(src), min_side=512)], 100, 256, 100, str(tmp_path / "out"))
    assert report["totals"] == {"seen": 5, "kept": 1, "too_small": 2, "corrupt": 1, "too_large": 1}
    assert sorted(calls) == [((1200, 900), (600, 450)), ((1200, 900), (600, 450))]  # big, big_truncated


def test_exif_rotated_jpeg_is_curated_upright_into_its_bucket(tmp_path):
    """A JPEG stored landscape with EXIF orientation 6 (shown portrait): its record has the upright
    size, it goes to the portrait bucket, and its pixels match the full-size path (tolerance)."""
    from lumos.bench.data import full_decode_curation, output_difference

    src = tmp_path / "src"
    src.mkdir()
    data = _jpeg((1200, 800), orientation=6)
    (src / "rotated.jpg").write_bytes(data)
    buckets = [(192, 320), (256, 256), (320, 192)]
    curate_part("pool", [Source("web", str(src))], 10, 256, 10, str(tmp_path / "out"), buckets=buckets)
    portrait = tmp_path / "out" / "320x192"
    records = read_records(portrait)
    assert [(r["width"], r["height"]) for r in records] == [(800, 1200)]
    image = read_images(portrait)[0]
    assert image.shape == (320, 192, 3)
    assert output_difference([image], [full_decode_curation(data, 320, 192)])["image_mean"] < 1.0
