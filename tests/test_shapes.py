"""Tests for the Shapes world (lumos.data.worlds.shapes) and the image grid (lumos.viz)."""

import json
import re

import numpy as np
import pytest

from lumos.data.worlds.shapes import (
    BACKGROUNDS,
    COLOURS,
    NUM_CLASSES,
    SHAPES,
    TEXTURES,
    Scene,
    ShapeObject,
    class_index,
    class_label,
    class_name,
    generate_split,
    long_caption,
    object_mask,
    render,
    sample_scene,
    shade,
    short_caption,
    visible_mask,
)
from lumos.viz import image_grid, save_grid


@pytest.fixture(scope="module")
def split():
    """A few hundred multi-object items shared by the ground-truth tests."""
    return generate_split(300, seed=11)


def _scenes(records):
    return [Scene.from_dict(r["scene"]) for r in records]


# ----------------------------------------------------------------------------- vocabulary


def test_palette_is_saturated_and_distinct():
    rgb = np.array(list(COLOURS.values()), dtype=int)
    assert len(SHAPES) == 5 and 6 <= len(COLOURS) <= 8
    assert (rgb.max(1) - rgb.min(1) >= 120).all()
    dists = np.abs(rgb[:, None] - rgb[None]).sum(-1)
    assert (dists[~np.eye(len(rgb), dtype=bool)] >= 100).all()


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_split():
    a_img, a_rec = generate_split(20, seed=3)
    b_img, b_rec = generate_split(20, seed=3)
    assert a_img.shape == (20, 32, 32, 3) and a_img.dtype == np.uint8
    np.testing.assert_array_equal(a_img, b_img)
    assert a_rec == b_rec


def test_item_does_not_depend_on_n():
    small_img, small_rec = generate_split(5, seed=4)
    big_img, big_rec = generate_split(50, seed=4)
    np.testing.assert_array_equal(small_img, big_img[:5])
    assert small_rec == big_rec[:5]
    assert [r["index"] for r in big_rec] == list(range(50))


def test_different_seed_or_split_differs():
    base, base_rec = generate_split(10, seed=5)
    other, other_rec = generate_split(10, seed=6)
    split1, _ = generate_split(10, seed=5, split_id=1)
    assert not np.array_equal(base, other)
    assert not np.array_equal(base, split1)
    assert base_rec != other_rec
    # Per-item, not just somewhere in the batch.
    assert sum(np.array_equal(a, b) for a, b in zip(base, other)) <= 1


def test_records_render_back_to_images(split):
    images, records = split
    for img, rec in zip(images[:50], records[:50]):
        np.testing.assert_array_equal(render(Scene.from_dict(rec["scene"])), img)


# ----------------------------------------------------------------------------- ground truth vs pixels


def test_visible_pixels_match_ground_truth(split):
    images, records = split
    for img, scene in zip(images, _scenes(records)):
        for k, obj in enumerate(scene.objects):
            vis = visible_mask(scene, k)
            assert vis.any(), (scene, k)
            x0, y0, x1, y1 = obj.box
            inside = np.zeros_like(vis)
            inside[y0:y1, x0:x1] = True
            assert not (vis & ~inside).any()
            assert not (vis & ~object_mask(obj, scene.image_size)).any()
            colours, counts = np.unique(img[vis], axis=0, return_counts=True)
            assert tuple(colours[counts.argmax()]) == obj.rgb
            # Only the palette colour and its darker texture shade appear.
            allowed = {obj.rgb, shade(obj.rgb)}
            assert {tuple(c) for c in colours} <= allowed


def test_background_never_uses_palette(split):
    images, records = split
    palette = {tuple(c) for c in COLOURS.values()} | {shade(c) for c in COLOURS.values()}
    checked = 0
    for img, scene in zip(images, _scenes(records)):
        far = np.ones((scene.image_size,) * 2, bool)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            far[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = False
        pixels = {tuple(p) for p in img[far]}
        assert not pixels & palette
        rgb = img[far].astype(int)
        if len(rgb):
            assert (rgb.max(1) - rgb.min(1)).max() < 70  # low saturation
        checked += far.sum()
    assert checked > 10_000


def test_backgrounds_and_textures_all_occur(split):
    _, records = split
    scenes = _scenes(records)
    assert {s.background for s in scenes} == set(BACKGROUNDS)
    assert {o.texture for s in scenes for o in s.objects} == set(TEXTURES)
    assert {o.shape for s in scenes for o in s.objects} == set(SHAPES)
    assert {o.colour for s in scenes for o in s.objects} == set(COLOURS)


def test_textured_object_has_two_tones():
    obj = ShapeObject("square", "red", "striped", 8, 16, 16)
    img = render(Scene(32, "plain", [(128, 128, 128)], [obj]))
    colours = {tuple(c) for c in img[object_mask(obj)]}
    assert colours == {COLOURS["red"], shade(COLOURS["red"])}
    plain = render(Scene(32, "plain", [(128, 128, 128)], [ShapeObject("square", "red", "plain", 8, 16, 16)]))
    assert {tuple(c) for c in plain[object_mask(obj)]} == {COLOURS["red"]}


def test_shape_masks_have_expected_areas():
    s = 8
    area = {sh: object_mask(ShapeObject(sh, "red", "plain", s, 16, 16)).sum() for sh in SHAPES}
    assert area["square"] == (2 * s) ** 2
    assert abs(area["circle"] - np.pi * s * s) < 0.1 * np.pi * s * s
    assert abs(area["triangle"] - 2 * s * s) < 0.15 * 2 * s * s
    assert abs(area["diamond"] - 2 * s * s) < 0.15 * 2 * s * s
    masks = [object_mask(ShapeObject(sh, "red", "plain", s, 16, 16)) for sh in SHAPES]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert (masks[i] != masks[j]).sum() > 10


# ----------------------------------------------------------------------------- layout


@pytest.mark.parametrize("image_size,lo,hi", [(32, 1, 4), (32, 2, 3), (64, 4, 4), (16, 1, 2)])
def test_object_count_and_placement(image_size, lo, hi):
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(200):
        scene = sample_scene(rng, image_size=image_size, min_objects=lo, max_objects=hi)
        counts.add(len(scene.objects))
        assert lo <= len(scene.objects) <= hi
        pairs = [(o.shape, o.colour) for o in scene.objects]
        assert len(set(pairs)) == len(pairs)
        for o in scene.objects:
            assert o.size >= 2
            assert 0 <= o.cx - o.size and o.cx + o.size <= image_size
            assert 0 <= o.cy - o.size and o.cy + o.size <= image_size
            assert o.box == (o.cx - o.size, o.cy - o.size, o.cx + o.size, o.cy + o.size)
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1 :]:
                (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
                inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
                assert inter <= 0.2 * min(a.size, b.size) ** 2 * 4
    assert counts == set(range(lo, hi + 1))


def test_sizes_scale_with_image():
    rng = np.random.default_rng(1)
    s32 = [o.size for _ in range(100) for o in sample_scene(rng, 32).objects]
    s64 = [o.size for _ in range(100) for o in sample_scene(rng, 64).objects]
    assert 4 <= min(s32) and max(s32) <= 8
    assert np.mean(s64) > 1.7 * np.mean(s32)


def test_sample_scene_respects_vocabulary_subset():
    rng = np.random.default_rng(2)
    for _ in range(50):
        scene = sample_scene(rng, shapes=("circle", "square"), colours=("red", "blue"))
        assert all(o.shape in ("circle", "square") and o.colour in ("red", "blue") for o in scene.objects)


def test_position_and_size_words():
    def obj(cx, cy, size=4):
        return ShapeObject("circle", "red", "plain", size, cx, cy, 32)

    assert (obj(4, 4).horizontal_word, obj(4, 4).vertical_word) == ("left", "top")
    assert (obj(16, 16).horizontal_word, obj(16, 16).vertical_word) == ("center", "middle")
    assert (obj(28, 28).horizontal_word, obj(28, 28).vertical_word) == ("right", "bottom")
    assert obj(4, 4).position_phrase == "at the top left"
    assert obj(16, 16).position_phrase == "in the center"
    assert obj(28, 16).position_phrase == "on the right"
    assert obj(16, 28).position_phrase == "at the bottom"
    assert [obj(16, 16, s).size_name for s in (4, 6, 8)] == ["small", "medium", "large"]


# ----------------------------------------------------------------------------- captions


def test_captions_mention_every_object(split):
    _, records = split
    for rec in records:
        scene = Scene.from_dict(rec["scene"])
        assert rec["short_caption"] == short_caption(scene)
        assert rec["long_caption"] == long_caption(scene)
        for o in scene.objects:
            name = f"{o.colour} {o.shape}"
            assert name in rec["short_caption"]
            assert re.search(rf"{o.size_name} {o.texture} {name} {o.position_phrase}\.", rec["long_caption"])
            assert o.horizontal_word in rec["long_caption"] or o.horizontal_word == "center"
            assert o.vertical_word in rec["long_caption"] or o.vertical_word == "middle"
        assert f"{scene.background} background" in rec["long_caption"]
        assert len(rec["long_caption"]) > len(rec["short_caption"])
        # The raw caption is terse: no positions or textures.
        assert not re.search(r"\b(left|right|top|bottom|striped|dotted|above|below)\b", rec["short_caption"])


def test_long_caption_relations():
    red = ShapeObject("circle", "red", "plain", 4, 6, 16)
    blue = ShapeObject("square", "blue", "dotted", 4, 26, 14)
    green = ShapeObject("triangle", "green", "striped", 4, 16, 27)
    scene = Scene(32, "gradient", [(200, 200, 200), (90, 90, 90)], [red, blue, green])
    cap = long_caption(scene)
    assert "three objects" in cap
    assert "The red circle is to the left of the blue square." in cap
    assert "The red circle is above the green triangle." in cap
    assert "The blue square is above the green triangle." in cap
    assert short_caption(scene) == "a red circle, a blue square and a green triangle"
    assert short_caption(Scene(32, "plain", [(128, 128, 128)], [ShapeObject("cross", "orange", "plain", 4, 9, 9)])) == (
        "an orange cross"
    )


# ----------------------------------------------------------------------------- labels


def test_class_labels_round_trip():
    names = [class_name(i) for i in range(NUM_CLASSES)]
    assert NUM_CLASSES == len(SHAPES) * len(COLOURS) == len(set(names))
    for label, name in enumerate(names):
        colour, shape = name.split()
        assert class_index(shape, colour) == label
    assert class_name(0) == f"{next(iter(COLOURS))} {SHAPES[0]}"
    with pytest.raises(ValueError):
        class_name(NUM_CLASSES)


def test_split_labels():
    _, single = generate_split(40, seed=8, min_objects=1, max_objects=1)
    for rec in single:
        o = rec["scene"]["objects"][0]
        assert class_name(rec["label"]) == f"{o['colour']} {o['shape']}"
        assert class_label(Scene.from_dict(rec["scene"])) == rec["label"]
    _, multi = generate_split(20, seed=8, min_objects=2, max_objects=4)
    assert all(rec["label"] is None for rec in multi)
    with pytest.raises(ValueError):
        class_label(Scene.from_dict(multi[0]["scene"]))


# ----------------------------------------------------------------------------- serialisation


def test_scene_json_round_trip(split):
    _, records = split
    for rec in records[:50]:
        scene = Scene.from_dict(rec["scene"])
        again = Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
        assert again == scene
        np.testing.assert_array_equal(render(again), render(scene))
    text = json.dumps(records)  # records are JSON-serialisable as a whole
    assert json.loads(text) == records
    obj = ShapeObject("diamond", "cyan", "dotted", 5, 10, 12, 32)
    assert ShapeObject.from_dict(json.loads(json.dumps(obj.to_dict()))) == obj


# ----------------------------------------------------------------------------- viz


def test_image_grid_size(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    grid = image_grid(images, ncols=4, scale=2, pad=2)
    assert grid.size == (4 * (64 + 2) + 2, 3 * (64 + 2) + 2)
    arr = np.asarray(grid)
    np.testing.assert_array_equal(arr[2:66, 2:66], np.repeat(np.repeat(images[0], 2, 0), 2, 1))
    assert (arr[:2] == 255).all() and (arr[-2:, -68:] == 255).all()  # padding and empty slots are white

    labelled = image_grid(list(images), ncols=4, scale=2, labels=["a red circle and a blue square"] * 10)
    assert labelled.size[0] == grid.size[0] and labelled.size[1] > grid.size[1]
    label_strip = np.asarray(labelled)[2 + 64 : 2 + 64 + 10, 2:66]
    assert (label_strip < 128).any()  # some text was drawn

    path = tmp_path / "sub" / "grid.png"
    save_grid(path, images, ncols=5, scale=1)
    assert path.exists()
