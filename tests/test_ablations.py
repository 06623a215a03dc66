"""The ablation priors (Figures 9, 10, S2, S3): token subsets, the CLIP image tower and DINO sizes as
condition encoders, pretraining snapshots, and the figure's table."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lumos.features import condition_tokens, feature_keys, patch_subset
from lumos.settings import RunSettings


def _tokens(n=4, p=16, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, p, d)).astype(np.float32)


def test_cls_top_keeps_the_patches_most_similar_to_the_cls():
    cls, patch = _tokens()
    # make patches 3, 7 and 12 of image 0 point along its CLS (scaled: cosine, not length, counts)
    for j, scale in ((3, 0.5), (7, 4.0), (12, 2.0)):
        patch[0, j] = scale * cls[0] + 1e-3 * patch[0, j]
    out = patch_subset(cls, patch, "cls_top", 3)
    assert out.shape == (4, 3, 8)
    np.testing.assert_array_equal(out[0], patch[0, [3, 7, 12]])  # in grid order
    # each kept patch is at least as similar to the CLS as every dropped one
    def cos(a, b):
        return (a @ b) / np.linalg.norm(a) / np.linalg.norm(b)
    for i in range(4):
        kept = {tuple(row) for row in out[i]}
        sims = [(cos(patch[i, j], cls[i]), tuple(patch[i, j]) in kept) for j in range(16)]
        assert min(s for s, k in sims if k) >= max(s for s, k in sims if not k)


def test_cls_random_is_a_fixed_draw_per_image():
    cls, patch = _tokens(n=3)
    rows = np.array([5, 6, 7])
    a = patch_subset(cls, patch, "cls_random", 10, rows)
    b = patch_subset(cls, patch, "cls_random", 10, rows)
    np.testing.assert_array_equal(a, b)  # the same at every epoch and at sampling
    # the draw follows the row, not the batch position
    c = patch_subset(cls[::-1].copy(), patch[::-1].copy(), "cls_random", 10, rows[::-1].copy())
    np.testing.assert_array_equal(c[::-1], a)
    picked = [[int(np.flatnonzero((patch[i] == r).all(1))[0]) for r in a[i]] for i in range(3)]
    assert all(len(set(p)) == 10 and p == sorted(p) for p in picked)  # distinct, in grid order
    assert len({tuple(p) for p in picked}) > 1  # images get different draws


def test_token_sets_shapes_and_normalisation():
    cls, patch = _tokens(n=2)
    feats = {"dino_cls": cls, "dino_patch": patch}
    for tokens, length in (("cls", 1), ("patch", 16), ("cls_patch", 17), ("cls_top", 6), ("cls_random", 6)):
        cond, mask = condition_tokens(feats, "dino", tokens, "cross_attn", patch_k=5, rows=np.arange(2))
        assert cond.shape == (2, length, 8) and mask.all()
        assert torch.allclose(cond.norm(dim=-1), torch.ones(2, length), atol=1e-5)
    assert feature_keys("dino", "cls_top") == ["dino_cls", "dino_patch"]
    assert feature_keys("clip", "patch") == ["clip_patch"]
    with pytest.raises(ValueError, match="patch_k must lie in"):
        patch_subset(cls, patch, "cls_top", 17)


def test_a_patch_subset_run_needs_patch_k():
    with pytest.raises(ValueError, match="patch_k"):
        RunSettings.from_config({"encoder": "dino", "injection": "cross_attn", "tokens": "cls_top"}, "pretrain.runs.x")
    run = RunSettings.from_config({"encoder": "dino", "injection": "cross_attn", "tokens": "cls_random", "patch_k": 3},
                                  "pretrain.runs.x")
    assert run.patch_k == 3


def test_clip_image_tower_is_a_condition_encoder(tmp_path):
    """A CLIP folder (`kind: clip`) gives its image tower's tokens after the final norm."""
    from lumos.components.encoders import load_encoder
    from lumos.components.text import build_tiny_clip

    torch.manual_seed(0)
    model = build_tiny_clip(64, 32, {"hidden_size": 16, "layers": 1, "heads": 2, "projection_dim": 8,
                                     "patch_size": 8, "max_length": 8})
    model.save_pretrained(tmp_path / "clip")
    enc = load_encoder({"pretrained": str(tmp_path / "clip"), "kind": "clip", "input_size": 32}, "clip")
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    cls, patch = enc(images)
    assert cls.shape == (3, 16) and patch.shape == (3, 16, 16)
    with torch.no_grad():  # the CLS equals CLIP's own pooled output (post_layernorm of the class token)
        pooled = model.vision_model(pixel_values=enc.preprocess(images)).pooler_output  # full CLIPModel
    torch.testing.assert_close(cls, pooled, atol=1e-5, rtol=0)


def test_dino_sizes_train_as_dino(tmp_path, small_split):
    """`lumos train-component --component dino_small` trains a DINO-style ViT of its own width."""
    import subprocess
    import sys

    split, _, _ = small_split
    cfg = {"components.dino_small": {"pretrained": str(tmp_path / "ds"), "format": "transformers", "input_size": 32,
                                     "train": {"steps": 2, "batch_size": 8, "lr": 5e-4, "hidden_size": 16, "layers": 1,
                                               "heads": 2, "patch_size": 8, "out_dim": 16, "momentum": 0.99}},
           "seed": 0, "device": "cpu", "preset": "smoke"}
    subprocess.run([sys.executable, "-m", "lumos", "train-component", "--component", "dino_small", "--cfg",
                    json.dumps(cfg), "--data", str(split), "--out", str(tmp_path / "ds")], check=True,
                   capture_output=True)
    from lumos.components.encoders import load_encoder

    cls, patch = load_encoder({"pretrained": str(tmp_path / "ds"), "input_size": 32}, "dino_small")(
        np.zeros((2, 32, 32, 3), np.uint8))
    assert cls.shape == (2, 16) and patch.shape == (2, 16, 16)


def test_ablation_figure_table(tmp_path):
    from lumos.report.figures import build_ablation_figure

    def fid(name, value):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"fid": value, "n_samples": 32}))
        return str(path)

    i2i = [("cls (a)", 30, fid("a30", 5.0)), ("cls (a)", 15, fid("a15", 9.0)), ("patch (b)", 15, fid("b15", 7.0))]
    t2i = [("cls (a)", 10, fid("ta", 3.0)), ("patch (b)", 10, fid("tb", 4.0))]
    df = build_ablation_figure("fig9", i2i, t2i, str(tmp_path / "f.png"), str(tmp_path / "f.csv"))
    saved = pd.read_csv(tmp_path / "f.csv")
    assert list(saved.columns) == ["panel", "label", "step", "fid", "samples", "source"]
    assert list(zip(saved.panel, saved.label, saved.step, saved.fid)) == [
        ("a: I2I", "cls (a)", 15, 9.0), ("a: I2I", "cls (a)", 30, 5.0), ("a: I2I", "patch (b)", 15, 7.0),
        ("b: T2I", "cls (a)", 10, 3.0), ("b: T2I", "patch (b)", 10, 4.0)]
    assert set(saved.source) == {"measured"} and len(df) == 5 and (tmp_path / "f.png").stat().st_size > 0
    only_t2i = build_ablation_figure("fig2c", [], t2i, str(tmp_path / "c.png"), str(tmp_path / "c.csv"))
    assert set(only_t2i.panel) == {"b: T2I"}
