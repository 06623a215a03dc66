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
    split = "classifier" if wildcards.component == "fid_net" else "pool"
    return f"results/data/{split}"


def sample_model(wildcards):
    """The trained model a sample job reads; none for the untrained ceiling."""
    return [] if wildcards.run == "untrained" else f"results/pretrain/{wildcards.run}/model"


def rule_resources(rule, signal=False):
    """Snakemake/SLURM resources of `rule` from config `resources` (local runs ignore them).

    Memory and runtime grow with the attempt number. GPU rules ask for `gpus_per_node` GPUs;
    with `nodes` > 1 they run one launcher task per node through srun (`mpi`). `processes` is
    the number of training processes the launcher starts (one per GPU). `signal` adds
    `--signal=USR1@<slurm.signal_seconds>` so a job checkpoints before its time limit.
    """
    r = {**config["resources"]["default"], **config["resources"]["rules"].get(rule, {})}
    gpus, nodes = r.get("gpus_per_node", 0), r.get("nodes", 1)
    mem, minutes = r["mem_mb"], r["runtime"]
    out = {
        "mem_mb": lambda wc, attempt: mem * attempt,
        "runtime": lambda wc, attempt: minutes * attempt,
        "processes": max(1, gpus * nodes),
        "nodes": nodes,
        "mpi": "srun" if nodes > 1 else "",
    }
    extra = [r["slurm_extra"]] if r.get("slurm_extra") else []
    if signal and config["slurm"]["signal_seconds"]:
        extra.append(f"--signal=USR1@{config['slurm']['signal_seconds']}")
    if extra:
        out["slurm_extra"] = " ".join(extra)
    for key, value in (("slurm_partition", r.get("slurm_partition") or config["slurm"]["partition"]),
                       ("slurm_account", config["slurm"]["account"]), ("constraint", r.get("constraint"))):
        if value:
            out[key] = value
    if gpus == 0:
        out["cpus_per_task"] = r.get("cpus_per_task", 1)
    elif nodes == 1:
        out["gpu"] = gpus
        out["cpus_per_gpu"] = r.get("cpus_per_gpu", 1)
        if r.get("gpu_model"):
            out["gpu_model"] = r["gpu_model"]
    else:  # one srun task per node, each with all of the node's GPUs
        out["gres"] = f"gpu:{r['gpu_model']}:{gpus}" if r.get("gpu_model") else f"gpu:{gpus}"
        out["tasks"] = nodes
        out["tasks_per_gpu"] = 0
        out["cpus_per_task"] = gpus * r.get("cpus_per_gpu", 1)
    return out


def check_before_run():
    """Stop a real run early, with a message, when the cluster or the data is not set up."""
    executor = getattr(workflow.executor_plugin, "name", "local")
    if executor == "slurm":
        missing = [k for k in ("account", "partition") if not config["slurm"][k]]
        if missing:
            raise WorkflowError(
                f"the SLURM profile needs config key(s) {', '.join(f'slurm.{k}' for k in missing)}: "
                "set them in config/paper.yaml or pass --config 'slurm={account: ACC, partition: PART}'"
            )
    if config["data"]["source"] == "paths":
        needed = ["pool", *EVAL_SPLITS, *(f"{s}_ref" for s in EVAL_SPLITS)]
        if config["eval"]["fid_extractor"] == "fid_net":
            needed.append("classifier")
        paths = config["data"].get("paths", {})
        absent = [f"data.paths.{s} = '{paths.get(s, '')}'" for s in needed if not os.path.isdir(paths.get(s, ""))]
        if absent:
            raise WorkflowError(f"data folders of the paper preset are missing: {'; '.join(absent)}")


onstart:
    check_before_run()
