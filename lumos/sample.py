"""Generating images: one sample per eval image, conditioned on that image's cached features.

Samples are written as PNGs to a work folder outside the declared output first, so a killed job
resumes where it stopped (finished batches are not regenerated); the folder is moved into place
when all are done.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lumos.utils import atomic_write, fault_point, log, png_complete, progress


def load_model(model_dir: str | None, fresh_from=None):
    """A trained LumosDiT from `model_dir`, or `fresh_from()` (an untrained model: the ceiling row)."""
    from lumos.components.loading import from_pretrained
    from lumos.models import LumosDiT

    if model_dir is None:
        return fresh_from()
    return from_pretrained(LumosDiT, model_dir, "trained DiT", "pretrain (rerun the pretrain rule)")


def write_batches(n: int, batch_size: int, make, out_dir: str, work_dir: str, part: int = 0, parts: int = 1,
                  what: str = "samples") -> int:
    """Write items 0..n-1 as PNGs named by their index, batch by batch: `make(start, stop)` returns
    the uint8 images of one batch. Batches whose PNGs are all in `work_dir`, whole, are skipped (a
    killed job resumes; each PNG is written beside and renamed, and a truncated one, from a kill of
    an older version, is made again); the folder is moved to `out_dir` at the end. With `parts` > 1 this job makes every
    `parts`-th batch only. Returns the number of items this job made."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    mine = list(range(0, n, batch_size))[part::parts]
    for start in progress(mine, desc=f"{what} (part {part + 1}/{parts})"):
        stop = min(start + batch_size, n)
        if all(png_complete(work / f"{i:06d}.png") for i in range(start, stop)):
            continue
        for i, img in zip(range(start, stop), make(start, stop)):
            atomic_write(work / f"{i:06d}.png", Image.fromarray(img).save)
            fault_point("sample")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(work), str(out))
    written = sum(min(start + batch_size, n) - start for start in mine)
    log.info("wrote %d of %d %s to %s", written, n, what, out)
    return written


def batch_generator(seed: int, start: int) -> torch.Generator:
    """The generator of the batch starting at `start`: a batch's noise depends only on the seed and its place."""
    return torch.Generator().manual_seed(seed * 1_000_003 + start)


def generate(model, codec, cond: torch.Tensor, cond_mask: torch.Tensor, latent_shape, out_dir: str, work_dir: str,
             sample_cfg: dict, seed: int, device="cpu", part: int = 0, parts: int = 1,
             model_kwargs: dict | None = None, n: int | None = None) -> int:
    """Sample `len(cond)` images (batch by batch, each batch seeded by its start index) as PNGs
    named by their index. `cond` and `cond_mask` are tensors or anything read by slices
    (`lumos.training.loader.Column`: an evaluation split read batch by batch). With `parts` > 1 this job makes every `parts`-th batch only; the
    parts' folders together hold exactly the images one job would have made. `model_kwargs` are
    further inputs of every model call, the same for every batch (the released T2I model's
    micro-conditions: `lumos.models.dit.micro_condition_inputs`). An unconditional model (REPA,
    REG: no condition at sampling) takes `cond` None and `n` images."""
    from lumos.diffusion.sampling import sample

    model = model.to(device).eval()

    def make(start, stop):
        lat = sample(model, (stop - start, *latent_shape), None if cond is None else cond[start:stop].to(device),
                     None if cond_mask is None else cond_mask[start:stop].to(device),
                     sampler=sample_cfg["sampler"], num_steps=sample_cfg["steps"],
                     guidance_scale=sample_cfg["guidance_scale"], generator=batch_generator(seed, start),
                     device=device, model_kwargs=model_kwargs)
        return codec.decode(lat)

    return write_batches(len(cond) if cond is not None else n, sample_cfg["batch_size"], make, out_dir, work_dir,
                         part, parts)


def read_pngs(folder: str, limit: int | None = None) -> np.ndarray:
    """The PNGs of a sample folder, in name order, as (n, H, W, 3) uint8."""
    files = sorted(Path(folder).glob("*.png"))[:limit]
    if not files:
        raise FileNotFoundError(f"no PNG samples in {folder}")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
