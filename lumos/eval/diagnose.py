"""Diagnostics for the tiny preset: what does the condition carry, what can the generator draw.

    lumos probe --encoder dino --data results/data/imagenet      # shape / colour linear probes
    lumos class-grid --model results/pretrain/class_i2i/model     # one row per shape, a column per colour
    lumos vae-ceiling --data results/data/imagenet                 # what survives the VAE round trip
    lumos memorise --data results/data/imagenet                    # can the DiT draw shapes it has seen?
    lumos shape-agreement --samples results/samples/lumos_i2i/imagenet --data results/data/imagenet

`linear_probe` fits a multinomial logistic regression (L-BFGS, L2 penalty) on standardised
features of the first `train_fraction` of the items and reports accuracy on the rest: a
representation that carries an attribute linearly scores far above chance. `class_samples` samples
the class-to-image prior for every (shape, colour) class: it separates "the condition lacks the
shape" from "the generator cannot draw the shape". `attributes_present` scores images with the DAG's
Shapes classifier: the fraction in which the requested colour, shape and (shape, colour) pair are
detected; `vae_ceiling` scores real images and their VAE reconstructions the same way;
`memorisation` trains the class prior on one image per class and asks how well it redraws them;
`class_scores_by_step` scores a class prior's EMA snapshots the same way (the levers' curves);
`shape_agreement` asks whether an I2I prior's samples keep their conditioning image's largest shape.
Noise images already score 0.3-0.46 on shape (the classifier's guess on blobs), so a shape score
means something only well above an untrained model's.
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
    from lumos.data.worlds.shapes import COLOURS
    from lumos.features import scene_labels

    shape, colour = np.divmod(scene_labels(records), len(COLOURS))
    return {"shape": shape, "colour": colour}


@torch.no_grad()
def multi_logits(net, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The Shapes classifier's presence logits (its `multi` head: shape, colour and pair bits, laid
    out as `target_groups`) for uint8 `images` (n, H, W, 3), batch by batch, as float32 (n, bits)."""
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(net(x)["multi"].float().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def attributes_present(net, images: np.ndarray, shape: np.ndarray, colour: np.ndarray, batch_size: int = 500) -> dict:
    """Fractions of uint8 `images` (n, H, W, 3) in which the Shapes classifier `net` detects the
    requested colour, shape and (shape, colour) pair (sigmoid > 0.5); `shape` and `colour` are
    (n,) indices into SHAPES and COLOURS."""
    from lumos.components.classifier import target_groups
    from lumos.data.worlds.shapes import COLOURS

    hits = torch.sigmoid(torch.from_numpy(multi_logits(net, images, batch_size))).numpy() > 0.5
    rows, groups = np.arange(len(images)), target_groups()
    wanted = {"colour": colour, "shape": shape, "pair": shape * len(COLOURS) + colour}
    return {k: float(hits[:, groups[k]][rows, idx].mean()) for k, idx in wanted.items()}


@torch.no_grad()
def class_samples(model, codec, latent_shape, guidance_scale: float, steps: int, seed: int = 0,
                  repeats: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample a class prior `repeats` times for every (shape, colour) class, shape-major.

    Returns uint8 images (repeats * n_classes, H, W, 3) and their shape and colour indices."""
    from lumos.data.worlds.shapes import COLOURS, SHAPES, class_index
    from lumos.diffusion.sampling import sample

    shape = np.tile(np.repeat(np.arange(len(SHAPES)), len(COLOURS)), repeats)
    colour = np.tile(np.arange(len(COLOURS)), len(SHAPES) * repeats)
    colours = list(COLOURS)
    labels = torch.tensor([class_index(SHAPES[s], colours[c]) for s, c in zip(shape, colour)])
    z = sample(model, (len(labels), *latent_shape), labels, None, num_steps=steps, guidance_scale=guidance_scale,
               generator=torch.Generator().manual_seed(seed))
    return codec.decode(z), shape, colour


def class_scores_by_step(checkpoints, codec, net, latent_shape, guidance_scale: float, steps: int, seed: int = 0,
                         repeats: int = 4) -> list[dict]:
    """`attributes_present` of a class prior's samples at each of its `checkpoints`, an iterable of
    (step, model) in order (EMA snapshots), and at step 0: the first model's architecture, freshly
    initialised with `seed` (noise through the decoder, the level a score must beat). Each model is
    scored and let go before the next is taken, so a generator that loads each snapshot holds at most
    two in memory. Rows: step, colour, shape, pair; every point drawn from the same labels and
    sampling noise."""
    checkpoints = iter(checkpoints)
    first_step, first = next(checkpoints)
    torch.manual_seed(seed)
    fresh = type(first).from_config(first.config).to(next(first.parameters()).device).eval()

    def score(step, model) -> dict:
        images, shape, colour = class_samples(model, codec, latent_shape, guidance_scale, steps, seed, repeats)
        return {"step": int(step), **attributes_present(net, images, shape, colour), "samples": len(images)}

    rows = [score(0, fresh), score(first_step, first)]
    del fresh, first
    rows += [score(step, model) for step, model in checkpoints]
    return rows


def class_grid(images: np.ndarray) -> np.ndarray:
    """uint8 grid of `class_samples` images: a row per shape, a column per colour (first repeat)."""
    from lumos.data.worlds.shapes import COLOURS, SHAPES

    rows, cols = len(SHAPES), len(COLOURS)
    _, h, w, _ = images.shape
    first = images[: rows * cols]
    return first.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)


@torch.no_grad()
def vae_ceiling(codec, net, images: np.ndarray, records: list[dict], batch_size: int = 500) -> dict:
    """What the VAE round trip keeps: the largest object's attributes detected on the real images
    and on their reconstructions (no generator can draw what its VAE cannot decode), plus PSNR."""
    target = largest_object_attributes(records)
    recon = np.concatenate([codec.decode(codec.encode(images[i : i + batch_size]))
                            for i in range(0, len(images), batch_size)])
    mse = np.mean((recon.astype(np.float64) - images.astype(np.float64)) ** 2)
    return {"real": attributes_present(net, images, target["shape"], target["colour"]),
            "reconstruction": attributes_present(net, recon, target["shape"], target["colour"]),
            "psnr_db": float(10 * np.log10(255.0**2 / max(mse, 1e-12))), "n": len(images)}


def shape_agreement(net, samples: np.ndarray, condition_images: np.ndarray, condition_shapes: np.ndarray,
                    batch_size: int = 500) -> dict:
    """Condition-sample shape agreement of an I2I prior: sample i was generated from the features
    of condition image i. The reference is the condition's *labelled* largest-object shape
    (`condition_shapes`, (n,) indices into SHAPES, from its record: `largest_object_attributes`),
    not what the classifier makes of the condition. The classifier `net` has no largest-object
    head; an image's detected shape is the shape bit of its `multi` head with the highest logit.

    Returns, over the n pairs of uint8 images (n, H, W, 3):
      `agreement`: the sample's detected shape equals the condition's labelled shape;
      `condition_accuracy`: the same for the condition images themselves (the ceiling of
        `agreement`: a perfect copy of every condition scores it);
      `present`, `condition_present`: the condition's shape bit is on (sigmoid > 0.5, as
        `attributes_present`) in the sample / in the condition;
      `chance` (1 / number of shapes), `majority` (the most common labelled shape's rate, with
        `majority_shape`: what always detecting it scores) and `independent` (the agreement
        expected if the samples' detected shapes, with their own frequencies, ignored the
        condition); and `n`."""
    from lumos.components.classifier import target_groups
    from lumos.data.worlds.shapes import SHAPES

    ref = np.asarray(condition_shapes, dtype=np.int64)
    if not len(samples) == len(condition_images) == len(ref):
        raise ValueError(f"need one condition image and one shape per sample, got {len(samples)} samples, "
                         f"{len(condition_images)} condition images and {len(ref)} shapes")
    if len(ref) == 0:
        raise ValueError("no samples to score")
    group, rows, k = target_groups()["shape"], np.arange(len(ref)), len(SHAPES)
    drawn = multi_logits(net, samples, batch_size)[:, group]
    real = multi_logits(net, condition_images, batch_size)[:, group]
    ref_freq = np.bincount(ref, minlength=k) / len(ref)
    drawn_freq = np.bincount(drawn.argmax(1), minlength=k) / len(ref)
    return {"n": len(ref),
            "agreement": float((drawn.argmax(1) == ref).mean()),
            "condition_accuracy": float((real.argmax(1) == ref).mean()),
            "present": float((drawn[rows, ref] > 0).mean()),
            "condition_present": float((real[rows, ref] > 0).mean()),
            "chance": 1.0 / k, "majority": float(ref_freq.max()), "majority_shape": SHAPES[int(ref_freq.argmax())],
            "independent": float(ref_freq @ drawn_freq)}


def one_per_class(records: list[dict]) -> np.ndarray:
    """Indices of the first image of every class (largest object's shape x colour) in `records`,
    in class order."""
    from lumos.features import scene_labels

    return np.unique(scene_labels(records), return_index=True)[1]


def memorisation(codec, net, images: np.ndarray, records: list[dict], model_cfg: dict, train_cfg: dict,
                 work_dir: str, guidance_scale: float, steps: int, seeds: int = 2, seed: int = 0,
                 device="cpu", grid: str | None = None) -> dict:
    """Train the class-to-image prior on one image per class only, then sample every class `seeds`
    times: the latent MSE of each sample to its class's single training latent (beside
    `mean_latent_mse`, what always drawing the mean of the training latents would score), and the
    Shapes classifier's colour / shape / pair scores for the trained and the untrained model and
    for the VAE reconstructions of the same images (the ceiling).
    `grid` (a PNG path) shows each training image beside its class's first sample.

    A generator that reaches the ceiling here can draw shapes; one that does here but not when
    trained on the whole pool is short of images seen, not broken."""
    from pathlib import Path

    from lumos.diffusion.sampling import sample
    from lumos.features import scene_labels
    from lumos.tasks.i2i import build_model
    from lumos.sample import load_model
    from lumos.settings import TrainSettings
    from lumos.training.loop import train_diffusion

    train_cfg = TrainSettings.from_config(train_cfg, "pretrain.train")
    idx = one_per_class(records)
    kept = [records[i] for i in idx]
    target = largest_object_attributes(kept)
    labels = torch.as_tensor(scene_labels(kept)).long()
    with torch.no_grad():
        latents = codec.encode(images[idx]).float().cpu()
    shape, colour = np.tile(target["shape"], seeds), np.tile(target["colour"], seeds)

    def draw(model) -> torch.Tensor:
        model = model.to(device).eval()
        return torch.cat([sample(model, tuple(latents.shape), labels, None, num_steps=steps,
                                 guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed + r))
                          for r in range(seeds)]).cpu()

    torch.manual_seed(seed)
    model = build_model(model_cfg, {"injection": "class"}, tuple(latents.shape[1:]), 1, 1)
    untrained = attributes_present(net, codec.decode(draw(type(model).from_config(model.config))), shape, colour)
    summary = train_diffusion(model, latents, labels, None, train_cfg, work_dir, str(Path(work_dir) / "state"),
                              seed=seed, device=device, cleanup_state=True)
    z = draw(load_model(str(Path(work_dir) / "model")))
    drawn = codec.decode(z)
    trained = {"latent_mse": float(((z - latents.repeat(seeds, 1, 1, 1)) ** 2).mean()),
               **attributes_present(net, drawn, shape, colour)}
    if grid:
        from lumos.viz import save_grid

        pairs = np.stack([images[idx], drawn[: len(idx)]], 1).reshape(-1, *images.shape[1:])
        save_grid(grid, pairs, ncols=16, scale=3)  # training image | sample, 8 classes a row
    return {"classes": len(idx), "steps": summary["steps"], "lr": train_cfg.lr,
            "final_loss": summary["final_loss"], "seconds": summary["seconds"], "trained": trained,
            "mean_latent_mse": float(((latents - latents.mean(0)) ** 2).mean()), "untrained": untrained,
            "reconstruction": attributes_present(net, codec.decode(latents), target["shape"], target["colour"])}


def nvs_probe(model, store, encoder: str, timesteps=(100, 300, 500, 700, 900), objects: int = 16,
              seed: int = 0, device="cpu") -> dict:
    """Does a Lumos-NVS model use its input view and its camera? On every (input, target) pair of
    the first `objects` objects of a rendered test split's features (`store`), the target latent is
    noised to each of `timesteps` and the model's x0 prediction (converted from what it predicts, `config.prediction_type`) is scored by its
    mean squared error to the target latent, given
      `input`: the input view and the relative camera, as at sampling;
      `camera zeroed`: the same with the camera vector set to zeros;
      `input dropped`: the null condition (no input latent, no features), as CFG's other branch.
    `copy` is the error of predicting the input view's latent itself at every noise level: a model
    that reads its input well is below it. The same noise is used for every variant."""
    from lumos.diffusion.gaussian import GaussianDiffusion, prediction_type_of
    from lumos.training.loader import to_tensor
    from lumos.tasks.nvs import nvs_inputs, views_per_object

    v = views_per_object(store)
    n = min(objects, store.n // v)
    inp = np.repeat(np.arange(n) * v, v - 1)
    tgt = (np.arange(n)[:, None] * v + np.arange(1, v)[None]).reshape(-1)
    first = store.get(inp, ["latents", f"{encoder}_cls", "c2w", "object"])
    second = store.get(tgt, ["latents", "c2w"])
    kwargs = {k: t.to(device) for k, t in nvs_inputs(first, encoder, second["c2w"]).items()}
    x0 = to_tensor(second["latents"]).to(device)
    copy = float(((kwargs["concat"] - x0) ** 2).mean())
    variants = {"input": kwargs, "camera zeroed": {**kwargs, "camera": torch.zeros_like(kwargs["camera"])},
                "input dropped": {**kwargs, "force_drop_ids": torch.ones(len(x0), dtype=torch.bool, device=device)}}
    diffusion, gen = GaussianDiffusion(), torch.Generator().manual_seed(seed)
    rows = []
    model = model.to(device).eval()
    prediction_type = prediction_type_of(model)
    with torch.no_grad():
        for t in timesteps:
            tt = torch.full((len(x0),), int(t), device=device)
            xt = diffusion.q_sample(x0, tt, torch.randn(x0.shape, generator=gen).to(device))
            row = {"t": int(t), "copy": copy}
            for name, kw in variants.items():
                pred = model(xt, tt, **kw)[:, : x0.shape[1]]
                _, x0_pred = diffusion.split_prediction(pred, xt, tt, prediction_type)
                row[name] = float(((x0_pred - x0) ** 2).mean())
            rows.append(row)
    return {"pairs": len(x0), "objects": n, "rows": rows}
