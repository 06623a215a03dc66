"""Lumos-I2V (eq. S2): the video model starts as its image prior, frame 0 is given and kept,
the loss ignores it, features / rows / fine-tune / sampling of video splits."""

import json

import numpy as np
import pytest
import torch

from lumos.diffusion.gaussian import GaussianDiffusion
from lumos.tasks.i2v import ClipRows, frame_loss_mask, make_i2v_model
from lumos.models import LumosDiT, LumosVideoDiT
from lumos.store import write_store

C, T, H, W, D = 4, 6, 8, 8, 16  # latent channels, frames, latent side, condition width


def _prior(tmp_path, **kw):
    torch.manual_seed(0)
    prior = LumosDiT.from_size("DiT-N/2", sample_size=H, cond_dim=D, max_cond_tokens=1, **kw)
    with torch.no_grad():  # trained-looking weights: no zero layer left
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    prior.save_pretrained(tmp_path / "prior")
    return prior


def _inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, C, T, H, W, generator=g)
    return x, torch.tensor([5, 700, 999][:b]), torch.randn(b, 1, D, generator=g), torch.randn(b, C, H, W, generator=g)


def _perturb_temporal(model, scale=0.2):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for blk in model.temporal_blocks:
            for p in (blk.proj.weight, blk.proj.bias):
                p.add_(torch.randn(p.shape, generator=g) * scale)


def test_fresh_i2v_model_from_i2i_prior_computes_the_prior_frame_by_frame(tmp_path):
    prior = _prior(tmp_path).eval()
    model, report = make_i2v_model(str(tmp_path / "prior"), "i2i", {"size": "DiT-N/2"}, (C, T, H, W), D, 0.1, seed=0)
    model.eval()
    assert isinstance(model, LumosVideoDiT) and model.config.num_frames == T
    assert report["condition_kept"] and {n.split(".")[0] for n in report["fresh"]} == {"temporal_blocks"}
    assert all(blk.proj.weight.abs().max() == 0 for blk in model.temporal_blocks)
    x, t, cond, first = _inputs(3)
    with torch.no_grad():
        got = model(x, t, cond, first=first)
        plain = model(x, t, cond)
        want = torch.stack([prior(first, torch.zeros_like(t), cond)]
                           + [prior(x[:, :, f], t, cond) for f in range(1, T)], dim=2)
        want_plain = torch.stack([prior(x[:, :, f], t, cond) for f in range(T)], dim=2)
        got_cfg = model.forward_with_cfg(x, t, cond, guidance_scale=3.0, first=first)
        want_cfg = torch.stack([prior.forward_with_cfg(first, torch.zeros_like(t), cond, guidance_scale=3.0)]
                               + [prior.forward_with_cfg(x[:, :, f], t, cond, guidance_scale=3.0)
                                  for f in range(1, T)], dim=2)
    assert got.shape == (3, 2 * C, T, H, W)
    # The temporal modules add exactly zero; the frames go through the spatial layers as one batch
    # of B*T images instead of T batches of B, so matrix products may sum in another order:
    # equal up to float32 rounding (measured ~4e-7), hence atol 1e-5.
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, want_plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_cfg, want_cfg, atol=1e-5, rtol=0)


def test_t2i_prior_gets_a_fresh_condition_path_and_none_is_fresh(tmp_path):
    prior = _prior(tmp_path)
    model, report = make_i2v_model(str(tmp_path / "prior"), "t2i", {"size": "DiT-N/2"}, (C, T, H, W), 32, 0.1, seed=0)
    assert not report["condition_kept"] and {"y_embedder.fc1.weight", "null_cond"} <= set(report["fresh"])
    assert model.config.cond_dim == 32
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, prior.blocks[0].attn.qkv.weight)
    fresh, report = make_i2v_model(None, "none", {"size": "DiT-N/2"}, (C, T, H, W), D, 0.1, seed=0)
    assert report == {"prior": "none"} and fresh.config.hidden_size == 64 and fresh.config.num_frames == T


def test_temporal_modules_mix_frames_only_when_trained(tmp_path):
    _prior(tmp_path)
    model, _ = make_i2v_model(str(tmp_path / "prior"), "i2i", {"size": "DiT-N/2"}, (C, T, H, W), D, 0.1, seed=0)
    model.eval()
    x, t, cond, first = _inputs()
    y = x.clone()
    y[:, :, 2] += 1.0  # change frame 2 only
    with torch.no_grad():
        a, b = model(x, t, cond, first=first), model(y, t, cond, first=first)
        assert torch.equal(a[:, :, 5], b[:, :, 5])  # fresh: frames are independent
        assert (a[:, :, 2] - b[:, :, 2]).abs().max() > 1e-3
        _perturb_temporal(model)
        a, b = model(x, t, cond, first=first), model(y, t, cond, first=first)
        assert (a[:, :, 5] - b[:, :, 5]).abs().max() > 1e-4
        # the first frame given to the model replaces frame 0 of x: what x holds there does not matter
        z = x.clone()
        z[:, :, 0] = 100.0
        torch.testing.assert_close(model(z, t, cond, first=first), a, atol=0, rtol=0)


def test_condition_dropout_is_per_video_and_cfg_keeps_the_first_frame():
    torch.manual_seed(0)
    model = LumosVideoDiT.from_size("DiT-N/2", sample_size=H, cond_dim=D, num_frames=T, cond_dropout=0.5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, t, cond, first = _inputs()
    with torch.no_grad():
        dropped = model(x, t, cond, force_drop_ids=torch.tensor([True, False]), first=first)
        null = model(x, t, None, first=first)
        full = model(x, t, cond, first=first)
    torch.testing.assert_close(dropped[0], null[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(dropped[1], full[1], atol=1e-6, rtol=0)
    # guidance: the null branch drops the condition only, both branches see `first`
    with torch.no_grad():
        cfg = model.forward_with_cfg(x, t, cond, guidance_scale=2.0, first=first)
    torch.testing.assert_close(cfg, null + 2.0 * (full - null), atol=1e-5, rtol=0)
    # training mode: dropout is drawn per video (every frame of a video dropped together)
    model.train()
    torch.manual_seed(3)
    with torch.no_grad():
        outs = model(x.repeat(8, 1, 1, 1, 1), t.repeat(8), cond.repeat(8, 1, 1), first=first.repeat(8, 1, 1, 1))
    model.eval()
    full8, null8 = full.repeat(8, 1, 1, 1, 1), null.repeat(8, 1, 1, 1, 1)
    kept = [torch.allclose(outs[v], full8[v], atol=1e-5) for v in range(16)]
    dropped = [torch.allclose(outs[v], null8[v], atol=1e-5) for v in range(16)]
    assert all(k or d for k, d in zip(kept, dropped))  # each video wholly kept or wholly dropped
    assert any(kept) and any(dropped)


def test_loss_mask_ignores_frame_zero():
    torch.manual_seed(0)
    model = LumosVideoDiT.from_size("DiT-N/2", sample_size=H, cond_dim=D, num_frames=T, cond_dropout=0.0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    _perturb_temporal(model)
    diffusion = GaussianDiffusion()
    x0, t, cond, _ = _inputs()
    mask = frame_loss_mask(2, T)
    assert mask.shape == (2, 1, T, 1, 1) and mask[:, :, 0].sum() == 0 and mask[:, :, 1:].min() == 1
    kwargs = {"cond": cond, "first": x0[:, :, 0]}
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=g)
    other = noise.clone()
    other[:, :, 0] = torch.randn(other[:, :, 0].shape, generator=g)  # frame 0's noise (and so x_t there) changes
    with torch.no_grad():
        a = diffusion.training_losses(model, x0, t, model_kwargs=kwargs, noise=noise, mask=mask)
        b = diffusion.training_losses(model, x0, t, model_kwargs=kwargs, noise=other, mask=mask)
        c = diffusion.training_losses(model, x0, t, model_kwargs=kwargs, noise=other)
    # the model never reads frame 0 of x_t (it is replaced by `first`) and the mask drops frame
    # 0's terms: bit-identical masked losses; unmasked, frame 0's noise counts
    for key in ("loss", "mse", "vb"):
        assert torch.equal(a[key], b[key]), key
    assert (c["mse"] - a["mse"]).abs().max() > 1e-3


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = LumosVideoDiT.from_size("DiT-N/2", sample_size=H, cond_dim=D, num_frames=T).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path / "m")
    again = LumosVideoDiT.from_pretrained(tmp_path / "m").eval()
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(again.config) == public(model.config) and again.config.num_frames == T
    x, t, cond, first = _inputs()
    with torch.no_grad():
        assert torch.equal(again(x, t, cond, first=first), model(x, t, cond, first=first))
    # the image prior's tensors load by name into the video model
    prior = LumosDiT.from_size("DiT-N/2", sample_size=H, cond_dim=D)
    missing, unexpected = model.load_state_dict(prior.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("temporal_blocks.") for k in missing)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = LumosVideoDiT.from_size("DiT-N/2", sample_size=H, cond_dim=D, num_frames=T, cond_dropout=0.0)
    _perturb_temporal(model)
    x, t, cond, first = _inputs()

    def grads():
        model.zero_grad()
        model(x, t, cond, first=first).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    plain = grads()
    model.enable_gradient_checkpointing()
    ckpt = grads()
    assert plain.keys() == ckpt.keys()
    for n in plain:
        torch.testing.assert_close(ckpt[n], plain[n], atol=1e-6, rtol=1e-5, msg=n)


# ------------------------------------------------------------------------- rows and features


def _store(folder, n=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"latents": rng.standard_normal((n, C, T, H, W)).astype(np.float16),
              "dino_cls": rng.standard_normal((n, D)).astype(np.float16)}
    write_store(folder, arrays, shard_size=4, latent_shape=[C, T, H, W], frames=T, encoders=["dino"])
    return arrays


def test_clip_rows_batches(tmp_path):
    arrays = _store(tmp_path / "f")
    rows = ClipRows(str(tmp_path / "f"), "dino")
    assert rows.sizes == [10] and rows.latent_shape == (C, T, H, W) and rows.cond_dim == D
    batch = rows.batch(0, [7, 0, 5])
    assert batch["x0"].shape == (3, C, T, H, W) and batch["x0"].dtype == torch.float32
    torch.testing.assert_close(batch["x0"], torch.from_numpy(arrays["latents"][[7, 0, 5]].astype(np.float32)))
    assert torch.equal(batch["first"], batch["x0"][:, :, 0])
    assert batch["cond"].shape == (3, 1, D) and batch["cond_mask"].shape == (3, 1) and batch["cond_mask"].all()
    torch.testing.assert_close(batch["cond"].norm(dim=-1), torch.ones(3, 1))
    cls = arrays["dino_cls"][[7, 0, 5]].astype(np.float32)
    np.testing.assert_allclose(batch["cond"][:, 0].numpy(), cls / np.linalg.norm(cls, axis=1, keepdims=True),
                               atol=1e-6)
    assert torch.equal(batch["loss_mask"], frame_loss_mask(3, T))
    with pytest.raises(KeyError, match="moco_cls"):
        ClipRows(str(tmp_path / "f"), "moco")
    write_store(tmp_path / "img", {"latents": np.zeros((3, C, H, W), np.float16),
                                   "dino_cls": np.zeros((3, D), np.float16)})
    with pytest.raises(ValueError, match="not a video features folder"):
        ClipRows(str(tmp_path / "img"), "dino")


def _tiny_components(tmp_path, size=16):
    from lumos.components.encoders import build_tiny_vit
    from lumos.components.vae import build_tiny_vae

    torch.manual_seed(0)
    build_tiny_vae(size, C, [8, 8, 8]).save_pretrained(tmp_path / "vae")  # 16 px -> 4x4 latents
    build_tiny_vit(size, {"patch_size": 8, "hidden_size": D, "layers": 1, "heads": 2}).save_pretrained(tmp_path / "vit")
    return {"vae": {"pretrained": str(tmp_path / "vae")},
            "dino": {"pretrained": str(tmp_path / "vit"), "input_size": size}}


def test_extract_video_features_in_parts(tmp_path):
    from lumos.components.encoders import load_encoder
    from lumos.components.vae import load_vae
    from lumos.data.worlds.shapes_video import build_video_split, read_clips
    from lumos.store import gather_parts
    from lumos.tasks.i2v import extract_video_features
    from lumos.store import FeatureStore

    frames = 4
    build_video_split("video_train", 5, 16, seed=0, shard_size=2, out_dir=str(tmp_path / "clips"), frames=frames)
    components = _tiny_components(tmp_path)
    parts = [str(tmp_path / f"part{p}") for p in range(2)]
    metas = [extract_video_features(str(tmp_path / "clips"), parts[p], components, "dino", batch_size=8, part=p,
                                    parts=2) for p in range(2)]
    assert metas[0]["shards"] == ["shard-00000", "shard-00002"] and metas[1]["shards"] == ["shard-00001"]
    meta = gather_parts(parts, str(tmp_path / "f"))
    assert meta["n"] == 5 and meta["latent_shape"] == [C, frames, 4, 4] and meta["frames"] == frames
    assert json.loads((tmp_path / "f" / "index.json").read_text())["encoders"] == ["dino"]
    store = FeatureStore(tmp_path / "f")
    got = store.get(np.arange(5), ["latents", "dino_cls"])
    assert got["latents"].dtype == np.float16 and got["latents"].shape == (5, C, frames, 4, 4)
    assert got["dino_cls"].dtype == np.float16 and got["dino_cls"].shape == (5, D)
    codec = load_vae(components["vae"])
    enc = load_encoder(components["dino"], "dino")
    clips = np.stack([v for v, _ in read_clips(tmp_path / "clips")])  # (5, T, 16, 16, 3)
    want = codec.encode(clips.reshape(-1, 16, 16, 3)).reshape(5, frames, C, 4, 4).permute(0, 2, 1, 3, 4)
    # fp16 storage: relative rounding 2^-11 (tolerance 1e-3 + 1e-3 relative)
    np.testing.assert_allclose(got["latents"].astype(np.float32), want.numpy(), atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(got["dino_cls"].astype(np.float32), enc(clips[:, 0])[0].numpy(), atol=1e-3, rtol=1e-3)
    rows = ClipRows(str(tmp_path / "f"), "dino")
    assert rows.batch(0, [4])["x0"].shape == (1, C, frames, 4, 4)


# --------------------------------------------------------------------------- sampling and training


def test_generated_videos_keep_the_first_frame(tmp_path):
    from PIL import Image

    from lumos.components.vae import LatentCodec, build_tiny_vae
    from lumos.data.worlds.shapes_video import split_frames
    from lumos.tasks.i2v import generate_videos, sample_videos

    torch.manual_seed(0)
    codec = LatentCodec(build_tiny_vae(16, C, [8, 8, 8]), 1.0)
    model = LumosVideoDiT.from_size("DiT-N/2", sample_size=4, cond_dim=D, num_frames=T).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((3, C, T, 4, 4)).astype(np.float16)
    write_store(tmp_path / "f", {"latents": latents, "dino_cls": rng.standard_normal((3, D)).astype(np.float16)},
                shard_size=2, encoders=["dino"])
    cfg = {"sampler": "dpm++", "steps": 3, "batch_size": 2}
    first = torch.from_numpy(latents[:, :, 0].astype(np.float32))
    lat = sample_videos(model, first, torch.randn(3, 1, D), None, T, cfg, 2.0, torch.Generator().manual_seed(0))
    assert lat.shape == (3, C, T, 4, 4) and torch.equal(lat[:, :, 0], first)
    assert (lat[:, :, 1:] - first[:, :, None]).abs().max() > 1e-2  # the other frames are generated

    n = generate_videos(model, codec, str(tmp_path / "f"), str(tmp_path / "out"), cfg, 2.0, seed=0)
    assert n == 3 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i:06d}.png" for i in range(3)]
    assert not (tmp_path / "out.partial").exists()
    decoded_first = codec.decode(first)
    for i in range(3):
        video = split_frames(np.asarray(Image.open(tmp_path / "out" / f"{i:06d}.png").convert("RGB")), T)
        assert video.shape == (T, 16, 16, 3)
        assert np.array_equal(video[0], decoded_first[i])  # frame 0 is the given latent, decoded
    # resumable: a finished batch in the work folder is not sampled again
    work = tmp_path / "w"
    work.mkdir()
    Image.fromarray(np.zeros((16, 16 * T, 3), np.uint8)).save(work / "000000.png")
    Image.fromarray(np.zeros((16, 16 * T, 3), np.uint8)).save(work / "000001.png")
    generate_videos(model, codec, str(tmp_path / "f"), str(tmp_path / "out2"), cfg, 2.0, seed=0, work_dir=str(work))
    assert np.asarray(Image.open(tmp_path / "out2" / "000000.png")).max() == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out2" / "000002.png")),
                          np.asarray(Image.open(tmp_path / "out" / "000002.png")))


def test_finetune_i2v_trains_and_resumes(tmp_path):
    from lumos.tasks.i2v import finetune_i2v, load_i2v_model
    from lumos.settings import ModelSettings

    _prior(tmp_path)
    _store(tmp_path / "f", n=6)
    cfg = {"steps": 3, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "checkpoint_every": 3, "log_every": 1}
    model_cfg = ModelSettings(size="DiT-N/2", learn_sigma=True, cond_dropout=0.1)
    args = (str(tmp_path / "f"), str(tmp_path / "prior"), "i2i", "dino", model_cfg, cfg, 0.1)
    stopped = finetune_i2v(*args, str(tmp_path / "out"), str(tmp_path / "state"), seed=0, device="cpu", stop_after=2)
    assert stopped == {"stopped_at": 2} and not (tmp_path / "out" / "model").exists()
    summary = finetune_i2v(*args, str(tmp_path / "out"), str(tmp_path / "state"), seed=0, device="cpu")
    assert summary["resumed_from"] == 2 and summary["steps"] == 3 and np.isfinite(summary["final_loss"])
    assert summary["condition_kept"] and summary["clips"] == 6 and summary["frames"] == T
    model = load_i2v_model(str(tmp_path / "out" / "model_raw"))
    assert isinstance(model, LumosVideoDiT) and model.config.num_frames == T
    # training moved the temporal modules off zero
    assert any(blk.proj.weight.abs().max() > 0 for blk in model.temporal_blocks)
    assert not (tmp_path / "state").exists()  # a complete run removes its state
