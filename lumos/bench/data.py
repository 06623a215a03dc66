"""Data-path benchmarks (print numbers; nothing here is a test).

    lumos bench --data [--n 20000] [--scale 10] [--image-size 32] [--work results/bench/data]
    lumos bench --data --jpeg 240 [--work results/bench/data]
    lumos bench --data --quick

For N and scale x N Shapes images, through the paper's path (export as img2dataset webdataset
shards, one curation job, one feature job, a training run of fixed length), each stage runs as its
own `lumos` process and its peak resident memory (RSS, from `wait4`) and wall time are printed:
memory must be flat in N (the acceptance is <= 1.25x at 10N). Then curation images/s per core
(decode, filter, crop, resize) and the streaming loader's samples/s per worker count.
Components are tiny and randomly initialised (speed and memory do not depend on the weights).

`--jpeg N`: curation of N realistic web JPEGs (`realistic_jpegs`: photos at 640x480 to 1500x1000,
quality 90, some with an EXIF orientation) to the paper's 256 px, in images per CPU-second (CPU
time, not wall time: the number does not depend on what else the machine runs), beside a plain
Pillow loop that decodes every image at full size and curation's previous full-decode path; then
how far the output is from that previous path (the tolerance, docs/curation-decode.md).
`--quick`: the same on 8 JPEGs, the curation job run in this process (a smoke check the tests run).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAIN_STEPS = 40


def _run(args: list[str], log: Path, cpu: bool = False) -> tuple[float, ...]:
    """Run `lumos <args>`; (peak RSS in MB, seconds), and with `cpu` its CPU-seconds (user + system,
    from `wait4`). A failure prints the log's tail."""
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "lumos", *args], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "LUMOS_NO_PROGRESS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"lumos {args[0]} failed:\n{log.read_text()[-3000:]}")
    out = (usage.ru_maxrss / 1024, time.time() - t0)
    return (*out, usage.ru_utime + usage.ru_stime) if cpu else out


def _curation_keys() -> dict:
    """The `data.curation` keys a curation job's --cfg carries, as the workflow passes them
    (rules/common.smk): dotted, with the schema's defaults."""
    from lumos.config import schema_defaults

    defaults = schema_defaults("data.curation")
    return {f"data.curation.{k}": defaults[k] for k in ("files_per_unit", "max_pixels")}


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
    data = {**split, "data.source": "shapes", "data.sources.pool": source, **_curation_keys()}
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
    from lumos.training.loader import loader_throughput

    if args.quick or args.jpeg:
        return run_jpeg_benchmark(Path(args.work), args.jpeg or QUICK_JPEGS, quick=args.quick)
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


# --- curation of realistic web JPEGs (--jpeg) -----------------------------------------------------

JPEG_SIZE = 256  # the paper's training size
QUICK_JPEGS = 8
PAPER_MIN_SIDE = 512  # config/paper.yaml: LAION / COYO keep a shorter side > 512
JOB_IMAGES = 475_000  # config/paper.yaml data_part: one curation job sees ~475K pool images
JPEG_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 960), (1200, 800), (1500, 1000),
              (1000, 1000), (768, 1024), (1000, 1500))  # common web sizes, 640x480 to 1500x1000
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "stereo_motorcycle")  # scikit-image's bundled colour photographs
ORIENTATIONS = (1, 1, 1, 6, 1, 1, 8, 3)  # EXIF orientation of image i: i % 8 (6, 8: stored landscape, shown portrait)
# Tolerance of the reduced decode against the full-size decode (docs/curation-decode.md), in 8-bit levels:
TOLERANCE = {"mean": 1.0, "image_mean": 2.0, "max": 64}


def realistic_jpegs(folder, n: int, seed: int = 0, grain: float = 3.0) -> list[Path]:
    """`n` web-like JPEG files in `folder` (written once, then reused): scikit-image's photographs,
    a random crop of each scaled (Lanczos) to one of `JPEG_SIZES` with a little sensor-like grain
    (Gaussian, sd `grain` levels: ~1.8 bits/pixel at quality 90, as camera photos, where a smooth
    upscale alone would compress and decode unrealistically fast), quality 90 with 4:2:0 chroma
    (Pillow's default, as most web JPEGs); image i carries EXIF orientation ORIENTATIONS[i % 8]."""
    import skimage.data
    from PIL import Image

    folder = Path(folder)
    files = [folder / f"{i:05d}.jpg" for i in range(n)]
    stamp = folder / f"made-{n}-{seed}-{grain}"
    if stamp.exists():
        return files
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    photos = [p[0] if isinstance(p, tuple) else p for p in photos]  # stereo_motorcycle: (left, right, disparity)
    rng = np.random.default_rng(seed)
    for i, path in enumerate(files):
        photo = photos[i % len(photos)]
        w, h = JPEG_SIZES[rng.integers(len(JPEG_SIZES))]
        orientation = ORIENTATIONS[i % len(ORIENTATIONS)]
        if orientation in (6, 8):
            w, h = max(w, h), min(w, h)
        ph, pw = photo.shape[:2]
        scale = min(pw / w, ph / h) * rng.uniform(0.6, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x0, y0 = rng.integers(0, pw - cw + 1), rng.integers(0, ph - ch + 1)
        img = Image.fromarray(photo[y0:y0 + ch, x0:x0 + cw]).resize((w, h), Image.LANCZOS)
        pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, grain, (h, w, 1)).astype(np.float32)
        exif = Image.Exif()
        if orientation != 1:
            exif[0x0112] = orientation
        Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).save(path, quality=90, exif=exif)
    stamp.touch()
    return files


def plain_pillow(data: bytes, size: int = JPEG_SIZE) -> np.ndarray:
    """The plain loop: open, convert to RGB (a full-size decode), center crop, bicubic resize."""
    from PIL import Image

    from lumos.data.decode import center_box

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        return np.asarray(img.crop(center_box(*img.size, size)).resize((size, size), Image.BICUBIC))


def full_decode_curation(data: bytes, height: int = JPEG_SIZE, width: int | None = None) -> np.ndarray:
    """Curation's previous path, the reference of the tolerance: a full-size decode,
    `ImageOps.exif_transpose` (a full-size copy even without an orientation tag), RGB, center crop,
    bicubic resize."""
    from PIL import Image, ImageOps

    from lumos.data.curate import center_crop_resize
    from lumos.data.decode import to_rgb

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return center_crop_resize(to_rgb(ImageOps.exif_transpose(img)), height, width)


def reduced_decode_curation(data: bytes, height: int = JPEG_SIZE, width: int | None = None) -> np.ndarray:
    """Curation's path (`lumos.data.decode.LazyImage.crop_resize`): header, reduced decode, resize
    from the crop box, the small result turned upright."""
    from lumos.data.decode import open_lazy

    with open_lazy(data) as img:
        return img.crop_resize(height, width)


def output_difference(got: list[np.ndarray], reference: list[np.ndarray]) -> dict:
    """Absolute differences per pixel and channel, in 8-bit levels: `mean` over all images,
    `image_mean` the worst image's mean, `max` the largest; `ok` when all are within TOLERANCE."""
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(got, reference, strict=True)]
    out = {"mean": float(np.mean([d.mean() for d in diffs])), "image_mean": max(float(d.mean()) for d in diffs),
           "max": max(int(d.max()) for d in diffs)}
    return {**out, "ok": all(out[k] <= TOLERANCE[k] for k in TOLERANCE)}


def _cpu_rates(fns: dict, datas: list[bytes], rounds: int) -> tuple[dict, dict]:
    """Images per CPU-second of each of `fns` over `datas` (this process's CPU time), the best of
    `rounds` rounds that take the functions in turn (what else runs on the machine then weighs on
    all of them alike); and each one's outputs."""
    rates, outputs = dict.fromkeys(fns, 0.0), {}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            outputs[name] = [fn(d) for d in datas]
            rates[name] = max(rates[name], len(datas) / max(time.process_time() - t0, 1e-9))
    return rates, outputs


def _job_cfg(folder: Path, n: int, min_side: int) -> dict:
    source = [{"name": "web", "path": str(folder), "min_side": min_side}]
    return {"data.splits.pool": {"n": n, "image_format": "jpg"}, "data.image_size": JPEG_SIZE,
            "data.shard_size": 1000, "data.sources.pool": source, **_curation_keys()}


def run_jpeg_benchmark(work: Path, n: int, quick: bool = False) -> None:
    """Curation of `n` realistic JPEGs to 256 px in images per CPU-second: a plain Pillow loop,
    curation's previous full-decode path, its reduced-decode path, `curate_part` (files read,
    shards written) with and without the paper's min_side, and one `lumos data` job (its own
    process, its start-up measured apart; in this process with `quick`). Then the output tolerance."""
    from PIL import Image

    from lumos.data.curate import curate_part
    from lumos.data.shards import decode_image, encode_image
    from lumos.data.sources import Source

    work = Path(work)
    files = realistic_jpegs(work / "jpegs", n)
    datas = [f.read_bytes() for f in files]
    sizes = []
    for data in datas:
        with Image.open(io.BytesIO(data)) as img:
            sizes.append(img.size)
    pixels = np.mean([w * h for w, h in sizes])
    small = sum(min(s) <= PAPER_MIN_SIDE for s in sizes)
    rounds = 1 if quick else 3
    print(f"# lumos bench --data --jpeg: {n} realistic JPEGs ({len(PHOTOS)} photos, "
          f"{min(w * h for w, h in sizes) / 1e6:.2f} to {max(w * h for w, h in sizes) / 1e6:.2f} MP, mean "
          f"{pixels / 1e6:.2f} MP, {np.mean([len(d) for d in datas]) / 1e3:.0f} KB, quality 90, "
          f"{sum(ORIENTATIONS[i % 8] != 1 for i in range(n))} with an EXIF orientation) -> {JPEG_SIZE} px; "
          f"images per CPU-second, best of {rounds}")
    rates, outputs = _cpu_rates({"plain": plain_pillow, "old": full_decode_curation, "new": reduced_decode_curation},
                                datas, rounds)
    plain = rates["plain"]

    def line(label: str, rate: float, note: str = "") -> None:
        print(f"{label:58s} {rate:8.1f} images/CPU-s  {rate / plain:5.2f}x plain{note}")

    line("plain Pillow loop (full decode, RGB, crop, bicubic)", plain)
    line("old curation path (full decode, exif_transpose, crop)", rates["old"])
    line("new curation path (header, reduced decode, box resize)", rates["new"])
    import webdataset  # noqa: F401  (the shard writer's library imports torch: start-up, measured by the job below)

    for min_side in (0, PAPER_MIN_SIDE):  # the job's loop in this process: files read, jpg shards written
        out, best = work / f"curate_min{min_side}", 0.0
        for _ in range(rounds):
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.process_time()
            totals = curate_part("pool", [Source("web", str(work / "jpegs"), min_side=min_side)], n, JPEG_SIZE,
                                 1000, str(out), image_format="jpg")["totals"]
            best = max(best, totals["seen"] / (time.process_time() - t0))
        line(f"curate_part, min_side {min_side} (files, jpg shards)", best,
             f"  (kept {totals.get('kept', 0)}, too_small {totals.get('too_small', 0)} undecoded)")
    job = work / "job"
    shutil.rmtree(job, ignore_errors=True)
    cfg = json.dumps(_job_cfg(work / "jpegs", n, 0))
    args = ["data", "--split", "pool", "--cfg", cfg, "--out", str(job)]
    if quick:
        from lumos.cli import main

        t0 = time.process_time()
        main(args)
        line("one curation job (lumos data, in this process)", n / (time.process_time() - t0))
    else:  # its own process: CPU time from wait4; the start-up (imports: torch via webdataset) from a 1-image job
        cpu = _run(args, work / "job.log", cpu=True)[2]
        one = work / "job1"
        shutil.rmtree(one, ignore_errors=True)
        start = _run(["data", "--split", "pool", "--cfg", json.dumps(_job_cfg(work / "jpegs", 1, 0)), "--out",
                      str(one)], work / "job1.log", cpu=True)[2]
        line("one curation job (lumos data), start-up taken out", (n - 1) / max(cpu - start, 1e-9),
             f"  ({n} images in {cpu:.1f} CPU-s, {n / cpu:.1f}/CPU-s with it; start-up = a 1-image job: "
             f"{start:.2f} CPU-s, {100 * start / (start + JOB_IMAGES / rates['new']):.2f}% of a job of "
             f"{JOB_IMAGES:,} images)")
    reference = outputs["old"]
    diff = output_difference(outputs["new"], reference)
    stored = output_difference([decode_image(encode_image(r, "jpg")) for r in reference], reference)
    print(f"output vs old path: mean abs diff {diff['mean']:.3f} (worst image {diff['image_mean']:.3f}, max "
          f"{diff['max']}) of 255; tolerance mean <= {TOLERANCE['mean']}, image <= {TOLERANCE['image_mean']}, max <= "
          f"{TOLERANCE['max']}: {'met' if diff['ok'] else 'NOT MET'} (storing the old output as the shards' "
          f"jpg q95: mean {stored['mean']:.3f}, max {stored['max']})")
    print(f"{small} of {n} images have a shorter side <= {PAPER_MIN_SIDE} (too_small under the paper's min_side)")
