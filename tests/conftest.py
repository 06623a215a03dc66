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
