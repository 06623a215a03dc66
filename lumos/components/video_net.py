"""The FVD/KVD feature network at small scale: a video CNN trained on video Shapes-world ground truth.

It plays I3D's role (Kinetics-400 action recognition; FVD uses its pre-softmax features) for the
video Shapes world (`lumos.data.worlds.shapes_video`): from a clip of T frames it predicts which motions
the clip's objects perform (multi-label over :data:`~lumos.data.worlds.shapes_video.MOTIONS`), which
shapes and colours (at frame 0) it shows and how many objects (see :func:`clip_targets`). Its penultimate layer (:meth:`VideoClassifier.features`) is the
feature space FVD and KVD are computed in (`lumos.eval.video`).

Architecture, (2+1)-D in spirit: every frame with its difference to the previous frame, a
per-frame patch stem (appearance), then temporal and 3-D convs (motion), BatchNorm + GELU
throughout, and global max pooling over (time, height, width), as in the image classifier
(`lumos.components.classifier`). Because the temporal layers only ever see smoothly moving
objects in training, frames put in a different order (or a different motion mix) move the
features.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from lumos.components.loading import from_pretrained
from lumos.utils import log, optimiser_step, progress

HEADS = ("motion", "shape", "colour", "count")
MULTI_LABEL = ("motion", "shape", "colour")  # multi-hot heads (BCE); `count` is a class (CE)


def clip_targets(records: list[dict], max_objects: int = 2) -> dict[str, np.ndarray]:
    """Targets of video records (`shapes_video.clip_record`), all multi-hot over the clip's
    objects except ``count``: ``motion`` (n, 5) which of :data:`~lumos.data.worlds.shapes_video.MOTIONS`
    any object performs, ``shape`` (n, 5) which shapes and ``colour`` (n, 8) which colours (at
    frame 0) are present, ``count`` (n,) the number of objects - 1.

    Presence over objects rather than "the first object's" labels: the first object is the one
    drawn first, which a globally pooled video net can only tell from occlusion, so a
    first-object head is ill-posed for 2-object clips; presence is well-posed for any count."""
    from lumos.data.worlds.shapes import COLOURS, SHAPES
    from lumos.data.worlds.shapes_video import MOTIONS

    colours = list(COLOURS)
    n = len(records)
    out = {
        "motion": np.zeros((n, len(MOTIONS)), np.float32),
        "shape": np.zeros((n, len(SHAPES)), np.float32),
        "colour": np.zeros((n, len(colours)), np.float32),
        "count": np.zeros(n, np.int64),
    }
    for i, rec in enumerate(records):
        objects = rec["clip"]["objects"]
        for obj in objects:
            out["motion"][i, [MOTIONS.index(m) for m in obj["motions"]]] = 1
            out["shape"][i, SHAPES.index(obj["shape"])] = 1
            out["colour"][i, colours.index(obj["colour"])] = 1
        out["count"][i] = min(len(objects), max_objects) - 1
    return out


def head_sizes(max_objects: int = 2) -> dict[str, int]:
    """Output size of every head, in the order of :data:`HEADS`."""
    from lumos.data.worlds.shapes import COLOURS, SHAPES
    from lumos.data.worlds.shapes_video import MOTIONS

    return {"motion": len(MOTIONS), "shape": len(SHAPES), "colour": len(COLOURS), "count": max_objects}


def _conv2d(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.GELU()]


def _conv3d(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm3d(c_out), nn.GELU()]


def to_input(videos) -> torch.Tensor:
    """uint8 videos (B, T, H, W, 3) (numpy or torch) -> float (B, T, H, W, 3) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(videos) if not isinstance(videos, torch.Tensor) else videos)
    return x.float() / 127.5 - 1


class VideoClassifier(ModelMixin, ConfigMixin):
    """Per-frame patch stem -> temporal conv -> 3-D conv -> global max pool -> `feature_dim`
    features -> heads (motion, shape, colour, count; see :func:`clip_targets`).

    Every frame enters with its differences to the previous frame and to the first frame (zero
    for the first): 9 channels, so motion, also slow change (scaling, colour), is visible to the
    first layer. The stem cuts each frame into
    ``patch`` x ``patch`` patches (a strided conv, ViT-like: the cheap part at full resolution),
    then a 3x3 conv per frame; a (3, 1, 1) temporal conv and a 3x3x3 conv with stride 2 (time and
    space) and another 3x3x3 conv mix motion; global max pooling over (time, height, width) ends it.

    Input: videos (B, T, H, W, 3) in [-1, 1] (:func:`to_input` maps uint8 there) at any T >= 1
    and any H, W divisible by ``patch`` (the pooling is global); trained at T = 16, H = W = the
    data resolution."""

    @register_to_config
    def __init__(self, width: int = 16, feature_dim: int = 64, num_motions: int = 5, num_shapes: int = 5,
                 num_colours: int = 8, max_objects: int = 2, patch: int = 4):
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(9, 2 * w, patch, stride=patch), nn.BatchNorm2d(2 * w), nn.GELU(),
            *_conv2d(2 * w, 2 * w),
        )
        self.temporal = nn.Sequential(
            nn.Conv3d(2 * w, 4 * w, (3, 1, 1), padding=(1, 0, 0)), nn.BatchNorm3d(4 * w), nn.GELU(),
            *_conv3d(4 * w, 4 * w, 2), *_conv3d(4 * w, 4 * w),
            nn.AdaptiveMaxPool3d(1), nn.Flatten(),
        )
        self.proj = nn.Linear(4 * w, feature_dim)
        sizes = {"motion": num_motions, "shape": num_shapes, "colour": num_colours, "count": max_objects}
        self.heads = nn.ModuleDict({k: nn.Linear(feature_dim, n) for k, n in sizes.items()})

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """Videos (B, T, H, W, 3) in [-1, 1] -> features (B, feature_dim): the FVD embedding."""
        b, t, h, w, c = videos.shape
        x = videos.permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W)
        step = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1)
        x = torch.cat([x, step, x - x[:, :1]], 2).reshape(b * t, 3 * c, h, w)
        x = self.stem(x)
        x = x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C, T, H', W')
        return self.proj(self.temporal(x))

    def forward(self, videos: torch.Tensor) -> dict[str, torch.Tensor]:
        f = F.gelu(self.features(videos))
        return {k: head(f) for k, head in self.heads.items()}

    @torch.no_grad()
    def embed(self, videos) -> torch.Tensor:
        """uint8 videos (B, T, H, W, 3) -> features (B, feature_dim), in eval mode, on the net's device."""
        return self.features(to_input(videos).to(self.device))


def load_clips(split_dir, limit: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """A video split's first `limit` clips as uint8 (n, T, H, W, 3) plus their records."""
    from lumos.data.worlds.shapes_video import read_clips

    videos, records = [], []
    for frames, record in read_clips(split_dir, limit):
        videos.append(frames)
        records.append(record)
    if not videos:
        raise ValueError(f"video split {split_dir} has no clips")
    return np.stack(videos), records


def head_losses(out: dict, y: dict, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-head losses: BCE summed over each multi-hot head's bits (as the image classifier does:
    averaged, they would be several times smaller than the cross-entropy term and drown), CE for count."""
    losses = {k: F.binary_cross_entropy_with_logits(out[k], y[k][idx], reduction="none").sum(1).mean()
              for k in MULTI_LABEL}
    losses["count"] = F.cross_entropy(out["count"], y["count"][idx])
    return losses


@torch.no_grad()
def evaluate(net: VideoClassifier, videos: np.ndarray, y: dict, batch_size: int = 64) -> dict:
    """Per-head accuracies of `net` on uint8 `videos` with targets `y` (torch tensors), plus the
    majority-class baselines ("chance") of the same clips."""
    net.eval()
    outs = [net(to_input(videos[s : s + batch_size])) for s in range(0, len(videos), batch_size)]
    out = {k: torch.cat([o[k] for o in outs]) for k in HEADS}
    m: dict = {"n_val": int(len(videos))}
    for k in MULTI_LABEL:
        pred, true = out[k] > 0, y[k] > 0.5
        m[f"val_{k}_bit_accuracy"] = (pred == true).float().mean().item()
        m[f"val_{k}_set_exact"] = (pred == true).all(1).float().mean().item()
        m[f"val_{k}_recall"] = (pred & true).sum().item() / max(1, true.sum().item())
        # chance: predict each bit's majority value over these same clips
        majority = true.float().mean(0) >= 0.5
        m[f"chance_{k}_bit_accuracy"] = (true == majority).float().mean().item()
        m[f"chance_{k}_set_exact"] = (true == majority).all(1).float().mean().item()
    for k in ("count",):
        m[f"val_{k}_accuracy"] = (out[k].argmax(1) == y[k]).float().mean().item()
        m[f"chance_{k}_accuracy"] = (y[k] == y[k].mode().values).float().mean().item()
    return m


def train_video_net(split_dir, cfg: dict, out_dir, seed: int = 0) -> dict:
    """Train the video classifier on the labelled video split at `split_dir` and save it.

    cfg: ``steps``, ``batch_size``, ``lr``, ``width``, ``feature_dim``; optional ``patch`` (the
    stem's patch size, default 4), ``clips`` (read at
    most this many; default all) and ``val_clips`` (default min(200, n // 10)). The first
    ``val_clips`` clips in split order are held out: never trained on, they give the held-out
    accuracies (and their majority-class "chance" baselines) written to
    ``out_dir/train_summary.json`` with the final training losses. Augmentation: horizontal flip
    (it changes motion directions, never a motion's kind). Returns the summary dict."""
    t0 = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    videos, records = load_clips(split_dir, cfg.get("clips"))
    n = len(videos)
    n_val = int(cfg.get("val_clips", min(200, n // 10)))
    if not 0 < n_val < n:
        raise ValueError(f"video net: {n} clips in {split_dir} leave no training or no held-out clips (val_clips={n_val})")
    y = {k: torch.from_numpy(v) for k, v in clip_targets(records).items()}
    sizes = head_sizes()
    net = VideoClassifier(cfg["width"], cfg["feature_dim"], sizes["motion"], sizes["shape"], sizes["colour"], sizes["count"],
                          patch=int(cfg.get("patch", 4)))
    log.info("video_net: %d clips of %s (%d held out), %d parameters", n, videos.shape[1:], n_val,
             sum(p.numel() for p in net.parameters()))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=1e-4)
    steps = int(cfg["steps"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=max(1, steps), pct_start=0.1)
    x_all = torch.from_numpy(videos)
    losses = []
    net.train()
    for step in progress(range(steps), desc="video_net"):
        idx = torch.randint(n_val, n, (cfg["batch_size"],), generator=gen)
        x = to_input(x_all[idx])
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(3), x)
        parts = head_losses(net(x), y, idx)
        loss = sum(parts.values())
        optimiser_step(opt, loss, step, "video-net")
        sched.step()
        losses.append({k: v.item() for k, v in parts.items()})
        if step % 50 == 0:
            log.info("video_net step %d loss %.4f (%s)", step, loss.item(),
                     ", ".join(f"{k} {v.item():.3f}" for k, v in parts.items()))
    metrics = evaluate(net, videos[:n_val], {k: v[:n_val] for k, v in y.items()})
    tail = losses[-20:]  # final losses: mean over the last 20 steps
    final = {f"final_loss_{k}": float(np.mean([d[k] for d in tail])) if tail else float("nan") for k in HEADS}
    summary = {
        "split": str(split_dir), "n_clips": int(n), "n_train": int(n - n_val),
        "held_out": f"the first {n_val} clips of the split (in split order), never trained on",
        "frames": int(videos.shape[1]), "image_size": int(videos.shape[2]),
        "steps": steps, "batch_size": int(cfg["batch_size"]), "lr": float(cfg["lr"]),
        "final_loss": float(sum(final.values())), **final, "seed": int(seed),
        "train_seconds": round(time.time() - t0, 1),
        **metrics,
    }
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    net.save_pretrained(str(out_dir))
    (Path(out_dir) / "train_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("video_net: %s", summary)
    return summary


def load_video_net(spec: dict, device="cpu") -> VideoClassifier:
    """Load the trained video classifier of config block `components.video_net` (``{"pretrained": path}``)."""
    net = from_pretrained(VideoClassifier, spec["pretrained"], "FVD video feature network",
                          "components.video_net.pretrained")
    return net.to(device).eval()
