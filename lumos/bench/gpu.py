"""GPU benchmark of the paper-scale model (print numbers; nothing here is a test).

    python -m lumos bench --gpu [--size DiT-XL/2] [--steps 50] [--batch N]
    python -m lumos bench --gpu --variants baseline,bf16,sdpa-flash,sdpa-cudnn,compile,fused-adamw,step-sync,all
    python -m lumos bench --gpu --variants bf16,all --size DiT-T/2 --latent-size 16 --cond-dim 64 --batch 256

It needs a CUDA device and refuses without one (`--device cpu` runs the same code on the CPU, to
check it, not to measure). On random cached latents (4x32x32, i.e. 256 px images through the SD
VAE; `--latent-size`) and random condition tokens it measures, for the Lumos DiT with
cross-attention:

1. the bf16 matrix-product rate of the card (8192^3), the practical ceiling;
2. training: images/s, peak memory and model FLOP utilisation (MFU) at the largest batch that
   fits (found from the memory of two probe steps), bf16 autocast with fp32 master weights,
   AdamW, SDPA attention, the hybrid loss (epsilon MSE + VB) the workflow trains with; then the
   same with gradient checkpointing (as the paper preset trains) and with the T2I condition
   (120 Flan-T5-XXL tokens of 4096, a third of them padding);
3. sampling: DPM-Solver++ 20 steps with classifier-free guidance, bf16 weights.

With `--variants`, instead, the I2I training step (one DINO CLS token) once per variant, at one
batch, so each training-efficiency switch of the train settings (`lumos.training.loop`: `compile`,
`fused_adamw`, `attention`, no host synchronisation per step) is measured before and after:
see :data:`SWITCHES`. Every variant but `baseline` (fp32) is bf16 autocast plus its switches;
join switches with `+` (`compile+fused-adamw`); `all` is what the gpu and paper presets train
with.

FLOPs per image are counted two ways: analytically (:func:`dit_forward_flops`, 2 x
multiply-adds of every matrix product) and by ``torch.utils.flop_counter.FlopCounterMode`` on a
real forward. A training step counts as 3 forwards (backward = 2 x forward); gradient
checkpointing recomputes a forward that MFU does not count.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from dataclasses import dataclass

import torch

from lumos.training.loop import adamw, attention_backend, compile_model

DATASHEET_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0}


def dit_forward_flops(cfg, num_cond_tokens: int = 0) -> float:
    """FLOPs (2 x multiply-adds of the matrix products) of one image's forward pass.

    `cfg` is a :class:`LumosDiT` config; attention counts QK^T and AV. Element-wise work (norms,
    activations, softmax) is left out, as MFU conventions do. For DiT-XL/2 without a condition
    this gives the DiT paper's 118.6 GFLOP of multiply-adds, i.e. about 237 GFLOP.
    """
    d, p = cfg.hidden_size, cfg.patch_size
    n = (cfg.sample_size // p) ** 2
    mlp = int(d * cfg.mlp_ratio)
    out_ch = 2 * cfg.in_channels if cfg.learn_sigma else cfg.in_channels
    macs = n * p * p * (cfg.in_channels + cfg.extra_in_channels) * d  # patch embedding
    macs += 256 * d + d * d  # timestep MLP
    per_block = 3 * n * d * d + n * d * d + 2 * n * n * d  # self-attention: qkv, proj, QK^T + AV
    per_block += 2 * n * d * mlp + 6 * d * d  # MLP, adaLN modulation
    m = num_cond_tokens
    if cfg.injection == "cross_attn" and m:
        macs += m * (cfg.cond_dim * d + d * d)  # condition token projection
        per_block += 2 * n * d * d + 2 * m * d * d + 2 * n * m * d  # q, proj; k, v; QK^T + AV
    elif cfg.injection == "adaln":
        macs += cfg.cond_dim * d
    macs += cfg.depth * per_block + 2 * d * d + n * d * p * p * out_ch  # final adaLN + linear
    return 2.0 * macs


def counted_forward_flops(model, x, t, cond=None, cond_mask=None) -> float:
    """FLOPs per image of one forward, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, cond, cond_mask)
    return counter.get_total_flops() / x.shape[0]


def _peak_tflops(name: str) -> float | None:
    return next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)


def _matmul_tflops(device, n: int = 8192, iters: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


def _inputs(model, batch: int, tokens: int, padded: int, device):
    cfg = model.config
    x0 = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=device)
    cond = torch.randn(batch, tokens, cfg.cond_dim, device=device)
    mask = None
    if padded:
        mask = torch.ones(batch, tokens, dtype=torch.bool, device=device)
        mask[:, tokens - padded:] = False
    return x0, cond, mask


@dataclass(frozen=True)
class Variant:
    """The switches of one benchmarked training step (the train settings' names where they have one)."""

    bf16: bool = True  # mixed_precision: bf16 (fp32 master weights)
    attention: str = "auto"  # attention
    compile: bool = False  # compile (torch.compile of the DiT)
    compile_mode: str = "default"  # compile_mode
    fused_adamw: bool = False  # fused_adamw
    step_sync: bool = False  # check the loss on the host every step (the loop before nan_check_every)
    checkpointing: bool = False  # gradient_checkpointing


# --variants names: each a change to the bf16 eager step; `baseline` and `all` are shorthands.
SWITCHES = {
    "bf16": {},
    "fp32": {"bf16": False},
    "sdpa-flash": {"attention": "flash"},
    "sdpa-cudnn": {"attention": "cudnn"},
    "sdpa-efficient": {"attention": "efficient"},
    "sdpa-math": {"attention": "math"},
    "compile": {"compile": True},
    "compile-max": {"compile": True, "compile_mode": "max-autotune-no-cudagraphs"},
    "fused-adamw": {"fused_adamw": True},
    "step-sync": {"step_sync": True},
    "checkpointing": {"checkpointing": True},
}
SHORTHANDS = {"baseline": "fp32", "all": "sdpa-flash+compile+fused-adamw"}


def parse_variants(text: str) -> list[tuple[str, Variant]]:
    """`baseline,bf16,compile+fused-adamw` -> [(name, Variant)], in order; an unknown name is a
    ValueError listing the known ones."""
    variants = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        changes = {}
        for switch in SHORTHANDS.get(name, name).split("+"):
            if switch not in SWITCHES:
                raise ValueError(f"unknown benchmark variant {switch!r} in {name!r}: choose from "
                                 f"{sorted(SWITCHES) + sorted(SHORTHANDS)}, joined with + to combine")
            changes.update(SWITCHES[switch])
        variants.append((name, Variant(**changes)))
    if not variants:
        raise ValueError("--variants names no variant")
    return variants


class _Trainer:
    """One training step as the workflow's loop runs it (AdamW, bf16 autocast, hybrid loss), with
    a variant's switches made by the same helpers as `lumos.training.loop.train_diffusion`."""

    def __init__(self, model, device, variant: Variant = Variant()):
        from lumos.diffusion.gaussian import GaussianDiffusion

        self.model, self.device, self.variant = model, device, variant
        self.diffusion = GaussianDiffusion()
        self.opt = adamw(model.parameters(), lr=1e-4, weight_decay=0.03, fused=variant.fused_adamw)
        if variant.checkpointing:
            model.enable_gradient_checkpointing()
        if variant.compile:
            compile_model(model, variant.compile_mode)

    def step(self, x0, cond, mask):
        t = torch.randint(0, 1000, (x0.shape[0],), device=self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.variant.bf16)
        with attention_backend(self.variant.attention), autocast:
            loss = self.diffusion.training_losses(self.model, x0, t, {"cond": cond, "cond_mask": mask})["loss"].mean()
        if self.variant.step_sync and not torch.isfinite(loss):  # waits for the step's forward
            raise FloatingPointError("loss is not finite")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _fit_batch(trainer, tokens, padded, device, probe=(8, 16), cap: int = 1024) -> int:
    """The largest batch (a multiple of 8) whose training step fits, from two probe steps' peak
    memory (linear in the batch), confirmed by a step and lowered by 1/8 on out-of-memory."""
    if device.type != "cuda":
        return probe[0]
    peaks = []
    for b in probe:
        _reset_peak(device)
        trainer.step(*_inputs(trainer.model, b, tokens, padded, device))
        _sync(device)
        peaks.append(torch.cuda.max_memory_allocated())
    per_image = (peaks[1] - peaks[0]) / (probe[1] - probe[0])
    fixed = peaks[0] - per_image * probe[0]
    total = torch.cuda.get_device_properties(device).total_memory
    batch = min(cap, int((0.92 * total - fixed) / per_image) // 8 * 8)
    print(f"  memory: {fixed / 2**30:.1f} GiB fixed (weights, grads, AdamW) + {per_image / 2**20:.0f} MiB per image "
          f"-> batch {batch} of {total / 2**30:.0f} GiB")
    while batch >= 8:
        try:
            _reset_peak(device)
            trainer.step(*_inputs(trainer.model, batch, tokens, padded, device))
            _sync(device)
            return batch
        except torch.OutOfMemoryError:
            trainer.opt.zero_grad(set_to_none=True)
            batch = batch * 7 // 8 // 8 * 8
            print(f"  out of memory; trying batch {batch}")
    raise RuntimeError("not even a batch of 8 fits on this device")


def bench_training(model, device, steps: int, batch: int | None, tokens: int, padded: int,
                   label: str, peak: float | None, flops_per_image: float, variant: Variant | None = None) -> dict:
    """Train `steps` timed steps (after 3 warm-up steps, which include any compilation) and print
    images/s, memory and MFU. Without `variant`: bf16 autocast on CUDA (fp32 on the CPU), the
    largest batch that fits when `batch` is None. On out-of-memory the batch drops by 1/8."""
    variant = variant or Variant(bf16=device.type == "cuda")
    trainer = _Trainer(model, device, variant)
    if batch is None:
        batch = _fit_batch(trainer, tokens, padded, device)
    while True:
        try:
            inputs = _inputs(model, batch, tokens, padded, device)
            t0 = time.perf_counter()
            for _ in range(3):
                trainer.step(*inputs)
            _sync(device)
            warmup = time.perf_counter() - t0
            _reset_peak(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = trainer.step(*inputs)
            loss = loss.detach().item()  # synchronises
            _sync(device)
            break
        except torch.OutOfMemoryError:
            if batch * 7 // 8 // 8 * 8 < 8:
                raise
        # out of memory (past the except block, whose traceback held the step's activations)
        inputs = None
        trainer.opt.zero_grad(set_to_none=True)
        _reset_peak(device)
        batch = batch * 7 // 8 // 8 * 8
        print(f"  {label}: out of memory; trying batch {batch}")
    sec = (time.perf_counter() - t0) / steps
    ips = batch / sec
    achieved = 3 * flops_per_image * ips / 1e12
    mfu = 100 * achieved / peak if peak else None
    mfu_text = f"MFU {mfu:.1f}% of {peak:.0f} TFLOP/s" if peak else "MFU n/a (no datasheet peak for this device)"
    print(f"train {label}: batch {batch}, {sec * 1e3:.0f} ms/step, {ips:.1f} img/s, peak memory {_peak_gib(device):.1f} GiB, "
          f"{achieved:.0f} TFLOP/s model FLOPs = {mfu_text} (loss {loss:.3f}; warm-up {warmup:.1f} s)")
    trainer.opt.zero_grad(set_to_none=True)
    del trainer
    return {"batch": batch, "images_per_s": ips, "tflops": achieved, "mfu": mfu, "peak_gib": _peak_gib(device),
            "ms_per_step": sec * 1e3, "warmup_s": warmup}


def bench_sampling(model, device, batch: int, tokens: int, num_steps: int = 20, guidance: float = 4.5) -> float:
    """DPM-Solver++ sampling with CFG (a doubled batch per step), bf16 weights; images/s."""
    from lumos.diffusion.sampling import sample

    model = model.eval()
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    cfg = model.config
    shape = (batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    cond = torch.randn(batch, tokens, cfg.cond_dim, device=device)
    sample(model, (min(batch, 8), *shape[1:]), cond[:8], num_steps=2, guidance_scale=guidance)  # warm-up
    _sync(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    sample(model, shape, cond, sampler="dpm++", num_steps=num_steps, guidance_scale=guidance,
           generator=torch.Generator(device).manual_seed(0))
    _sync(device)
    ips = batch / (time.perf_counter() - t0)
    print(f"sample DPM-Solver++ {num_steps} steps, CFG {guidance} (forward batch {2 * batch}): {ips:.1f} img/s, "
          f"peak memory {_peak_gib(device):.1f} GiB")
    return ips


CUDA_REQUIRED = ("lumos bench --gpu needs a CUDA GPU and torch sees none (torch.cuda.is_available() is False). "
                 "For the CPU benchmark run `lumos bench` (tiny models) or `lumos bench --data` (the data path); "
                 "`lumos bench --gpu --device cpu` runs this benchmark's code on the CPU to check it, not to measure.")


def benchmark_device(requested: str | None) -> torch.device:
    """The benchmark's device: `requested` (e.g. `cpu`, to check the code path), else CUDA; a
    RuntimeError saying what to run instead when CUDA is asked for and absent."""
    if requested is None or requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(CUDA_REQUIRED)
        return torch.device(requested or "cuda")
    return torch.device(requested)


def build_model(size: str, latent_size: int, cond_dim: int, tokens: int, device):
    """A Lumos DiT with cross-attention, built (and initialised) directly on `device`, seeded."""
    from lumos.models import LumosDiT

    torch.manual_seed(0)
    with torch.device(device):
        return LumosDiT.from_size(size, sample_size=latent_size, in_channels=4, cond_dim=cond_dim,
                                  max_cond_tokens=tokens)


def describe_flops(model, device, tokens: int, padded: int) -> tuple[float, str]:
    """(analytic forward FLOPs per image, a line stating them with FlopCounterMode's count)."""
    x, cond, mask = _inputs(model, 2, tokens, padded, device)
    t = torch.randint(0, 1000, (2,), device=device)
    analytic = dit_forward_flops(model.config, tokens)
    counted = counted_forward_flops(model, x, t, cond, mask)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return analytic, (f"{params:.1f}M parameters; forward {gflop(analytic)} GFLOP/image analytic, "
                      f"{gflop(counted)} counted by FlopCounterMode; training step = 3 forwards = "
                      f"{gflop(3 * analytic)} GFLOP/image")


def gflop(flops: float) -> str:
    """FLOPs as GFLOP with four significant digits (275.5 for DiT-XL/2, 0.4112 for DiT-T/2)."""
    return f"{flops / 1e9:.4g}"


def _release(device):
    """Free what a variant left behind (compiled graphs, cached blocks) before the next one."""
    torch._dynamo.reset()
    gc.collect()
    _reset_peak(device)


def run_variants(args, device, peak) -> list[dict]:
    """The I2I training step once per `--variants` entry, all at one batch (`--batch`, or the
    largest that fits the bf16 eager step); then a table of images/s, memory and MFU with the
    speed-up over the first variant."""
    variants = parse_variants(args.variants)
    tokens, width = 1, args.cond_dim
    model = build_model(args.size, args.latent_size, width, tokens, device)
    flops, line = describe_flops(model, device, tokens, 0)
    print(f"{args.size} I2I (1 condition token of {width}), latents 4x{args.latent_size}x{args.latent_size}: {line}")
    batch = args.batch
    if batch is None:
        batch = _fit_batch(_Trainer(model, device, Variant(bf16=device.type == "cuda")), tokens, 0, device)
    del model
    _release(device)
    results = []
    for name, variant in variants:
        model = build_model(args.size, args.latent_size, width, tokens, device)
        r = bench_training(model, device, args.steps, batch, tokens, 0, f"variant {name}", peak, flops, variant)
        results.append({"variant": name, **dataclasses.asdict(variant), **r})
        del model
        _release(device)
    print_variant_table(results, args.size, flops)
    return results


def print_variant_table(results: list[dict], size: str, flops: float) -> None:
    """A markdown table of the variants (speed-up relative to the first)."""
    first = results[0]["images_per_s"]
    print(f"\n| {size}, {gflop(3 * flops)} GFLOP per trained image | batch | ms/step | images/s | vs "
          f"{results[0]['variant']} | peak memory | MFU |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        mfu = f"{r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"| {r['variant']} | {r['batch']} | {r['ms_per_step']:.1f} | {r['images_per_s']:.1f} | "
              f"{r['images_per_s'] / first:.2f}x | {r['peak_gib']:.1f} GiB | {mfu} |")


def run_gpu_benchmark(args) -> None:
    device = benchmark_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = _peak_tflops(name) if device.type == "cuda" else None
    print(f"# lumos bench --gpu: {name}, torch {torch.__version__}, {args.size}, "
          f"latents 4x{args.latent_size}x{args.latent_size}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"bf16 matmul 8192^3: {_matmul_tflops(device):.0f} TFLOP/s measured "
              f"(datasheet dense bf16: {peak or 'unknown'} TFLOP/s)")
    if args.variants:
        run_variants(args, device, peak)
        return

    runs = [  # label, condition tokens, condition width, padded tokens, gradient checkpointing
        (f"I2I: 1 DINO CLS token ({args.cond_dim}-d)", 1, args.cond_dim, 0, False),
        ("I2I, gradient checkpointing", 1, args.cond_dim, 0, True),
        ("T2I: 120 T5-XXL tokens (4096-d), 40 padded", 120, 4096, 40, False),
    ]
    if args.quick:
        runs = runs[:1]
    fitted = None
    for label, tokens, width, padded, ckpt in runs:
        model = build_model(args.size, args.latent_size, width, tokens, device)
        flops, line = describe_flops(model, device, tokens, padded)
        print(f"{label}: {line}")
        # gradient checkpointing runs at the batch the plain step fitted, for a direct comparison
        batch = args.batch or (fitted if ckpt else None)
        variant = Variant(bf16=device.type == "cuda", checkpointing=ckpt)
        fitted = bench_training(model, device, args.steps, batch, tokens, padded, label, peak, flops, variant)["batch"]
        if not ckpt and tokens == 1:
            bench_sampling(model, device, args.sample_batch, tokens)
        del model
        _release(device)
