"""Representation-guided training of the DiT: REPA's alignment loss and REG's entangled class token.

Beyond the paper: two ways a frozen vision encoder can shape a generator without being its
condition at sampling (docs/ablations.md, "Representation-guided priors").

* **REPA** (Yu et al., "Representation Alignment for Generation", ICLR 2025, arXiv 2410.06940):
  the hidden states after block `repa_block` (1-based: the output of the k-th block, REPA's
  ``--encoder-depth``; 8 of SiT-XL/2's 28) go through a projector, three Linear layers with SiLU
  between (`build_projector`; REPA's hidden width 2048, output the encoder's width), and are
  aligned with the encoder's patch tokens of the clean image: the loss is the negative cosine
  similarity per token, averaged over the tokens and the batch (`alignment_loss`), weighted by
  0.5 (REPA's ``--proj-coeff``). When the encoder's patch grid differs from the DiT's token grid
  the encoder tokens are resampled to the DiT grid (`resample_tokens`: bilinear on the 2-D grid,
  antialiased when it shrinks). The projector is part of the model (saved, loaded and EMA'd with
  it) but not used at sampling.
* **REG** (Wu et al., "Representation Entanglement for Generation", arXiv 2507.01467): the
  encoder's class token of the clean image is noised with the latents' schedule and timestep,
  embedded into the DiT's width (`ClassTokenEmbedder`: Linear then LayerNorm, REG's
  ``cls_projectors2`` and ``wg_norm``) and appended to the latent tokens, with no position
  embedding (REG's is a zero row). It is denoised jointly: its own zero-initialised head
  (``reg_head``, REG's ``linear_cls``) reads the token after the final layer's adaLN and predicts
  what the latents' output predicts (the model's `prediction_type`); its MSE (mean over the
  token's features) is added to the latent loss with weight 0.03 (REG's ``--cls``). The token is
  dropped from the image output. At sampling it starts from noise and is denoised with the
  latents (`lumos.diffusion.sampling.sample` carries it); no encoder runs.

  REG's public code (Martinser/REG, ``train.sh``, ``loss.py``) trains with REPA's alignment loss
  as well, by default: ``--proj-coeff 0.5 --encoder-depth 8``, the target being the encoder's
  class token followed by its patch tokens, aligned with the hidden states of the class token and
  the latent tokens (one projector for all). `guided_training_losses` does the same when a run has
  both (`repa` and `reg` blocks, the `reg` preset's default): the token's hidden state is aligned
  with the clean class token.

Both losses are our code; they follow the public REPA and REG code's losses (read, not copied).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

#: REPA's defaults: projector width, alignment weight (``--proj-coeff``).
REPA_HIDDEN = 2048
REPA_WEIGHT = 0.5
#: REG's default weight of the class token's denoising loss (``--cls``).
REG_WEIGHT = 0.03


def build_projector(hidden_size: int, projector_dim: int, out_dim: int) -> nn.Sequential:
    """REPA's projector: Linear-SiLU-Linear-SiLU-Linear, from the DiT's width to the encoder's."""
    return nn.Sequential(
        nn.Linear(hidden_size, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, out_dim),
    )


class ClassTokenEmbedder(nn.Module):
    """REG's class-token embedding: the (noisy) encoder class token (B, token_dim) -> one DiT
    token (B, 1, hidden_size), Linear then LayerNorm (affine)."""

    def __init__(self, token_dim: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(token_dim, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=True, eps=1e-6)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(token.to(self.proj.weight.dtype)))[:, None]


def resample_tokens(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Encoder patch tokens (B, N, D) on a square sqrt(N) x sqrt(N) grid -> (B, h*w, D) on the
    DiT's `grid` (h, w), row-major: bilinear interpolation of each feature on the 2-D grid
    (``align_corners=False``; antialiased when the grid shrinks). Unchanged when the grids match."""
    b, n, d = tokens.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"REPA needs a square grid of encoder patch tokens, got {n} tokens")
    h, w = grid
    if (side, side) == (h, w):
        return tokens
    img = tokens.transpose(1, 2).reshape(b, d, side, side).float()
    out = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=h < side or w < side)
    return out.reshape(b, d, h * w).transpose(1, 2).to(tokens.dtype)


def alignment_loss(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """REPA's loss per sample (B,): minus the cosine similarity of each projected hidden token
    (B, N, D) with its target token (B, N, D), averaged over the N tokens."""
    if projected.shape != target.shape:
        raise ValueError(f"projected hidden states {tuple(projected.shape)} and encoder tokens "
                         f"{tuple(target.shape)} differ")
    sim = (F.normalize(projected.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(dim=-1)
    return -sim.mean(dim=1)


def repa_target(enc_patch: torch.Tensor | None, enc_cls: torch.Tensor | None, grid: tuple[int, int],
                with_token: bool) -> torch.Tensor:
    """The alignment target of a batch: the encoder's patch tokens resampled to the DiT's grid,
    followed, for a REG model (`with_token`), by its class token (REG's code aligns both)."""
    if enc_patch is None:
        raise ValueError("a REPA run needs the encoder's patch tokens (batch key enc_patch)")
    target = resample_tokens(enc_patch, grid)
    if with_token:
        target = torch.cat([target, enc_cls[:, None].to(target.dtype)], dim=1)
    return target


def guided_training_losses(diffusion, model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                           model_kwargs: dict, guidance: dict, enc_patch: torch.Tensor | None = None,
                           enc_cls: torch.Tensor | None = None, token_noise: torch.Tensor | None = None,
                           prediction_type: str = "epsilon", **loss_kwargs) -> dict:
    """`diffusion.training_losses` of a REPA and/or REG model plus their terms (per sample, (B,)).

    `guidance` holds the run's blocks: {"repa": {"weight": ...} or None, "reg": {"weight": ...} or
    None}. REG: the clean class token `enc_cls` (B, D) is noised with `token_noise` at the same `t`
    and passed to the model, whose token prediction is scored against the same kind of target as
    the latents (`prediction_type`). REPA: the model's hidden states after its `repa_block` are
    projected and aligned with `repa_target`. `loss_kwargs` go to `training_losses` as they are.
    Returns training_losses' dict with `repa` and `reg` added (zeros when off) and
    ``loss = loss + w_repa * repa + w_reg * reg``."""
    repa, reg = guidance.get("repa"), guidance.get("reg")
    extras: dict = {}
    kwargs = dict(model_kwargs)
    token_t = None
    if reg:
        if enc_cls is None or token_noise is None:
            raise ValueError("a REG run needs the encoder's class token (batch keys enc_cls, token_noise)")
        token_t = diffusion.q_sample(enc_cls.float(), t, token_noise.float())

    def call(xt, tt, **kw):
        out, found = model(xt, tt, **kw, reg_token=token_t, return_extras=True)
        extras.update(found)
        return out

    losses = diffusion.training_losses(call, x0, t, model_kwargs=kwargs, noise=noise,
                                       prediction_type=prediction_type, **loss_kwargs)
    zero = torch.zeros_like(losses["loss"])
    losses["repa"], losses["reg"] = zero, zero
    if repa:
        target = repa_target(enc_patch, enc_cls, extras["grid"], with_token=bool(reg))
        losses["repa"] = alignment_loss(extras["projected"], target).to(zero.dtype)
    if reg:
        token_target = diffusion.target(enc_cls.float(), token_noise.float(), t, prediction_type)
        losses["reg"] = ((token_target - extras["reg"].float()) ** 2).mean(dim=1).to(zero.dtype)
    weight_repa = repa["weight"] if repa else 0.0
    weight_reg = reg["weight"] if reg else 0.0
    losses["loss"] = losses["loss"] + weight_repa * losses["repa"] + weight_reg * losses["reg"]
    return losses
