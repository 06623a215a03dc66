"""Sampling with diffusers schedulers: DDPM (learned range) and DPM-Solver++.

Both schedulers use the training schedule of :class:`GaussianDiffusion`
(linear betas 1e-4 .. 0.02, rescaled by 1000 / T). Guidance is applied to all
output channels by :meth:`LumosDiT.forward_with_cfg`. A REG model (``config.reg_dim``,
:mod:`lumos.models.guidance`) generates its class token with the image: the token starts from
noise and is stepped by its own copy of the scheduler, at the same timesteps.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from lumos.diffusion.gaussian import prediction_type_of

SAMPLERS = ("ddpm", "dpm++")


def make_scheduler(name: str, num_train_timesteps: int = 1000, learn_sigma: bool = True,
                   prediction_type: str = "epsilon"):
    """Build a diffusers scheduler matching the training schedule.

    ``"ddpm"``: ancestral DDPM; with ``learn_sigma`` the variance comes from the
    model's learned-range output. ``"dpm++"``: DPM-Solver++ multistep, order 2
    (the variance half of the output is not used). ``prediction_type``: what the
    model predicts (``LumosDiT.config.prediction_type``).
    """
    scale = 1000.0 / num_train_timesteps
    common = dict(
        num_train_timesteps=num_train_timesteps,
        beta_start=1e-4 * scale,
        beta_end=0.02 * scale,
        beta_schedule="linear",
        prediction_type=prediction_type,
    )
    if name == "ddpm":
        return DDPMScheduler(
            **common, variance_type="learned_range" if learn_sigma else "fixed_small", clip_sample=False
        )
    if name == "dpm++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"unknown sampler {name!r}; choose from {SAMPLERS}")


@torch.no_grad()
def sample(
    model,
    shape,
    cond: torch.Tensor | None = None,
    cond_mask: torch.Tensor | None = None,
    *,
    sampler: str = "dpm++",
    num_steps: int = 20,
    guidance_scale: float = 4.5,
    generator: torch.Generator | None = None,
    progress: bool = False,
    device=None,
    num_train_timesteps: int = 1000,
    scheduler=None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """Generate latents of ``shape`` (B, C, H, W) from Gaussian noise.

    Args:
        model: a :class:`LumosDiT` (or any module with the same call signature
            and ``forward_with_cfg``).
        cond, cond_mask: the condition passed to the model (``None`` =
            unconditional / null condition).
        sampler: ``"ddpm"`` or ``"dpm++"``.
        num_steps: number of denoising steps.
        guidance_scale: classifier-free guidance scale; 1 disables guidance.
        generator: makes the initial noise (and DDPM's noise) deterministic.
        progress: show a tqdm progress bar.
        device: defaults to the model's device.
        num_train_timesteps: T of the training schedule.
        scheduler: a ready diffusers scheduler to use instead of building one
            from ``sampler`` (as a :class:`DiffusionPipeline` holds its own). The
            model's variance half is kept only for a DDPM scheduler with a
            learned variance type, as ``make_scheduler`` sets it up.
        model_kwargs: further inputs of every model call (Lumos-NVS: ``concat``,
            the input view's latent, and ``camera``, the relative pose).

    A REG model (``config.reg_dim`` > 0) also denoises its class token, drawn from the generator
    after the latents' noise; it takes no condition, so guidance does not apply to it.
    """
    first = next(model.parameters())
    device = torch.device(device) if device is not None else first.device
    dtype = first.dtype
    config = getattr(model, "config", None)
    learn_sigma = bool(getattr(config, "learn_sigma", True))
    if scheduler is None:
        scheduler = make_scheduler(sampler, num_train_timesteps, learn_sigma=learn_sigma,
                                   prediction_type=prediction_type_of(model))
    learned_var = getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range")
    keep_variance = isinstance(scheduler, DDPMScheduler) and learned_var  # DDPM reads the variance half
    scheduler.set_timesteps(num_steps, device=device)

    gen_device = generator.device if generator is not None else device
    x = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=torch.float32).to(device)
    x = x * scheduler.init_noise_sigma
    if cond is not None:
        cond = cond.to(device)
    if cond_mask is not None:
        cond_mask = cond_mask.to(device)
    extra = {k: v.to(device) for k, v in (model_kwargs or {}).items()}
    token_dim = int(getattr(config, "reg_dim", 0) or 0)
    tok, tok_sched = _token_start(x.shape[0], token_dim, scheduler, generator, device) if token_dim else (None, None)

    timesteps = scheduler.timesteps
    if progress:
        from tqdm.auto import tqdm

        timesteps = tqdm(timesteps, desc=f"sampling ({sampler})")
    for t in timesteps:
        inp = scheduler.scale_model_input(x, t).to(dtype)
        tt = t.to(device).expand(x.shape[0])
        # REG: the class token is denoised with the latents (guided with them under a condition)
        reg = {} if tok is None else {"reg_token": tok_sched.scale_model_input(tok, t).to(dtype), "return_extras": True}
        if guidance_scale != 1:
            out = model.forward_with_cfg(inp, tt, cond, cond_mask, guidance_scale=guidance_scale, **reg, **extra)
        else:
            out = model(inp, tt, cond, cond_mask, **reg, **extra)
        if tok is not None:
            out, extras = out
        out = out.float()
        if not keep_variance and out.shape[1] == 2 * x.shape[1]:
            out = out[:, : x.shape[1]]
        x = scheduler.step(out, t, x, generator=generator).prev_sample
        if tok is not None:
            tok = tok_sched.step(extras["reg"].float(), t, tok, generator=generator).prev_sample
    return x


def token_scheduler(scheduler):
    """A fresh scheduler like `scheduler` for a REG class token, which has no variance output:
    a learned variance type becomes ``fixed_small``."""
    changes = {}
    if getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range"):
        changes["variance_type"] = "fixed_small"
    return type(scheduler).from_config(scheduler.config, **changes)


def _token_start(batch: int, token_dim: int, scheduler, generator, device):
    """A REG model's class token at the first step (noise drawn from `generator` after the
    latents') and its own scheduler, set to the same timesteps as `scheduler`."""
    gen_device = generator.device if generator is not None else device
    tok = torch.randn((batch, token_dim), generator=generator, device=gen_device, dtype=torch.float32)
    tok_sched = token_scheduler(scheduler)
    tok_sched.set_timesteps(len(scheduler.timesteps), device=device)
    return tok.to(device) * tok_sched.init_noise_sigma, tok_sched
