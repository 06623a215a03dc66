"""FID with clean-fid, in the DAG's own feature space or Inception's.

Small scale: the Shapes-world classifier (`components.fid_net`) is clean-fid's custom feature
extractor, on images at their native size (no resize). Paper scale: clean-fid's Inception
("clean" mode, resize to 299 with PIL bicubic). Reference statistics (mean, covariance) are
written by the DAG into results/, never into clean-fid's install folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

INCEPTION_FILE = "inception-2015-12-05.pt"


def _identity(img: np.ndarray) -> np.ndarray:
    return img


class Extractor:
    """A feature network plus the per-image resize clean-fid applies before it."""

    def __init__(self, model, resize, name: str, device):
        self.model, self.resize, self.name, self.device = model, resize, name, device


def load_extractor(kind: str, fid_net_spec: dict | None, device="cpu") -> Extractor:
    """`fid_net`: the DAG-trained classifier; `inception`: clean-fid's Inception (must be cached)."""
    from cleanfid.resize import build_resizer

    if kind == "fid_net":
        from lumos.components.classifier import CleanFIDExtractor, load_fid_net

        net = load_fid_net(fid_net_spec, device)
        return Extractor(CleanFIDExtractor(net).to(device), _identity, "shapes-classifier (trained in the DAG)", device)
    path = Path(tempfile.gettempdir()) / INCEPTION_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"clean-fid's Inception weights are not at {path}: place '{INCEPTION_FILE}' there "
            f"(clean-fid downloads it only where the network is reachable)"
        )
    from cleanfid.features import build_feature_extractor

    model = build_feature_extractor("clean", device=torch.device(device), use_dataparallel=False)
    return Extractor(model, build_resizer("clean"), "inception-v3 (clean-fid, clean mode)", device)


def array_features(images: np.ndarray, ext: Extractor, batch_size: int = 250) -> np.ndarray:
    """Features of uint8 (n, H, W, 3) images, resized exactly as clean-fid resizes files."""
    from cleanfid.fid import get_batch_features

    feats = []
    for start in range(0, len(images), batch_size):
        batch = [ext.resize(img) for img in images[start : start + batch_size]]
        # uint8 or clean-fid's float32 resize output: both in [0, 255], as its dataset yields them
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
        feats.append(get_batch_features(x, ext.model, torch.device(ext.device)))
    return np.concatenate(feats)


def folder_features(folder: str, ext: Extractor, batch_size: int = 250) -> np.ndarray:
    """Features of every image file in `folder`, read and resized by clean-fid."""
    from cleanfid.fid import get_folder_features

    return get_folder_features(str(folder), ext.model, num_workers=0, batch_size=batch_size,
                               device=torch.device(ext.device), mode="clean", custom_fn_resize=ext.resize,
                               verbose=False)


def statistics(feats: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and covariance of a feature set (float64)."""
    feats = feats.astype(np.float64)
    return {"mu": feats.mean(0), "sigma": np.cov(feats, rowvar=False), "n": np.array(len(feats))}


def save_statistics(path, stats: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **stats)


def load_statistics(path) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"missing FID reference statistics {path}: run the fid_reference rule")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def frechet_distance(a: dict, b: dict) -> float:
    """FID between two statistics dicts, by clean-fid's Frechet distance."""
    from cleanfid.fid import frechet_distance as fd

    return float(fd(a["mu"], a["sigma"], b["mu"], b["sigma"]))
