"""The FID feature space at small scale: the Shapes classifier's trunk, read without diffusers.

The classifier (`lumos.components.classifier.ShapesClassifier`, a diffusers ModelMixin) is trained
and saved once; every FID job then needs only its trunk (images -> features). Importing diffusers
costs an FID job about 2 of its ~5 seconds (diffusers imports torch._dynamo and transformers), so
the trunk is rebuilt here from the saved folder's `config.json` and safetensors weights. Anything
else (a hub id, a `.bin` checkpoint) goes through the classifier's own `from_pretrained`
(`lumos.eval.fid.load_extractor`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

WEIGHTS = "diffusion_pytorch_model.safetensors"  # ModelMixin.save_pretrained's file name


def conv_block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.GELU()]


def shapes_trunk(width: int, feature_dim: int) -> nn.Sequential:
    """Four conv-BN-GELU layers, global max pooling, a linear map to `feature_dim` features."""
    w = width
    return nn.Sequential(
        *conv_block(3, w), *conv_block(w, 2 * w, 2), *conv_block(2 * w, 2 * w), *conv_block(2 * w, 4 * w, 2),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(4 * w, feature_dim),
    )


class CleanFIDExtractor(nn.Module):
    """Adapter for clean-fid's `custom_feat_extractor`: float images in [0, 255] -> the trunk's
    features."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x / 127.5 - 1)


def read_trunk(folder: str, device="cpu") -> nn.Module | None:
    """The feature trunk of a local ShapesClassifier folder with safetensors weights (what the DAG
    trains), without diffusers; None for anything else (a hub id, a `.bin` checkpoint, another
    class, a missing folder), which the caller loads with the classifier's `from_pretrained`."""
    from safetensors.torch import load_file

    folder = Path(str(folder)).expanduser()
    config_file, weights = folder / "config.json", folder / WEIGHTS
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get("_class_name") != "ShapesClassifier" or not weights.is_file():
        return None
    trunk = shapes_trunk(config["width"], config["feature_dim"])
    state = {k.removeprefix("trunk."): v for k, v in load_file(str(weights)).items() if k.startswith("trunk.")}
    trunk.load_state_dict(state)  # strict: a trunk of another layout fails here, naming the keys
    return trunk.to(device).eval()
