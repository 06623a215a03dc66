"""Import the Lumos authors' released checkpoints (``Lumos_I2I.pth``, ``Lumos_T2I.pth``).

Each file is a flat fp32 state dict of the official model (the official demos load it
with ``strict=False``). Its tensors map one to one onto a :class:`LumosDiT`, none
reshaped; only the names differ:

=========================================  =====================================
official                                   ours
=========================================  =====================================
``x_embedder.proj.{weight,bias}``          ``x_embedder.{weight,bias}`` (a bare Conv2d)
``t_embedder.mlp.{0,2}.*``                 ``t_embedder.mlp.{0,2}.*``
``csize_embedder.mlp.{0,2}.*`` (T2I)       ``csize_embedder.mlp.{0,2}.*``
``ar_embedder.mlp.{0,2}.*`` (T2I)          ``ar_embedder.mlp.{0,2}.*``
``y_embedder.y_proj.fc{1,2}.*``            ``y_embedder.fc{1,2}.*``
``y_embedder.y_embedding``                 ``null_cond`` ((1, 768) I2I, (120, 4096) T2I)
``blocks.N.attn.{qkv,proj}.*``             same
``blocks.N.cross_attn.q_linear.*``         ``blocks.N.cross_attn.q.*``
``blocks.N.cross_attn.kv_linear.*``        ``blocks.N.cross_attn.kv.*`` (k then v)
``blocks.N.cross_attn.proj.*``             same
``blocks.N.mlp.fc{1,2}.*``                 same
``blocks.N.adaLN_modulation.1.*``          same
``final_layer.linear.*``                   same
``final_layer.scale_shift_table``          same (``final_layer_type="pixart"``)
``pos_embed`` (a stored buffer)            checked against our table, then dropped
=========================================  =====================================

What renaming cannot express is set by model options: the PixArt final layer
(``final_layer_type="pixart"``, chosen when the file has ``final_layer.scale_shift_table``),
the T2I model's stretched position table (``pos_base_size`` = the stored table's grid,
64 for the 1024 px model, ``pos_interpolation_scale`` = 2) and its size / aspect-ratio
micro-conditions (``micro_conditions=True``, chosen when the file has the embedders).

The conversion is strict: a missing or unexpected key, a shape that does not fit and a
stored ``pos_embed`` that differs from our table each fail with a message naming them.

Sampling the imported T2I model (`lumos released-t2i-sample`) uses `t2i_latent_shape` and
`check_text_width` below; its micro-conditions are `lumos.models.dit.micro_condition_inputs`.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from lumos.components.loading import MissingWeightsError
from lumos.models.dit import DIT_SIZES, LumosDiT

KINDS = ("i2i", "t2i")
#: Config key that will point at each released file.
CONFIG_KEYS = {"i2i": "released.i2i", "t2i": "released.t2i"}
#: Containers a training checkpoint may wrap its weights in, tried in this order (EMA first).
WRAPPERS = ("state_dict_ema", "ema", "state_dict", "model", "module")
#: Key prefixes added by DistributedDataParallel and torch.compile.
PREFIXES = ("module.", "_orig_mod.")

#: (official name, our name); ``{n}`` a block index, ``{i}`` a layer index, ``{p}`` weight or bias.
NAME_MAP = [
    ("x_embedder.proj.{p}", "x_embedder.{p}"),
    ("t_embedder.mlp.{i}.{p}", "t_embedder.mlp.{i}.{p}"),
    ("csize_embedder.mlp.{i}.{p}", "csize_embedder.mlp.{i}.{p}"),
    ("ar_embedder.mlp.{i}.{p}", "ar_embedder.mlp.{i}.{p}"),
    ("y_embedder.y_proj.fc{i}.{p}", "y_embedder.fc{i}.{p}"),
    ("y_embedder.y_embedding", "null_cond"),
    ("blocks.{n}.attn.qkv.{p}", "blocks.{n}.attn.qkv.{p}"),
    ("blocks.{n}.attn.proj.{p}", "blocks.{n}.attn.proj.{p}"),
    ("blocks.{n}.cross_attn.q_linear.{p}", "blocks.{n}.cross_attn.q.{p}"),
    ("blocks.{n}.cross_attn.kv_linear.{p}", "blocks.{n}.cross_attn.kv.{p}"),
    ("blocks.{n}.cross_attn.proj.{p}", "blocks.{n}.cross_attn.proj.{p}"),
    ("blocks.{n}.mlp.fc{i}.{p}", "blocks.{n}.mlp.fc{i}.{p}"),
    ("blocks.{n}.adaLN_modulation.1.{p}", "blocks.{n}.adaLN_modulation.1.{p}"),
    ("final_layer.linear.{p}", "final_layer.linear.{p}"),
    ("final_layer.scale_shift_table", "final_layer.scale_shift_table"),
    ("final_layer.adaLN_modulation.1.{p}", "final_layer.adaLN_modulation.1.{p}"),  # a DiT-style final layer
]
_FIELDS = {"n": r"\d+", "i": r"\d+", "p": r"weight|bias"}


class ReleasedCheckpointError(ValueError):
    """A released checkpoint does not have the expected layout; the message names the keys."""


def _pattern(template: str) -> re.Pattern:
    regex = re.escape(template)
    for field, sub in _FIELDS.items():
        regex = regex.replace(re.escape("{" + field + "}"), f"(?P<{field}>{sub})")
    return re.compile(regex)


_FORWARD = [(_pattern(src), dst) for src, dst in NAME_MAP]
_BACKWARD = [(_pattern(dst), src) for src, dst in NAME_MAP]


def _rename(key: str, table) -> str | None:
    for pattern, target in table:
        m = pattern.fullmatch(key)
        if m:
            return target.format(**m.groupdict())
    return None


def to_ours(key: str) -> str | None:
    """Our name of an official key (None when the key has no counterpart)."""
    return _rename(key, _FORWARD)


def to_released(key: str) -> str | None:
    """The official name of one of our keys (None when it has none)."""
    return _rename(key, _BACKWARD)


def _listing(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ---------------------------------------------------------------------------- loading


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The flat state dict inside ``obj``: unwraps :data:`WRAPPERS` containers (nested,
    EMA weights first) and strips :data:`PREFIXES` shared by every key."""
    for _ in range(len(WRAPPERS) + 1):
        if not isinstance(obj, Mapping):
            raise ReleasedCheckpointError(f"{source}: expected a state dict, found a {type(obj).__name__}")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((k for k in WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise ReleasedCheckpointError(
                f"{source}: not a flat state dict and none of the wrappers {list(WRAPPERS)} holds one "
                f"(top-level keys: {_listing(map(str, obj))})"
            )
        obj = obj[inner]
    sd = dict(obj)
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped = True
    return sd


def load_released(path, kind: str) -> dict[str, torch.Tensor]:
    """Read a released ``.pth`` (``torch.load(weights_only=True)``) as a flat state dict."""
    _check_kind(kind)
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(
            f"missing released Lumos-{kind.upper()} checkpoint: '{path}' does not exist. Download "
            f"Lumos_{kind.upper()}.pth from the authors' release (huggingface.co/Xiaomabufei/lumos) and place "
            f"it there, or point config key '{CONFIG_KEYS[kind]}' at it."
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return unwrap_state_dict(obj, source=str(path))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


# ------------------------------------------------------------------------- conversion


def released_config(sd: Mapping[str, torch.Tensor], kind: str, source: str = "state dict", **options) -> dict:
    """The :class:`LumosDiT` config of a released state dict (official names).

    Inferred: depth (block count), hidden size, patch size and input channels (patch
    conv), ``learn_sigma`` (final linear's out features), ``cond_dim`` and token count
    (``y_embedding``), ``sample_size`` (stored ``pos_embed`` grid x patch), the final
    layer's type and the micro-conditions. ``num_heads`` cannot be read from weights:
    it comes from :data:`DIT_SIZES` (16 for DiT-XL/2) or ``options``. Per kind, the
    position table is ``arange(n)`` for I2I and, for T2I, stretched to the stored grid
    with scale 2 (the 1024 px multi-scale model). ``options`` override any entry.
    """
    _check_kind(kind)
    required = ["x_embedder.proj.weight", "y_embedder.y_embedding", "final_layer.linear.weight", "pos_embed",
                "blocks.0.mlp.fc1.weight"]
    absent = [k for k in required if k not in sd]
    if absent:
        raise ReleasedCheckpointError(f"{source} is not a released Lumos checkpoint: missing keys {_listing(absent)}")
    conv = sd["x_embedder.proj.weight"]
    if conv.ndim != 4 or conv.shape[2] != conv.shape[3]:
        raise ReleasedCheckpointError(f"{source}: x_embedder.proj.weight has shape {tuple(conv.shape)}, "
                                      "expected (hidden, channels, patch, patch)")
    hidden, in_channels, patch = conv.shape[0], conv.shape[1], conv.shape[2]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    out_features = sd["final_layer.linear.weight"].shape[0]
    if out_features == 2 * in_channels * patch**2:
        learn_sigma = True
    elif out_features == in_channels * patch**2:
        learn_sigma = False
    else:
        raise ReleasedCheckpointError(
            f"{source}: final_layer.linear.weight has {out_features} outputs, expected {in_channels} or "
            f"{2 * in_channels} channels x {patch}^2")
    mlp_hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    null = sd["y_embedder.y_embedding"]
    if null.ndim != 2:
        raise ReleasedCheckpointError(f"{source}: y_embedder.y_embedding has shape {tuple(null.shape)}, "
                                      "expected (tokens, cond_dim)")
    pos = sd["pos_embed"]
    grid = math.isqrt(pos.shape[-2]) if pos.ndim == 3 else 0
    if pos.ndim != 3 or grid * grid != pos.shape[1] or pos.shape[2] != hidden:
        raise ReleasedCheckpointError(f"{source}: pos_embed has shape {tuple(pos.shape)}, expected "
                                      f"(1, grid * grid, {hidden})")
    micro = any(k.startswith(("csize_embedder.", "ar_embedder.")) for k in sd)
    if kind == "t2i" and not micro:
        raise ReleasedCheckpointError(f"{source}: kind 't2i' but no csize_embedder / ar_embedder keys "
                                      "(the T2I model's micro-conditions); is this the I2I checkpoint?")
    if kind == "i2i" and micro:
        raise ReleasedCheckpointError(f"{source}: kind 'i2i' but the file has csize_embedder / ar_embedder "
                                      "keys; is this the T2I checkpoint?")
    heads = options.pop("num_heads", None)
    if heads is None:
        heads = next((s["num_heads"] for s in DIT_SIZES.values()
                      if (s["depth"], s["hidden_size"], s["patch_size"]) == (depth, hidden, patch)), None)
    if heads is None:
        raise ReleasedCheckpointError(
            f"{source}: depth {depth}, hidden size {hidden}, patch {patch} is not a known DiT size; "
            "pass num_heads (it cannot be read from the weights)")
    cfg = dict(
        sample_size=grid * patch, patch_size=patch, in_channels=in_channels, hidden_size=hidden, depth=depth,
        num_heads=heads, mlp_ratio=mlp_hidden / hidden, learn_sigma=learn_sigma, injection="cross_attn",
        cond_dim=null.shape[1], max_cond_tokens=null.shape[0], cond_dropout=0.1,
        final_layer_type="pixart" if "final_layer.scale_shift_table" in sd else "dit",
        pos_base_size=grid if kind == "t2i" else None, pos_interpolation_scale=2.0 if kind == "t2i" else 1.0,
        micro_conditions=micro,
    )
    unknown = set(options) - set(inspect.signature(LumosDiT.__init__).parameters) - {"self"}
    if unknown:
        raise ValueError(f"unknown LumosDiT options {sorted(unknown)}")
    cfg.update(options)
    if int(cfg["hidden_size"] * cfg["mlp_ratio"]) != mlp_hidden:
        raise ReleasedCheckpointError(f"{source}: MLP width {mlp_hidden} is not an integer multiple of {hidden}")
    return cfg


def map_released(sd: Mapping[str, torch.Tensor], model: LumosDiT, source: str = "state dict") -> dict:
    """Our state dict (our names) from a released one, strictly checked against ``model``.

    Every key must map onto one of the model's (and every one of the model's must be
    given), with the model's shape; the stored ``pos_embed`` must equal the model's
    position table (atol 1e-5; not compared on the meta device) and is dropped.
    """
    expected = model.state_dict()
    mapped, unexpected = {}, []
    for key, value in sd.items():
        if key == "pos_embed":
            continue
        name = to_ours(key)
        if name is None or name not in expected:
            unexpected.append(key)
        else:
            mapped[name] = value
    missing = [to_released(k) or k for k in expected if k not in mapped]
    if missing or unexpected:
        parts = ([f"missing keys: {_listing(missing)}"] if missing else []) + (
            [f"unexpected keys: {_listing(unexpected)}"] if unexpected else [])
        raise ReleasedCheckpointError(f"{source} does not fit the inferred LumosDiT: " + "; ".join(parts))
    wrong = [f"{to_released(k)} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
             for k, v in mapped.items() if v.shape != expected[k].shape]
    if wrong:
        raise ReleasedCheckpointError(f"{source}: wrong shapes: {_listing(wrong)}")
    stored, table = sd["pos_embed"], model.pos_embed
    if stored.shape != table.shape:
        raise ReleasedCheckpointError(f"{source}: pos_embed has shape {tuple(stored.shape)}, our table "
                                      f"{tuple(table.shape)}")
    if not (stored.is_meta or table.is_meta):
        err = (stored.float() - table.float()).abs().max().item()
        if not err <= 1e-5:
            cfg = model.config
            raise ReleasedCheckpointError(
                f"{source}: the stored pos_embed differs from our position table by up to {err:.3g} "
                f"(pos_base_size={cfg.pos_base_size}, pos_interpolation_scale={cfg.pos_interpolation_scale}); "
                "set those options to the ones the checkpoint was trained with")
    return mapped


def convert_state_dict(sd: Mapping[str, torch.Tensor], kind: str, source: str = "state dict", **options) -> LumosDiT:
    """A :class:`LumosDiT` (eval mode, fp32) holding a released state dict (official names)."""
    model = LumosDiT(**released_config(sd, kind, source, **options))
    mapped = map_released(sd, model, source)
    model.load_state_dict({k: v.to(torch.float32) for k, v in mapped.items()}, strict=True)
    return model.eval()


def convert_released(path, kind: str, **options) -> LumosDiT:
    """Load a released ``Lumos_I2I.pth`` / ``Lumos_T2I.pth`` (``kind`` ``"i2i"`` / ``"t2i"``)
    as a :class:`LumosDiT`; ``options`` override the inferred config (e.g. ``num_heads``,
    ``pos_interpolation_scale``). Strict: see :func:`map_released`."""
    return convert_state_dict(load_released(path, kind), kind, str(path), **options)


# ------------------------------------------------------------------- sampling the T2I model


def t2i_latent_shape(model: LumosDiT, factor: int, size: int) -> tuple[int, int, int]:
    """The (channels, h, w) latent of a `size` x `size` pixel image for `model`, with a VAE of
    `factor` pixels per latent cell; `size` must be a multiple of factor x patch size."""
    step = factor * model.config.patch_size
    if size % step:
        raise ValueError(f"image size {size} is not a multiple of {step} (VAE factor {factor} x patch size "
                         f"{model.config.patch_size})")
    return model.config.in_channels, size // factor, size // factor


def check_text_width(model: LumosDiT, tokens, encoder: str) -> None:
    """Stop when cached caption tokens do not have the width the model's caption projection reads."""
    width = tokens.shape[-1]
    if width != model.config.cond_dim:
        raise ValueError(f"the {encoder} caption tokens are {width} wide but the model reads {model.config.cond_dim}: "
                         "the released T2I model reads T5 v1.1 XXL tokens (components.t5_released)")
