"""The Snakemake files are snakefmt-formatted, with the repo's settings ([tool.snakefmt] in
pyproject.toml: line length 120, params/threads/resources before log/benchmark/conda).
Fix with `snakefmt Snakefile rules/`."""

import importlib.util
import subprocess
import sys

import pytest
from conftest import ROOT


def test_snakemake_files_are_snakefmt_formatted():
    if importlib.util.find_spec("snakefmt") is None:
        pytest.fail("snakefmt is not installed (the dev extra has it: pip install -e '.[dev]')")
    files = [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
    assert len(files) > 10
    command = [sys.executable, "-m", "snakefmt", "--config", str(ROOT / "pyproject.toml"), "--check", "--diff"]
    proc = subprocess.run([*command, *map(str, files)], capture_output=True, text=True, cwd=ROOT)
    # 1: a file would change, its diff on stdout; 123: snakefmt could not parse a file
    assert proc.returncode == 0, f"run `snakefmt Snakefile rules/`:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
