"""Importing the authors' released checkpoints (lumos.released), without the real files.

State dicts in the released layout are built at a tiny size with random non-zero values in
every tensor, converted, and compared with a reference forward written here from the
description of the official model (a plain function over the raw state dict, float64).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lumos.cli import main
from lumos.components.loading import MissingWeightsError
from lumos.models import LumosDiT
from lumos.models.dit import sincos_2d
from lumos.released import (
    ReleasedCheckpointError,
    convert_released,
    convert_state_dict,
    map_released,
    released_config,
)

torch.set_num_threads(1)

D, HEADS, P, C = 48, 4, 2, 4


# ------------------------------------------------------------------ the released layout


def ref_pos_table(dim, gh, gw, base=None, scale=1.0):
    """The official recipe: per-axis positions arange(n) / (n / base) / scale (float32
    division), sin-cos in float64, channels [x: sin | cos, y: sin | cos], x fastest."""

    def axis(n):
        b = n if base is None else base
        return (np.arange(n, dtype=np.float32) / np.float32(n / b)).astype(np.float64) / scale

    xs, ys = np.meshgrid(axis(gw), axis(gh))  # (gh, gw) each
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))

    def emb(pos):
        out = pos.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([emb(xs), emb(ys)], axis=1))


def released_shapes(depth, hidden, patch, channels, learn_sigma, cond_dim, tokens, micro):
    out = patch * patch * channels * (2 if learn_sigma else 1)
    shapes = {
        "x_embedder.proj.weight": (hidden, channels, patch, patch), "x_embedder.proj.bias": (hidden,),
        "t_embedder.mlp.0.weight": (hidden, 256), "t_embedder.mlp.0.bias": (hidden,),
        "t_embedder.mlp.2.weight": (hidden, hidden), "t_embedder.mlp.2.bias": (hidden,),
        "y_embedder.y_proj.fc1.weight": (hidden, cond_dim), "y_embedder.y_proj.fc1.bias": (hidden,),
        "y_embedder.y_proj.fc2.weight": (hidden, hidden), "y_embedder.y_proj.fc2.bias": (hidden,),
        "y_embedder.y_embedding": (tokens, cond_dim),
        "final_layer.linear.weight": (out, hidden), "final_layer.linear.bias": (out,),
        "final_layer.scale_shift_table": (2, hidden),
    }
    if micro:
        for name in ("csize_embedder", "ar_embedder"):
            shapes.update({f"{name}.mlp.0.weight": (hidden // 3, 256), f"{name}.mlp.0.bias": (hidden // 3,),
                           f"{name}.mlp.2.weight": (hidden // 3, hidden // 3), f"{name}.mlp.2.bias": (hidden // 3,)})
    for n in range(depth):
        for layer, (o, i) in {"attn.qkv": (3 * hidden, hidden), "attn.proj": (hidden, hidden),
                              "cross_attn.q_linear": (hidden, hidden), "cross_attn.kv_linear": (2 * hidden, hidden),
                              "cross_attn.proj": (hidden, hidden), "mlp.fc1": (4 * hidden, hidden),
                              "mlp.fc2": (hidden, 4 * hidden), "adaLN_modulation.1": (6 * hidden, hidden)}.items():
            shapes[f"blocks.{n}.{layer}.weight"] = (o, i)
            shapes[f"blocks.{n}.{layer}.bias"] = (o,)
    return shapes


def released_sd(kind, seed=0, depth=2, learn_sigma=True, cond_dim=16, tokens=1, grid=4, base=None, scale=1.0):
    """A random released-layout state dict; every tensor non-zero (zero-initialised layers included)."""
    g = torch.Generator().manual_seed(seed)
    shapes = released_shapes(depth, D, P, C, learn_sigma, cond_dim, tokens, micro=kind == "t2i")
    sd = {k: torch.randn(s, generator=g) * (1.0 if k == "y_embedder.y_embedding" else 0.1) for k, s in shapes.items()}
    sd["pos_embed"] = ref_pos_table(D, grid, grid, base, scale).float()[None]
    return sd


# ------------------------------------------------------------- reference official forward


def _linear(sd, name, x):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def _timestep_mlp(sd, name, t):
    """256-d [cos | sin] sinusoid (float32, as the official code computes it) -> Linear-SiLU-Linear."""
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    h = _linear(sd, f"{name}.mlp.0", torch.cat([torch.cos(args), torch.sin(args)], dim=1).double())
    return _linear(sd, f"{name}.mlp.2", F.silu(h))


def _layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def _attention(q, k, v, heads):
    """(N, D) queries, (L, D) keys / values -> (N, D); plain softmax attention."""
    dh = q.shape[-1] // heads
    q, k, v = (z.reshape(z.shape[0], heads, dh).transpose(0, 1) for z in (q, k, v))
    w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dh), dim=-1)
    return (w @ v).transpose(0, 1).reshape(-1, heads * dh)


def reference_forward(raw, x, t, y, mask=None, heads=HEADS, base=None, scale=1.0, hw=None, ar=None):
    """The official model's forward, from the description, on the raw released state dict."""
    sd = {k: v.double() for k, v in raw.items()}
    x, y = x.double(), y.double()
    b, _, hh, ww = x.shape
    p = sd["x_embedder.proj.weight"].shape[-1]
    gh, gw = hh // p, ww // p
    tokens = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=p)
    tokens = tokens.flatten(2).transpose(1, 2) + ref_pos_table(tokens.shape[1], gh, gw, base, scale)[None]
    c = _timestep_mlp(sd, "t_embedder", torch.as_tensor(t))
    if hw is not None:  # micro-conditions: cat[emb(h), emb(w), emb(ar)]
        c = c + torch.cat([_timestep_mlp(sd, "csize_embedder", hw[:, 0]), _timestep_mlp(sd, "csize_embedder", hw[:, 1]),
                           _timestep_mlp(sd, "ar_embedder", ar[:, 0])], dim=1)
    cond = _linear(sd, "y_embedder.y_proj.fc2", F.gelu(_linear(sd, "y_embedder.y_proj.fc1", y), approximate="tanh"))
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for n in range(depth):
        pre = f"blocks.{n}"
        mods = _linear(sd, f"{pre}.adaLN_modulation.1", F.silu(c)).chunk(6, dim=1)
        out = []
        for i in range(b):
            shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = (m[i] for m in mods)
            h = tokens[i]
            a = _layer_norm(h) * (1 + scale_a) + shift_a
            q, k, v = _linear(sd, f"{pre}.attn.qkv", a).chunk(3, dim=1)
            h = h + gate_a * _linear(sd, f"{pre}.attn.proj", _attention(q, k, v, heads))
            yi = cond[i] if mask is None else cond[i][mask[i]]  # only this sample's real tokens
            kv = _linear(sd, f"{pre}.cross_attn.kv_linear", yi)
            ca = _attention(_linear(sd, f"{pre}.cross_attn.q_linear", h), kv[:, :D], kv[:, D:], heads)
            h = h + _linear(sd, f"{pre}.cross_attn.proj", ca)
            m = _layer_norm(h) * (1 + scale_m) + shift_m
            h = h + gate_m * _linear(sd, f"{pre}.mlp.fc2", F.gelu(_linear(sd, f"{pre}.mlp.fc1", m), approximate="tanh"))
            out.append(h)
        tokens = torch.stack(out)
    shift, scale_f = sd["final_layer.scale_shift_table"][0] + c, sd["final_layer.scale_shift_table"][1] + c
    o = _linear(sd, "final_layer.linear", _layer_norm(tokens) * (1 + scale_f[:, None]) + shift[:, None])
    ch = o.shape[-1] // (p * p)
    o = o.reshape(b, gh, gw, p, p, ch)
    return torch.einsum("nhwpqc->nchpwq", o).reshape(b, ch, gh * p, gw * p).float()


def close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def latents(b, hh, ww, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, C, hh, ww, generator=g), torch.tensor([10.0, 700.0][:b])


# -------------------------------------------------------------------------------- tests


def test_defaults_leave_our_model_unchanged():
    model = LumosDiT()
    cfg = model.config
    assert (cfg.final_layer_type, cfg.pos_base_size, cfg.pos_interpolation_scale, cfg.micro_conditions) == (
        "dit", None, 1.0, False)
    keys = set(model.state_dict())
    assert "final_layer.adaLN_modulation.1.weight" in keys and "final_layer.scale_shift_table" not in keys
    assert not any(k.startswith(("csize_embedder", "ar_embedder")) for k in keys)
    with pytest.raises(ValueError, match="final_layer_type"):
        LumosDiT(final_layer_type="adaln")
    with pytest.raises(ValueError, match="divisible by 3"):
        LumosDiT(hidden_size=128, micro_conditions=True)


def test_i2i_matches_reference():
    sd = released_sd("i2i")
    model = convert_state_dict(sd, "i2i", num_heads=HEADS)
    cfg = model.config
    assert (cfg.depth, cfg.hidden_size, cfg.patch_size, cfg.in_channels, cfg.learn_sigma) == (2, D, P, C, True)
    assert (cfg.cond_dim, cfg.max_cond_tokens, cfg.sample_size, cfg.final_layer_type) == (16, 1, 8, "pixart")
    assert (cfg.pos_base_size, cfg.pos_interpolation_scale, cfg.micro_conditions) == (None, 1.0, False)
    assert torch.equal(model.null_cond, sd["y_embedder.y_embedding"])
    x, t = latents(2, 8, 8)
    y = torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x, t, y)
        assert out.shape == (2, 2 * C, 8, 8) and out.abs().max() > 0.1
        close(out, reference_forward(sd, x, t, y))
        close(model(x, t, y[:, 0]), out)  # (B, cond_dim) is one token


def test_t2i_non_square_mask_and_micro_conditions_match_reference():
    base, scale = 3, 2.0  # stored grid 3 (sample_size 6); 5 x 7 tokens: n / base is not exact in float32
    sd = released_sd("t2i", seed=3, learn_sigma=False, cond_dim=24, tokens=5, grid=base, base=base, scale=scale)
    model = convert_state_dict(sd, "t2i", num_heads=HEADS)
    cfg = model.config
    assert (cfg.pos_base_size, cfg.pos_interpolation_scale, cfg.micro_conditions, cfg.learn_sigma) == (
        base, scale, True, False)
    assert (cfg.sample_size, cfg.max_cond_tokens, cfg.cond_dim) == (6, 5, 24)
    x, t = latents(2, 10, 14)
    g = torch.Generator().manual_seed(4)
    y = torch.randn(2, 5, 24, generator=g)
    y[0, 3:] = 10 * torch.randn(2, 24, generator=g)  # padding with arbitrary content
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    hw = torch.tensor([[80.0, 112.0], [96.0, 64.0]])
    ar = torch.tensor([[0.71], [1.5]])
    with torch.no_grad():
        out = model(x, t, y, mask, resolution=hw, aspect_ratio=ar)
        assert out.shape == (2, C, 10, 14) and out.abs().max() > 0.1
        close(out, reference_forward(sd, x, t, y, mask, base=base, scale=scale, hw=hw, ar=ar))
        # the cached table (the stored grid) is the stretched one too
        x3, t3 = latents(2, 6, 6, seed=5)
        close(model(x3, t3, y, mask, resolution=hw, aspect_ratio=ar),
              reference_forward(sd, x3, t3, y, mask, base=base, scale=scale, hw=hw, ar=ar))
        # omitted micro-conditions: 8 x the latent size and H / W
        default = reference_forward(sd, x, t, y, mask, base=base, scale=scale,
                                    hw=torch.tensor([[80.0, 112.0]] * 2), ar=torch.tensor([[10 / 14]] * 2))
        close(model(x, t, y, mask), default)
        close(model(x, t, y, mask, resolution=[80, 112], aspect_ratio=10 / 14), default)  # broadcast
        assert (model(x, t, y, mask) - out).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["i2i", "t2i"])
def test_null_branch_and_cfg_match_reference(kind):
    t2i = kind == "t2i"
    tokens, cond_dim = (4, 24) if t2i else (1, 16)
    base, scale = (4, 2.0) if t2i else (None, 1.0)
    sd = released_sd(kind, seed=6, tokens=tokens, cond_dim=cond_dim, base=base, scale=scale)
    model = convert_state_dict(sd, kind, num_heads=HEADS)
    x, t = latents(2, 8, 8)
    y = torch.randn(2, tokens, cond_dim, generator=torch.Generator().manual_seed(7))
    mask = torch.tensor([[True, True, False, False], [True] * 4]) if t2i else None
    micro = dict(resolution=torch.tensor([[64.0, 64.0]] * 2), aspect_ratio=torch.tensor([[1.0]] * 2)) if t2i else {}
    ref_micro = dict(hw=micro["resolution"], ar=micro["aspect_ratio"]) if t2i else {}
    null = sd["y_embedder.y_embedding"].expand(2, -1, -1)
    with torch.no_grad():
        ref_c = reference_forward(sd, x, t, y, mask, base=base, scale=scale, **ref_micro)
        ref_u = reference_forward(sd, x, t, null, mask, base=base, scale=scale, **ref_micro)
        assert (ref_c - ref_u).abs().max() > 1e-3
        # forced dropout keeps the mask (the official sampler passes it to both branches)
        close(model(x, t, y, mask, force_drop_ids=torch.tensor([True, True]), **micro), ref_u)
        close(model(x, t, None, **micro),
              reference_forward(sd, x, t, null, None, base=base, scale=scale, **ref_micro))
        # guidance 4.5 scales float32 rounding by up to 1 + 2 * 4.5 = 10
        torch.testing.assert_close(model.forward_with_cfg(x, t, y, mask, guidance_scale=4.5, **micro),
                                   ref_u + 4.5 * (ref_c - ref_u), atol=1e-4, rtol=0)


def test_dit_xl2_i2i_keys_on_meta_device():
    """DiT-XL/2 I2I: 28 blocks x 16 tensors + 14 others = 462 once pos_embed is dropped."""
    shapes = released_shapes(28, 1152, 2, 4, True, 768, 1, micro=False)
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    sd["pos_embed"] = torch.empty(1, 256, 1152, device="meta")
    cfg = released_config(sd, "i2i")
    assert (cfg["depth"], cfg["hidden_size"], cfg["num_heads"], cfg["patch_size"]) == (28, 1152, 16, 2)
    assert (cfg["in_channels"], cfg["learn_sigma"], cfg["cond_dim"], cfg["max_cond_tokens"]) == (4, True, 768, 1)
    assert cfg["sample_size"] == 32 and cfg["final_layer_type"] == "pixart"
    with torch.device("meta"):
        model = LumosDiT(**cfg)
    mapped = map_released(sd, model)
    ours = model.state_dict()
    assert len(sd) == 463 and len(mapped) == 462 == len(ours)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    # T2I at 1024 px: 120 T5 tokens of 4096, a 64 x 64 stored grid, + 8 micro-condition tensors
    shapes = released_shapes(28, 1152, 2, 4, True, 4096, 120, micro=True)
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    sd["pos_embed"] = torch.empty(1, 4096, 1152, device="meta")
    cfg = released_config(sd, "t2i")
    assert (cfg["sample_size"], cfg["pos_base_size"], cfg["pos_interpolation_scale"]) == (128, 64, 2.0)
    with torch.device("meta"):
        model = LumosDiT(**cfg)
    assert len(map_released(sd, model)) == 470 == len(model.state_dict())


def test_stored_t2i_table_has_scale_two():
    """The 1024 px table (grid 64, base 64, scale 2) is arange(64) / 2 on each axis."""
    table = LumosDiT(sample_size=128, hidden_size=48, depth=1, num_heads=4, pos_base_size=64,
                     pos_interpolation_scale=2.0).pos_embed[0]
    close(table, ref_pos_table(48, 64, 64, 64, 2.0).float())
    close(table[1, :12], torch.sin(0.5 / 10000 ** (torch.arange(12, dtype=torch.float64) / 12)).float())
    # off the base grid, positions are divided in float32 first, as the official numpy code does
    # (an 832 x 1216 bucket: 52 x 76 tokens on the base grid 64; float64 division would differ by ~1e-6)
    torch.testing.assert_close(sincos_2d(48, 52, 76, base_size=64, scale=2.0).float(),
                               ref_pos_table(48, 52, 76, 64, 2.0).float(), atol=1e-7, rtol=0)


def test_missing_unexpected_and_wrong_keys_fail_naming_them():
    sd = released_sd("i2i")
    missing = {k: v for k, v in sd.items() if k != "blocks.1.mlp.fc2.bias"}
    with pytest.raises(ReleasedCheckpointError, match=r"missing keys: blocks\.1\.mlp\.fc2\.bias"):
        convert_state_dict(missing, "i2i", num_heads=HEADS)
    extra = {**sd, "blocks.0.attn.rel_pos_h": torch.ones(7, 12)}
    with pytest.raises(ReleasedCheckpointError, match=r"unexpected keys: blocks\.0\.attn\.rel_pos_h"):
        convert_state_dict(extra, "i2i", num_heads=HEADS)
    shaped = {**sd, "y_embedder.y_proj.fc1.weight": torch.ones(D, 17)}
    with pytest.raises(ReleasedCheckpointError, match=r"y_embedder\.y_proj\.fc1\.weight \(48, 17\)"):
        convert_state_dict(shaped, "i2i", num_heads=HEADS)
    wrong_pos = {**sd, "pos_embed": sd["pos_embed"] + 1e-3}
    with pytest.raises(ReleasedCheckpointError, match="pos_embed"):
        convert_state_dict(wrong_pos, "i2i", num_heads=HEADS)
    no_pos = {k: v for k, v in sd.items() if k != "pos_embed"}
    with pytest.raises(ReleasedCheckpointError, match="pos_embed"):
        convert_state_dict(no_pos, "i2i", num_heads=HEADS)
    with pytest.raises(ReleasedCheckpointError, match="num_heads"):
        convert_state_dict(sd, "i2i")  # depth 2 x 48 is not a DiT size
    with pytest.raises(ReleasedCheckpointError, match="I2I checkpoint"):
        convert_state_dict(sd, "t2i", num_heads=HEADS)
    t2i = released_sd("t2i", tokens=3, cond_dim=24, base=4, scale=2.0)
    with pytest.raises(ReleasedCheckpointError, match="T2I checkpoint"):
        convert_state_dict(t2i, "i2i", num_heads=HEADS)
    # a table stored with scale 1 is refused under the T2I default (scale 2), accepted when told
    t2i_s1 = released_sd("t2i", tokens=3, cond_dim=24, base=4, scale=1.0)
    with pytest.raises(ReleasedCheckpointError, match="pos_interpolation_scale=2.0"):
        convert_state_dict(t2i_s1, "t2i", num_heads=HEADS)
    assert convert_state_dict(t2i_s1, "t2i", num_heads=HEADS, pos_interpolation_scale=1.0).config.pos_base_size == 4
    with pytest.raises(ValueError, match="unknown LumosDiT options"):
        convert_state_dict(sd, "i2i", num_heads=HEADS, heads=4)


@pytest.mark.parametrize("wrap", ["flat", "state_dict", "ema", "model", "state_dict_ema+module"])
def test_wrappers_unwrap(tmp_path, wrap):
    sd = released_sd("i2i", seed=8)
    if wrap == "flat":
        obj = sd
    elif wrap == "state_dict_ema+module":
        obj = {"state_dict": {k: torch.zeros_like(v) for k, v in sd.items()},
               "state_dict_ema": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}
    else:
        obj = {wrap: {f"module.{k}": v for k, v in sd.items()}, "step": 10}
    path = tmp_path / "Lumos_I2I.pth"
    torch.save(obj, path)
    model = convert_released(path, "i2i", num_heads=HEADS)
    ref = convert_state_dict(sd, "i2i", num_heads=HEADS).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_missing_file_names_file_and_config_key(tmp_path):
    path = tmp_path / "Lumos_T2I.pth"
    with pytest.raises(MissingWeightsError, match="released.t2i") as err:
        convert_released(path, "t2i")
    assert str(path) in str(err.value) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(ValueError, match="kind"):
        convert_released(path, "t2v")


def test_cli_import_released_roundtrip(tmp_path, capsys):
    base, scale = 4, 2.0
    sd = released_sd("t2i", seed=9, tokens=3, cond_dim=24, base=base, scale=scale)
    path = tmp_path / "Lumos_T2I.pth"
    torch.save(sd, path)
    out = tmp_path / "model"
    main(["import-released", "--checkpoint", str(path), "--kind", "t2i", "--out", str(out), "--num-heads", "4",
          "--threads", "1"])
    assert '"tensors": 54' in capsys.readouterr().out  # 2 blocks x 16 + 22 others, pos_embed dropped
    loaded = LumosDiT.from_pretrained(out).eval()
    assert loaded.config.final_layer_type == "pixart" and loaded.config.micro_conditions
    x, t = latents(2, 8, 12)
    y = torch.randn(2, 3, 24)
    hw, ar = torch.tensor([[64.0, 96.0]] * 2), torch.tensor([[0.68]] * 2)
    with torch.no_grad():
        close(loaded(x, t, y, resolution=hw, aspect_ratio=ar),
              reference_forward(sd, x, t, y, base=base, scale=scale, hw=hw, ar=ar))
    with pytest.raises(SystemExit):
        main(["import-released", "--checkpoint", str(tmp_path / "none.pth"), "--kind", "i2i", "--out", str(out)])
    assert "released.i2i" in capsys.readouterr().err


# ------------------------------------------------------- sampling the imported T2I model


TEXT_DIM = 24  # the tiny T5's width, standing in for T5 v1.1 XXL's 4096


@pytest.fixture(scope="module")
def released_t2i(tmp_path_factory, small_split):
    """A tiny released-layout T2I checkpoint imported with `lumos import-released`, a tiny VAE
    (4 pixels per latent cell), a tiny random T5 as `components.t5_released` and the T5 caption
    tokens of a small captioned split: {model, vae, t5, text}."""
    from diffusers import AutoencoderKL

    from lumos.components.text import train_t5
    from lumos.features import extract_text_features

    root = tmp_path_factory.mktemp("released_t2i")
    torch.save(released_sd("t2i", seed=11, tokens=6, cond_dim=TEXT_DIM, base=4, scale=2.0), root / "Lumos_T2I.pth")
    main(["import-released", "--checkpoint", str(root / "Lumos_T2I.pth"), "--kind", "t2i", "--out",
          str(root / "model"), "--num-heads", str(HEADS), "--threads", "1"])
    torch.manual_seed(0)
    AutoencoderKL(latent_channels=C, block_out_channels=[8, 8, 8], down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1, norm_num_groups=8,
                  mid_block_add_attention=False).save_pretrained(root / "vae")
    train_t5({"d_model": TEXT_DIM, "num_layers": 1, "num_heads": 2, "d_kv": 12, "d_ff": 48}, str(root / "t5"))
    t5 = {"pretrained": str(root / "t5"), "kind": "t5", "max_length": 12}
    extract_text_features(str(small_split[0]), str(root / "text"), {"t5_released": t5}, ["t5_released"], 32)
    return {"model": root / "model", "vae": root / "vae", "t5": t5, "text": root / "text"}


@pytest.fixture()
def model_calls(monkeypatch):
    """Every `LumosDiT.forward_with_cfg` call's keyword arguments, recorded (the call still runs)."""
    calls = []
    original = LumosDiT.forward_with_cfg

    def recording(self, *args, **kwargs):
        calls.append({k: (v.tolist() if torch.is_tensor(v) else v) for k, v in kwargs.items()})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LumosDiT, "forward_with_cfg", recording)
    return calls


def test_released_t2i_sample_sets_micro_conditions(released_t2i, model_calls, tmp_path):
    """`lumos released-t2i-sample` draws from the split's T5 tokens at `released.t2i_sample`'s size,
    sampler, steps and guidance, with (size, size) and aspect ratio 1 as micro-conditions: the
    images equal `sample` called with them, and differ from the model's own default (8 x latent)."""
    import json

    from lumos.components.vae import load_vae
    from lumos.diffusion.sampling import sample
    from lumos.tasks.t2i import load_captions
    from lumos.sample import batch_generator, read_pngs

    settings = {"sampler": "dpm++", "steps": 2, "guidance_scale": 4.5, "image_size": 16, "batch_size": 3}
    cfg = {"released.t2i_sample": settings, "components.vae": {"pretrained": str(released_t2i["vae"])}, "seed": 5}
    main(["released-t2i-sample", "--cfg", json.dumps(cfg), "--threads", "1", "--model", str(released_t2i["model"]),
          "--text", str(released_t2i["text"]), "--n-samples", "3", "--out", str(tmp_path / "out"),
          "--work", str(tmp_path / "work")])
    images = read_pngs(tmp_path / "out")
    assert images.shape == (3, 16, 16, 3)
    assert len(model_calls) == 2 and all(c["guidance_scale"] == 4.5 for c in model_calls)
    assert all(c["resolution"] == [[16.0, 16.0]] and c["aspect_ratio"] == [[1.0]] for c in model_calls)

    model = LumosDiT.from_pretrained(released_t2i["model"]).eval()
    codec = load_vae({"pretrained": str(released_t2i["vae"])})
    tokens, mask = load_captions(str(released_t2i["text"]), "t5_released", "short", 3)

    def draw(**micro):
        return codec.decode(sample(model, (3, C, 4, 4), tokens[0:3], mask[0:3], num_steps=2, guidance_scale=4.5,
                                   generator=batch_generator(5, 0), model_kwargs=micro or None))

    np.testing.assert_array_equal(images, draw(resolution=torch.tensor([[16.0, 16.0]]),
                                               aspect_ratio=torch.tensor([[1.0]])))
    assert np.abs(images.astype(int) - draw().astype(int)).max() > 0  # the default reads 8 x 4 = 32 px


def test_released_t2i_through_the_pipeline(released_t2i, model_calls, tmp_path):
    """The exported pipeline path (official images, the paper-prompt grid): the settings' square
    size, and on any other size the pixel size and height / width as micro-conditions."""
    from lumos.pipelines import assemble_t2i_pipeline, pipeline_sampler

    pipe = assemble_t2i_pipeline(str(released_t2i["model"]), str(released_t2i["vae"]), released_t2i["t5"]["pretrained"])
    pipe.save_pretrained(tmp_path / "pipeline")
    generate = pipeline_sampler(str(tmp_path / "pipeline"), {"steps": 2, "guidance_scale": 4.5, "image_size": 16}, "cpu")
    assert generate(["a red circle"], 0).shape == (1, 16, 16, 3)
    assert model_calls[-1]["resolution"] == [[16.0, 16.0]] and model_calls[-1]["aspect_ratio"] == [[1.0]]
    out = pipe(["a red circle"], num_inference_steps=2, height=16, width=24, output_type="np").images
    assert out.shape == (1, 16, 24, 3)
    assert model_calls[-1]["resolution"] == [[16.0, 24.0]] and model_calls[-1]["aspect_ratio"] == [[pytest.approx(2 / 3)]]

    # the qualitative figure: the paper's 23 prompts (Figures 1a, S4, S5), one sample each, 6 a row
    import json

    from PIL import Image

    from lumos.eval.t2i import grid_prompts

    cfg = {"released.t2i_sample": {"steps": 2, "image_size": 16}}
    main(["t2i-grid", "--cfg", json.dumps(cfg), "--threads", "1", "--pipeline", str(tmp_path / "pipeline"),
          "--out", str(tmp_path / "grid.png"), "--prompts", "paper", "--images-per-prompt", "1", "--columns", "6",
          "--tile-size", "32", "--sample-key", "released.t2i_sample"])
    labels = [label for label, _ in grid_prompts("paper")]
    assert len(labels) == 23 and labels[0].startswith("Fig. 1a: golden sunset") and labels[-1].startswith("Fig. S5")
    assert Image.open(tmp_path / "grid.png").width == 6 * (32 + 2) + 2
    assert model_calls[-1]["resolution"] == [[16.0, 16.0]] and model_calls[-1]["guidance_scale"] == 4.5


def test_released_t2i_sample_refuses_tokens_of_another_width(released_t2i):
    from lumos.released import check_text_width, t2i_latent_shape

    model = LumosDiT.from_pretrained(released_t2i["model"])
    with pytest.raises(ValueError, match=r"24 wide but the model reads 16: .*components\.t5_released"):
        check_text_width(LumosDiT(**{**model.config, "cond_dim": 16}), torch.zeros(1, 3, 24), "t5_released")
    with pytest.raises(ValueError, match="not a multiple of 8"):
        t2i_latent_shape(model, 4, 20)
    assert t2i_latent_shape(model, 8, 1024) == (C, 128, 128)
