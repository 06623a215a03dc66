"""lumos as an installed package (not editable): its config, presets and schema ship inside it,
so the commands work outside the checkout; `lumos --version`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built as a wheel and installed (no dependencies) into a folder of its own."""
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(base / "dist"), str(ROOT)], check=True)
    (wheel,) = (base / "dist").glob("lumos-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(base / "site"),
                    str(wheel)], check=True)
    return base / "site"


def run_installed(site: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    """`python -m lumos.cli <args>` from `cwd` (outside the checkout) with the installed copy first."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "lumos.cli", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_installed_lumos_curates_a_smoke_split_outside_the_checkout(installed, tmp_path):
    assert (installed / "lumos" / "presets" / "schema.yaml").is_file()
    assert not (installed / "lumos" / "presets").is_symlink() and (installed / "lumos" / "config.yaml").is_file()
    cfg = {"data.image_size": 32, "data.shard_size": 50, "data.source": "shapes",
           "data.splits.classifier": {"image_format": "png", "max_objects": 3, "min_objects": 1, "n": 24},
           "device": "cpu", "preset": "smoke", "seed": 0}
    proc = run_installed(installed, tmp_path, "data", "--split", "classifier", "--cfg", json.dumps(cfg), "--part", "0",
                         "--parts", "1", "--out", "classifier.part0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "classifier.part0" / "index.json").read_text())["n"] == 24
    where = run_installed(installed, tmp_path, "--version")
    assert where.returncode == 0 and where.stdout.strip() == "lumos 0.1.0"
    check = subprocess.run([sys.executable, "-c", "import lumos.config as c; c.load_config('paper'); print(c.__file__)"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.startswith(str(installed)), check.stderr[-2000:]
