# Shared by every rules file, included first by the Snakefile: the config (loaded, validated and
# checked across keys), the wildcard constraints, the helpers every task's rules call (`cfg_json`,
# `trained`, `parts`, `prior_model`), a rule's resources, and the checks before a run. The planning
# (name grammars, job counts, snapshot lists, the encoders a split needs) is tested Python in
# lumos/workflow; each task's rules file holds its own constants and input functions, the latter as
# lambdas (`snakemake --lint` flags a `def` in a file with rules).
import functools
import inspect
import json
import os
import sys

from snakemake.logging import logger
from snakemake.utils import min_version

min_version("9.20")

sys.path.insert(0, workflow.basedir)
from lumos.components import COMPONENTS  # noqa: E402
from lumos.config import ConfigError, config_slice, validate_config  # noqa: E402
from lumos.data.sources import check_aesthetic  # noqa: E402
from lumos.workflow.inputs import missing_inputs, released  # noqa: E402
from lumos.workflow.names import FINETUNE_WILDCARD, parse_prior  # noqa: E402
from lumos.workflow.splits import split_base  # noqa: E402


envvars:
    "PATH",


configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    validate_config(config)
    for _split, _blocks in config["data"].get("sources", {}).items():
        for _k, _block in enumerate(_blocks):
            check_aesthetic(_block.get("aesthetic"), f"data.sources.{_split}.{_k}.aesthetic")
except ConfigError as err:
    raise WorkflowError(str(err))

# Rules call the package through its `lumos` CLI, installed beside the Python running Snakemake
# (also when that environment is not activated).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
# With `--sdm conda`, envs/lumos.post-deploy.sh installs this checkout into the rules' env from here.
os.environ.setdefault("LUMOS_ROOT", workflow.basedir)
RUNS = sorted(config["pretrain"]["runs"])
VISION_ENCODERS = ["dino", "dino_small", "dino_large", "dino_long", "moco", "clip", "dinov2_base"]
TRAINED_COMPONENTS = sorted(name for name, spec in config["components"].items() if spec.get("train"))
RELEASED = released(config)  # kind -> the authors' released .pth (rules/released.smk)

for _name in TRAINED_COMPONENTS:
    if config["components"][_name]["pretrained"] != f"results/components/{_name}":
        raise WorkflowError(
            f"config key 'components.{_name}.pretrained' must be 'results/components/{_name}' "
            f"when components.{_name}.train is set (the DAG trains it there)"
        )
for _required in ("lumos_i2i", "rcg"):
    if _required not in config["pretrain"]["runs"]:
        raise WorkflowError(f"missing config key 'pretrain.runs.{_required}': Table 1 compares lumos_i2i and rcg")


# Names: lumos/workflow/names.py. `prior`/`vprior`: the labels of nvs.priors / i2v.priors, and the
# NVS baseline (`input`) and ceiling (`vae`), the I2V metrics' sanity rows (`real`).
wildcard_constraints:
    split="(pool|coco(_[0-9]+px)?|imagenet|coco_ref|imagenet_ref|classifier|imagenet1k|nvs_train|nvs_test|pairs(_[0-9]+px(_ar[0-9]+)?)?)"
    + f"(\\+({'|'.join(VISION_ENCODERS)}))?",
    vsplit="nvs_train|nvs_test",
    prior="|".join(["input", "vae", *config["nvs"]["priors"]]),
    clipsplit="video_train|ucf|msrvtt",
    vprior="|".join(["real", *config["i2v"]["priors"]]),
    stage="[0-9]+",
    component="|".join(COMPONENTS),
    run=f"({'|'.join(RUNS)})(_pool[0-9]+)?(_drop[0-9]+)?(_cfg[0-9.]+)?(_step[0-9]+)?|untrained|released_i2i",
    kind="i2i|t2i",
    ft=f"{FINETUNE_WILDCARD}|untrained",
    ckpt="final|step-[0-9]+",
    captions="short|long",
    bench="geneval|dpg",
    part="[0-9]+",


@functools.cache  # the config is fixed once loaded; thousands of jobs ask for the same slices
def cfg_json(*keys):
    """`--cfg` of a step: the settings it reads, by dotted config key (plus seed, device, preset).
    A step reruns exactly when one of them changes (Snakemake's params trigger)."""
    return json.dumps(config_slice(config, *keys), sort_keys=True)


def trained(*names):
    """Folders of components the DAG trains (tiny/smoke); [] for those loaded by hub id or path."""
    return [f"results/components/{n}" for n in names if n in TRAINED_COMPONENTS]


def parts(folder, jobs):
    """The part folders of a task split over `jobs` parallel jobs."""
    return [f"{folder}.part{k}" for k in range(jobs)]


def prior_source(task, label):
    """What a `<task>.priors` label names (task nvs or i2v): ("none", None), ("i2i", pretrain run)
    or ("t2i", fine-tune)."""
    try:
        return parse_prior(config[task]["priors"][label], config["pretrain"]["runs"])
    except ValueError as err:
        raise WorkflowError(f"config key '{task}.priors.{label}': {err}")


def prior_model(task, label):
    """The model folder a `task` fine-tune from prior `label` starts from ([] from scratch)."""
    kind, source = prior_source(task, label)
    return [] if kind == "none" else f"results/{'pretrain' if kind == 'i2i' else 't2i'}/{source}/model"


# Why a `resources:` config block and not the profile's `set-resources`: the requests belong to
# the preset (the paper preset asks 8 nodes x 8 GPUs, CI's fake-GPU SLURM one), they must follow
# `--configfile`/`--config` like every other setting, and GPU rules need values derived from
# them (processes = GPUs x nodes for `lumos launch`, `srun` for multi-node, the SIGUSR1 lead
# time) that `set-resources` cannot compute. Retries do use Snakemake's `attempt`.
def rule_request(rule):
    """Config `resources.default` overridden by `resources.rules.<rule>`."""
    return {**config["resources"]["default"], **config["resources"]["rules"].get(rule, {})}


def on_slurm():
    """Whether this run's jobs go to SLURM: the slurm executor, or slurm-jobstep running a job in
    its allocation. A dry run (executor `dryrun`) shows what the executor it stands in for would
    run: Snakemake forces threads for remote executors only (snakemake/api.py), and SLURM is the
    one remote executor this workflow has a profile for."""
    name = getattr(workflow.executor_plugin, "name", "local")
    if name == "dryrun":
        return bool(workflow.execution_settings.use_threads)
    return name.startswith("slurm")


def rule_resources(rule, signal=False):
    """Snakemake/SLURM resources of `rule` from config `resources` (local runs ignore them).

    Memory and runtime grow with the attempt number. GPU rules ask for `gpus_per_node` GPUs;
    under SLURM with `nodes` > 1 they run one launcher task per node through srun (`mpi`), and
    `processes` is the number of training processes the launchers start (one per GPU); anywhere
    else they run on one machine, one process per GPU it has (`on_slurm`). `signal` adds
    `--signal=USR1@<slurm.signal_seconds>` so a job checkpoints before its time limit.
    """
    r = rule_request(rule)
    gpus, nodes = r.get("gpus_per_node", 0), r.get("nodes", 1)
    mem, minutes = r["mem_mb"], r["runtime"]
    out = {
        "mem_mb": lambda wc, attempt: mem * attempt,
        "runtime": lambda wc, attempt: minutes * attempt,
        # Under SLURM: gpus x nodes processes, one srun launcher per node. Elsewhere (a workstation,
        # an interactive node): one process per GPU the job sees, on this machine. The executor is
        # known only when jobs run, so these are functions, except where every executor agrees (a
        # one-node CPU job: one process, no srun; Snakemake calls each function once per job).
        "processes": lambda wc: max(1, gpus * nodes) if on_slurm() else ("auto" if gpus else 1),
        "nodes": lambda wc: nodes if on_slurm() else 1,
        "mpi": lambda wc: "srun" if nodes > 1 and on_slurm() else "",
    }
    if gpus == 0 and nodes == 1:
        out.update(processes=1, nodes=1, mpi="")
    extra = [r["slurm_extra"]] if r.get("slurm_extra") else []
    if signal and config["slurm"]["signal_seconds"]:
        extra.append(f"--signal=USR1@{config['slurm']['signal_seconds']}")
    if extra:
        out["slurm_extra"] = " ".join(extra)
    for key, value in (
        ("slurm_partition", r.get("slurm_partition") or config["slurm"]["partition"]),
        ("slurm_account", config["slurm"]["account"]),
        ("constraint", r.get("constraint")),
    ):
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


def read_signatures_once():
    """Snakemake reads the signature of an input, params, resources or priority function (which of
    wildcards, input, attempt... it takes) each time it calls it, once per job: ~70K
    `inspect.signature` calls, ~15% of planning the paper DAG. Read each function's once, through
    Snakemake's own hook for functions whose parameters it should not inspect
    (`snakemake.common.overwrite_function_params`, given the function's own parameters). Called
    by the Snakefile after its rules; without the hook (another Snakemake) planning is only slower."""
    try:
        from snakemake.common import overwrite_function_params
    except ImportError:
        return
    # Snakemake evaluates each resource through a bound `Resource.evaluate` (signature `*args,
    # **kwargs`) and reads that method's signature too, twice per resource per job; the hook set on
    # the function is seen through every bound method. tests/test_bench.py counts what is left: none.
    from snakemake.resources import Resource

    overwrite_function_params(Resource.evaluate, inspect.signature(Resource.evaluate).parameters)
    for r in workflow.rules:
        for item in [*r.input, *r.params, *(r.resources or {}).values(), r.priority]:
            item = getattr(item, "_evaluator", item)  # a resource's function
            func = item if callable(item) and not isinstance(item, str) else getattr(item, "callable", None)
            if callable(func):
                overwrite_function_params(func, inspect.signature(func).parameters)


def format_shell_commands_once():
    """Snakemake's `Job.log_info`, which prints a job in a dry run and when it starts, formats the
    job's shell command three times (`Job.shellcmd` is a property), each time copying the workflow's
    ~470 globals several times. Format it once per call and hand that to the other two: the paper
    dry run 6.99 -> 6.25 CPU-s. Called by the Snakefile; without these names (another Snakemake)
    planning is only slower. tests/test_bench.py counts the formats: one per job."""
    from snakemake.jobs import Job

    shellcmd, log_info = Job.__dict__.get("shellcmd"), Job.__dict__.get("log_info")
    if not isinstance(shellcmd, property) or not callable(log_info) or hasattr(log_info, "formats_once"):
        return
    logging_now = {}  # id(job) -> its shell command, while its log_info runs

    def shell_command(job):
        key = id(job)
        return logging_now[key] if key in logging_now else shellcmd.fget(job)

    def log_info_formatting_once(job, *args, **kwargs):
        logging_now[id(job)] = shellcmd.fget(job)
        try:
            return log_info(job, *args, **kwargs)
        finally:
            logging_now.pop(id(job), None)

    log_info_formatting_once.formats_once = True
    Job.shellcmd = property(shell_command, doc=shellcmd.__doc__)
    Job.log_info = functools.wraps(log_info)(log_info_formatting_once)


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
    needed = {(stage, name) for job in workflow.dag.needrun_jobs() for stage, name in job_reads(job)}
    absent = [
        f"{key} = '{path}' ({what})"
        for key, path, what, stage, name in missing_inputs(config)
        if (stage, name) in needed
    ]
    if absent:
        raise WorkflowError(
            f"inputs of the {config['preset']} preset are missing: {'; '.join(absent[:8])}"
            + (f"; and {len(absent) - 8} more" if len(absent) > 8 else "")
        )


# The config's input paths and the jobs that read them: `missing_inputs` lists the paths that do
# not exist, with their config keys (a warning at start, also in a dry run); `check_before_run`
# stops a real run when a job it will run reads one.
READERS = {
    "data_part": "split",
    "aesthetic_part": "split",
    "caption": "split",
    "views_part": "vsplit",
    "clips_part": "clipsplit",
    "import_released": "kind",
}
FID_RULES = ("fid_reference", "fid", "fid_real", "t2i_fid", "released_t2i_fid")


def job_reads(job):
    """(stage, name) of the configured inputs a job reads: its split's sources, the released
    checkpoint of its kind, or Inception."""
    name = job.rule.name
    if name in READERS:
        value = job.wildcards[READERS[name]]
        yield (
            name.split("_")[0] if name in ("views_part", "clips_part", "import_released") else "data",
            split_base(config, value)[0] if READERS[name] == "split" else value,
        )
    if name in FID_RULES and config["eval"]["fid_extractor"] == "inception":
        yield ("inception", "")


onstart:
    check_before_run()


# Every configured input path that does not exist, named by its key (dry runs too).
for _key, _path, _what, _stage, _name in missing_inputs(config):
    logger.warning(
        f"{config['preset']} preset: {_key} = '{_path}' ({_what}) does not exist: a run that needs it "
        f"stops at start"
    )
