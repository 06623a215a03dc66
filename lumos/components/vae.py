"""The latent autoencoder: a `diffusers.AutoencoderKL`, trained small in the DAG or loaded by hub id."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from lumos.components.loading import from_pretrained
from lumos.utils import log, optimiser_step, progress


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    x = torch.as_tensor(images)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    x = x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def background_colour(images: np.ndarray, renders: np.ndarray, threshold: int = 250) -> list[float]:
    """Mean RGB of uint8 `images` (B, H, W, 3) where the matching `renders` are background (every
    channel above `threshold`, i.e. white): how white a model or a VAE draws a white background;
    [] when the renders have no such pixel."""
    mask = renders.min(axis=-1) > threshold
    if not mask.any():
        return []
    return [round(float(c), 1) for c in images[mask].reshape(-1, images.shape[-1]).mean(axis=0)]


def build_tiny_vae(image_size: int, latent_channels: int, block_out_channels) -> AutoencoderKL:
    """A small AutoencoderKL; downsamples by 2**(len(block_out_channels) - 1)."""
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=min(8, min(block_out_channels)),
        sample_size=image_size,
        mid_block_add_attention=False,  # at 8x8 latents attention adds cost, not quality
    )


def train_vae(images: np.ndarray, cfg: dict, out_dir: str, seed: int = 0, device="cpu") -> dict:
    """Train a tiny AutoencoderKL on uint8 images (MSE + kl_weight * KL) and save it to `out_dir`.

    The latent scaling factor (1 / std of the latents) is measured after training and stored in
    the model config, as Stable Diffusion's VAE stores 0.18215.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vae = build_tiny_vae(images.shape[1], cfg["latent_channels"], cfg["block_out_channels"]).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg["lr"])
    bar = progress(range(cfg["steps"]), desc="vae")
    history = []
    for step in bar:
        idx = torch.randint(0, len(images), (cfg["batch_size"],), generator=gen)
        x = to_model_range(images[idx.numpy()]).to(device)
        posterior = vae.encode(x).latent_dist
        rec = vae.decode(posterior.sample(generator=None)).sample
        mse = F.mse_loss(rec, x)
        kl = posterior.kl().mean() / x[0].numel()
        loss = mse + cfg["kl_weight"] * kl
        optimiser_step(opt, loss, step, "VAE")
        history.append(mse.item())
        if step % 50 == 0:
            bar.set_postfix(mse=f"{mse.item():.4f}")
    vae.eval()
    with torch.no_grad():
        x = to_model_range(images[:512]).to(device)
        lat = vae.encode(x).latent_dist.mean
        scale = float(1.0 / lat.std())
        rec = vae.decode(lat).sample
        psnr = float(10 * torch.log10(4.0 / F.mse_loss(rec, x)))
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(out_dir)
    log.info("vae: final mse %.4f, reconstruction PSNR %.2f dB, scaling factor %.4f", history[-1], psnr, scale)
    return {"final_mse": history[-1], "psnr_db": psnr, "scaling_factor": scale, "latent_shape": list(lat.shape[1:])}


def vae_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along each side of an AutoencoderKL (8 for the SD VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


class LatentCodec:
    """Encode uint8 images to scaled latents and decode them back, for any AutoencoderKL."""

    def __init__(self, vae: AutoencoderKL, scaling_factor: float, device="cpu"):
        self.vae = vae.to(device).eval()
        self.scale = scaling_factor
        self.device = device

    @torch.no_grad()
    def encode(self, images: np.ndarray, sample: bool = False) -> torch.Tensor:
        dist = self.vae.encode(to_model_range(images).to(self.device)).latent_dist
        return (dist.sample() if sample else dist.mean) * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        return to_uint8(self.vae.decode(latents.to(self.device) / self.scale).sample)


def load_vae(spec: dict, device="cpu", folder: str | None = None) -> LatentCodec:
    """Load the VAE named by a `components.vae` config block (local folder or hub id), or the VAE
    saved in `folder` instead (e.g. `nvs-decoder`'s, whose decoder is fine-tuned) with the same
    scaling factor."""
    kwargs = {"subfolder": spec["subfolder"]} if spec.get("subfolder") and not folder else {}
    vae = from_pretrained(AutoencoderKL, folder or spec["pretrained"], "VAE", "components.vae.pretrained", **kwargs)
    scale = spec.get("scaling_factor") or vae.config.scaling_factor
    return LatentCodec(vae, float(scale), device)


def finetune_decoder(vae: AutoencoderKL, images: np.ndarray, cfg: dict, seed: int = 0, device="cpu",
                     held_out: int = 256) -> dict:
    """Fine-tune `vae`'s decoder (and post-quant conv) on uint8 `images` with the encoder frozen,
    in place: MSE of the reconstruction of a posterior sample, `cfg` steps / batch_size / lr.

    The encoder, and so every latent, feature and prior built on the VAE, stays as it was; only
    what the latents decode to changes (as Stability fine-tuned Stable Diffusion's decoder alone
    for sd-vae-ft-mse). The last `held_out` images are not trained on: the returned PSNR and the
    mean colour of white pixels before and after are measured on them."""
    if len(images) <= held_out:
        raise ValueError(f"decoder fine-tune needs more than {held_out} images, got {len(images)}")
    train, test = images[:-held_out], images[-held_out:]
    vae = vae.to(device)
    vae.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)

    def score() -> tuple[float, list[float]]:
        vae.eval()
        with torch.no_grad():
            x = to_model_range(test).to(device)
            rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            psnr = float(10 * torch.log10(4.0 / F.mse_loss(rec, x)))
        return psnr, background_colour(to_uint8(rec), test)

    before = score()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    vae.train()
    bar = progress(range(cfg["steps"]), desc="decoder")
    for step in bar:
        idx = torch.randint(0, len(train), (cfg["batch_size"],), generator=gen)
        x = to_model_range(train[idx.numpy()]).to(device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        loss = F.mse_loss(vae.decode(z).sample, x)
        optimiser_step(opt, loss, step, "decoder fine-tune")
        if step % 50 == 0:
            bar.set_postfix(mse=f"{loss.item():.4f}")
    after = score()
    vae.requires_grad_(False)
    vae.eval()
    log.info("decoder fine-tune: held-out PSNR %.2f -> %.2f dB, white drawn as %s -> %s", before[0], after[0],
             before[1], after[1])
    return {"steps": cfg["steps"], "images": len(train), "held_out": held_out,
            "psnr_db": {"before": before[0], "after": after[0]},
            "white_drawn_as": {"before": before[1], "after": after[1]}}
