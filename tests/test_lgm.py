"""LGM reconstruction's input (lumos/lgm.py): our cameras in LGM's convention, the four views it
takes, the prepared folder (no LGM, GPU or weights needed)."""

import json

import numpy as np
import pytest
from PIL import Image

from lumos.data.shapes3d import (FOV_DEG, RADIUS, TEST_AZIMUTHS, camera_to_world, project, test_views, view_record)
from lumos.lgm import (_WORLD_TO_LGM, LGM_RADIUS, lgm_cameras, lgm_orbit_camera, lgm_view_indices, normalise_to_first,
                       prepare_lgm_inputs, split_strip, to_lgm_camera)


def _records(cameras, obj=0):
    """View records of one object's cameras (azimuth, elevation, radius), as a split stores them."""
    return [view_record(f"o/{obj}/{v}", obj, v, len(cameras), cam, camera_to_world(*cam),
                        "input" if v == 0 else "target") for v, cam in enumerate(cameras)]


def test_lgm_orbit_camera_known_poses():
    """LGM's convention (kiui's orbit_camera): azimuth 0 on +z with the identity rotation, azimuth
    90 on +x, negative elevation above (+y); OpenGL axes, so the camera's z points away from the
    object."""
    np.testing.assert_allclose(lgm_orbit_camera(0, 0), [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5], [0, 0, 0, 1]],
                               atol=1e-12)
    side = lgm_orbit_camera(0, 90, radius=2.0)
    np.testing.assert_allclose(side[:3, 3], [2, 0, 0], atol=1e-12)
    np.testing.assert_allclose(side[:3, 2], [1, 0, 0], atol=1e-12)  # back: from the object to the camera
    np.testing.assert_allclose(side[:3, 1], [0, 1, 0], atol=1e-12)  # up
    above = lgm_orbit_camera(-30, 0)
    assert above[1, 3] == pytest.approx(1.5 * np.sin(np.radians(30)))
    assert above[1, 1] > 0 and above[2, 1] < 0  # camera up tilts back, towards -z, when looking down


@pytest.mark.parametrize("elevation", [0.0, 30.0, -10.0])
def test_our_cameras_are_lgm_orbit_cameras(elevation):
    """Our camera (azimuth a, elevation e) becomes LGM's (azimuth a, elevation -e) at LGM's radius."""
    for azimuth in TEST_AZIMUTHS:
        got = to_lgm_camera(camera_to_world(azimuth, elevation, RADIUS))
        np.testing.assert_allclose(got, lgm_orbit_camera(-elevation, azimuth, LGM_RADIUS), atol=1e-12)
        np.testing.assert_allclose(got[:3, :3] @ got[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(got[:3, :3]) == pytest.approx(1.0)


def _lgm_pixel(point, c2w, size, fov_deg):
    """Where LGM's pinhole (core/utils.get_rays: pixel centres at index + 0.5, OpenGL axes) sees a
    point: continuous (column, row)."""
    cam = np.linalg.inv(c2w) @ np.append(point, 1.0)
    f = (size / 2) / np.tan(np.radians(fov_deg) / 2)
    return np.array([f * cam[0] / -cam[2] + size / 2, -f * cam[1] / -cam[2] + size / 2])


def test_converted_cameras_see_the_same_image():
    """A point of the object lands on the same pixel through our camera and through the converted
    LGM camera (same field of view; the point carried into LGM's world): the camera axes and LGM's
    pinhole agree, so the image is neither flipped nor turned (the world map is a rotation: the
    test above)."""
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.8, 0.8, (20, 3))
    for az, el in [(0, 0), (90, 0), (200, 30), (315, -10)]:
        ours = camera_to_world(az, el, RADIUS)
        lgm = to_lgm_camera(ours, radius=RADIUS)  # the same distance: the same image
        want = project(points, ours, 64)
        got = np.stack([_lgm_pixel(_WORLD_TO_LGM[:3, :3] @ p, lgm, 64, FOV_DEG) for p in points])
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_test_protocol_gives_lgm_its_four_default_cameras():
    """Table 4's test layout: views 1, 5, 9 and 13 are elevation 0, azimuths 0 / 90 / 180 / 270;
    their LGM cameras are LGM's own four input cameras, normalisation changing nothing."""
    records = _records(test_views(np.random.default_rng(3)))
    picked = lgm_view_indices(records)
    assert picked == [1, 5, 9, 13]
    cams = lgm_cameras(records, picked)
    for j, az in enumerate((0, 90, 180, 270)):
        np.testing.assert_allclose(cams[j], lgm_orbit_camera(0, az), atol=1e-12)


def test_views_and_cameras_follow_the_input_view_azimuth():
    """Renders whose input view is at azimuth 40 (an imported world): the views at 40 + 90 j are
    chosen and normalised to LGM's azimuths 90 j."""
    cams = [(40.0, 12.0, 4.0)] + [((40.0 + a) % 360, 0.0, 3.0) for a in TEST_AZIMUTHS]
    records = _records(np.array(cams + [(a, 30.0, 4.0) for a in TEST_AZIMUTHS]))
    picked = lgm_view_indices(records)
    assert [round(records[i]["azimuth"]) for i in picked] == [40, 130, 220, 310]
    cams = lgm_cameras(records, picked)
    for j, az in enumerate((0, 90, 180, 270)):
        np.testing.assert_allclose(cams[j], lgm_orbit_camera(0, az), atol=1e-9)


def test_normalisation_is_rigid():
    """LGM's normalisation moves the first camera to azimuth 0 and keeps every relative pose."""
    raw = np.stack([to_lgm_camera(camera_to_world(az, el, RADIUS)) for az, el in [(70, 20), (160, 0), (300, -5)]])
    cams = normalise_to_first(raw)
    np.testing.assert_allclose(cams[0], lgm_orbit_camera(0, 0), atol=1e-12)
    for a, b in [(0, 1), (1, 2)]:
        np.testing.assert_allclose(np.linalg.inv(cams[a]) @ cams[b], np.linalg.inv(raw[a]) @ raw[b], atol=1e-12)


def test_a_missing_view_names_the_azimuth():
    records = _records(np.array([(0.0, 10.0, 4.0), (0.0, 0.0, 4.0), (90.0, 0.0, 4.0), (180.0, 0.0, 4.0),
                                 (270.0, 30.0, 4.0)]))
    with pytest.raises(ValueError, match="azimuth 270 deg"):
        lgm_view_indices(records)


def test_split_strip():
    strip = np.arange(2 * 6 * 3).reshape(2, 6, 3).astype(np.uint8)
    tiles = split_strip(strip, 3)
    assert tiles.shape == (3, 2, 2, 3)
    np.testing.assert_array_equal(tiles[1], strip[:, 2:4])
    with pytest.raises(ValueError, match="wide"):
        split_strip(strip, 2)


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    """Two test objects of the 3D Shapes world at 16 px, and their views as nvs-eval strips (the
    true views standing in for generated ones)."""
    from lumos.data.shapes3d import build_views_split
    from lumos.nvs import test_objects

    root = tmp_path_factory.mktemp("lgm")
    build_views_split("nvs_test", 2, "test", image_size=16, seed=0, shard_size=40, out_dir=str(root / "data"))
    (root / "views").mkdir()
    truth = {}
    for k, images, _ in test_objects(str(root / "data")):
        Image.fromarray(np.concatenate(list(images), axis=1)).save(root / "views" / f"object-{k:05d}.png")
        truth[k] = images
    return root, truth


def test_prepare_lgm_inputs(test_split, tmp_path):
    root, truth = test_split
    summary = prepare_lgm_inputs(root / "views", root / "data", tmp_path / "in", objects=2, size=32)
    assert [o["source_views"] for o in summary["objects"]] == [[1, 5, 9, 13]] * 2
    for k in (0, 1):
        folder = tmp_path / "in" / f"object-{k:05d}"
        cams = json.loads((folder / "cameras.json").read_text())
        assert [v["source_view"] for v in cams["views"]] == [1, 5, 9, 13]
        for j, src in enumerate((1, 5, 9, 13)):
            view = np.asarray(Image.open(folder / f"view-{j}.png"))
            assert view.shape == (32, 32, 3)
            want = np.asarray(Image.fromarray(truth[k][src]).resize((32, 32), Image.LANCZOS))
            np.testing.assert_array_equal(view, want)
            np.testing.assert_allclose(cams["c2w"][j], lgm_orbit_camera(0, 90 * j), atol=1e-9)
        assert len(cams["turntable"]) == 16
    assert Image.open(tmp_path / "in" / "inputs.png").size == (4 * 32, 2 * 32)
    with pytest.raises(FileNotFoundError, match="nvs.lgm.objects"):
        prepare_lgm_inputs(root / "views", root / "data", tmp_path / "more", objects=3, size=32)
