"""Lumos-NVS (eq. S1): the widened model starts as its prior, training pairs, metrics."""

import numpy as np
import pytest
import torch

from lumos.models import LumosDiT
from lumos.tasks.nvs import CAMERA_DIM, ViewRows, make_nvs_model, relative_pose_vectors
from lumos.tasks.prior import from_prior
from lumos.store import write_store


def _prior(tmp_path, **kw):
    torch.manual_seed(0)
    prior = LumosDiT.from_size("DiT-N/2", sample_size=8, cond_dim=16, max_cond_tokens=1, **kw)
    with torch.no_grad():  # trained-looking weights: no zero layer left
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    prior.save_pretrained(tmp_path / "prior")
    return prior


def test_fresh_nvs_model_from_i2i_prior_computes_the_prior(tmp_path):
    prior = _prior(tmp_path).eval()
    model, report = make_nvs_model(str(tmp_path / "prior"), "i2i", {"size": "DiT-N/2"}, (4, 8, 8), 16, 0.1, seed=0)
    model.eval()
    assert report["condition_kept"] and {n.split(".")[0] for n in report["fresh"]} == {"camera_embedder"}
    assert model.config.extra_in_channels == 4 and model.config.camera_dim == CAMERA_DIM
    g = torch.Generator().manual_seed(1)
    x, cond = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 1, 16, generator=g)
    t = torch.tensor([5, 500, 999])
    concat, camera = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, CAMERA_DIM, generator=g)
    with torch.no_grad():
        want = prior(x, t, cond)
        got = model(x, t, cond, concat=concat, camera=camera)
    # the new input channels and the camera embedder's output start at zero: exactly the prior
    # (tolerance 1e-6 for the convolution's summation order over 8 instead of 4 channels)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert model.x_embedder.weight[:, 4:].abs().max() == 0
    # with guidance too: the null branch zeroes the concatenated latent
    with torch.no_grad():
        torch.testing.assert_close(model.forward_with_cfg(x, t, cond, guidance_scale=3.0, concat=concat, camera=camera),
                                   prior.forward_with_cfg(x, t, cond, guidance_scale=3.0), atol=1e-6, rtol=0)


def test_nvs_model_predicting_x0_starts_from_the_prior_weights(tmp_path):
    """`nvs.prediction_type: sample`: the same weights as the epsilon fine-tune would start from
    (so the same raw outputs at step 0), with the prediction type in the saved config, which the
    samplers and the loss read."""
    _prior(tmp_path)
    eps, _ = make_nvs_model(str(tmp_path / "prior"), "i2i", {"size": "DiT-N/2"}, (4, 8, 8), 16, 0.1, seed=0)
    x0, report = make_nvs_model(str(tmp_path / "prior"), "i2i", {"size": "DiT-N/2"}, (4, 8, 8), 16, 0.1, seed=0,
                                prediction_type="sample")
    assert eps.config.prediction_type == "epsilon" and x0.config.prediction_type == "sample"
    a, b = eps.state_dict(), x0.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x0.save_pretrained(tmp_path / "nvs")
    assert LumosDiT.from_pretrained(str(tmp_path / "nvs")).config.prediction_type == "sample"


def test_t2i_prior_gets_a_fresh_condition_path(tmp_path):
    _prior(tmp_path)
    model, report = make_nvs_model(str(tmp_path / "prior"), "t2i", {"size": "DiT-N/2"}, (4, 8, 8), 32, 0.1, seed=0)
    assert not report["condition_kept"]
    assert {"y_embedder.fc1.weight", "null_cond"} <= set(report["fresh"])
    assert model.config.cond_dim == 32
    # the backbone is the prior's
    prior = LumosDiT.from_pretrained(str(tmp_path / "prior"))
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, prior.blocks[0].attn.qkv.weight)


def test_concat_and_camera_change_a_trained_model():
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=8, cond_dim=16, extra_in_channels=4, camera_dim=CAMERA_DIM).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        x, cond = torch.randn(2, 4, 8, 8), torch.randn(2, 1, 16)
        a = model(x, 10, cond, concat=torch.zeros(2, 4, 8, 8), camera=torch.zeros(2, CAMERA_DIM))
        b = model(x, 10, cond, concat=torch.ones(2, 4, 8, 8), camera=torch.zeros(2, CAMERA_DIM))
        c = model(x, 10, cond, concat=torch.zeros(2, 4, 8, 8), camera=torch.ones(2, CAMERA_DIM))
        # a dropped sample sees no concatenated latent: zeros and ones give the same output
        d1 = model(x, 10, cond, force_drop_ids=torch.ones(2), concat=torch.ones(2, 4, 8, 8), camera=torch.zeros(2, 12))
        d0 = model(x, 10, cond, force_drop_ids=torch.ones(2), concat=torch.zeros(2, 4, 8, 8), camera=torch.zeros(2, 12))
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3
    torch.testing.assert_close(d1, d0)
    with pytest.raises(ValueError, match="camera"):
        model(x, 10, cond, concat=torch.zeros(2, 4, 8, 8))


def test_from_prior_zeroes_new_channels():
    torch.manual_seed(0)
    prior = LumosDiT.from_size("DiT-N/2", sample_size=8, cond_dim=16)
    model = LumosDiT.from_size("DiT-N/2", sample_size=8, cond_dim=16, extra_in_channels=4, camera_dim=CAMERA_DIM)
    from_prior(model, prior, keep_condition=True)
    torch.testing.assert_close(model.x_embedder.weight[:, :4], prior.x_embedder.weight)
    assert model.x_embedder.weight[:, 4:].abs().max() == 0


def _camera(az, el, r=4.0):
    from lumos.data.worlds.shapes3d import camera_to_world

    return camera_to_world(az, el, r)


def test_relative_pose_vectors():
    a, b, c = _camera(10, 20), _camera(100, 0), _camera(250, 35)
    same = relative_pose_vectors(a[None], a[None])[0]
    np.testing.assert_allclose(same, [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], atol=1e-6)
    rel = lambda x, y: np.linalg.inv(x) @ y  # noqa: E731
    np.testing.assert_allclose(rel(a, b) @ rel(b, c), rel(a, c), atol=1e-12)
    v = relative_pose_vectors(np.stack([a, b]), np.stack([b, c]))
    np.testing.assert_allclose(v[1, :9], rel(b, c)[:3, :3].reshape(-1), atol=1e-6)
    np.testing.assert_allclose(v[1, 9:], rel(b, c)[:3, 3], atol=1e-5)


def test_view_rows_pair_views_of_one_object(tmp_path):
    objects, views = 5, 4
    n = objects * views
    rng = np.random.default_rng(0)
    c2w = np.stack([_camera(rng.uniform(0, 360), rng.uniform(-10, 50)) for _ in range(n)]).astype(np.float32)
    write_store(tmp_path / "f", {"latents": rng.standard_normal((n, 4, 8, 8)).astype(np.float16),
                                 "dino_cls": rng.standard_normal((n, 16)).astype(np.float16), "c2w": c2w,
                                 "object": np.repeat(np.arange(objects), views)}, shard_size=7, views_per_object=views)
    rows = ViewRows(str(tmp_path / "f"), "dino")
    assert rows.sizes == [objects * views * (views - 1)]
    inp, tgt = rows.pairs(np.arange(rows.sizes[0]))
    assert (inp != tgt).all() and (inp // views == tgt // views).all()
    # every ordered pair of different views of every object exactly once
    assert len(set(zip(inp.tolist(), tgt.tolist()))) == rows.sizes[0]
    batch = rows.batch(0, [0, 13, 59])
    assert batch["x0"].shape == (3, 4, 8, 8) and batch["concat"].shape == (3, 4, 8, 8)
    assert batch["cond"].shape == (3, 1, 16) and batch["camera"].shape == (3, CAMERA_DIM)
    torch.testing.assert_close(batch["cond"].norm(dim=-1), torch.ones(3, 1))
    i, j = rows.pairs([13])
    np.testing.assert_allclose(batch["camera"][1].numpy(), relative_pose_vectors(c2w[i], c2w[j])[0], atol=1e-6)


def test_view_rows_refuse_a_split_without_whole_objects(tmp_path):
    write_store(tmp_path / "f", {"latents": np.zeros((7, 4, 8, 8), np.float16), "dino_cls": np.zeros((7, 16), np.float16),
                                 "c2w": np.zeros((7, 4, 4), np.float32), "object": np.zeros(7, np.int64)},
                views_per_object=4)
    with pytest.raises(ValueError, match="whole number of objects"):
        ViewRows(str(tmp_path / "f"), "dino")


# ----------------------------------------------------------------------------------- metrics


def test_psnr_ssim_known_values():
    from lumos.eval.image_similarity import psnr, ssim

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    pred = gt.astype(np.int16)
    pred[0] += 10  # a uniform error of 10 grey levels (clipped at 255)
    pred = np.clip(pred, 0, 255).astype(np.uint8)
    mse = ((gt[0].astype(float) - pred[0]) ** 2).mean()
    np.testing.assert_allclose(psnr(gt, pred)[0], 10 * np.log10(255**2 / mse), rtol=1e-9)
    assert np.isinf(psnr(gt, pred)[1])  # identical images
    s = ssim(gt, pred)
    assert s[1] == pytest.approx(1.0) and 0 < s[0] < 1


def test_lpips_needs_the_alexnet_file_and_reads_it(tmp_path):
    import torchvision

    from lumos.eval.image_similarity import LPIPS

    metric, why = LPIPS.load(tmp_path / "missing.pth")
    assert metric is None and "missing.pth" in why and "nvs.eval.lpips_alexnet" in why
    torch.manual_seed(0)
    trunk = torchvision.models.alexnet()  # random weights: stands in for the ImageNet file (no download)
    torch.save(trunk.state_dict(), tmp_path / "alexnet.pth")
    metric, why = LPIPS.load(tmp_path / "alexnet.pth")
    assert why == "" and metric is not None
    torch.testing.assert_close(metric.model.net.slice1[0].weight, trunk.features[0].weight)
    torch.testing.assert_close(getattr(metric.model.net.slice5, "10").weight, trunk.features[10].weight)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(metric(a, a), 0, atol=1e-6) and (metric(a, b) > 0).all()


# -------------------------------------------------------------------------------- evaluation


def test_baseline_evaluation_on_a_rendered_test_split(tmp_path):
    """The `input` baseline scores every target view of every test object once, per elevation."""
    from lumos.data.worlds.shapes3d import build_views_split
    from lumos.data.shards import read_images
    from lumos.eval.image_similarity import psnr
    from lumos.tasks.nvs import evaluate_nvs, test_objects

    build_views_split("nvs_test", 2, "test", image_size=16, seed=0, shard_size=20, out_dir=str(tmp_path / "test"))
    objects = list(test_objects(str(tmp_path / "test")))
    assert [k for k, _, _ in objects] == [0, 1] and all(v.shape == (33, 16, 16, 3) for _, v, _ in objects)
    summary = evaluate_nvs(None, None, str(tmp_path / "test"), str(tmp_path / "no-features"), "dino",
                           str(tmp_path / "out"), {"batch_size": 8}, 1.0, 0, objects=None, save_views=0)
    assert summary["elev0"]["views"] == 32 and summary["elev30"]["views"] == 32
    images = read_images(tmp_path / "test")
    want = np.mean([psnr(images[k * 33 + 1:k * 33 + 17], np.repeat(images[k * 33:k * 33 + 1], 16, 0)) for k in (0, 1)])
    assert summary["elev0"]["psnr"] == pytest.approx(want)


def test_nvs_probe_scores_input_camera_and_dropped_condition(tmp_path):
    """The probe's errors are x0 errors against the target latent: a fresh model (camera embedder
    and new channels at zero) ignores camera and input latent alike, a model that predicts x0 = its
    input latent scores `copy`, and `copy` is the input-target latent MSE."""
    from lumos.eval.diagnose import nvs_probe
    from lumos.components.vae import background_colour
    from lumos.store import FeatureStore

    objects, views = 3, 4
    n = objects * views
    rng = np.random.default_rng(0)
    c2w = np.stack([_camera(rng.uniform(0, 360), rng.uniform(-10, 50)) for _ in range(n)]).astype(np.float32)
    latents = rng.standard_normal((n, 4, 8, 8)).astype(np.float32)
    write_store(tmp_path / "f", {"latents": latents, "dino_cls": rng.standard_normal((n, 16)).astype(np.float32),
                                 "c2w": c2w, "object": np.repeat(np.arange(objects), views)},
                shard_size=5, views_per_object=views)
    store = FeatureStore(str(tmp_path / "f"))
    torch.manual_seed(0)
    fresh = LumosDiT.from_size("DiT-N/2", sample_size=8, cond_dim=16, max_cond_tokens=1, extra_in_channels=4,
                               camera_dim=CAMERA_DIM)
    r = nvs_probe(fresh, store, "dino", timesteps=(100, 900), objects=2)
    assert r["pairs"] == 2 * (views - 1) and r["objects"] == 2
    inp = np.repeat([0, views], views - 1)
    tgt = np.array([1, 2, 3, views + 1, views + 2, views + 3])
    for row in r["rows"]:
        assert row["copy"] == pytest.approx(float(((latents[inp] - latents[tgt]) ** 2).mean()), rel=1e-5)
        assert row["camera zeroed"] == pytest.approx(row["input"], rel=1e-6)
        assert row["input dropped"] == pytest.approx(row["input"], rel=1e-6)  # a fresh model ignores its input

    class PredictsItsInput(torch.nn.Module):
        """Outputs the eps that makes x0 equal to the concatenated latent (learn-sigma halves)."""
        def forward(self, xt, t, concat, camera, cond=None, cond_mask=None, force_drop_ids=None):
            from lumos.diffusion.gaussian import GaussianDiffusion
            d = GaussianDiffusion()
            a = d._gather(d.sqrt_alphas_cumprod, t, xt)
            s = d._gather(d.sqrt_one_minus_alphas_cumprod, t, xt)
            eps = (xt - a * concat) / s
            return torch.cat([eps, eps], 1)

    copy = nvs_probe(PredictsItsInput(), store, "dino", timesteps=(300,), objects=2)["rows"][0]
    assert copy["input"] == pytest.approx(copy["copy"], rel=1e-3)
    white = np.full((2, 4, 4, 3), 255, np.uint8)
    white[:, 0, 0] = 10
    drawn = np.full((2, 4, 4, 3), 200, np.uint8)
    assert background_colour(drawn, white) == [200.0, 200.0, 200.0]


def test_decoder_finetune_keeps_the_encoder_and_fits_white_backgrounds():
    """Only the decoder trains: the latents of any image are the same before and after; on
    white-background images the held-out reconstruction improves (seed 0; 40 steps)."""
    from lumos.components.vae import build_tiny_vae, finetune_decoder, to_model_range

    torch.manual_seed(0)
    vae = build_tiny_vae(16, 4, [8, 8])
    rng = np.random.default_rng(0)
    images = np.full((300, 16, 16, 3), 255, np.uint8)
    for img in images:  # a coloured square on white
        x, y = rng.integers(0, 10, 2)
        img[y:y + 6, x:x + 6] = rng.integers(0, 200, 3)
    probe = to_model_range(images[:4])
    with torch.no_grad():
        before = vae.encode(probe).latent_dist.mean.clone()
    encoder = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    r = finetune_decoder(vae, images, {"steps": 40, "batch_size": 16, "lr": 2e-3}, seed=0, held_out=64)
    with torch.no_grad():
        after = vae.encode(probe).latent_dist.mean
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert all(torch.equal(v, vae.encoder.state_dict()[k]) for k, v in encoder.items())
    assert r["images"] == 236 and r["held_out"] == 64
    assert r["psnr_db"]["after"] > r["psnr_db"]["before"] + 3
    assert min(r["white_drawn_as"]["after"]) > min(r["white_drawn_as"]["before"])
    with pytest.raises(ValueError, match="more than 64"):
        finetune_decoder(vae, images[:64], {"steps": 1, "batch_size": 4, "lr": 1e-3}, held_out=64)
