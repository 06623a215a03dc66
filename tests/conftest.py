"""Shared fixtures. Tests run offline on CPU with few threads; nothing downloads."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LUMOS_NO_PROGRESS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def small_split(tmp_path_factory):
    """A small Shapes split written as shards: (folder, images, records)."""
    from lumos.data.build import build_shapes_split
    from lumos.data.shards import read_images, read_records

    out = tmp_path_factory.mktemp("data") / "pool"
    build_shapes_split("pool", {"n": 96, "min_objects": 1, "max_objects": 3}, 32, seed=0, shard_size=40, out_dir=str(out))
    return out, read_images(out), read_records(out)


def write_inception_standin(path: Path, seed: int = 0) -> Path:
    """A TorchScript file with the interface of clean-fid's `inception-2015-12-05.pt` (a `layers`
    module taking (B, 3, 299, 299) images normalised to [-1, 1], 2048 features out; random
    weights), so Inception FID runs offline. Not Inception: its numbers mean nothing."""
    from torch import nn

    class Layers(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2048, 3)

        def forward(self, x):
            return torch.relu(self.conv(nn.functional.adaptive_avg_pool2d(x, 8))).mean((2, 3), keepdim=True)

    class Standin(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()

        def forward(self, x, return_features: bool = False):
            return self.layers((x - 128) / 128).flatten(1)

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Standin()).save(str(path))
    return path


@pytest.fixture(scope="session")
def inception_standin(tmp_path_factory) -> Path:
    """The stand-in Inception file, named as clean-fid names it."""
    return write_inception_standin(tmp_path_factory.mktemp("inception") / "inception-2015-12-05.pt")
