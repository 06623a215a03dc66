"""Shared fixtures. Tests run offline on CPU with few threads; nothing downloads."""

import os
import subprocess
import sys
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


SMOKE_STAGE3 = "results/t2i/lumos_i2i-t5-mixed-n0/stage3/model"  # the smoke preset's multi-scale stage


def run_snakemake(*args, cwd, check=True, env=None) -> subprocess.CompletedProcess:
    """`snakemake --snakefile <repo>/Snakefile --directory <cwd> <args>`; output captured."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                           str(cwd), *args], capture_output=True, text=True, cwd=cwd, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke preset's Tables 1-3 (and its Table S1 stages), run once for the whole suite
    (tests/test_workflow.py's assertions, tests/test_faults.py's uninterrupted reference)."""
    work = tmp_path_factory.mktemp("smoke")
    run_snakemake("results/table1.csv", "results/table2.csv", "results/table3.csv", SMOKE_STAGE3, "--configfile",
                  str(ROOT / "config" / "smoke.yaml"), "--cores", "2", cwd=work)
    return work
