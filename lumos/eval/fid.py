"""FID with clean-fid, in the DAG's own feature space or Inception's.

Small scale: the Shapes-world classifier (`components.fid_net`) is clean-fid's custom feature
extractor, on images at their native size (no resize). Paper scale: clean-fid's Inception
("clean" mode, resize to 299 with PIL bicubic), loaded from the file of config key
`eval.inception` (offline nodes: clean-fid itself would download it into /tmp). Reference
statistics (mean, covariance, and the pixel size of the reference images) are written by the DAG
into results/, never into clean-fid's install folder.

Samples and reference must reach the network the same way. A network at native size needs the
same image size on both sides; Inception resizes everything to 299 x 299, so either both sides
have the same size, or both are at least 299 px with the same aspect ratio (both only scaled
down). Anything else (1024 px samples against a 256 px reference: one side downscaled, the other
upscaled and blurred) biases FID, and `check_comparable` stops it naming the sizes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_SIZE = 299  # clean-fid resizes every image to 299 x 299 before Inception
INCEPTION_NAME = "inception-v3 (clean-fid, clean mode)"  # the tables' feature_extractor for it


def _identity(img: np.ndarray) -> np.ndarray:
    return img


class Extractor:
    """A feature network plus the per-image resize clean-fid applies before it; `input_size` is
    the side every image is resized to (None: images enter at their native size)."""

    def __init__(self, model, resize, name: str, device, input_size: int | None = None):
        self.model, self.resize, self.name, self.device = model, resize, name, device
        self.input_size = input_size


def load_extractor(kind: str, fid_net_spec: dict | None, device="cpu", inception: str | None = None) -> Extractor:
    """`fid_net`: the network of `components.fid_net` (the DAG-trained Shapes classifier, or a
    user's network when its `train` is null); `inception`: clean-fid's Inception from the
    TorchScript file `inception` (config key `eval.inception`), never downloaded."""
    from cleanfid.resize import build_resizer

    if kind == "fid_net":
        from lumos.components.fid_features import CleanFIDExtractor, read_trunk

        trunk = read_trunk(fid_net_spec["pretrained"], device)  # without diffusers: ~2 s of a 5 s job
        if trunk is None:  # a hub id, a .bin checkpoint, a missing folder (named there)
            from lumos.components.classifier import load_fid_net

            trunk = load_fid_net(fid_net_spec, device).trunk
        return Extractor(CleanFIDExtractor(trunk).to(device), _identity, fid_net_name(fid_net_spec), device)
    from cleanfid.inception_torchscript import InceptionV3W

    path = check_inception_file(inception)
    # clean-fid's own wrapper with its download off: it reads <folder>/inception-2015-12-05.pt
    model = InceptionV3W(str(path.parent), download=False, resize_inside=False).to(device).eval()
    return Extractor(model, build_resizer("clean"), INCEPTION_NAME, device, INCEPTION_SIZE)


def fid_net_name(spec: dict) -> str:
    """What `components.fid_net` is, as the tables name it: the Shapes classifier the DAG trains,
    or the user's own network (`train: null`) by its path."""
    if spec.get("train"):
        return "shapes-classifier (trained in the DAG)"
    return f"user network ({spec['pretrained']})"


def check_inception_file(path: str | None) -> Path:
    """The Inception TorchScript file of config key `eval.inception`, or a clear error naming the
    key (clean-fid would otherwise try to download it into /tmp, whatever TMPDIR says)."""
    if not path:
        raise FileNotFoundError(
            f"eval.fid_extractor is 'inception' but config key 'eval.inception' is not set: download "
            f"'{INCEPTION_FILE}' once on a machine with network (clean-fid's URL, "
            f"cleanfid.downloads_helper) and set eval.inception to its path")
    path = Path(path).expanduser()
    if path.name != INCEPTION_FILE:
        raise FileNotFoundError(f"config key 'eval.inception' must name clean-fid's '{INCEPTION_FILE}' "
                                f"(clean-fid loads it by that name), not '{path.name}'")
    if not path.is_file():
        raise FileNotFoundError(f"missing Inception weights: '{path}' does not exist. Place clean-fid's "
                                f"'{INCEPTION_FILE}' there or point config key 'eval.inception' at it")
    return path


def array_features(images: np.ndarray, ext: Extractor, batch_size: int = 250) -> np.ndarray:
    """Features of uint8 (n, H, W, 3) images, resized exactly as clean-fid resizes files."""
    import torch
    from cleanfid.fid import get_batch_features

    from lumos.utils import fault_point, progress

    feats = []
    for start in progress(range(0, len(images), batch_size), desc="fid features", unit="batch"):
        batch = [ext.resize(img) for img in images[start : start + batch_size]]
        # uint8 or clean-fid's float32 resize output: both in [0, 255], as its dataset yields them
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
        feats.append(get_batch_features(x, ext.model, torch.device(ext.device)))
        fault_point("fid")
    return np.concatenate(feats)


def folder_features(folder: str, ext: Extractor, batch_size: int = 250, chunk_batches: int = 8) -> np.ndarray:
    """Features of every image file in `folder` (clean-fid's file list), read and resized by
    clean-fid, `chunk_batches` batches at a time under a progress bar (the network is in eval
    mode: how files are grouped does not change their features)."""
    from glob import glob

    import torch
    from cleanfid.fid import get_files_features
    from cleanfid.utils import EXTENSIONS

    from lumos.utils import fault_point, progress

    files = sorted(f for e in EXTENSIONS for f in glob(os.path.join(folder, f"**/*.{e}"), recursive=True))
    if not files:
        raise FileNotFoundError(f"no image files in {folder}")
    chunk, feats = batch_size * chunk_batches, []
    for i in progress(range(0, len(files), chunk), desc=f"fid features ({len(files)} images)", unit="chunk"):
        feats.append(get_files_features(files[i : i + chunk], ext.model, num_workers=0, batch_size=batch_size,
                                        device=torch.device(ext.device), mode="clean", custom_fn_resize=ext.resize,
                                        verbose=False))
        fault_point("fid")
    return np.concatenate(feats)


def statistics(feats: np.ndarray, image_size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Mean and covariance of a feature set (float64); with `image_size`, the (height, width) in
    pixels of the images they come from (reference statistics keep it for `check_comparable`)."""
    feats = feats.astype(np.float64)
    stats = {"mu": feats.mean(0), "sigma": np.cov(feats, rowvar=False), "n": np.array(len(feats))}
    if 1 < len(feats) <= feats.shape[1]:  # sigma = factor.T @ factor has rank < n: FID's trace term in O(n^2 d)
        stats["factor"] = (feats - stats["mu"]) / np.sqrt(len(feats) - 1)
    if image_size is not None:
        stats["image_size"] = np.array(image_size, dtype=np.int64)
    return stats


def folder_image_sizes(folder: str) -> dict[tuple[int, int], str]:
    """{(height, width): one file of that size} over the image files of `folder` (headers only)."""
    from PIL import Image

    sizes = {}
    for f in sorted(Path(folder).iterdir()):
        if f.suffix.lower() in (".png", ".jpg", ".jpeg"):
            with Image.open(f) as im:
                sizes.setdefault((im.height, im.width), str(f))
    if not sizes:
        raise FileNotFoundError(f"no image files in {folder}")
    return sizes


def comparable(a: tuple[int, int], b: tuple[int, int], input_size: int | None) -> bool:
    """Whether images of (height, width) `a` and `b` reach a network of `input_size` alike: the
    same size, or (a resizing network) the same aspect ratio with both sides at least
    `input_size`, so that both are only scaled down."""
    if tuple(a) == tuple(b):
        return True
    if input_size is None:
        return False
    return a[0] * b[1] == a[1] * b[0] and min(*a, *b) >= input_size


def check_comparable(sample_sizes, reference: dict, ext: Extractor, reference_path: str = "reference") -> None:
    """Stop when samples of `sample_sizes` ((height, width) pairs) and the reference statistics'
    images would reach the network differently (`comparable`); the message names the sizes and
    what to change. Statistics written before sizes were recorded are only warned about."""
    from lumos.utils import log

    if "image_size" not in reference:
        log.warning("%s does not record its image size (written by an older version): sample sizes %s are not "
                    "checked against it; rerun fid_reference to check them", reference_path, sorted(sample_sizes))
        return
    ref = tuple(int(v) for v in reference["image_size"])
    wrong = sorted(s for s in sample_sizes if not comparable(s, ref, ext.input_size))
    if not wrong:
        return
    how = ("takes images at their native size, so both must have the same size" if ext.input_size is None else
           f"resizes every image to {ext.input_size} x {ext.input_size}: the sizes must be equal, or both at least "
           f"{ext.input_size} px with the same aspect ratio (otherwise one side is upscaled and the other downscaled)")
    h, w = wrong[0]
    raise ValueError(
        f"FID samples of {h}x{w} px (height x width) cannot be compared with {reference_path}, whose reference "
        f"images are {ref[0]}x{ref[1]} px: {ext.name} {how}. Build the reference from the split at a matching "
        f"size (e.g. the split <split>_{ext.input_size or h}px) or sample at the reference's size")


def save_statistics(path, stats: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **stats)


def load_statistics(path) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"missing FID reference statistics {path}: run the fid_reference rule")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def frechet_distance(a: dict, b: dict) -> float:
    """FID between two statistics dicts. When one side keeps its low-rank `factor` F (fewer
    features than dimensions: sigma_a = F^T F), tr sqrt(sigma_a sigma_b) is the sum of the square
    roots of the eigenvalues of F sigma_b F^T (n x n, symmetric), exact and without clean-fid's
    d x d matrix square root (2048 x 2048: 30-90 s on a CPU core); otherwise clean-fid's."""
    if "factor" not in a and "factor" in b:
        a, b = b, a
    if "factor" in a:
        f = a["factor"]
        m = f @ b["sigma"] @ f.T
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
        diff = a["mu"] - b["mu"]
        return float(diff @ diff + np.trace(a["sigma"]) + np.trace(b["sigma"]) - 2 * tr_covmean)
    from cleanfid.fid import frechet_distance as fd

    return float(fd(a["mu"], a["sigma"], b["mu"], b["sigma"]))
