"""How many parallel jobs a task is split over, and how many items its jobs make.

Every task is split the same way (`jobs`): at most its configured number of jobs, and no more
than one job per unit of work (a data shard, a sampling batch, a unit of source files); the
rules hand each job `--part k --parts N`, and a local gather joins the parts.
"""

from __future__ import annotations

from lumos.workflow.names import features_of, parse_run
from lumos.workflow.splits import curated, split_size, text_reused


def jobs(n: int, unit: int, cap: int) -> int:
    """Jobs for `n` items in units of `unit`: one per unit begun, at most `cap`, at least one."""
    return max(1, min(cap, -(-n // unit)))


def data_jobs(config: dict, split: str) -> int:
    """Jobs building a split: one for the Shapes world; when curated, `data.curation.jobs` at most,
    one per `files_per_unit` images of the split or per `images_per_job` when that is more (paper:
    a 30K-50K evaluation split is one job, the 30M pairs 150 jobs, the 190M pool all 400)."""
    if not curated(config, split):
        return 1
    cur = config["data"]["curation"]
    return jobs(split_size(config, split), max(cur["files_per_unit"], cur["images_per_job"]), cur["jobs"])


def feature_jobs(config: dict, split: str) -> int:
    """Feature jobs for a split (or a `<split>+<encoder>` folder): `features.jobs`, at most one per
    data shard."""
    return jobs(split_size(config, features_of(split)[0]), config["data"]["shard_size"], config["features"]["jobs"])


def text_jobs(config: dict, split: str) -> int:
    """Text-feature jobs for a split: one when its rows are copied (each job would read every
    source shard), else `feature_jobs`."""
    return 1 if text_reused(config, split) else feature_jobs(config, split)


def sample_jobs(config: dict, n: int, batch_size: int | None = None) -> int:
    """Jobs for a sampling task of `n` images: `sample.jobs`, at most one per batch (of
    `sample.batch_size` unless given), or per `sample.images_per_job` when that is more (paper: 8
    jobs for COCO-30K, 3 for a curve's FID-10K)."""
    s = config["sample"]
    return jobs(n, max(batch_size or s["batch_size"], s["images_per_job"]), s["jobs"])


def released_sample_jobs(config: dict, split: str) -> int:
    """Jobs sampling the released T2I model from a split's captions: `sample_jobs` in batches of
    `released.t2i_sample.batch_size`."""
    return sample_jobs(config, split_size(config, split), config["released"]["t2i_sample"]["batch_size"])


def clip_jobs(config: dict, split: str) -> int:
    """Ingestion jobs of a clip split: for real videos (paper) `i2v.jobs`, at most one per
    `files_per_unit` videos the split keeps; one for the video world."""
    source = config["i2v"]["sources"].get(split)
    if not source:
        return 1
    return jobs(config["i2v"]["splits"][split]["clips"], source["files_per_unit"], config["i2v"]["jobs"])


def clip_feature_jobs(config: dict, split: str) -> int:
    """Video-feature jobs of a clip split: `features.jobs`, at most one per data shard."""
    return jobs(config["i2v"]["splits"][split]["clips"], config["data"]["shard_size"], config["features"]["jobs"])


def view_jobs(config: dict, split: str) -> int:
    """Jobs of a rendered-views split: for imported renders (paper) `nvs.jobs`, at most one per
    1,000 objects; one for the 3D Shapes world."""
    if not config["nvs"]["paths"].get(split):
        return 1
    return jobs(config["nvs"]["splits"][split]["objects"], 1000, config["nvs"]["jobs"])


# ------------------------------------------------------------------------ items a task makes


def i2i_samples(config: dict, run: str, split: str) -> int:
    """Images an I2I sampling task makes: one per image of the split, or `pretrain.curve_samples`
    for a snapshot (`_step<N>`) on an ablation curve."""
    n = split_size(config, split)
    return min(n, config["pretrain"]["curve_samples"]) if parse_run(run)["step"] else n


def t2i_samples(config: dict, split: str, ckpt: str) -> int:
    """Images a T2I sampling task makes: one per caption of the split (final weights) or
    `t2i.eval.curve_samples` (a snapshot on a figure curve)."""
    n = split_size(config, split)
    return n if ckpt == "final" else min(n, config["t2i"]["eval"]["curve_samples"])


def nvs_eval_objects(config: dict, ckpt: str) -> int | None:
    """Test objects an NVS evaluation reads: Table 4's `nvs.eval.objects` for the final model (None:
    all), Figure 5's `curve_objects` per snapshot."""
    ev = config["nvs"]["eval"]
    return ev.get("objects") if ckpt == "final" else ev["curve_objects"]


def nvs_saved_views(config: dict, prior: str, ckpt: str) -> int:
    """Objects whose generated views an NVS evaluation keeps: the final model's first objects, as
    many as Figure 7 shows and, for the prior LGM reconstructs (`nvs.main`), at least
    `nvs.lgm.objects`; none for snapshots."""
    if ckpt != "final":
        return 0
    n, lgm = config["nvs"]["eval"]["figure_objects"], config["nvs"]["lgm"]
    return max(n, lgm["objects"]) if lgm and prior == config["nvs"]["main"] else n
