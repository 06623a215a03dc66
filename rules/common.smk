# Shared helpers and config validation, included first by the Snakefile.
import json
import os
import re
import sys

from snakemake.logging import logger
from snakemake.utils import min_version

min_version("9.20")

sys.path.insert(0, workflow.basedir)
from lumos.config import ConfigError, config_slice, validate_config  # noqa: E402
from lumos.data.buckets import aspect_buckets  # noqa: E402
from lumos.data.sources import check_aesthetic  # noqa: E402
from lumos.eval.fid import INCEPTION_SIZE  # noqa: E402
from lumos.tasks.t2i import FINETUNE_PATTERN, FINETUNE_WILDCARD, parse_finetune  # noqa: E402
from lumos.report.released import RELEASED_T2I_LABEL  # noqa: E402


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
EVAL_SPLITS = config["eval"]["splits"]
MAIN_ENCODERS = config["features"]["main_encoders"]  # cached in each split's own features folder
VISION_ENCODERS = ["dino", "dino_small", "dino_large", "moco", "clip"]
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



# T2I: fine-tune names are <prior>-<text encoder>-<captions>-n<noise %> (lumos/tasks/t2i.py
# parses them; the rules ask it rather than splitting names themselves).
T2I_MAIN = config["t2i"]["main"]
MAIN_TEXT = parse_finetune(T2I_MAIN)["text"]
FIGURES = config["t2i"]["figures"]
OFFICIAL = config["t2i"]["eval"].get("official", {})  # paper: the official GenEval / DPG-Bench
TEXT_ENCODERS = sorted({MAIN_TEXT, *(t for f in ("fig11", "fig11b") for t in FIGURES.get(f, {}).get("text_encoders", []))})
def snapshot_steps(steps, every):
    """The steps at which a run of `steps` steps keeps an EMA snapshot: every `every`, and the last."""
    return sorted({*range(every, steps + 1, every), steps})


SNAPSHOTS = [f"step-{s:06d}" for s in snapshot_steps(config["t2i"]["train"]["steps"], config["t2i"]["snapshot_every"])]
# Table S1: stage k >= 2 continues stage k-1 at a higher resolution on results/data/pairs_<px>px.
STAGES = {k: stage for k, stage in enumerate(config["t2i"]["stages"], start=2)}


# NVS: prior labels of `nvs.priors` (label -> none | pretrain run | T2I fine-tune), the snapshots
# of Figure 5's curves and the prior of Table 4's Lumos-NVS row.
NVS_PRIORS = list(config["nvs"]["priors"])
NVS_MAIN = config["nvs"].get("main", "i2i")
_nvs_steps = config["nvs"]["train"]["steps"]
NVS_SNAPSHOTS = [f"step-{s:06d}" for s in snapshot_steps(_nvs_steps, config["nvs"].get("snapshot_every", _nvs_steps))]
if NVS_MAIN not in NVS_PRIORS:
    raise WorkflowError(f"config key 'nvs.main': {NVS_MAIN!r} is not a label of nvs.priors ({NVS_PRIORS})")
if {"input", "vae"} & set(NVS_PRIORS):
    raise WorkflowError("config key 'nvs.priors': the labels 'input' and 'vae' are the baseline's and the ceiling's")


# I2V: prior labels of `i2v.priors`, the evaluation splits, the first-frame condition encoder
# and PIC's encoder (the DAG's image encoder at small scale).
I2V_PRIORS = list(config["i2v"]["priors"])
I2V_MAIN = config["i2v"].get("main", "i2i")
I2V_EVAL = config["i2v"].get("eval_splits", ["ucf", "msrvtt"])
I2V_ENCODER = config["i2v"].get("encoder", "dino")
I2V_PIC_ENCODER = config["components"].get("pic", {}).get("encoder", I2V_ENCODER)
if I2V_MAIN not in I2V_PRIORS:
    raise WorkflowError(f"config key 'i2v.main': {I2V_MAIN!r} is not a label of i2v.priors ({I2V_PRIORS})")
if "real" in I2V_PRIORS:
    raise WorkflowError("config key 'i2v.priors': the label 'real' is the metrics' sanity rows'; choose another")


wildcard_constraints:
    split="(pool|coco(_[0-9]+px)?|imagenet|coco_ref|imagenet_ref|classifier|imagenet1k|nvs_train|nvs_test|pairs(_[0-9]+px(_ar[0-9]+)?)?)"
    + f"(\\+({'|'.join(VISION_ENCODERS)}))?",
    vsplit="nvs_train|nvs_test",
    prior="|".join(["input", "vae", *NVS_PRIORS]),
    clipsplit="video_train|ucf|msrvtt",
    vprior="|".join(["real", *I2V_PRIORS]),
    stage="[0-9]+",
    component="vae|dino|dino_small|dino_large|moco|fid_net|t5|clip|video_net",
    run=f"({'|'.join(RUNS)})(_pool[0-9]+)?(_drop[0-9]+)?(_cfg[0-9.]+)?(_step[0-9]+)?|untrained|released_i2i",
    kind="i2i|t2i",
    ft=f"{FINETUNE_WILDCARD}|untrained",
    ckpt="final|step-[0-9]+",
    captions="short|long",
    bench="geneval|dpg",
    part="[0-9]+",


def cfg_json(*keys):
    """`--cfg` of a step: the settings it reads, by dotted config key (plus seed, device, preset).
    A step reruns exactly when one of them changes (Snakemake's params trigger)."""
    return json.dumps(config_slice(config, *keys), sort_keys=True)


def trained(*names):
    """Folders of components the DAG trains (tiny/smoke); [] for those loaded by hub id or path."""
    return [f"results/components/{n}" for n in names if n in TRAINED_COMPONENTS]


# `pairs_512px`: a split re-rendered / re-curated at a stage's resolution; `pairs_1024px_ar4`: the
# same in stage 4's aspect-ratio buckets.
SPLIT_VARIANT = re.compile(r"([a-z_]+?)_([0-9]+)px(?:_ar([0-9]+))?")


def split_base(split):
    """`pairs_512px` -> ("pairs", 512); `pairs_1024px_ar4` -> ("pairs", 1024); `pool` -> ("pool",
    data.image_size)."""
    m = SPLIT_VARIANT.fullmatch(split)
    if m:
        return m.group(1), int(m.group(2))
    return split, config["data"]["image_size"]


def split_buckets(split):
    """The (height, width) aspect-ratio buckets of a `<split>_<px>px_ar<stage>` split, else []."""
    m = SPLIT_VARIANT.fullmatch(split)
    if not m or not m.group(3):
        return []
    stage = stage_config(m.group(3))
    if not stage.get("aspect_ratios"):
        raise WorkflowError(f"split {split}: t2i stage {m.group(3)} has no aspect_ratios")
    return [list(b) for b in aspect_buckets(int(m.group(2)), stage["aspect_ratios"], stage["bucket_multiple"])]


VIEWS_PER_OBJECT = {"nvs_train": 32, "nvs_test": 33}  # lumos.data.worlds.shapes3d: 32 random views; input + 2 x 16


def split_size(split):
    """Number of items of a split (a resolution variant has its base split's; a rendered-views
    split its views)."""
    if split in VIEWS_PER_OBJECT:
        block = config["nvs"]["splits"][split]
        return block["objects"] * block.get("views", VIEWS_PER_OBJECT[split])
    return config["data"]["splits"][split_base(split)[0]]["n"]


def data_args(split):
    """`lumos data` arguments of a split: its base split, and the size and aspect-ratio buckets
    of a resolution variant (`pairs_512px`, `pairs_1024px_ar4`)."""
    base, size = split_base(split)
    args = f"--split {base}"
    if split != base:
        args += f" --image-size {size}"
    buckets = split_buckets(split)
    return args + ("" if not buckets else " --buckets " + " ".join(f"{h}x{w}" for h, w in buckets))


def data_cfg(split):
    """The settings `lumos data` reads for a split (a variant's size comes from its name)."""
    base = split_base(split)[0]
    keys = ["data.source", "data.shard_size", f"data.splits.{base}", f"data.paths.{base}", f"data.sources.{base}"]
    curation = ["data.curation.files_per_unit", "data.curation.max_pixels"] if curated(split) else []
    return cfg_json(*keys, *curation, *(["data.image_size"] if split == base else []))


def curated(split):
    """Whether a split is curated from sources (`data.sources.<split>`, or every split of
    `data.source: paths`) rather than generated from the Shapes world."""
    base = split_base(split)[0]
    return base in config["data"].get("sources", {}) or config["data"]["source"] == "paths"


def table_splits(*splits):
    """Folders of the curated splits among `splits` (a table's data: its table notes any that came
    out short of its n)."""
    return [f"results/data/{s}" for s in dict.fromkeys(splits) if curated(s)]


def data_jobs(split):
    """Parallel jobs building a split: one for the Shapes world; when curated, `data.curation.jobs`
    at most, and no more than one per `files_per_unit` images of the split (evaluation splits of
    30K-50K images get a few jobs, the 190M pool all of them)."""
    if not curated(split):
        return 1
    cur = config["data"]["curation"]
    return max(1, min(cur["jobs"], -(-split_size(split) // cur["files_per_unit"])))


def source_inputs(wildcards):
    """Sources a split is curated from that the DAG itself makes (under results/, e.g. the Shapes
    world exported as webdataset shards by `export_shapes`)."""
    sources = config["data"].get("sources", {}).get(split_base(wildcards.split)[0], [])
    return [s["path"] for s in sources if s["path"].startswith("results/")]


def model_scored_sources(split):
    """Sources of a (base) split whose aesthetic score a model computes (`aesthetic.model`)."""
    return [s for s in config["data"].get("sources", {}).get(split, []) if (s.get("aesthetic") or {}).get("model")]


def aesthetic_inputs(wildcards):
    """What a scoring job reads that the DAG makes: its sources and model files under results/
    (e.g. the smoke preset's trained CLIP)."""
    files = []
    for s in model_scored_sources(wildcards.split):
        model = s["aesthetic"]["model"]
        files += [f for f in (s["path"], model["clip"], model["head"]) if f.startswith("results/")]
    return sorted(set(files))


def aesthetic_scores(wildcards):
    """The scores file a curation job reads: its own scoring job's, when its split has model-scored
    sources (a resolution variant reads its base split's: the same jobs read the same items)."""
    base = split_base(wildcards.split)[0]
    return f"results/aesthetic/{base}.part{wildcards.part}.jsonl" if model_scored_sources(base) else []


def text_reuse(split):
    """A bucketed curated split copies its caption tokens from its base split's (the same images,
    matched by key; `lumos.features.reuse_text_features`): no text encoder runs again. The Shapes
    world renders new scenes per bucket, so those are encoded."""
    if not curated(split) or not split_buckets(split):
        return {}
    base = split_base(split)[0]
    return {"reuse_text": f"results/features/{base}_text", "reuse_data": f"results/data/{base}"}


def text_jobs(split):
    """Parallel text-feature jobs for a split: one when its rows are copied (each job would read
    every source shard), else `feature_jobs`."""
    return 1 if text_reuse(split) else feature_jobs(split)


# A split's features folder `results/features/<split>` holds its VAE latents and the tokens of the
# `features.main_encoders` its runs use; a run conditioned on another encoder (the ablation priors'
# CLIP image tower, DINO sizes) reads `results/features/<split>+<encoder>`, the latents and that
# encoder's tokens: Table 1 never waits for an ablation encoder, and adding one encodes nothing else.

def features_of(split):
    """(split, encoder) of a features folder name: `pool` -> ("pool", None), `pool+clip` ->
    ("pool", "clip")."""
    base, _, encoder = split.partition("+")
    return base, encoder or None


def run_encoder_suffix(run):
    """`+<encoder>` when a run's condition encoder is not a main one (its own features folder), else ""."""
    encoder = config["pretrain"]["runs"][parse_run(run)["base"]].get("encoder")
    return f"+{encoder}" if encoder and encoder not in MAIN_ENCODERS else ""


def _split_runs(split):
    """The pretrain runs whose condition a features folder serves: every run on an evaluation split
    (its samples' conditions), the runs that train on it otherwise."""
    return [r for r in config["pretrain"]["runs"].values()
            if r.get("encoder") and (split in EVAL_SPLITS or r.get("data", "pool") == split)]


def feature_encoders(split):
    """Vision encoders whose tokens a features folder caches: for `<split>+<encoder>` that encoder;
    for a split, the main encoders of its runs (`_split_runs`); none on the pair set (T2I training
    reads only its latents and captions); the NVS condition encoder on the rendered views."""
    base, encoder = features_of(split)
    if encoder:
        return [encoder]
    if split_base(base)[0] == "pairs":
        return []
    if base in ("nvs_train", "nvs_test"):
        return [config["nvs"].get("encoder", "dino")]
    return sorted({r["encoder"] for r in _split_runs(base) if r["encoder"] in MAIN_ENCODERS})


def patch_encoders(split):
    """Encoders whose patch tokens a features folder caches: those of its encoders that a run's
    token set reads them from (on the split it trains on and on the evaluation splits)."""
    base, _ = features_of(split)
    return sorted({r["encoder"] for r in _split_runs(base) if r.get("tokens", "cls") != "cls"}
                  & set(feature_encoders(split)))


def stage_config(stage):
    """The Table S1 stage block of stage number `stage` (2, 3, ...)."""
    if int(stage) not in STAGES:
        raise WorkflowError(f"no T2I stage {stage}: t2i.stages defines stages {sorted(STAGES) or 'none'}")
    return STAGES[int(stage)]


def stage_pairs(wildcards):
    """The pair-set features (latents, caption tokens) at a stage's resolution (and in its
    aspect-ratio buckets when the stage has `aspect_ratios`: Table S1's multi-scale stage)."""
    stage = stage_config(wildcards.stage)
    multi = f"_ar{wildcards.stage}" if stage.get("aspect_ratios") else ""
    split = f"pairs_{stage['resolution']}px{multi}"
    # Curation keeps the same images in the same order at every square size (its filters do not
    # depend on the size, its jobs split the sources the same way), so the
    # captions' tokens are reused as they are; aspect-ratio buckets regroup the images, so their
    # tokens are copied row by row (`text_reuse`); the Shapes world re-renders its scenes, so
    # their captions are encoded again.
    text = "pairs" if curated("pairs") and not multi else split
    return {"features": f"results/features/{split}", "text": f"results/features/{text}_text"}


def stage_init(wildcards):
    """The model a stage continues: the previous stage's (stage 1 = the fine-tune itself)."""
    k = int(wildcards.stage)
    return f"results/t2i/{wildcards.ft}/" + ("model" if k == 2 else f"stage{k - 1}/model")


def feature_jobs(split):
    """Parallel feature jobs for a split: `features.jobs`, at most one per data shard."""
    shards = -(-split_size(features_of(split)[0]) // config["data"]["shard_size"])
    return min(config["features"]["jobs"], shards)


def sample_jobs(n):
    """Parallel jobs for a sampling task of `n` images: `sample.jobs`, at most one per batch."""
    return min(config["sample"]["jobs"], -(-n // config["sample"]["batch_size"]))


def t2i_samples(wc):
    """How many images a T2I sampling task makes: one per caption of the split (final weights)
    or `t2i.eval.curve_samples` (a snapshot on a figure curve)."""
    n = split_size(wc.split)
    return n if wc.ckpt == "final" else min(n, config["t2i"]["eval"]["curve_samples"])


def parts(folder, jobs):
    """The part folders of a task split over `jobs` parallel jobs."""
    return [f"{folder}.part{k}" for k in range(jobs)]


# Pretrain run names: <run>[_pool<N>][_drop<P>][_cfg<G>]. `_pool<N>` trains on a nested seeded
# subset of about N pool images (Figure 2b, `lumos.data.subsets`); `_drop<P>` with condition
# dropout P % (Figure 12a); `_cfg<G>` samples the run with guidance scale G (Figure 12b). The
# untrained ceiling uses Lumos-I2I's architecture.
RUN_NAME = re.compile(r"(?P<base>[a-z0-9_]+?)(?:_pool(?P<pool>[0-9]+))?(?:_drop(?P<drop>[0-9]+))?(?:_cfg(?P<cfg>[0-9.]+))?"
                      r"(?:_step(?P<step>[0-9]+))?")


def parse_run(run):
    """{base, pool, drop, cfg} of a run name (absent parts None). `untrained` and `released_i2i`
    (the authors' released I2I weights) are sampled with lumos_i2i's condition."""
    return RUN_NAME.fullmatch("lumos_i2i" if run in ("untrained", "released_i2i") else run).groupdict()


def trained_run(run):
    """The run whose weights a (possibly `_cfg<G>` or `_step<N>`) run name samples."""
    return run if run == "untrained" else run.split("_cfg")[0].split("_step")[0]


def run_args(run, sampling=False):
    """`lumos pretrain` (or, `sampling`, `lumos sample`) arguments of a run name: --run-name and
    --pool-size, then --cond-dropout for training or --guidance for sampling, from its suffixes."""
    r = parse_run(run)
    args = f"--run-name {r['base']}" + (f" --pool-size {r['pool']}" if r["pool"] else "")
    if sampling:
        return args + (f" --guidance {r['cfg']}" if r["cfg"] else "")
    return args + (f" --cond-dropout {int(r['drop']) / 100}" if r["drop"] else "")


def run_features(wildcards):
    """The features a pretrain run trains on: the pool, or ImageNet-1K (`data: imagenet1k`, the
    paper's Figure 8 priors); `+<encoder>` for a run whose encoder is not a main one."""
    data = config["pretrain"]["runs"][parse_run(wildcards.run)["base"]].get("data", "pool")
    return f"results/features/{data}{run_encoder_suffix(wildcards.run)}"


def sample_features(wildcards):
    """The evaluation split's features a sample job reads its conditions from."""
    return f"results/features/{wildcards.split}{run_encoder_suffix(wildcards.run)}"


def run_key(run):
    """The config key of a pretrain run's settings."""
    return f"pretrain.runs.{parse_run(run)['base']}"


def fig12_runs():
    """Figure 12's points on the first eval split: {("dropout", P): run, ("guidance", G): run}. The
    dropout equal to pretrain.model.cond_dropout is the run itself (no second training)."""
    f, base = config["pretrain"]["fig12"], config["pretrain"]["fig12"]["run"]
    default = round(config["pretrain"]["model"]["cond_dropout"] * 100)
    runs = {("dropout", p): base if p == default else f"{base}_drop{p}" for p in f["dropout_percent"]}
    runs.update({("guidance", g): f"{base}_cfg{g}" for g in f["guidance_scales"]})
    return runs


def ft_prior(wildcards):
    """The I2I model a fine-tune starts from ([] for `none`: from scratch)."""
    prior = parse_finetune(wildcards.ft)["prior"]
    return [] if prior == "none" else f"results/pretrain/{prior}/model"


def ft_model(wildcards):
    """The model folder a T2I sampling job reads: final EMA weights or the snapshots folder."""
    if wildcards.ft == "untrained":
        return []
    return f"results/t2i/{wildcards.ft}/" + ("model" if wildcards.ckpt == "final" else "snapshots")


def ft_model_path(wildcards, input):
    if wildcards.ft == "untrained":
        return "none"
    return input.model if wildcards.ckpt == "final" else f"{input.model}/{wildcards.ckpt}"


def t2i_text(wildcards):
    """The text encoder of a fine-tune (the main one's for the untrained sanity row)."""
    return MAIN_TEXT if wildcards.ft == "untrained" else parse_finetune(wildcards.ft)["text"]


def official_repo_key(bench):
    """Config key of the cloned repository holding a benchmark's prompts and scripts."""
    return f"t2i.eval.official.{'geneval' if bench == 'geneval' else 'dpg'}_repo"


def official_launch_flags():
    """`accelerate launch` flags of dpg_official, as DPG-Bench's dist_eval.sh passes them (fp16;
    one process per GPU of the official_eval job)."""
    processes = max(1, rule_request("official_eval").get("gpus_per_node", 0))  # one node
    multi = " --multi_gpu" if processes > 1 else ""
    return f"--num_machines 1 --num_processes {processes}{multi} --mixed_precision fp16"


def table3_inputs():
    """What Table 3 reads: the official evaluators' scores for Lumos-T2I (and the released T2I
    model, `released_t2i`, with config released.t2i) when configured (paper), otherwise the
    Shapes-world analogues' folders for Lumos-T2I, the untrained model and the ground-truth renders
    (the detector's own accuracy)."""
    if OFFICIAL:
        fts = [T2I_MAIN, *(["released_t2i"] if "t2i" in RELEASED else [])]
        return [f"results/eval/t2i/{ft}/{b}_official/scores.json" for ft in fts for b in ("geneval", "dpg")]
    return [f"results/eval/t2i/{ft}/{b}" for ft in (T2I_MAIN, "untrained", "ground_truth") for b in ("geneval", "dpg")]


def table3_rows():
    """`--row LABEL=GENEVAL_JSON,DPG_JSON[,MODEL]` arguments of `lumos table3`."""
    model = f"results/t2i/{T2I_MAIN}/model"
    if OFFICIAL:
        files = table3_inputs()
        rows = [f"Lumos-T2I={files[0]},{files[1]},{model}"]
        if "t2i" in RELEASED:
            rows.append(f"{RELEASED_T2I_LABEL}={files[2]},{files[3]},results/released/t2i/model")
        return rows
    rows = []
    for label, ft in (("Lumos-T2I", T2I_MAIN), ("untrained DiT", "untrained"), ("ground-truth renders", "ground_truth")):
        files = ",".join(f"results/eval/t2i/{ft}/{b}/scores.json" for b in ("geneval", "dpg"))
        rows.append(f"{label}={files}" + (f",{model}" if ft == T2I_MAIN else ""))
    return rows


def fig_runs(fig):
    """Fine-tunes compared in a figure: {line label: fine-tune name}."""
    text, f = MAIN_TEXT, FIGURES[fig]
    if fig == "fig2a":
        return {f"{p}@{n}": f"{p}-{text}-mixed-n{n}" for p in f["priors"] for n in f["noise_percent"]}
    if fig == "fig2b":
        return {f"pool {n}": f"lumos_i2i_pool{n}-{text}-mixed-n0" for n in f["pool_sizes"]}
    if fig == "fig8":
        return {p: f"{p}-{text}-mixed-n0" for p in f["priors"]}
    if fig == "fig11":
        return {t: f"lumos_i2i-{t}-mixed-n0" for t in f["text_encoders"]}
    if fig == "fig11b":
        return {t: f"{f['prior']}-{t}-mixed-n0" for t in f["text_encoders"]}
    raise ValueError(fig)


def fig_inputs(fig):
    """The metric files a figure reads: final FID + CLIP score per run (fig2a/S1), or the FID of
    every snapshot (curves against fine-tuning steps)."""
    runs = fig_runs("fig2a" if fig == "figS1" else fig).values()
    if fig in ("fig2a", "figS1"):
        return [f"results/eval/t2i/{r}/final/{m}_coco_short.json" for r in runs for m in ("fid", "clip")]
    return [f"results/eval/t2i/{r}/{s}/fid_coco_short.json" for r in runs for s in SNAPSHOTS]


def fid_cfg():
    """The settings FID steps read: the feature network (its own settings when it is
    `components.fid_net`, the weights file when it is Inception) and the batch size."""
    net = ["components.fid_net"] if config["eval"]["fid_extractor"] == "fid_net" else ["eval.inception"]
    return cfg_json("eval.fid_extractor", "eval.batch_size", *net)


def fid_inputs():
    return trained("fid_net") if config["eval"]["fid_extractor"] == "fid_net" else []


def component_data(wildcards):
    """The split a component trains on: labelled images for the FID net, the pair set for the
    text encoders (CLIP trains on it; T5 is randomly initialised), the pool otherwise."""
    split = {"fid_net": "classifier", "t5": "pairs", "clip": "pairs", "video_net": "video_train"}.get(
        wildcards.component, "pool")
    return f"results/data/{split}"


def sample_model(wildcards):
    """The trained model a sample job reads; none for the untrained ceiling; the imported release
    for `released_i2i`."""
    if wildcards.run == "released_i2i":
        return "results/released/i2i/model"
    if wildcards.run == "untrained":
        return []
    folder = "snapshots" if parse_run(wildcards.run)["step"] else "model"
    return f"results/pretrain/{trained_run(wildcards.run)}/{folder}"


def sample_model_path(wildcards, input):
    """`--model` of a sample job: the model folder, a `_step<N>` run's snapshot in it, or none."""
    step = parse_run(wildcards.run)["step"]
    return f"{input.model}/step-{int(step):06d}" if step else (input.model or "none")


def sample_count(wildcards):
    """Images a sample job makes: one per eval image, or `pretrain.curve_samples` for a snapshot
    (`_step<N>`) on an I2I curve."""
    n = split_size(wildcards.split)
    return min(n, config["pretrain"]["curve_samples"]) if parse_run(wildcards.run)["step"] else n


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
        # an interactive node): one process per GPU the job sees, on this machine.
        "processes": lambda wc: max(1, gpus * nodes) if on_slurm() else ("auto" if gpus else 1),
        "nodes": lambda wc: nodes if on_slurm() else 1,
        "mpi": lambda wc: "srun" if nodes > 1 and on_slurm() else "",
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
    needed = {(stage, name) for job in workflow.dag.needrun_jobs() for stage, name in job_reads(job)}
    absent = [f"{key} = '{path}' ({what})" for key, path, what, stage, name in missing_inputs()
              if (stage, name) in needed]
    if absent:
        raise WorkflowError(f"inputs of the {config['preset']} preset are missing: {'; '.join(absent[:8])}"
                            + (f"; and {len(absent) - 8} more" if len(absent) > 8 else ""))


# The config's input paths and the jobs that read them: `missing_inputs` lists the paths that do
# not exist, with their config keys (a warning at start, also in a dry run); `check_before_run`
# stops a real run when a job it will run reads one.
READERS = {"data_part": "split", "aesthetic_part": "split", "caption": "split", "views_part": "vsplit",
           "clips_part": "clipsplit", "import_released": "kind"}
FID_RULES = ("fid_reference", "fid", "fid_real", "t2i_fid", "released_t2i_fid")


def job_reads(job):
    """(stage, name) of the configured inputs a job reads: its split's sources, the released
    checkpoint of its kind, or Inception."""
    name = job.rule.name
    if name in READERS:
        value = job.wildcards[READERS[name]]
        yield (name.split("_")[0] if name in ("views_part", "clips_part", "import_released") else "data",
               split_base(value)[0] if READERS[name] == "split" else value)
    if name in FID_RULES and config["eval"]["fid_extractor"] == "inception":
        yield ("inception", "")


def missing_inputs():
    """(config key, path, what, stage, name) of every input path in the config that does not
    exist (paths under results/ are the DAG's own)."""
    paths = []
    for split, sources in config["data"].get("sources", {}).items():
        for k, src in enumerate(sources):
            model = (src.get("aesthetic") or {}).get("model")
            files = [("path", src["path"]), *([("annotations", src["annotations"])] if src.get("annotations") else []),
                     *([("aesthetic.model.head", model["head"])] if model else [])]
            paths += [(f"data.sources.{split}.{k}.{key}", path, src["name"], "data", split) for key, path in files]
    for split, path in config["data"].get("paths", {}).items():
        if split not in config["data"].get("sources", {}):
            paths.append((f"data.paths.{split}", path, "image folder", "data", split))
    paths += [(f"nvs.paths.{split}", path, "rendered views", "views", split)
              for split, path in config["nvs"].get("paths", {}).items()]
    paths += [(f"i2v.sources.{split}.path", src["path"], "videos", "clips", split)
              for split, src in config["i2v"].get("sources", {}).items()]
    paths += [(f"released.{kind}", path, "released checkpoint", "import", kind) for kind, path in RELEASED.items()]
    if config["eval"]["fid_extractor"] == "inception":
        paths.append(("eval.inception", config["eval"]["inception"] or "",
                      "clean-fid's inception-2015-12-05.pt, never downloaded", "inception", ""))
    return [p for p in paths if not p[1].startswith("results/") and not os.path.exists(p[1])]


onstart:
    check_before_run()



# ----------------------------------------------------------------------------- novel view synthesis


def prior_source(task, label):
    """What a `<task>.priors` label names (task nvs or i2v): ("none", None), ("i2i", pretrain run)
    or ("t2i", fine-tune)."""
    source = config[task]["priors"][label]
    if source == "none":
        return "none", None
    if FINETUNE_PATTERN.fullmatch(source):
        return "t2i", source
    if parse_run(source)["base"] in config["pretrain"]["runs"]:
        return "i2i", source
    raise WorkflowError(f"config key '{task}.priors.{label}': {source!r} is neither none, a pretrain run "
                        f"({sorted(config['pretrain']['runs'])}) nor a T2I fine-tune name")


def prior_model(task, label):
    """The model folder a `task` fine-tune from prior `label` starts from ([] from scratch)."""
    kind, source = prior_source(task, label)
    return [] if kind == "none" else f"results/{'pretrain' if kind == 'i2i' else 't2i'}/{source}/model"


NVS_DECODER = "results/components/vae_nvs" if config["nvs"].get("decoder") else None


def nvs_eval_inputs(wildcards):
    """The evaluated model (none for the `input` baseline) and the VAE that decodes its views (with
    the decoder fine-tuned on the NVS renders where `nvs.decoder` is set)."""
    if wildcards.prior == "input":
        return {}
    vae = {"components": trained("vae"), **({"decoder": NVS_DECODER} if NVS_DECODER else {})}
    if wildcards.prior == "vae":
        return vae
    folder = "model" if wildcards.ckpt == "final" else "snapshots"
    return {"model": f"results/nvs/{wildcards.prior}/{folder}", **vae}


def nvs_eval_model(wildcards, input):
    if wildcards.prior in ("input", "vae"):
        return wildcards.prior
    return input.model if wildcards.ckpt == "final" else f"{input.model}/{wildcards.ckpt}"


def nvs_eval_objects(ckpt):
    """` --objects N` of an evaluation: Table 4's count for the final model, Figure 5's per snapshot."""
    ev = config["nvs"].get("eval", {})
    n = ev.get("objects") if ckpt == "final" else ev.get("curve_objects", 16)
    return f" --objects {n}" if n else ""


# LGM reconstruction (rules/nvs.smk: lgm_inputs, lgm_reconstruct): optional, paper preset only,
# built for Table 4's Lumos-NVS prior when `nvs.lgm` is set.
LGM = config["nvs"].get("lgm") or {}
LGM_TARGETS = [f"results/nvs/{NVS_MAIN}/lgm"] if LGM else []
if LGM and config["preset"] != "paper":
    raise WorkflowError(f"config key 'nvs.lgm' is for the paper preset only, not {config['preset']!r}: "
                        "LGM needs CUDA and its released weights")


def lgm_weights(wildcards):
    """LGM's weights file (`nvs.lgm.weights`), once the weights and the repository (`nvs.lgm.repo`)
    are checked: a missing one stops the workflow naming its config key."""
    if not LGM:
        raise WorkflowError("config key 'nvs.lgm' is not set: the LGM reconstruction needs its repo and weights")
    repo, weights = LGM["repo"], LGM["weights"]
    if not os.path.isfile(os.path.join(repo, "core", "models.py")):
        raise WorkflowError(f"config key 'nvs.lgm.repo': {repo} is not a clone of 3DTopia/LGM (no core/models.py)")
    if not os.path.isfile(weights):
        raise WorkflowError(f"config key 'nvs.lgm.weights': missing {weights} (LGM's weights, hub repository "
                            "ashawkey/LGM, e.g. model_fp16_fixrot.safetensors)")
    return weights


def nvs_saved_views(wildcards):
    """`--save-views` of an evaluation: the final model's first objects, as many as Figure 7 shows
    and, for the prior LGM reconstructs, at least `nvs.lgm.objects`; none for snapshots."""
    if wildcards.ckpt != "final":
        return 0
    n = config["nvs"]["eval"].get("figure_objects", 3)
    return max(n, LGM["objects"]) if LGM and wildcards.prior == NVS_MAIN else n


# ------------------------------------------------------------------------------------ image-to-video


def clip_jobs(split):
    """Ingestion jobs of a clip split: for real videos (paper) `i2v.jobs`, at most one per unit of
    `files_per_unit` videos the split keeps; one for the video world."""
    source = config["i2v"].get("sources", {}).get(split)
    if not source:
        return 1
    units = -(-config["i2v"]["splits"][split]["clips"] // source.get("files_per_unit", 1000))
    return max(1, min(config["i2v"].get("jobs", 1), units))


def clip_feature_jobs(split):
    """Parallel video-feature jobs: `features.jobs`, at most one per data shard."""
    shards = -(-config["i2v"]["splits"][split]["clips"] // config["data"]["shard_size"])
    return min(config["features"]["jobs"], shards)


def i2v_metric_inputs(wildcards):
    """The samples a metrics job scores (none for the `real` sanity rows)."""
    if wildcards.vprior == "real":
        return {}
    return {"samples": f"results/i2v/{wildcards.vprior}/samples/{wildcards.clipsplit}"}


def view_jobs(split):
    """Jobs of a rendered-views split: for imported renders (paper) `nvs.jobs`, at most one per
    1,000 objects; one for the 3D Shapes world."""
    if not config["nvs"].get("paths", {}).get(split):
        return 1
    return max(1, min(config["nvs"].get("jobs", 1), -(-config["nvs"]["splits"][split]["objects"] // 1000)))


# ---------------------------------------------------------------------------- released weights

RELEASED = {k: config["released"][k] for k in ("i2i", "t2i") if config["released"].get(k)}  # kind -> .pth
# `{ft}` of the official evaluators' rules: our fine-tunes and the released T2I model.
OFFICIAL_FT = f"{FINETUNE_WILDCARD}|released_t2i"
RELEASED_T2I_SAMPLE = config["released"]["t2i_sample"]  # how the released T2I model is sampled


def official_pipeline(wildcards):
    """The exported pipeline whose images the official evaluators score: a fine-tune's, or the
    imported released T2I model's (`released_t2i`)."""
    if wildcards.ft == "released_t2i":
        return "results/released/t2i/pipeline"
    return f"results/t2i/{wildcards.ft}/pipeline"


def sample_key(ft):
    """The config block of a T2I model's sampling settings: `released.t2i_sample` for the released
    model (its official sampler, at 1024 px), `sample` for ours."""
    return "released.t2i_sample" if ft == "released_t2i" else "sample"


def check_released_t2i():
    """The released T2I rows are built on the paper preset only; stop naming what is missing."""
    needs = {
        "components.t5_released (T5 v1.1 XXL, the model's text encoder)": "t5_released" in config["components"],
        "eval.fid_extractor: inception": config["eval"]["fid_extractor"] == "inception",
        "t2i.eval.official (the official GenEval / DPG-Bench evaluators)": bool(OFFICIAL),
    }
    missing = [key for key, ok in needs.items() if not ok]
    if missing:
        raise WorkflowError(f"config key 'released.t2i' is set, but the released T2I rows are built on the paper "
                            f"preset only (--configfile config/paper.yaml): missing {'; '.join(missing)}")


if "t2i" in RELEASED:
    check_released_t2i()


def released_sample_jobs(split):
    """Parallel sampling jobs for a split's captions: `sample.jobs`, at most one per batch of
    `released.t2i_sample.batch_size`."""
    return min(config["sample"]["jobs"], -(-split_size(split) // RELEASED_T2I_SAMPLE["batch_size"]))


def released_fid_reference(split):
    """FID reference statistics for 1024 px samples: the split's images curated at Inception's
    input size, so that clean-fid only scales the samples down (`lumos.eval.fid.check_comparable`)."""
    return f"results/eval/fid/reference_{split}_{INCEPTION_SIZE}px.npz"


def released_checkpoint(wildcards):
    """The released .pth of `released.<kind>`; unset or missing stops the workflow naming both."""
    key = f"released.{wildcards.kind}"
    path = RELEASED.get(wildcards.kind)
    if not path:
        raise WorkflowError(f"config key '{key}' is not set: point it at the released checkpoint "
                            f"(Lumos_{wildcards.kind.upper()}.pth)")
    if not os.path.isfile(path):
        raise WorkflowError(f"missing released checkpoint {path} (config key '{key}'): place "
                            f"Lumos_{wildcards.kind.upper()}.pth there or change the key")
    return path


# ------------------------------------------------------------------ ablation figures (section 4.3, F)

ABLATIONS = config["pretrain"]["figures"]
VARIES = {"fig9": "tokens", "fig10": "encoder", "figS2": "tokens", "figS3": "encoder"}  # what a line's label names
for _fig, _spec in ABLATIONS.items():
    for _run in _spec["runs"]:
        if _run not in config["pretrain"]["runs"]:
            raise WorkflowError(f"config key 'pretrain.figures.{_fig}.runs': {_run!r} is not a pretrain run "
                                f"({sorted(config['pretrain']['runs'])})")
if ABLATIONS and not config["pretrain"]["snapshot_every"]:
    raise WorkflowError("config key 'pretrain.snapshot_every' is not set: the ablation figures "
                        f"({', '.join(sorted(ABLATIONS))}) plot FID against pretraining steps")


def pretrain_snapshots(run):
    """The snapshot steps of a pretrain run (its own `train.steps` when it overrides them)."""
    block = config["pretrain"]["runs"][parse_run(run)["base"]]
    steps = block.get("train", {}).get("steps", config["pretrain"]["train"]["steps"])
    return snapshot_steps(steps, config["pretrain"]["snapshot_every"])


def ablation_lines(fig):
    """{line label: pretrain run} of an ablation figure (Figure 2c: Figure 10's); each label names
    what the figure varies (the encoder or the token set) and the run."""
    source = "fig10" if fig == "fig2c" else fig
    runs = config["pretrain"]["runs"]
    return {f"{runs[r].get(VARIES[source], 'cls')} ({r})": r for r in ABLATIONS[source]["runs"]}


def ablation_files(fig):
    """--i2i / --t2i arguments of `lumos ablation-figure`: LABEL=STEP:FILE per point. I2I: the FID of
    each pretraining snapshot on the first eval split; T2I: the FID of each fine-tuning snapshot of
    the run's fine-tune <run>-<main text encoder>-mixed-n0 (Figure 2c: the T2I panel only)."""
    split = EVAL_SPLITS[0]
    i2i = [] if fig == "fig2c" else [f"{label}={step}:results/eval/fid/{run}_step{step}_{split}.json"
                                     for label, run in ablation_lines(fig).items() for step in pretrain_snapshots(run)]
    t2i = [f"{label}={int(s.split('-')[1])}:results/eval/t2i/{run}-{MAIN_TEXT}-mixed-n0/{s}/fid_coco_short.json"
           for label, run in ablation_lines(fig).items() for s in SNAPSHOTS]
    return {"i2i": i2i, "t2i": t2i}


# Every configured input path that does not exist, named by its key (dry runs too).
for _key, _path, _what, _stage, _name in missing_inputs():
    logger.warning(f"{config['preset']} preset: {_key} = '{_path}' ({_what}) does not exist: a run that needs it "
                   f"stops at start")
