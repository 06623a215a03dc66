"""T2I fine-tuning: run names, caption noise, prior loading, training data, caption-token caching."""

import json

import numpy as np
import pytest
import torch

from lumos.finetune import (continue_t2i_model, init_from_prior, make_t2i_model, noisy_caption_index,
                            parse_finetune, t2i_training_data)
from lumos.models import LumosDiT


def test_parse_finetune_names():
    spec = parse_finetune("lumos_i2i_pool2000-clip-long-n50")
    assert spec == {"prior": "lumos_i2i_pool2000", "text": "clip", "captions": "long", "noise": 50,
                    "prior_run": "lumos_i2i", "pool_size": 2000}
    assert parse_finetune("none-t5-mixed-n0")["prior_run"] is None
    for bad in ("lumos_i2i-t5-mixed", "lumos_i2i-bert-mixed-n0", "lumos_i2i-t5-mixed-n101", "Lumos-t5-short-n0"):
        with pytest.raises(ValueError):
            parse_finetune(bad)


@pytest.mark.parametrize("n,fraction", [(1000, 0.1), (1000, 0.5), (999, 0.9), (10, 1.0), (7, 0.15)])
def test_caption_noise_swaps_an_exact_fraction(n, fraction):
    index = noisy_caption_index(n, fraction, seed=3)
    wrong = index != np.arange(n)
    assert wrong.sum() == round(fraction * n)  # exactly this many pairs get another image's caption
    assert sorted(index[wrong]) == sorted(np.flatnonzero(wrong)) or round(fraction * n) == 1  # a permutation of them
    np.testing.assert_array_equal(index, noisy_caption_index(n, fraction, seed=3))  # deterministic
    if 0 < fraction < 1:
        assert not np.array_equal(index, noisy_caption_index(n, fraction, seed=4))


def test_no_noise_is_the_identity():
    np.testing.assert_array_equal(noisy_caption_index(50, 0.0, seed=0), np.arange(50))


def _prior(tmp_path, injection, cond_dim=16):
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, in_channels=4, injection=injection, cond_dim=cond_dim,
                               max_cond_tokens=1)
    with torch.no_grad():  # non-zero everywhere, so a copy is distinguishable from a fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path / injection)
    return model, str(tmp_path / injection)


@pytest.mark.parametrize("injection", ["cross_attn", "adaln"])
def test_finetune_starts_from_the_prior_weights(tmp_path, injection):
    prior, folder = _prior(tmp_path, injection)
    model, origin = make_t2i_model(folder, {"size": "DiT-N/2"}, (4, 4, 4), text_dim=24, n_tokens=7,
                                   cond_dropout=0.1, seed=0)
    assert model.config.injection == "cross_attn" and model.config.cond_dim == 24
    source, target = prior.state_dict(), model.state_dict()
    shared = [k for k in target if k in source and not k.startswith(("y_embedder.", "null_cond", "fake_latent"))]
    assert len(shared) == origin["copied"] > 10
    for k in shared:  # step 0 of the fine-tune equals the prior on every shared tensor
        torch.testing.assert_close(target[k], source[k], rtol=0, atol=0)
    assert target["y_embedder.fc1.weight"].shape[1] == 24  # the fresh caption projection
    if injection == "adaln":  # an RCG prior has no cross-attention: those layers start at zero output
        assert torch.count_nonzero(target["blocks.0.cross_attn.proj.weight"]) == 0


def test_a_stage_continues_the_previous_stage_at_a_larger_latent_size(tmp_path):
    """Table S1: stage k starts from stage k-1 with every weight kept (atol 0) and draws larger latents."""
    prev, folder = _prior(tmp_path, "cross_attn", cond_dim=24)
    model, origin = continue_t2i_model(folder, (4, 8, 8), text_dim=24)
    assert model.config.sample_size == 8 and prev.config.sample_size == 4 and origin["latent_size"] == 8
    source, target = prev.state_dict(), model.state_dict()
    assert source.keys() == target.keys()
    for k in source:
        torch.testing.assert_close(target[k], source[k], rtol=0, atol=0)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    out = model(x, t, torch.randn(2, 3, 24), torch.ones(2, 3, dtype=torch.bool))
    assert out.shape == (2, 8, 8, 8)  # learned sigma: 2 x 4 channels at the new size
    with pytest.raises(ValueError, match="24-d text tokens"):
        continue_t2i_model(folder, (4, 8, 8), text_dim=32)
    with pytest.raises(FileNotFoundError):
        continue_t2i_model(str(tmp_path / "missing"), (4, 8, 8), text_dim=24)


def test_from_scratch_model_matches_the_configured_size():
    model, origin = make_t2i_model(None, {"size": "DiT-N/2"}, (4, 8, 8), text_dim=12, n_tokens=5,
                                   cond_dropout=0.1, seed=0)
    assert origin == {"prior": "none"}
    assert model.config.hidden_size == 64 and model.config.sample_size == 8 and model.config.injection == "cross_attn"


def test_init_from_prior_reports_what_it_copied():
    torch.manual_seed(0)
    prior = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="class", num_classes=40)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="cross_attn", cond_dim=8, max_cond_tokens=3)
    report = init_from_prior(model, prior)
    assert "y_embedder.weight" in report["dropped"]  # the class embedding is not carried over
    assert "null_cond" in report["fresh"] and report["copied"] > 0


def _write_features(folder, arrays):
    folder.mkdir(parents=True)
    np.savez(folder / "shard-00000.npz", **arrays)
    n = len(next(iter(arrays.values())))
    (folder / "index.json").write_text(json.dumps({"n": n, "shards": ["shard-00000.npz"]}))


def test_training_data_mixes_captions_and_applies_noise(tmp_path):
    n = 20
    lat = np.arange(n, dtype=np.float16)[:, None, None, None] * np.ones((1, 4, 2, 2), np.float16)
    _write_features(tmp_path / "f", {"latents": lat})
    short = np.arange(n, dtype=np.float16)[:, None, None] * np.ones((1, 3, 2), np.float16)
    long = -np.arange(n, dtype=np.float16)[:, None, None] * np.ones((1, 5, 2), np.float16)
    _write_features(tmp_path / "t", {"t5_short": short, "t5_short_mask": np.ones((n, 3), bool),
                                     "t5_long": long, "t5_long_mask": np.ones((n, 5), bool)})
    latents, tokens, mask = t2i_training_data(str(tmp_path / "f"), str(tmp_path / "t"),
                                              parse_finetune("none-t5-mixed-n50"), seed=0)
    assert latents.shape == (2 * n, 4, 2, 2) and tokens.shape == (2 * n, 5, 2) and mask.shape == (2 * n, 5)
    assert mask[:n, 3:].sum() == 0 and mask[:n, :3].all()  # short captions padded to the long width, masked
    image_of_caption = torch.cat([tokens[:n, 0, 0], -tokens[n:, 0, 0]])
    wrong = (image_of_caption != latents[:, 0, 0, 0]).sum().item()
    assert wrong == 2 * round(0.5 * n)  # the same images get wrong short and long captions


def test_text_features_cache_matches_the_encoder(tmp_path, small_split):
    """Cached caption tokens equal the encoder's output at full length (padding is masked out)."""
    from lumos.components.text import load_text_encoder, train_t5
    from lumos.features import extract_text_features

    folder, _, records = small_split
    train_t5({"d_model": 16, "num_layers": 1, "num_heads": 2, "d_kv": 8, "d_ff": 32}, str(tmp_path / "t5"), seed=0)
    spec = {"pretrained": str(tmp_path / "t5"), "kind": "t5", "max_length": 120}
    meta = extract_text_features(str(folder), str(tmp_path / "text"), {"t5": spec}, ["t5"], batch_size=32)
    from lumos.features import read_features

    feats = read_features(str(tmp_path / "text"), ["t5_long", "t5_long_mask"])
    width = meta["tokens"]["t5"]
    assert feats["t5_long"].shape == (len(records), width, 16) and width < 120
    enc = load_text_encoder(spec, "t5")
    tokens, mask = enc([r["long_caption"] for r in records[:4]])
    assert not mask[:, width:].any()  # nothing real was cut
    np.testing.assert_allclose(feats["t5_long"][:4], tokens[:, :width].numpy(), atol=2e-3)  # fp16 storage
    np.testing.assert_array_equal(feats["t5_long_mask"][:4] > 0.5, mask[:, :width].numpy())


def test_text_features_of_another_split_are_refused(tmp_path):
    _write_features(tmp_path / "f", {"latents": np.zeros((6, 4, 2, 2), np.float16)})
    _write_features(tmp_path / "t", {"t5_short": np.zeros((5, 3, 2), np.float16), "t5_short_mask": np.ones((5, 3), bool)})
    with pytest.raises(ValueError, match="5 captions but .* 6 images"):
        t2i_training_data(str(tmp_path / "f"), str(tmp_path / "t"), parse_finetune("none-t5-short-n0"), seed=0)
