"""Typed settings: small dataclasses built from validated config blocks.

Defaults live in one place, `config/schema.yaml`: `from_config` validates a block against the
schema at its key path (filling the schema's defaults), then builds the object, so a value reaches
the code it sets in one hop (`TrainSettings.lr` -> the optimiser) and a wrong one fails naming its
key (`config key 't2i.train.lr': 'abc' is not of type 'number'`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lumos.config import validate_slice


class _FromConfig:
    """`from_config(block, key)`: validate `block` as config key `key`, then build the dataclass."""

    @classmethod
    def from_config(cls, block, key: str):
        if isinstance(block, cls):
            return block
        block = validate_slice({key: dict(block)})[key]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in block.items() if k in names}, **({"key": key} if "key" in names else {}))

    def replace(self, **changes):
        """A copy with `changes` (the settings are frozen)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainSettings(_FromConfig):
    """A training block (`pretrain.train`, `t2i.train`, `t2i.stages.<i>.train`): optimiser, EMA,
    precision and checkpointing of one run. `key` is where it came from, for error messages."""

    steps: int
    batch_size: int
    lr: float
    grad_accum: int
    weight_decay: float
    warmup_steps: int
    grad_clip: float | None
    ema_decay: float
    ema_warmup: bool
    mixed_precision: str
    gradient_checkpointing: bool
    checkpoint_every: int
    log_every: int
    loader_workers: int = 0
    prefetch: int = 2
    compile: bool = False
    compile_mode: str = "default"
    fused_adamw: bool = False
    attention: str = "auto"
    nan_check_every: int | None = None
    snr_gamma: float | None = None
    key: str = "pretrain.train"

    # The fields that do not change a run's weights, so not its resume key (`resume_key`,
    # `lumos.training.resume`): a run killed under one value resumes under another.
    LOADER_FIELDS = ("loader_workers", "prefetch")  # how batches are read, not which
    LOGGING_FIELDS = ("log_every", "checkpoint_every")  # how often rows and checkpoints are written
    # how each step is computed, not what it computes (equal up to float rounding). fused_adamw is
    # not among them: the optimiser state a checkpoint holds follows it.
    STEP_FIELDS = ("compile", "compile_mode", "attention", "nan_check_every")
    NOT_WEIGHT_FIELDS = (*LOADER_FIELDS, *LOGGING_FIELDS, *STEP_FIELDS)
    # objective options added after runs existed: in the key only when set, so the runs that do not
    # use them keep their keys (and resume)
    UNSET_NOT_IN_KEY = ("snr_gamma",)

    def resume_key(self) -> dict:
        """The settings a run's weights depend on (what keys its resumable state): every field
        but `NOT_WEIGHT_FIELDS`, so a run resumed with more or fewer loader workers, another
        logging cadence, or torch.compile switched on, continues from its checkpoint."""
        return {k: v for k, v in vars(self).items()
                if k not in self.NOT_WEIGHT_FIELDS and not (k in self.UNSET_NOT_IN_KEY and v is None)}

    def nan_check_interval(self, device_type: str) -> int:
        """Steps between checks of the loss for nan/inf: `nan_check_every`, or when unset every
        step on the CPU (a check costs nothing there) and every `log_every` steps elsewhere (a
        check waits for the device to finish the step, which stalls the queue of work)."""
        if self.nan_check_every:
            return self.nan_check_every
        return 1 if device_type == "cpu" else self.log_every


@dataclass(frozen=True)
class ModelSettings(_FromConfig):
    """The `pretrain.model` block: the DiT size shared by every prior and fine-tune (`depth`, when
    set, replaces the size's number of blocks)."""

    size: str
    learn_sigma: bool
    cond_dropout: float
    depth: int | None = None
    prediction_type: str | None = None  # unset: epsilon, as the paper (eq. S1)

    def architecture(self) -> dict:
        """The LumosDiT arguments of the size (depth, hidden_size, num_heads, patch_size), with
        `depth` overridden when set."""
        from lumos.models import DIT_SIZES

        return {**DIT_SIZES[self.size], **({"depth": self.depth} if self.depth else {})}


@dataclass(frozen=True)
class RunSettings(_FromConfig):
    """A `pretrain.runs.<name>` block: the prior's condition. `pool_size` (Figure 2b's ladder,
    from a `<run>_pool<N>` name) trains on the nested seeded subset of N pool images
    (`lumos.data.subsets`)."""

    injection: str
    tokens: str
    encoder: str | None = None
    data: str = "pool"
    pool_size: int | None = None
    patch_k: int | None = None
    repa: dict | None = None  # REPA's alignment: {block, weight, hidden} (lumos.models.guidance)
    reg: dict | None = None  # REG's entangled class token: {weight} (lumos.models.guidance)

    def __post_init__(self):
        if self.tokens in PATCH_SUBSETS and not self.patch_k:
            raise ValueError(f"tokens {self.tokens} keeps patch_k patch tokens: set config key pretrain.runs.<run>.patch_k")
        if not (self.repa or self.reg):
            return
        where = "config key pretrain.runs.<run>"
        if self.injection not in ("none", "class") or not self.encoder:
            raise ValueError(f"a REPA / REG run reads an encoder in training only and takes no encoder tokens at "
                             f"sampling: set injection none (unconditional) or class (class-conditional, as their "
                             f"papers' ImageNet models) and an encoder ({where}; got injection {self.injection}, "
                             f"encoder {self.encoder})")
        if self.repa and self.tokens not in ("patch", "cls_patch"):
            raise ValueError(f"REPA aligns with the encoder's patch tokens: {where}.tokens must be patch or cls_patch "
                             f"(cls_patch with reg), not {self.tokens}")
        if self.reg and self.tokens not in ("cls", "cls_patch"):
            raise ValueError(f"REG denoises the encoder's class token: {where}.tokens must be cls or cls_patch "
                             f"(cls_patch with repa), not {self.tokens}")

    def guidance(self) -> dict | None:
        """The run's REPA / REG blocks ({"repa": ..., "reg": ...}), None for a run with neither."""
        return {"repa": self.repa, "reg": self.reg} if (self.repa or self.reg) else None


PATCH_SUBSETS = ("cls_top", "cls_random")  # token sets of the CLS and a subset of the patch tokens (Figure S2)
