# Shared helpers and config validation, included first by the Snakefile.
import json
import os
import sys

from snakemake.utils import min_version

min_version("9.20")

sys.path.insert(0, workflow.basedir)
from lumos.config import ConfigError, validate_config  # noqa: E402


envvars:
    "PATH",


configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err))

# Rules call the package through its `lumos` CLI, installed beside the Python running Snakemake
# (also when that environment is not activated).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
RUNS = sorted(config["pretrain"]["runs"])
EVAL_SPLITS = config["eval"]["splits"]
TRAINED_COMPONENTS = sorted(
    name for name, spec in config["components"].items() if spec.get("train")
)

for _name in TRAINED_COMPONENTS:
    if config["components"][_name]["pretrained"] != f"results/components/{_name}":
        raise WorkflowError(
            f"config key 'components.{_name}.pretrained' must be 'results/components/{_name}' "
            f"when components.{_name}.train is set (the DAG trains it there)"
        )
for _required in ("lumos_i2i", "rcg"):
    if _required not in config["pretrain"]["runs"]:
        raise WorkflowError(
            f"missing config key 'pretrain.runs.{_required}': Table 1 compares lumos_i2i and rcg"
        )


wildcard_constraints:
    split="pool|coco|imagenet|coco_ref|imagenet_ref|classifier",
    component="vae|dino|moco|fid_net",
    run="|".join(RUNS + ["untrained"]),


def as_json(**parts):
    """A config slice for `--cfg`, with the globals every step needs."""
    base = {k: config[k] for k in ("seed", "device", "preset")}
    return json.dumps({**base, **parts}, sort_keys=True)


def trained(*names):
    """Folders of components the DAG trains (tiny/smoke); [] for those loaded by hub id or path."""
    return [f"results/components/{n}" for n in names if n in TRAINED_COMPONENTS]


def run_config(run):
    """The pretrain run config; the untrained ceiling uses Lumos-I2I's architecture."""
    return config["pretrain"]["runs"]["lumos_i2i" if run == "untrained" else run]


def fid_config():
    return dict(
        extractor=config["eval"]["fid_extractor"],
        fid_net=config["components"]["fid_net"],
        batch_size=config["eval"]["batch_size"],
    )


def fid_inputs():
    return trained("fid_net") if config["eval"]["fid_extractor"] == "fid_net" else []


def component_data(wildcards):
    """The split a component trains on: labelled images for the FID net, the pool otherwise."""
    return "results/data/" + ("classifier" if wildcards.component == "fid_net" else "pool")


def sample_model(wildcards):
    """The trained model a sample job reads; none for the untrained ceiling."""
    return [] if wildcards.run == "untrained" else f"results/pretrain/{wildcards.run}/model"
