"""T2I fine-tuning from an I2I prior (the paper's eq. 2).

The I2I model's weights are loaded, its condition path is swapped for a fresh caption projection
(text-encoder tokens -> MLP -> the same cross-attention layers), and the model is trained on the
text-image pair set with the same diffusion loss, condition dropout and classifier-free guidance.

A fine-tune is named ``<prior>-<text encoder>-<captions>-n<noise %>``:

- prior: a pretrain run (``lumos_i2i``, ``rcg``, ``class_i2i``, ``uncond``), optionally
  ``<run>_pool<N>`` (pretrained on the first N pool images, Figure 2b), or ``none`` (from scratch);
- text encoder: ``t5`` or ``clip`` (Figure 11);
- captions: ``short`` (raw), ``long`` (detailed) or ``mixed`` (both, one pass each per epoch,
  as the paper mixes raw and long captions following DALL-E 3);
- noise: the percentage of pairs whose caption is swapped for another image's (Figure 2a).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from lumos.features import read_features
from lumos.settings import ModelSettings, TrainSettings
from lumos.train import TrainOutputs
from lumos.utils import log

FINETUNE_PATTERN = re.compile(r"(?P<prior>[a-z0-9_]+)-(?P<text>t5|clip)-(?P<captions>short|long|mixed)-n(?P<noise>\d+)")
# the same pattern without group names: Snakemake's `ft` wildcard constraint (rules/common.smk)
FINETUNE_WILDCARD = re.sub(r"\(\?P<\w+>", "(?:", FINETUNE_PATTERN.pattern)
CONDITION_PATH = ("y_embedder.", "null_cond", "fake_latent")  # replaced by the fresh caption path


def parse_finetune(name: str) -> dict:
    """``lumos_i2i_pool2000-t5-mixed-n50`` -> prior, prior_run, pool_size, text, captions, noise."""
    m = FINETUNE_PATTERN.fullmatch(name)
    if not m:
        raise ValueError(f"bad fine-tune name {name!r}: expected <prior>-<t5|clip>-<short|long|mixed>-n<noise %>")
    spec = m.groupdict()
    spec["noise"] = int(spec["noise"])
    if spec["noise"] > 100:
        raise ValueError(f"noise percentage {spec['noise']} > 100 in {name!r}")
    run, _, size = spec["prior"].partition("_pool")
    spec["prior_run"] = None if spec["prior"] == "none" else run
    spec["pool_size"] = int(size) if size else None
    return spec


def noisy_caption_index(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which caption each image gets: exactly round(fraction * n) images get another image's.

    The chosen images pass their captions round in a cycle (a derangement), so none keeps its own.
    Deterministic in `seed`.
    """
    k = int(round(fraction * n))
    index = np.arange(n)
    if k == 0:
        return index
    if n < 2:
        raise ValueError("caption noise needs at least two pairs")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, size=k, replace=False)
    if k == 1:  # a one-element cycle would keep its caption: borrow from any other image
        other = rng.integers(0, n - 1)
        index[chosen[0]] = other + (other >= chosen[0])
    else:
        index[chosen] = np.roll(chosen, 1)
    return index


def load_captions(text_dir: str, text: str, captions: str, limit: int | None = None):
    """Cached caption tokens (n, L, D) and masks (n, L) of one encoder and caption kind."""
    feats = read_features(text_dir, [f"{text}_{captions}", f"{text}_{captions}_mask"], limit)
    return torch.from_numpy(feats[f"{text}_{captions}"]), torch.from_numpy(feats[f"{text}_{captions}_mask"]) > 0.5


def t2i_training_data(features_dir: str, text_dir: str, spec: dict, seed: int):
    """Latents, caption tokens and masks for a fine-tune (noise applied, captions mixed)."""
    latents = torch.from_numpy(read_features(features_dir, ["latents"])["latents"])
    kinds = ["short", "long"] if spec["captions"] == "mixed" else [spec["captions"]]
    index = torch.from_numpy(noisy_caption_index(len(latents), spec["noise"] / 100, seed))
    parts = [load_captions(text_dir, spec["text"], kind) for kind in kinds]
    if any(len(tok) != len(latents) for tok, _ in parts):
        raise ValueError(f"{text_dir} holds {len(parts[0][0])} captions but {features_dir} holds {len(latents)} "
                         "images: the text features belong to another split")
    width = max(tok.shape[1] for tok, _ in parts)
    toks, masks = [], []
    for tok, mask in parts:  # pad every kind to the same token count (padding is masked out)
        pad = width - tok.shape[1]
        toks.append(torch.nn.functional.pad(tok[index], (0, 0, 0, pad)))
        masks.append(torch.nn.functional.pad(mask[index], (0, pad)))
    n_swapped = int((index != torch.arange(len(index))).sum())
    log.info("pairs: %d images, captions %s, %d (%.1f%%) with a wrong caption", len(latents), kinds, n_swapped,
             100 * n_swapped / len(latents))
    return latents.repeat(len(kinds), 1, 1, 1), torch.cat(toks), torch.cat(masks)


def build_t2i_model(base_config: dict, text_dim: int, n_tokens: int, cond_dropout: float):
    """A LumosDiT with the backbone of `base_config` and a fresh caption path (cross-attention)."""
    from lumos.models import LumosDiT

    keep = {k: v for k, v in base_config.items() if not k.startswith("_")}
    keep.update(injection="cross_attn", cond_dim=text_dim, max_cond_tokens=n_tokens, cond_dropout=cond_dropout,
                num_classes=0)
    return LumosDiT(**keep)


def init_from_prior(model, prior) -> dict:
    """Copy every prior weight whose name and shape match, except the condition path.

    Returns counts: `copied` tensors, `fresh` (new in the T2I model: caption projection, null
    tokens, and cross-attention when the prior had none) and `dropped` (prior-only weights).
    """
    target = model.state_dict()
    source = prior.state_dict()
    copied, fresh = 0, []
    with torch.no_grad():
        for name, value in target.items():
            if name.startswith(CONDITION_PATH) or name not in source or source[name].shape != value.shape:
                fresh.append(name)
                continue
            value.copy_(source[name])
            copied += 1
    dropped = [n for n in source if n not in target or n.startswith(CONDITION_PATH)]
    return {"copied": copied, "fresh": fresh, "dropped": dropped}


def make_t2i_model(prior_dir: str | None, model_cfg: ModelSettings | dict, latent_shape, text_dim: int, n_tokens: int,
                   cond_dropout: float, seed: int):
    """The model a fine-tune starts from: the prior's backbone with a fresh caption path, or a
    fresh model of `model_cfg` (prior `none`)."""
    from lumos.components.loading import from_pretrained
    from lumos.models import DIT_SIZES, LumosDiT

    model_cfg = ModelSettings.from_config(model_cfg, "pretrain.model")
    torch.manual_seed(seed)
    if prior_dir is None:
        c, h, _ = latent_shape
        base = {**DIT_SIZES[model_cfg.size], "sample_size": h, "in_channels": c, "learn_sigma": model_cfg.learn_sigma}
        return build_t2i_model(base, text_dim, n_tokens, cond_dropout), {"prior": "none"}
    prior = from_pretrained(LumosDiT, prior_dir, "I2I prior", "t2i (run the pretrain rule for this prior)")
    model = build_t2i_model(dict(prior.config), text_dim, n_tokens, cond_dropout)
    report = init_from_prior(model, prior)
    log.info("prior %s: copied %d tensors, %d fresh (%s...), %d dropped", prior_dir, report["copied"],
             len(report["fresh"]), ", ".join(report["fresh"][:4]), len(report["dropped"]))
    return model, {"prior": prior_dir, "copied": report["copied"], "fresh": len(report["fresh"])}


def continue_t2i_model(init_dir: str, latent_shape, text_dim: int):
    """An earlier stage's T2I model, rebuilt for latents of `latent_shape` (Table S1's progressive
    resolution): every weight is kept; only the fixed sin-cos position table follows the new size."""
    from lumos.components.loading import from_pretrained
    from lumos.models import LumosDiT

    prev = from_pretrained(LumosDiT, init_dir, "previous-stage T2I model", "t2i.stages (run the previous stage)")
    c, h, _ = latent_shape
    if prev.config.in_channels != c or prev.config.cond_dim != text_dim:
        raise ValueError(f"{init_dir}: model takes {prev.config.in_channels}-channel latents and {prev.config.cond_dim}-d "
                         f"text tokens, but this stage's features are {c}-channel / {text_dim}-d")
    model = LumosDiT.from_config({k: v for k, v in prev.config.items() if not k.startswith("_")} | {"sample_size": h})
    model.load_state_dict(prev.state_dict())
    log.info("stage init %s: latents %dx%d -> %dx%d", init_dir, prev.config.sample_size, prev.config.sample_size, h, h)
    return model, {"init": init_dir, "latent_size": h}


def untrained_t2i_model(model_cfg: ModelSettings, latent_shape, text_dim: int, n_tokens: int, seed: int):
    """A fresh T2I model of `model_cfg` (no prior, no training): the untrained sanity rows."""
    return make_t2i_model(None, model_cfg, latent_shape, text_dim, n_tokens, 0.0, seed)[0]


def finetune(features_dir: str, text_dir: str, name: str, prior_dir: str | None, model_cfg: ModelSettings,
             train_cfg: TrainSettings, cond_dropout: float, outputs: TrainOutputs | str, state_dir: str, seed: int,
             device, stop_after: int | None = None, snapshot_every: int | None = None,
             init_dir: str | None = None) -> dict:
    """Fine-tune `name` (see module docstring) on the pair set; resumable like pretraining.

    `init_dir` continues an earlier stage's T2I model instead (Table S1: the same fine-tune at a
    higher resolution); the prior is then not read."""
    from lumos.data.buckets import bucket_dirs
    from lumos.train import train_diffusion

    spec = parse_finetune(name)
    buckets = bucket_dirs(features_dir)
    if buckets:  # Table S1's multi-scale stage: one (latents, captions) set per aspect-ratio bucket
        if not init_dir:
            raise ValueError(f"{features_dir} is bucketed by aspect ratio: only a later stage (init_dir) trains on it")
        sets = [t2i_training_data(str(b), str(Path(text_dir) / b.name), spec, seed) for b in buckets]
        latents, cond, mask = (list(x) for x in zip(*sets))
        shape_of = min(latents, key=lambda x: abs(x.shape[2] - x.shape[3]))  # sizes the position table
        n_items, text_dim = sum(len(x) for x in latents), cond[0].shape[-1]
    else:
        latents, cond, mask = t2i_training_data(features_dir, text_dir, spec, seed)
        shape_of, n_items, text_dim = latents, len(latents), cond.shape[-1]
    if init_dir:
        model, origin = continue_t2i_model(init_dir, shape_of.shape[1:], text_dim)
    else:
        model, origin = make_t2i_model(prior_dir, model_cfg, latents.shape[1:], text_dim, cond.shape[1],
                                       cond_dropout, seed)
    if buckets:
        origin["buckets"] = {b.name: list(x.shape[1:]) for b, x in zip(buckets, latents)}
    origin.update(pairs=int(n_items // (2 if spec["captions"] == "mixed" else 1)), caption_noise_percent=spec["noise"],
                  text_encoder=spec["text"], captions=spec["captions"])
    return train_diffusion(model, latents, cond, mask, train_cfg, outputs, state_dir, seed=seed, device=device,
                           stop_after=stop_after, cleanup_state=True, snapshot_every=snapshot_every,
                           summary_extra=origin)
