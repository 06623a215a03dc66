"""The workflow's planning (lumos/workflow): the name grammars of runs, splits, features folders,
fine-tunes, snapshots and priors (round trips and bad names); job counts at their edges; snapshot
lists; which encoders a split's features need and which fine-tunes a figure compares, on the smoke
and paper presets. Plain functions of the config: no Snakemake, no files but those made here."""

import pytest

from lumos.config import load_config
from lumos.workflow import figures, inputs, jobs, names, snapshots, splits


@pytest.fixture(scope="module")
def smoke():
    return load_config("smoke")


@pytest.fixture(scope="module")
def paper():
    return load_config("paper")


# ------------------------------------------------------------------------------ name grammars


@pytest.mark.parametrize("run", ["lumos_i2i", "rcg", "i2i_clip_patch", "lumos_i2i_pool2000", "lumos_i2i_drop30",
                                 "lumos_i2i_cfg1.5", "i2i_top_step400000", "lumos_i2i_pool128_drop0_cfg4.5_step10"])
def test_run_names_round_trip(run):
    assert names.format_run(**names.parse_run(run)) == run


def test_run_name_parts():
    assert names.parse_run("lumos_i2i_pool2000_cfg1.5") == {"base": "lumos_i2i", "pool": "2000", "drop": None,
                                                            "cfg": "1.5", "step": None}
    assert names.parse_run("i2i_dino_small_step100")["base"] == "i2i_dino_small"
    for special in ("untrained", "released_i2i"):  # sampled with lumos_i2i's condition
        assert names.parse_run(special)["base"] == "lumos_i2i"
    assert names.trained_run("lumos_i2i_cfg3.0") == "lumos_i2i" and names.trained_run("i2i_top_step50") == "i2i_top"
    assert names.trained_run("lumos_i2i_drop30_cfg1.5") == "lumos_i2i_drop30"  # a dropout is trained, a scale sampled
    assert names.trained_run("untrained") == "untrained"
    assert names.run_args("lumos_i2i_pool128_drop30") == "--run-name lumos_i2i --pool-size 128 --cond-dropout 0.3"
    assert names.run_args("lumos_i2i_cfg4.5", sampling=True) == "--run-name lumos_i2i --guidance 4.5"
    assert names.run_args("rcg") == "--run-name rcg"


@pytest.mark.parametrize("bad", ["", "Lumos_I2I", "lumos-i2i", "lumos i2i", "lumos_i2i_cfg1.5_pool2"])
def test_bad_run_names(bad):
    with pytest.raises(ValueError, match="bad run name"):
        names.parse_run(bad)


@pytest.mark.parametrize("split,parts", [("pool", ("pool", None, None)), ("imagenet1k", ("imagenet1k", None, None)),
                                         ("coco_ref", ("coco_ref", None, None)), ("pairs_512px", ("pairs", 512, None)),
                                         ("coco_299px", ("coco", 299, None)), ("pairs_1024px_ar4", ("pairs", 1024, 4))])
def test_split_names_round_trip(split, parts):
    parsed = names.parse_split(split)
    assert (parsed["base"], parsed["px"], parsed["stage"]) == parts
    assert names.format_split(**parsed) == split


def test_bad_split_names():
    for bad in ("", "Pool", "pool+clip", "pairs px"):
        with pytest.raises(ValueError, match="bad split name"):
            names.parse_split(bad)
    with pytest.raises(ValueError, match="needs a resolution"):
        names.format_split("pairs", stage=4)


@pytest.mark.parametrize("folder,parts", [("pool", ("pool", None)), ("pool+clip", ("pool", "clip")),
                                          ("coco+dino_small", ("coco", "dino_small"))])
def test_features_folders_round_trip(folder, parts):
    assert names.features_of(folder) == parts
    assert names.features_folder(*parts) == folder


@pytest.mark.parametrize("ft", ["lumos_i2i-t5-mixed-n0", "none-clip-short-n90", "lumos_i2i_pool2000-t5-long-n100",
                                "i2i_clip-clip-mixed-n0"])
def test_finetune_names_round_trip(ft):
    assert names.format_finetune(**names.parse_finetune(ft)) == ft


def test_finetune_name_parts_and_bad_names():
    spec = names.parse_finetune("lumos_i2i_pool2000-clip-long-n50")
    assert spec == {"prior": "lumos_i2i_pool2000", "text": "clip", "captions": "long", "noise": 50,
                    "prior_run": "lumos_i2i", "pool_size": 2000}
    assert names.format_finetune("rcg", "t5") == "rcg-t5-mixed-n0"
    for bad in ("lumos_i2i-t5-mixed", "lumos_i2i-bert-mixed-n0", "lumos_i2i-t5-mixed-n101", "Lumos-t5-short-n0"):
        with pytest.raises(ValueError):
            names.parse_finetune(bad)
    with pytest.raises(ValueError):
        names.format_finetune("lumos_i2i", "t5", "mixed", 101)
    # the wildcard constraint accepts what the grammar does, with no named groups
    import re
    assert "?P<" not in names.FINETUNE_WILDCARD
    assert re.fullmatch(names.FINETUNE_WILDCARD, "lumos_i2i-t5-mixed-n0")
    # the T2I task reads the same grammar
    from lumos.tasks.t2i import parse_finetune
    assert parse_finetune is names.parse_finetune


def test_snapshot_names_round_trip():
    for step in (1, 500, 400000, 1234567):
        assert names.snapshot_step(names.snapshot_name(step)) == step
    assert names.snapshot_name(20) == "step-000020"
    for bad in ("step-1", "step-00001a", "final", "step000010"):
        with pytest.raises(ValueError, match="bad snapshot name"):
            names.snapshot_step(bad)


def test_prior_sources():
    runs = {"lumos_i2i": {}, "rcg": {}}
    assert names.parse_prior("none", runs) == ("none", None)
    assert names.parse_prior("lumos_i2i", runs) == ("i2i", "lumos_i2i")
    assert names.parse_prior("lumos_i2i_pool128", runs) == ("i2i", "lumos_i2i_pool128")
    assert names.parse_prior("lumos_i2i-t5-mixed-n0", runs) == ("t2i", "lumos_i2i-t5-mixed-n0")
    for bad in ("dino", "Lumos", "lumos_i2i-bert-mixed-n0"):
        with pytest.raises(ValueError, match="neither none, a pretrain run"):
            names.parse_prior(bad, runs)


# ------------------------------------------------------------------------------------ job counts


@pytest.mark.parametrize("n,unit,cap,expected", [
    (1, 10, 4, 1),        # less than a unit: one job
    (10, 10, 4, 1),       # exactly a unit
    (11, 10, 4, 2),       # a unit begun is a job
    (40, 10, 4, 4),       # exactly at the cap
    (1000, 10, 4, 4),     # capped
    (1000, 10, 1, 1),     # cap 1
    (0, 10, 4, 1),        # nothing to do still runs one job (its gather needs a part)
    (190_000_000, 10_000, 400, 400),
])
def test_jobs_edges(n, unit, cap, expected):
    assert jobs.jobs(n, unit, cap) == expected


def test_job_counts_smoke(smoke):
    # everything fits one job at smoke scale
    assert {s: jobs.data_jobs(smoke, s) for s in smoke["data"]["splits"]} == dict.fromkeys(smoke["data"]["splits"], 1)
    assert jobs.feature_jobs(smoke, "pool") == jobs.feature_jobs(smoke, "pool+clip") == 1
    assert jobs.sample_jobs(smoke, 64) == 1 and jobs.view_jobs(smoke, "nvs_train") == 1
    assert jobs.clip_jobs(smoke, "video_train") == jobs.clip_feature_jobs(smoke, "ucf") == 1
    assert jobs.text_jobs(smoke, "pairs") == 1


def test_job_counts_paper(paper):
    # curation: 400 jobs at most, one per 200,000 images (images_per_job): the 190M pool all of them,
    # the 30M pairs at each size 150, ImageNet-1K train 7, the 30K-50K evaluation splits one
    assert jobs.data_jobs(paper, "pool") == 400 and jobs.data_jobs(paper, "coco") == 1
    assert jobs.data_jobs(paper, "imagenet") == 1 and jobs.data_jobs(paper, "pairs_512px") == 150
    assert jobs.data_jobs(paper, "pairs") == jobs.data_jobs(paper, "pairs_1024px_ar4") == 150
    assert jobs.data_jobs(paper, "imagenet1k") == 7  # 1,281,167 images
    # without images_per_job (its default, 1), one job per 10,000-file unit begun
    unit = {**paper, "data": {**paper["data"], "curation": {**paper["data"]["curation"], "images_per_job": 1}}}
    assert jobs.data_jobs(unit, "coco") == 3 and jobs.data_jobs(unit, "imagenet1k") == 129
    assert jobs.data_jobs(unit, "pairs_512px") == jobs.data_jobs(unit, "pool") == 400
    # features: 64 jobs at most, one per 10,000-image shard
    assert jobs.feature_jobs(paper, "pool") == jobs.feature_jobs(paper, "pool+clip") == 64
    assert jobs.feature_jobs(paper, "coco") == 3 and jobs.feature_jobs(paper, "coco+dino_small") == 3
    # sampling: 8 jobs of 3,750 images for a 30K split, 8 for 50K (the cap), 3 for a curve's
    # FID-10K, one for a batch; the released model's batches of 8 the same way
    assert jobs.sample_jobs(paper, 30_000) == jobs.sample_jobs(paper, 50_000) == 8
    assert jobs.sample_jobs(paper, 10_000) == 3 and jobs.sample_jobs(paper, 64) == 1
    assert jobs.released_sample_jobs(paper, "coco") == 8
    unit = {**paper, "sample": {**paper["sample"], "images_per_job": 1}}  # one job per 64-image batch begun
    assert jobs.sample_jobs(unit, 10_000) == 8 and jobs.sample_jobs(unit, 65) == 2
    # videos: 400 ingestion jobs of 1,000 files for 10M clips, 3 for 2,048 evaluation clips
    assert jobs.clip_jobs(paper, "video_train") == 400 and jobs.clip_jobs(paper, "ucf") == 3
    assert jobs.clip_feature_jobs(paper, "video_train") == 64 and jobs.clip_feature_jobs(paper, "ucf") == 1
    # rendered views: 200 import jobs for 750K objects, one for the 30 test objects
    assert jobs.view_jobs(paper, "nvs_train") == 200 and jobs.view_jobs(paper, "nvs_test") == 1


def test_sample_counts(smoke, paper):
    assert jobs.i2i_samples(paper, "lumos_i2i", "coco") == 30_000
    assert jobs.i2i_samples(paper, "i2i_top_step50000", "coco") == 10_000  # pretrain.curve_samples
    assert jobs.i2i_samples(smoke, "i2i_top_step15", "coco") == 32
    assert jobs.t2i_samples(paper, "coco", "final") == 30_000 and jobs.t2i_samples(paper, "coco", "step-005000") == 10_000
    assert jobs.nvs_eval_objects(paper, "final") == 50 and jobs.nvs_eval_objects(paper, "step-001000") == 30
    assert jobs.nvs_saved_views(paper, "i2i", "final") == 4 and jobs.nvs_saved_views(paper, "i2i", "step-001000") == 0
    lgm = {**paper, "nvs": {**paper["nvs"], "lgm": {"objects": 6}}}
    assert jobs.nvs_saved_views(lgm, paper["nvs"]["main"], "final") == 6  # LGM's objects, more than Figure 7's
    assert jobs.nvs_saved_views(lgm, "none", "final") == 4


# ------------------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("steps,every,expected", [(10, 4, [4, 8, 10]), (10, 5, [5, 10]), (10, 10, [10]),
                                                  (3, 5, [3]), (1, 1, [1])])
def test_snapshot_steps(steps, every, expected):
    assert snapshots.snapshot_steps(steps, every) == expected


def test_snapshot_lists(smoke, paper):
    assert snapshots.t2i_snapshots(smoke) == ["step-000010", "step-000020"]
    assert snapshots.t2i_snapshots(paper)[0] == "step-005000" and snapshots.t2i_snapshots(paper)[-1] == "step-065000"
    assert snapshots.nvs_snapshots(paper) == [f"step-{k:03d}000" for k in range(1, 11)]
    unset = {**smoke, "nvs": {k: v for k, v in smoke["nvs"].items() if k != "snapshot_every"}}
    assert snapshots.nvs_snapshots(unset) == [names.snapshot_name(smoke["nvs"]["train"]["steps"])]  # the last only
    assert snapshots.pretrain_snapshots(paper, "i2i_top") == list(range(50_000, 400_001, 50_000))
    own = {**smoke, "pretrain": {**smoke["pretrain"], "runs": {**smoke["pretrain"]["runs"],
                                                              "rcg": {**smoke["pretrain"]["runs"]["rcg"], "train": {"steps": 20}}}}}
    assert snapshots.pretrain_snapshots(own, "rcg_step15") == [15, 20]  # a run's own train.steps


# ------------------------------------------------------------------------ splits and encoders


def test_splits(smoke, paper):
    assert splits.split_base(smoke, "pool") == ("pool", smoke["data"]["image_size"])
    assert splits.split_base(paper, "pairs_1024px_ar4") == ("pairs", 1024)
    assert splits.split_size(paper, "pairs_512px") == splits.split_size(paper, "pairs") == 30_000_000
    assert splits.split_size(smoke, "nvs_train") == 12 * 32 and splits.split_size(smoke, "nvs_test") == 3 * 33
    assert splits.curated(paper, "pool") and not splits.curated(smoke, "pool")
    assert splits.curated_splits(paper, ["pool", "coco", "pool"]) == ["pool", "coco"]
    assert splits.curated_splits(smoke, ["pool", "coco"]) == []
    assert splits.data_args(paper, "pool") == "--split pool"
    assert splits.data_args(paper, "pairs_512px") == "--split pairs --image-size 512"
    assert splits.data_args(smoke, "pairs_64px_ar3") == "--split pairs --image-size 64 --buckets 48x88 64x64 88x48"  # height x width, ratio 0.5 first
    assert "data.image_size" in splits.data_keys(smoke, "pool") and "data.image_size" not in splits.data_keys(smoke, "pairs_64px")
    assert "data.curation.files_per_unit" in splits.data_keys(paper, "coco")


def test_t2i_stages(smoke, paper):
    assert sorted(splits.t2i_stages(paper)) == [2, 3, 4]
    # curated square stages reuse the pair set's caption tokens; the bucketed one copies them row by row
    assert splits.stage_features(paper, "2") == {"features": "pairs_512px", "text": "pairs_text"}
    assert splits.stage_features(paper, "4") == {"features": "pairs_1024px_ar4", "text": "pairs_1024px_ar4_text"}
    assert splits.text_reused(paper, "pairs_1024px_ar4") and not splits.text_reused(paper, "pairs_512px")
    # the Shapes world re-renders each stage's scenes: their captions are encoded again
    assert splits.stage_features(smoke, "2") == {"features": "pairs_64px", "text": "pairs_64px_text"}
    assert not splits.text_reused(smoke, "pairs_64px_ar3")
    assert splits.split_buckets(smoke, "pairs_64px") == []
    with pytest.raises(ValueError, match="no T2I stage 5"):
        splits.t2i_stage(paper, 5)
    with pytest.raises(ValueError, match="has no aspect_ratios"):
        splits.split_buckets(paper, "pairs_512px_ar2")


def test_encoders_per_split_smoke(smoke):
    # the main encoders of the runs on the pool and on the evaluation splits
    assert splits.feature_encoders(smoke, "pool") == ["dino", "moco"]
    assert splits.patch_encoders(smoke, "pool") == ["dino"]  # i2i_top / i2i_random read DINO's patches
    assert splits.feature_encoders(smoke, "coco") == ["dino", "moco"]
    # an ablation encoder has its own folder; T2I reads no vision tokens; NVS its condition encoder
    assert splits.feature_encoders(smoke, "pool+clip") == splits.patch_encoders(smoke, "pool+clip") == ["clip"]
    assert splits.feature_encoders(smoke, "coco+dino_small") == ["dino_small"]
    assert splits.patch_encoders(smoke, "coco+dino_small") == []
    assert splits.feature_encoders(smoke, "pairs") == splits.feature_encoders(smoke, "pairs_64px_ar3") == []
    assert splits.feature_encoders(smoke, "nvs_train") == [smoke["nvs"]["encoder"]]
    assert splits.feature_encoders(smoke, "classifier") == []


def test_encoders_per_split_paper(paper):
    # the ablation priors train on ImageNet-1K: the pool's features need no patch tokens
    assert splits.feature_encoders(paper, "pool") == ["dino", "moco"] and splits.patch_encoders(paper, "pool") == []
    assert splits.patch_encoders(paper, "imagenet1k") == ["dino"]
    assert splits.patch_encoders(paper, "coco") == ["dino"]  # every run is sampled on the evaluation splits
    assert splits.patch_encoders(paper, "imagenet1k+clip") == ["clip"]
    assert splits.run_features(paper, "i2i_clip") == "imagenet1k+clip"
    assert splits.run_features(paper, "lumos_i2i") == "pool"
    assert splits.run_features(paper, "i2i_dino_small_step50000", "coco") == "coco+dino_small"
    assert splits.run_features(paper, "untrained", "coco") == "coco"


def test_text_encoders(smoke):
    assert splits.text_encoders(smoke) == ["clip", "t5"]  # the main t5, and Figure 11's clip
    assert splits.t2i_text(smoke, "untrained") == "t5" and splits.t2i_text(smoke, "rcg-clip-mixed-n0") == "clip"


# --------------------------------------------------------------------------------------- figures


def test_figure_runs(smoke, paper):
    assert figures.fig_runs(smoke, "fig2b") == {"pool 128": "lumos_i2i_pool128-t5-mixed-n0",
                                                 "pool 512": "lumos_i2i_pool512-t5-mixed-n0"}
    assert figures.fig_runs(smoke, "figS1") == figures.fig_runs(smoke, "fig2a")
    assert figures.fig_runs(smoke, "fig2a")["lumos_i2i@90"] == "lumos_i2i-t5-mixed-n90"
    assert figures.fig_runs(paper, "fig11b") == {"t5": "i2i_clip-t5-mixed-n0", "clip": "i2i_clip-clip-mixed-n0"}
    with pytest.raises(ValueError):
        figures.fig_runs({**smoke, "t2i": {**smoke["t2i"], "figures": {"fig99": {}}}}, "fig99")
    # Figure 12: the dropout equal to the model's is the run itself
    runs = figures.fig12_runs(paper)
    assert runs[("dropout", 10)] == "lumos_i2i" and runs[("dropout", 30)] == "lumos_i2i_drop30"
    assert runs[("guidance", 4.5)] == "lumos_i2i_cfg4.5"
    assert figures.ablation_figures(paper) == ["fig10", "fig9", "figS2", "figS3", "figG1", "fig2c"]
    assert figures.ablation_lines(paper, "figG1") == {r: r for r in ("lumos_i2i_in1k", "rcg_in1k", "repa", "reg")}
    assert figures.ablation_lines(paper, "fig2c") == figures.ablation_lines(paper, "fig10")
    assert figures.ablation_lines(paper, "fig9")["patch (i2i_clip_patch)"] == "i2i_clip_patch"
    assert figures.ablation_lines(smoke, "fig9") == {"cls (i2i_clip)": "i2i_clip", "cls_patch (i2i_clip_all)": "i2i_clip_all"}
    assert list(figures.ablation_lines(smoke, "figS2")) == ["cls_top (i2i_top)", "cls_random (i2i_random)"]
    assert list(figures.ablation_lines(smoke, "figS3")) == ["dino_small (i2i_dino_small)", "dino (lumos_i2i)"]
    assert figures.ablation_finetune(paper, "i2i_moco") == "i2i_moco-t5-mixed-n0"


# ---------------------------------------------------------------------------------------- inputs


def test_configured_inputs(smoke, paper, tmp_path):
    assert inputs.missing_inputs(smoke) == []
    missing = {key: (stage, name) for key, _, _, stage, name in inputs.missing_inputs(paper)}
    assert missing["data.sources.coco.0.annotations"] == ("data", "coco")
    assert missing["nvs.paths.nvs_train"] == ("views", "nvs_train") and missing["eval.inception"] == ("inception", "")
    ckpt = tmp_path / "Lumos_I2I.pth"
    released = {**paper, "released": {**paper["released"], "i2i": str(ckpt)}}
    with pytest.raises(ValueError, match="missing released checkpoint .*released.i2i"):
        inputs.released_checkpoint(released, "i2i")
    assert ("released.i2i", str(ckpt), "released checkpoint", "import", "i2i") in inputs.missing_inputs(released)
    ckpt.write_bytes(b"")
    assert inputs.released_checkpoint(released, "i2i") == str(ckpt)
    with pytest.raises(ValueError, match="'released.t2i' is not set"):
        inputs.released_checkpoint(released, "t2i")
    assert len(inputs.released_t2i_missing(smoke)) == 3 and inputs.released_t2i_missing(paper) == []


def test_lgm_weights(paper, tmp_path):
    with pytest.raises(ValueError, match="'nvs.lgm' is not set"):
        inputs.lgm_weights(paper)
    repo, weights = tmp_path / "LGM", tmp_path / "model.safetensors"
    lgm = {**paper, "nvs": {**paper["nvs"], "lgm": {"repo": str(repo), "weights": str(weights)}}}
    with pytest.raises(ValueError, match="nvs.lgm.repo"):
        inputs.lgm_weights(lgm)
    (repo / "core").mkdir(parents=True)
    (repo / "core" / "models.py").write_text("")
    with pytest.raises(ValueError, match="nvs.lgm.weights"):
        inputs.lgm_weights(lgm)
    weights.write_bytes(b"")
    assert inputs.lgm_weights(lgm) == str(weights)
