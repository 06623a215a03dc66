"""Benchmark command: throughput numbers (CPU tiny models, or the paper-scale DiT on a GPU)."""

from __future__ import annotations


def cmd_bench(args):
    """Print throughput numbers: tiny models on CPU (cached vs online features, sampling), or with
    --gpu the paper-scale DiT (images/s, peak memory, MFU, DPM-Solver++ sampling)."""
    if args.gpu:
        from lumos.bench_gpu import run_gpu_benchmark

        return run_gpu_benchmark(args)
    if args.data:
        from lumos.bench_data import run_data_benchmarks

        return run_data_benchmarks(args)
    from lumos.bench import run_benchmarks

    run_benchmarks(args)


def register(add):
    add("bench", cmd_bench, config=False,
        quick=("fewer iterations (for a smoke check)", {"action": "store_true"}),
        gpu=("benchmark the paper-scale DiT on a GPU (lumos/bench_gpu.py)", {"action": "store_true"}),
        data=("benchmark the data path: peak RSS at N and scale x N images, curation and loader speed "
              "(lumos/bench_data.py)", {"action": "store_true"}),
        n=("--data: images of the small run", {"type": int, "default": 20000}),
        scale=("--data: the large run has scale x n images", {"type": int, "default": 10}),
        image_size=("--data: image size", {"type": int, "default": 32}),
        work=("--data: scratch folder", {"default": "results/bench/data"}),
        size=("--gpu: DiT size", {"default": "DiT-XL/2"}),
        steps=("--gpu: timed training steps", {"type": int, "default": 50}),
        batch=("--gpu: training batch (default: the largest that fits)", {"type": int, "default": None}),
        sample_batch=("--gpu: images per sampling run", {"type": int, "default": 256}),
        device=("--gpu: torch device (default cuda if present)", {"default": None}))
