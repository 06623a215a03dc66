"""Table S1's multi-scale stage: aspect-ratio buckets, rectangular Shapes scenes, bucketed splits
and features, and training that draws each batch from one bucket (resumable like any run)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lumos.data.buckets import aspect_buckets, bucket_dirs, nearest_bucket


def test_buckets_keep_area_ratio_and_multiple():
    buckets = aspect_buckets(1024, [0.25, 0.5, 1.0, 2.0, 4.0], 16)
    assert buckets[2] == (1024, 1024) and buckets[1] == (720, 1456) and buckets[3] == (1456, 720)
    for (h, w), r in zip(buckets, [0.25, 0.5, 1.0, 2.0, 4.0]):
        assert h % 16 == 0 and w % 16 == 0
        assert abs(h * w / 1024**2 - 1) < 0.03  # area within 3% of 1024^2
        assert abs(math.log(h / w / r)) < 0.05  # ratio within 5%
    assert aspect_buckets(64, [0.5, 0.51, 1.0], 8) == [(48, 88), (64, 64)]  # rounding duplicates dropped
    with pytest.raises(ValueError, match="positive"):
        aspect_buckets(64, [0.0], 8)


def test_nearest_bucket_by_log_ratio():
    buckets = [(48, 88), (64, 64), (88, 48)]
    assert nearest_bucket(300, 600, buckets) == (48, 88)  # landscape 1:2
    assert nearest_bucket(500, 480, buckets) == (64, 64)
    assert nearest_bucket(1000, 400, buckets) == (88, 48)  # portrait


def test_rectangular_scene_ground_truth_matches_pixels():
    from lumos.data.worlds.shapes import COLOURS, generate_item, render, visible_mask, Scene

    for i in range(20):
        image, record = generate_item(0, i, 24, 1, 3, split_id=6, image_width=56)
        assert image.shape == (24, 56, 3)
        scene = Scene.from_dict(record["scene"])
        assert (render(scene) == image).all() and scene.width == 56
        for k, obj in enumerate(scene.objects):
            x0, y0, x1, y1 = obj.box
            assert 0 <= x0 < x1 <= 56 and 0 <= y0 < y1 <= 24  # fully inside the wide canvas
            pixels = image[visible_mask(scene, k)]
            base = np.array(COLOURS[obj.colour])
            assert len(pixels) and (np.abs(pixels.astype(int) - base).max(1) <= 80).mean() > 0.5
    # deterministic; the square default is unchanged by the width option
    a, _ = generate_item(0, 3, 24, 1, 3, split_id=6, image_width=56)
    b, _ = generate_item(0, 3, 24, 1, 3, split_id=6, image_width=56)
    c, rc = generate_item(0, 3, 32, 1, 3, split_id=6)
    d, rd = generate_item(0, 3, 32, 1, 3, split_id=6, image_width=None)
    assert (a == b).all() and (c == d).all() and rc == rd and "image_width" not in json.dumps(rc)


def test_bucketed_shapes_split_writes_one_split_per_bucket(tmp_path):
    from lumos.data.build import build_shapes_split
    from lumos.data.shards import read_images, read_records

    buckets = aspect_buckets(32, [0.5, 1.0, 2.0], 8)
    out = build_shapes_split("pairs", {"n": 30, "max_objects": 2}, 32, 0, 100, str(tmp_path / "p"), buckets=buckets)
    dirs = bucket_dirs(tmp_path / "p")
    assert [d.name for d in dirs] == ["24x48", "32x32", "48x24"] and out["n"] == 30
    seen = []
    for d, (h, w) in zip(dirs, buckets):
        images, records = read_images(d), read_records(d)
        assert images.shape[1:] == (h, w, 3) and len(images) == out["buckets"][d.name]
        seen += [r["index"] for r in records]
        assert all(r["scene"]["image_size"] == h and r["short_caption"] for r in records)
    assert sorted(seen) == list(range(30))  # every item in exactly one bucket


def test_bucketed_curation_crops_each_image_to_its_nearest_bucket(tmp_path):
    from lumos.data.shards import read_images, read_records

    src = tmp_path / "src"
    src.mkdir()
    for name, size in {"wide": (200, 100), "square": (120, 120), "tall": (90, 190)}.items():
        img = Image.new("RGB", size, (0, 0, 255))
        img.paste((255, 0, 0), (size[0] // 2 - 5, size[1] // 2 - 5, size[0] // 2 + 5, size[1] // 2 + 5))
        img.save(src / f"{name}.png")
        (src / f"{name}.txt").write_text(f"a {name} picture")
    counts = curate_folder("pairs", src, 10, 32, 50, 10, tmp_path / "out", buckets=aspect_buckets(32, [0.5, 1.0, 2.0], 8))
    assert counts["totals"]["kept"] == 3 and counts["buckets"] == {"24x48": 1, "32x32": 1, "48x24": 1}
    for d, name in zip(bucket_dirs(tmp_path / "out"), ["wide", "square", "tall"]):
        image, record = read_images(d)[0], read_records(d)[0]
        assert record["short_caption"] == f"a {name} picture"
        h, w, _ = image.shape
        assert tuple(image[h // 2, w // 2]) == (255, 0, 0) and image[0, 0, 2] == 255  # centred crop



def curate_folder(split, folder, n, image_size, min_side, shard_size, out, buckets=None):
    """One curation job over one folder source (the `data.paths` shorthand, with a min_side filter)."""
    from lumos.data.curate import curate_part
    from lumos.data.sources import Source

    return curate_part(split, [Source(split, str(folder), min_side=min_side)], n, image_size, shard_size, str(out),
                       buckets=buckets)


def _bucket_data():
    g = torch.Generator().manual_seed(0)
    sizes = [(4, 8), (8, 4), (6, 6)]
    lat = [torch.randn(n, 4, h, w, generator=g) for n, (h, w) in zip([10, 20, 30], sizes)]
    cond = [torch.randn(len(x), 3, 16, generator=g) for x in lat]
    mask = [torch.ones(len(x), 3, dtype=torch.bool) for x in lat]
    return lat, cond, mask


def test_batch_sampler_draws_buckets_by_size_deterministically():
    from lumos.training.loop import BatchSampler

    s = BatchSampler([10, 30], 4, seed=0)
    draws = [s.next_bucket(k) for k in range(400)]
    assert all(int(idx.max()) < [10, 30][b] for b, idx, _ in draws)
    share = np.mean([b for b, _, _ in draws])
    assert 0.68 < share < 0.82  # bucket 1 holds 3/4 of the items; 400 draws
    b, idx, _ = BatchSampler([10, 30], 4, seed=0).next_bucket(7)
    assert b == draws[7][0] and torch.equal(idx, draws[7][1])
    # one dataset: the same stream as a plain sampler (bucket draws take no randomness)
    one, plain = BatchSampler([10], 4, seed=0).next(5)[0], BatchSampler(10, 4, seed=0).next(5)[0]
    assert torch.equal(one, plain)


def test_training_on_buckets_resumes_to_the_same_weights(tmp_path):
    from lumos.models import LumosDiT
    from lumos.training.loop import train_diffusion

    cfg = {"steps": 8, "batch_size": 4, "lr": 1e-3, "warmup_steps": 2, "grad_clip": 1.0, "ema_decay": 0.9,
           "checkpoint_every": 4, "log_every": 1}

    def model(seed=0):
        torch.manual_seed(seed)
        return LumosDiT.from_size("DiT-N/2", sample_size=6, in_channels=4, cond_dim=16, max_cond_tokens=3)

    lat, cond, mask = _bucket_data()
    a = train_diffusion(model(), lat, cond, mask, cfg, str(tmp_path / "a"), str(tmp_path / "sa"))
    assert a["steps"] == 8 and math.isfinite(a["final_loss"])
    assert train_diffusion(model(), lat, cond, mask, cfg, str(tmp_path / "b"), str(tmp_path / "sb"),
                           stop_after=3) == {"stopped_at": 3}
    train_diffusion(model(seed=9), lat, cond, mask, cfg, str(tmp_path / "b"), str(tmp_path / "sb"))
    wa = LumosDiT.from_pretrained(str(tmp_path / "a" / "model")).state_dict()
    wb = LumosDiT.from_pretrained(str(tmp_path / "b" / "model")).state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-7, msg=k)
    m = LumosDiT.from_pretrained(str(tmp_path / "a" / "model")).eval()
    for x in lat:  # the trained model denoises every bucket's shape
        assert m(x[:2], torch.tensor([10, 500]), torch.randn(2, 3, 16)).shape == (2, 8, *x.shape[2:])


class _CharEncoder:
    """A stand-in text encoder: token j of a caption is its j-th character code (masked after it)."""

    max_length = 24

    def tokenize(self, captions):
        lengths = torch.tensor([min(len(c), self.max_length) for c in captions])
        return {"attention_mask": (torch.arange(self.max_length)[None] < lengths[:, None]).long()}

    def __call__(self, captions):
        mask = self.tokenize(captions)["attention_mask"].bool()
        codes = torch.tensor([[ord(ch) for ch in c[: self.max_length].ljust(self.max_length)] for c in captions])
        return codes[..., None].float().repeat(1, 1, 3) * mask[..., None], mask


def test_bucketed_curated_text_features_reuse_the_square_rows(tmp_path):
    """Stage 4 on curated folders: each bucket's caption tokens are copied from the square split's
    text features (one pass, shards of 2 rows on both sides) and equal encoding the bucket afresh."""
    from lumos.features import _encode_captions, read_features, reuse_text_features
    from lumos.store import gather_parts

    src = tmp_path / "src"
    src.mkdir()
    sizes = [(200, 100), (120, 120), (90, 190), (210, 100), (100, 100), (95, 200), (220, 110)]
    for i, size in enumerate(sizes):
        Image.new("RGB", size, (10 * i, 0, 0)).save(src / f"img{i}.png")
        (src / f"img{i}.txt").write_text(f"picture number {i}" + "!" * i)
        (src / f"img{i}.long.txt").write_text(f"a long caption of picture {i}")
    curate_folder("pairs", src, 10, 32, 50, 2, tmp_path / "square")
    curate_folder("pairs", src, 10, 32, 50, 2, tmp_path / "ar", buckets=aspect_buckets(32, [0.5, 1.0, 2.0], 8))
    encs = {"t5": _CharEncoder()}
    _encode_captions(str(tmp_path / "square"), str(tmp_path / "square_text"), encs, ["t5"], 4, 0, 1)
    meta = reuse_text_features(str(tmp_path / "square_text"), str(tmp_path / "square"), str(tmp_path / "ar"),
                               str(tmp_path / "ar_text"))
    assert meta["n"] == 7 and meta["buckets"] == ["24x48", "32x32", "48x24"]
    keys = ["t5_short", "t5_short_mask", "t5_long", "t5_long_mask"]
    for bucket in bucket_dirs(tmp_path / "ar"):
        fresh = tmp_path / "fresh" / bucket.name
        _encode_captions(str(bucket), str(fresh), encs, ["t5"], 4, 0, 1)
        got, want = read_features(str(tmp_path / "ar_text" / bucket.name), keys), read_features(str(fresh), keys)
        for k in keys:
            w = want[k].shape[1]  # the square split's width is its longest caption: the rest is masked
            assert np.array_equal(got[k][:, :w], want[k]) and not got[k][:, w:].any()
    # two jobs, each writing every other shard of each bucket, gather to the same folder
    for part in (0, 1):
        reuse_text_features(str(tmp_path / "square_text"), str(tmp_path / "square"), str(tmp_path / "ar"),
                            str(tmp_path / f"p{part}"), part, 2)
    gather_parts([str(tmp_path / "p0"), str(tmp_path / "p1")], str(tmp_path / "joined"))
    for bucket in bucket_dirs(tmp_path / "ar"):
        a = read_features(str(tmp_path / "joined" / bucket.name), keys)
        b = read_features(str(tmp_path / "ar_text" / bucket.name), keys)
        assert all(np.array_equal(a[k], b[k]) for k in keys)


def test_reused_text_features_refuse_a_different_folder(tmp_path):
    from lumos.features import _encode_captions, reuse_text_features

    for name, order in (("a", [0, 1, 2]), ("b", [2, 1, 0])):
        src = tmp_path / f"src_{name}"
        src.mkdir()
        for i, k in enumerate(order):  # folder b holds the same images under other names
            Image.new("RGB", (100 + 50 * k, 100), (0, 0, 0)).save(src / f"x{i}_{k}.png")
            (src / f"x{i}_{k}.txt").write_text(f"caption {k}")
    curate_folder("pairs", tmp_path / "src_a", 10, 32, 50, 5, tmp_path / "square")
    curate_folder("pairs", tmp_path / "src_b", 10, 32, 50, 5, tmp_path / "ar",
                  buckets=aspect_buckets(32, [0.5, 1.0], 8))
    _encode_captions(str(tmp_path / "square"), str(tmp_path / "square_text"), {"t5": _CharEncoder()}, ["t5"], 4, 0, 1)
    with pytest.raises(ValueError, match="curate both from the same folder"):
        reuse_text_features(str(tmp_path / "square_text"), str(tmp_path / "square"), str(tmp_path / "ar"),
                            str(tmp_path / "out"))
