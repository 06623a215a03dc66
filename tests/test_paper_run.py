"""The paper preset run for real, not dry: `snakemake results/table1.csv results/table2.csv
--configfile config/paper.yaml <override>` on stand-ins of the paper's components (the hub models'
classes and configs, random weights) and real JPEGs in the layouts the paper's sources have
(tests/paper_world.py). The override is what a user on a small machine writes: device, sizes, steps,
counts and paths; `paper_world.WORKAROUNDS` (a second config file) holds what else lumos needs today.

What is cut and why (paper_world's docstrings): DiT-XL/2 keeps its width, heads and patch but 2 of
its 28 blocks (`pretrain.model.depth`); Flan-T5-XXL keeps its widths but 2 of its 24 encoder and
decoder layers; 64 px images (8x8 SD-VAE latents), 8 images per split, 2 training steps, 2 DDPM steps.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import paper_world

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["results/table1.csv", "results/table2.csv"]
MEASURED_T1 = ["Lumos-I2I", "RCG", "untrained DiT (ceiling)", "real images, independent sample (floor)"]
MEASURED_T2 = ["Lumos-T2I", "Lumos-T2I†", "untrained DiT (ceiling)", "real images, independent sample (floor)"]
N_EVAL = paper_world.SPLITS["coco"]


def job_times(log: str) -> list[dict]:
    """Per job of a Snakemake log: rule, wildcards, start and wall seconds (from the log's
    timestamps: a job's start is the stamp before its `rule` block, its end the stamp before
    `Finished jobid`; second resolution)."""
    stamp, jobs, current = None, {}, None
    for line in log.splitlines():
        m = re.match(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line)
        if m:
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"(?:local)?rule (\w+):", line):
            current = {"rule": m.group(1), "start": stamp, "wildcards": ""}
        elif current and (m := re.match(r"\s+jobid: (\d+)", line)):
            jobs[m.group(1)] = current
        elif current and (m := re.match(r"\s+wildcards: (.*)", line)):
            current["wildcards"] = m.group(1)
        elif m := re.match(r"Finished jobid: (\d+)", line):
            if m.group(1) in jobs:
                jobs[m.group(1)]["seconds"] = (stamp - jobs[m.group(1)]["start"]).total_seconds()
    return [{**j, "start": j["start"].isoformat()} for j in sorted(jobs.values(), key=lambda j: j["start"])]


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """Build the world (components, data, override) and run Tables 1 and 2 once; the timings are
    written to <work>/timings.json. Afterwards the weights (~12 GB: the stand-ins, the priors, the
    fine-tune and its pipeline) are deleted, the data, tables, logs and timings kept (a failed run
    keeps everything)."""
    t0 = time.time()
    world = paper_world.build_world(tmp_path_factory.mktemp("paper_world"))
    built = time.time() - t0
    work = tmp_path_factory.mktemp("paper_run")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LUMOS_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), *TARGETS,
         "--configfile", str(ROOT / "config" / "paper.yaml"), str(world["override"]), str(world["workarounds"]),
         "--cores", "2"], capture_output=True, text=True, cwd=work, env=env)
    ran = time.time() - t0 - built
    log = proc.stdout + proc.stderr
    (work / "snakemake.log").write_text(log)
    timings = {"world_s": round(built, 1), "snakemake_s": round(ran, 1), "jobs": job_times(log)}
    (work / "timings.json").write_text(json.dumps(timings, indent=1))
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{log[-6000:]}")
    yield {"work": work, "results": work / "results", "world": world, "timings": timings}
    for folder in (world["override"].parent / "components", work / "results" / "pretrain", work / "results" / "t2i",
                   work / "results" / "state"):
        shutil.rmtree(folder, ignore_errors=True)


def _finite(col) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in col)


@pytest.mark.slow
def test_paper_table1_measured(paper_run):
    df = pd.read_csv(paper_run["results"] / "table1.csv")
    measured = df[df["source"] == "measured"].set_index("method")
    assert list(measured.index) == MEASURED_T1
    for split in ("coco", "imagenet"):
        assert _finite(measured[f"{split}_fid"]), measured
        assert (measured[f"{split}_samples"] == N_EVAL).all()
        assert measured.loc[MEASURED_T1[3], f"{split}_fid"] < measured.loc[MEASURED_T1[2], f"{split}_fid"]
    assert (measured["preset"] == "paper").all()
    assert measured["feature_extractor"].str.startswith("inception-v3 (clean-fid").all()
    reported = df[df["source"] == "reported (paper)"].set_index("method")
    assert reported.loc["Lumos-I2I", ["coco_fid", "imagenet_fid"]].tolist() == [4.82, 2.60]
    assert reported.loc["RCG", ["coco_fid", "imagenet_fid"]].tolist() == [12.70, 4.89]
    assert "reported (paper)" in (paper_run["results"] / "table1.md").read_text()


@pytest.mark.slow
def test_paper_table2_measured(paper_run):
    df = pd.read_csv(paper_run["results"] / "table2.csv")
    measured = df[df["source"] == "measured"].set_index("method")
    assert list(measured.index) == MEASURED_T2
    assert _finite(measured["fid"]) and (measured["samples"] == N_EVAL).all()
    assert measured.loc["Lumos-T2I", "pairs"] == str(paper_world.SPLITS["pairs"])
    assert measured.loc["Lumos-T2I", "steps"] == "2"
    assert measured.loc["Lumos-T2I†", "captions"] == "long"
    assert measured["feature_extractor"].str.startswith("inception-v3 (clean-fid").all()
    reported = df[df["source"] == "reported (paper)"].set_index("method")
    assert len(reported) == 16
    assert reported.loc["Lumos-T2I", "fid"] == 12.20 and reported.loc["Lumos-T2I†", "fid"] == 6.44


@pytest.mark.slow
def test_paper_run_read_every_source_and_component(paper_run):
    """Every source format was read and filtered as the paper filters; the models are the
    stand-ins' shapes (DiT-XL/2 width, DINO/MoCo ViT-B 768-d, Flan-T5-XXL 4096-d tokens)."""
    from lumos.data.shards import read_records

    res = paper_run["results"]
    for split, quotas in (("pool", paper_world.POOL_QUOTAS), ("pairs", paper_world.PAIRS_QUOTAS)):
        report = json.loads((res / "data" / split / "curation.json").read_text())
        assert {s: c["kept"] for s, c in report["by_source"].items()} == quotas
        assert report["totals"].get("low_aesthetic", 0) > 0  # LAION / COYO aesthetic filters acted
    assert json.loads((res / "data" / "pool" / "curation.json").read_text())["totals"]["too_small"] > 0  # min_side
    coco = read_records(res / "data" / "coco")
    assert len(coco) == N_EVAL and all(r["long_caption"] and not r.get("long_from_raw") for r in coco)
    assert {r["label_name"] for r in read_records(res / "data" / "imagenet")} <= set(paper_world.SYNSETS.values())
    prior = json.loads((res / "pretrain" / "lumos_i2i" / "model" / "config.json").read_text())
    assert (prior["hidden_size"], prior["depth"], prior["cond_dim"]) == (1152, paper_world.DIT_DEPTH, 768)
    rcg = json.loads((res / "pretrain" / "rcg" / "model" / "config.json").read_text())
    assert (rcg["injection"], rcg["cond_dim"]) == ("adaln", 768)
    t2i = json.loads((res / "t2i" / "lumos_i2i-t5-mixed-n0" / "model" / "config.json").read_text())
    assert t2i["cond_dim"] == 4096
    summary = json.loads((res / "t2i" / "lumos_i2i-t5-mixed-n0" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["text_encoder"] == "t5"
    timings = paper_run["timings"]
    slowest = sorted(timings["jobs"], key=lambda j: -j.get("seconds", 0))[:8]
    print(f"\nworld {timings['world_s']} s, snakemake {timings['snakemake_s']} s; slowest jobs:",
          *(f"{j['rule']}[{j['wildcards']}] {j.get('seconds')} s" for j in slowest), sep="\n  ")
