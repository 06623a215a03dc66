"""Throughput benchmarks (print numbers; nothing here is a test).

    python -m lumos bench [--quick]

1. Training images/s of the tiny DiT and DiT-S/2 from cached features (latents + CLS tokens).
2. The same step with the VAE encoder and the vision encoder run online on raw images: the
   speed-up that feature caching buys.
3. Sampling images/s: DDPM-250 vs DPM-Solver++-20 (both with classifier-free guidance).
Models are built at their tiny-preset shapes with random weights (speed does not depend on them).
"""

from __future__ import annotations

import time

import torch


def _timed(fn, iters: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def run_benchmarks(args) -> None:
    from lumos.components.encoders import build_tiny_vit
    from lumos.components.vae import build_tiny_vae
    from lumos.config import load_config
    from lumos.diffusion.gaussian import GaussianDiffusion
    from lumos.diffusion.sampling import sample
    from lumos.models import LumosDiT

    torch.manual_seed(0)
    cfg = load_config("tiny")
    # --quick (a smoke check of every line, run by the test suite): batch 8, one timed step, 4
    # samples with a tenth of the sampler steps; its numbers are not the benchmark's
    iters = 1 if args.quick else 10
    bs = 8 if args.quick else cfg["pretrain"]["train"]["batch_size"]
    size = cfg["data"]["image_size"]
    vcfg, ecfg = cfg["components"]["vae"]["train"], cfg["components"]["dino"]["train"]
    vae = build_tiny_vae(size, vcfg["latent_channels"], vcfg["block_out_channels"]).eval()
    vit = build_tiny_vit(size, ecfg).eval()
    lat_hw = size // 2 ** (len(vcfg["block_out_channels"]) - 1)
    diffusion = GaussianDiffusion()
    images = torch.rand(bs, 3, size, size) * 2 - 1
    print(f"# lumos bench: torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {bs}, "
          f"{size}px images -> {vcfg['latent_channels']}x{lat_hw}x{lat_hw} latents")

    for name in ("DiT-T/2", "DiT-S/2"):
        model = LumosDiT.from_size(name, sample_size=lat_hw, in_channels=vcfg["latent_channels"],
                                   cond_dim=ecfg["hidden_size"], max_cond_tokens=1)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x0 = torch.randn(bs, vcfg["latent_channels"], lat_hw, lat_hw)
        cond = torch.randn(bs, 1, ecfg["hidden_size"])

        def step(x0=x0, cond=cond):
            t = torch.randint(0, 1000, (bs,))
            loss = diffusion.training_losses(model, x0, t, model_kwargs={"cond": cond})["loss"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def online_step():
            with torch.no_grad():
                x = vae.encode(images).latent_dist.sample()
                c = vit(pixel_values=images).last_hidden_state[:, :1]
            step(x, c)

        cached = bs / _timed(step, iters)
        online = bs / _timed(online_step, iters)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"train {name:8s} ({params:5.1f}M params): cached features {cached:7.1f} img/s | "
              f"online VAE+encoder {online:7.1f} img/s | caching speed-up x{cached / online:.2f}")

    model = LumosDiT.from_size("DiT-T/2", sample_size=lat_hw, in_channels=vcfg["latent_channels"],
                               cond_dim=ecfg["hidden_size"], max_cond_tokens=1).eval()
    n = 4 if args.quick else 64
    cond = torch.randn(n, 1, ecfg["hidden_size"])
    shape = (n, vcfg["latent_channels"], lat_hw, lat_hw)
    for sampler, steps in (("ddpm", 25 if args.quick else 250), ("dpm++", 2 if args.quick else 20)):
        sec = _timed(lambda: sample(model, shape, cond, sampler=sampler, num_steps=steps, guidance_scale=4.5,
                                    generator=torch.Generator().manual_seed(0)), 1, warmup=0)
        print(f"sample DiT-T/2 {sampler:5s} {steps:3d} steps, CFG 4.5: {n / sec:8.1f} img/s")
