"""The 3D Shapes world (lumos.data.worlds.shapes3d): cameras, renderer, splits and the multi-view importer.

Seeds are fixed; tolerances are stated where a comparison is not exact."""

import json

import numpy as np
import pytest
from PIL import Image

from lumos.data.worlds import shapes3d as s3
from lumos.data.shards import read_images, read_records, split_index

RED_SPHERE = s3.Object3D([s3.Part("sphere", (1.0,), colour="red")])


def silhouette(image: np.ndarray) -> np.ndarray:
    """Pixels that are not pure white background."""
    return (image != 255).any(axis=-1)


# -- cameras ------------------------------------------------------------------------------------


@pytest.mark.parametrize("az,el,r", [(0, 0, 4.0), (37, 25, 3.0), (200, -10, 4.4), (315, 60, 2.0)])
def test_camera_to_world_is_a_rigid_look_at(az, el, r):
    c2w = s3.camera_to_world(az, el, r)
    rot, centre = c2w[:3, :3], c2w[:3, 3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(centre, s3.camera_position(az, el, r), atol=1e-12)
    assert np.linalg.norm(centre) == pytest.approx(r, abs=1e-12)
    np.testing.assert_allclose(centre + r * rot[:, 2], 0.0, atol=1e-12)  # z (forward) hits the origin
    assert abs(rot[2, 0]) < 1e-12  # x (right) is horizontal
    assert rot[2, 1] < 0  # y (down) points down in the world: images are upright
    np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
    np.testing.assert_allclose(s3.project([[0, 0, 0]], c2w, 64), [[32, 32]], atol=1e-9)  # origin at the centre


def test_camera_azimuth_90_is_on_plus_y_and_poles_are_rejected():
    np.testing.assert_allclose(s3.camera_to_world(90, 0, 3.0)[:3, 3], [0, 3, 0], atol=1e-12)
    np.testing.assert_allclose(s3.camera_to_world(0, 0, 3.0)[:3, 3], [3, 0, 0], atol=1e-12)
    # seen from +x, world +y lies to the right of the image, world +z at the top
    uv = s3.project([[0, 0.5, 0], [0, 0, 0.5]], s3.camera_to_world(0, 0, 3.0), 64)
    assert uv[0, 0] > 32 and uv[1, 1] < 32
    for el in (90, -90, 120):
        with pytest.raises(ValueError):
            s3.camera_to_world(0, el, 3.0)


def test_relative_pose_identity_composition_and_vector():
    rng = np.random.default_rng(0)
    cams = [s3.camera_to_world(rng.uniform(0, 360), rng.uniform(-10, 50), rng.uniform(2, 5)) for _ in range(3)]
    a, b, c = cams
    np.testing.assert_allclose(s3.relative_pose(a, a), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(s3.relative_pose(a, b) @ s3.relative_pose(b, c), s3.relative_pose(a, c), atol=1e-12)
    np.testing.assert_allclose(a @ s3.relative_pose(a, b), b, atol=1e-12)
    vec = s3.pose_vector(s3.relative_pose(a, b))
    assert vec.shape == (12,) and vec.dtype == np.float32
    rel = s3.relative_pose(a, b)
    np.testing.assert_allclose(vec, np.concatenate([rel[:3, :3].ravel(), rel[:3, 3]]), atol=1e-6)


def test_identity_relative_pose_renders_the_input_view_exactly():
    obj = s3.sample_object(np.random.default_rng(3))
    c2w_in = s3.camera_to_world(0, 20, s3.RADIUS)
    rel = s3.relative_pose(c2w_in, c2w_in)
    np.testing.assert_array_equal(s3.render(obj, c2w_in @ rel, 32), s3.render(obj, c2w_in, 32))


def test_w2c_blender_conversion_round_trips_a_known_camera():
    c2w = s3.camera_to_world(30, 20, 1.8)
    right, down, forward, centre = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3]
    # Blender camera axes written out by hand: x right, y up, z backwards (the camera looks down -z)
    rot_blender = np.stack([right, -down, -forward], axis=1)
    w2c_blender = np.concatenate([rot_blender.T, (-rot_blender.T @ centre)[:, None]], axis=1)  # 3x4
    np.testing.assert_allclose(s3.blender_w2c_to_c2w(w2c_blender), c2w, atol=1e-12)
    np.testing.assert_allclose(s3.c2w_to_blender_w2c(c2w), w2c_blender, atol=1e-12)
    np.testing.assert_allclose(s3.blender_w2c_to_c2w(s3.c2w_to_blender_w2c(c2w)), c2w, atol=1e-12)
    az, el, r = s3.spherical_from_c2w(c2w)
    assert (az, el, r) == pytest.approx((30, 20, 1.8), abs=1e-9)


# -- views --------------------------------------------------------------------------------------


def test_test_views_follow_table4_protocol():
    views = s3.test_views(np.random.default_rng(0))
    assert views.shape == (33, 3)
    assert views[0, 0] == 0 and 0 <= views[0, 1] <= 30
    np.testing.assert_array_equal(views[:, 2], s3.RADIUS)
    for block, el in ((views[1:17], 0.0), (views[17:33], 30.0)):
        np.testing.assert_array_equal(block[:, 1], el)
        np.testing.assert_allclose(block[:, 0], np.arange(16) * 22.5)
    inputs = {float(s3.test_views(np.random.default_rng(k))[0, 1]) for k in range(5)}
    assert len(inputs) == 5  # the input elevation is drawn per object


def test_train_views_ranges():
    views = s3.train_views(np.random.default_rng(0))
    assert views.shape == (32, 3)
    assert ((views[:, 0] >= 0) & (views[:, 0] < 360)).all()
    assert ((views[:, 1] >= -10) & (views[:, 1] <= 50)).all()
    assert ((views[:, 2] >= 0.9 * s3.RADIUS) & (views[:, 2] <= 1.1 * s3.RADIUS)).all()


# -- renderer -----------------------------------------------------------------------------------


def test_sphere_silhouette_matches_pinhole_formula():
    # a unit sphere at distance d projects to a disc of radius f / sqrt(d^2 - 1) (f in pixels)
    size, d = 64, s3.RADIUS
    image = s3.render(RED_SPHERE, s3.camera_to_world(10, 20, d), size, supersample=1)
    rho = s3.focal_pixels(size) / np.sqrt(d * d - 1)
    area = silhouette(image).sum()
    assert area / (np.pi * rho**2) == pytest.approx(1.0, abs=0.02)  # measured 1.008
    assert silhouette(image)[size // 2, size // 2] and not silhouette(image)[0, 0]


def test_projection_agrees_with_renderer():
    centre = np.array([0.5, -0.3, 0.2])
    obj = s3.Object3D([s3.Part("sphere", (0.15,), position=centre, colour="blue")])
    c2w = s3.camera_to_world(40, 15, s3.RADIUS)
    mask = silhouette(s3.render(obj, c2w, 64, supersample=1))
    rows, cols = np.nonzero(mask)
    centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])  # pixel centres at k + 0.5
    np.testing.assert_allclose(centroid, s3.project(centre, c2w, 64)[0], atol=0.5)  # pixels


@pytest.mark.parametrize("kind,size", [("sphere", (1.0,)), ("box", (0.6, 0.4, 0.7)), ("cylinder", (0.5, 0.8)),
                                       ("cone", (0.6, 0.8)), ("torus", (0.75, 0.25))])
def test_every_primitive_renders_a_partial_silhouette(kind, size):
    obj = s3.Object3D([s3.Part(kind, size, rotation=(20, 30, 40), colour="green")])
    fraction = silhouette(s3.render(obj, s3.camera_to_world(30, 20, s3.RADIUS), 32)).mean()
    assert 0.05 < fraction < 0.8


def test_textures_change_pixels_inside_the_silhouette_only():
    def draw(texture):
        obj = s3.Object3D([s3.Part("box", (0.6, 0.6, 0.6), rotation=(10, 20, 30), colour="orange", texture=texture)])
        return s3.render(obj, s3.camera_to_world(30, 20, s3.RADIUS), 32)

    plain = draw("plain")
    for texture in ("stripes", "checker"):
        textured = draw(texture)
        changed = (textured != plain).any(axis=-1)
        assert changed.sum() > 20
        np.testing.assert_array_equal(silhouette(textured), silhouette(plain))


def test_render_is_deterministic_and_independent_of_batching():
    obj, cams = s3.object_views(0, "train", 5)
    c2ws = [s3.camera_to_world(*c) for c in cams[:4]]
    batch = s3.render_views(obj, c2ws, 32)
    np.testing.assert_array_equal(batch, s3.render_views(obj, c2ws, 32))
    np.testing.assert_array_equal(batch[2], s3.render(obj, c2ws[2], 32))
    assert batch.dtype == np.uint8 and batch.shape == (4, 32, 32, 3)


def test_objects_are_seeded_normalised_and_fit_in_the_view():
    for i in range(12):
        obj, cams = s3.object_views(7, "train", i)
        again, cams_again = s3.object_views(7, "train", i)
        assert obj == again and np.array_equal(cams, cams_again)
        assert obj.bound == pytest.approx(s3.OBJECT_RADIUS, abs=1e-9)
        assert s3.Object3D.from_dict(json.loads(json.dumps(obj.to_dict()))) == obj
        held_out, _ = s3.object_views(7, "test", i)
        assert held_out != obj  # train and test objects come from different split ids
        # nearest, highest train camera: the object's bounding sphere stays inside the frame
        image = s3.render(obj, s3.camera_to_world(0, 50, 0.9 * s3.RADIUS), 32)
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert (border == 255).all()
        assert silhouette(image).any()
    kinds = {p.kind for i in range(40) for p in s3.object_views(0, "train", i)[0].parts}
    assert kinds == set(s3.PRIMITIVES)


# -- splits -------------------------------------------------------------------------------------


def test_build_views_split_train_and_test(tmp_path):
    out = tmp_path / "nvs_train"
    summary = s3.build_views_split("nvs_train", 2, "train", 32, seed=0, shard_size=20, out_dir=out)
    assert summary == {"n": 64, "objects": 2, "views_per_object": 32, "kind": "train"}
    index = split_index(out)
    assert index["views_per_object"] == 32 and index["kind"] == "train" and index["shard_sizes"] == [20, 20, 20, 4]
    records, images = read_records(out), read_images(out)
    assert [(r["object"], r["view"]) for r in records] == [(i, v) for i in range(2) for v in range(32)]
    assert records[33]["key"] == "shapes3d/nvs_train/1/1"
    assert {r["role"] for r in records} == {"view"} and {r["views"] for r in records} == {32}
    assert ["object_spec" in r for r in records] == [r["view"] == 0 for r in records]
    for r in records[:3]:
        np.testing.assert_allclose(s3.c2w_from_record(r), s3.camera_to_world(r["azimuth"], r["elevation"], r["radius"]))
    obj = s3.Object3D.from_dict(records[32]["object_spec"])  # the record reproduces the stored image exactly
    np.testing.assert_array_equal(s3.render(obj, s3.c2w_from_record(records[40]), 32), images[40])
    assert (out / "contact_sheet.png").exists()

    out = tmp_path / "nvs_test"
    s3.build_views_split("nvs_test", 1, "test", 32, seed=0, shard_size=64, out_dir=out)
    records = read_records(out)
    assert len(records) == 33 and split_index(out)["kind"] == "test"
    assert [r["role"] for r in records] == ["input"] + ["target"] * 32
    assert records[0]["azimuth"] == 0 and records[17]["elevation"] == 30 and records[16]["azimuth"] == 337.5
    grid = Image.open(out / "contact_sheet.png")
    assert grid.size[0] > grid.size[1]  # one row of 16 views
    again = tmp_path / "nvs_test_again"  # same seed, same bytes
    s3.build_views_split("nvs_test", 1, "test", 32, seed=0, shard_size=64, out_dir=again)
    assert (again / "shard-00000.tar").read_bytes() == (out / "shard-00000.tar").read_bytes()


# -- importer -----------------------------------------------------------------------------------


def _write_view(folder, stem, c2w, camera, size=48, alpha=True):
    """A synthetic view: an RGBA image with a transparent left half, and its camera matrix."""
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    pixels[..., 0], pixels[..., 3] = 200, 255
    if alpha:
        pixels[:, : size // 2, 3] = 0
    Image.fromarray(pixels, "RGBA").save(folder / f"{stem}.png")
    matrix = s3.c2w_to_blender_w2c(c2w) if camera == "w2c_blender" else c2w[:3]
    np.save(folder / f"{stem}.npy", matrix)


@pytest.mark.parametrize("camera", ["c2w_opencv", "w2c_blender"])
def test_import_views_folder_counts_skips(tmp_path, camera, caplog):
    root = tmp_path / "renders"
    cams = {v: s3.camera_to_world(45.0 * v, 10.0 + v, 1.5 + 0.1 * v) for v in range(6)}
    a, b, c = root / "obj_a", root / "obj_b", root / "obj_c"
    for folder in (a, b, c):
        folder.mkdir(parents=True)
    for v in range(3):
        _write_view(a, f"{v:03d}", cams[v], camera)
    _write_view(a, "003", cams[3], camera)
    (a / "003.png").write_bytes((a / "003.png").read_bytes()[:60])  # truncated PNG: corrupt
    _write_view(a, "004", cams[4], camera)
    (a / "004.npy").unlink()  # image without a camera
    _write_view(b, "000", cams[0], camera)  # a single view: the object is skipped
    for v in range(2):
        _write_view(c, f"{v:03d}", cams[v], camera)
    _write_view(c, "002", cams[2], camera)
    (c / "002.npy").write_bytes(b"not a numpy file")

    out = tmp_path / "imported"
    with caplog.at_level("WARNING", logger="lumos"):
        summary = s3.import_views_folder(root, out, image_size=32, shard_size=4, camera=camera)
    # every skip is named at WARNING: the file or object, and the reason
    for named in (f"{a / '003.png'}: image_corrupt", f"{a / '004.png'}: camera_missing",
                  f"{c / '002.npy'}: camera_unreadable", f"skip object {b}: too_few_views"):
        assert named in caplog.text, named
    assert summary["objects_seen"] == 3 and summary["objects_kept"] == 2 and summary["views_kept"] == 5
    assert summary["skipped_views"] == {"camera_missing": 1, "camera_unreadable": 1, "image_corrupt": 1}
    assert summary["skipped_objects"] == {"too_few_views": 1}
    assert json.loads((out / "curation.json").read_text()) == summary
    records, images = read_records(out), read_images(out)
    assert [(r["object_id"], r["object"], r["view"], r["views"]) for r in records] == (
        [("obj_a", 0, v, 3) for v in range(3)] + [("obj_c", 1, v, 2) for v in range(2)])
    assert {r["role"] for r in records} == {"view"} and records[1]["key"] == "renders/obj_a/001"
    for r in records:
        np.testing.assert_allclose(s3.c2w_from_record(r), cams[int(r["source_view"])], atol=1e-6)
    v = int(records[2]["source_view"])
    assert (records[2]["azimuth"], records[2]["elevation"], records[2]["radius"]) == pytest.approx(
        (45.0 * v, 10.0 + v, 1.5 + 0.1 * v), abs=1e-4)
    assert images.shape == (5, 32, 32, 3)
    assert (images[:, :, :12] == 255).all()  # transparent half composited on white
    assert (images[:, :, 20:, 0] == 200).all() and (images[:, :, 20:, 1] == 0).all()
    assert (out / "contact_sheet.png").exists()
    assert s3.import_views_folder(root, tmp_path / "limited", 32, 4, camera=camera, limit=1)["objects_seen"] == 1


def test_import_with_a_fixed_view_count_and_test_roles(tmp_path, caplog):
    """`views`: objects with fewer good views are skipped and counted, the rest cut to that many;
    kind 'test' makes each object's first view its input view."""
    root = tmp_path / "gso"
    cams = {v: s3.camera_to_world(22.5 * v, 0.0 if v < 3 else 30.0, s3.RADIUS) for v in range(4)}
    for name, count in (("a", 4), ("b", 2), ("c", 3)):
        (root / name).mkdir(parents=True)
        for v in range(count):
            _write_view(root / name, f"{v:03d}", cams[v], "c2w_opencv")
    summary = s3.import_views_folder(root, tmp_path / "out", 16, 8, views=3, kind="test")
    assert summary["objects_kept"] == 2 and summary["skipped_objects"] == {"incomplete_views": 1}
    assert f"skip object {root / 'b'}: incomplete_views (2 good of the 3 needed)" in caplog.text
    records = read_records(tmp_path / "out")
    assert [(r["object_id"], r["view"], r["role"]) for r in records] == [
        (o, v, "input" if v == 0 else "target") for o in ("a", "c") for v in range(3)]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["views_per_object"] == 3 and index["kind"] == "test"


def test_import_in_parts_then_gather(tmp_path):
    """Two import jobs (every other object folder each), joined: every object once, in the order
    of the parts, the counts summed, the view metadata kept."""
    root = tmp_path / "renders"
    cams = {v: s3.camera_to_world(45.0 * v, 10.0, s3.RADIUS) for v in range(3)}
    for name in ("a", "b", "c", "d", "e"):
        (root / name).mkdir(parents=True)
        for v in range(3 if name != "d" else 1):  # d has one view: skipped
            _write_view(root / name, f"{v:03d}", cams[v], "c2w_opencv")
    parts = [tmp_path / f"part{k}" for k in range(2)]
    for k, out in enumerate(parts):
        s3.import_views_folder(root, out, 16, 4, views=3, part=k, parts=2)
    index = s3.gather_views([str(p) for p in parts], tmp_path / "joined")
    records = read_records(tmp_path / "joined")
    assert [r["object_id"] for r in records[::3]] == ["a", "c", "e", "b"]  # part 0: a, c, e; part 1: b, (d)
    assert index["n"] == 12 and index["views_per_object"] == 3
    summary = json.loads((tmp_path / "joined" / "curation.json").read_text())
    assert summary["objects_seen"] == 5 and summary["objects_kept"] == 4 and summary["skipped_objects"] == {
        "too_few_views": 1}
    assert (tmp_path / "joined" / "contact_sheet.png").exists()
