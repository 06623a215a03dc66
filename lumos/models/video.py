"""Lumos-I2V backbone: the image DiT with a temporal attention module after every spatial block.

`LumosVideoDiT` subclasses `LumosDiT`, so every image weight keeps its name (`x_embedder.*`,
`blocks.<i>.*`, `final_layer.*`, the condition path) and an image prior's state dict loads into it
by name; the temporal modules are the only new tensors (`temporal_blocks.<i>.*`).

Layout: videos are (B, C, T, h, w), channels first, then frames. Each frame is embedded and run
through the spatial blocks as an image of a (B T)-batch; after spatial block i, temporal block i
lets every spatial token position attend over the T frames:

    x = x + proj(attention(qkv(LayerNorm(x) + frame_embedding)))

with a fixed 1-D sin-cos frame-position embedding (`sincos_1d`) and `proj` zero-initialised, so a
fresh temporal module is the identity and a fresh model computes every frame exactly as the image
prior computes it.

The first frame (the paper's mask strategy, eq. S2): given `first` (B, C, h, w), frame 0 of the
input is replaced by it (clean) and its timestep is 0, while the other frames get the video's
timestep. The condition (the first frame's vision features through cross-attention, as in
Lumos-I2I) is shared by every frame; condition dropout is drawn per video, not per frame.
Classifier-free guidance drops the condition only: `first` stays in both branches.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin  # noqa: F401  diffusers' loader looks a component's base class up in its module
from diffusers.configuration_utils import register_to_config

from lumos.models.dit import LumosDiT, sincos_1d


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frames of each spatial token position, residual.

    Input and output (B * N, T, D): for every video and token position, its T frames. The output
    projection starts at zero (the module starts as the identity)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        assert dim % num_heads == 0, "hidden size must be divisible by num_heads"
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, frame_embed: torch.Tensor) -> torch.Tensor:
        bn, t, d = x.shape
        h = self.norm(x) + frame_embed.to(x.dtype)[None]
        qkv = self.qkv(h).reshape(bn, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B N, H, T, Dh)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(1, 2).reshape(bn, t, d))


class LumosVideoDiT(LumosDiT):
    """The Lumos DiT for videos (B, C, T, h, w): every argument of `LumosDiT` (the image
    backbone, same weight names) plus `num_frames`, the frame count the fixed frame-position
    table is built for (other counts are embedded on the fly). Videos take neither a concatenated
    latent nor a camera: `extra_in_channels` and `camera_dim` must be 0."""

    @register_to_config
    def __init__(
        self,
        sample_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 4,
        extra_in_channels: int = 0,
        hidden_size: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        injection: str = "cross_attn",
        cond_dim: int = 128,
        max_cond_tokens: int = 1,
        cond_dropout: float = 0.1,
        num_classes: int = 0,
        camera_dim: int = 0,
        final_layer_type: str = "dit",
        pos_base_size: int | None = None,
        pos_interpolation_scale: float = 1.0,
        micro_conditions: bool = False,
        num_frames: int = 16,
    ):
        if micro_conditions:
            raise ValueError("LumosVideoDiT does not take PixArt's size / aspect-ratio micro-conditions")
        if extra_in_channels or camera_dim:
            raise ValueError("LumosVideoDiT takes no concatenated latent or camera (extra_in_channels and "
                             "camera_dim must be 0)")
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        super().__init__(
            sample_size=sample_size, patch_size=patch_size, in_channels=in_channels,
            extra_in_channels=extra_in_channels, hidden_size=hidden_size, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, learn_sigma=learn_sigma, injection=injection, cond_dim=cond_dim,
            max_cond_tokens=max_cond_tokens, cond_dropout=cond_dropout, num_classes=num_classes, camera_dim=camera_dim,
            final_layer_type=final_layer_type, pos_base_size=pos_base_size,
            pos_interpolation_scale=pos_interpolation_scale,
        )
        self.temporal_blocks = nn.ModuleList([TemporalAttention(hidden_size, num_heads) for _ in range(depth)])
        self.register_buffer("frame_embed", self._frame_table(num_frames, hidden_size), persistent=False)
        self.initialize_temporal()

    @staticmethod
    def _frame_table(frames: int, dim: int, device=None) -> torch.Tensor:
        return sincos_1d(dim, torch.arange(frames, device=device)).float()

    def initialize_temporal(self) -> None:
        """Fresh temporal modules: xavier qkv, zero output projection (each is the identity)."""
        for block in self.temporal_blocks:
            block.reset_parameters()

    def temporal_parameters(self):
        """The names of the temporal modules' tensors (everything an image prior lacks)."""
        return [n for n, _ in self.named_parameters() if n.startswith("temporal_blocks.")]

    def _frame_embedding(self, frames: int) -> torch.Tensor:
        if self.frame_embed.shape[0] == frames:
            return self.frame_embed
        return self._frame_table(frames, self.frame_embed.shape[1], self.frame_embed.device)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor | float | int,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        force_drop_ids: torch.Tensor | None = None,
        first: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict (B, out_channels, T, h, w) from noisy video latents.

        Args:
            x: (B, in_channels, T, h, w) noisy latents.
            timestep: (B,) per video (or a scalar), or (B, T) per frame.
            cond, cond_mask: the condition as `LumosDiT.forward` takes it, one per video (shared by
                its frames); `None` = the null condition.
            force_drop_ids: (B,) bool, True forces the null condition for that video.
            first: (B, in_channels, h, w) the clean first frame: replaces frame 0 of `x`, whose
                timestep becomes 0. `None`: every frame is denoised at `timestep`.
        """
        if x.ndim != 5:
            raise ValueError(f"LumosVideoDiT takes (B, C, T, h, w) latents, got shape {tuple(x.shape)}")
        b, ch, frames, hh, ww = x.shape
        if ch != self.in_channels:
            raise ValueError(f"x has {ch} channels; the model takes {self.in_channels}")
        device = x.device
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0:
            t = t.expand(b)
        t = t[:, None].expand(b, frames) if t.ndim == 1 else t.reshape(b, frames)
        if first is not None:
            if first.shape != (b, ch, hh, ww):
                raise ValueError(f"first has shape {tuple(first.shape)}; expected {(b, ch, hh, ww)}")
            x = torch.cat([first.to(device=device, dtype=x.dtype)[:, :, None], x[:, :, 1:]], dim=2)
            t = torch.cat([torch.zeros_like(t[:, :1]), t[:, 1:]], dim=1)
        drop = None if self.injection == "none" else self._drop_mask(b, device, force_drop_ids)

        # frames into the batch: row v * T + f is frame f of video v
        images = x.permute(0, 2, 1, 3, 4).reshape(b * frames, ch, hh, ww)
        tokens = self.x_embedder(images)  # (B T, D, h', w')
        h, w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2) + self._position_embedding(h, w).to(tokens.dtype)
        n, d = tokens.shape[1:]
        c = self.t_embedder(t.reshape(-1))
        extra, y, mask = self._embed_condition(cond, cond_mask, b, drop, device)  # per video
        if extra is not None:
            c = c + extra.repeat_interleave(frames, dim=0)
        if y is not None:
            y = y.repeat_interleave(frames, dim=0)
        if mask is not None:
            mask = mask.repeat_interleave(frames, dim=0)
        frame_embed = self._frame_embedding(frames)

        checkpoint = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block, temporal in zip(self.blocks, self.temporal_blocks):
            if checkpoint:
                tokens = self._gradient_checkpointing_func(block, tokens, c, y, mask)
            else:
                tokens = block(tokens, c, y, mask)
            seq = tokens.reshape(b, frames, n, d).transpose(1, 2).reshape(b * n, frames, d)
            if checkpoint:
                seq = self._gradient_checkpointing_func(temporal, seq, frame_embed)
            else:
                seq = temporal(seq, frame_embed)
            tokens = seq.reshape(b, n, frames, d).transpose(1, 2).reshape(b * frames, n, d)
        out = self.unpatchify(self.final_layer(tokens, c), h, w)  # (B T, C', hh, ww)
        return out.reshape(b, frames, *out.shape[1:]).permute(0, 2, 1, 3, 4)

    def forward_with_cfg(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor | float | int,
        cond: torch.Tensor | None,
        cond_mask: torch.Tensor | None = None,
        guidance_scale: float = 4.5,
        first: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Classifier-free guidance on all output channels: ``uncond + s * (cond - uncond)``,
        both branches in one doubled batch. The null branch drops the condition only; the first
        frame is given to both."""
        if self.injection == "none":
            return self.forward(x, timestep, first=first)
        b = x.shape[0]
        t = torch.as_tensor(timestep, device=x.device)
        t = t.expand(b) if t.ndim == 0 else t
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
        out = self.forward(
            torch.cat([x, x]),
            torch.cat([t, t]),
            None if cond is None else torch.cat([cond, cond]),
            None if cond_mask is None else torch.cat([cond_mask, cond_mask]),
            force_drop_ids=drop,
            first=None if first is None else torch.cat([first, first]),
        )
        cond_out, uncond_out = out.chunk(2, dim=0)
        return uncond_out + guidance_scale * (cond_out - uncond_out)
