"""Starting a fine-tune from a prior: the steps every task (T2I, NVS, I2V) shares.

A task's `make_<task>_model` seeds torch, then either builds its model on `scratch_backbone`
(prior `none`) or

1. reads the prior and its config (`load_prior`; an I2I prior is a pretrain run, a T2I prior a
   T2I fine-tune, both `LumosDiT`),
2. decides whether the prior's condition path is kept (`keeps_condition`: only an I2I prior that
   reads the same vision features through cross-attention) and builds its own model from the
   prior's config plus what the task adds (a caption path, an input view and a camera, temporal
   modules),
3. copies the prior's weights into it (`from_prior`): every tensor of the same name and shape,
   the patch embedding into its first input channels, the condition path (`CONDITION_PATH`) only
   when kept. A REPA prior's projector and a REG prior's class-token path (`GUIDANCE_KEYS`,
   `lumos.models.guidance`) are never built into a fine-tune: `load_prior` leaves them out of the
   config it returns, so `from_prior` reports their tensors as dropped.

Loading the prior builds a model too, so the order (seed, load, build, copy) fixes every fresh
weight; each task keeps that order.
"""

from __future__ import annotations

import torch

from lumos.settings import ModelSettings

#: A LumosDiT's condition path: the condition projection, the null condition of classifier-free
#: guidance and the learned stand-in tokens. Fresh in a fine-tune unless its prior's is kept.
CONDITION_PATH = ("y_embedder.", "null_cond", "fake_latent")
#: A LumosDiT's config keys of REPA's projector and REG's class token (beyond the paper): a
#: fine-tune from such a prior builds neither (REPA's projector only serves its pretraining loss;
#: REG's token is an input no fine-tune gives).
GUIDANCE_KEYS = ("repa_block", "repa_dim", "repa_hidden", "reg_dim")
#: The kinds of prior a fine-tune with a vision condition (NVS, I2V) starts from (else `none`).
PRIOR_KINDS = ("i2i", "t2i")


def scratch_backbone(model_cfg: ModelSettings, channels: int, size: int) -> dict:
    """The backbone arguments of a fine-tune without a prior (`none`): `model_cfg`'s size for
    latents of `channels` channels and `size` x `size` positions."""
    return {**model_cfg.architecture(), "sample_size": size, "in_channels": channels,
            "learn_sigma": model_cfg.learn_sigma}


def vision_condition(cond_dim: int) -> dict:
    """The fresh condition path of an NVS or I2V model: one `cond_dim`-wide token (a vision
    encoder's CLS) through cross-attention, no classes."""
    return dict(injection="cross_attn", cond_dim=cond_dim, max_cond_tokens=1, num_classes=0)


def check_prior_kind(prior_kind: str) -> None:
    """Stop on a prior kind other than `PRIOR_KINDS` (for a prior folder; `none` has no folder)."""
    if prior_kind not in PRIOR_KINDS:
        raise ValueError(f"prior kind must be none, i2i or t2i, not {prior_kind!r}")


def load_prior(prior_dir: str, what: str, config_key: str):
    """The prior `LumosDiT` in `prior_dir` and its config (without diffusers' `_` entries and
    `GUIDANCE_KEYS`: a fine-tune drops a REPA / REG prior's projector and token path); a missing
    folder fails naming `what` and `config_key` (`lumos.components.loading`)."""
    from lumos.components.loading import from_pretrained
    from lumos.models import LumosDiT

    prior = from_pretrained(LumosDiT, prior_dir, what, config_key)
    return prior, {k: v for k, v in prior.config.items() if not k.startswith("_") and k not in GUIDANCE_KEYS}


def keeps_condition(prior_kind: str, prior_config: dict, cond_dim: int) -> bool:
    """Whether a vision-conditioned fine-tune keeps its prior's condition path: the prior is an
    I2I run that reads what the fine-tune feeds it (one token of the same width through
    cross-attention). A T2I prior's path reads captions and is always replaced."""
    return prior_kind == "i2i" and prior_config.get("injection") == "cross_attn" \
        and prior_config.get("cond_dim") == cond_dim and prior_config.get("max_cond_tokens") == 1


def from_prior(model, prior, keep_condition: bool = False) -> dict:
    """Copy `prior`'s weights into `model` (in place): every tensor of the same name and shape,
    except the condition path (`CONDITION_PATH`) unless `keep_condition`; a patch embedding with
    more input channels than the prior's takes the prior's in its first channels, the rest zeroed.

    Returns `copied` (how many tensors), `fresh` (the model's names left as built: a new condition
    path, new modules, other shapes) and `dropped` (the prior's names the model does not take:
    absent from it, or a condition path not kept)."""
    target, source = model.state_dict(), prior.state_dict()
    copied, fresh = 0, []
    with torch.no_grad():
        for name, value in target.items():
            src = source.get(name)
            if name == "x_embedder.weight" and src is not None and src.shape[1] < value.shape[1]:
                value.zero_()
                value[:, : src.shape[1]].copy_(src)
            elif (not keep_condition and name.startswith(CONDITION_PATH)) or src is None or src.shape != value.shape:
                fresh.append(name)
                continue
            else:
                value.copy_(src)
            copied += 1
    dropped = [n for n in source if n not in target or (not keep_condition and n.startswith(CONDITION_PATH))]
    return {"copied": copied, "fresh": fresh, "dropped": dropped}
