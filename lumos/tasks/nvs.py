"""Lumos-NVS: novel view synthesis fine-tuned from a prior (the paper's eq. S1, Figure 3c).

The model denoises the target view's latent given

- the input view's latent, concatenated channel-wise to the noisy latent (the patch embedding
  widened; the new input channels start at zero),
- the relative camera pose from the input view to the target view, (R, T) flattened to 12 numbers
  (`lumos.data.worlds.shapes3d` defines the convention), embedded and added to the timestep embedding
  (the embedder's last layer starts at zero),
- the input view's vision features (the CLS of `nvs.encoder`, L2-normalised) through the
  cross-attention layers.

With both new parts at zero, a model built from an I2I prior computes exactly what the prior
computes at step 0. Classifier-free guidance drops the input view (its features and its latent);
the camera stays in both branches.

The fine-tune predicts what `nvs.prediction_type` says (`LumosDiT.config.prediction_type`):
epsilon as in eq. S1, or x0 (`sample`, the tiny preset), whose loss weights the high-noise steps
that set a view's layout as much as the others; the raw outputs at step 0 are the prior's either
way.

Priors (`nvs.priors`, label -> source): `none` (from scratch), a pretrain run (an I2I prior; its
condition path is kept when it reads the same encoder's CLS through cross-attention), or a T2I
fine-tune (`<prior>-<text>-<captions>-n<noise>`: its backbone, with a fresh condition path for
the vision features, as the paper transfers PixArt-alpha).

Views come from a rendered-views split: `views_per_object` consecutive rows per object (test
splits: row 0 the input view, then the targets), with each view's camera in the features store
(`c2w`, `object`; `lumos.features.view_columns`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from lumos.training.loader import to_tensor
from lumos.tasks.prior import check_prior_kind, from_prior, keeps_condition, load_prior, scratch_backbone, vision_condition
from lumos.settings import ModelSettings, TrainSettings
from lumos.utils import log, progress

CAMERA_DIM = 12  # (R, T): 9 + 3


def relative_pose_vectors(c2w_input: np.ndarray, c2w_target: np.ndarray) -> np.ndarray:
    """(B, 12) float32: R (row-major) and T of each target camera in its input camera's frame,
    inv(c2w_input) @ c2w_target (`lumos.data.worlds.shapes3d.relative_pose`, batched)."""
    rel = np.linalg.inv(np.asarray(c2w_input, np.float64)) @ np.asarray(c2w_target, np.float64)
    return np.concatenate([rel[:, :3, :3].reshape(len(rel), 9), rel[:, :3, 3]], axis=1).astype(np.float32)


def views_per_object(store) -> int:
    """The view count of a rendered-views features folder (its index's `views_per_object`)."""
    v = store.meta.get("views_per_object")
    if not v:
        raise ValueError(f"{store.folder} is not a rendered-views split (no views_per_object in its index.json)")
    if store.n % v:
        raise ValueError(f"{store.folder}: {store.n} views is not a whole number of objects of {v} views")
    return int(v)


class ViewRows:
    """Lumos-NVS training rows (a row source, `lumos.training.rows`): virtual row r is an ordered pair of
    two different views of one object, (input, target), over every object of the split:
    objects x V x (V - 1) rows. A batch reads both views' latents, the input view's CLS and both
    cameras from the features store."""

    batch_keys = ("x0", "cond", "cond_mask", "concat", "camera")  # `lumos.training.rows.RowSource`; see `nvs_inputs`

    def __init__(self, features_dir: str, encoder: str):
        from lumos.store import FeatureStore

        self.store, self.encoder = FeatureStore(features_dir), encoder
        self.views = views_per_object(self.store)
        if self.views < 2:
            raise ValueError(f"{features_dir}: NVS training needs at least two views per object")
        self.objects = self.store.n // self.views
        self.keys = ["latents", f"{encoder}_cls", "c2w", "object"]
        for key in self.keys:
            self.store.kind(key)  # a missing array fails here, naming the shard folder
        self.sizes = [self.objects * self.views * (self.views - 1)]
        self.latent_shape = self.store.row_shape("latents")
        self.cond_dim = self.store.row_shape(f"{encoder}_cls")[-1]

    def pairs(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Store rows of the (input, target) views of virtual rows `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        v = self.views
        obj, rest = np.divmod(rows, v * (v - 1))
        first, second = np.divmod(rest, v - 1)
        second = second + (second >= first)  # skip the input view itself
        return obj * v + first, obj * v + second

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        inp, tgt = self.pairs(rows)
        a = self.store.get(inp, self.keys)
        b = self.store.get(tgt, ["latents", "c2w", "object"])
        if not np.array_equal(a["object"], b["object"]):
            raise ValueError(f"{self.store.folder}: views of one object are not consecutive rows "
                             f"({self.views} per object expected)")
        return nvs_inputs(a, self.encoder, b["c2w"]) | {"x0": to_tensor(b["latents"])}


def nvs_inputs(inputs: dict, encoder: str, c2w_target: np.ndarray) -> dict[str, torch.Tensor]:
    """The model inputs for generating target views from input views: `cond` (B, 1, D) the input
    view's normalised CLS with its mask, `concat` its latent and `camera` the relative pose."""
    cls = torch.from_numpy(inputs[f"{encoder}_cls"].astype(np.float32))[:, None]
    return {"cond": torch.nn.functional.normalize(cls, dim=-1), "cond_mask": torch.ones(len(cls), 1, dtype=torch.bool),
            "concat": to_tensor(inputs["latents"]),
            "camera": torch.from_numpy(relative_pose_vectors(inputs["c2w"], c2w_target))}


# ------------------------------------------------------------------------------------------ model


def make_nvs_model(prior_dir: str | None, prior_kind: str, model_cfg: ModelSettings | dict, latent_shape,
                   cond_dim: int, cond_dropout: float, seed: int, prediction_type: str = "epsilon"):
    """The model a Lumos-NVS fine-tune starts from, and a summary of where its weights came from.

    `prior_kind`: `none` (fresh weights), `i2i` (a pretrain run: every weight kept, the condition
    path too when `lumos.tasks.prior.keeps_condition`) or `t2i` (a T2I fine-tune: backbone kept,
    condition path fresh). In every case the widened patch embedding's new channels and the camera
    embedder's output layer start at zero (`lumos.tasks.prior.from_prior`). `prediction_type` is what
    the fine-tuned model predicts (the priors predict epsilon; `nvs.prediction_type`)."""
    from lumos.models import LumosDiT

    model_cfg = ModelSettings.from_config(model_cfg, "pretrain.model")
    c, h, w = latent_shape
    torch.manual_seed(seed)
    views = dict(extra_in_channels=c, camera_dim=CAMERA_DIM, cond_dropout=cond_dropout, prediction_type=prediction_type)
    fresh_cond = vision_condition(cond_dim)
    if prior_dir is None:
        return LumosDiT(**scratch_backbone(model_cfg, c, h), **fresh_cond, **views), {"prior": "none"}
    check_prior_kind(prior_kind)
    prior, config = load_prior(prior_dir, f"{prior_kind.upper()} prior", "nvs.priors (train the prior first)")
    if config["in_channels"] != c or config.get("extra_in_channels"):
        raise ValueError(f"{prior_dir}: the prior takes {config['in_channels']}-channel latents (+ "
                         f"{config.get('extra_in_channels', 0)} extra), the views' latents have {c} channels")
    keep = keeps_condition(prior_kind, config, cond_dim)
    model = LumosDiT(**{**config, **({} if keep else fresh_cond), **views, "sample_size": h})
    report = from_prior(model, prior, keep_condition=keep)
    log.info("prior %s (%s): copied %d tensors, fresh %s", prior_dir, prior_kind, report["copied"],
             ", ".join(report["fresh"]))
    return model, {"prior": prior_dir, "prior_kind": prior_kind, "condition_kept": keep, "copied": report["copied"],
                   "fresh": report["fresh"]}


def finetune_nvs(features_dir: str, prior_dir: str | None, prior_kind: str, encoder: str, model_cfg: ModelSettings,
                 train_cfg: TrainSettings, cond_dropout: float, outputs, state_dir: str, seed: int, device,
                 stop_after: int | None = None, snapshot_every: int | None = None,
                 prediction_type: str = "epsilon") -> dict:
    """Fine-tune Lumos-NVS on a rendered-views split's features; resumable like every run."""
    from lumos.training.loop import train_diffusion

    rows = ViewRows(features_dir, encoder)
    model, origin = make_nvs_model(prior_dir, prior_kind, model_cfg, rows.latent_shape, rows.cond_dim, cond_dropout,
                                   seed, prediction_type)
    log.info("NVS: %d objects x %d views (%d ordered pairs), latents %s, prior %s", rows.objects, rows.views,
             rows.sizes[0], rows.latent_shape, prior_kind if prior_dir else "none")
    origin.update(objects=rows.objects, views_per_object=rows.views, prediction_type=prediction_type)
    return train_diffusion(model, rows, None, None, train_cfg, outputs, state_dir, seed=seed, device=device,
                           stop_after=stop_after, cleanup_state=True, snapshot_every=snapshot_every,
                           summary_extra={k: v for k, v in origin.items() if k != "fresh"})


# ------------------------------------------------------------------------------------- evaluation


def test_objects(split_dir: str, limit: int | None = None):
    """(object number, views (V, H, W, 3) uint8, records) of a rendered test split, object by
    object in order, streamed across its shards (bounded memory)."""
    from lumos.data.shards import iter_shards, split_index

    v = split_index(split_dir).get("views_per_object")
    if not v:
        raise ValueError(f"{split_dir} is not a rendered-views split (no views_per_object in its index.json)")
    images, records, k = [], [], 0
    for _, pixels, recs in iter_shards(split_dir):
        for img, rec in zip(pixels, recs):
            images.append(img)
            records.append(rec)
            if len(images) == v:
                if limit is not None and k >= limit:
                    return
                if records[0].get("role") != "input" or len({r["object"] for r in records}) != 1:
                    raise ValueError(f"{split_dir}: object {k}'s views are not an input view then its targets")
                yield k, np.stack(images), records
                images, records, k = [], [], k + 1


def generate_views(model, codec, store, encoder: str, k: int, records: list[dict], sample_cfg: dict,
                   guidance_scale: float, seed: int, device="cpu") -> np.ndarray:
    """Test object `k`'s target views (uint8), generated from its input view's features in
    `store` (rows k V .. k V + V - 1), `sample_cfg['batch_size']` views at a time."""
    from lumos.diffusion.sampling import sample

    v = len(records)
    feats = store.get(np.arange(k * v, (k + 1) * v), ["latents", f"{encoder}_cls", "c2w", "object"])
    if not np.array_equal(feats["object"], [r["object"] for r in records]):
        raise ValueError(f"{store.folder} rows {k * v}-{(k + 1) * v - 1} are not object {k}'s views")
    first = {key: np.repeat(feats[key][:1], v - 1, axis=0) for key in feats}
    inputs = nvs_inputs(first, encoder, feats["c2w"][1:])
    pred, bs = [], sample_cfg["batch_size"]
    for start in range(0, v - 1, bs):
        part = {key: val[start:start + bs].to(device) for key, val in inputs.items()}
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k * 1_000 + start)
        lat = sample(model, tuple(part["concat"].shape), part["cond"], part["cond_mask"],
                     sampler=sample_cfg["sampler"], num_steps=sample_cfg["steps"], guidance_scale=guidance_scale,
                     generator=gen, device=device, model_kwargs={"concat": part["concat"], "camera": part["camera"]})
        pred.append(codec.decode(lat))
    return np.concatenate(pred)


def evaluate_nvs(model, codec, data_dir: str, features_dir: str, encoder: str, out_dir: str, sample_cfg: dict,
                 guidance_scale: float, seed: int, device="cpu", objects: int | None = None, lpips_metric=None,
                 save_views: int = 0) -> dict:
    """Generate every target view of the first `objects` test objects from their input view and
    score them against the renders: `metrics.csv` (one row per view) and `summary.json` (means
    per elevation) in `out_dir`; the first `save_views` objects' generated views are kept as
    `views/object-<k>.png` strips (Figure 7). `model` None scores the baseline that returns the
    input view unchanged; `model` "vae" scores the target views passed through the VAE (`codec`),
    the ceiling of any latent model with this VAE."""
    from PIL import Image

    from lumos.data.shards import split_index
    from lumos.eval.image_similarity import view_metrics
    from lumos.store import FeatureStore

    if model is None:  # the baselines read the renders only
        what, predict = "baseline (input view)", lambda k, images, records: np.repeat(images[:1], len(records) - 1, 0)
    elif isinstance(model, str):
        if model != "vae":
            raise ValueError(f"model must be a LumosDiT, None (the input-view baseline) or 'vae', not {model!r}")
        what, predict = "VAE ceiling", lambda k, images, records: codec.decode(codec.encode(images[1:]))
    else:
        model, store = model.to(device).eval(), FeatureStore(features_dir)
        what = "model"

        def predict(k, images, records):
            return generate_views(model, codec, store, encoder, k, records, sample_cfg, guidance_scale, seed, device)

    out = Path(out_dir)
    (out / "views").mkdir(parents=True, exist_ok=True)
    index = split_index(data_dir)
    total = min(objects or index["n"], index["n"] // (index.get("views_per_object") or 1))
    rows = []
    for k, images, records in progress(test_objects(data_dir, objects), total=total, desc="nvs eval"):
        pred = predict(k, images, records)
        scores = view_metrics(images[1:], pred, lpips_metric)
        for j, rec in enumerate(records[1:]):
            rows.append({"object": k, "view": rec["view"], "azimuth": round(float(rec["azimuth"]), 4),
                         "elevation": round(float(rec["elevation"]), 4),
                         **{m: float(s[j]) for m, s in scores.items()}})
        if k < save_views:
            Image.fromarray(np.concatenate([images[0], *pred], axis=1)).save(out / "views" / f"object-{k:05d}.png")
    summary = summarise(rows)
    write_rows(rows, out / "metrics.csv")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("NVS %s: %s", what, summary)
    return summary


def summarise(rows: list[dict]) -> dict:
    """Mean of each metric per target elevation (rounded to the degree), and the view count."""
    out = {}
    for elev in sorted({round(r["elevation"]) for r in rows}):
        here = [r for r in rows if round(r["elevation"]) == elev]
        metrics = [m for m in ("psnr", "ssim", "lpips") if m in here[0]]
        out[f"elev{elev}"] = {"views": len(here), **{m: float(np.mean([r[m] for r in here])) for m in metrics}}
    return out


def write_rows(rows: list[dict], path) -> None:
    """Per-view metrics as CSV."""
    fields = list(rows[0]) if rows else ["object", "view", "azimuth", "elevation", "psnr", "ssim"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
