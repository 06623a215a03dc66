"""Data-path benchmarks (print numbers; nothing here is a test).

    lumos bench --data [--n 20000] [--scale 10] [--image-size 32] [--work results/bench/data]

For N and scale x N Shapes images, through the paper's path (export as img2dataset webdataset
shards, one curation job, one feature job, a training run of fixed length), each stage runs as its
own `lumos` process and its peak resident memory (RSS, from `wait4`) and wall time are printed:
memory must be flat in N (the acceptance is <= 1.25x at 10N). Then curation images/s per core
(decode, filter, crop, resize) and the streaming loader's samples/s per worker count.
Components are tiny and randomly initialised (speed and memory do not depend on the weights).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TRAIN_STEPS = 40


def _run(args: list[str], log: Path) -> tuple[float, float]:
    """Run `lumos <args>`; (peak RSS in MB, seconds). A failure prints the log's tail."""
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "lumos", *args], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "LUMOS_NO_PROGRESS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"lumos {args[0]} failed:\n{log.read_text()[-3000:]}")
    return usage.ru_maxrss / 1024, time.time() - t0


def _components(work: Path, size: int) -> dict:
    """A tiny VAE and DINO-style ViT with seeded random weights, saved where the commands load them."""
    import torch

    from lumos.components.encoders import build_tiny_vit
    from lumos.components.vae import build_tiny_vae

    torch.manual_seed(0)
    vae = build_tiny_vae(size, 4, [16, 32, 32])
    vae.register_to_config(scaling_factor=1.0)
    vae.save_pretrained(work / "vae")
    build_tiny_vit(size, {"patch_size": 8, "hidden_size": 64, "layers": 2, "heads": 4}).save_pretrained(work / "dino")
    return {"components.vae": {"pretrained": str(work / "vae")},
            "components.dino": {"pretrained": str(work / "dino"), "input_size": size, "mean": [0.5] * 3,
                                "std": [0.5] * 3}}


def _pipeline(n: int, size: int, work: Path, comps: dict) -> dict[str, tuple[float, float]]:
    """Export, curate, encode and train on n images; {stage: (peak RSS MB, seconds)}."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    split = {"data.splits.pool": {"n": n, "min_objects": 1, "max_objects": 3}, "data.image_size": size,
             "data.shard_size": 5000}
    source = [{"name": "shapes_web", "format": "webdataset", "path": str(work / "web"), "min_side": size,
               "aesthetic": {"key": "aesthetic", "min": 5.0}}]
    data = {**split, "data.source": "shapes", "data.sources.pool": source, "data.curation": {}}
    feats = {**comps, "features.batch_size": 256, "features.patch_tokens": False}
    train = {"pretrain.runs.lumos_i2i": {"encoder": "dino", "injection": "cross_attn", "tokens": "cls"},
             "pretrain.model": {"size": "DiT-N/2"},
             "pretrain.train": {"steps": TRAIN_STEPS, "batch_size": 64, "lr": 1e-3, "warmup_steps": 5,
                                "checkpoint_every": 1000, "log_every": 10}}
    out = {}
    out["export"] = _run(["export-shapes", "--split", "pool", "--cfg", json.dumps(split), "--out", str(work / "web")],
                         work / "export.log")
    out["curate"] = _run(["data", "--split", "pool", "--cfg", json.dumps(data), "--out", str(work / "pool")],
                         work / "curate.log")
    out["features"] = _run(["features", "--cfg", json.dumps(feats), "--data", str(work / "pool"), "--encoders", "dino",
                            "--out", str(work / "features")], work / "features.log")
    run = work / "run"
    out["train"] = _run(["pretrain", "--run-name", "lumos_i2i", "--cfg", json.dumps(train), "--features",
                         str(work / "features"), "--out-model", str(run / "model"), "--out-raw", str(run / "raw"),
                         "--out-curve", str(run / "loss.csv"), "--out-plot", str(run / "loss.png"),
                         "--out-summary", str(run / "summary.json"), "--state", str(work / "state")],
                        work / "train.log")
    out["kept"] = json.loads((work / "pool" / "curation.json").read_text())["totals"]
    return out


def run_data_benchmarks(args) -> None:
    from lumos.loader import loader_throughput

    work, size, n = Path(args.work), args.image_size, args.n
    work.mkdir(parents=True, exist_ok=True)
    comps = _components(work, size)
    print(f"# lumos bench --data: Shapes world at {size}px through export -> curation -> features -> "
          f"training ({TRAIN_STEPS} steps, batch 64); one process per stage, {os.cpu_count()} CPUs")
    results = {}
    for count in (n, n * args.scale):
        results[count] = _pipeline(count, size, work / f"n{count}", comps)
        r = results[count]
        print(f"N={count}: kept {r['kept'].get('kept')} of {r['kept'].get('seen')} exported images")
        for stage in ("export", "curate", "features", "train"):
            rss, secs = r[stage]
            rate = f"{r['kept']['seen'] / secs:8.0f} images/s" if stage == "curate" else ""
            print(f"  {stage:9s} peak RSS {rss:8.1f} MB   {secs:7.1f} s  {rate}")
    small, large = results[n], results[n * args.scale]
    print(f"peak RSS ratio {args.scale}N / N (acceptance <= 1.25): " + ", ".join(
        f"{s} {large[s][0] / small[s][0]:.2f}x" for s in ("export", "curate", "features", "train")))
    feats = work / f"n{n * args.scale}" / "features"
    for workers in (0, 1, 2, 4):
        rate = loader_throughput(str(feats), ["latents", "dino_cls"], 256, workers, steps=50)
        print(f"loader: {workers} workers  {rate:9.0f} samples/s (batch 256, latents + dino_cls, memory-mapped)")
