"""The workflow on SLURM: the paper DAG's resources in dry-run (no cluster needed), and, where a
SLURM is reachable (CI starts a one-node one with `.ci/slurm.sh up`), one smoke Table 1 cell
built through the SLURM executor plus a cancelled training job that resumes."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
CI_CONFIGS = [str(ROOT / "config" / "smoke.yaml"), str(ROOT / "config" / "slurm-ci.yaml")]


def slurm_available() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split())


needs_slurm = pytest.mark.skipif(not slurm_available(), reason="no SLURM reachable (start one: bash .ci/slurm.sh up)")


def run(*args, cwd, check=True, **kw):
    proc = subprocess.run([*SNAKEMAKE, *args], capture_output=True, text=True, cwd=cwd, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}")
    return proc


def test_profile_slurm_resolves_by_name_from_the_repository_root(tmp_path):
    """`--profile slurm` from the repo root: the paper DAG of every implemented target (`all`: the
    tables and figures) with each GPU rule's SLURM resources and launch line."""
    figures = [f"results/{f}.png" for f in ("fig12", "fig9", "fig10", "fig2c", "figS2", "figS3", "fig11b")]
    proc = run("all", *figures, "--profile", "slurm", "-n", "-p", "--directory", str(tmp_path), cwd=ROOT)
    out = proc.stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, re.M)
    res = {}
    for rule, line in jobs:
        res.setdefault(rule, dict(kv.split("=", 1) for kv in line.split(", ")))
    for rule in ("pretrain", "finetune"):
        pre = res[rule]
        assert (pre["nodes"], pre["gres"], pre["tasks"], pre["mpi"]) == ("8", "gpu:8", "8", "srun"), rule
        assert pre["slurm_extra"] == "--signal=USR1@600" and pre["runtime"] == "2880" and pre["cpus_per_task"] == "64"
        # the launch line starts one process per GPU: 8 nodes x 8 GPUs
        assert f"srun lumos launch --processes 64 --nodes 8 -- {rule}" in out
    for rule in ("features", "text_features", "sample", "t2i_sample", "official_images", "clip_score",
                 "fid_reference", "fid", "t2i_fid", "fid_real", "geneval_official", "dpg_official"):
        assert res[rule]["gpu"] == "1", rule
        assert int(res[rule]["cpus_per_gpu"]) >= 1, rule
    assert "gpu" not in res["data_part"] and "gres" not in res["data_part"]
    # feature extraction and sampling are split over GPU jobs (64 per pool, 8 per 30K sampling task)
    assert "rule features:" in out and "lumos features" in out and "--part 63 --parts 64" in out
    assert "--part 7 --parts 8" in out
    for rule in ("table1", "table2", "table3", "figure", "official_scores", "gather_features", "gather_samples",
                 "gather_t2i_samples", "gather_text_features"):  # local rules (submit host): no resources asked
        assert f"rule {rule}:" in out and "gpu" not in res[rule] and "gres" not in res[rule], rule
    # the prompt grid samples the T2I model: a GPU job with the paper's prompts at the model's size
    assert res["t2i_grid"]["gpu"] == "1" and res["interpolation"]["gpu"] == "1"
    grid = re.search(r"^Shell command: (lumos t2i-grid .*)$", out, re.M).group(1)
    assert "--prompts paper" in grid and "--scale 1" in grid


def test_real_run_without_account_or_data_is_a_clear_error(tmp_path):
    proc = run("results/table1.csv", "--profile", "slurm", "--directory", str(tmp_path), cwd=ROOT, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "slurm.account" in text and "slurm.partition" in text
    proc = run("results/table1.csv", "--profile", "slurm", "--directory", str(tmp_path), "--config",
               "slurm={account: a, partition: p}", cwd=ROOT, check=False)
    assert proc.returncode != 0 and "data.sources.pool.0.path = '/path/to/laion5b_img2dataset' (laion)" in proc.stdout + proc.stderr


def slurm_jobs() -> list[dict]:
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
    return [dict(re.findall(r"(\w[\w:/]*)=(\S*)", line)) for line in out.splitlines() if line.startswith("JobId=")]


ROW = "results/eval/fid/lumos_i2i_coco.json"  # one Table 1 cell: the smoke prior's FID on coco


@pytest.fixture(scope="module")
def slurm_row(tmp_path_factory):
    """One smoke Table 1 cell (the Lumos-I2I prior's coco FID) built through the SLURM executor:
    data, the FID classifier, features, pretraining, sampling and FID as SLURM jobs; shared by the
    tests below (the cancelled-job test retrains on its data and features)."""
    if not slurm_available():
        pytest.skip("no SLURM reachable (start one: bash .ci/slurm.sh up)")
    work = tmp_path_factory.mktemp("slurm")
    earlier = {j["JobId"] for j in slurm_jobs()}  # jobs SLURM still lists from before (MinJobAge, saved state)
    (work / "jobs-before.json").write_text(json.dumps(sorted(earlier)))
    start = time.time()
    run(ROW, "--profile", str(ROOT / "profiles" / "slurm-ci"), "--configfile", *CI_CONFIGS, "--directory", str(work),
        cwd=work)
    print(f"a smoke Table 1 cell through SLURM: {time.time() - start:.0f} s")
    return work


@needs_slurm
@pytest.mark.slow
def test_smoke_row_through_slurm_asks_gpus_for_gpu_rules(slurm_row):
    fid = json.loads((slurm_row / ROW).read_text())
    assert fid["fid"] > 0 and fid["n_samples"] == 64, fid
    earlier = set(json.loads((slurm_row / "jobs-before.json").read_text()))
    jobs = [j for j in slurm_jobs() if j["JobId"] not in earlier and str(slurm_row) in j.get("WorkDir", "")
            and j.get("JobState") == "COMPLETED"]
    by_rule = {}
    for j in jobs:
        rule = re.match(r"rule_(\w+?)_wildcards|rule_(\w+)", j.get("Comment", ""))
        if rule:
            by_rule.setdefault(rule.group(1) or rule.group(2), []).append(j)
    assert {"pretrain", "features", "sample", "train_component", "data_part", "fid"} <= set(by_rule), by_rule.keys()
    for rule in ("pretrain", "features", "sample"):
        for j in by_rule[rule]:
            assert "gpu" in j.get("TresPerJob", "") + j.get("TRES", ""), (rule, j)
    for j in by_rule["data_part"]:
        assert "gpu" not in j.get("TresPerJob", "") + j.get("TRES", "")
    # slurm-ci.yaml splits work over 2 jobs: the pool's 2 data shards over 2 feature jobs (coco has
    # one shard: one job), the coco sampling task over 2 jobs; the gathers run locally, not as SLURM jobs
    assert len(by_rule["features"]) == 3 and len(by_rule["sample"]) == 2, {k: len(v) for k, v in by_rule.items()}
    assert not {"gather_features", "gather_samples", "gather_data"} & set(by_rule)
    assert len(list((slurm_row / "results" / "samples" / "lumos_i2i" / "coco").glob("*.png"))) == 64


@needs_slurm
@pytest.mark.slow
def test_cancelled_training_job_resumes_from_its_checkpoint(slurm_row):
    """scancel a pretrain job after its first checkpoint; the retry resumes (log says so). The
    longer run's settings differ from the shared cell's (Snakemake reruns the prior for them), so
    it trains afresh on the data and features already there."""
    tmp_path = slurm_row
    longer = tmp_path / "longer.yaml"  # a run long enough to be cancelled after its first checkpoint
    longer.write_text("pretrain:\n  train: {steps: 300, checkpoint_every: 25, log_every: 5}\n")
    args = ["results/pretrain/lumos_i2i/model", "--profile", str(ROOT / "profiles" / "slurm-ci"),
            "--configfile", *CI_CONFIGS, str(longer), "--directory", str(tmp_path)]
    driver = subprocess.Popen([*SNAKEMAKE, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    state = tmp_path / "results" / "state" / "pretrain" / "lumos_i2i"
    earlier = set(state.glob("*/checkpoint-*/DONE"))  # the shared cell's own run
    deadline = time.time() + 600
    while not set(state.glob("*/checkpoint-*/DONE")) - earlier:
        assert driver.poll() is None, driver.stdout.read()[-4000:]
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(2)
    job = [j for j in slurm_jobs() if j.get("Comment", "").startswith("rule_pretrain") and j.get("JobState") == "RUNNING"
           and str(tmp_path) in j.get("WorkDir", "")]
    assert len(job) == 1, job
    subprocess.run(["scancel", job[0]["JobId"]], check=True)
    out, _ = driver.communicate(timeout=900)
    assert driver.returncode == 0, out[-5000:]
    log = (tmp_path / "results" / "logs" / "pretrain" / "lumos_i2i.log").read_text()
    resumed = re.search(r"resuming from \S+checkpoint-(\d+) at step (\d+)", log)
    assert resumed, log[-3000:]
    assert int(resumed.group(2)) >= 25
    curve = pd.read_csv(tmp_path / "results" / "pretrain" / "lumos_i2i" / "loss.csv")
    assert curve["step"].iloc[-1] == 300 and curve["step"].is_unique
