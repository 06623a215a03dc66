"""T2I fine-tuning from an I2I prior (the paper's eq. 2).

The I2I model's weights are loaded, its condition path is swapped for a fresh caption projection
(text-encoder tokens -> MLP -> the same cross-attention layers), and the model is trained on the
text-image pair set with the same diffusion loss, condition dropout and classifier-free guidance.

A fine-tune is named ``<prior>-<text encoder>-<captions>-n<noise %>``:

- prior: a pretrain run (``lumos_i2i``, ``rcg``, ``class_i2i``, ``uncond``), optionally
  ``<run>_pool<N>`` (pretrained on a nested subset of N pool images, Figure 2b), or ``none`` (from scratch);
- text encoder: ``t5`` or ``clip`` (Figure 11);
- captions: ``short`` (raw), ``long`` (detailed) or ``mixed`` (both, as the paper mixes raw and
  long captions following DALL-E 3; the share of long ones is ``t2i.long_caption_fraction``, see
  `caption_passes`);
- noise: the percentage of pairs whose caption is swapped for another image's (Figure 2a).

The grammar (`parse_finetune`, `FINETUNE_PATTERN`) lives in `lumos.workflow.names`, beside the
workflow's other names, and is imported here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from lumos.training.loader import BucketRows, to_tensor
from lumos.tasks.prior import from_prior, load_prior, scratch_backbone
from lumos.settings import ModelSettings, TrainSettings
from lumos.training.loop import TrainOutputs
from lumos.utils import log
from lumos.workflow.names import FINETUNE_PATTERN, FINETUNE_WILDCARD, parse_finetune  # noqa: F401

MAX_CAPTION_PASSES = 100  # a mixed fine-tune's long-caption share is realised to within 1/200


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


def caption_passes(captions: str, long_fraction: float = 0.5) -> list[int]:
    """The caption kind of each pass over the images in one epoch of a fine-tune's rows (0 short,
    1 long; `PairRows` indexes them as ["short", "long"] for ``mixed``, and as its one kind else).

    ``short`` and ``long`` make one pass. ``mixed`` makes P passes, K of them with the long caption,
    where K / P is the fraction nearest `long_fraction` with P <= MAX_CAPTION_PASSES (0.5 -> one
    short then one long pass; 0.95 -> 1 short and 19 long). Each image is drawn with its long
    caption K times out of P, so every image keeps both captions, and the long share of an epoch
    is K / P, within 1 / (2 * MAX_CAPTION_PASSES) of `long_fraction`.
    """
    if captions != "mixed":
        return [0]
    low, high = 1 / MAX_CAPTION_PASSES, 1 - 1 / MAX_CAPTION_PASSES
    if not low <= long_fraction <= high:
        raise ValueError(f"t2i.long_caption_fraction must lie in [{low}, {high}] for a mixed fine-tune, got "
                         f"{long_fraction} (captions `short` or `long` train on one kind only)")
    share = Fraction(long_fraction).limit_denominator(MAX_CAPTION_PASSES)
    return [0] * (share.denominator - share.numerator) + [1] * share.numerator


def check_long_captions(text_dir, meta: dict) -> None:
    """Stop when a split's long captions are (partly) its raw ones: curation repeats the raw caption
    where a source has no long one (`long_from_raw` in the records, counted per shard in the text
    features' index), and a long-caption row or a mixed fine-tune would silently use raw twice."""
    missing = sum((meta.get("long_from_raw") or {}).values())
    if missing:
        raise ValueError(f"{missing} of {meta['n']} captions of {text_dir} have no long caption (their long "
                         "caption would repeat the raw one): give the source long captions (a `.long.txt` beside "
                         "each image; the JSON field named by data.sources.<split>.<k>.long_caption_key; for COCO, "
                         "data.sources.<split>.<k>.long_captions, or data.captioner to have the DAG write them "
                         "with a VLM), or use captions `short`")


def load_captions(text_dir: str, text: str, captions: str, limit: int | None = None):
    """Cached caption tokens (n, L, D) and masks (n, L) of one encoder and caption kind, read lazily
    (`lumos.training.loader.Column`: `tokens[a:b]` reads those captions only). Long captions that are not
    there stop this (`check_long_captions`)."""
    from lumos.training.loader import Column, StoreRows
    from lumos.store import feature_index

    if captions == "long":
        check_long_captions(text_dir, feature_index(text_dir))

    keys = [f"{text}_{captions}", f"{text}_{captions}_mask"]
    source = StoreRows(text_dir, keys)
    return Column(source, keys[0], limit), Column(source, keys[1], limit)


class PairRows:
    """A fine-tune's training rows (a row source, `lumos.training.rows`): virtual row r is image r % n in
    pass r // n, whose caption kind is `caption_passes(...)[r // n]` ("mixed" with the default
    fraction 0.5: 2n rows, one short and one long pass), with the caption of image
    `noisy_index[r % n]` (Figure 2a's noise). Latents come from the pair set's features store,
    caption tokens from its text store, batch by batch."""

    batch_keys = ("x0", "cond", "cond_mask")  # `lumos.training.rows.RowSource`: caption tokens and their mask

    def __init__(self, features_dir: str, text_dir: str, spec: dict, seed: int, long_fraction: float = 0.5):
        from lumos.store import FeatureStore

        self.images, self.text = FeatureStore(features_dir), FeatureStore(text_dir)
        self.n, self.encoder = self.images.n, spec["text"]
        self.kinds = ["short", "long"] if spec["captions"] == "mixed" else [spec["captions"]]
        self.passes = np.asarray(caption_passes(spec["captions"], long_fraction), dtype=np.int64)
        if "long" in self.kinds:
            check_long_captions(text_dir, self.text.meta)
        if self.text.n != self.n:
            raise ValueError(f"{text_dir} holds {self.text.n} captions but {features_dir} holds {self.n} images: "
                             "the text features belong to another split")
        self.keys = [f"{self.encoder}_{kind}" for kind in self.kinds]
        self.images.kind("latents")  # a missing array fails here, naming the shard folder
        for key in self.keys:
            self.text.kind(key)
        index = noisy_caption_index(self.n, spec["noise"] / 100, seed)
        swapped = index != np.arange(self.n)
        self.n_swapped = int(swapped.sum())
        # the caption row of each image; none kept when no caption is swapped (identity)
        self.index = index.astype(np.int32 if self.n < 2**31 else np.int64) if self.n_swapped else None
        self.sizes = [len(self.passes) * self.n]
        self.width = max(self.text.width(k) for k in self.keys)  # every kind padded alike (masked)
        self.latent_shape = self.images.row_shape("latents")
        self.text_dim = self.text.row_shape(self.keys[0])[-1]

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        image, kind = rows % self.n, self.passes[rows // self.n]
        caption = self.index[image].astype(np.int64) if self.index is not None else image
        tokens = np.zeros((len(rows), self.width, self.text_dim), np.float32)
        mask = np.zeros((len(rows), self.width), bool)
        for k, key in enumerate(self.keys):
            here = np.flatnonzero(kind == k)
            if len(here):
                feats = self.text.get(caption[here], [key, f"{key}_mask"])
                width = feats[key].shape[1]
                tokens[here, :width], mask[here, :width] = feats[key], feats[f"{key}_mask"]
        latents = self.images.get(image, ["latents"])["latents"]
        return {"x0": to_tensor(latents), "cond": torch.from_numpy(tokens), "cond_mask": torch.from_numpy(mask)}


def t2i_training_data(features_dir: str, text_dir: str, spec: dict, seed: int,
                      long_fraction: float = 0.5) -> PairRows:
    """The row source of a fine-tune (noise applied, captions mixed): `PairRows`."""
    rows = PairRows(features_dir, text_dir, spec, seed, long_fraction)
    log.info("pairs: %d images, captions %s (%.1f%% long), %d (%.1f%%) with a wrong caption", rows.n, rows.kinds,
             100 * realised_long_fraction(rows), rows.n_swapped, 100 * rows.n_swapped / max(rows.n, 1))
    return rows


def realised_long_fraction(rows: PairRows) -> float:
    """The share of an epoch's rows that carry a long caption (0 or 1 unless mixed)."""
    long = rows.kinds.index("long") if "long" in rows.kinds else None
    return 0.0 if long is None else float(np.mean(rows.passes == long))


def build_t2i_model(base_config: dict, text_dim: int, n_tokens: int, cond_dropout: float):
    """A LumosDiT with the backbone of `base_config` and a fresh caption path (cross-attention)."""
    from lumos.models import LumosDiT

    keep = {k: v for k, v in base_config.items() if not k.startswith("_")}
    keep.update(injection="cross_attn", cond_dim=text_dim, max_cond_tokens=n_tokens, cond_dropout=cond_dropout,
                num_classes=0)
    return LumosDiT(**keep)


def make_t2i_model(prior_dir: str | None, model_cfg: ModelSettings | dict, latent_shape, text_dim: int, n_tokens: int,
                   cond_dropout: float, seed: int):
    """The model a fine-tune starts from: the prior's backbone with a fresh caption path (its
    condition path never kept: `lumos.tasks.prior.from_prior`), or a fresh model of `model_cfg` (prior
    `none`)."""
    model_cfg = ModelSettings.from_config(model_cfg, "pretrain.model")
    torch.manual_seed(seed)
    if prior_dir is None:
        c, h, _ = latent_shape
        backbone = scratch_backbone(model_cfg, c, h) | {"prediction_type": model_cfg.prediction_type or "epsilon"}
        model = build_t2i_model(backbone, text_dim, n_tokens, cond_dropout)
        return model, {"prior": "none"}
    prior, config = load_prior(prior_dir, "I2I prior", "t2i (run the pretrain rule for this prior)")
    model = build_t2i_model(config, text_dim, n_tokens, cond_dropout)
    report = from_prior(model, prior)
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
             init_dir: str | None = None, long_fraction: float = 0.5) -> dict:
    """Fine-tune `name` (see module docstring) on the pair set; resumable like pretraining.

    `init_dir` continues an earlier stage's T2I model instead (Table S1: the same fine-tune at a
    higher resolution); the prior is then not read. `long_fraction` is the share of long captions
    of a ``mixed`` fine-tune (`caption_passes`)."""
    from lumos.data.buckets import bucket_dirs
    from lumos.training.loop import train_diffusion

    spec = parse_finetune(name)
    buckets = bucket_dirs(features_dir)
    if buckets:  # Table S1's multi-scale stage: one (latents, captions) set per aspect-ratio bucket
        if not init_dir:
            raise ValueError(f"{features_dir} is bucketed by aspect ratio: only a later stage (init_dir) trains on it")
        sets = [t2i_training_data(str(b), str(Path(text_dir) / b.name), spec, seed, long_fraction) for b in buckets]
        rows = BucketRows(sets)
        shape = min((s.latent_shape for s in sets), key=lambda x: abs(x[1] - x[2]))  # sizes the position table
        n_tokens = max(s.width for s in sets)
        first = sets[0]
    else:
        first = rows = t2i_training_data(features_dir, text_dir, spec, seed, long_fraction)
        shape, n_tokens = rows.latent_shape, rows.width
    if init_dir:
        model, origin = continue_t2i_model(init_dir, shape, first.text_dim)
    else:
        model, origin = make_t2i_model(prior_dir, model_cfg, shape, first.text_dim, n_tokens, cond_dropout, seed)
    if buckets:
        origin["buckets"] = {b.name: list(s.latent_shape) for b, s in zip(buckets, sets)}
    origin.update(pairs=int(sum(s.n for s in (sets if buckets else [rows]))), caption_noise_percent=spec["noise"],
                  text_encoder=spec["text"], captions=spec["captions"],
                  long_caption_fraction=realised_long_fraction(first))
    return train_diffusion(model, rows, None, None, train_cfg, outputs, state_dir, seed=seed, device=device,
                           stop_after=stop_after, cleanup_state=True, snapshot_every=snapshot_every,
                           summary_extra=origin)
