"""LGM reconstruction's input (lumos/tasks/lgm.py): our cameras in LGM's convention, the four views it
takes, the prepared folder; and lumos/tasks/lgm_run.py against a stand-in of LGM's interface (no LGM,
GPU or weights needed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lumos.data.worlds.shapes3d import (FOV_DEG, RADIUS, TEST_AZIMUTHS, camera_to_world, project, test_views, view_record)
from lumos.tasks.lgm import (_WORLD_TO_LGM, LGM_RADIUS, lgm_cameras, lgm_orbit_camera, lgm_view_indices, normalise_to_first,
                       prepare_lgm_inputs, split_strip, to_lgm_camera)

ROOT = Path(__file__).resolve().parent.parent


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
    from lumos.data.worlds.shapes3d import build_views_split
    from lumos.tasks.nvs import test_objects

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


# A stand-in of the LGM interface lgm_run.py calls, from reading 3DTopia/LGM: core.options
# (Options, config_defaults), core.utils.get_rays, core.models.LGM (prepare_default_rays,
# forward_gaussians, gs.render, gs.save_ply, gs.proj_matrix).
STAND_IN = {
    "core/__init__.py": "",
    "core/options.py": '''
from dataclasses import dataclass

@dataclass
class Options:
    input_size: int = 16
    fovy: float = 49.1
    cam_radius: float = 1.5
    output_size: int = 24
    lambda_lpips: float = 1.0

config_defaults = {"big": Options()}
''',
    "core/utils.py": '''
import numpy as np
import torch

def get_rays(pose, h, w, fovy):
    """Rays (origins, unit directions), (h, w, 3) each, through pixel centres, OpenGL camera axes."""
    f = h * 0.5 / np.tan(0.5 * np.deg2rad(fovy))
    v, u = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d = torch.stack([(u - w * 0.5 + 0.5) / f, -(v - h * 0.5 + 0.5) / f, -torch.ones(h, w)], -1).float()
    d = d @ pose[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    return pose[:3, 3].expand_as(d), d
''',
    "core/models.py": '''
from pathlib import Path

import numpy as np
import torch

from core.utils import get_rays


class Renderer:
    def __init__(self, opt):
        self.opt, self.proj_matrix = opt, torch.eye(4)

    def render(self, gaussians, cam_view, cam_view_proj, cam_pos, bg_color=None, scale_modifier=1):
        assert cam_view.shape[:2] == (1, 1) and cam_view_proj.shape == (1, 1, 4, 4) and cam_pos.shape == (1, 1, 3)
        return {"image": torch.full((1, 1, 3, self.opt.output_size, self.opt.output_size), 0.5)}

    def save_ply(self, gaussians, path):
        Path(path).write_text(f"ply {gaussians.shape[1]}\\n")


class LGM(torch.nn.Module):
    def __init__(self, opt):
        super().__init__()
        assert opt.lambda_lpips == 0, "LPIPS would download VGG weights"
        self.opt, self.gs = opt, Renderer(opt)
        self.conv = torch.nn.Conv2d(9, 14, 1)

    def prepare_default_rays(self, device, elevation=0):
        from lumos.tasks.lgm import lgm_orbit_camera  # kiui's orbit_camera, as lumos/tasks/lgm.py states it
        rays = []
        for az in (0, 90, 180, 270):
            o, d = get_rays(torch.tensor(lgm_orbit_camera(elevation, az, self.opt.cam_radius)).float(),
                            self.opt.input_size, self.opt.input_size, self.opt.fovy)
            rays.append(torch.cat([torch.cross(o, d, dim=-1), d], -1))
        return torch.stack(rays).permute(0, 3, 1, 2).to(device)

    def forward_gaussians(self, images):
        b, v, c, h, w = images.shape
        assert (v, c) == (4, 9) and h == w == self.opt.input_size
        return self.conv(images.view(b * v, c, h, w)).permute(0, 2, 3, 1).reshape(b, -1, 14)
''',
}


def _run(args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "lumos" / "tasks" / "lgm_run.py"), *args], capture_output=True, text=True,
                          env=env)


def test_lgm_run_against_a_stand_in(test_split, tmp_path):
    """lgm_run.py end to end on the CPU with the stand-in: a .ply and a preview per object, the
    input cameras checked against LGM's default ones (a wrong one stops the run)."""
    import torch
    from safetensors.torch import save_file

    root, _ = test_split
    repo = tmp_path / "LGM"
    for name, text in STAND_IN.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    save_file({"conv.weight": torch.zeros(14, 9, 1, 1), "conv.bias": torch.zeros(14)}, str(tmp_path / "w.safetensors"))
    prepare_lgm_inputs(root / "views", root / "data", tmp_path / "in", objects=2, size=16)
    args = ["--repo", str(repo), "--weights", str(tmp_path / "w.safetensors"), "--inputs", str(tmp_path / "in"),
            "--device", "cpu"]
    proc = _run([*args, "--out", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [o["object"] for o in summary["objects"]] == ["object-00000", "object-00001"]
    assert summary["objects"][0]["gaussians"] == 4 * 16 * 16
    assert (tmp_path / "out" / "object-00001.ply").read_text() == "ply 1024\n"
    assert Image.open(tmp_path / "out" / "object-00000.png").size == (8 * 256, 3 * 256)
    # a camera that is not LGM's stops the run
    cams_file = tmp_path / "in" / "object-00000" / "cameras.json"
    cams = json.loads(cams_file.read_text())
    cams["c2w"][1] = lgm_orbit_camera(0, 80).tolist()
    cams_file.write_text(json.dumps(cams))
    proc = _run([*args, "--out", str(tmp_path / "bad")])
    assert proc.returncode != 0 and "not LGM's four default cameras" in proc.stderr
    # missing weights name the flag
    proc = _run([*args[:2], "--weights", str(tmp_path / "none.safetensors"), *args[4:], "--out", str(tmp_path / "x")])
    assert proc.returncode != 0 and "--weights" in proc.stderr
