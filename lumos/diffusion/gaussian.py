"""Gaussian diffusion for training: IDDPM linear schedule, epsilon + learned range.

Notation (Ho et al. 2020; Nichol & Dhariwal 2021):

* forward process ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``;
* posterior ``q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde)`` with
  ``mu_tilde = c1 x_0 + c2 x_t``, ``c1 = beta_t sqrt(abar_{t-1}) / (1 - abar_t)``,
  ``c2 = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t)`` and
  ``beta_tilde = beta_t (1 - abar_{t-1}) / (1 - abar_t)``;
* the model predicts epsilon (``prediction_type="epsilon"``, the default), or
  x_0 (``"sample"``) or ``v = sqrt(abar) eps - sqrt(1 - abar) x_0``
  (``"v_prediction"``; diffusers' names), and, with a learned sigma, a value in
  [-1, 1] that interpolates the log variance between ``log beta_tilde``
  (clipped at t=0, where it is 0) and ``log beta_t``.

The simple loss is the MSE of what the model predicts. Read as an x_0 error, the
epsilon MSE weights step t by ``abar / (1 - abar)`` (~1e-3 at t = 800 on this
schedule), so an epsilon model learns almost nothing about x_0 at high noise,
where a sample's layout is set; x_0 prediction weights every step alike.

The hybrid loss is ``L_simple + L_vb`` where ``L_vb`` is measured in bits per
dimension, uses a stop-gradient on the predicted mean (so it only trains the
variance) and is multiplied by ``T / 1000`` as in IDDPM.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def linear_betas(num_timesteps: int) -> np.ndarray:
    """IDDPM 'linear' schedule: 1e-4 .. 0.02 rescaled by 1000 / T (float64)."""
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) for the standard normal distribution."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log-likelihood of data in [-1, 1] quantised into 256 bins.

    Each value owns the bin ``[x - 1/255, x + 1/255]`` of a Gaussian with the
    given mean and log standard deviation; the two edge bins extend to -inf and
    +inf.
    """
    inv_std = torch.exp(-log_scale)
    upper = standard_normal_cdf(inv_std * (x - mean + 1.0 / 255.0))
    lower = standard_normal_cdf(inv_std * (x - mean - 1.0 / 255.0))
    log_upper = torch.log(upper.clamp(min=1e-12))
    log_one_minus_lower = torch.log((1.0 - lower).clamp(min=1e-12))
    log_mid = torch.log((upper - lower).clamp(min=1e-12))
    return torch.where(x < -0.999, log_upper, torch.where(x > 0.999, log_one_minus_lower, log_mid))


PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def prediction_type_of(model) -> str:
    """What `model` predicts (`LumosDiT.config.prediction_type`); epsilon for a model without one
    (a video model, a stand-in, a model saved before the key existed)."""
    return getattr(getattr(model, "config", None), "prediction_type", "epsilon")


def mean_flat(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over all non-batch dimensions -> (B,); with `mask` (broadcastable to `x`, 1 where an
    element counts, 0 where not) the mean over the counted elements only."""
    dims = tuple(range(1, x.ndim))
    if mask is None:
        return x.mean(dim=dims)
    mask = mask.to(x.dtype).expand_as(x)
    return (x * mask).sum(dim=dims) / mask.sum(dim=dims).clamp(min=1)


class GaussianDiffusion:
    """Discrete-time diffusion with a linear beta schedule (training side).

    Schedule tables are float64 numpy arrays; :meth:`_gather` reads them at the
    timesteps of a batch and broadcasts to the data shape in its dtype.
    """

    def __init__(self, num_timesteps: int = 1000):
        self.num_timesteps = int(num_timesteps)
        betas = linear_betas(self.num_timesteps)
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.append(1.0, abar[:-1])
        self.betas = betas
        self.alphas_cumprod = abar
        self.alphas_cumprod_prev = abar_prev
        self.sqrt_alphas_cumprod = np.sqrt(abar)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - abar)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / abar)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / abar - 1.0)
        self.posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        # beta_tilde_0 = 0: clip the log with the value at t=1.
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = betas * np.sqrt(abar_prev) / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar)
        self.log_betas = np.log(betas)
        self._device_tables: dict[tuple[int, str], torch.Tensor] = {}  # see _on_device

    def _gather(self, table: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] as a tensor of shape (B, 1, ..., 1) in ``like``'s dtype/device.

        Timesteps on the CPU index the numpy table; timesteps on a GPU index a float64 copy of
        it kept on that device, so a training step never waits for the GPU to copy `t` back
        (the same float64 values, rounded once to ``like``'s dtype, either way)."""
        if t.device.type == "cpu":
            vals = torch.from_numpy(table[t.detach().to(torch.long).numpy()])
        else:
            vals = self._on_device(table, t.device)[t.detach().to(torch.long)]
        return vals.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def _on_device(self, table: np.ndarray, device: torch.device) -> torch.Tensor:
        """A schedule table as a float64 tensor on `device`, copied once per table and device."""
        key = (id(table), str(device))
        if key not in self._device_tables:
            self._device_tables[key] = torch.from_numpy(table).to(device)
        return self._device_tables[key]

    # ----------------------------------------------------------- forward process

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` as ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        if noise is None:
            noise = torch.randn_like(x0)
        return (
            self._gather(self.sqrt_alphas_cumprod, t, x0) * x0
            + self._gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_posterior_mean_variance(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = self._gather(self.posterior_mean_coef1, t, xt) * x0 + self._gather(self.posterior_mean_coef2, t, xt) * xt
        var = self._gather(self.posterior_variance, t, xt).expand_as(xt)
        log_var = self._gather(self.posterior_log_variance_clipped, t, xt).expand_as(xt)
        return mean, var, log_var

    # ------------------------------------------------------------ reverse process

    def predict_x0_from_eps(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert the forward process: ``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)``."""
        return self._gather(self.sqrt_recip_alphas_cumprod, t, xt) * xt - self._gather(
            self.sqrt_recipm1_alphas_cumprod, t, xt
        ) * eps

    def split_prediction(self, pred: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                         prediction_type: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
        """(eps, x0) implied by a model's prediction of `prediction_type` at (x_t, t)."""
        if prediction_type == "epsilon":
            return pred, self.predict_x0_from_eps(xt, t, pred)
        a = self._gather(self.sqrt_alphas_cumprod, t, xt)
        s = self._gather(self.sqrt_one_minus_alphas_cumprod, t, xt)
        if prediction_type == "sample":
            return (xt - a * pred) / s, pred
        if prediction_type == "v_prediction":
            return s * xt + a * pred, a * xt - s * pred
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, not {prediction_type!r}")

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction_type: str = "epsilon"):
        """What a model of `prediction_type` should output for x_t = q_sample(x0, t, noise)."""
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "sample":
            return x0
        if prediction_type == "v_prediction":
            return self._gather(self.sqrt_alphas_cumprod, t, x0) * noise \
                - self._gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, not {prediction_type!r}")

    def min_snr_weight(self, t: torch.Tensor, gamma: float, prediction_type: str, like: torch.Tensor) -> torch.Tensor:
        """Min-SNR-gamma loss weight per sample (Hang et al., ICCV 2023), (B,) in `like`'s dtype.

        With ``SNR = abar / (1 - abar)``, the weight that makes each prediction type's MSE equal to
        the x0 MSE clipped at gamma: ``min(SNR, gamma) / SNR`` for epsilon (its MSE is SNR times
        the x0 MSE), ``min(SNR, gamma)`` for x0, ``min(SNR, gamma) / (SNR + 1)`` for v."""
        abar = self._gather(self.alphas_cumprod, t, like.new_empty(len(t), dtype=torch.float64))
        snr = abar / (1.0 - abar)
        clipped = snr.clamp(max=gamma)
        if prediction_type == "epsilon":
            weight = clipped / snr
        elif prediction_type == "sample":
            weight = clipped
        elif prediction_type == "v_prediction":
            weight = clipped / (snr + 1.0)
        else:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, not {prediction_type!r}")
        return weight.reshape(-1).to(device=like.device, dtype=like.dtype)

    def learned_range_log_variance(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``frac * log beta_t + (1 - frac) * log beta_tilde_t`` with ``frac = (v + 1) / 2``."""
        frac = (v + 1.0) / 2.0
        min_log = self._gather(self.posterior_log_variance_clipped, t, v)
        max_log = self._gather(self.log_betas, t, v)
        return frac * max_log + (1.0 - frac) * min_log

    def p_mean_variance(self, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                        prediction_type: str = "epsilon"):
        """Mean and log-variance of ``p(x_{t-1} | x_t)`` from a (2C)-channel output."""
        pred, v = model_output.split(xt.shape[1], dim=1)
        log_var = self.learned_range_log_variance(v, t)
        _, x0 = self.split_prediction(pred, xt, t, prediction_type)
        mean, _, _ = self.q_posterior_mean_variance(x0, xt, t)
        return mean, log_var

    # -------------------------------------------------------------------- losses

    def vb_terms_bpd(self, model_output, x_start, xt, t, mask=None, prediction_type: str = "epsilon") -> torch.Tensor:
        """Per-sample variational-bound term in bits/dim: KL for t>0, decoder NLL at t=0 (over the
        elements `mask` counts, when given)."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, xt, t)
        mean, log_var = self.p_mean_variance(model_output, xt, t, prediction_type)
        kl = mean_flat(normal_kl(true_mean, true_log_var, mean, log_var), mask) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x_start, mean, 0.5 * log_var), mask) / math.log(2.0)
        return torch.where(t.to(kl.device) == 0, nll, kl)

    def training_losses(self, model, x_start: torch.Tensor, t: torch.Tensor, model_kwargs=None, noise=None,
                        mask=None, prediction_type: str = "epsilon", snr_gamma: float | None = None) -> dict:
        """Hybrid IDDPM loss for one batch.

        Returns a dict of per-sample (B,) tensors: ``mse`` (the MSE of what the
        model predicts, `prediction_type`: epsilon by default; mean
        over non-batch dims), ``vb`` (learned-sigma bound term times T/1000,
        zeros when the model does not learn sigma) and ``loss = mse + vb``.
        ``mask`` (broadcastable to ``x_start``; 1 counts, 0 does not) restricts
        both means to some elements: a video's frames other than the clean first
        frame it is given (Lumos-I2V's mask strategy). Data may have any number of
        dimensions after the channels, e.g. (B, C, T, H, W) for videos. With
        ``snr_gamma`` the MSE is weighted per sample by :meth:`min_snr_weight`
        (the variance term is not).
        """
        model_kwargs = model_kwargs or {}
        if noise is None:
            noise = torch.randn_like(x_start)
        xt = self.q_sample(x_start, t, noise)
        out = model(xt, t, **model_kwargs)
        c = x_start.shape[1]
        if out.shape[1] == 2 * c:
            pred, v = out.split(c, dim=1)
            frozen = torch.cat([pred.detach(), v], dim=1)  # the bound only trains the variance
            vb = self.vb_terms_bpd(frozen, x_start, xt, t, mask, prediction_type) * (self.num_timesteps / 1000.0)
        elif out.shape[1] == c:
            pred = out
            vb = torch.zeros(x_start.shape[0], device=x_start.device, dtype=out.dtype)
        else:
            raise ValueError(f"model output has {out.shape[1]} channels, expected {c} or {2 * c}")
        mse = mean_flat((self.target(x_start, noise, t, prediction_type) - pred) ** 2, mask)
        if snr_gamma is not None:
            mse = mse * self.min_snr_weight(t, snr_gamma, prediction_type, mse)
        return {"loss": mse + vb, "mse": mse, "vb": vb}

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
        """Uniform training timesteps in [0, T) of shape (batch,).

        Drawn on the generator's device (if given) and moved to ``device``.
        """
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, self.num_timesteps, (batch,), generator=generator, device=gen_device)
        return t.to(device)
