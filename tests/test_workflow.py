"""The Snakemake workflow end to end: smoke-preset Table 1, the paper DAG in dry-run, lint, bad config."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lumos.data.shards import read_images, read_records

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def snakemake(*args, cwd, check=True):
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(cwd), *args], capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


STAGE2 = "results/t2i/lumos_i2i-t5-mixed-n0/stage2/model"
STAGE3 = "results/t2i/lumos_i2i-t5-mixed-n0/stage3/model"  # the smoke preset's multi-scale stage


@pytest.mark.slow
def test_smoke_table1_has_measured_and_reported_rows(smoke_run):
    df = pd.read_csv(smoke_run / "results" / "table1.csv")
    assert set(df["source"]) == {"measured", "reported (paper)"}
    reported = df[df["source"] == "reported (paper)"].set_index("method")
    assert reported.loc["RCG", "coco_fid"] == 12.70 and reported.loc["RCG", "imagenet_fid"] == 4.89
    assert reported.loc["Lumos-I2I", "coco_fid"] == 4.82 and reported.loc["Lumos-I2I", "imagenet_fid"] == 2.60
    measured = df[df["source"] == "measured"].set_index("method")
    assert list(measured.index) == ["Lumos-I2I", "RCG", "untrained DiT (ceiling)", "real images, independent sample (floor)",
                                    "REPA (beyond the paper)", "REG (beyond the paper)"]
    beyond = df[df["method"].str.contains("beyond the paper")]
    assert set(beyond["source"]) == {"measured"}  # no reported numbers for rows the paper does not have
    for run in ("repa", "reg"):  # trained with their guidance: the alignment term (minus a cosine) fell
        loss = pd.read_csv(smoke_run / "results" / "pretrain" / run / "loss.csv")
        assert loss["repa"].iloc[-1] < loss["repa"].iloc[0], (run, loss)
    assert "reg" in pd.read_csv(smoke_run / "results" / "pretrain" / "reg" / "loss.csv")
    assert (measured["coco_samples"] == 64).all() and (measured["imagenet_samples"] == 64).all()
    assert (measured["preset"] == "smoke").all()
    assert measured["feature_extractor"].str.contains("shapes-classifier").all()
    for split in ("coco", "imagenet"):
        col = measured[f"{split}_fid"]
        assert (col >= 0).all()
        assert col["real images, independent sample (floor)"] < col["untrained DiT (ceiling)"]
    assert "reported (paper)" in (smoke_run / "results" / "table1.md").read_text()


@pytest.mark.slow
def test_smoke_outputs_a_person_looks_at(smoke_run):
    res = smoke_run / "results"
    grid = Image.open(res / "table1_samples.png")
    assert grid.width > 3 * 32 * 3  # at least one eval | Lumos | RCG triple at 3x
    assert Image.open(res / "data" / "pool" / "contact_sheet.png").width > 0
    assert len(list((res / "samples" / "lumos_i2i" / "coco").glob("*.png"))) == 64
    for run in ("lumos_i2i", "rcg"):
        curve = pd.read_csv(res / "pretrain" / run / "loss.csv")
        assert curve["step"].iloc[-1] == 30 and curve["loss"].notna().all()
        assert not any((res / "state" / "pretrain" / run).iterdir())  # a finished run leaves no state
    for name in ("vae", "dino", "moco", "fid_net"):
        assert (res / "components" / name / "config.json").exists()
    assert json.loads((res / "eval" / "fid" / "rcg_coco.json").read_text())["n_reference"] == 64


@pytest.mark.slow
def test_smoke_i2i_row_through_the_webdataset_path(tmp_path):
    """Table 1's Lumos-I2I row (its COCO FID) with the pool exported as img2dataset webdataset shards
    and curated by two jobs with the paper's filters (shorter side > 32, aesthetic > 5.0), as LAION
    is at paper scale. One row: what follows curation is the smoke Table 1's own DAG."""
    snakemake("results/eval/fid/lumos_i2i_coco.json", "--configfile", str(ROOT / "config" / "smoke.yaml"),
              str(ROOT / "config" / "webdataset.yaml"), "--cores", "2", cwd=tmp_path)
    res = tmp_path / "results"
    report = json.loads((res / "data" / "pool" / "curation.json").read_text())
    shapes = report["by_source"]["shapes_web"]
    assert report["parts"] == 2 and shapes["seen"] == 512  # every exported image counted once
    assert shapes["kept"] + shapes["too_small"] + shapes["low_aesthetic"] == 512
    assert shapes["too_small"] > 0 and shapes["low_aesthetic"] > 0  # both filters acted
    assert 0.4 < shapes["kept"] / 512 < 0.8
    records = read_records(res / "data" / "pool")
    assert len(records) == shapes["kept"] and all(r["aesthetic"] > 5.0 and r["width"] > 32 for r in records)
    assert sorted(p.name for p in (res / "export" / "pool").glob("*.tar")) == ["00000.tar", "00001.tar"]
    fid = json.loads((res / "eval" / "fid" / "lumos_i2i_coco.json").read_text())
    assert fid["fid"] >= 0 and fid["n_samples"] == 64
    summary = json.loads((res / "pretrain" / "lumos_i2i" / "train_summary.json").read_text())
    assert summary["steps"] == 30


@pytest.mark.slow
def test_smoke_table2_table3(smoke_run):
    res = smoke_run / "results"
    t2 = pd.read_csv(res / "table2.csv")
    reported = t2[t2["source"] == "reported (paper)"].set_index("method")
    assert len(reported) == 16 and reported.loc["Lumos-T2I", "fid"] == 12.20 and reported.loc["Lumos-T2I†", "fid"] == 6.44
    assert reported.loc["GLIDE", "steps"] == "2500k" and reported.loc["PixArt-α*†", "fid"] == 21.35
    measured = t2[t2["source"] == "measured"].set_index("method")
    assert list(measured.index) == ["Lumos-T2I", "Lumos-T2I†", "untrained DiT (ceiling)",
                                    "real images, independent sample (floor)"]
    assert measured.loc["Lumos-T2I", "pairs"] == "128" and measured.loc["Lumos-T2I", "steps"] == "20"
    assert (measured["samples"] == 64).all() and (measured["fid"] >= 0).all()
    t3 = pd.read_csv(res / "table3.csv")
    measured = t3[t3["source"] == "measured"].set_index("method")
    reported = t3[t3["source"] == "reported (paper)"].set_index("method")
    assert list(measured.index) == ["Lumos-T2I", "untrained DiT", "ground-truth renders"]
    assert measured.loc["ground-truth renders", "geneval_overall"] >= 0.95  # the detector on real renders
    assert measured.loc["ground-truth renders", "dpg_average"] >= 95
    assert measured.loc["Lumos-T2I", "params"].endswith("M")
    assert len(reported) == 12 and reported.loc["Lumos-T2I", "geneval_overall"] == 0.57
    assert (reported.loc["SDXL", ["color_attr", "position", "geneval_overall"]] == [0.23, 0.15, 0.55]).all()
    assert Image.open(res / "t2i_samples.png").width > 0
    from lumos.pipelines import LumosT2IPipeline  # the exported pipeline loads and generates

    pipe = LumosT2IPipeline.from_pretrained(str(res / "t2i" / "lumos_i2i-t5-mixed-n0" / "pipeline"))
    assert pipe(["a red circle"], num_inference_steps=2, output_type="np").images.shape == (1, 32, 32, 3)
    snapshots = sorted(p.name for p in (res / "t2i" / "lumos_i2i-t5-mixed-n0" / "snapshots").glob("step-*"))
    assert snapshots == ["step-000010", "step-000020"]


@pytest.mark.slow
def test_smoke_progressive_resolution_stage(smoke_run):
    """Table S1 stage 2: the main fine-tune continued on the pairs re-rendered at 64 px."""
    from lumos.models import LumosDiT

    res = smoke_run / "results"
    stage = LumosDiT.from_pretrained(str(smoke_run / STAGE2))
    first = LumosDiT.from_pretrained(str(res / "t2i" / "lumos_i2i-t5-mixed-n0" / "model"))
    assert (first.config.sample_size, stage.config.sample_size) == (8, 16)  # 32 px -> 64 px, VAE factor 4
    summary = json.loads((smoke_run / STAGE2).parent.joinpath("train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["init"] == "results/t2i/lumos_i2i-t5-mixed-n0/model"
    assert read_images(res / "data" / "pairs_64px", limit=1).shape[1:] == (64, 64, 3)
    feats = json.loads((res / "features" / "pairs_64px" / "index.json").read_text())
    assert feats["latent_shape"] == [4, 16, 16] and feats["encoders"] == []  # T2I reads latents only


@pytest.mark.slow
def test_smoke_multi_scale_stage(smoke_run):
    """Table S1 stage 4's role: stage 2 continued on the pairs rendered into aspect-ratio buckets."""
    from lumos.models import LumosDiT

    res = smoke_run / "results"
    summary = json.loads((smoke_run / STAGE3).parent.joinpath("train_summary.json").read_text())
    assert summary["init"] == STAGE2 and summary["pairs"] == 128
    assert summary["buckets"] == {"48x88": [4, 12, 22], "64x64": [4, 16, 16], "88x48": [4, 22, 12]}
    buckets = json.loads((res / "data" / "pairs_64px_ar3" / "buckets.json").read_text())
    assert sum(buckets["counts"].values()) == 128
    assert read_images(res / "data" / "pairs_64px_ar3" / "48x88", limit=1).shape[1:] == (48, 88, 3)
    model = LumosDiT.from_pretrained(str(smoke_run / STAGE3)).eval()
    out = model(torch.randn(1, 4, 12, 22), torch.tensor([100]), torch.randn(1, 5, model.config.cond_dim))
    assert out.shape == (1, 8, 12, 22)


@pytest.mark.slow
def test_smoke_interpolation_figure(smoke_run):
    """Figure S7 from the smoke prior: pairs x points rows, t from 0 to 1, measured similarities."""
    snakemake("results/figS7.png", "--configfile", str(ROOT / "config" / "smoke.yaml"), "--cores", "2", cwd=smoke_run)
    df = pd.read_csv(smoke_run / "results" / "figS7.csv")
    assert len(df) == 4 * 8 and set(df["source"]) == {"measured"}
    assert sorted(set(df["t"])) == pytest.approx(list(np.linspace(0, 1, 8)), abs=1e-4)
    assert df[["cos_to_a", "cos_to_b"]].abs().le(1 + 1e-5).all().all()
    strip = Image.open(smoke_run / "results" / "figS7.png")
    assert strip.width >= 10 * 32 and strip.height >= 4 * 32  # a | 8 generated | b, per pair


@pytest.mark.slow
def test_smoke_fig12_dropout_and_guidance(smoke_run):
    """Figure 12: one extra prior trained without condition dropout (10% is the main run's), the
    main run sampled at two guidance scales; FID per point."""
    proc = snakemake("results/fig12.png", "--configfile", str(ROOT / "config" / "smoke.yaml"), "--cores", "2",
                     cwd=smoke_run)
    df = pd.read_csv(smoke_run / "results" / "fig12.csv")
    assert list(df["value"]) == [0, 10, 1.0, 4.5] and (df["fid"] > 0).all() and (df["samples"] == 64).all()
    assert list(df["run"]) == ["lumos_i2i_drop0", "lumos_i2i", "lumos_i2i_cfg1.0", "lumos_i2i_cfg4.5"]
    model = json.loads((smoke_run / "results" / "pretrain" / "lumos_i2i_drop0" / "model" / "config.json").read_text())
    assert model["cond_dropout"] == 0.0
    assert "rule pretrain" in proc.stdout + proc.stderr  # lumos_i2i itself is not trained again
    assert len(re.findall(r"wildcards: run=lumos_i2i\b", proc.stdout + proc.stderr)) == 0


@pytest.mark.slow
def test_smoke_ablation_figures(smoke_run):
    """Figures 10, 2c and 11b from the smoke preset's ablation priors: I2I FID at each pretraining
    snapshot, the T2I fine-tune's FID at each fine-tuning snapshot, no run trained twice. (Figures 9,
    S2, S3 and G1 are the same code on other runs: planned below.)"""
    proc = snakemake("results/fig10.png", "results/fig2c.png", "results/fig11b.png", "--configfile",
                     str(ROOT / "config" / "smoke.yaml"), "--cores", "2", cwd=smoke_run)
    log = proc.stdout + proc.stderr
    assert not re.search(r"wildcards: run=lumos_i2i\n", log)  # Table 1's prior is reused, not retrained
    assert not re.search(r"wildcards: ft=lumos_i2i-t5-mixed-n0\n", log)  # so is Table 2's fine-tune
    res = smoke_run / "results"
    fig10 = pd.read_csv(res / "fig10.csv")
    i2i, t2i = fig10[fig10.panel == "a: I2I"], fig10[fig10.panel == "b: T2I"]
    assert list(dict.fromkeys(i2i.label)) == ["clip (i2i_clip)", "dino (lumos_i2i)"]
    assert sorted(set(i2i.step)) == [15, 30] and sorted(set(t2i.step)) == [10, 20]
    assert (i2i.samples == 32).all() and (fig10.fid > 0).all() and set(fig10.source) == {"measured"}
    fig2c = pd.read_csv(res / "fig2c.csv")
    assert set(fig2c.panel) == {"b: T2I"} and fig2c.fid.tolist() == t2i.fid.tolist()
    assert set(pd.read_csv(res / "fig11b.csv").finetune) == {"i2i_clip-t5-mixed-n0", "i2i_clip-clip-mixed-n0"}
    clip = json.loads((res / "pretrain" / "i2i_clip" / "model" / "config.json").read_text())
    assert clip["max_cond_tokens"] == 1  # the CLS (token counts of the patch-token runs: tests/test_rows.py)
    snapshots = sorted(p.name for p in (res / "pretrain" / "i2i_clip" / "snapshots").glob("step-*"))
    assert snapshots == ["step-000015", "step-000030"]


@pytest.mark.slow
def test_smoke_plans_figures_9_S2_S3_G1(smoke_run):
    """Figures 9, S2, S3 and G1 (beyond the paper) on the smoke run, planned, not run (the figure's
    code is Figure 10's, above): each new prior is pretrained with its EMA snapshots, which are
    sampled and scored, and fine-tuned to T2I and scored at each fine-tuning snapshot; Table 1's
    priors (G1's REPA and REG, S3's lumos_i2i) are reused. REPA / REG's fine-tunes drop their
    projector and token: tests/test_guidance.py."""
    proc = snakemake("results/fig9.png", "results/figS2.png", "results/figS3.png", "results/figG1.png",
                     "--configfile", str(ROOT / "config" / "smoke.yaml"), "-n", "-p", cwd=smoke_run)
    out = proc.stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("\n\n")[0], re.M))
    assert {"finetune", "sample", "fid", "t2i_sample", "t2i_fid", "ablation_figure"} <= set(jobs), jobs
    trained = set(re.findall(r"wildcards: run=(\w+)\n", out))
    assert {"i2i_clip_all", "i2i_top", "i2i_random", "i2i_dino_small"} <= trained
    assert not trained & {"lumos_i2i", "repa", "reg"}, trained
    for run in ("i2i_clip_all", "i2i_top", "i2i_random", "i2i_dino_small", "repa", "reg"):
        for step in ("000015", "000030"):
            assert re.search(rf"--run-name {run} .*--model results/pretrain/{run}/snapshots/step-{step}", out), step
        assert re.search(rf"results/t2i/{run}-t5-mixed-n0/model", out), run
    # each figure's lines, labelled by what it varies
    for label in ("cls (i2i_clip)", "cls_patch (i2i_clip_all)", "cls_top (i2i_top)", "cls_random (i2i_random)",
                  "dino_small (i2i_dino_small)", "dino (lumos_i2i)", "repa", "reg"):
        assert f"{label}=15:" in out, label


@pytest.mark.slow
def test_smoke_class_curves_score_each_snapshot_of_a_class_prior(smoke_run):
    """The levers' curves (beyond the paper; config/levers.yaml at tiny scale) on the smoke run: the
    class-to-image prior trained with its EMA snapshots, then one job scores each with the class
    grid, step 0 being the untrained model."""
    snakemake("results/class_curves.png", "--configfile", str(ROOT / "config" / "smoke.yaml"), "--config",
              "pretrain={class_curves: [class_i2i]}", "--cores", "2", cwd=smoke_run)
    curves = pd.read_csv(smoke_run / "results" / "class_curves.csv")
    assert list(curves.step) == [0, 15, 30] and set(curves.label) == {"class_i2i"}
    assert (curves.samples == 160).all() and set(curves.source) == {"measured"}  # 40 classes x 4 seeds
    assert curves[["colour", "shape", "pair"]].stack().between(0, 1).all()
    assert (smoke_run / "results" / "class_curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_smoke_nvs_table4_fig5_fig7(smoke_run):
    """Novel view synthesis from the smoke priors: rendered views, three NVS fine-tunes (no prior,
    the T2I fine-tune trained without a prior, the I2I prior), Table 4 with the input-view
    baseline and the paper's rows, Figure 5 per prior and snapshot, Figure 7's panel."""
    proc = snakemake("results/table4.csv", "results/fig5.png", "results/fig7.png", "--configfile",
                     str(ROOT / "config" / "smoke.yaml"), "--cores", "2", cwd=smoke_run)
    res = smoke_run / "results"
    assert "rule pretrain:" not in proc.stdout + proc.stderr  # the I2I prior of Table 1 is reused
    t4 = pd.read_csv(res / "table4.csv")
    measured = t4[t4["source"] == "measured"].set_index("method")
    assert list(measured.index) == ["baseline: return the input view", "the target views through the VAE (ceiling)",
                                    "NVS from the none prior (none)",
                                    "NVS from the t2i prior (none-t5-mixed-n0)", "Lumos-NVS (i2i prior: lumos_i2i)"]
    assert (measured[["views_elev0", "views_elev30"]] == 3 * 16).all().all()  # 3 objects x 16 azimuths
    assert measured["psnr_elev30"].between(0, 60).all() and measured["ssim_elev0"].between(-1, 1).all()
    reported = t4[t4["source"] == "reported (paper)"].set_index("method")
    assert reported.loc["Lumos-NVS", "psnr_elev0"] == 19.63 and reported.loc["Zero123", "lpips_elev30"] == 0.1584
    assert pd.isna(reported.loc["SyncDreamer", "psnr_elev0"])
    f5 = pd.read_csv(res / "fig5.csv")
    assert sorted(zip(f5["prior"], f5["step"])) == sorted((p, s) for p in ("none", "t2i", "i2i") for s in (10, 20))
    assert (f5["views"] == 2 * 32).all()
    summary = json.loads((res / "nvs" / "i2i" / "train_summary.json").read_text())
    assert summary["condition_kept"] and summary["prior_kind"] == "i2i" and summary["views_per_object"] == 32
    # the tiny and smoke fine-tunes predict x0 (nvs.prediction_type), and the table says so
    assert summary["prediction_type"] == "sample"
    assert json.loads((res / "nvs" / "i2i" / "model" / "config.json").read_text())["prediction_type"] == "sample"
    assert "The fine-tunes predict x0" in (res / "table4.md").read_text()
    assert json.loads((res / "nvs" / "t2i" / "train_summary.json").read_text())["condition_kept"] is False
    assert Image.open(res / "fig7.png").width > 9 * 32 and Image.open(res / "data" / "nvs_test" / "contact_sheet.png")
    # the views are decoded by the VAE with its decoder fine-tuned on the NVS renders, the encoder as it was
    ft = json.loads((res / "components" / "vae_nvs" / "decoder_finetune.json").read_text())
    assert ft["steps"] == 5 and ft["images"] == 300 - 256
    assert json.loads((res / "nvs" / "i2i" / "eval" / "final" / "summary.json").read_text())["decoder"].startswith(
        "fine-tuned")
    assert "decoder fine-tuned on the NVS training renders" in (res / "table4.md").read_text()


@pytest.mark.slow
def test_smoke_i2v_table5_fig2d_figS8(smoke_run):
    """Image-to-video from the smoke priors: video Shapes-world clips, the FVD network trained in
    the DAG, three I2V fine-tunes, samples from each evaluation split's first frames, Table 5 with
    the real-clip sanity rows and the paper's rows, Figure 2d beside the NVS numbers, Figure S8."""
    snakemake("results/table5.csv", "results/fig2d.png", "results/figS8.png", "--configfile",
              str(ROOT / "config" / "smoke.yaml"), "--cores", "2", cwd=smoke_run)
    res = smoke_run / "results"
    t5 = pd.read_csv(res / "table5.csv")
    measured = t5[t5["source"] == "measured"].set_index("method")
    assert list(measured.index)[:3] == ["w/o prior (none)", "w T2I prior (none-t5-mixed-n0)", "w I2I prior (lumos_i2i)"]
    assert (measured[["ucf_clips", "msrvtt_clips"]] == 8).all().all()
    assert measured[["ucf_fvd", "msrvtt_fvd"]].notna().all().all() and (measured["ucf_pic"].abs() <= 1 + 1e-6).all()
    reported = t5[t5["source"] == "reported (paper)"].set_index("method")
    assert reported.loc["w I2I Prior", "ucf_fvd"] == 399.59 and reported.loc["w/o Prior", "msrvtt_kvd"] == 72.97
    generated = sorted((res / "i2v" / "i2i" / "samples" / "ucf").glob("*.png"))
    assert len(generated) == 8 and Image.open(generated[0]).size == (16 * 32, 32)  # 16 frames in a strip
    summary = json.loads((res / "i2v" / "i2i" / "train_summary.json").read_text())
    assert summary["prior_kind"] == "i2i" and summary["condition_kept"] and summary["frames"] == 16
    f2d = pd.read_csv(res / "fig2d.csv")
    assert set(f2d["task"]) == {"NVS", "I2V"} and set(f2d["prior"]) == {"none", "t2i", "i2i"}
    assert Image.open(res / "figS8.png").width > 16 * 32 and (res / "data" / "ucf" / "preview.gif").exists()


@pytest.mark.slow
def test_rerun_is_a_no_op(smoke_run):
    proc = snakemake("results/table1.csv", "results/table2.csv", "results/table3.csv", "--configfile",
                     str(ROOT / "config" / "smoke.yaml"), "-n", cwd=smoke_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_step_reruns_exactly_when_its_own_settings_change(smoke_run, tmp_path):
    """Changing the FID network's training steps reruns the FID network and what reads it (FID,
    tables), and nothing upstream of it: not the data, the features or the priors."""
    extra = tmp_path / "fid_net_steps.yaml"
    extra.write_text("components:\n  fid_net:\n    train: {steps: 41}\n")
    proc = snakemake("results/table1.csv", "--configfile", str(ROOT / "config" / "smoke.yaml"), str(extra), "-n",
                     "--rerun-triggers", "params", cwd=smoke_run)
    out = proc.stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("\n\n")[0], re.M))
    assert jobs.get("train_component") == "1" and "results/components/fid_net" in out
    assert {"fid", "fid_real", "fid_reference", "table1"} <= set(jobs)
    assert not {"data_part", "features", "gather_features", "pretrain", "sample"} & set(jobs), jobs


@pytest.mark.slow
def test_report_shows_the_tables_and_figures(smoke_run):
    """`snakemake <targets> --report` writes one browsable HTML file holding the marked tables and
    figures of those targets (the fixture builds no figures, so the report has none), and the
    per-job runtime and memory of their jobs (results/benchmarks.csv, `report.benchmarks_of`)."""
    targets = ["results/table1.csv", "results/table2.csv", "results/table3.csv", STAGE3]
    args = [*targets, "results/benchmarks.csv", "--configfile", str(ROOT / "config" / "smoke.yaml"), "--config",
            f"report={{benchmarks_of: [{', '.join(targets)}]}}"]
    snakemake(*args, "--cores", "1", cwd=smoke_run)  # only the benchmark table is new
    bench = pd.read_csv(smoke_run / "results" / "benchmarks.csv")
    jobs = set(zip(bench["stage"], bench["job"]))
    assert {("pretrain", "lumos_i2i"), ("fid", "lumos_i2i_coco"), ("t2i", "lumos_i2i-t5-mixed-n0")} <= jobs, jobs
    assert (bench["s"] > 0).all() and bench["max_rss"].notna().any() and (bench["max_rss"].dropna() > 0).all()
    proc = snakemake(*args, "--report", "results/report.html", cwd=smoke_run)
    html = (smoke_run / "results" / "report.html").read_text(errors="replace")
    for name in ("table1.csv", "table2.csv", "table3.csv", "table1_samples.png", "t2i_samples.png", "benchmarks.csv"):
        assert name in html, (name, proc.stderr[-2000:])
    assert "I2I (Section 4.1)" in html and "T2I (Section 4.2.1)" in html
    assert "Runtime and memory (per job)" in html and "max_rss" in html


def test_paper_dag_dry_run_without_weights(tmp_path):
    proc = snakemake("results/table1.csv", "--configfile", str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert "DiT-XL/2" in out
    assert "--n-samples 30000" in out and "--n-samples 50000" in out
    assert "stabilityai/sd-vae-ft-mse" in out and "facebook/dino-vitb16" in out
    assert "train_component" not in out  # paper weights are loaded, not trained
    # beyond the paper: REPA and REG priors on ImageNet-1K, guided by DINOv2-B as in their papers
    assert re.search(r"wildcards: run=repa\n", out) and re.search(r"wildcards: run=reg\n", out)
    assert "facebook/dinov2-base" in out and "results/features/imagenet1k+dinov2_base" in out
    for rule in ("data_part", "features", "pretrain", "sample", "fid_reference", "fid", "fid_real", "table1"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    # curation over many jobs; the paper's filters on LAION/COYO only, none on the evaluation splits
    data_jobs = {split: [line for line in out.splitlines() if f"lumos data --split {split} " in line]
                 for split in ("pool", "imagenet", "imagenet_ref")}
    assert len(data_jobs["pool"]) == 400 and 1 <= len(data_jobs["imagenet"]) <= 5
    for split, lines in data_jobs.items():
        sources = json.loads(re.search(r"--cfg '(.*?)' ", lines[0]).group(1))[f"data.sources.{split}"]
        filtered = {s["name"] for s in sources if s["min_side"] or s["aesthetic"]}
        assert filtered == ({"laion", "coyo"} if split == "pool" else set()), (split, filtered)
    assert re.search(r"--parts 400 --out results/data/pool.part399\b", out)
    # no SLURM (no profile): pretraining launches on the devices its job sees, on one machine
    launches = [line for line in out.splitlines() if "lumos launch" in line]
    # (Lumos-I2I, RCG and, beyond the paper, REPA and REG)
    assert len(launches) == 4 and all("Shell command:  lumos launch --processes auto --nodes 1 -- pretrain " in line
                                      for line in launches)
    assert "srun" not in out


# What a local rule (run by Snakemake itself: on a cluster, the login node) may run: commands that
# read and write files only. A command that loads a network belongs in a job.
FILE_ONLY_COMMANDS = {"table1", "table2", "table3", "table4", "table5", "figure", "fig12", "ablation-figure",
                      "official-scores", "gather", "gather-data", "gather-clips", "gather-views", "lgm-inputs",
                      "job-benchmarks"}
LOCAL_RULES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(sys.argv[1]), workdir=Path(sys.argv[2]),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[3])]))._workflow
    print(json.dumps({r.name: r.shellcmd for r in wf.rules if r.name in wf._localrules}))
"""


def test_paper_local_rules_load_no_network(tmp_path):
    """Every local rule of the paper preset (run on the login node, which has no GPU) runs a
    command that only reads and writes files; every rule that loads a network is a job."""
    proc = subprocess.run([sys.executable, "-c", LOCAL_RULES, str(ROOT / "Snakefile"), str(tmp_path),
                           str(ROOT / "config" / "paper.yaml")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"table1", "table2", "figure", "fig12", "gather_samples"} <= set(local) and "t2i_grid" not in local
    for rule, command in local.items():
        words = re.findall(r"\blumos ([a-z0-9-]+)", command or "")
        assert words and set(words) <= FILE_ONLY_COMMANDS, (rule, command)


def test_a_missing_inception_file_is_named_in_a_dry_run_and_stops_a_real_run(tmp_path):
    """eval.inception pointing nowhere: a dry run warns naming the key; a real run stops at
    start (before any job) naming the key and the preset."""
    cfg = ["--configfile", str(ROOT / "config" / "smoke.yaml"), "--config", "eval={fid_extractor: inception}"]
    dry = snakemake("results/table1.csv", *cfg, "-n", cwd=tmp_path)
    assert "smoke preset: eval.inception = '' (clean-fid's inception-2015-12-05.pt" in dry.stdout + dry.stderr
    real = snakemake("results/table1.csv", *cfg, "--cores", "1", cwd=tmp_path, check=False)
    assert real.returncode != 0
    assert "inputs of the smoke preset are missing: eval.inception = ''" in real.stdout + real.stderr
    assert not (tmp_path / "results" / "data").exists()


def test_paper_t2i_dag_dry_run_without_weights(tmp_path):
    proc = snakemake("results/table2.csv", "results/table3.csv", "--configfile", str(ROOT / "config" / "paper.yaml"),
                     "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert "google/flan-t5-xxl" in out and "DiT-XL/2" in out
    assert "--n-samples 30000" in out
    for rule in ("text_features", "finetune", "t2i_sample", "t2i_fid", "official_images", "geneval_official",
                 "dpg_official", "official_scores", "table2", "table3"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    assert "evaluation/evaluate_images.py" in out and "dpg_bench/compute_dpg_bench.py" in out
    assert "--ft lumos_i2i-t5-mixed-n0 --prior results/pretrain/lumos_i2i/model" in out
    assert '"t2i.long_caption_fraction": 0.5' in out  # the fine-tune reruns when the mixing ratio changes
    assert "rule caption:" not in out  # data.captioner is unset: COCO long captions are the user's to give
    assert "DeepFloyd" not in out and "results/released" not in out  # T5 v1.1 only with config released.t2i


def test_paper_dry_run_captions_coco_first_when_a_captioner_is_set(tmp_path):
    """With data.captioner set and no COCO long_captions, Table 2's DAG captions the COCO source
    with the VLM (its own env) and curates the COCO split with the JSON it writes."""
    proc = snakemake("results/table2.csv", "--configfile", str(ROOT / "config" / "paper.yaml"), "--config",
                     'data={"captioner": {"model": "OpenGVLab/InternVL3-8B-hf"}}', "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert out.count("rule caption:") == 1
    assert "python -m lumos caption" in out and "--split coco --source coco --out results/captions/coco/coco.json" in out
    assert "OpenGVLab/InternVL3-8B-hf" in out
    coco_jobs = [line for line in out.splitlines() if "lumos data --split coco " in line]
    assert coco_jobs
    for line in coco_jobs:
        source = json.loads(re.search(r"--cfg '(.*?)' ", line).group(1))["data.sources.coco"][0]
        assert source["long_captions"] == "results/captions/coco/coco.json"


def test_paper_interpolation_figure_dry_run(tmp_path):
    proc = snakemake("results/figS7.png", "--configfile", str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    assert "lumos interpolate" in proc.stdout and "results/pretrain/lumos_i2i/model" in proc.stdout
    assert "facebook/dino-vitb16" in proc.stdout


def test_paper_fig12_dry_run(tmp_path):
    proc = snakemake("results/fig12.png", "--configfile", str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    runs = set(re.findall(r"-- pretrain .*?--run-name lumos_i2i (--cond-dropout [0-9.]+)?", proc.stdout))
    assert runs == {"", "--cond-dropout 0.0", "--cond-dropout 0.3", "--cond-dropout 0.5"}, runs
    assert "--guidance 4.5" in proc.stdout and "--guidance 1.5" in proc.stdout


def test_paper_fig8_priors_pretrain_on_imagenet(tmp_path):
    """Figure 8 at paper scale: every prior is pretrained on ImageNet-1K train (section 4.3),
    curated from synset folders (class labels) without the pool's filters."""
    proc = snakemake("results/fig8.csv", "--configfile", str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    runs = re.findall(r"-- pretrain .*?--run-name (\w+) --features (\S+)", proc.stdout)
    assert sorted(runs) == sorted((r, "results/features/imagenet1k") for r in
                                  ("lumos_i2i_in1k", "rcg_in1k", "class_i2i", "uncond")), runs
    line = next(x for x in proc.stdout.splitlines() if "lumos data --split imagenet1k " in x)
    (source,) = json.loads(re.search(r"--cfg '(.*?)' ", line).group(1))["data.sources.imagenet1k"]
    assert source["labels"] == "folder" and not source["min_side"] and not source["aesthetic"]


def test_paper_progressive_stages_dry_run(tmp_path):
    """Table S1 stages 2 (512 px) and 3 (1024 px) chain after stage 1, on re-curated pairs."""
    proc = snakemake("results/t2i/lumos_i2i-t5-mixed-n0/stage3/model", "--configfile",
                     str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert "--init results/t2i/lumos_i2i-t5-mixed-n0/model" in out
    assert "--init results/t2i/lumos_i2i-t5-mixed-n0/stage2/model" in out
    assert "--features results/features/pairs_1024px --text results/features/pairs_text" in out
    assert "--split pairs --image-size 512" in out
    assert out.count("rule finetune_stage:") == 2 and "rule finetune:" in out


def test_paper_multi_scale_stage_dry_run(tmp_path):
    """Table S1 stage 4: multi-scale 1024 continues stage 3 on the pairs curated into aspect-ratio
    buckets (sides multiples of 16); its caption tokens are copied from the stage-1 pair set's in
    one job (the same curated images), not encoded again by Flan-T5-XXL."""
    proc = snakemake("results/t2i/lumos_i2i-t5-mixed-n0/stage4/model", "--configfile",
                     str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert "--init results/t2i/lumos_i2i-t5-mixed-n0/stage3/model" in out
    assert "--features results/features/pairs_1024px_ar4 --text results/features/pairs_1024px_ar4_text" in out
    assert " 720x1456 " in out and " 1024x1024 " in out  # the 1:2 and 1:1 buckets reach `lumos data`
    assert out.count("rule finetune_stage:") == 3
    assert ("--data results/data/pairs_1024px_ar4 --encoders clip t5 --part 0 --parts 1"
            " --reuse-text results/features/pairs_text"
            " --reuse-data results/data/pairs --out results/features/pairs_1024px_ar4_text.part0") in out
    assert "pairs_1024px_ar4_text.part1" not in out


def test_paper_nvs_dry_run(tmp_path):
    """Table 4 and Figures 5 and 7 at paper scale: Objaverse / GSO renders imported from folders,
    three NVS fine-tunes on 64 GPUs, one evaluation job per prior and snapshot."""
    proc = snakemake("results/table4.csv", "results/fig5.png", "results/fig7.png", "--configfile",
                     str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert "lumos views --split nvs_train" in out and "/path/to/objaverse_renders" in out
    assert re.search(r"nvs-train .*--prior results/pretrain/lumos_i2i/model --prior-kind i2i", out)
    assert re.search(r"nvs-train .*--prior results/t2i/none-t5-mixed-n0/model --prior-kind t2i", out)
    assert re.search(r"nvs-train .*--prior none --prior-kind none", out)
    assert '"nvs.train": {"attention": "flash", "batch_size": 16384' in out
    assert '"nvs.prediction_type": "epsilon"' in out  # eq. S1 at paper scale (the tiny preset predicts x0)
    assert out.count("rule nvs_eval:") == 2 + 3 * (1 + 10)  # baseline, VAE ceiling, 3 priors x (final + 10 snapshots)
    assert "nvs-decoder" not in out and "--decoder" not in out  # SD's VAE decodes as it is (nvs.decoder null)
    assert "rule table4:" in out or "localrule table4:" in out


def test_paper_i2v_dry_run(tmp_path):
    """Table 5 at paper scale: WebVid ingested by 400 jobs, UCF-101 / MSR-VTT by a few, video
    features on GPUs, three I2V fine-tunes on 64 GPUs (H.4), I3D and DreamSim for the metrics."""
    proc = snakemake("results/table5.csv", "--configfile", str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert len(re.findall(r"lumos clips --split video_train .*--parts 400 ", out)) == 400
    assert len(re.findall(r"lumos clips --split ucf ", out)) == 3  # 2,048 clips, 1,000 videos a unit
    assert re.search(r"i2v-train .*--prior results/pretrain/lumos_i2i/model --prior-kind i2i", out)
    assert '"batch_size": 4096' in out and '"lr": 2e-05' in out
    assert "/path/to/i3d_torchscript.pt" in out and '"kind": "dreamsim"' in out
    assert "train_component" not in out


def test_table1_does_not_wait_for_the_ablation_encoders(tmp_path):
    """Table 1's DAG trains and encodes with DINO and MoCo only; the ablation priors' CLIP image
    tower and DINO sizes live in `<split>+<encoder>` folders that only their figures build."""
    out = snakemake("results/table1.csv", "--configfile", str(ROOT / "config" / "smoke.yaml"), "-n", "-p",
                    cwd=tmp_path).stdout
    components = set(re.findall(r"train-component --component (\w+)", out))
    assert components == {"vae", "dino", "moco", "fid_net"}, components
    assert "results/features/pool+" not in out and "results/features/coco+" not in out


ABLATION_FIGURES = ["fig10", "fig2c", "fig9", "figS2", "figS3", "fig11b", "figG1"]


def test_paper_ablation_figures_dry_run(tmp_path):
    """The ablation priors at paper scale train on ImageNet-1K; a prior conditioned on an encoder
    outside features.main_encoders reads `<split>+<encoder>` features, carrying the patch tokens
    its token set needs; Figure S3's sizes load DINO ViT-S/16 and DINOv2 ViT-L/14 by hub id."""
    proc = snakemake(*(f"results/{f}.png" for f in ABLATION_FIGURES), "--configfile",
                     str(ROOT / "config" / "paper.yaml"), "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    runs = dict(re.findall(r"-- pretrain .*?--run-name (\w+) --features (\S+)", out))
    folder = "results/features/imagenet1k"
    assert runs == {"i2i_clip": f"{folder}+clip", "i2i_clip_patch": f"{folder}+clip", "i2i_clip_all": f"{folder}+clip",
                    "i2i_moco": folder, "i2i_top": folder, "i2i_random": folder, "lumos_i2i_in1k": folder,
                    "i2i_dino_small": f"{folder}+dino_small", "i2i_dino_large": f"{folder}+dino_large",
                    # Figure G1 (beyond the paper): REPA / REG align with DINOv2-B on ImageNet-1K
                    "rcg_in1k": folder, "repa": f"{folder}+dinov2_base", "reg": f"{folder}+dinov2_base"}, runs
    pattern = r"lumos features .*?--encoders ([\w ]*?) --patch-tokens ([\w ]*?) --part 0 .*?--out results/features/(\S+)\.part0"
    features = {m.group(3): (m.group(1), m.group(2)) for m in re.finditer(pattern, out)}
    assert features["imagenet1k"] == ("dino moco", "dino") and features["imagenet1k+clip"] == ("clip", "clip")
    assert features["coco+dino_large"] == ("dino_large", "")
    assert features["imagenet1k+dinov2_base"] == ("dinov2_base", "dinov2_base")  # REPA's target: patch tokens
    line = next(x for x in out.splitlines() if "--out results/features/imagenet1k+dino_large.part0" in x)
    assert json.loads(re.search(r"--cfg '(.*?)' ", line).group(1))["components.dino_large"]["pretrained"] == \
        "facebook/dinov2-large"
    assert "--data results/data/pool " not in out  # the 190M pool is not encoded for the ablations
    assert re.search(r"lumos sample .*--run-name i2i_top .*--n-samples 10000 .*--model "
                     r"results/pretrain/i2i_top/snapshots/step-400000", out)
    assert '"patch_k": 119' in out


def assert_missing_release_named(kind, target, extra, tmp_path):
    """`released.<kind>` pointing at a missing file stops the paper DAG naming the file and the key."""
    extra.write_text(f"released: {{{kind}: {tmp_path / 'missing.pth'}}}\n")
    proc = snakemake(target, "--configfile", str(ROOT / "config" / "paper.yaml"), str(extra), "-n",
                     cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "missing.pth" in proc.stdout + proc.stderr and f"released.{kind}" in proc.stdout + proc.stderr


def test_paper_released_weights_rows(tmp_path):
    """With `released.i2i` set, the paper DAG imports the authors' checkpoint and evaluates it as a
    Table 1 row; a missing file stops the workflow naming the file and the config key."""
    ckpt = tmp_path / "Lumos_I2I.pth"
    ckpt.write_bytes(b"")
    extra = tmp_path / "released.yaml"
    extra.write_text(f"released: {{i2i: {ckpt}}}\n")
    proc = snakemake("results/table1.csv", "--configfile", str(ROOT / "config" / "paper.yaml"), str(extra), "-n", "-p",
                     cwd=tmp_path)
    out = proc.stdout
    assert f"lumos import-released --checkpoint {ckpt} --kind i2i --out results/released/i2i/model" in out
    assert re.search(r"lumos sample .*--run-name lumos_i2i .*--model results/released/i2i/model", out)
    assert "results/eval/fid/released_i2i_coco.json" in out
    assert_missing_release_named("i2i", "results/table1.csv", extra, tmp_path)


def test_paper_lgm_reconstruction_dry_run(tmp_path):
    """With `nvs.lgm` set, the paper DAG keeps the generated views of LGM's objects, prepares LGM's
    input from them and runs LGM in its own env; a missing repo or weights file stops the workflow
    naming its key; the other presets refuse the key."""
    repo, weights = tmp_path / "LGM", tmp_path / "model_fp16_fixrot.safetensors"
    (repo / "core").mkdir(parents=True)
    (repo / "core" / "models.py").write_text("")
    weights.write_bytes(b"")
    extra = tmp_path / "lgm.yaml"
    extra.write_text(f"nvs: {{lgm: {{repo: {repo}, weights: {weights}, objects: 6}}}}\n")
    paper = str(ROOT / "config" / "paper.yaml")
    out = snakemake("results/nvs/i2i/lgm", "--configfile", paper, str(extra), "-n", "-p", cwd=tmp_path).stdout
    assert re.search(r"nvs-eval .*--model results/nvs/i2i/model .*--save-views 6 ", out)  # 6 > Figure 7's 4
    assert ("lumos lgm-inputs --views results/nvs/i2i/eval/final/views --data results/data/nvs_test --objects 6"
            " --out results/nvs/i2i/lgm_inputs") in out
    assert (f"lumos/tasks/lgm_run.py --repo {repo} --weights {weights} --variant big --inputs results/nvs/i2i/lgm_inputs"
            " --out results/nvs/i2i/lgm") in out
    for where, key in (((repo, tmp_path / "missing.safetensors"), "nvs.lgm.weights"),
                       ((tmp_path / "no-repo", weights), "nvs.lgm.repo")):
        extra.write_text(f"nvs: {{lgm: {{repo: {where[0]}, weights: {where[1]}}}}}\n")
        proc = snakemake("results/nvs/i2i/lgm", "--configfile", paper, str(extra), "-n", cwd=tmp_path, check=False)
        assert proc.returncode != 0 and key in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    extra.write_text(f"nvs: {{lgm: {{repo: {repo}, weights: {weights}}}}}\n")
    proc = snakemake("results/table4.csv", "--configfile", str(extra), "-n", cwd=tmp_path, check=False)  # tiny
    assert proc.returncode != 0 and "'nvs.lgm' is for the paper preset only" in proc.stdout + proc.stderr


def _shell_line(out, start):
    """The one dry-run shell command starting with `start` (several: the first)."""
    return next(line for line in out.splitlines() if line.startswith(f"Shell command: {start}"))


def _cfg_of(line):
    return json.loads(re.search(r"--cfg '(.*?)' ", line).group(1))


def test_paper_released_t2i_rows(tmp_path):
    """With `released.t2i` set, the paper DAG imports the authors' T2I checkpoint, encodes the COCO
    captions with T5 v1.1 XXL, samples the release at 1024 px with DPM-Solver++ 20 steps at guidance
    4.5, scores it against COCO curated at 299 px, runs the official evaluators on it, and adds its
    rows to Tables 2 and 3 and the paper-prompt figure; a missing file names the file and the key;
    outside the paper preset the key stops the workflow."""
    ckpt = tmp_path / "Lumos_T2I.pth"
    ckpt.write_bytes(b"")
    extra = tmp_path / "released.yaml"
    extra.write_text(f"released: {{t2i: {ckpt}}}\n")
    proc = snakemake("results/table2.csv", "results/table3.csv", "--configfile", str(ROOT / "config" / "paper.yaml"),
                     str(extra), "-n", "-p", cwd=tmp_path)
    out = proc.stdout
    assert f"lumos import-released --checkpoint {ckpt} --kind t2i --out results/released/t2i/model" in out
    text = _shell_line(out, "lumos text-features --threads 1 --cfg '{\"components.t5_released\"")
    assert _cfg_of(text)["components.t5_released"]["pretrained"] == "DeepFloyd/t5-v1_1-xxl"
    assert "--data results/data/coco --encoders t5_released" in text and "flan" not in text
    sample = _shell_line(out, "lumos released-t2i-sample")
    assert _cfg_of(sample)["released.t2i_sample"] == {"sampler": "dpm++", "steps": 20, "guidance_scale": 4.5,
                                                      "image_size": 1024, "batch_size": 8}
    assert "--model results/released/t2i/model --text results/released/t2i/text/coco --encoder t5_released" in sample
    assert "--n-samples 30000" in sample and out.count("Shell command: lumos released-t2i-sample") == 8
    assert "lumos data --split coco --image-size 299 " in out
    assert ("--run released_t2i --split coco --samples results/released/t2i/samples/coco"
            " --reference results/eval/fid/reference_coco_299px.npz") in out
    table2 = _shell_line(out, "lumos table2")
    assert "--released results/eval/t2i/released_t2i/fid_coco_short.json" in table2
    assert _cfg_of(table2)["released.t2i_sample"]["guidance_scale"] == 4.5
    for bench in ("geneval", "dpg"):
        assert (f"--bench {bench} --sample-key released.t2i_sample --pipeline results/released/t2i/pipeline"
                f" --out results/eval/t2i/released_t2i/{bench}_official/images") in out
    assert "evaluate_images.py results/eval/t2i/released_t2i/geneval_official/images" in out
    assert "--image-root-path results/eval/t2i/released_t2i/dpg_official/images" in out
    assert ("'Lumos-T2I (released weights, evaluated here)=results/eval/t2i/released_t2i/geneval_official/scores.json,"
            "results/eval/t2i/released_t2i/dpg_official/scores.json,results/released/t2i/model'") in _shell_line(out, "lumos table3")
    assert "--encoder t5_released --sample-key released.t2i_sample --model results/released/t2i/model" in out
    assert "--prompts paper --images-per-prompt 1 --columns 6 --tile-size 512 --out results/released_t2i_samples.png" in out

    assert_missing_release_named("t2i", "results/table2.csv", extra, tmp_path)
    extra.write_text(f"released: {{t2i: {ckpt}}}\n")
    proc = snakemake("results/table2.csv", "--configfile", str(extra), "-n", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "paper preset only" in proc.stdout + proc.stderr
    assert "components.t5_released" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "bogus=1"], "unknown config key 'bogus'"),
        (["--config", "preset=huge"], "unknown preset 'huge'"),
        (["--config", "seed=abc"], "config key 'seed'"),
    ],
)
def test_bad_config_stops_the_workflow_naming_the_key(tmp_path, args, message):
    proc = snakemake("results/table1.csv", "-n", *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_lint_is_clean(tmp_path):
    proc = snakemake("--lint", cwd=ROOT)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_smoke_pipelines_and_model_cards(smoke_run):
    """The four main models as diffusers pipelines (rule all's targets): each folder loads with
    `DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`, its model card lists the
    run's measured numbers, and the card's usage snippet runs as written from the work folder."""
    targets = ["results/t2i/lumos_i2i-t5-mixed-n0/pipeline", "results/pretrain/lumos_i2i/pipeline",
               "results/nvs/i2i/pipeline", "results/i2v/i2i/pipeline"]
    proc = snakemake(*targets, "--configfile", str(ROOT / "config" / "smoke.yaml"), "--cores", "2", cwd=smoke_run)
    assert "rule pretrain:" not in proc.stdout + proc.stderr  # the exports reuse the trained models
    numbers = {"t2i": "fid_coco_short.json", "pretrain": "lumos_i2i_coco.json", "nvs": "eval/final/summary.json",
               "i2v": "eval/ucf.json"}
    probe = ["import sys"]
    for target in targets:
        card = (smoke_run / target / "README.md").read_text()
        assert card.startswith("---\nlibrary_name: diffusers\n") and "`smoke`" in card and "| steps |" in card
        assert numbers[target.split("/")[1]] in card and "Shapes world" in card
        snippet = card.split("```python\n")[1].split("```")[0]
        probe.append(f"exec({snippet!r}, ns := {{}})\nsys.stdout.write(str(sorted(k for k in ns if k in "
                     f"('image', 'view', 'frames'))) + ';')")
    run = subprocess.run([sys.executable, "-c", "\n".join(probe)], cwd=smoke_run, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == "['image'];['image'];['view'];['frames'];"
