"""Diagnostics: the linear probe finds a linearly coded attribute and not a random one; the class grid."""

import numpy as np
import pytest
import torch

from lumos.eval.diagnose import class_grid, largest_object_attributes, linear_probe


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
    from lumos.data.shapes import COLOURS, SHAPES

    rec = {"scene": {"objects": [{"shape": "circle", "colour": "red", "size": 4},
                                 {"shape": "cross", "colour": "blue", "size": 7}]}}
    got = largest_object_attributes([rec])
    assert got["shape"][0] == SHAPES.index("cross") and got["colour"][0] == list(COLOURS).index("blue")


def test_class_grid_has_a_row_per_shape_and_a_column_per_colour():
    from lumos.components.vae import LatentCodec, build_tiny_vae
    from lumos.data.shapes import COLOURS, NUM_CLASSES, SHAPES
    from lumos.models import LumosDiT

    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="class", num_classes=NUM_CLASSES).eval()
    codec = LatentCodec(build_tiny_vae(16, 4, [8, 8, 8]), 1.0)
    grid = class_grid(model, codec, (4, 4, 4), guidance_scale=2.0, steps=2)
    assert grid.shape == (len(SHAPES) * 16, len(COLOURS) * 16, 3) and grid.dtype == np.uint8
