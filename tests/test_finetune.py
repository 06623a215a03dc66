"""T2I fine-tuning: run names, caption noise, prior loading, training data, caption-token caching."""

import json

import numpy as np
import pytest
import torch

from lumos.tasks.t2i import continue_t2i_model, make_t2i_model, noisy_caption_index, parse_finetune, t2i_training_data
from lumos.models import LumosDiT
from lumos.tasks.prior import from_prior


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


def test_from_prior_reports_what_it_copied():
    torch.manual_seed(0)
    prior = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="class", num_classes=40)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="cross_attn", cond_dim=8, max_cond_tokens=3)
    report = from_prior(model, prior)  # a T2I fine-tune replaces the condition path
    assert "y_embedder.weight" in report["dropped"]  # the class embedding is not carried over
    assert "null_cond" in report["fresh"] and report["copied"] > 0


def _write_features(folder, arrays, shard_size=None):
    from lumos.store import write_store

    return write_store(folder, arrays, shard_size)


def _pairs(tmp_path, n=20):
    """Latents of image i all equal i; its short caption's tokens i (3 tokens), its long one's -i (5)."""
    lat = np.arange(n, dtype=np.float16)[:, None, None, None] * np.ones((1, 4, 2, 2), np.float16)
    _write_features(tmp_path / "f", {"latents": lat}, shard_size=6)
    short = np.arange(n, dtype=np.float16)[:, None, None] * np.ones((1, 5, 2), np.float16)
    long = -np.arange(n, dtype=np.float16)[:, None, None] * np.ones((1, 5, 2), np.float16)
    _write_features(tmp_path / "t", {"t5_short": short, "t5_short_mask": np.arange(5)[None] < np.full((n, 1), 3),
                                     "t5_long": long, "t5_long_mask": np.ones((n, 5), bool)}, shard_size=7)


def test_training_data_mixes_captions_and_applies_noise(tmp_path):
    n = 20
    _pairs(tmp_path, n)
    rows = t2i_training_data(str(tmp_path / "f"), str(tmp_path / "t"), parse_finetune("none-t5-mixed-n50"), seed=0)
    assert rows.sizes == [2 * n] and rows.width == 5 and rows.text_dim == 2 and rows.latent_shape == (4, 2, 2)
    batch = rows.batch(0, torch.arange(2 * n))  # every virtual row: short captions first, then long
    latents, tokens, mask = batch["x0"], batch["cond"], batch["cond_mask"]
    assert latents.shape == (2 * n, 4, 2, 2) and tokens.shape == (2 * n, 5, 2) and mask.shape == (2 * n, 5)
    assert latents.dtype == tokens.dtype == torch.float32 and mask.dtype == torch.bool
    assert mask[:n, 3:].sum() == 0 and mask[:n, :3].all()  # short captions padded to the long width, masked
    assert not tokens[:n, 3:].any()
    image_of_caption = torch.cat([tokens[:n, 0, 0], -tokens[n:, 0, 0]])
    wrong = (image_of_caption != latents[:, 0, 0, 0]).sum().item()
    assert wrong == 2 * round(0.5 * n)  # the same images get wrong short and long captions
    index = torch.from_numpy(noisy_caption_index(n, 0.5, seed=0))
    assert torch.equal(tokens[:n, 0, 0], index.float()) and torch.equal(-tokens[n:, 0, 0], index.float())
    some = rows.batch(0, torch.tensor([33, 2, 33, 19]))  # any rows, in the order asked
    assert torch.equal(some["cond"], tokens[[33, 2, 33, 19]]) and torch.equal(some["x0"], latents[[33, 2, 33, 19]])


@pytest.mark.parametrize("fraction", [0.5, 0.95, 0.3, 0.123])
def test_mixed_captions_follow_the_long_caption_fraction(tmp_path, fraction):
    """t2i.long_caption_fraction: over one epoch of a mixed fine-tune's rows the share of long
    captions is the configured one within 0.005 (at most 100 passes), every image has both
    captions, and the training sampler's draws realise it within 4 binomial standard deviations."""
    from lumos.training.loop import BatchSampler

    n = 20
    _pairs(tmp_path, n)  # a long caption has 5 unmasked tokens, a short one 3
    rows = t2i_training_data(str(tmp_path / "f"), str(tmp_path / "t"), parse_finetune("none-t5-mixed-n0"), seed=0,
                             long_fraction=fraction)
    epoch = rows.batch(0, np.arange(rows.sizes[0]))
    is_long = epoch["cond_mask"].sum(1) == 5
    assert abs(is_long.double().mean().item() - fraction) <= 0.005
    image = epoch["x0"][:, 0, 0, 0].long()
    per_image = torch.zeros(n, dtype=torch.float64).index_add_(0, image, is_long.double())
    assert torch.all(per_image == per_image[0]) and 0 < per_image[0] < rows.sizes[0] // n  # both kinds, alike
    sampler, draws = BatchSampler(rows.sizes, 512, seed=0), []
    for step in range(40):
        drawn = rows.batch(0, sampler.next(step)[0])
        draws.append(drawn["cond_mask"].sum(1) == 5)
    drawn_long = torch.cat(draws).double()
    assert abs(drawn_long.mean().item() - fraction) <= 4 * (fraction * (1 - fraction) / len(drawn_long)) ** 0.5


def test_the_default_fraction_keeps_one_short_and_one_long_pass():
    """0.5 is the layout mixed fine-tunes always had: pass 0 short, pass 1 long (2n rows)."""
    from lumos.tasks.t2i import caption_passes

    assert caption_passes("mixed") == [0, 1] and caption_passes("short", 0.95) == caption_passes("long") == [0]
    assert caption_passes("mixed", 0.95) == [0] + [1] * 19
    with pytest.raises(ValueError, match="t2i.long_caption_fraction"):
        caption_passes("mixed", 1.0)


def test_finetune_trains_on_the_stores_and_reports_the_pairs(tmp_path):
    from lumos.tasks.t2i import finetune
    from lumos.settings import ModelSettings, TrainSettings

    _pairs(tmp_path)
    cfg = TrainSettings.from_config({"steps": 3, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 3, "log_every": 1},
                                    "t2i.train")
    summary = finetune(str(tmp_path / "f"), str(tmp_path / "t"), "none-t5-mixed-n10", None,
                       ModelSettings(size="DiT-N/2", learn_sigma=True, cond_dropout=0.1), cfg, 0.1,
                       str(tmp_path / "out"), str(tmp_path / "state"), seed=0, device="cpu")
    assert summary["pairs"] == 20 and summary["captions"] == "mixed" and summary["steps"] == 3
    assert summary["long_caption_fraction"] == 0.5
    assert json.loads((tmp_path / "out" / "model" / "config.json").read_text())["max_cond_tokens"] == 5


def test_text_features_cache_matches_the_encoder(tmp_path, small_split):
    """Cached caption tokens equal the encoder's output at full length (padding is masked out); only
    valid tokens are stored, and the index keeps each shard's longest caption."""
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
    np.testing.assert_array_equal(feats["t5_long_mask"][:4], mask[:, :width].numpy())
    valid = mask[:, :width].numpy()
    np.testing.assert_allclose(feats["t5_long"][:4][valid], tokens[:, :width].numpy()[valid], atol=2e-3)  # fp16
    assert not feats["t5_long"][~feats["t5_long_mask"]].any()  # padding rebuilt as zeros
    assert width == max(w["t5"] for w in meta["shard_tokens"].values()) and len(meta["shard_tokens"]) == 3
    stored = np.load(tmp_path / "text" / "shard-00000" / "t5_long.npy", mmap_mode="r")
    assert stored.dtype == np.float16 and len(stored) == feats["t5_long_mask"][:40].sum()  # ragged


def test_text_features_of_another_split_are_refused(tmp_path):
    _write_features(tmp_path / "f", {"latents": np.zeros((6, 4, 2, 2), np.float16)})
    _write_features(tmp_path / "t", {"t5_short": np.zeros((5, 3, 2), np.float16), "t5_short_mask": np.ones((5, 3), bool)})
    with pytest.raises(ValueError, match="5 captions but .* 6 images"):
        t2i_training_data(str(tmp_path / "f"), str(tmp_path / "t"), parse_finetune("none-t5-short-n0"), seed=0)
    _write_features(tmp_path / "f5", {"latents": np.zeros((5, 4, 2, 2), np.float16)})
    with pytest.raises(KeyError, match=r"feature 't5_long' not in .*shard-00000"):  # a kind not cached: named
        t2i_training_data(str(tmp_path / "f5"), str(tmp_path / "t"), parse_finetune("none-t5-long-n0"), seed=0)


def test_a_bucketed_stage_trains_on_one_store_per_bucket(tmp_path):
    """Table S1's multi-scale stage: a bucketed pair set (one features and one text store per
    aspect-ratio bucket) continues the previous stage, each step from one bucket."""
    from lumos.data.buckets import index_buckets
    from lumos.tasks.t2i import finetune
    from lumos.settings import ModelSettings, TrainSettings

    metas = {}
    for name, (h, w), n in (("16x32", (2, 4), 6), ("32x32", (4, 4), 9)):
        metas[name] = _write_features(tmp_path / "f" / name, {"latents": np.ones((n, 4, h, w), np.float16)}, 4)
        _write_features(tmp_path / "t" / name, {"t5_short": np.ones((n, 3, 24), np.float16),
                                                "t5_short_mask": np.ones((n, 3), bool)}, 4)
    index_buckets(tmp_path / "f", metas)
    _, prev = _prior(tmp_path, "cross_attn", cond_dim=24)
    cfg = TrainSettings.from_config({"steps": 4, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 4, "log_every": 1},
                                    "t2i.stages.0.train")
    args = (str(tmp_path / "f"), str(tmp_path / "t"), "none-t5-short-n0")
    model_cfg = ModelSettings(size="DiT-N/2", learn_sigma=True, cond_dropout=0.1)
    with pytest.raises(ValueError, match="only a later stage"):
        finetune(*args, None, model_cfg, cfg, 0.1, str(tmp_path / "x"), str(tmp_path / "sx"), seed=0, device="cpu")
    summary = finetune(*args, None, model_cfg, cfg, 0.1, str(tmp_path / "out"), str(tmp_path / "state"), seed=0,
                       device="cpu", init_dir=prev)
    assert summary["buckets"] == {"16x32": [4, 2, 4], "32x32": [4, 4, 4]} and summary["pairs"] == 15
    assert summary["latent_size"] == 4  # the most square bucket sizes the position table


def test_training_on_ragged_captions_equals_training_on_the_dense_layout(tmp_path):
    """The stores' fine-tune (ragged captions, zeros in the padding) ends with exactly the weights
    of training on the old dense tensors in memory (an encoder's values in the padding)."""
    from lumos.store import write_store
    from lumos.training.loop import train_diffusion

    n, width, dim = 24, 6, 8
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((n, 4, 4, 4)).astype(np.float16)
    dense, masks = {}, {}
    for kind in ("short", "long"):
        lengths = rng.integers(1, width + 1, n)
        lengths[0] = width
        masks[kind] = np.arange(width)[None] < lengths[:, None]
        dense[kind] = rng.standard_normal((n, width, dim)).astype(np.float16)
    write_store(tmp_path / "f", {"latents": latents}, 10)
    write_store(tmp_path / "t", {"t5_short": dense["short"], "t5_short_mask": masks["short"],
                                 "t5_long": dense["long"], "t5_long_mask": masks["long"]}, 7)
    index = torch.from_numpy(noisy_caption_index(n, 0.25, seed=0))
    tokens = torch.cat([torch.from_numpy(dense[k].astype(np.float32))[index] for k in ("short", "long")])
    mask = torch.cat([torch.from_numpy(masks[k])[index] for k in ("short", "long")])
    cfg = {"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "checkpoint_every": 3, "log_every": 1}

    def model():
        torch.manual_seed(0)
        return LumosDiT.from_size("DiT-N/2", sample_size=4, in_channels=4, cond_dim=dim, max_cond_tokens=width,
                                  cond_dropout=0.2)

    train_diffusion(model(), torch.from_numpy(latents.astype(np.float32)).repeat(2, 1, 1, 1), tokens, mask, cfg,
                    str(tmp_path / "dense"), str(tmp_path / "s1"))
    rows = t2i_training_data(str(tmp_path / "f"), str(tmp_path / "t"), parse_finetune("none-t5-mixed-n25"), seed=0)
    train_diffusion(model(), rows, None, None, cfg, str(tmp_path / "ragged"), str(tmp_path / "s2"))
    a, b = (LumosDiT.from_pretrained(tmp_path / run / "model_raw").state_dict() for run in ("dense", "ragged"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_long_captions_stop_long_and_mixed_uses(tmp_path):
    """A curated source without long captions: its records repeat the raw caption, flagged; the
    text features count them per shard; a long-caption read and a mixed fine-tune stop, naming the
    count and the fix, while a short-caption fine-tune trains."""
    from PIL import Image

    from lumos.components.text import train_t5
    from lumos.data.curate import curate_part, gather_split
    from lumos.data.shards import read_records
    from lumos.data.sources import Source
    from lumos.features import extract_text_features
    from lumos.tasks.t2i import PairRows, load_captions
    from lumos.store import write_store

    src = tmp_path / "web"
    src.mkdir()
    for i in range(6):
        Image.new("RGB", (40, 40), (40 * i, 0, 0)).save(src / f"{i}.png")
        (src / f"{i}.txt").write_text(f"a red square number {i}")
    (src / "0.long.txt").write_text("a long caption of a dark red square filling the whole image")
    curate_part("pairs", [Source(name="web", path=str(src))], 6, 32, 4, str(tmp_path / "part0"))
    gather_split([str(tmp_path / "part0")], str(tmp_path / "pairs"))
    records = read_records(tmp_path / "pairs")
    assert [bool(r.get("long_from_raw")) for r in records] == [False] + [True] * 5
    train_t5({"d_model": 16, "num_layers": 1, "num_heads": 2, "d_kv": 8, "d_ff": 32}, str(tmp_path / "t5"), seed=0)
    spec = {"pretrained": str(tmp_path / "t5"), "kind": "t5", "max_length": 120}
    meta = extract_text_features(str(tmp_path / "pairs"), str(tmp_path / "text"), {"t5": spec}, ["t5"], batch_size=8)
    assert sum(meta["long_from_raw"].values()) == 5
    with pytest.raises(ValueError, match="5 of 6 captions .* have no long caption"):
        load_captions(str(tmp_path / "text"), "t5", "long")
    load_captions(str(tmp_path / "text"), "t5", "short")  # raw captions are there
    n = len(records)
    write_store(tmp_path / "feats", {"latents": np.zeros((n, 4, 8, 8), np.float16)})
    spec_mixed = {"text": "t5", "captions": "mixed", "noise": 0}
    with pytest.raises(ValueError, match="no long caption"):
        PairRows(str(tmp_path / "feats"), str(tmp_path / "text"), spec_mixed, seed=0)
    assert PairRows(str(tmp_path / "feats"), str(tmp_path / "text"), {**spec_mixed, "captions": "short"}, 0).n == n
