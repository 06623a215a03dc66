"""I2I pretraining: a Lumos DiT conditioned on vision-encoder features of the image itself.

Lumos-I2I: DINO(-style) CLS token, L2-normalised, read through cross-attention (eq. 1).
RCG-style: MoCo(-style) global vector, standardised, added to the timestep embedding (adaLN).
The other priors of Figure 8a train on the same pool: class-to-image (the class label of the
image's largest object, as a DiT label embedding) and unconditional.
A run's optional `pool_size` trains on the first N pool images only (Figure 2b's ladder).
"""

from __future__ import annotations

import torch

from lumos.features import condition_tokens, feature_keys, read_features
from lumos.settings import ModelSettings, RunSettings, TrainSettings
from lumos.train import TrainOutputs
from lumos.utils import log


def build_model(model_cfg: ModelSettings | dict, run: RunSettings | dict, latent_shape, cond_dim: int,
                n_tokens: int):
    """A fresh LumosDiT for a run (`pretrain.runs.<name>`) on latents of `latent_shape` (C, h, w)."""
    from lumos.data.shapes import NUM_CLASSES
    from lumos.models import LumosDiT

    model_cfg = ModelSettings.from_config(model_cfg, "pretrain.model")
    run = RunSettings.from_config(run, "pretrain.runs.<run>")
    c, h, w = latent_shape
    if h != w:
        raise ValueError(f"square latents expected, got {latent_shape}")
    return LumosDiT.from_size(
        model_cfg.size,
        sample_size=h,
        in_channels=c,
        learn_sigma=model_cfg.learn_sigma,
        injection=run.injection,
        cond_dim=cond_dim,
        max_cond_tokens=n_tokens,
        cond_dropout=model_cfg.cond_dropout,
        num_classes=NUM_CLASSES if run.injection == "class" else 0,
    )


def load_run_data(features_dir: str, run: RunSettings):
    """Latents (n, C, h, w) and the run's condition and mask from cached features.

    cross_attn / adaln: encoder tokens (n, L, D) and mask (n, L); class: labels (n,) and None;
    none: (None, None).
    """
    injection, limit = run.injection, run.pool_size
    if injection in ("class", "none"):
        feats = read_features(features_dir, ["latents"] + (["labels"] if injection == "class" else []), limit)
        cond = torch.from_numpy(feats["labels"]).long() if injection == "class" else None
        return torch.from_numpy(feats["latents"]), cond, None
    if not run.encoder:
        raise KeyError(f"a {injection} run needs an `encoder` (config key pretrain.runs.<run>.encoder)")
    feats = read_features(features_dir, ["latents", *feature_keys(run.encoder, run.tokens)], limit)
    cond, mask = condition_tokens(feats, run.encoder, run.tokens, run.injection)
    return torch.from_numpy(feats["latents"]), cond, mask


def cond_shape(cond) -> tuple[int, int]:
    """(feature dim, token count) of a run's condition, (1, 1) for class labels / unconditional."""
    return (cond.shape[-1], cond.shape[1]) if cond is not None and cond.ndim == 3 else (1, 1)


def untrained_model(model_cfg: ModelSettings, run: RunSettings, latent_shape, cond, seed: int):
    """The run's architecture with seeded fresh weights: Table 1's untrained ceiling row."""
    torch.manual_seed(seed)
    return build_model(model_cfg, run, latent_shape, *cond_shape(cond))


def pretrain(features_dir: str, run: RunSettings, model_cfg: ModelSettings, train_cfg: TrainSettings,
             outputs: TrainOutputs | str, state_dir: str, seed: int, device, stop_after: int | None = None) -> dict:
    """Train one I2I run from cached pool features; see `lumos.train.train_diffusion`."""
    from lumos.train import train_diffusion

    latents, cond, mask = load_run_data(features_dir, run)
    model = untrained_model(model_cfg, run, latents.shape[1:], cond, seed)
    log.info("model %s: %.2fM parameters, %d training latents of shape %s, condition %s",
             model_cfg.size, sum(p.numel() for p in model.parameters()) / 1e6, len(latents),
             tuple(latents.shape[1:]), run.injection if cond is None else tuple(cond.shape[1:]))
    return train_diffusion(model, latents, cond, mask, train_cfg, outputs, state_dir, seed=seed,
                           device=device, stop_after=stop_after, cleanup_state=True)
