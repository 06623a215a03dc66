"""`pip install .` without the `workflow` extra runs the inference side: in a subprocess where
every module of the extra's distributions is hidden (as if not installed: `find_spec` gives None,
`import` raises ModuleNotFoundError), the exported pipelines import, the trained components load
through our loaders and through transformers' Auto classes and run, and `lumos data` writes a
smoke split."""

import importlib.metadata
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from test_packaging import smoke_data_command

ROOT = Path(__file__).resolve().parent.parent

# Run in the subprocess: hide the modules named in argv[1], then use the core.
SCRIPT = r'''
import importlib, json, pkgutil, sys

HIDDEN = set(json.loads(sys.argv[1]))


class Hide:
    """Wraps a meta-path finder: the hidden top-level modules are not found."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):
        return getattr(self.finder, attr)


sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
assert importlib.util.find_spec("pandas") is None
try:
    import snakemake  # noqa: F401
    raise SystemExit("snakemake was not hidden")
except ModuleNotFoundError:
    pass

import numpy as np
import torch
from diffusers import DiffusionPipeline  # noqa: F401
from transformers import AutoImageProcessor, AutoTokenizer

import lumos.pipelines
for info in pkgutil.walk_packages(lumos.pipelines.__path__, "lumos.pipelines."):
    importlib.import_module(info.name)

from lumos.components import encoders as E, text as T, vae as V

out, data_args = sys.argv[2], json.loads(sys.argv[3])
images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
vit = {"patch_size": 8, "hidden_size": 16, "layers": 1, "heads": 2}
E.save_trained(E.build_tiny_vit(32, vit), f"{out}/dino", 32)
cls, patch = E.load_encoder({"pretrained": f"{out}/dino", "input_size": 32}, "dino")(images)
assert cls.shape == (2, 16) and patch.shape == (2, 16, 16)
pixels = AutoImageProcessor.from_pretrained(f"{out}/dino")(list(images), return_tensors="pt")["pixel_values"]
assert pixels.shape == (2, 3, 32, 32)
T.train_t5({"d_model": 16, "num_layers": 1, "num_heads": 2, "d_kv": 8, "d_ff": 32}, f"{out}/t5")
tokens, mask = T.load_text_encoder({"pretrained": f"{out}/t5", "kind": "t5", "max_length": 8}, "t5")(["a red circle"])
assert tokens.shape == (1, 8, 16) and AutoTokenizer.from_pretrained(f"{out}/t5")("a red circle").input_ids
V.build_tiny_vae(32, 4, [8, 8]).save_pretrained(f"{out}/vae")
codec = V.load_vae({"pretrained": f"{out}/vae"})
assert codec.decode(codec.encode(images)).shape == images.shape

from lumos.cli import main

main([*data_args, "--out", f"{out}/pairs.part0"])
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in HIDDEN)))
'''


def workflow_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["workflow"]}


def workflow_modules() -> set[str]:
    """Top-level modules provided only by distributions of pyproject's `workflow` extra."""
    workflow = workflow_distributions()
    modules = {m for m, dists in importlib.metadata.packages_distributions().items()
               if {canonicalize_name(d) for d in dists} <= workflow}
    for dist in workflow:  # every distribution of the extra is installed and provides a module
        assert any(dist in {canonicalize_name(d) for d in ds}
                   for m, ds in importlib.metadata.packages_distributions().items() if m in modules), dist
    return modules


def test_pipelines_components_and_data_run_without_the_workflow_extra(tmp_path):
    from lumos.cli import WORKFLOW_MODULES

    hidden = workflow_modules()
    assert WORKFLOW_MODULES <= hidden  # what `lumos` names the extra for: a module of each distribution
    by_module = importlib.metadata.packages_distributions()
    named = {canonicalize_name(d) for m in WORKFLOW_MODULES for d in by_module[m]}
    assert named == workflow_distributions() - {"snakemake-executor-plugin-slurm"}  # imported by snakemake only
    assert {"snakemake", "cleanfid", "lpips", "skimage", "pandas", "matplotlib", "scipy", "pyarrow", "av"} <= hidden
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(sorted(hidden)), str(tmp_path),
                           json.dumps(smoke_data_command("pairs", 12))], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert json.loads((tmp_path / "pairs.part0" / "index.json").read_text())["n"] == 12
