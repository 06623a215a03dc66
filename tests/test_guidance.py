"""REPA's alignment loss and REG's entangled class token (lumos/models/guidance.py, beyond the paper):
where the alignment is taken and where its gradient goes, the REG token's noising, denoising and
removal from the image output, saving and loading, sampling, fine-tunes from such priors, the
trainer's guided step and the config's checks."""

import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lumos.diffusion.gaussian import GaussianDiffusion
from lumos.models import LumosDiT
from lumos.models.guidance import alignment_loss, guided_training_losses, resample_tokens

ENC = 16  # encoder width
REPA = {"repa": {"weight": 0.5, "block": 2, "hidden": 24}, "reg": None}
REG = {"repa": None, "reg": {"weight": 0.03}}


def model(repa_block=0, reg=False, depth=4, learn_sigma=True, seed=0):
    """A small unconditional DiT on 4 x 8 x 8 latents (a 4 x 4 token grid), its zero-initialised
    layers given small random values so every block passes gradients on."""
    torch.manual_seed(seed)
    m = LumosDiT(sample_size=8, depth=depth, hidden_size=32, num_heads=2, injection="none", learn_sigma=learn_sigma,
                 repa_block=repa_block, repa_dim=ENC if repa_block else 0, repa_hidden=24, reg_dim=ENC if reg else 0)
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    return m


def keep(store: dict, key: str, what: str = "out"):
    """A forward hook that records a module's input or output under `key` (returns None: the output stays)."""
    def hook(mod, inp, out):
        store[key] = inp[0] if what == "in" else out
    return hook


def batch(n=4, seed=1, patch_tokens=16):
    g = torch.Generator().manual_seed(seed)
    return {"x0": torch.randn(n, 4, 8, 8, generator=g), "t": torch.randint(0, 1000, (n,), generator=g),
            "noise": torch.randn(n, 4, 8, 8, generator=g), "enc_patch": torch.randn(n, patch_tokens, ENC, generator=g),
            "enc_cls": torch.randn(n, ENC, generator=g), "token_noise": torch.randn(n, ENC, generator=g)}


def losses(m, b, guidance):
    return guided_training_losses(GaussianDiffusion(), m, b["x0"], b["t"], b["noise"], {}, guidance, b["enc_patch"],
                                  b["enc_cls"], b["token_noise"])


@pytest.mark.parametrize("block", [1, 3])
def test_alignment_is_taken_after_the_configured_block(block):
    m = model(repa_block=block)
    seen = {}
    m.blocks[block - 1].register_forward_hook(keep(seen, "hidden"))
    b = batch()
    _, extras = m(b["x0"], b["t"], return_extras=True)
    assert torch.equal(extras["projected"], m.repa_projector(seen["hidden"]))
    assert extras["projected"].shape == (4, 16, ENC) and extras["grid"] == (4, 4)
    # the loss REPA's code takes: minus the mean cosine of each token with its target
    target = b["enc_patch"]
    manual = -torch.nn.functional.cosine_similarity(extras["projected"], target, dim=-1).mean(dim=1)
    assert torch.allclose(alignment_loss(extras["projected"], target), manual, atol=1e-6)


def test_repa_gradient_reaches_the_projector_and_the_blocks_up_to_the_aligned_one_only():
    m = model(repa_block=2)
    out = losses(m, batch(), REPA)
    out["repa"].mean().backward()
    grads = {name: p.grad for name, p in m.named_parameters()}
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in grads if n.startswith("repa_projector."))
    for k in (0, 1):  # the aligned block (2) and the one before it
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(f"blocks.{k}."))
    assert grads["x_embedder.weight"].abs().sum() > 0
    after = [n for n in grads if n.startswith(("blocks.2.", "blocks.3.", "final_layer."))]
    assert after and all(grads[n] is None or not grads[n].abs().sum() for n in after)


def test_repa_loss_is_weighted_into_the_total():
    m = model(repa_block=2)
    out = losses(m, batch(), REPA)
    assert torch.allclose(out["loss"], out["mse"] + out["vb"] + 0.5 * out["repa"])
    assert (out["repa"].abs() > 0).all() and not out["reg"].any()


def test_encoder_tokens_are_resampled_to_the_dit_grid():
    tokens = torch.randn(2, 64, ENC)  # an 8 x 8 encoder grid onto the DiT's 4 x 4
    out = resample_tokens(tokens, (4, 4))
    grid = tokens.transpose(1, 2).reshape(2, ENC, 8, 8)
    want = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(out, want.reshape(2, ENC, 16).transpose(1, 2))
    assert resample_tokens(tokens[:, :16], (4, 4)) is not None and torch.equal(resample_tokens(tokens[:, :16], (4, 4)),
                                                                              tokens[:, :16])
    m = model(repa_block=2)
    assert losses(m, batch(patch_tokens=64), REPA)["repa"].shape == (4,)
    with pytest.raises(ValueError, match="square grid"):
        resample_tokens(torch.randn(1, 15, ENC), (4, 4))


def test_reg_token_is_noised_denoised_and_dropped_from_the_image_output():
    for learn_sigma in (True, False):
        m = model(reg=True, learn_sigma=learn_sigma)
        b = batch()
        seen = {}
        m.reg_embedder.register_forward_hook(keep(seen, "token", "in"))
        out = losses(m, b, REG)
        # the token the model reads is the class token noised at the latents' timestep
        assert torch.allclose(seen["token"], GaussianDiffusion().q_sample(b["enc_cls"], b["t"], b["token_noise"]))
        assert (out["reg"] > 0).all()
        assert torch.allclose(out["loss"], out["mse"] + out["vb"] + 0.03 * out["reg"])
        other = losses(m, {**b, "enc_cls": b["enc_cls"] + 1.0}, REG)
        assert not torch.allclose(other["reg"], out["reg"])
        image, extras = m(b["x0"], b["t"], reg_token=b["enc_cls"], return_extras=True)
        assert image.shape == (4, m.out_channels, 8, 8) == m(b["x0"], b["t"]).shape
        assert extras["reg"].shape == (4, ENC)
        assert m.out_channels == (8 if learn_sigma else 4)
        # the token takes part in the attention: the image output depends on it
        assert not torch.allclose(image, m(b["x0"], b["t"], reg_token=b["enc_cls"] + 1.0))


def test_reg_gradient_reaches_its_token_path():
    m = model(reg=True, repa_block=1)
    out = losses(m, batch(), {"repa": {"weight": 0.5}, "reg": {"weight": 0.03}})
    out["loss"].mean().backward()
    for name in ("reg_embedder.proj.weight", "reg_head.weight", "repa_projector.0.weight"):
        assert dict(m.named_parameters())[name].grad.abs().sum() > 0
    # with both, REG's code aligns the token's hidden state with the clean class token too
    assert out["repa"].shape == (4,)


def test_save_and_load_keep_the_projector_and_the_token_path(tmp_path):
    m = model(repa_block=2, reg=True)
    m.save_pretrained(tmp_path / "m")
    back = LumosDiT.from_pretrained(tmp_path / "m")
    assert (back.config.repa_block, back.config.repa_dim, back.config.repa_hidden, back.config.reg_dim) == (2, ENC, 24,
                                                                                                          ENC)
    state, loaded = m.state_dict(), back.state_dict()
    assert state.keys() == loaded.keys()
    assert any(k.startswith("repa_projector.") for k in loaded) and any(k.startswith("reg_head.") for k in loaded)
    assert all(torch.equal(state[k], loaded[k]) for k in state)


def test_sampling_a_reg_model_carries_the_token():
    from lumos.diffusion.sampling import sample

    m = model(reg=True, repa_block=1).eval()
    calls = []
    m.reg_embedder.register_forward_hook(lambda mod, inp, out: calls.append(tuple(inp[0].shape)) and None)
    for sampler in ("dpm++", "ddpm"):
        calls.clear()
        out = sample(m, (3, 4, 8, 8), sampler=sampler, num_steps=3, generator=torch.Generator().manual_seed(0))
        assert out.shape == (3, 4, 8, 8) and torch.isfinite(out).all()
        assert calls == [(3, ENC)] * 3
    again = sample(m, (3, 4, 8, 8), sampler="ddpm", num_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_sampling_a_class_conditional_reg_model_follows_the_label_under_guidance():
    """A class REG model (config/levers.yaml) is sampled with its labels, guided: the latents and
    the token go through both branches of classifier-free guidance."""
    from lumos.diffusion.sampling import sample

    torch.manual_seed(0)
    m = LumosDiT(sample_size=8, depth=2, hidden_size=32, num_heads=2, injection="class", num_classes=4,
                 repa_block=1, repa_dim=ENC, repa_hidden=24, reg_dim=ENC).eval()
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    calls = []
    m.reg_embedder.register_forward_hook(lambda mod, inp, out: calls.append(tuple(inp[0].shape)) and None)

    def draw(label, scale):
        return sample(m, (2, 4, 8, 8), torch.tensor([label] * 2), None, num_steps=3, guidance_scale=scale,
                      generator=torch.Generator().manual_seed(0))

    assert not torch.equal(draw(0, 2.0), draw(3, 2.0))  # the label reaches the model
    assert calls[:3] == [(4, ENC)] * 3  # guided: both branches carry the token
    calls.clear()
    assert not torch.equal(draw(0, 1.0), draw(3, 1.0)) and calls[:3] == [(2, ENC)] * 3


def test_a_fine_tune_from_a_guided_prior_drops_the_projector_and_the_token(tmp_path):
    from lumos.tasks.prior import from_prior, load_prior

    m = model(repa_block=2, reg=True)
    m.save_pretrained(tmp_path / "prior")
    prior, config = load_prior(str(tmp_path / "prior"), "I2I prior", "t2i")
    assert not {"repa_block", "repa_dim", "repa_hidden", "reg_dim"} & set(config)
    fine = LumosDiT(**config)
    assert fine.repa_projector is None and fine.reg_embedder is None and fine.reg_head is None
    report = from_prior(fine, prior)
    assert {n for n in report["dropped"]} == {n for n in prior.state_dict() if n.startswith(("repa_", "reg_"))}
    assert not report["fresh"]


class GuidedRows:
    """A row source like a REPA + REG run's (`lumos.tasks.i2i.PoolRows`): latents, patch tokens, CLS."""

    batch_keys = ("x0", "enc_patch", "enc_cls")
    sizes = [16]

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.x0, self.patch, self.cls = (torch.randn(16, 4, 8, 8, generator=g), torch.randn(16, 16, ENC, generator=g),
                                         torch.randn(16, ENC, generator=g))

    def batch(self, bucket, rows):
        rows = torch.as_tensor(rows)
        return {"x0": self.x0[rows], "enc_patch": self.patch[rows], "enc_cls": self.cls[rows]}


def test_the_trainer_runs_the_guided_loss(tmp_path):
    from lumos.training.loop import train_diffusion

    cfg = {"steps": 3, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "checkpoint_every": 10, "log_every": 1}
    guidance = {"repa": {"block": 1, "weight": 0.5, "hidden": 24}, "reg": {"weight": 0.03}}
    m = model(repa_block=1, reg=True)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    summary = train_diffusion(m, GuidedRows(), None, None, cfg, str(tmp_path / "out"), str(tmp_path / "state"),
                              guidance=guidance)
    assert summary["steps"] == 3
    back = LumosDiT.from_pretrained(tmp_path / "out" / "model")
    moved = [k for k, v in back.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("repa_projector.") for k in moved) and any(k.startswith("reg_") for k in moved)
    # the loss curve logs each guidance term beside the loss (mean over the row's steps)
    curve = pd.read_csv(tmp_path / "out" / "loss.csv")
    assert list(curve.columns) == ["step", "loss", "mse", "vb", "repa", "reg", "lr"] and len(curve) == 3
    assert (curve["repa"].abs() > 0).all() and (curve["reg"] > 0).all()  # repa: minus a cosine, in [-1, 1]
    # loss = mse + vb + 0.5 repa + 0.03 reg, row by row (the columns are rounded to 6 decimals)
    assert np.allclose(curve["loss"], curve["mse"] + curve["vb"] + 0.5 * curve["repa"] + 0.03 * curve["reg"], atol=1e-5)


def test_run_settings_check_the_guidance_blocks():
    from lumos.config import ConfigError
    from lumos.settings import RunSettings

    key = "pretrain.runs.repa"
    ok = RunSettings.from_config({"encoder": "dino", "injection": "none", "tokens": "patch", "repa": {"block": 1}}, key)
    assert ok.repa == {"block": 1, "weight": 0.5, "hidden": 2048} and ok.reg is None
    reg = RunSettings.from_config({"encoder": "dino", "injection": "none", "tokens": "cls", "reg": {}}, key)
    assert reg.reg == {"weight": 0.03} and reg.guidance() == {"repa": None, "reg": {"weight": 0.03}}
    with pytest.raises(ConfigError, match=r"pretrain\.runs\.repa\.repa.*blok"):
        RunSettings.from_config({"encoder": "dino", "injection": "none", "tokens": "patch", "repa": {"blok": 1}}, key)
    with pytest.raises(ConfigError, match=r"pretrain\.runs\.repa\.repa"):
        RunSettings.from_config({"encoder": "dino", "injection": "none", "tokens": "patch", "repa": {"block": 0}}, key)
    with pytest.raises(ValueError, match="injection none .* or class"):
        RunSettings.from_config({"encoder": "dino", "injection": "cross_attn", "tokens": "patch", "repa": {"block": 1}},
                                key)
    with pytest.raises(ValueError, match="and an encoder"):
        RunSettings.from_config({"injection": "class", "tokens": "patch", "repa": {"block": 1}}, key)
    classed = RunSettings.from_config({"encoder": "dino", "injection": "class", "tokens": "patch", "repa": {"block": 1}},
                                      key)  # class-conditional, as REPA's and REG's ImageNet models
    assert classed.guidance()["repa"]["block"] == 1
    with pytest.raises(ValueError, match="patch tokens"):
        RunSettings.from_config({"encoder": "dino", "injection": "none", "tokens": "cls", "repa": {"block": 1}}, key)
    with pytest.raises(ValueError, match="repa_block must lie"):
        LumosDiT(depth=2, injection="none", repa_block=3, repa_dim=ENC)


def test_the_resume_key_follows_the_guidance_settings():
    from lumos.training.resume import resume_key

    args = types.SimpleNamespace(run_name="repa", pool_size=None, cond_dropout=None)
    run = {"encoder": "dino", "injection": "none", "tokens": "patch", "repa": {"block": 1, "weight": 0.5, "hidden": 8}}
    keys = {resume_key({"pretrain.runs.repa": {**run, "repa": {**run["repa"], **change}}}, args)
            for change in ({}, {"weight": 0.25}, {"block": 2})}
    assert len(keys) == 3


def test_planning_reads_the_encoder_where_a_guided_run_trains_only():
    """REPA / REG runs read their encoder's tokens on the split they train on; their samples on the
    evaluation splits read none (paper: DINOv2-B on ImageNet-1K; smoke: the DAG's DINO on the pool)."""
    from lumos.config import load_config
    from lumos.workflow import splits

    smoke, paper = load_config("smoke"), load_config("paper")
    assert splits.run_features(smoke, "repa") == splits.run_features(smoke, "reg") == "pool"
    assert "dino" in splits.patch_encoders(smoke, "pool")
    assert splits.run_features(paper, "repa") == splits.run_features(paper, "reg") == "imagenet1k+dinov2_base"
    assert splits.patch_encoders(paper, "imagenet1k+dinov2_base") == ["dinov2_base"]
    for split in ("coco", "imagenet"):
        assert splits.run_features(paper, "reg", split) == split
        assert splits.run_features(paper, "repa_step50000", split) == split
        assert "dinov2_base" not in splits.feature_encoders(paper, split)
    assert paper["pretrain"]["runs"]["repa"]["repa"] == {"block": 8, "weight": 0.5, "hidden": 2048}
    assert paper["components"]["dinov2_base"]["pretrained"] == "facebook/dinov2-base"


def test_table1_rows_beyond_the_paper(tmp_path):
    import json

    from lumos.report.table1 import build_table1, to_markdown

    def files(runs):
        out = []
        for run in runs:
            for split in ("coco", "imagenet"):
                path = tmp_path / f"{run}_{split}.json"
                path.write_text(json.dumps({"run": run, "split": split, "fid": 5.0, "n_samples": 8, "extractor": "x"}))
                out.append(str(path))
        return out

    base = ("lumos_i2i", "rcg", "untrained", "real")
    df = build_table1(files((*base, "repa", "reg")), "smoke")
    rows = df.set_index("method")
    for label in ("REPA (beyond the paper)", "REG (beyond the paper)"):
        assert rows.loc[label, "source"] == "measured" and rows.loc[label, "coco_fid"] == 5.0
    note = to_markdown(df)
    assert "beyond the paper" in note and "unconditional samples (REPA)" in note
    without = build_table1(files(base), "smoke")
    assert not without["method"].str.contains("beyond").any() and "unconditional" not in to_markdown(without)


def test_table1_beyond_names_pretrain_runs_only():
    from lumos.config import ConfigError, load_config
    from lumos.workflow.figures import table1_beyond_runs

    smoke = load_config("smoke")
    assert table1_beyond_runs(smoke) == ["repa", "reg"]
    assert table1_beyond_runs(load_config("smoke", {"pretrain": {"table1_beyond": []}})) == []
    del smoke["pretrain"]["runs"]["reg"]  # a preset without the REG prior
    with pytest.raises(ConfigError, match=r"pretrain.table1_beyond names \['reg'\]: not pretrain runs"):
        table1_beyond_runs(smoke)


def test_the_lever_config_adds_class_conditional_guided_runs_to_the_tiny_preset_only():
    """config/levers.yaml (docs/findings.md): REPA / REG on the class-to-image prior, merged on the
    tiny preset; the presets themselves plan no such run (the paper pool caches no patch tokens)."""
    from lumos.config import load_config, load_yaml
    from lumos.settings import RunSettings
    from lumos.workflow import splits

    levers = load_yaml((Path(__file__).resolve().parent.parent / "config" / "levers.yaml").read_text())
    tiny = load_config("tiny", levers)
    for name in ("class_repa", "class_reg"):
        run = RunSettings.from_config(tiny["pretrain"]["runs"][name], f"pretrain.runs.{name}")
        assert run.injection == "class" and run.guidance()["repa"]["block"] == 1
        assert splits.run_features(tiny, name) == "pool" and "dino" in splits.patch_encoders(tiny, "pool")
    for preset in ("tiny", "smoke", "paper"):
        assert not {"class_repa", "class_reg"} & set(load_config(preset)["pretrain"]["runs"])
