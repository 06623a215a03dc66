"""The name grammars of the workflow's wildcards: pretrain runs, split variants, features
folders, T2I fine-tunes, EMA snapshots and the priors of a task's `priors` block.

Each grammar has a parser and a formatter, and `format(**parse(name)) == name` for every name
the grammar accepts; a name it does not accept raises ValueError. No config is read here, except
the pretrain run names `parse_prior` is given.
"""

from __future__ import annotations

import re

# ----------------------------------------------------------------------------- pretrain runs
# <run>[_pool<N>][_drop<P>][_cfg<G>][_step<S>]: `_pool<N>` trains on a nested seeded subset of
# about N pool images (Figure 2b, `lumos.data.subsets`); `_drop<P>` with condition dropout P %
# (Figure 12a); `_cfg<G>` samples the run with guidance scale G (Figure 12b); `_step<S>` samples
# the EMA snapshot of step S (the ablation curves). The untrained ceiling (`untrained`) and the
# authors' released I2I weights (`released_i2i`) are sampled with lumos_i2i's condition.
RUN_NAME = re.compile(
    r"(?P<base>[a-z0-9_]+?)(?:_pool(?P<pool>[0-9]+))?(?:_drop(?P<drop>[0-9]+))?(?:_cfg(?P<cfg>[0-9.]+))?"
    r"(?:_step(?P<step>[0-9]+))?"
)
SAMPLED_AS_LUMOS_I2I = ("untrained", "released_i2i")
RUN_PARTS = ("base", "pool", "drop", "cfg", "step")


def parse_run(run: str) -> dict:
    """{base, pool, drop, cfg, step} of a run name, each a string (absent parts None).
    `untrained` and `released_i2i` parse as lumos_i2i (whose condition they are sampled with)."""
    m = RUN_NAME.fullmatch("lumos_i2i" if run in SAMPLED_AS_LUMOS_I2I else run)
    if not m:
        raise ValueError(f"bad run name {run!r}: expected <run>[_pool<N>][_drop<P>][_cfg<G>][_step<S>]")
    return m.groupdict()


def format_run(base: str, pool=None, drop=None, cfg=None, step=None) -> str:
    """The run name of `parse_run`'s parts (None: absent)."""
    suffixes = (("_pool", pool), ("_drop", drop), ("_cfg", cfg), ("_step", step))
    return base + "".join(f"{tag}{value}" for tag, value in suffixes if value is not None)


def trained_run(run: str) -> str:
    """The run whose weights a (possibly `_cfg<G>` or `_step<S>`) run name samples."""
    return run if run == "untrained" else run.split("_cfg")[0].split("_step")[0]


def run_args(run: str, sampling: bool = False) -> str:
    """`lumos pretrain` (or, `sampling`, `lumos sample`) arguments of a run name: --run-name and
    --pool-size, then --cond-dropout for training or --guidance for sampling, from its suffixes."""
    r = parse_run(run)
    args = f"--run-name {r['base']}" + (f" --pool-size {r['pool']}" if r["pool"] else "")
    if sampling:
        return args + (f" --guidance {r['cfg']}" if r["cfg"] else "")
    return args + (f" --cond-dropout {int(r['drop']) / 100}" if r["drop"] else "")


# ---------------------------------------------------------------------------- split variants
# `pairs_512px`: a split re-rendered / re-curated at a T2I stage's resolution; `pairs_1024px_ar4`:
# the same in stage 4's aspect-ratio buckets.
SPLIT_VARIANT = re.compile(r"([a-z_]+?)_([0-9]+)px(?:_ar([0-9]+))?")


def parse_split(split: str) -> dict:
    """{base, px, stage} of a split name: `pairs_1024px_ar4` -> ("pairs", 1024, 4); `pairs_512px`
    -> ("pairs", 512, None); a base split `pool` -> ("pool", None, None)."""
    m = SPLIT_VARIANT.fullmatch(split)
    if m:
        return {"base": m.group(1), "px": int(m.group(2)), "stage": int(m.group(3)) if m.group(3) else None}
    if not re.fullmatch(r"[a-z0-9_]+", split):
        raise ValueError(f"bad split name {split!r}: expected <split>[_<px>px[_ar<stage>]]")
    return {"base": split, "px": None, "stage": None}


def format_split(base: str, px=None, stage=None) -> str:
    """The split name of `parse_split`'s parts (`stage` needs `px`)."""
    if px is None:
        if stage is not None:
            raise ValueError(f"split {base}: an aspect-ratio stage needs a resolution")
        return base
    return f"{base}_{px}px" + (f"_ar{stage}" if stage is not None else "")


# --------------------------------------------------------------------------- features folders
# results/features/<split> holds a split's VAE latents and the tokens of the main encoders its runs
# use; results/features/<split>+<encoder> the latents and another encoder's tokens.


def features_of(folder: str) -> tuple[str, str | None]:
    """(split, encoder) of a features folder name: `pool` -> ("pool", None), `pool+clip` ->
    ("pool", "clip")."""
    base, _, encoder = folder.partition("+")
    return base, encoder or None


def features_folder(split: str, encoder: str | None = None) -> str:
    """The features folder name of a split and, for a non-main encoder, that encoder."""
    return f"{split}+{encoder}" if encoder else split


# ---------------------------------------------------------------------------------- fine-tunes
# <prior>-<text encoder>-<captions>-n<noise %> (lumos/tasks/t2i.py: what each part means).
FINETUNE_PATTERN = re.compile(r"(?P<prior>[a-z0-9_]+)-(?P<text>t5|clip)-(?P<captions>short|long|mixed)-n(?P<noise>\d+)")
# the same pattern without group names: Snakemake's `ft` wildcard constraint (rules/common.smk)
FINETUNE_WILDCARD = re.sub(r"\(\?P<\w+>", "(?:", FINETUNE_PATTERN.pattern)


def parse_finetune(name: str) -> dict:
    """``lumos_i2i_pool2000-t5-mixed-n50`` -> prior, prior_run, pool_size, text, captions, noise."""
    m = FINETUNE_PATTERN.fullmatch(name)
    if not m:
        raise ValueError(f"bad fine-tune name {name!r}: expected <prior>-<t5|clip>-<short|long|mixed>-n<noise %>")
    spec = m.groupdict()
    spec["noise"] = int(spec["noise"])
    if spec["noise"] > 100:
        raise ValueError(f"noise percentage {spec['noise']} > 100 in {name!r}")
    run, _, size = spec["prior"].partition("_pool")
    spec["prior_run"] = None if spec["prior"] == "none" else run
    spec["pool_size"] = int(size) if size else None
    return spec


def format_finetune(prior: str, text: str, captions: str = "mixed", noise: int = 0, **_parsed) -> str:
    """The fine-tune name of a prior, text encoder, caption kind and noise percentage (extra keys
    of `parse_finetune`'s result are ignored); checked by `parse_finetune`."""
    name = f"{prior}-{text}-{captions}-n{noise}"
    parse_finetune(name)
    return name


# ----------------------------------------------------------------------------------- snapshots
SNAPSHOT_NAME = re.compile(r"step-([0-9]{6,})")


def snapshot_name(step: int) -> str:
    """The folder of the EMA snapshot at `step`: `step-000100`."""
    return f"step-{int(step):06d}"


def snapshot_step(name: str) -> int:
    """The step of a snapshot folder name (`step-000100` -> 100)."""
    m = SNAPSHOT_NAME.fullmatch(name)
    if not m:
        raise ValueError(f"bad snapshot name {name!r}: expected step-<6+ digits>")
    return int(m.group(1))


# -------------------------------------------------------------------------------------- priors


def parse_prior(source: str, runs) -> tuple[str, str | None]:
    """What a `<task>.priors` value (task nvs or i2v) names: ("none", None), ("i2i", pretrain run)
    when its base is one of `runs`, or ("t2i", fine-tune name)."""
    if source == "none":
        return "none", None
    if FINETUNE_PATTERN.fullmatch(source):
        return "t2i", source
    if RUN_NAME.fullmatch(source) and parse_run(source)["base"] in runs:
        return "i2i", source
    raise ValueError(f"{source!r} is neither none, a pretrain run ({sorted(runs)}) nor a T2I fine-tune name")
