"""Tests for the LumosDiT backbone (CPU, tiny sizes)."""

import pytest
import torch

from lumos.models import DIT_SIZES, LumosDiT
from lumos.models.dit import CrossAttention

torch.set_num_threads(1)

COND_DIM = 16


def perturb(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Overwrite every parameter with small seeded noise (breaks the zero init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def nano(**kw) -> LumosDiT:
    torch.manual_seed(0)
    cfg = dict(sample_size=8, in_channels=4, cond_dim=COND_DIM)
    cfg.update(kw)
    return LumosDiT.from_size("DiT-N/2", **cfg).eval()


def inputs(b=2, c=4, s=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, s, s, generator=g), torch.tensor([10, 700][:b] + [5] * max(0, b - 2))


def test_sizes_table():
    keys = {"depth", "hidden_size", "num_heads", "patch_size"}
    assert all(set(v) == keys for v in DIT_SIZES.values())
    assert DIT_SIZES["DiT-XL/2"] == dict(depth=28, hidden_size=1152, num_heads=16, patch_size=2)
    with pytest.raises(KeyError):
        LumosDiT.from_size("DiT-Q/3")


@pytest.mark.parametrize(
    "size,sample,learn_sigma,extra",
    [("DiT-N/2", 8, True, 0), ("DiT-T/1", 4, False, 0), ("DiT-T/2", 8, True, 4), ("DiT-N/2", 16, False, 2)],
)
def test_output_shapes(size, sample, learn_sigma, extra):
    model = LumosDiT.from_size(
        size, sample_size=sample, learn_sigma=learn_sigma, extra_in_channels=extra, cond_dim=COND_DIM, max_cond_tokens=3
    ).eval()
    x = torch.randn(2, 4 + extra, sample, sample)
    out = model(x, torch.tensor([1, 999]), torch.randn(2, 3, COND_DIM))
    assert out.shape == (2, 8 if learn_sigma else 4, sample, sample)
    assert model.x_embedder.in_channels == 4 + extra
    # scalar timestep broadcast and a non-default (rectangular) latent size
    out = model(torch.randn(2, 4 + extra, sample, 2 * sample), 3, torch.randn(2, COND_DIM))
    assert out.shape == (2, 8 if learn_sigma else 4, sample, 2 * sample)


@pytest.mark.parametrize("injection", ["cross_attn", "adaln", "class", "none"])
def test_zero_init(injection):
    model = nano(injection=injection, num_classes=10)
    x, t = inputs()
    cond = torch.tensor([1, 2]) if injection == "class" else torch.randn(2, 1, COND_DIM)
    out = model(x, t, cond)
    assert torch.equal(out, torch.zeros_like(out))


def test_xl2_on_meta_device():
    """DiT-XL/2 Lumos-I2I (cond_dim 768, cross-attention): 824,660,384 parameters.

    Breakdown: DiT-XL/2 backbone without label table 673.7M + 28 cross-attention
    layers (4 D^2 + 4 D each) 148.8M + the 768->1152->1152 projection 2.2M. The
    class variant (1000 classes) gives 674,834,720, i.e. DiT's 675.13M minus its
    fixed position-embedding parameter (256 x 1152).
    """
    with torch.device("meta"):
        model = LumosDiT.from_size("DiT-XL/2", sample_size=32, cond_dim=768)
    assert len(model.blocks) == 28
    assert model.config.hidden_size == 1152 and model.blocks[0].attn.num_heads == 16
    assert model.config.patch_size == 2 and model.x_embedder.kernel_size == (2, 2)
    assert model.out_channels == 8
    n = sum(p.numel() for p in model.parameters())
    assert n == 824_660_384
    assert 800e6 < n < 830e6


def test_masked_cross_attention_padding_and_content():
    model = perturb(nano(max_cond_tokens=4))
    x, t = inputs()
    g = torch.Generator().manual_seed(3)
    cond = torch.randn(2, 3, COND_DIM, generator=g)
    ref = model(x, t, cond, torch.ones(2, 3, dtype=torch.bool))
    assert ref.abs().max() > 1e-3
    # two padding tokens with arbitrary content, masked out
    padded = torch.cat([cond, 10 * torch.randn(2, 2, COND_DIM, generator=g)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 2)
    torch.testing.assert_close(model(x, t, padded, mask), ref, atol=1e-5, rtol=0)
    # per-sample lengths: sample 1 has only 1 real token
    mask2 = mask.clone()
    mask2[1, 1:] = False
    out2 = model(x, t, padded, mask2)
    torch.testing.assert_close(out2[0], ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out2[1:], model(x[1:], t[1:], cond[1:, :1]), atol=1e-5, rtol=0)
    # changing a real token changes the output of that sample only
    changed = cond.clone()
    changed[0, 1] += 1.0
    out3 = model(x, t, changed)
    assert (out3[0] - ref[0]).abs().max() > 1e-4
    torch.testing.assert_close(out3[1], ref[1], atol=1e-5, rtol=0)


def test_fully_masked_sample_is_finite():
    attn = perturb(CrossAttention(8, 2))
    x, y = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    out = attn(x, y, torch.tensor([[False] * 3, [True, False, False]]))
    assert torch.isfinite(out).all() and torch.equal(out[0], torch.zeros_like(out[0]))


def test_condition_dropout_cross_attn():
    model = perturb(nano(max_cond_tokens=2))
    assert "null_cond" in model.state_dict() and model.null_cond.shape == (2, COND_DIM)
    assert not any(n.endswith("null_cond") for n, _ in model.named_parameters())
    x, t = inputs()
    cond = torch.randn(2, 2, COND_DIM)
    forced = model(x, t, cond, force_drop_ids=torch.tensor([True, False]))
    explicit = cond.clone()
    explicit[0] = model.null_cond
    torch.testing.assert_close(forced, model(x, t, explicit), atol=1e-6, rtol=0)
    # cond=None is the null condition for every sample
    torch.testing.assert_close(
        model(x, t, None), model(x, t, cond, force_drop_ids=torch.tensor([True, True])), atol=1e-6, rtol=0
    )
    # more tokens than the buffer: the null is tiled
    cond5 = torch.randn(2, 5, COND_DIM)
    tiled = model.null_cond.repeat(3, 1)[:5]
    torch.testing.assert_close(
        model(x, t, cond5, force_drop_ids=torch.tensor([True, True])),
        model(x, t, tiled.expand(2, -1, -1)),
        atol=1e-6,
        rtol=0,
    )
    # training mode with p=1 drops every sample; p=0.1 leaves no-force eval untouched
    model.register_to_config(cond_dropout=1.0)
    model.train()
    all_null = model(x, t, cond)
    model.eval()
    torch.testing.assert_close(all_null, model(x, t, None), atol=1e-6, rtol=0)


def test_condition_dropout_keeps_mask():
    model = perturb(nano(max_cond_tokens=3))
    x, t = inputs()
    cond = torch.randn(2, 3, COND_DIM)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    forced = model(x, t, cond, mask, force_drop_ids=torch.tensor([True, True]))
    torch.testing.assert_close(
        forced, model(x, t, model.null_cond.expand(2, -1, -1), mask), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("injection", ["cross_attn", "adaln", "class"])
def test_cfg(injection):
    model = perturb(nano(injection=injection, num_classes=10))
    x, t = inputs()
    cond = torch.tensor([3, 7]) if injection == "class" else torch.randn(2, 1, COND_DIM)
    c = model(x, t, cond)
    u = model(x, t, cond, force_drop_ids=torch.ones(2, dtype=torch.bool))
    assert (c - u).abs().max() > 1e-4
    torch.testing.assert_close(model.forward_with_cfg(x, t, cond, guidance_scale=1.0), c, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.forward_with_cfg(x, t, cond, guidance_scale=0.0), u, atol=1e-5, rtol=0)
    # guidance acts on all channels, including the variance half
    g = model.forward_with_cfg(x, t, cond, guidance_scale=3.0)
    torch.testing.assert_close(g, u + 3.0 * (c - u), atol=1e-4, rtol=0)


def test_rcg_variant():
    model = perturb(nano(injection="adaln", cond_dim=32))
    assert not any(isinstance(m, CrossAttention) for m in model.modules())
    assert all(b.cross_attn is None for b in model.blocks)
    assert isinstance(model.fake_latent, torch.nn.Parameter) and model.fake_latent.shape == (32,)
    assert "null_cond" not in model.state_dict()
    x, t = inputs()
    g = torch.Generator().manual_seed(5)
    rep = torch.randn(2, 32, generator=g)
    out = model(x, t, rep)
    assert (out - model(x, t, torch.randn(2, 32, generator=g))).abs().max() > 1e-4
    # per-sample standardisation: invariant to a positive affine map per sample
    rescaled = rep * torch.tensor([[3.0], [0.5]]) + torch.tensor([[2.0], [-7.0]])
    torch.testing.assert_close(model(x, t, rescaled), out, atol=1e-5, rtol=0)
    torch.testing.assert_close(model(x, t, rep[:, None]), out, atol=1e-6, rtol=0)
    # dropout uses the learned null, which receives gradients
    model.train()
    model.register_to_config(cond_dropout=1.0)
    model(x, t, rep).sum().backward()
    assert model.fake_latent.grad is not None and model.fake_latent.grad.abs().sum() > 0


def test_class_and_none_variants():
    model = perturb(nano(injection="class", num_classes=10))
    assert model.y_embedder.num_embeddings == 11
    x, t = inputs()
    out = model(x, t, torch.tensor([1, 2]))
    torch.testing.assert_close(
        model(x, t, torch.tensor([1, 2]), force_drop_ids=torch.tensor([False, True])),
        model(x, t, torch.tensor([1, 10])),
    )
    assert out.shape == (2, 8, 8, 8)
    model = perturb(nano(injection="none"))
    out = model(x, t)
    torch.testing.assert_close(model(x, t, torch.randn(2, 1, COND_DIM)), out)
    torch.testing.assert_close(model.forward_with_cfg(x, t, None, guidance_scale=4.0), out)


def test_save_load_roundtrip(tmp_path):
    model = perturb(nano(max_cond_tokens=2))
    with torch.no_grad():
        model.null_cond.copy_(torch.randn(2, COND_DIM))  # buffer must come from the file
    model.save_pretrained(tmp_path)
    loaded = LumosDiT.from_pretrained(tmp_path).eval()
    assert loaded.config.max_cond_tokens == 2 and loaded.config.cond_dim == COND_DIM
    assert torch.equal(loaded.null_cond, model.null_cond)
    x, t = inputs()
    cond = torch.randn(2, 2, COND_DIM)
    assert torch.equal(loaded(x, t, cond), model(x, t, cond))
    drop = torch.tensor([True, True])
    assert torch.equal(loaded(x, t, cond, force_drop_ids=drop), model(x, t, cond, force_drop_ids=drop))


def test_gradient_checkpointing_matches():
    model = perturb(nano())
    model.train()
    model.register_to_config(cond_dropout=0.0)
    x, t = inputs()
    cond = torch.randn(2, 1, COND_DIM)

    def grads():
        model.zero_grad()
        model(x, t, cond).square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    ref = grads()
    model.enable_gradient_checkpointing()
    assert model.is_gradient_checkpointing and model.gradient_checkpointing
    for a, b in zip(grads(), ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    model.disable_gradient_checkpointing()
    assert not model.gradient_checkpointing
