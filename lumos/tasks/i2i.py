"""I2I pretraining: a Lumos DiT conditioned on vision-encoder features of the image itself.

Lumos-I2I: DINO(-style) CLS token, L2-normalised, read through cross-attention (eq. 1).
RCG-style: MoCo(-style) global vector, standardised, added to the timestep embedding (adaLN).
The other priors of Figure 8a train on the same pool: class-to-image (the class label of the
image's largest object, as a DiT label embedding) and unconditional.
A run's optional `pool_size` trains on a nested seeded subset of N pool images (Figure 2b's ladder:
`lumos.data.subsets`, membership by each image's key, independent of shard order).
Beyond the paper, REPA and REG runs (`repa` / `reg` blocks, `lumos.models.guidance`) are unconditional
at sampling; in training their batches carry the encoder's patch tokens (`enc_patch`) and class
token (`enc_cls`) of each image, which the trainer's guided loss reads.
"""

from __future__ import annotations

import numpy as np
import torch

from lumos.features import condition_tokens, feature_keys
from lumos.training.loader import to_tensor
from lumos.settings import PATCH_SUBSETS, ModelSettings, RunSettings, TrainSettings
from lumos.training.loop import TrainOutputs
from lumos.utils import log


IMAGENET_CLASSES = 1000


def class_count(run: RunSettings) -> int:
    """Classes of a class-to-image run: ImageNet-1K's 1,000 synsets (`data: imagenet1k`, paper
    scale), else the Shapes world's shape x colour classes."""
    from lumos.data.worlds.shapes import NUM_CLASSES

    return IMAGENET_CLASSES if run.data == "imagenet1k" else NUM_CLASSES


def build_model(model_cfg: ModelSettings | dict, run: RunSettings | dict, latent_shape, cond_dim: int,
                n_tokens: int, enc_dim: int = 0):
    """A fresh LumosDiT for a run (`pretrain.runs.<name>`) on latents of `latent_shape` (C, h, w);
    `enc_dim`: the width of the encoder tokens a REPA / REG run is guided by."""
    from lumos.models import LumosDiT

    model_cfg = ModelSettings.from_config(model_cfg, "pretrain.model")
    run = RunSettings.from_config(run, "pretrain.runs.<run>")
    c, h, w = latent_shape
    if h != w:
        raise ValueError(f"square latents expected, got {latent_shape}")
    return LumosDiT(
        **model_cfg.architecture(),
        sample_size=h,
        in_channels=c,
        learn_sigma=model_cfg.learn_sigma,
        injection=run.injection,
        cond_dim=cond_dim,
        max_cond_tokens=n_tokens,
        cond_dropout=model_cfg.cond_dropout,
        prediction_type=model_cfg.prediction_type or "epsilon",
        num_classes=class_count(run) if run.injection == "class" else 0,
        **guidance_architecture(run, enc_dim),
    )


def guidance_architecture(run: RunSettings, enc_dim: int) -> dict:
    """The LumosDiT arguments of a run's REPA / REG blocks (`lumos.models.guidance`): the aligned
    block, the projector's widths, the REG token's width; {} for other runs."""
    out = {}
    if run.repa:
        out.update(repa_block=run.repa["block"], repa_dim=enc_dim, repa_hidden=run.repa["hidden"])
    if run.reg:
        out["reg_dim"] = enc_dim
    return out


class PoolRows:
    """A run's training rows from a features folder (a row source, `lumos.training.rows.RowSource`): each batch
    reads its rows' latents and the run's condition from the store.

    cross_attn / adaln: encoder tokens (B, L, D) and mask (B, L), L2-normalised per token for
    cross-attention, raw for adaLN (`condition_tokens`); class: labels (B,); none: no condition.
    With the run's `pool_size` only the rows of the nested subset of that size are drawn
    (`lumos.store.SubsetRows`, from each row's `subset_u`): Figure 2b's ladder."""

    def __init__(self, features_dir: str, run: RunSettings):
        from lumos.store import FeatureStore, SubsetRows

        self.injection, self.encoder, self.tokens, self.patch_k = run.injection, run.encoder, run.tokens, run.patch_k
        self.guidance = run.guidance()
        if self.injection in ("cross_attn", "adaln") and not run.encoder:
            raise KeyError(f"a {self.injection} run needs an `encoder` (config key pretrain.runs.<run>.encoder)")
        self.store = FeatureStore(features_dir)
        # the encoder's tokens: the condition (cross_attn, adaln) or a REPA / REG target; then class labels
        guided_tokens = self.injection not in ("class", "none") or self.guidance
        self.keys = (feature_keys(run.encoder, run.tokens) if guided_tokens else []) + (
            ["labels"] if self.injection == "class" else [])
        for key in ["latents", *self.keys]:
            self.store.kind(key)  # a missing array fails here, naming the shard folder
        self.batch_keys = ("x0",) + {"class": ("cond",), "none": ()}.get(self.injection, ("cond", "cond_mask"))
        if self.guidance:  # the REPA target and the REG token (lumos.training.rows.TRAINER_KEYS)
            self.batch_keys += (("enc_patch",) if run.repa else ()) + (("enc_cls",) if run.reg else ())
        self.subset = SubsetRows(self.store, run.pool_size)
        self.sizes = [len(self.subset)]
        if self.injection == "class":
            self._check_labels(class_count(run))

    def _check_labels(self, classes: int) -> None:
        """Every label in [0, classes): a clear error here, not an index error deep in torch."""
        for k, shard in enumerate(self.store.shards):  # one shard's labels at a time (8 bytes a row)
            labels = self.store.array(k, "labels")
            if len(labels) and (labels.min() < 0 or labels.max() >= classes):
                raise ValueError(f"labels of {self.store.folder / shard} lie in [{labels.min()}, {labels.max()}], "
                                 f"outside the run's {classes} classes (config key pretrain.runs.<run>.data)")

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.store.row_shape("latents")

    @property
    def enc_dim(self) -> int:
        """The width of a REPA / REG run's encoder tokens (0 for other runs)."""
        return self.store.row_shape(self.keys[0])[-1] if self.guidance else 0

    @property
    def cond_shape(self) -> tuple[int, int]:
        """(feature dim, token count) of the condition; (1, 1) for class labels / unconditional."""
        if self.injection in ("class", "none"):
            return 1, 1
        shapes = [self.store.row_shape(k) for k in self.keys]
        if self.tokens in PATCH_SUBSETS:  # the CLS and patch_k of the patch tokens
            return shapes[0][-1], 1 + self.patch_k
        return shapes[0][-1], sum(s[0] if len(s) == 2 else 1 for s in shapes)

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        store_rows = self.subset.rows(np.asarray(rows))
        feats = self.store.get(store_rows, ["latents", *self.keys])
        out = {"x0": to_tensor(feats["latents"])}
        if self.guidance:
            if "enc_patch" in self.batch_keys:
                out["enc_patch"] = torch.from_numpy(feats[f"{self.encoder}_patch"].astype(np.float32))
            if "enc_cls" in self.batch_keys:
                out["enc_cls"] = torch.from_numpy(feats[f"{self.encoder}_cls"].astype(np.float32))
        if self.injection == "class":
            out["cond"] = torch.from_numpy(feats["labels"]).long()
        elif self.injection != "none":
            floats = {k: feats[k].astype(np.float32) for k in self.keys}
            out["cond"], out["cond_mask"] = condition_tokens(floats, self.encoder, self.tokens, self.injection,
                                                             self.patch_k, store_rows)
        return out


def load_run_data(features_dir: str, run: RunSettings) -> PoolRows:
    """The row source of a run over cached features (`PoolRows`)."""
    return PoolRows(features_dir, run)


def cond_shape(cond) -> tuple[int, int]:
    """(feature dim, token count) of a run's condition (a tensor or a `PoolRows`), (1, 1) for
    class labels / unconditional."""
    if isinstance(cond, PoolRows):
        return cond.cond_shape
    return (cond.shape[-1], cond.shape[1]) if cond is not None and cond.ndim == 3 else (1, 1)


def untrained_model(model_cfg: ModelSettings, run: RunSettings, latent_shape, cond, seed: int):
    """The run's architecture with seeded fresh weights: Table 1's untrained ceiling row. `cond`
    is the run's condition (a tensor) or its `PoolRows`."""
    torch.manual_seed(seed)
    return build_model(model_cfg, run, latent_shape, *cond_shape(cond), enc_dim=getattr(cond, "enc_dim", 0))


def pretrain(features_dir: str, run: RunSettings, model_cfg: ModelSettings, train_cfg: TrainSettings,
             outputs: TrainOutputs | str, state_dir: str, seed: int, device, stop_after: int | None = None,
             snapshot_every: int | None = None) -> dict:
    """Train one I2I run from cached pool features; see `lumos.training.loop.train_diffusion`. With
    `snapshot_every` the EMA weights every that many steps are kept (the I2I curves of the ablation
    figures); otherwise a declared snapshots folder is left empty."""
    from pathlib import Path

    from lumos.training.loop import train_diffusion

    rows = load_run_data(features_dir, run)
    model = untrained_model(model_cfg, run, rows.latent_shape, rows, seed)
    used = rows.sizes[0]
    log.info("model %s: %.2fM parameters, %d training latents of shape %s (of %d in %s%s), condition %s",
             model_cfg.size, sum(p.numel() for p in model.parameters()) / 1e6, used, rows.latent_shape,
             rows.store.n, features_dir, f", pool_size {run.pool_size}" if run.pool_size else "",
             run.injection if run.injection in ("class", "none") else rows.cond_shape[::-1])
    extra = {"rows": used, "pool_rows": rows.store.n, "pool_size": run.pool_size}
    summary = train_diffusion(model, rows, None, None, train_cfg, outputs, state_dir, seed=seed, device=device,
                              stop_after=stop_after, cleanup_state=True, summary_extra=extra,
                              snapshot_every=snapshot_every, guidance=run.guidance())
    snapshots = getattr(outputs, "snapshots", None)
    if snapshots and not snapshot_every and Path(outputs.model).exists():
        Path(snapshots).mkdir(parents=True, exist_ok=True)
    return summary
