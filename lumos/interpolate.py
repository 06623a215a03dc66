"""Image interpolation with an I2I prior (paper Figure S7, supplementary I.4).

Two images' condition vectors (their encoder CLS tokens) are interpolated spherically; every
point is sampled from the same initial noise, so the strip changes only with the condition. At
t = 0 and t = 1 the condition is exactly the end image's own, so those samples are the ones the
end images get on their own with that noise. Each generated image is encoded again, and its
cosine similarity to the two ends' CLS tokens is the number the figure's CSV records: it should
move from a to b along the strip.
"""

from __future__ import annotations

import numpy as np
import torch


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between the directions of `a` and `b` (last dim), with the norm
    interpolated linearly; exactly `a` at t = 0 and `b` at t = 1."""
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na, b / nb
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def interpolation_conditions(cls_a: np.ndarray, cls_b: np.ndarray, ts, injection: str) -> torch.Tensor:
    """Conditions (len(ts), 1, D) along the arc from CLS `cls_a` to `cls_b`: L2-normalised for
    cross-attention (as training normalises the CLS), raw for adaLN (RCG)."""
    a, b = torch.from_numpy(np.asarray(cls_a, np.float32)), torch.from_numpy(np.asarray(cls_b, np.float32))
    if injection == "cross_attn":
        a, b = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    return torch.stack([slerp(a, b, float(t)) for t in ts])[:, None]


@torch.no_grad()
def sample_with_noise(model, codec, cond: torch.Tensor, latent_shape, sample_cfg: dict, seed: int,
                      device="cpu") -> np.ndarray:
    """One image per condition row, every one from the initial noise of `seed`: uint8 (n, H, W, 3)."""
    from lumos.diffusion.sampling import sample

    images = []
    for row in cond:
        gen = torch.Generator().manual_seed(seed)
        lat = sample(model, (1, *latent_shape), row[None].to(device), torch.ones(1, row.shape[0], dtype=torch.bool),
                     sampler=sample_cfg["sampler"], num_steps=sample_cfg["steps"],
                     guidance_scale=sample_cfg["guidance_scale"], generator=gen, device=device)
        images.append(codec.decode(lat)[0])
    return np.stack(images)


def choose_pairs(n: int, pairs: int, seed: int) -> list[tuple[int, int]]:
    """`pairs` distinct pairs of distinct image indices of an n-image split, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)[: 2 * pairs]
    if len(order) < 2 * pairs:
        raise ValueError(f"{pairs} interpolation pairs need {2 * pairs} images; the split has {n}")
    return [(int(order[2 * k]), int(order[2 * k + 1])) for k in range(pairs)]


def cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of x (n, D) to the vector y (D,)."""
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return x @ (y / np.linalg.norm(y))


def interpolation_figure(model, codec, encoder, images: np.ndarray, cls: np.ndarray, injection: str, points: int,
                         pairs: int, sample_cfg: dict, seed: int, device="cpu"):
    """Strips for `pairs` random pairs of `images` (with their CLS tokens `cls`): per pair the
    generated images at `points` values of t from 0 to 1. Returns (rows for the CSV, strips as a
    list of (end image a, generated (points, H, W, 3), end image b))."""
    from lumos.utils import progress

    cfg = model.config
    latent_shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    ts = np.linspace(0.0, 1.0, points)
    rows, strips = [], []
    for k, (i, j) in enumerate(progress(choose_pairs(len(images), pairs, seed), desc="interpolate")):
        cond = interpolation_conditions(cls[i], cls[j], ts, injection)
        generated = sample_with_noise(model, codec, cond, latent_shape, sample_cfg, seed + k, device)
        feats, _ = encoder(generated)
        feats = feats.float().cpu().numpy()
        to_a, to_b = cosine(feats, cls[i]), cosine(feats, cls[j])
        rows += [{"pair": k, "image_a": i, "image_b": j, "t": round(float(t), 4), "cos_to_a": float(ca),
                  "cos_to_b": float(cb)} for t, ca, cb in zip(ts, to_a, to_b)]
        strips.append((images[i], generated, images[j]))
    return rows, strips


def save_strips(path, strips, scale: int = 3) -> None:
    """One row per pair: end image a | the generated images | end image b, with a gap at each end."""
    from lumos.viz import save_grid

    cells, labels = [], []
    for a, generated, b in strips:
        cells += [a, *generated, b]
        labels += ["a", *[""] * len(generated), "b"]
    save_grid(path, np.stack(cells), ncols=len(strips[0][1]) + 2, scale=scale, labels=labels)
