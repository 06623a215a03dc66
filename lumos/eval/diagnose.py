"""Diagnostics for the tiny preset: what does the condition carry, what can the generator draw.

    lumos probe --encoder dino --data results/data/imagenet      # shape / colour linear probes
    lumos class-grid --model results/pretrain/class_i2i/model     # one row per shape, a column per colour

`linear_probe` fits a multinomial logistic regression (L-BFGS, L2 penalty) on standardised
features of the first `train_fraction` of the items and reports accuracy on the rest: a
representation that carries an attribute linearly scores far above chance. `class_grid` samples
the class-to-image prior for every (shape, colour) class: it separates "the condition lacks the
shape" from "the generator cannot draw the shape".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def linear_probe(features, labels, train_fraction: float = 0.8, l2: float = 1e-3, seed: int = 0) -> dict:
    """Held-out accuracy of a linear classifier from `features` (n, d) to integer `labels` (n,)."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (n, d) with one label per row, got {tuple(x.shape)} and {len(y)} labels")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n_train = int(train_fraction * len(x))
    if n_train < 2 or n_train >= len(x):
        raise ValueError(f"need items on both sides of the split, got {len(x)} items at fraction {train_fraction}")
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = (x - mean) / std
    n_classes = int(y.max()) + 1
    w = torch.zeros(x.shape[1], n_classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x[:n_train] @ w + b, y[:n_train]) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (x[n_train:] @ w + b).argmax(1)
    majority = torch.bincount(y[:n_train], minlength=n_classes).argmax()
    return {"accuracy": float((pred == y[n_train:]).double().mean()),
            "majority_baseline": float((y[n_train:] == majority).double().mean()),
            "chance": 1.0 / len(torch.unique(y)), "n_train": n_train, "n_test": len(x) - n_train}


def largest_object_attributes(records: list[dict]) -> dict[str, np.ndarray]:
    """Shape and colour indices of each Shapes-world image's largest object (the class label of
    the class-to-image prior, split back into its two parts)."""
    from lumos.data.shapes import COLOURS
    from lumos.features import scene_labels

    shape, colour = np.divmod(scene_labels(records), len(COLOURS))
    return {"shape": shape, "colour": colour}


@torch.no_grad()
def class_grid(model, codec, latent_shape, guidance_scale: float, steps: int, seed: int = 0) -> np.ndarray:
    """uint8 grid: a row per shape, a column per colour, each cell sampled for that class."""
    from lumos.data.shapes import COLOURS, SHAPES, class_index
    from lumos.diffusion.sampling import sample

    labels = torch.tensor([class_index(s, c) for s in SHAPES for c in COLOURS])
    z = sample(model, (len(labels), *latent_shape), labels, None, num_steps=steps, guidance_scale=guidance_scale,
               generator=torch.Generator().manual_seed(seed))
    images = codec.decode(z)
    n, h, w, _ = images.shape
    rows, cols = len(SHAPES), len(COLOURS)
    return images.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
