"""The objective options (beyond the paper): what the priors predict (`pretrain.model.prediction_type`)
and the min-SNR-gamma loss weight (`<train block>.snr_gamma`, Hang et al. ICCV 2023)."""

import numpy as np
import pytest
import torch

from lumos.config import ConfigError, load_config
from lumos.diffusion.gaussian import GaussianDiffusion
from lumos.settings import TrainSettings
from lumos.tasks.i2i import build_model

GAMMA = 5.0


def test_min_snr_weight_per_prediction_type():
    """min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) for x0, min(SNR, gamma) / (SNR + 1) for v,
    with SNR = abar / (1 - abar) of the linear schedule (float64 tables, compared in float64)."""
    d = GaussianDiffusion(1000)
    t = torch.tensor([0, 10, 100, 300, 999])
    snr = d.alphas_cumprod[t.numpy()] / (1 - d.alphas_cumprod[t.numpy()])
    assert snr[0] > GAMMA > snr[-1]  # both sides of the clip are exercised
    like = torch.zeros(len(t), dtype=torch.float64)
    clipped = np.minimum(snr, GAMMA)
    for kind, expected in (("epsilon", clipped / snr), ("sample", clipped), ("v_prediction", clipped / (snr + 1))):
        np.testing.assert_allclose(d.min_snr_weight(t, GAMMA, kind, like).numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="prediction_type"):
        d.min_snr_weight(t, GAMMA, "x0", like)


def _model_implying(x0_hat: torch.Tensor, d: GaussianDiffusion, kind: str, noise_of: dict):
    """A stand-in model whose prediction of `kind` implies the clean estimate `x0_hat` at (x_t, t)."""

    def model(xt, t):
        a = d._gather(d.sqrt_alphas_cumprod, t, xt)
        s = d._gather(d.sqrt_one_minus_alphas_cumprod, t, xt)
        eps_hat = (xt - a * x0_hat) / s
        noise_of["xt"] = xt
        return {"epsilon": eps_hat, "sample": x0_hat, "v_prediction": a * eps_hat - s * x0_hat}[kind]

    return model


def test_min_snr_makes_every_prediction_type_the_same_clipped_x0_loss():
    """The weighting's point: for the same implied x0 estimate, each prediction type's weighted
    MSE equals min(SNR, gamma) x the x0 MSE (float64, relative tolerance 1e-9)."""
    torch.manual_seed(0)
    d = GaussianDiffusion(1000)
    x0 = torch.randn(5, 4, 8, 8, dtype=torch.float64)
    x0_hat = x0 + 0.1 * torch.randn_like(x0)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 100, 300, 999])
    snr = torch.from_numpy(d.alphas_cumprod[t.numpy()] / (1 - d.alphas_cumprod[t.numpy()]))
    x0_mse = ((x0_hat - x0) ** 2).mean(dim=(1, 2, 3))
    for kind in ("epsilon", "sample", "v_prediction"):
        seen = {}
        losses = d.training_losses(_model_implying(x0_hat, d, kind, seen), x0, t, noise=noise,
                                   prediction_type=kind, snr_gamma=GAMMA)
        torch.testing.assert_close(losses["mse"], snr.clamp(max=GAMMA) * x0_mse, rtol=1e-9, atol=0)
        plain = d.training_losses(_model_implying(x0_hat, d, kind, seen), x0, t, noise=noise, prediction_type=kind)
        weight = d.min_snr_weight(t, GAMMA, kind, plain["mse"])
        torch.testing.assert_close(losses["mse"], plain["mse"] * weight, rtol=1e-12, atol=0)


def test_prior_prediction_type_from_the_config():
    """`pretrain.model.prediction_type` sets what a prior predicts; unset it is the paper's epsilon;
    a value outside diffusers' names is an error naming the key."""
    cfg = load_config("smoke", {"pretrain": {"model": {"prediction_type": "v_prediction"}}})
    run = cfg["pretrain"]["runs"]["lumos_i2i"]
    model = build_model(cfg["pretrain"]["model"], run, (4, 8, 8), cond_dim=16, n_tokens=1)
    assert model.config.prediction_type == "v_prediction"
    plain = load_config("smoke")
    assert build_model(plain["pretrain"]["model"], run, (4, 8, 8), 16, 1).config.prediction_type == "epsilon"
    with pytest.raises(ConfigError, match="pretrain.model.prediction_type"):
        load_config("smoke", {"pretrain": {"model": {"prediction_type": "x0"}}})
    with pytest.raises(ConfigError, match="pretrain.train.snr_gamma"):
        load_config("smoke", {"pretrain": {"train": {"snr_gamma": 0}}})


def test_snr_gamma_is_in_the_resume_key_only_when_set():
    """Runs trained before the option existed keep their resume key; a run with it has another."""
    block = load_config("smoke")["pretrain"]["train"]
    plain = TrainSettings.from_config(block, "pretrain.train")
    weighted = TrainSettings.from_config({**block, "snr_gamma": GAMMA}, "pretrain.train")
    assert "snr_gamma" not in plain.resume_key()
    assert weighted.resume_key() == {**plain.resume_key(), "snr_gamma": GAMMA}
