"""Benchmark command: throughput numbers (CPU tiny models, or the paper-scale DiT on a GPU)."""

from __future__ import annotations


def cmd_bench(args):
    """Print throughput numbers: tiny models on CPU (cached vs online features, sampling), or with
    --gpu the paper-scale DiT (images/s, peak memory, MFU, DPM-Solver++ sampling), --data the data
    path, --plan the time Snakemake takes to plan the paper DAG."""
    if args.gpu:
        from lumos.bench.gpu import benchmark_device, run_gpu_benchmark

        try:
            benchmark_device(args.device)  # refuse before any work: no CUDA, no GPU benchmark
        except RuntimeError as err:
            raise SystemExit(f"lumos bench: error: {err}") from None
        return run_gpu_benchmark(args)
    if args.plan:
        from lumos.bench.plan import run_plan_benchmark

        return run_plan_benchmark(args)
    if args.data:
        from lumos.bench.data import run_data_benchmarks

        return run_data_benchmarks(args)
    from lumos.bench.cpu import run_benchmarks

    run_benchmarks(args)


def register(add):
    add("bench", cmd_bench, config=False,
        quick=("fewer iterations (for a smoke check)", {"action": "store_true"}),
        gpu=("benchmark the paper-scale DiT on a GPU (lumos/bench/gpu.py)", {"action": "store_true"}),
        data=("benchmark the data path: peak RSS at N and scale x N images, curation and loader speed "
              "(lumos/bench/data.py)", {"action": "store_true"}),
        plan=("benchmark planning: CPU and wall seconds of `snakemake -n all --configfile config/paper.yaml` "
              "(lumos/bench/plan.py)", {"action": "store_true"}),
        targets=("--plan: comma-separated targets (default all)", {"default": None}),
        configfile=("--plan: the preset's config file (default config/paper.yaml)", {"default": None}),
        repeats=("--plan: dry runs (the best is reported)", {"type": int, "default": 3}),
        n=("--data: images of the small run", {"type": int, "default": 20000}),
        scale=("--data: the large run has scale x n images", {"type": int, "default": 10}),
        image_size=("--data: image size", {"type": int, "default": 32}),
        work=("--data: scratch folder", {"default": "results/bench/data"}),
        jpeg=("--data: instead, curation of this many realistic web JPEGs (640x480 to 1500x1000, q90) to 256 px in "
              "images per CPU-second beside a plain Pillow loop, and the output's distance from the full-size decode "
              "(with --quick: 8 JPEGs, the curation job in this process)", {"type": int, "default": None}),
        size=("--gpu: DiT size (the gpu preset's: DiT-T/2 with --latent-size 16 --cond-dim 64)",
              {"default": "DiT-XL/2"}),
        latent_size=("--gpu: latent side (32: 256 px through the SD VAE; the gpu preset: 16)",
                     {"type": int, "default": 32}),
        cond_dim=("--gpu: width of the I2I condition token (768: DINO ViT-B/16 CLS; the gpu preset: 64)",
                  {"type": int, "default": 768}),
        variants=("--gpu: comma-separated training-step variants measured one after another at one batch, e.g. "
                  "baseline,bf16,sdpa-flash,sdpa-cudnn,compile,fused-adamw,step-sync,all (switches join with +; "
                  "every variant but baseline runs under bf16 autocast, add +fp32 to measure a switch in fp32, "
                  "e.g. compile+fp32 on a CPU without bf16 instructions; see lumos/bench/gpu.py SWITCHES)", {"default": None}),
        steps=("--gpu: timed training steps", {"type": int, "default": 50}),
        batch=("--gpu: training batch (default: the largest that fits)", {"type": int, "default": None}),
        sample_batch=("--gpu: images per sampling run", {"type": int, "default": 256}),
        device=("--gpu: torch device (default cuda; cpu checks the code path, it does not measure)", {"default": None}))
