"""Vision encoders: a ViT exposing a CLS token and patch tokens.

Tiny/smoke: a small `transformers.ViTModel` trained in the DAG, DINO-style (self-distillation,
no labels) or MoCo-v3-style (contrastive). Paper: `facebook/dino-vitb16` (transformers) or the
MoCo v3 authors' checkpoint loaded into a timm ViT-B/16. One loader, `load_encoder`, for all.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lumos.components.loading import MissingWeightsError, from_pretrained, looks_local
from lumos.utils import log, optimiser_step, progress


RESIZE_FILTERS = ("bicubic", "bilinear")  # `components.<encoder>.resize`


class VisionEncoder:
    """Wraps a ViT: uint8 images in, (CLS (B, D), patch tokens (B, N, D)) out.

    `resize` is how `preprocess` brings the shorter side to `input_size` before the centre crop:
    ``bicubic`` (antialiased; this workflow's own encoders train and run so), or ``bilinear``, the
    released Lumos T2I model's torchvision preprocessing of PIL images (Resize(input_size) with
    PIL's bilinear filter + CenterCrop(input_size))."""

    def __init__(self, model: nn.Module, kind: str, input_size: int, mean, std, device="cpu", resize: str = "bicubic"):
        if resize not in RESIZE_FILTERS:
            raise ValueError(f"resize filter {resize!r}: expected one of {RESIZE_FILTERS}")
        self.model = model.to(device).eval()
        self.kind = kind
        self.input_size = input_size
        self.resize = resize
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.device = device

    def preprocess(self, images) -> torch.Tensor:
        """Resize the shorter side to `input_size` (`resize` filter), centre-crop, normalise."""
        x = torch.as_tensor(np.asarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        h, w = resized_size(*x.shape[-2:], self.input_size, self.resize)
        if (h, w) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=(h, w), mode=self.resize, antialias=True)
        top, left = crop_offsets(h, w, self.input_size, self.resize)
        x = x[..., top : top + self.input_size, left : left + self.input_size]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokens(self.preprocess(images))
        return tokens[:, 0], tokens[:, 1:]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All output tokens (B, 1 + N, D) after the final norm."""
        if self.kind == "transformers":
            return self.model(pixel_values=x).last_hidden_state
        if self.kind == "clip_vision":  # CLIP's final norm applies to the pooled CLS only; here to every token
            return self.model.post_layernorm(self.model(pixel_values=x).last_hidden_state)
        return self.model.forward_features(x)


def resized_size(h: int, w: int, size: int, resize: str = "bicubic") -> tuple[int, int]:
    """(height, width) with the shorter side `size`. The long side is rounded for ``bicubic``, and
    truncated for ``bilinear`` as torchvision's Resize(size) does (the released model's)."""
    short = min(h, w)
    if short == size:
        return h, w
    if resize == "bilinear":
        side = lambda v: int(size * v / short)  # noqa: E731  (torchvision's arithmetic)
    else:
        side = lambda v: round(v * (size / short))  # noqa: E731
    return (size, side(w)) if h <= w else (side(h), size)


def crop_offsets(h: int, w: int, size: int, resize: str = "bicubic") -> tuple[int, int]:
    """(top, left) of the centred `size` crop: floored for ``bicubic``, rounded half to even for
    ``bilinear`` as torchvision's CenterCrop does."""
    if resize == "bilinear":
        return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return (h - size) // 2, (w - size) // 2


def image_processor(input_size: int, mean, std, resize: str = "bicubic", clip: bool = False):
    """The transformers image processor doing what `VisionEncoder.preprocess` does: shorter side to
    `input_size` with PIL's `resize` filter, centre crop, 1/255, `(x - mean) / std`. It is the
    layout of the hub's CLIP (`CLIPImageProcessor`) and DINOv2 (`BitImageProcessor`) configs, so
    `AutoImageProcessor.from_pretrained(folder)` works on the component folders (transformers 4.x
    and 5.x). Images already `input_size` square give `preprocess`'s tensor (float rounding apart);
    on others transformers resizes to uint8 (measured: within 1.1 grey levels of 255) and
    truncates the long side where ``bicubic`` here rounds it (`resized_size`)."""
    from PIL import Image
    from transformers import BitImageProcessor, CLIPImageProcessor

    if resize not in RESIZE_FILTERS:
        raise ValueError(f"resize filter {resize!r}: expected one of {RESIZE_FILTERS}")
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[resize]
    return (CLIPImageProcessor if clip else BitImageProcessor)(
        size={"shortest_edge": input_size}, crop_size={"height": input_size, "width": input_size},
        resample=int(resample), image_mean=[float(m) for m in mean], image_std=[float(s) for s in std],
        do_convert_rgb=True,
    )


TRAINED_MEAN_STD = [0.5] * 3  # `_batches` maps pixels to [-1, 1]: x / 127.5 - 1 = (x / 255 - 0.5) / 0.5


def save_trained(model, out_dir: str, image_size: int) -> None:
    """Save a trained ViT with the image processor of its training preprocessing (`_batches`:
    `image_size` images, mean = std = 0.5), as the schema's defaults for the encoder load it."""
    model.save_pretrained(out_dir)
    image_processor(image_size, TRAINED_MEAN_STD, TRAINED_MEAN_STD).save_pretrained(out_dir)


def build_tiny_vit(image_size: int, cfg: dict):
    """A small transformers ViTModel (no pooler) from a `components.<enc>.train` block."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=image_size,
        patch_size=cfg["patch_size"],
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=4 * cfg["hidden_size"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTModel(config, add_pooling_layer=False)


def random_views(x: torch.Tensor, gen: torch.Generator, scale=(0.35, 1.0)) -> torch.Tensor:
    """Batched random-resized crops with horizontal flips (no colour jitter: colour is content here)."""
    b = x.shape[0]
    area = torch.empty(b).uniform_(*scale, generator=gen)
    side = area.sqrt()
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - side)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - side)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = side * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = side, cy
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def mlp(dim_in: int, dim_hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim_hidden), nn.GELU(), nn.Linear(dim_hidden, dim_out))


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def _batches(images: np.ndarray, cfg: dict, seed: int, desc: str):
    """Yield (step, two augmented views in [-1, 1]) for `cfg['steps']` steps."""
    gen = torch.Generator().manual_seed(seed)
    for step in progress(range(cfg["steps"]), desc=desc):
        idx = torch.randint(0, len(images), (cfg["batch_size"],), generator=gen).numpy()
        x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1
        yield step, random_views(x, gen), random_views(x, gen)


def _cls(vit, x):
    return vit(pixel_values=x).last_hidden_state[:, 0]


def train_dino(images: np.ndarray, cfg: dict, out_dir: str, seed: int = 0) -> dict:
    """DINO-style self-distillation: a student matches an EMA teacher's centred, sharpened
    output distribution on another view of the same image. No labels are used."""
    torch.manual_seed(seed)
    student = build_tiny_vit(images.shape[1], cfg)
    s_head = mlp(cfg["hidden_size"], 2 * cfg["hidden_size"], cfg["out_dim"])
    teacher, t_head = copy.deepcopy(student), copy.deepcopy(s_head)
    for p in [*teacher.parameters(), *t_head.parameters()]:
        p.requires_grad_(False)
    params = [*student.parameters(), *s_head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.04)
    center = torch.zeros(cfg["out_dim"])
    t_temp, s_temp = 0.04, 0.1
    for step, v1, v2 in _batches(images, cfg, seed, "dino"):
        s_out = [s_head(_cls(student, v)) / s_temp for v in (v1, v2)]
        with torch.no_grad():
            t_raw = [t_head(_cls(teacher, v)) for v in (v1, v2)]
            t_out = [F.softmax((t - center) / t_temp, dim=-1) for t in t_raw]
        loss = sum(-(t_out[i] * F.log_softmax(s_out[1 - i], dim=-1)).sum(-1).mean() for i in (0, 1)) / 2
        optimiser_step(opt, loss, step, "DINO", params, max_norm=3.0)
        ema_update(teacher, student, cfg["momentum"])
        ema_update(t_head, s_head, cfg["momentum"])
        center = 0.9 * center + 0.1 * torch.cat(t_raw).mean(0)
    save_trained(teacher, out_dir, images.shape[1])  # DINO keeps the teacher
    log.info("dino: final loss %.4f", loss.item())
    return {"final_loss": float(loss.item())}


def train_moco(images: np.ndarray, cfg: dict, out_dir: str, seed: int = 0) -> dict:
    """MoCo-v3-style contrastive learning: query (encoder + projector + predictor) against keys
    from a momentum encoder on another view; InfoNCE over the batch, symmetrised."""
    torch.manual_seed(seed)
    base = build_tiny_vit(images.shape[1], cfg)
    proj = mlp(cfg["hidden_size"], 2 * cfg["hidden_size"], cfg["out_dim"])
    pred = mlp(cfg["out_dim"], 2 * cfg["hidden_size"], cfg["out_dim"])
    m_base, m_proj = copy.deepcopy(base), copy.deepcopy(proj)
    for p in [*m_base.parameters(), *m_proj.parameters()]:
        p.requires_grad_(False)
    params = [*base.parameters(), *proj.parameters(), *pred.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.1)
    tau = cfg["temperature"]

    def contrast(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.t() / tau
        return F.cross_entropy(logits, torch.arange(len(q))) * 2 * tau

    for step, v1, v2 in _batches(images, cfg, seed, "moco"):
        q1, q2 = (pred(proj(_cls(base, v))) for v in (v1, v2))
        with torch.no_grad():
            k1, k2 = (m_proj(_cls(m_base, v)) for v in (v1, v2))
        loss = contrast(q1, k2) + contrast(q2, k1)
        optimiser_step(opt, loss, step, "MoCo", params, max_norm=3.0)
        ema_update(m_base, base, cfg["momentum"])
        ema_update(m_proj, proj, cfg["momentum"])
    save_trained(base, out_dir, images.shape[1])  # MoCo v3 keeps the base encoder
    log.info("moco: final loss %.4f", loss.item())
    return {"final_loss": float(loss.item())}


def _load_moco_v3_checkpoint(spec: dict):
    """The MoCo v3 authors' `.pth.tar` (keys `module.base_encoder.*`) into a timm ViT."""
    import timm

    path = spec["pretrained"]
    if not looks_local(path):
        raise MissingWeightsError(f"format moco_v3 needs a checkpoint file path, got '{path}'")
    from pathlib import Path

    if not Path(path).exists():
        raise MissingWeightsError(
            f"missing MoCo v3 checkpoint '{path}': download the authors' ViT-B checkpoint "
            f"(vit-b-300ep.pth.tar) and place it there, or set config key 'components.moco.pretrained'."
        )
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    prefix = "module.base_encoder."
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and ".head" not in k}
    model = timm.create_model(spec.get("timm_name", "vit_base_patch16_224"), pretrained=False, num_classes=0)
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise MissingWeightsError(f"MoCo v3 checkpoint '{path}' lacks {len(missing)} weights, e.g. {missing[:3]}")
    return model


def load_encoder(spec: dict, name: str, device="cpu") -> VisionEncoder:
    """Load the vision encoder of config block `components.<name>` (missing keys take the schema's
    defaults: `format`, `input_size`, `resize`). A CLIP block (`kind: clip`, Figures 9-10) gives its
    image tower; a transformers folder or hub id its ViT (DINO) or, for other model types (DINOv2,
    Figure S3), the model `AutoModel` builds."""
    from lumos.config import schema_defaults

    key = f"components.{name}.pretrained"
    if spec.get("kind") == "clip":
        from transformers import CLIPVisionModel

        text_side = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")  # of a full CLIP
        model = from_pretrained(CLIPVisionModel, spec["pretrained"], f"{name} image tower", key,
                                expected_unexpected=text_side)
        return VisionEncoder(model, "clip_vision", spec.get("input_size", model.config.image_size),
                             spec.get("mean", [0.5] * 3), spec.get("std", [0.5] * 3), device,
                             resize=spec.get("resize", "bicubic"))
    spec = {**schema_defaults("components.dino"), **spec}  # every vision encoder block has this schema
    fmt = spec["format"]
    if fmt == "transformers":
        from transformers import AutoConfig, AutoModel, ViTModel

        config = from_pretrained(AutoConfig, spec["pretrained"], f"{name} vision encoder", key)
        if config.model_type == "vit":
            # facebook/dino-vit* also hold a pooler, which the encoder does not use
            model = from_pretrained(ViTModel, spec["pretrained"], f"{name} vision encoder", key,
                                    add_pooling_layer=False, expected_unexpected=("pooler.",))
        else:  # e.g. dinov2: its last_hidden_state is also after the final norm
            model = from_pretrained(AutoModel, spec["pretrained"], f"{name} vision encoder", key)
        kind = "transformers"
    elif fmt == "moco_v3":
        model, kind = _load_moco_v3_checkpoint(spec), "timm"
    else:  # timm: a model name, weights from `pretrained` (a local file) via pretrained_cfg_overlay
        import timm

        model = timm.create_model(
            spec["timm_name"], pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": spec["pretrained"]}
        )
        kind = "timm"
    mean, std = spec.get("mean", [0.5] * 3), spec.get("std", [0.5] * 3)
    return VisionEncoder(model, kind, spec["input_size"], mean, std, device, resize=spec["resize"])
