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


def installed_env(site: Path) -> dict:
    """The environment of a run of the installed copy: its folder first on the path (the
    dependencies come from this interpreter's environment)."""
    return {**os.environ, "PYTHONPATH": str(site)}


def run_installed(site: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    """`python -m lumos.cli <args>` from `cwd` (outside the checkout) with the installed copy first."""
    return subprocess.run([sys.executable, "-m", "lumos.cli", *args], cwd=cwd, env=installed_env(site),
                          capture_output=True, text=True)


def smoke_data_command(split: str, n: int) -> list[str]:
    """`lumos data` as rules/data.smk's `data_part` calls it for a smoke split (its arguments and
    `--cfg` slice, from the smoke preset), at `n` images in shards of 10."""
    from lumos.config import config_slice, load_config
    from lumos.workflow.jobs import data_jobs
    from lumos.workflow.splits import data_args, data_keys

    config = load_config("smoke")
    config["data"]["splits"][split]["n"], config["data"]["shard_size"], config["device"] = n, 10, "cpu"
    assert data_jobs(config, split) == 1
    cfg = json.dumps(config_slice(config, *data_keys(config, split)), sort_keys=True)
    return ["data", *data_args(config, split).split(), "--cfg", cfg, "--part", "0", "--parts", "1"]


def test_installed_lumos_writes_a_smoke_split_outside_the_checkout(installed, tmp_path):
    """The installed `lumos` console script builds a smoke split from a folder outside the checkout,
    importing lumos (config, presets and schema included) from the installed copy."""
    assert (installed / "lumos" / "presets" / "schema.yaml").is_file()
    assert not (installed / "lumos" / "presets").is_symlink() and (installed / "lumos" / "config.yaml").is_file()
    script = installed / "bin" / "lumos"  # the console script, run by this interpreter (as `check` below)
    assert script.read_text().splitlines()[0] == f"#!{sys.executable}"
    proc = subprocess.run([str(script), *smoke_data_command("pairs", 24), "--out", "pairs.part0"], cwd=tmp_path,
                          env=installed_env(installed), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "pairs.part0"
    assert json.loads((out / "index.json").read_text())["n"] == 24
    assert sorted(f.name for f in out.glob("shard-*.tar")) == [f"shard-{i:05d}.tar" for i in range(3)]
    where = run_installed(installed, tmp_path, "--version")
    assert where.returncode == 0 and where.stdout.strip() == "lumos 0.1.0"
    code = ("import lumos, lumos.cli, lumos.commands.data, lumos.config as c; c.load_config('paper'); "
            "print(*(m.__file__ for m in (lumos, lumos.cli, lumos.commands.data, c)), sep='\\n')")
    check = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=installed_env(installed),
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
    files = check.stdout.split()
    assert len(files) == 4 and all(f.startswith(str(installed / "lumos")) for f in files), files
    assert not any(f.startswith(str(ROOT)) for f in files)
