"""Run LGM (github 3DTopia/LGM) on the views `lumos lgm-inputs` prepared: 3D Gaussians per object.

Run by path inside LGM's environment (`envs/lgm.yaml`), not through the `lumos` package: this file
imports only torch, numpy, Pillow, safetensors and LGM's own `core` modules from `--repo`.

    python lumos/tasks/lgm_run.py --repo /path/to/LGM --weights /path/to/model_fp16_fixrot.safetensors \\
        --inputs results/nvs/i2i/lgm_inputs --out results/nvs/i2i/lgm

For each `object-<k>/` of `--inputs` (four views `view-<j>.png` and `cameras.json`, LGM's camera
convention: `lumos/tasks/lgm.py`) it writes to `--out`:

- `object-<k>.ply`: LGM's Gaussians, in LGM's frame (y up; the input view's camera on +z), the
  3D Gaussian Splatting .ply layout LGM writes (`core/gs.py`, `save_ply`);
- `object-<k>.png`: a preview. Row 1: the four input views, then the Gaussians rendered from the
  same four cameras; rows 2 and 3: the Gaussians every 45 degrees of azimuth at elevation 0 and
  30 degrees above;
- `summary.json`: the Gaussians kept per object and what made them.

Checks before running: the input cameras' ray embeddings must equal LGM's own four default input
cameras' (`LGM.prepare_default_rays`), which is what LGM was trained for and a test of our camera
conversion against LGM's code.

Untested against the real LGM: the development machine has no GPU, no CUDA compiler for LGM's
rasteriser and no LGM weights. `tests/test_lgm.py` runs this file on the CPU against a small
stand-in of the LGM interface it calls (`LGM(opt)`, `forward_gaussians`, `prepare_default_rays`,
`gs.render`, `gs.save_ply`, `core.utils.get_rays`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # LGM normalises its input views as ImageNet images
IMAGENET_STD = (0.229, 0.224, 0.225)
PREVIEW_TILE = 256  # side of one preview tile, pixels
RAYS_TOLERANCE = 1e-3  # largest difference allowed from LGM's default input rays


def load_lgm(repo: str, weights: str, variant: str, device: torch.device):
    """LGM's model of `variant` (`big` for the released weights) with `weights` loaded, in fp16 on
    a GPU (fp32 on the CPU), and its options. The LPIPS training loss is switched off: LGM would
    build a VGG whose weights torchvision downloads, and inference does not use it."""
    sys.path.insert(0, str(repo))
    from core.models import LGM
    from core.options import config_defaults
    from safetensors.torch import load_file

    if variant not in config_defaults:
        raise SystemExit(f"LGM has no variant {variant!r} (it has {sorted(config_defaults)})")
    opt = dataclasses.replace(config_defaults[variant], lambda_lpips=0.0)
    model = LGM(opt)
    result = model.load_state_dict(load_file(weights, device="cpu"), strict=False)
    if result.missing_keys:
        raise SystemExit(f"{weights} does not fit LGM '{variant}': {len(result.missing_keys)} tensors missing "
                         f"(e.g. {result.missing_keys[:3]})")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return model.to(device=device, dtype=dtype).eval(), opt


def ray_embeddings(cameras, opt, device: torch.device) -> torch.Tensor:
    """(V, 6, H, W) Plücker ray embeddings (o x d, d) of LGM cameras (camera-to-world, OpenGL
    axes), each pixel's ray from LGM's `get_rays` at LGM's input size and field of view."""
    from core.utils import get_rays

    rays = []
    for c2w in cameras:
        origin, direction = get_rays(torch.as_tensor(c2w, dtype=torch.float32), opt.input_size, opt.input_size,
                                     opt.fovy)
        rays.append(torch.cat([torch.cross(origin, direction, dim=-1), direction], dim=-1))
    return torch.stack(rays).permute(0, 3, 1, 2).contiguous().to(device)


def check_cameras(model, rays: torch.Tensor, device: torch.device, where) -> None:
    """Stop unless `rays` are LGM's own default input rays (elevation 0, azimuths 0/90/180/270)."""
    default = model.prepare_default_rays(device).float()
    worst = float((rays.float() - default).abs().max())
    if worst > RAYS_TOLERANCE:
        raise SystemExit(f"{where}: the input cameras are not LGM's four default cameras (largest ray difference "
                         f"{worst:.3g}): the camera conversion in lumos/tasks/lgm.py disagrees with LGM")


def read_views(folder: Path, views: list[dict], size: int) -> torch.Tensor:
    """(V, 3, size, size) float RGB in [0, 1] of the prepared views, resized to LGM's input size."""
    images = [np.asarray(Image.open(folder / v["file"]).convert("RGB"), dtype=np.float32) / 255.0 for v in views]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def lgm_input(images: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """(1, V, 9, H, W): the ImageNet-normalised views with their ray embeddings, as LGM reads them."""
    mean = torch.tensor(IMAGENET_MEAN, device=rays.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=rays.device).view(1, 3, 1, 1)
    x = (images.to(rays.device) - mean) / std
    return torch.cat([x, rays.to(x.dtype)], dim=1)[None]


def render(model, gaussians: torch.Tensor, c2w, device: torch.device) -> np.ndarray:
    """(H, W, 3) uint8: the Gaussians seen from an LGM camera (camera-to-world, OpenGL axes),
    through LGM's rasteriser, which takes OpenCV axes (y down, z forward) and transposed matrices."""
    pose = torch.as_tensor(np.asarray(c2w), dtype=torch.float32, device=device)
    pose_cv = pose @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], device=device))
    view = torch.inverse(pose_cv).T  # world-to-camera, transposed
    view_proj = view @ model.gs.proj_matrix.to(device)
    image = model.gs.render(gaussians, view[None, None], view_proj[None, None], pose[None, None, :3, 3])["image"]
    return (image[0, 0].permute(1, 2, 0).float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def tile(image: np.ndarray) -> np.ndarray:
    """One preview tile: `image` resized to PREVIEW_TILE square."""
    return np.asarray(Image.fromarray(image).resize((PREVIEW_TILE, PREVIEW_TILE), Image.LANCZOS))


def preview(inputs: torch.Tensor, at_inputs: list[np.ndarray], turntable: list[np.ndarray], per_row: int) -> np.ndarray:
    """The preview sheet: the input views then the renders from their cameras, then the turntable
    renders `per_row` to a row; short rows are padded with white."""
    first = [(v.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8) for v in inputs] + at_inputs
    rows = [first] + [turntable[i:i + per_row] for i in range(0, len(turntable), per_row)]
    width = max(len(r) for r in rows)
    blank = np.full((PREVIEW_TILE, PREVIEW_TILE, 3), 255, np.uint8)
    return np.concatenate([np.concatenate([tile(t) for t in r] + [blank] * (width - len(r)), axis=1) for r in rows])


def reconstruct(model, opt, folder: Path, out: Path, device: torch.device) -> dict:
    """LGM on one prepared object: its .ply and preview PNG in `out`; returns its summary row."""
    cameras = json.loads((folder / "cameras.json").read_text())
    rays = ray_embeddings(cameras["c2w"], opt, device)
    check_cameras(model, rays, device, folder)
    images = read_views(folder, cameras["views"], opt.input_size)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        gaussians = model.forward_gaussians(lgm_input(images, rays).to(next(model.parameters()).dtype))
    with torch.no_grad():
        gaussians = gaussians.float()
        model.gs.save_ply(gaussians, str(out / f"{folder.name}.ply"))
        at_inputs = [render(model, gaussians, c2w, device) for c2w in cameras["c2w"]]
        turntable = [render(model, gaussians, cam["c2w"], device) for cam in cameras["turntable"]]
    per_row = len({cam["azimuth"] for cam in cameras["turntable"]}) or 1
    Image.fromarray(preview(images, at_inputs, turntable, per_row)).save(out / f"{folder.name}.png")
    return {"object": folder.name, "source_views": [v["source_view"] for v in cameras["views"]],
            "gaussians": int(gaussians.shape[1]), "ply": f"{folder.name}.ply", "preview": f"{folder.name}.png"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="a clone of 3DTopia/LGM (its core/ package is imported)")
    p.add_argument("--weights", required=True, help="LGM's weights (.safetensors), e.g. model_fp16_fixrot.safetensors")
    p.add_argument("--variant", default="big", help="LGM's model options (`big`: the released weights)")
    p.add_argument("--inputs", required=True, help="folder of object-<k>/ folders (lumos lgm-inputs)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cuda", help="torch device (LGM's rasteriser needs CUDA)")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    for path, what in ((Path(args.repo) / "core" / "models.py", "--repo (a clone of 3DTopia/LGM)"),
                       (Path(args.weights), "--weights")):
        if not path.is_file():
            raise SystemExit(f"missing {path}: {what}")
    folders = sorted(f for f in Path(args.inputs).glob("object-*") if f.is_dir())
    if not folders:
        raise SystemExit(f"no object-*/ folders in {args.inputs}: run `lumos lgm-inputs` first")
    model, opt = load_lgm(args.repo, args.weights, args.variant, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in folders:
        rows.append(reconstruct(model, opt, folder, out, device))
        print(json.dumps(rows[-1]), flush=True)
    summary = {"model": f"LGM {args.variant}", "weights": str(args.weights), "input_size": opt.input_size,
               "fovy_deg": opt.fovy, "cam_radius": opt.cam_radius, "objects": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
