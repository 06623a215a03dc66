"""What a split is and what its features need: its size, whether it is curated, the T2I stage
blocks its variants come from, its aspect-ratio buckets, and which encoders its features folder
caches. Every function takes the validated config (schema defaults filled, `lumos.config`).
"""

from __future__ import annotations

from lumos.data.buckets import aspect_buckets
from lumos.workflow.names import features_folder, features_of, parse_finetune, parse_run, parse_split

# lumos.data.worlds.shapes3d: 32 random views a training object, the input view + 2 x 16 a test one
VIEWS_PER_OBJECT = {"nvs_train": 32, "nvs_test": 33}


# --------------------------------------------------------------------- T2I stages (Table S1)


def t2i_stages(config: dict) -> dict:
    """{stage number: stage block}: stage k >= 2 continues stage k-1 at a higher resolution on
    results/data/pairs_<px>px (stage 1 is the fine-tune itself)."""
    return dict(enumerate(config["t2i"]["stages"], start=2))


def t2i_stage(config: dict, stage) -> dict:
    """The block of stage number `stage` (2, 3, ...)."""
    stages = t2i_stages(config)
    if int(stage) not in stages:
        raise ValueError(f"no T2I stage {stage}: t2i.stages defines stages {sorted(stages) or 'none'}")
    return stages[int(stage)]


def stage_features(config: dict, stage) -> dict:
    """{"features": split, "text": split} whose features folders a stage trains on: the pair set at
    the stage's resolution (in its aspect-ratio buckets when it has `aspect_ratios`), and the
    folder of its caption tokens. Curation keeps the same images in the same order at every square
    size, so a curated pair set's tokens are reused as they are (`pairs`); buckets regroup the
    images, so their tokens are copied row by row (`text_reused`); the Shapes world re-renders its
    scenes, so their captions are encoded again."""
    block = t2i_stage(config, stage)
    split = f"pairs_{block['resolution']}px" + (f"_ar{stage}" if block.get("aspect_ratios") else "")
    text = "pairs" if curated(config, "pairs") and not block.get("aspect_ratios") else split
    return {"features": split, "text": f"{text}_text"}


# ----------------------------------------------------------------------------------- splits


def split_base(config: dict, split: str) -> tuple[str, int]:
    """(base split, image size): `pairs_512px` -> ("pairs", 512); `pairs_1024px_ar4` -> ("pairs",
    1024); `pool` -> ("pool", data.image_size)."""
    parsed = parse_split(split)
    return parsed["base"], parsed["px"] or config["data"]["image_size"]


def split_buckets(config: dict, split: str) -> list[list[int]]:
    """The [height, width] aspect-ratio buckets of a `<split>_<px>px_ar<stage>` split, else []."""
    parsed = parse_split(split)
    if parsed["stage"] is None:
        return []
    block = t2i_stage(config, parsed["stage"])
    if not block.get("aspect_ratios"):
        raise ValueError(f"split {split}: t2i stage {parsed['stage']} has no aspect_ratios")
    return [list(b) for b in aspect_buckets(parsed["px"], block["aspect_ratios"], block["bucket_multiple"])]


def split_size(config: dict, split: str) -> int:
    """Number of items of a split (a resolution variant has its base split's; a rendered-views
    split its views)."""
    if split in VIEWS_PER_OBJECT:
        block = config["nvs"]["splits"][split]
        return block["objects"] * block.get("views", VIEWS_PER_OBJECT[split])
    return config["data"]["splits"][split_base(config, split)[0]]["n"]


def curated(config: dict, split: str) -> bool:
    """Whether a split is curated from sources (`data.sources.<split>`, or every split of
    `data.source: paths`) rather than generated from the Shapes world."""
    return split_base(config, split)[0] in config["data"].get("sources", {}) or config["data"]["source"] == "paths"


def curated_splits(config: dict, splits) -> list[str]:
    """The curated splits among `splits`, each once, in order (a table notes any that came out
    short of its n)."""
    return [s for s in dict.fromkeys(splits) if curated(config, s)]


def text_reused(config: dict, split: str) -> bool:
    """Whether a split copies its caption tokens from its base split's (`lumos.features.
    reuse_text_features`): a bucketed curated split holds the same images, matched by key. The
    Shapes world renders new scenes per bucket, so those are encoded."""
    return curated(config, split) and bool(split_buckets(config, split))


def data_args(config: dict, split: str) -> str:
    """`lumos data` arguments of a split: its base split, and the size and aspect-ratio buckets
    of a resolution variant (`pairs_512px`, `pairs_1024px_ar4`)."""
    base, size = split_base(config, split)
    args = f"--split {base}" + (f" --image-size {size}" if split != base else "")
    buckets = split_buckets(config, split)
    return args + ("" if not buckets else " --buckets " + " ".join(f"{h}x{w}" for h, w in buckets))


def data_keys(config: dict, split: str) -> list[str]:
    """The config keys `lumos data` reads for a split (a variant's size comes from its name)."""
    base = split_base(config, split)[0]
    keys = ["data.source", "data.shard_size", f"data.splits.{base}", f"data.paths.{base}", f"data.sources.{base}"]
    curation = ["data.curation.files_per_unit", "data.curation.max_pixels"] if curated(config, split) else []
    return [*keys, *curation, *(["data.image_size"] if split == base else [])]


def model_scored_sources(config: dict, split: str) -> list[dict]:
    """Sources of a (base) split whose aesthetic score a model computes (`aesthetic.model`)."""
    return [s for s in config["data"].get("sources", {}).get(split, []) if (s.get("aesthetic") or {}).get("model")]


def dag_sources(config: dict, split: str) -> list[str]:
    """Sources a split is curated from that the DAG itself makes (under results/, e.g. the Shapes
    world exported as webdataset shards by `export_shapes`)."""
    sources = config["data"].get("sources", {}).get(split_base(config, split)[0], [])
    return [s["path"] for s in sources if s["path"].startswith("results/")]


def aesthetic_dag_files(config: dict, split: str) -> list[str]:
    """What a scoring job of `split` reads that the DAG makes: its model-scored sources and their
    model files under results/ (e.g. the smoke preset's trained CLIP)."""
    files = []
    for s in model_scored_sources(config, split):
        model = s["aesthetic"]["model"]
        files += [f for f in (s["path"], model["clip"], model["head"]) if f.startswith("results/")]
    return sorted(set(files))


# --------------------------------------------------------------------------- features folders
# A split's features folder `results/features/<split>` holds its VAE latents and the tokens of the
# `features.main_encoders` its runs use; a run conditioned on another encoder (the ablation priors'
# CLIP image tower, DINO sizes) reads `results/features/<split>+<encoder>`, the latents and that
# encoder's tokens: Table 1 never waits for an ablation encoder, and adding one encodes nothing else.


def run_features(config: dict, run: str, split: str | None = None) -> str:
    """The features folder a pretrain run reads on `split` (default: the split it trains on, the
    pool or ImageNet-1K, `data`): `+<encoder>` when its condition encoder is not a main one."""
    block = config["pretrain"]["runs"][parse_run(run)["base"]]
    encoder = block.get("encoder") if split in (None, block["data"]) or not guided(block) else None
    return features_folder(split or block["data"], encoder if encoder not in config["features"]["main_encoders"] else None)


def guided(block: dict) -> bool:
    """Whether a pretrain run block is a REPA / REG run (beyond the paper): its encoder guides
    training only, so its samples read no encoder features."""
    return bool(block.get("repa") or block.get("reg"))


def runs_on(config: dict, split: str) -> list[dict]:
    """The pretrain run blocks whose encoder a features folder serves: every conditioned run on
    an evaluation split (its samples' conditions), the runs that train on it (REPA / REG runs
    only there)."""
    return [r for r in config["pretrain"]["runs"].values()
            if r.get("encoder") and (r["data"] == split or (split in config["eval"]["splits"] and not guided(r)))]


def feature_encoders(config: dict, folder: str) -> list[str]:
    """Vision encoders whose tokens a features folder caches: for `<split>+<encoder>` that encoder;
    for a split, the main encoders of its runs (`runs_on`); none on the pair set (T2I training
    reads only its latents and captions); the NVS condition encoder on the rendered views."""
    base, encoder = features_of(folder)
    if encoder:
        return [encoder]
    if split_base(config, base)[0] == "pairs":
        return []
    if base in VIEWS_PER_OBJECT:
        return [config["nvs"]["encoder"]]
    return sorted({r["encoder"] for r in runs_on(config, base) if r["encoder"] in config["features"]["main_encoders"]})


def patch_encoders(config: dict, folder: str) -> list[str]:
    """Encoders whose patch tokens a features folder caches: those of its encoders that a run's
    token set reads them from (on the split it trains on and on the evaluation splits)."""
    base, _ = features_of(folder)
    return sorted({r["encoder"] for r in runs_on(config, base) if r["tokens"] != "cls"}
                  & set(feature_encoders(config, folder)))


def text_encoders(config: dict) -> list[str]:
    """Text encoders whose caption tokens the pair and evaluation splits cache: the main
    fine-tune's and those Figures 11 and 11b compare."""
    figures = config["t2i"]["figures"]
    return sorted({t2i_text(config, config["t2i"]["main"]),
                   *(t for f in ("fig11", "fig11b") for t in figures.get(f, {}).get("text_encoders", []))})


def t2i_text(config: dict, ft: str) -> str:
    """The text encoder of a fine-tune (the main fine-tune's for the `untrained` sanity row)."""
    return parse_finetune(config["t2i"]["main"] if ft == "untrained" else ft)["text"]
