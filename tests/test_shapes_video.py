"""Tests for the video Shapes world (lumos.data.worlds.shapes_video): clips, motions, splits, storage."""

import json

import numpy as np
import pytest
from PIL import Image

from lumos.data.build import SPLIT_IDS
from lumos.data.worlds.shapes import COLOURS, render
from lumos.data.worlds.shapes_video import (
    CLIP_FRAMES,
    MOTIONS,
    VIDEO_SPLITS,
    Clip,
    MovingObject,
    bounds,
    build_video_split,
    centre_at,
    first_scene,
    frame_indices,
    generate_clip,
    object_mask_at,
    read_clips,
    render_clip,
    render_frame,
    sample_clip,
    split_frames,
    tile_frames,
)
from lumos.data.shards import read_shard, split_index


def _single(motions: dict, seed: int, image_size: int = 32) -> Clip:
    """A one-object clip drawn with only the given motion mix."""
    return sample_clip(np.random.default_rng(seed), image_size, motions, min_objects=1, max_objects=1)


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _mean_change(video: np.ndarray) -> float:
    """Mean absolute pixel change between consecutive frames."""
    return float(np.abs(np.diff(video.astype(np.int16), axis=0)).mean())


# ----------------------------------------------------------------------------- determinism


def test_clip_is_deterministic():
    a, b = generate_clip(7, 3, "video_train"), generate_clip(7, 3, "video_train")
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(render_clip(a), render_clip(b))
    assert generate_clip(8, 3, "video_train").to_dict() != a.to_dict()  # the seed matters


def test_frame_is_independent_of_how_many_frames_are_rendered():
    clip = generate_clip(0, 11, "ucf")
    video = render_clip(clip)
    assert video.shape == (16, 32, 32, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(render_frame(clip, 30), video[10])  # frame 30 = 10th with stride 3
    np.testing.assert_array_equal(render_clip(clip, frames_used=4), video[:4])
    late_first = render_frame(clip, 45)
    render_frame(clip, 0)
    np.testing.assert_array_equal(late_first, video[15])
    assert frame_indices() == list(range(0, 48, 3))


def test_record_clip_renders_the_same_frames():
    clip = generate_clip(1, 5, "msrvtt")
    again = Clip.from_dict(json.loads(json.dumps(clip.to_dict())))
    np.testing.assert_array_equal(render_clip(again), render_clip(clip))


def test_unturned_integer_frame_matches_the_still_world():
    """At integer centre and size, no rotation, an object renders exactly as in shapes.render."""
    obj = MovingObject("triangle", "red", "striped", 6.0, 12.0, 14.0, ["colour"], colour_end="blue")
    box = MovingObject("cross", "green", "dotted", 5.0, 22.0, 20.0, ["translate"], "line", vx=0.2)
    clip = Clip(32, "textured", [(120, 120, 120), (160, 160, 160)], [obj, box])
    np.testing.assert_array_equal(render_frame(clip, 0), render(first_scene(clip)))


# ----------------------------------------------------------------------------- motion


def _changed(video: np.ndarray) -> np.ndarray:
    """Whether each pair of consecutive frames differs anywhere."""
    return np.abs(np.diff(video.astype(np.int16), axis=0)).reshape(len(video) - 1, -1).max(1) > 0


def test_every_clip_moves():
    changed = []
    for i in range(20):
        video = render_clip(generate_clip(0, i, "video_train"))
        assert _mean_change(video) > 0, i
        changed.append(_changed(video))
    # Motions under a pixel per shown frame (slow lines, slow scaling) may pause a frame or two.
    assert np.mean(changed) >= 0.9


def test_bouncing_objects_change_nearly_every_frame():
    for seed in range(10):  # at least 0.6 px per frame, so 1.8 px per shown frame; a reflection at
        # a border may bring the object back to where it was three frames earlier, once
        assert (~_changed(render_clip(_single({"bounce": 1}, seed)))).sum() <= 1, seed


def test_translation_moves_along_its_direction():
    for seed in range(10):
        clip = _single({"translate": 1}, seed)
        obj = clip.objects[0]
        assert obj.path == "line" and obj.motions == ["translate"]
        moved = _centroid(object_mask_at(clip, 0, CLIP_FRAMES - 1)) - _centroid(object_mask_at(clip, 0, 0))
        expected = (CLIP_FRAMES - 1) * np.array([obj.vx, obj.vy])
        cos = moved @ expected / (np.linalg.norm(moved) * np.linalg.norm(expected))
        assert cos > 0.95, (seed, moved, expected)
        assert np.linalg.norm(moved - expected) < 1.5, (seed, moved, expected)  # within 1.5 px
        assert np.linalg.norm(expected) >= 5  # a visible motion: at least 5 px at 32 px
        lo, hi = bounds(obj.reach, 32)
        ends = np.array([centre_at(obj, f, 32) for f in (0, CLIP_FRAMES - 1)])
        assert (ends >= lo - 1e-9).all() and (ends <= hi + 1e-9).all()  # the line stays inside


def test_bounce_stays_in_the_picture():
    for seed in range(10):
        clip = _single({"bounce": 1, "speed": 2.0}, seed)
        obj = clip.objects[0]
        lo, hi = bounds(obj.reach, 32)
        centres = np.array([centre_at(obj, f, 32) for f in range(CLIP_FRAMES)])
        assert (centres >= lo - 1e-9).all() and (centres <= hi + 1e-9).all()
        areas = [object_mask_at(clip, 0, f).sum() for f in range(CLIP_FRAMES)]
        assert min(areas) >= 0.7 * max(areas), seed  # never pushed out of the image


def test_colour_change_reaches_its_target_colour():
    for seed in range(10):
        clip = _single({"colour": 1}, seed)
        obj = clip.objects[0]
        assert obj.colour_end not in (None, obj.colour)
        for f, name in ((0, obj.colour), (CLIP_FRAMES - 1, obj.colour_end)):
            pixels = render_frame(clip, f)[object_mask_at(clip, 0, f)]
            median = np.median(pixels, axis=0)  # the plain part of the texture dominates
            assert np.abs(median - COLOURS[name]).max() <= 3, (seed, f, median, name)


def test_scaling_changes_area_monotonically():
    for seed in range(10):
        clip = _single({"scale": 1}, seed)
        areas = np.array([object_mask_at(clip, 0, f).sum() for f in range(CLIP_FRAMES)])
        steps = np.diff(areas) * np.sign(areas[-1] - areas[0])
        assert (steps >= 0).all(), (seed, areas)  # fixed centre: masks are nested, no tolerance needed
        ratio = areas[-1] / areas[0]
        assert ratio >= 1.3 or ratio <= 1 / 1.3, (seed, ratio)


def test_rotation_turns_the_shape_in_place():
    for seed in range(10):
        clip = _single({"rotate": 1}, seed)
        obj = clip.objects[0]
        assert obj.shape != "circle" and abs(obj.omega) > 0
        m0 = object_mask_at(clip, 0, 0)
        turned = [object_mask_at(clip, 0, f) for f in range(3, CLIP_FRAMES, 3)]
        assert any((m != m0).any() for m in turned), seed
        ys, xs = np.mgrid[:32, :32] + 0.5
        dist = np.hypot(xs - obj.cx, ys - obj.cy)
        for m in turned:
            assert abs(m.sum() / m0.sum() - 1) < 0.35  # same object, (almost) same area
            assert dist[m].max() <= obj.reach + 0.75  # turns in place, about its centre


def test_speed_scales_the_motion():
    slow = render_clip(_single({"bounce": 1, "rotate": 1}, 3))
    fast = render_clip(_single({"bounce": 1, "rotate": 1, "speed": 2.0}, 3))
    assert _mean_change(fast) > 1.3 * _mean_change(slow)


def test_motion_mix_is_validated():
    with pytest.raises(ValueError):
        _single({"teleport": 1}, 0)
    with pytest.raises(ValueError):
        _single({"translate": 0, "speed": 1.0}, 0)


# ----------------------------------------------------------------------------- splits


def test_split_ids_are_distinct_from_each_other_and_the_image_splits():
    ids = [s["split_id"] for s in VIDEO_SPLITS.values()]
    assert len(set(ids)) == 3 and not set(ids) & set(SPLIT_IDS.values())
    for split in VIDEO_SPLITS.values():
        assert set(split["motions"]) <= set(MOTIONS) | {"speed"}


def test_eval_splits_have_different_motion_statistics():
    """UCF's role moves more than MSR-VTT's: >= 2x the mean per-frame pixel change over 20 clips
    (about 3x measured), and mostly translation/rotation versus scaling/colour."""
    change = {n: np.mean([_mean_change(render_clip(generate_clip(0, i, n))) for i in range(20)])
              for n in ("ucf", "msrvtt")}
    assert change["ucf"] > 2.0 * change["msrvtt"], change
    kinds = {n: [m for i in range(40) for o in generate_clip(0, i, n).objects for m in o.motions]
             for n in ("ucf", "msrvtt")}
    big = {n: np.mean([m in ("translate", "bounce", "rotate") for m in kinds[n]]) for n in kinds}
    assert big["ucf"] > 0.7 and big["msrvtt"] < 0.4, big


def test_train_and_eval_clips_differ():
    for i in range(5):
        clips = [generate_clip(0, i, n) for n in VIDEO_SPLITS]
        dicts = [json.dumps(c.to_dict()) for c in clips]
        assert len(set(dicts)) == 3, i
        videos = [render_clip(c) for c in clips]
        assert not np.array_equal(videos[0], videos[1]) and not np.array_equal(videos[0], videos[2])


def test_shuffling_frames_changes_the_clip():
    rng = np.random.default_rng(0)
    distinct = 0
    for i in range(10):
        video = render_clip(generate_clip(0, i, "video_train"))
        order = rng.permutation(16)
        while (order == np.arange(16)).all():
            order = rng.permutation(16)
        assert not np.array_equal(video[order], video), i
        distinct += len({f.tobytes() for f in video}) == 16
    assert distinct >= 8  # most clips have 16 distinct frames, so any reordering shows


# ----------------------------------------------------------------------------- storage


def test_tile_and_split_frames_are_inverse():
    video = np.random.default_rng(0).integers(0, 256, (16, 8, 6, 3), dtype=np.uint8)
    strip = tile_frames(video)
    assert strip.shape == (8, 96, 3)
    np.testing.assert_array_equal(strip[:, 6:12], video[1])
    np.testing.assert_array_equal(split_frames(strip, 16), video)
    with pytest.raises(ValueError):
        split_frames(strip[:, :95], 16)


@pytest.fixture(scope="module")
def video_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "ucf"
    summary = build_video_split("ucf", 10, 32, seed=4, shard_size=4, out_dir=out)
    return out, summary


def test_build_video_split_round_trip(video_split):
    out, summary = video_split
    assert summary["n"] == 10
    index = split_index(out)
    assert index["n"] == 10 and index["shard_sizes"] == [4, 4, 2]
    assert index["frames"] == 16 and index["stride"] == 3 and index["frame_size"] == [32, 32]
    strips, records = read_shard(out, index["shards"][1])
    assert strips.shape == (4, 32, 16 * 32, 3)
    rec = records[0]
    assert rec["key"] == "shapes_video/ucf/4" and rec["index"] == 4
    assert rec["frames"] == 16 and rec["stride"] == 3 and rec["frame_size"] == [32, 32]
    assert rec["short_caption"] and rec["motion_caption"]
    clip = Clip.from_dict(rec["clip"])
    assert clip.to_dict() == generate_clip(4, 4, "ucf").to_dict()
    np.testing.assert_array_equal(split_frames(strips[0], 16), render_clip(clip))


def test_read_clips_streams_in_order(video_split):
    out, _ = video_split
    items = list(read_clips(out))
    assert [r["index"] for _, r in items] == list(range(10))
    assert all(v.shape == (16, 32, 32, 3) for v, _ in items)
    np.testing.assert_array_equal(items[7][0], render_clip(generate_clip(4, 7, "ucf")))
    assert [r["index"] for _, r in read_clips(out, limit=5)] == list(range(5))


def test_clip_does_not_depend_on_split_size(video_split, tmp_path):
    out, _ = video_split
    build_video_split("ucf", 3, 32, seed=4, shard_size=2, out_dir=tmp_path / "small")
    for (a, _), (b, _) in zip(read_clips(tmp_path / "small"), read_clips(out, limit=3)):
        np.testing.assert_array_equal(a, b)


def test_preview_is_written(video_split):
    out, _ = video_split
    with Image.open(out / "preview.gif") as gif:
        assert gif.n_frames == 16
    with Image.open(out / "preview.png") as still:
        assert still.size[0] > 3 * 32 and still.size[1] > 8 * 32  # 8 clips x (first, middle, last)
