"""Lumos-I2V: image-to-video fine-tuned from a prior (the paper's eq. S2, Figure 3d, G.4, H.4).

Every frame of a clip is encoded by the 2D VAE (latents (C, T, h, w) per clip); the model
(`lumos.models.video.LumosVideoDiT`) is the image DiT with a temporal attention module after each
spatial block. The mask strategy: frame 0 is given clean, at timestep 0, while the other frames
are noised at t; the loss counts frames 1..T-1 only (`loss_mask`). The first frame's vision
features (the CLS of `i2v.encoder`, L2-normalised) stay the cross-attention condition, as in
Lumos-I2I. With the temporal modules' output layers at zero, a model built from an I2I prior
computes every frame exactly as the prior computes it, at step 0.

Priors (as Lumos-NVS's, `lumos.tasks.prior`): `none` (from scratch), `i2i` (a pretrain run: every
weight, its condition path too when it reads the same encoder's CLS through cross-attention) or
`t2i` (a T2I fine-tune: backbone kept, a fresh condition path for the vision features).

Features of a video split (`extract_video_features`): per clip `latents` (C, T, h, w) fp16 and
`<encoder>_cls` (D,) fp16 of the first frame, in the store layout (`lumos.store`), one shard
folder per data shard. Generated videos are written as (H, T W, 3) PNG strips, the data's layout
(`lumos.data.worlds.shapes_video.split_frames` reads them).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import torch

from lumos.training.loader import to_tensor
from lumos.tasks.prior import check_prior_kind, from_prior, keeps_condition, load_prior, scratch_backbone, vision_condition
from lumos.settings import ModelSettings, TrainSettings
from lumos.utils import log, progress

# ----------------------------------------------------------------------------------- features


def extract_video_features(split_dir: str, out_dir: str, components: dict, encoder: str, batch_size: int,
                           device="cpu", part: int = 0, parts: int = 1) -> dict:
    """Encode the clips of a video split (`lumos.data.worlds.shapes_video`): every frame with the VAE
    (`latents` (n, C, T, h, w) fp16) and the first frame with the vision encoder `encoder`
    (`<encoder>_cls` (n, D) fp16, the I2V condition). `batch_size` counts frames per VAE call
    (whole clips: max(1, batch_size // T) clips at a time). Job `part` of `parts` writes every
    `parts`-th data shard (`lumos.features.my_shards`); `lumos.store.gather_parts` joins them."""
    from lumos.components.encoders import load_encoder
    from lumos.components.vae import load_vae

    codec = load_vae(components["vae"], device)
    enc = load_encoder(components[encoder], encoder, device)
    return encode_video_split(split_dir, out_dir, codec, enc, encoder, batch_size, part, parts)


def encode_video_split(split_dir: str, out_dir: str, codec, enc, encoder: str, batch_size: int, part: int = 0,
                       parts: int = 1) -> dict:
    """`extract_video_features` with the VAE codec and the encoder already loaded."""
    from lumos.data.worlds.shapes_video import split_frames
    from lumos.data.shards import read_shard
    from lumos.features import feature_shard_name, my_shards
    from lumos.store import write_shard

    index, mine = my_shards(split_dir, part, parts)
    frames = index.get("frames")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards, sizes, extra = [], [], {}
    for k, shard, _, count in mine:
        strips, records = read_shard(split_dir, shard)
        where = Path(split_dir) / shard
        if len(records) != count:
            raise ValueError(f"{where} holds {len(records)} clips but its index.json says {count}")
        if records and "frames" not in records[0]:
            raise ValueError(f"{where}: records without `frames`: not a video split (lumos.data.worlds.shapes_video)")
        t = int(records[0]["frames"]) if records else int(frames or 0)
        if frames is not None and t != int(frames):
            raise ValueError(f"{where}: clips of {t} frames, the split's index.json says {frames}")
        if any(int(r["frames"]) != t for r in records):
            raise ValueError(f"{where}: clips with different frame counts")
        clips_per_batch = max(1, batch_size // max(t, 1))
        latents, cls = [], []
        for start in progress(range(0, count, clips_per_batch), desc=f"video features {shard}"):
            clips = np.stack([split_frames(s, t) for s in strips[start:start + clips_per_batch]])  # (B, T, H, W, 3)
            b = len(clips)
            lat = codec.encode(clips.reshape(b * t, *clips.shape[2:])).cpu()  # (B T, C, h, w)
            latents.append(lat.reshape(b, t, *lat.shape[1:]).permute(0, 2, 1, 3, 4).half().numpy())
            cls.append(enc(clips[:, 0])[0].cpu().half().numpy())
        columns = {"latents": np.concatenate(latents), f"{encoder}_cls": np.concatenate(cls)}
        write_shard(out, feature_shard_name(k), columns)
        shards.append(feature_shard_name(k))
        sizes.append(count)
        extra["latent_shape"] = list(columns["latents"].shape[1:])
    meta = {"n": index["n"], "shards": shards, "shard_sizes": sizes, "encoders": [encoder], "kind": "video",
            "frames": frames, **{key: index[key] for key in ("stride", "frame_size", "split") if key in index},
            **extra}
    (out / "index.json").write_text(json.dumps(meta, indent=1))
    log.info("video features of %s: %s", split_dir,
             {k: v for k, v in meta.items() if k not in ("shards", "shard_sizes")})
    return meta


# ---------------------------------------------------------------------------------------- rows


def frame_loss_mask(batch: int, frames: int) -> torch.Tensor:
    """(B, 1, T, 1, 1) float32: 0 at frame 0 (given clean), 1 at every other frame."""
    mask = torch.ones(batch, 1, frames, 1, 1)
    mask[:, :, 0] = 0.0
    return mask


def i2v_inputs(latents: np.ndarray | torch.Tensor, cls: np.ndarray) -> dict[str, torch.Tensor]:
    """The model inputs for generating clips from their first frame: `cond` (B, 1, D) the first
    frame's L2-normalised CLS with its mask `cond_mask` (B, 1), and `first` (B, C, h, w), the
    first frame's latent (frame 0 of `latents` (B, C, T, h, w))."""
    lat = latents if isinstance(latents, torch.Tensor) else to_tensor(latents)
    feats = torch.from_numpy(np.asarray(cls).astype(np.float32))[:, None]
    return {"cond": torch.nn.functional.normalize(feats, dim=-1),
            "cond_mask": torch.ones(len(feats), 1, dtype=torch.bool),
            "first": lat[:, :, 0].contiguous()}


class ClipRows:
    """Lumos-I2V training rows (a row source, `lumos.training.rows`): row r is clip r of a video
    features folder. A batch: `x0` (B, C, T, h, w) float32, `cond` (B, 1, D), `cond_mask` (B, 1),
    `first` (B, C, h, w) = x0[:, :, 0], and `loss_mask` (B, 1, T, 1, 1), 0 at frame 0."""

    batch_keys = ("x0", "cond", "cond_mask", "first", "loss_mask")  # `lumos.training.rows.RowSource`

    def __init__(self, features_dir: str, encoder: str):
        from lumos.store import FeatureStore

        self.store, self.encoder = FeatureStore(features_dir), encoder
        self.keys = ["latents", f"{encoder}_cls"]
        for key in self.keys:
            self.store.kind(key)  # a missing array fails here, naming the shard folder
        self.latent_shape = self.store.row_shape("latents")
        if len(self.latent_shape) != 4:
            raise ValueError(f"{features_dir}: latents of shape {self.latent_shape} per row, not (C, T, h, w): "
                             "not a video features folder (lumos.tasks.i2v.extract_video_features)")
        if self.latent_shape[1] < 2:
            raise ValueError(f"{features_dir}: clips of {self.latent_shape[1]} frame; I2V needs at least two")
        self.frames = self.latent_shape[1]
        self.cond_dim = self.store.row_shape(f"{encoder}_cls")[-1]
        self.sizes = [self.store.n]

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        feats = self.store.get(np.asarray(rows, dtype=np.int64), self.keys)
        x0 = to_tensor(feats["latents"])
        return {"x0": x0, **i2v_inputs(x0, feats[f"{self.encoder}_cls"]),
                "loss_mask": frame_loss_mask(len(x0), x0.shape[2])}


# --------------------------------------------------------------------------------------- model


def make_i2v_model(prior_dir: str | None, prior_kind: str, model_cfg: ModelSettings | dict, latent_shape,
                   cond_dim: int, cond_dropout: float, seed: int, num_frames: int | None = None):
    """The model a Lumos-I2V fine-tune starts from, and a summary of where its weights came from.

    `latent_shape` (C, T, h, w); `num_frames` (default T) sizes the frame-position table.
    `prior_kind`: `none` (fresh weights), `i2i` (a pretrain run: every weight kept, the condition
    path too when `lumos.tasks.prior.keeps_condition`) or `t2i` (a T2I fine-tune: backbone kept,
    condition path fresh). The temporal modules are always fresh (zero output: the identity)."""
    from lumos.models.video import LumosVideoDiT

    model_cfg = ModelSettings.from_config(model_cfg, "pretrain.model")
    c, t, h, w = latent_shape
    torch.manual_seed(seed)
    video = dict(num_frames=int(num_frames or t), cond_dropout=cond_dropout)
    fresh_cond = vision_condition(cond_dim)
    if prior_dir is None:
        return LumosVideoDiT(**scratch_backbone(model_cfg, c, h), **fresh_cond, **video), {"prior": "none"}
    check_prior_kind(prior_kind)
    prior, config = load_prior(prior_dir, f"{prior_kind.upper()} prior", "i2v.priors (train the prior first)")
    accepted = inspect.signature(LumosVideoDiT.__init__).parameters
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        log.warning("prior %s: config keys %s are not LumosVideoDiT arguments; left at their defaults",
                    prior_dir, unknown)
        config = {k: v for k, v in config.items() if k in accepted}
    if config["in_channels"] != c or config.get("extra_in_channels") or config.get("camera_dim"):
        raise ValueError(f"{prior_dir}: the prior takes {config['in_channels']}-channel latents (+ "
                         f"{config.get('extra_in_channels', 0)} extra, camera {config.get('camera_dim', 0)}); "
                         f"the clips' latents have {c} channels and no extra input")
    keep = keeps_condition(prior_kind, config, cond_dim)
    model = LumosVideoDiT(**{**config, **({} if keep else fresh_cond), **video, "sample_size": h})
    report = from_prior(model, prior, keep_condition=keep)
    model.initialize_temporal()  # nothing of the prior's lands there; made explicit
    fresh_groups = sorted({n.split(".")[0] for n in report["fresh"]})
    log.info("prior %s (%s): copied %d tensors, fresh %s", prior_dir, prior_kind, report["copied"],
             ", ".join(fresh_groups))
    return model, {"prior": prior_dir, "prior_kind": prior_kind, "condition_kept": keep, "copied": report["copied"],
                   "fresh": report["fresh"]}


def load_i2v_model(model_dir: str):
    """A trained LumosVideoDiT from `model_dir` (a fine-tune's `model` output)."""
    from lumos.components.loading import from_pretrained
    from lumos.models.video import LumosVideoDiT

    return from_pretrained(LumosVideoDiT, model_dir, "trained I2V model", "i2v (rerun the I2V fine-tune)")


def finetune_i2v(features_dir: str, prior_dir: str | None, prior_kind: str, encoder: str, model_cfg: ModelSettings,
                 train_cfg: TrainSettings | dict, cond_dropout: float, outputs, state_dir: str, seed: int, device,
                 stop_after: int | None = None, snapshot_every: int | None = None) -> dict:
    """Fine-tune Lumos-I2V on a video split's features (`ClipRows`); resumable like every run
    (`lumos.training.loop.train_diffusion`: `stop_after`, kills, SIGUSR1/SIGTERM)."""
    from lumos.training.loop import train_diffusion

    rows = ClipRows(features_dir, encoder)
    model, origin = make_i2v_model(prior_dir, prior_kind, model_cfg, rows.latent_shape, rows.cond_dim, cond_dropout,
                                   seed)
    log.info("I2V: %d clips of %d frames, latents %s, prior %s", rows.sizes[0], rows.frames, rows.latent_shape,
             prior_kind if prior_dir else "none")
    origin.update(clips=rows.sizes[0], frames=rows.frames)
    return train_diffusion(model, rows, None, None, train_cfg, outputs, state_dir, seed=seed, device=device,
                           stop_after=stop_after, cleanup_state=True, snapshot_every=snapshot_every,
                           summary_extra={k: v for k, v in origin.items() if k != "fresh"})


# ----------------------------------------------------------------------------------- sampling


def decode_video(codec, latents: torch.Tensor) -> np.ndarray:
    """(B, C, T, h, w) latents -> (B, T, H, W, 3) uint8, every frame through the VAE decoder."""
    b, c, t = latents.shape[:3]
    frames = codec.decode(latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, *latents.shape[3:]))
    return frames.reshape(b, t, *frames.shape[1:])


def sample_videos(model, first: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor | None, frames: int,
                  sample_cfg: dict, guidance_scale: float, generator: torch.Generator | None = None,
                  device="cpu") -> torch.Tensor:
    """Latent clips (B, C, T, h, w) generated from their first frames' latents `first`
    (B, C, h, w) and condition; frame 0 of the result is `first` exactly."""
    from lumos.diffusion.sampling import sample

    b, c, h, w = first.shape
    lat = sample(model, (b, c, frames, h, w), cond, cond_mask, sampler=sample_cfg["sampler"],
                 num_steps=sample_cfg["steps"], guidance_scale=guidance_scale, generator=generator, device=device,
                 model_kwargs={"first": first})
    lat[:, :, 0] = first.to(lat)
    return lat


def generate_videos(model, codec, features_dir: str, out_dir: str, sample_cfg: dict, guidance_scale: float, seed: int,
                    device="cpu", limit: int | None = None, work_dir: str | None = None, part: int = 0,
                    parts: int = 1) -> int:
    """Generate a clip from the first frame of each clip of an evaluation split's features (the
    first `limit` clips): `sample_cfg['batch_size']` clips at a time, each batch seeded by its
    start index; frame 0 is the given first-frame latent exactly. Each video is written as an
    (H, T W, 3) PNG strip `<index:06d>.png` (the data's layout).

    PNGs go to `work_dir` (default `<out_dir>.partial`, outside a rule's declared output) first,
    so a killed job resumes where it stopped (finished batches are skipped); the folder is moved
    to `out_dir` at the end. With `parts` > 1 this job makes every `parts`-th batch only. Returns
    the number of videos this job made."""
    from lumos.data.worlds.shapes_video import tile_frames
    from lumos.sample import batch_generator, write_batches
    from lumos.store import FeatureStore

    store = FeatureStore(features_dir)
    encoder = sample_cfg.get("encoder") or (store.meta.get("encoders") or [None])[0]
    if encoder is None:
        raise ValueError(f"{features_dir}: its index.json names no encoder")
    keys = ["latents", f"{encoder}_cls"]
    shape = store.row_shape("latents")
    if len(shape) != 4:
        raise ValueError(f"{features_dir}: latents of shape {shape} per row, not (C, T, h, w)")
    work = work_dir or f"{str(out_dir).rstrip('/')}.partial"
    model = model.to(device).eval()
    n = min(limit, store.n) if limit is not None else store.n

    def make(start, stop):
        feats = store.get(np.arange(start, stop), keys)
        inputs = i2v_inputs(feats["latents"], feats[f"{encoder}_cls"])
        lat = sample_videos(model, inputs["first"].to(device), inputs["cond"].to(device),
                            inputs["cond_mask"].to(device), shape[1], sample_cfg, guidance_scale,
                            batch_generator(seed, start), device)
        return [tile_frames(clip) for clip in decode_video(codec, lat)]

    return write_batches(n, sample_cfg["batch_size"], make, out_dir, work, part, parts, what="videos")
