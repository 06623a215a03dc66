"""Diagnostics: the linear probe finds a linearly coded attribute and not a random one; the class grid."""

import numpy as np
import pytest
import torch

from lumos.eval.diagnose import (attributes_present, class_grid, class_samples, largest_object_attributes,
                                 linear_probe, vae_ceiling)


def test_probe_reads_a_linearly_coded_attribute():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 600)
    x = rng.normal(size=(600, 20))
    x[:, :5] += 6.0 * np.eye(5)[y]  # the label shifts its own coordinate
    r = linear_probe(x, y, seed=0)
    assert r["accuracy"] >= 0.95 and r["n_test"] == 120 and r["chance"] == pytest.approx(0.2)
    assert linear_probe(x, y, seed=0) == r  # deterministic


def test_probe_on_unrelated_features_stays_near_chance():
    rng = np.random.default_rng(1)
    y, x = rng.integers(0, 5, 600), rng.normal(size=(600, 20))
    assert linear_probe(x, y, seed=0)["accuracy"] < 0.35  # chance 0.2; 120 held out


def test_probe_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one label per row"):
        linear_probe(np.zeros((10, 3)), np.zeros(9, int))


def test_largest_object_attributes():
    from lumos.data.worlds.shapes import COLOURS, SHAPES

    rec = {"scene": {"objects": [{"shape": "circle", "colour": "red", "size": 4},
                                 {"shape": "cross", "colour": "blue", "size": 7}]}}
    got = largest_object_attributes([rec])
    assert got["shape"][0] == SHAPES.index("cross") and got["colour"][0] == list(COLOURS).index("blue")


def test_class_grid_has_a_row_per_shape_and_a_column_per_colour():
    from lumos.components.vae import LatentCodec, build_tiny_vae
    from lumos.data.worlds.shapes import COLOURS, NUM_CLASSES, SHAPES, class_index
    from lumos.models import LumosDiT

    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="class", num_classes=NUM_CLASSES).eval()
    codec = LatentCodec(build_tiny_vae(16, 4, [8, 8, 8]), 1.0)
    images, shape, colour = class_samples(model, codec, (4, 4, 4), guidance_scale=2.0, steps=2, repeats=2)
    assert images.shape == (2 * NUM_CLASSES, 16, 16, 3) and images.dtype == np.uint8
    # shape-major order, repeated: item 9 is the second shape with the second colour
    assert (SHAPES[shape[9]], list(COLOURS)[colour[9]]) == (SHAPES[1], list(COLOURS)[1])
    assert (shape[NUM_CLASSES:] == shape[:NUM_CLASSES]).all() and (colour[NUM_CLASSES:] == colour[:NUM_CLASSES]).all()
    assert class_index(SHAPES[shape[-1]], list(COLOURS)[colour[-1]]) == NUM_CLASSES - 1
    grid = class_grid(images)
    assert grid.shape == (len(SHAPES) * 16, len(COLOURS) * 16, 3) and grid.dtype == np.uint8
    assert (grid[16:32, 16:32] == images[len(COLOURS) + 1]).all()  # row = shape 1, column = colour 1


class _FixedDetector(torch.nn.Module):
    """A stand-in Shapes classifier: image i (every pixel = i) gets the detections `bits[i]`."""

    def __init__(self, bits: np.ndarray):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.from_numpy(np.where(bits, 10.0, -10.0)).float(), requires_grad=False)

    def forward(self, x):
        index = ((x[:, 0, 0, 0] + 1) * 127.5).round().long()
        return {"multi": self.logits[index]}


def _bits(n, on):
    from lumos.components.classifier import target_groups

    g = target_groups()
    bits = np.zeros((n, g["pair"].start + 40), bool)
    for i, (kind, j) in on:
        bits[i, g[kind].start + j] = True
    return bits


def test_attributes_present_counts_the_requested_bits_only():
    from lumos.data.worlds.shapes import COLOURS

    n_c = len(COLOURS)
    shape, colour = np.array([0, 2, 4]), np.array([1, 3, 5])
    # image 0: right shape, right colour, right pair; image 1: right colour but the wrong shape and a
    # pair of another colour; image 2: right shape only
    net = _FixedDetector(_bits(3, [(0, ("shape", 0)), (0, ("colour", 1)), (0, ("pair", 0 * n_c + 1)),
                                   (1, ("shape", 1)), (1, ("colour", 3)), (1, ("pair", 2 * n_c + 4)),
                                   (2, ("shape", 4))]))
    images = np.arange(3, dtype=np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    got = attributes_present(net, images, shape, colour, batch_size=2)
    assert got == pytest.approx({"colour": 2 / 3, "shape": 2 / 3, "pair": 1 / 3})


def test_vae_ceiling_scores_real_and_reconstructed_images():
    from lumos.components.vae import LatentCodec, build_tiny_vae
    from lumos.data.worlds.shapes import generate_split

    images, records = generate_split(6, seed=0, image_size=16, min_objects=1, max_objects=1)
    every_shape = _bits(256, [(i, ("shape", k)) for i in range(256) for k in range(5)])  # any image: all shapes
    torch.manual_seed(0)
    codec = LatentCodec(build_tiny_vae(16, 4, [8, 8]), 1.0)
    r = vae_ceiling(codec, _FixedDetector(every_shape), images, records, batch_size=4)
    assert r["n"] == 6 and r["real"] == {"colour": 0.0, "shape": 1.0, "pair": 0.0} == r["reconstruction"]
    assert 0 < r["psnr_db"] < 30  # an untrained VAE does not reconstruct


def test_one_per_class_keeps_the_first_image_of_each_class():
    from lumos.data.worlds.shapes import generate_split
    from lumos.eval.diagnose import one_per_class
    from lumos.features import scene_labels

    _, records = generate_split(80, seed=2, image_size=16, min_objects=1, max_objects=1)
    labels = scene_labels(records)
    idx = one_per_class(records)
    assert list(labels[idx]) == sorted(set(labels))  # every class once, in class order
    assert all(labels[i] not in labels[:i] for i in idx)  # its first image


def test_memorisation_learns_its_few_latents(tmp_path):
    """A nano DiT trained 2,000 steps on one image per class redraws them: its samples come closer to
    their class's training latent than the mean latent does, by at least half (seeded; measured
    0.093 against 0.381; after 200 steps the samples are still far off, MSE 19.9)."""
    from lumos.components.vae import LatentCodec, build_tiny_vae
    from lumos.data.worlds.shapes import generate_split
    from lumos.eval.diagnose import memorisation
    from lumos.features import scene_labels

    images, records = generate_split(12, seed=0, image_size=16, min_objects=1, max_objects=1)
    torch.manual_seed(0)
    vae = build_tiny_vae(16, 4, [8, 8])
    codec = LatentCodec(vae, float(1 / LatentCodec(vae, 1.0).encode(images).std()))  # unit-scaled, as trained VAEs
    every_shape = _bits(256, [(i, ("shape", k)) for i in range(256) for k in range(5)])
    train = {"steps": 2000, "batch_size": 8, "lr": 3e-3, "warmup_steps": 10, "ema_decay": 0.9, "ema_warmup": True,
             "grad_clip": 1.0, "checkpoint_every": 2000, "log_every": 500}
    r = memorisation(codec, _FixedDetector(every_shape), images, records,
                     {"size": "DiT-N/2", "learn_sigma": True, "cond_dropout": 0.1}, train, str(tmp_path / "m"),
                     guidance_scale=1.0, steps=10, seeds=2, grid=str(tmp_path / "grid.png"))
    from PIL import Image

    from lumos.viz import image_grid

    # one training image and one sample per class, 16 tiles a row
    want = image_grid(np.zeros((2 * r["classes"], 16, 16, 3), np.uint8), ncols=16, scale=3).size
    assert Image.open(tmp_path / "grid.png").size == want
    assert r["classes"] == len(set(scene_labels(records)))
    assert r["steps"] == 2000 and (tmp_path / "m" / "model").is_dir()
    assert r["trained"]["latent_mse"] < 0.5 * r["mean_latent_mse"]  # closer to its own image than the mean is
    assert r["reconstruction"]["shape"] == 1.0 == r["untrained"]["shape"]
    assert set(r["trained"]) == {"latent_mse", "colour", "shape", "pair"}
