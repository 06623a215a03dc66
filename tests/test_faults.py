"""Fault injection on one smoke Table 1 cell (the Lumos-I2I prior's COCO FID: data, components,
features, pretraining, sampling, FID): each long rule's worker is killed with SIGKILL once,
mid-work, the workflow is rerun, and every output is byte for byte the uninterrupted run's.

The kills come from `lumos.utils.fault_point`: with $LUMOS_FAULT_POINTS set, the worker kills
itself at the named point the first time it gets there (a marker file records it), exactly as
`kill -9` would, after a sign of work and never during start-up:
  shard      data_part: after the first image of a shard is written
  component  train_component: after the first optimiser step
  features   features: after the first feature shard
  train      pretrain: after the first checkpoint (step 10 of 30)
  sample     sample: after the first sample PNG
  gather     gather_samples: after the first sample is linked
  fid        fid_reference / fid_real / fid: after the first batch of features
One workflow run after another kills the rules in turn (snakemake stops at the first failed
job; the next run reruns what is incomplete and resumes what can be resumed) until one ends
without a fault.
"""

import hashlib
import json
import os

import pytest

from conftest import ROOT, run_snakemake

CELL = "results/eval/fid/lumos_i2i_coco.json"  # every fault point's rule is in its DAG
POINTS = ["shard", "component", "features", "train", "sample", "gather", "fid"]
NOT_COMPARED = ("logs", "benchmarks")  # wall times and process ids differ from run to run


RUN_RECORD = ("images_per_s", "seconds", "resumed_from")  # train_summary.json keys that describe the run


def digests(results) -> dict[str, str]:
    """sha256 of every file under `results` (logs and benchmarks aside), by relative path; a
    training summary without its wall time, speed and resume step."""
    out = {}
    for root, _dirs, files in os.walk(results):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, results)
            if rel.startswith(NOT_COMPARED):
                continue
            with open(path, "rb") as f:
                data = f.read()
            if name == "train_summary.json":
                summary = {k: v for k, v in json.loads(data).items() if k not in RUN_RECORD}
                data = json.dumps(summary, sort_keys=True).encode()
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.slow
def test_killed_workers_rerun_to_the_uninterrupted_outputs(smoke_run, tmp_path):
    work, markers = tmp_path / "work", tmp_path / "markers"
    work.mkdir()
    markers.mkdir()
    env = {**os.environ, "LUMOS_FAULT_POINTS": ",".join(POINTS), "LUMOS_FAULT_DIR": str(markers)}
    args = (CELL, "--configfile", str(ROOT / "config" / "smoke.yaml"), "--cores", "2")
    runs = []
    for _ in range(len(POINTS) + 1):
        proc = run_snakemake(*args, cwd=work, check=False, env=env)
        runs.append(proc.returncode)
        if proc.returncode == 0:
            break
    fired = sorted(p.name for p in markers.iterdir())
    assert fired == sorted(POINTS), (fired, runs)
    assert runs[-1] == 0 and len(runs) >= 2, runs
    faulted, reference = digests(work / "results"), digests(smoke_run / "results")
    compared = {CELL.removeprefix("results/"), "eval/fid/reference_coco.npz", "pretrain/lumos_i2i/loss.csv",
                "pretrain/lumos_i2i/model/diffusion_pytorch_model.safetensors", "pretrain/lumos_i2i/train_summary.json",
                "components/vae/diffusion_pytorch_model.safetensors", "components/fid_net/diffusion_pytorch_model.safetensors",
                "samples/lumos_i2i/coco/000000.png"}
    assert compared <= set(faulted), sorted(compared - set(faulted))
    differ = sorted(rel for rel in faulted if faulted[rel] != reference.get(rel))
    assert not differ, differ
