"""Diffusion Transformer (DiT) backbone for Lumos.

A latent DiT (Peebles & Xie, 2023) with four ways of injecting a condition:

* ``"cross_attn"`` (Lumos-I2I / T2I): condition tokens ``(B, L, cond_dim)`` are
  projected by an MLP and read by a per-sample masked multi-head cross-attention
  layer inserted in every block between self-attention and the MLP
  (``x = x + cross_attn(x, y)``; no norm, no gate, zero-initialised output).
  Condition dropout swaps in a fixed random buffer ``null_cond`` saved with the
  weights.
* ``"adaln"`` (RCG-style): a global representation ``(B, cond_dim)`` is
  standardised per sample, linearly projected and added to the timestep
  embedding that drives adaLN-Zero. Dropout swaps in a learned ``fake_latent``.
* ``"class"``: a label embedding (last row = null class) added to the timestep
  embedding, as in DiT.
* ``"none"``: unconditional; ``cond`` is ignored.

Two inputs serve the fine-tunes on views (Lumos-NVS, eq. S1): ``extra_in_channels``
widens the patch embedding for a clean latent concatenated to the noisy one (the
input view), and ``camera_dim`` adds an embedded vector (the relative camera
pose) to the timestep embedding. Condition dropout also zeroes the concatenated
latent, so the null branch of guidance sees neither the input view's features nor
its latent.

The same null condition is the unconditional branch of classifier-free guidance
(:meth:`LumosDiT.forward_with_cfg`).

Beyond the paper, two options train the DiT with a frozen encoder's help and no condition at
sampling (:mod:`lumos.models.guidance`): REPA's projector of the hidden states after one block
(``repa_block``), and REG's class token, one more token denoised with the latents (``reg_dim``).

Three options, off by default, reproduce the layout of the authors' released
checkpoints (see :mod:`lumos.released`): a PixArt-style final layer
(``final_layer_type="pixart"``), PixArt's multi-scale position table
(``pos_base_size``, ``pos_interpolation_scale``) and size / aspect-ratio
micro-conditions (``micro_conditions=True``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from lumos.diffusion.gaussian import PREDICTION_TYPES
from lumos.models.guidance import REPA_HIDDEN, ClassTokenEmbedder, build_projector

INJECTIONS = ("cross_attn", "adaln", "class", "none")

#: Named backbone sizes. Paper sizes follow DiT; ``T`` (tiny) and ``N`` (nano)
#: are CPU smoke/test sizes.
DIT_SIZES: dict[str, dict[str, int]] = {
    "DiT-XL/2": dict(depth=28, hidden_size=1152, num_heads=16, patch_size=2),
    "DiT-L/2": dict(depth=24, hidden_size=1024, num_heads=16, patch_size=2),
    "DiT-B/2": dict(depth=12, hidden_size=768, num_heads=12, patch_size=2),
    "DiT-S/2": dict(depth=12, hidden_size=384, num_heads=6, patch_size=2),
    "DiT-T/1": dict(depth=4, hidden_size=128, num_heads=4, patch_size=1),
    "DiT-T/2": dict(depth=4, hidden_size=128, num_heads=4, patch_size=2),
    "DiT-N/2": dict(depth=2, hidden_size=64, num_heads=2, patch_size=2),
}


#################################################################################
#                              Helper functions                                 #
#################################################################################


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Apply adaLN modulation ``x * (1 + scale) + shift`` to tokens ``(B, N, D)``."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """1D sin-cos embedding of positions ``pos`` (M,) -> (M, dim): [sin | cos]."""
    assert dim % 2 == 0, "sin-cos embedding dimension must be even"
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / (10000.0**omega)
    angles = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def grid_positions(n: int, base_size: int | None = None, scale: float = 1.0, device=None) -> torch.Tensor:
    """Positions of ``n`` tokens along one axis (float64).

    Default: ``0, 1, ..., n-1``. With ``base_size`` or ``scale`` (PixArt's multi-scale
    table) the axis is stretched to the base grid: ``arange(n) / (n / base_size) / scale``
    (``base_size`` defaults to ``n``); the first division is done in float32, as the
    official numpy code does, the division by ``scale`` in float64.
    """
    if base_size is None and scale == 1.0:
        return torch.arange(n, dtype=torch.float64, device=device)
    base = n if base_size is None else base_size
    step = torch.tensor(n / base, dtype=torch.float32, device=device)
    return (torch.arange(n, dtype=torch.float32, device=device) / step).to(torch.float64) / scale


def sincos_2d(
    dim: int, grid_h: int, grid_w: int, device=None, base_size: int | None = None, scale: float = 1.0
) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding (grid_h * grid_w, dim), row-major tokens.

    Half of the channels encode the column (x) and half the row (y) coordinate;
    ``base_size`` and ``scale`` stretch both axes (:func:`grid_positions`).
    """
    assert dim % 4 == 0, "2D sin-cos embedding needs a dimension divisible by 4"
    ys, xs = torch.meshgrid(
        grid_positions(grid_h, base_size, scale, device),
        grid_positions(grid_w, base_size, scale, device),
        indexing="ij",
    )
    emb_x = sincos_1d(dim // 2, xs.reshape(-1))
    emb_y = sincos_1d(dim // 2, ys.reshape(-1))
    return torch.cat([emb_x, emb_y], dim=1).float()


def tile_rows(table: torch.Tensor, n: int) -> torch.Tensor:
    """First ``n`` rows of ``table`` (M, C), repeating the table when ``n > M``."""
    reps = -(-n // table.shape[0])
    if reps > 1:
        table = table.repeat(reps, 1)
    return table[:n]


#################################################################################
#                    Embedding layers for timesteps and conditions              #
#################################################################################


class TimestepEmbedder(nn.Module):
    """Embed scalar timesteps: 256-d sinusoid followed by Linear-SiLU-Linear."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """(B,) possibly fractional timesteps -> (B, dim) features [cos | sin]."""
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t.float()[:, None] * freqs[None, :]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = self.sinusoid(t, self.frequency_embedding_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class SizeEmbedder(TimestepEmbedder):
    """PixArt micro-condition embedder: each of k scalars per sample goes through the
    same sinusoid-Linear-SiLU-Linear as a timestep; (B, k) -> (B, k * hidden_size)."""

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        b, k = s.shape
        return super().forward(s.reshape(b * k)).reshape(b, k * self.mlp[2].out_features)


def micro_condition_inputs(height: int, width: int) -> dict[str, torch.Tensor]:
    """The `resolution` (1, 2) and `aspect_ratio` (1, 1) inputs of a micro-conditioned model
    (``micro_conditions=True``) for images of `height` x `width` pixels; `forward` and
    `forward_with_cfg` broadcast them to the batch. Pass them as `sample`'s ``model_kwargs``."""
    return {"resolution": torch.tensor([[float(height), float(width)]]),
            "aspect_ratio": torch.tensor([[height / width]])}


class TokenProjection(nn.Module):
    """Project condition tokens to the model width: Linear-GELU(tanh)-Linear."""

    def __init__(self, in_dim: int, hidden_size: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_size)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(y)))


class CameraEmbedder(nn.Module):
    """Embed a camera vector (B, camera_dim), e.g. a relative pose (R, T) flattened to 12 numbers,
    into the model width: Linear-SiLU-Linear, added to the timestep embedding. The last layer is
    zero-initialised, so a fresh embedder adds exactly zero."""

    def __init__(self, camera_dim: int, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(camera_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, camera: torch.Tensor) -> torch.Tensor:
        return self.mlp(camera.to(self.mlp[0].weight.dtype))


class RepresentationEmbedder(nn.Module):
    """RCG-style global condition: per-sample standardisation then a Linear.

    The representation is standardised over its features (mean 0, std 1 per
    sample, ``eps=1e-6`` added to the std), which makes the embedding invariant
    to a positive affine rescaling of the input vector.
    """

    def __init__(self, in_dim: int, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.proj = nn.Linear(in_dim, hidden_size)

    def standardise(self, rep: torch.Tensor) -> torch.Tensor:
        """Per-sample standardisation of (B, C) vectors."""
        rep = rep - rep.mean(dim=-1, keepdim=True)
        return rep / (rep.std(dim=-1, keepdim=True) + self.eps)

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        return self.proj(rep)


#################################################################################
#                                 Core DiT layers                               #
#################################################################################


class Mlp(nn.Module):
    """Transformer feed-forward: Linear-GELU(tanh)-Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention over image tokens with fused SDPA."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        assert dim % num_heads == 0, "hidden size must be divisible by num_heads"
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, Dh)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from image tokens to condition tokens.

    Each sample attends only to its own real condition tokens (``mask`` True);
    a sample whose mask is all False receives a zero update.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        assert dim % num_heads == 0, "hidden size must be divisible by num_heads"
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h, dh = self.num_heads, d // self.num_heads
        q = self.q(x).reshape(b, n, h, dh).transpose(1, 2)
        k, v = self.kv(y).reshape(b, y.shape[1], 2, h, dh).permute(2, 0, 3, 1, 4).unbind(0)
        # On the CPU, looking at the mask costs nothing: an all-True mask takes the unmasked
        # kernel and the zeroing is skipped when no sample is empty. On a GPU those looks would
        # wait for the device, and under torch.compile they would break the graph, so there a
        # given mask is always applied (the same result: an all-True mask adds zeros).
        host = x.device.type == "cpu" and not torch.compiler.is_compiling()
        attn_mask, empty = None, None
        if mask is not None and not (host and bool(mask.all())):
            empty = ~mask.any(dim=1)  # samples without any real token
            mask = mask | empty[:, None]  # avoid all -inf rows (NaN); zeroed below
            attn_mask = mask[:, None, None, :]  # (B, 1, 1, L) broadcast over heads/queries
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.proj(out.transpose(1, 2).reshape(b, n, d))
        if empty is not None and (not host or bool(empty.any())):
            out = out.masked_fill(empty[:, None, None], 0.0)
        return out


class DiTBlock(nn.Module):
    """DiT block with adaLN-Zero and an optional cross-attention step.

    ``x = x + gate_msa * attn(modulate(norm1(x)))``;
    ``x = x + cross_attn(x, y)`` (only with ``cross_attn=True``);
    ``x = x + gate_mlp * mlp(modulate(norm2(x)))``.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, cross_attn: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads)
        self.cross_attn = CrossAttention(hidden_size, num_heads) if cross_attn else None
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        y: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        if self.cross_attn is not None:
            x = x + self.cross_attn(x, y, mask)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """Final adaLN (shift/scale) and linear projection back to patch pixels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def modulated(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The tokens after the final norm and adaLN, before the linear projection."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return modulate(self.norm_final(x), shift, scale)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.linear(self.modulated(x, c))


class PixArtFinalLayer(nn.Module):
    """PixArt's final layer (``T2IFinalLayer``): ``shift, scale = scale_shift_table + c``.

    ``scale_shift_table`` is a (2, D) parameter; ``c`` is added as is (no SiLU, no
    Linear). As in the official code, ``c`` is the vector that drives the blocks'
    adaLN: the timestep embedding plus the micro-condition embedding when there is
    one (plus any ``adaln``/``class`` condition embedding, which the released
    models do not have).
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def modulated(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The tokens after the final norm and the table's shift/scale, before the projection."""
        shift, scale = (self.scale_shift_table[None] + c[:, None]).unbind(1)
        return modulate(self.norm_final(x), shift, scale)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.linear(self.modulated(x, c))


#################################################################################
#                                   LumosDiT                                    #
#################################################################################


class LumosDiT(ModelMixin, ConfigMixin):
    """DiT backbone with Lumos condition injection (see module docstring).

    Args:
        sample_size: latent side length the fixed position embedding is built for
            (other sizes divisible by the patch size are embedded on the fly).
        patch_size: patch side (conv kernel = stride).
        in_channels: latent channels that are noised and predicted.
        extra_in_channels: extra channels concatenated to the input (e.g. the
            input-view latent for novel-view synthesis); not predicted.
        hidden_size, depth, num_heads, mlp_ratio: transformer shape.
        learn_sigma: predict epsilon plus a learned-range variance value
            (``out_channels = 2 * in_channels``).
        prediction_type: what the first ``in_channels`` outputs predict, in
            diffusers' names: ``"epsilon"`` (the noise; every prior), ``"sample"``
            (x_0) or ``"v_prediction"``. The training loss and the samplers read it.
        injection: ``"cross_attn"``, ``"adaln"``, ``"class"`` or ``"none"``.
        cond_dim: feature size of condition tokens / vectors.
        max_cond_tokens: rows of the fixed null buffer ``null_cond``
            (cross-attention only). A dropped sample with ``L`` tokens uses
            ``null_cond[:L]``, the buffer being tiled when ``L > max_cond_tokens``.
        cond_dropout: probability of replacing a sample's condition by the null
            condition in training mode.
        num_classes: number of classes for ``injection="class"``.
        camera_dim: size of the camera vector embedded into the conditioning
            (0: no camera input).
        final_layer_type: ``"dit"`` (shift/scale = ``Linear(SiLU(c))``) or
            ``"pixart"`` (shift/scale = a learned (2, D) ``scale_shift_table`` + ``c``,
            :class:`PixArtFinalLayer`). Not called ``final_layer``: a config name
            equal to a submodule name would shadow it (diffusers' config access).
        pos_base_size, pos_interpolation_scale: PixArt's multi-scale position
            table: token positions ``arange(n) * base / n / scale`` on each axis
            (``base`` defaults to ``n``); the defaults (``None``, ``1.0``) give
            ``arange(n)``.
        micro_conditions: add PixArt's size and aspect-ratio embeddings to the
            timestep embedding, ``cat[emb(h), emb(w), emb(ar)]`` (``h``, ``w`` share
            ``csize_embedder``, ``ar`` has ``ar_embedder``; each D/3 wide, so the
            hidden size must be divisible by 3). See :meth:`forward`.
        repa_block, repa_dim, repa_hidden: REPA (:mod:`lumos.models.guidance`): a projector
            (``repa_projector``, widths hidden_size -> repa_hidden -> repa_hidden -> repa_dim) of
            the hidden states after block ``repa_block`` (1-based; 0: no REPA), trained to align
            with an encoder's ``repa_dim``-wide patch tokens; unused at sampling.
        reg_dim: REG (:mod:`lumos.models.guidance`): the width of an encoder class token that
            the model denoises jointly with the latents as one extra token (``reg_embedder`` in,
            ``reg_head`` out; 0: no REG). :meth:`forward` takes it as ``reg_token``.
    """

    _supports_gradient_checkpointing = True

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
        prediction_type: str = "epsilon",
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
        repa_block: int = 0,
        repa_dim: int = 0,
        repa_hidden: int = REPA_HIDDEN,
        reg_dim: int = 0,
    ):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if injection not in INJECTIONS:
            raise ValueError(f"injection must be one of {INJECTIONS}, got {injection!r}")
        if sample_size % patch_size:
            raise ValueError("sample_size must be divisible by patch_size")
        if injection == "class" and num_classes < 1:
            raise ValueError("injection='class' needs num_classes >= 1")
        if final_layer_type not in ("dit", "pixart"):
            raise ValueError(f"final_layer_type must be 'dit' or 'pixart', got {final_layer_type!r}")
        if micro_conditions and hidden_size % 3:
            raise ValueError("micro_conditions need a hidden size divisible by 3")
        if repa_block and not (1 <= repa_block <= depth and repa_dim > 0):
            raise ValueError(f"repa_block must lie in [1, depth={depth}] with repa_dim > 0, got block {repa_block}, "
                             f"repa_dim {repa_dim} (config key pretrain.runs.<run>.repa.block)")
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.injection = injection
        self.gradient_checkpointing = False

        self.x_embedder = nn.Conv2d(
            in_channels + extra_in_channels, hidden_size, kernel_size=patch_size, stride=patch_size
        )
        grid = sample_size // patch_size
        table = sincos_2d(hidden_size, grid, grid, base_size=pos_base_size, scale=pos_interpolation_scale)
        self.register_buffer("pos_embed", table[None], persistent=False)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.camera_embedder = CameraEmbedder(camera_dim, hidden_size) if camera_dim else None
        if micro_conditions:
            self.csize_embedder = SizeEmbedder(hidden_size // 3)  # height and width (pixels), shared
            self.ar_embedder = SizeEmbedder(hidden_size // 3)  # aspect ratio h / w

        if injection == "cross_attn":
            self.y_embedder = TokenProjection(cond_dim, hidden_size)
            null = torch.randn(max_cond_tokens, cond_dim) / math.sqrt(cond_dim)
            self.register_buffer("null_cond", null, persistent=True)
        elif injection == "adaln":
            self.y_embedder = RepresentationEmbedder(cond_dim, hidden_size)
            self.fake_latent = nn.Parameter(torch.zeros(cond_dim))
        elif injection == "class":
            self.y_embedder = nn.Embedding(num_classes + 1, hidden_size)

        self.blocks = nn.ModuleList(
            [DiTBlock(hidden_size, num_heads, mlp_ratio, cross_attn=injection == "cross_attn") for _ in range(depth)]
        )
        final_cls = PixArtFinalLayer if final_layer_type == "pixart" else FinalLayer
        self.final_layer = final_cls(hidden_size, patch_size, self.out_channels)
        self.repa_projector = build_projector(hidden_size, repa_hidden, repa_dim) if repa_block else None
        self.reg_embedder = ClassTokenEmbedder(reg_dim, hidden_size) if reg_dim else None
        self.reg_head = nn.Linear(hidden_size, reg_dim) if reg_dim else None
        self.initialize_weights()

    @classmethod
    def from_size(cls, name: str, **overrides) -> "LumosDiT":
        """Build a model from a :data:`DIT_SIZES` name; ``overrides`` win."""
        if name not in DIT_SIZES:
            raise KeyError(f"unknown DiT size {name!r}; choose from {sorted(DIT_SIZES)}")
        return cls(**{**DIT_SIZES[name], **overrides})

    def initialize_weights(self) -> None:
        """DiT initialisation; zero adaLN, final and cross-attn output layers.

        With these zeros a freshly built model outputs exactly zero.
        """

        def _xavier(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_xavier)
        # Patch embedding initialised like a Linear on the flattened kernel.
        w = self.x_embedder.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.config.micro_conditions:
            for emb in (self.csize_embedder, self.ar_embedder):
                nn.init.normal_(emb.mlp[0].weight, std=0.02)
                nn.init.normal_(emb.mlp[2].weight, std=0.02)
        if self.injection == "class":
            nn.init.normal_(self.y_embedder.weight, std=0.02)
        if self.injection == "adaln":
            nn.init.normal_(self.fake_latent, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if block.cross_attn is not None:
                nn.init.zeros_(block.cross_attn.proj.weight)
                nn.init.zeros_(block.cross_attn.proj.bias)
        final = [self.final_layer.linear]  # the PixArt table keeps its random init, as in PixArt
        if self.config.final_layer_type == "dit":
            final.insert(0, self.final_layer.adaLN_modulation[-1])
        for layer in final:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.camera_embedder is not None:
            nn.init.zeros_(self.camera_embedder.mlp[-1].weight)
            nn.init.zeros_(self.camera_embedder.mlp[-1].bias)
        if self.reg_head is not None:  # REG's linear_cls starts at zero, as the image head
            nn.init.zeros_(self.reg_head.weight)
            nn.init.zeros_(self.reg_head.bias)

    # ------------------------------------------------------------------ helpers

    def null_condition(self, num_tokens: int | None = None) -> torch.Tensor:
        """The null condition: (L, cond_dim) tokens, (cond_dim,) vector or class id."""
        if self.injection == "cross_attn":
            return tile_rows(self.null_cond, num_tokens or self.null_cond.shape[0])
        if self.injection == "adaln":
            return self.fake_latent
        if self.injection == "class":
            return torch.tensor(self.config.num_classes, device=self.device)
        return None

    def _drop_mask(self, batch: int, device, force_drop_ids: torch.Tensor | None) -> torch.Tensor | None:
        """Which samples get the null condition.

        ``force_drop_ids`` (if given) decides alone, in any mode; otherwise
        samples are dropped at random with ``cond_dropout`` in training mode.
        """
        if force_drop_ids is not None:
            return force_drop_ids.to(device=device, dtype=torch.bool).reshape(batch)
        if self.training and self.config.cond_dropout > 0:
            return torch.rand(batch, device=device) < self.config.cond_dropout
        return None

    def unpatchify(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, h*w, p*p*C) patch tokens -> (B, C, h*p, w*p) images."""
        p, c = self.patch_size, self.out_channels
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = x.permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def _position_embedding(self, h: int, w: int) -> torch.Tensor:
        """Fixed sin-cos table for an h x w token grid (cached for sample_size)."""
        if self.pos_embed.shape[1] == h * w and h == w:
            return self.pos_embed
        return sincos_2d(self.pos_embed.shape[-1], h, w, device=self.pos_embed.device,
                         base_size=self.config.pos_base_size, scale=self.config.pos_interpolation_scale)[None]

    def _micro_embedding(self, b: int, hh: int, ww: int, resolution, aspect_ratio, device) -> torch.Tensor:
        """(B, D) size and aspect-ratio embedding ``cat[emb(h), emb(w), emb(ar)]``.

        Omitted values come from the latent: ``resolution = 8 * (H, W)`` (the SD VAE
        factor) and ``aspect_ratio = H / W``.
        """
        if resolution is None:
            resolution = [8.0 * hh, 8.0 * ww]
        if aspect_ratio is None:
            aspect_ratio = hh / ww
        hw = torch.as_tensor(resolution, dtype=torch.float32, device=device).reshape(-1, 2).expand(b, 2)
        ar = torch.as_tensor(aspect_ratio, dtype=torch.float32, device=device).reshape(-1, 1).expand(b, 1)
        return torch.cat([self.csize_embedder(hw), self.ar_embedder(ar)], dim=1)

    def _embed_condition(self, cond, cond_mask, batch: int, drop, device):
        """Return (additive embedding for t or None, tokens or None, mask or None)."""
        if self.injection == "none":
            return None, None, None
        if self.injection == "class":
            labels = torch.full((batch,), self.config.num_classes, device=device, dtype=torch.long)
            if cond is not None:
                labels = cond.to(device=device, dtype=torch.long).reshape(batch)
            if drop is not None:
                labels = torch.where(drop, torch.full_like(labels, self.config.num_classes), labels)
            return self.y_embedder(labels), None, None
        dtype = self.x_embedder.weight.dtype
        if self.injection == "adaln":
            if cond is None:
                rep = self.fake_latent.to(dtype).expand(batch, -1)
            else:
                rep = self.y_embedder.standardise(cond.to(device=device, dtype=dtype).reshape(batch, -1))
                if drop is not None:
                    rep = torch.where(drop[:, None], self.fake_latent.to(dtype), rep)
            return self.y_embedder(rep), None, None
        # cross_attn
        if cond is None:
            tokens = self.null_condition()[None].to(dtype).expand(batch, -1, -1)
            cond_mask = None
        else:
            tokens = cond.to(device=device, dtype=dtype)
            if tokens.ndim == 2:
                tokens = tokens[:, None]
            if drop is not None:
                null = self.null_condition(tokens.shape[1]).to(dtype)
                tokens = torch.where(drop[:, None, None], null[None], tokens)
        if cond_mask is not None:
            cond_mask = cond_mask.to(device=device, dtype=torch.bool).reshape(batch, tokens.shape[1])
        return None, self.y_embedder(tokens), cond_mask

    def _concat_input(self, x: torch.Tensor, concat, drop) -> torch.Tensor:
        """``x`` with the extra input channels appended: ``concat`` (zeroed for dropped samples),
        or zeros when it is not given; ``x`` as it is when it already has them."""
        extra = self.config.extra_in_channels
        if x.shape[1] == self.in_channels + extra and concat is None:
            return x
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels; the model takes {self.in_channels} (+ {extra} extra)")
        if not extra:
            if concat is not None:
                raise ValueError("concat given to a model without extra_in_channels")
            return x
        if concat is None:
            concat = torch.zeros(x.shape[0], extra, *x.shape[2:], device=x.device, dtype=x.dtype)
        concat = concat.to(device=x.device, dtype=x.dtype)
        if drop is not None:
            concat = torch.where(drop[:, None, None, None], torch.zeros_like(concat), concat)
        return torch.cat([x, concat], dim=1)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor | float | int,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        force_drop_ids: torch.Tensor | None = None,
        concat: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
        resolution: torch.Tensor | None = None,
        aspect_ratio: torch.Tensor | None = None,
        reg_token: torch.Tensor | None = None,
        return_extras: bool = False,
    ):
        """Predict (B, out_channels, H, W) from noisy latents.

        Args:
            x: (B, in_channels, H, W) noisy latents, or (B, in_channels +
                extra_in_channels, H, W) with the extras already concatenated.
            timestep: (B,) int/float tensor or a scalar broadcast to the batch.
            cond: ``cross_attn``: (B, L, cond_dim) tokens or (B, cond_dim);
                ``adaln``: (B, cond_dim) or (B, 1, cond_dim);
                ``class``: (B,) long labels; ``none``: ignored.
                ``None`` means the null condition for every sample.
            cond_mask: (B, L) bool, True for real tokens (cross_attn only);
                ``None`` means all tokens are real.
            force_drop_ids: (B,) bool; True forces the null condition. When
                given it alone decides dropout (also in training mode).
            concat: (B, extra_in_channels, H, W) clean latents concatenated to
                ``x`` (zeros where the condition is dropped); ``None`` = zeros.
            camera: (B, camera_dim) camera vectors; required when the model has
                ``camera_dim``.
            resolution: (B, 2) image (height, width) in pixels, the bucket's size
                (``micro_conditions`` only; ignored otherwise). Omitted: 8 x the
                latent's (H, W), the SD VAE factor. A (2,) or (1, 2) tensor or a list
                is broadcast to the batch.
            aspect_ratio: (B, 1) ratio height / width (``micro_conditions`` only).
                Omitted: H / W of the latent. The official sampler passes the
                bucket's rounded key (e.g. 0.68 for 832 x 1216, not 0.684), so
                give it explicitly to match it exactly.
            reg_token: (B, reg_dim) the noisy REG class token at ``timestep`` (REG models): one
                more token, denoised with the latents and dropped from the image output. ``None``:
                the model runs on the latent tokens alone.
            return_extras: also return a dict: ``projected`` (REPA models: the projector's
                output of the hidden states after ``repa_block``, (B, h*w [+1], repa_dim), the
                REG token's last), ``reg`` (the REG token's prediction (B, reg_dim), or None) and
                ``grid`` (h, w), the token grid.
        """
        b, _, hh, ww = x.shape
        device = x.device
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0:
            t = t.expand(b)
        drop = None if self.injection == "none" else self._drop_mask(b, device, force_drop_ids)
        x = self._concat_input(x, concat, drop)

        tokens = self.x_embedder(x)  # (B, D, h, w)
        h, w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2) + self._position_embedding(h, w).to(tokens.dtype)
        c = self.t_embedder(t)
        if self.camera_embedder is not None:
            if camera is None:
                raise ValueError(f"this model takes a camera vector (B, {self.config.camera_dim}): pass camera=")
            c = c + self.camera_embedder(camera.to(device).reshape(b, -1))
        if self.config.micro_conditions:
            c = c + self._micro_embedding(b, hh, ww, resolution, aspect_ratio, device).to(c.dtype)
        extra, y, mask = self._embed_condition(cond, cond_mask, b, drop, device)
        if extra is not None:
            c = c + extra
        with_token = reg_token is not None
        if with_token:
            if self.reg_embedder is None:
                raise ValueError("reg_token given to a model without reg_dim")
            tokens = torch.cat([tokens, self.reg_embedder(reg_token.to(device).reshape(b, -1)).to(tokens.dtype)], 1)

        projected = None
        for k, block in enumerate(self.blocks, start=1):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                tokens = self._gradient_checkpointing_func(block, tokens, c, y, mask)
            else:
                tokens = block(tokens, c, y, mask)
            if return_extras and k == self.config.repa_block:
                projected = self.repa_projector(tokens)
        if not with_token:
            out = self.unpatchify(self.final_layer(tokens, c), h, w)
            return (out, {"projected": projected, "reg": None, "grid": (h, w)}) if return_extras else out
        feats = self.final_layer.modulated(tokens, c)
        out = self.unpatchify(self.final_layer.linear(feats[:, :-1]), h, w)
        reg = self.reg_head(feats[:, -1])
        return (out, {"projected": projected, "reg": reg, "grid": (h, w)}) if return_extras else out

    def forward_with_cfg(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor | float | int,
        cond: torch.Tensor | None,
        cond_mask: torch.Tensor | None = None,
        guidance_scale: float = 4.5,
        concat: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
        resolution: torch.Tensor | None = None,
        aspect_ratio: torch.Tensor | None = None,
        reg_token: torch.Tensor | None = None,
        return_extras: bool = False,
    ):
        """Classifier-free guidance on all output channels.

        Runs the conditional and null branches in one doubled batch and returns
        ``uncond + guidance_scale * (cond - uncond)``. The null branch drops the
        condition and the concatenated latent; the camera is kept in both.
        ``resolution`` and ``aspect_ratio`` (micro-conditions) are as in
        :meth:`forward`, the same for both branches. ``reg_token`` (REG models) goes
        to both branches; with ``return_extras`` the extras of :meth:`forward` come
        back guided the same way (the REG token's prediction among them).
        """
        if self.injection == "none":
            return self.forward(x, timestep, concat=concat, camera=camera, resolution=resolution,
                                aspect_ratio=aspect_ratio, reg_token=reg_token, return_extras=return_extras)
        b = x.shape[0]
        micro = {}  # per-sample micro-conditions, repeated for the null branch
        for key, value, n in (("resolution", resolution, 2), ("aspect_ratio", aspect_ratio, 1)):
            if value is not None:
                micro[key] = torch.as_tensor(value, device=x.device).reshape(-1, n).expand(b, n).repeat(2, 1)
        t = torch.as_tensor(timestep, device=x.device)
        t = t.expand(b) if t.ndim == 0 else t
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
        out = self.forward(
            torch.cat([x, x]),
            torch.cat([t, t]),
            None if cond is None else torch.cat([cond, cond]),
            None if cond_mask is None else torch.cat([cond_mask, cond_mask]),
            force_drop_ids=drop,
            concat=None if concat is None else torch.cat([concat, concat]),
            camera=None if camera is None else torch.cat([camera, camera]),
            reg_token=None if reg_token is None else torch.cat([reg_token, reg_token]),
            return_extras=return_extras,
            **micro,
        )

        def guide(both: torch.Tensor) -> torch.Tensor:
            cond_out, uncond_out = both.chunk(2, dim=0)
            return uncond_out + guidance_scale * (cond_out - uncond_out)

        if not return_extras:
            return guide(out)
        out, extras = out
        return guide(out), {k: guide(v) if torch.is_tensor(v) else v for k, v in extras.items()}
