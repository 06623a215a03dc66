"""Condition-sample shape agreement (`lumos shape-agreement`): a stand-in Shapes classifier reads a
shape code stamped into pixel (0, 0), so what it detects, and hence every score, is known exactly."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lumos.data.worlds.shapes import SHAPES, generate_split
from lumos.eval.diagnose import largest_object_attributes, shape_agreement

N, WRONG = 20, (3, 7, 11)  # the stand-in misreads the conditions at WRONG (accuracy 17/20)


class _StampReader(torch.nn.Module):
    """Detects shape k (logit 10) and k + 1 (logit 5, on but not the argmax) in an image whose
    pixel (0, 0) has red 40 k + 20."""

    def __init__(self):
        super().__init__()
        from lumos.components.classifier import target_groups

        self.width = target_groups()["pair"].start + 40
        self.unused = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x):
        k = (((x[:, 0, 0, 0] + 1) * 127.5).round().long() // 40).clamp(0, len(SHAPES) - 1)
        rows = torch.arange(len(x))
        logits = torch.full((len(x), self.width), -10.0)
        logits[rows, (k + 1) % len(SHAPES)] = 5.0
        logits[rows, k] = 10.0
        return {"multi": logits}


def _stamp(images: np.ndarray, codes: np.ndarray) -> np.ndarray:
    out = images.copy()
    out[:, 0, 0, 0] = 40 * codes + 20
    return out


@pytest.fixture(scope="module")
def world():
    """N rendered Shapes images stamped with their largest shape, but one less at WRONG (so the
    classifier misses the argmax there and still finds the shape present)."""
    images, records = generate_split(N, seed=0, image_size=16)
    shape = largest_object_attributes(records)["shape"]
    codes = shape.copy()
    codes[list(WRONG)] = (shape[list(WRONG)] - 1) % len(SHAPES)
    return _stamp(images, codes), records, shape, codes


def test_identical_samples_score_the_classifiers_accuracy_on_the_conditions(world):
    images, _, shape, _ = world
    r = shape_agreement(_StampReader(), images.copy(), images, shape, batch_size=6)
    assert r["n"] == N and r["condition_accuracy"] == pytest.approx(1 - len(WRONG) / N)
    assert r["agreement"] == r["condition_accuracy"]
    assert r["present"] == r["condition_present"] == 1.0  # the shape is detected, not the argmax, at WRONG
    counts = np.bincount(shape, minlength=len(SHAPES))
    assert r["chance"] == pytest.approx(1 / len(SHAPES)) and r["majority"] == pytest.approx(counts.max() / N)
    assert r["majority_shape"] == SHAPES[counts.argmax()]


def test_samples_of_other_conditions_agree_less(world):
    images, _, shape, codes = world
    shuffled = np.roll(images, 1, axis=0)  # sample i drawn from condition i - 1's shape
    r = shape_agreement(_StampReader(), shuffled, images, shape)
    assert r["agreement"] == pytest.approx(np.mean(np.roll(codes, 1) == shape))
    assert r["agreement"] < r["condition_accuracy"]
    ref = np.bincount(shape, minlength=len(SHAPES)) / N
    drawn = np.bincount(np.roll(codes, 1), minlength=len(SHAPES)) / N
    assert r["independent"] == pytest.approx(ref @ drawn)  # what samples that ignore the condition expect


def test_samples_of_one_shape_score_that_shapes_rate(world):
    images, _, shape, _ = world
    r = shape_agreement(_StampReader(), _stamp(images, np.zeros(N, int)), images, shape)
    assert r["agreement"] == pytest.approx(np.mean(shape == 0)) == r["independent"]


def test_a_real_classifier_scores_identical_samples_at_its_accuracy(world):
    from lumos.components.classifier import ShapesClassifier

    images, _, shape, _ = world
    torch.manual_seed(0)
    r = shape_agreement(ShapesClassifier(width=4, feature_dim=8).eval(), images.copy(), images, shape)
    assert r["agreement"] == r["condition_accuracy"] and 0 <= r["agreement"] <= 1


def test_mismatched_counts_are_an_error(world):
    images, _, shape, _ = world
    with pytest.raises(ValueError, match="one condition image and one shape per sample"):
        shape_agreement(_StampReader(), images[:-1], images, shape)
    with pytest.raises(ValueError, match="one condition image and one shape per sample"):
        shape_agreement(_StampReader(), images, images, shape[:-1])


def _sample_folder(folder, images):
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:06d}.png")


def test_the_command_pairs_sample_i_with_eval_image_i(tmp_path, world, monkeypatch, capsys):
    import lumos.components.classifier as classifier
    from lumos.cli import main
    from lumos.data.shards import write_split

    images, records, shape, codes = world
    write_split(tmp_path / "data", images, records, shard_size=8)  # three shards
    _sample_folder(tmp_path / "lumos_i2i", images[:12])
    _sample_folder(tmp_path / "untrained", _stamp(images[:12], np.zeros(12, int)))
    monkeypatch.setattr(classifier, "load_fid_net", lambda spec, device="cpu": _StampReader())
    main(["shape-agreement", "--samples", str(tmp_path / "lumos_i2i"), "--data", str(tmp_path / "data"),
          "--untrained", str(tmp_path / "untrained"), "--out", str(tmp_path / "r.json"), "--threads", "1"])
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["samples"]["n"] == r["untrained"]["n"] == 12
    assert r["samples"]["agreement"] == pytest.approx(np.mean(codes[:12] == shape[:12])) == 9 / 12  # WRONG: 3, 7, 11
    assert r["samples"]["agreement"] == r["samples"]["condition_accuracy"]
    assert r["untrained"]["agreement"] == pytest.approx(np.mean(shape[:12] == 0))
    assert capsys.readouterr().out.count("shape agreement") == 2
    main(["shape-agreement", "--samples", str(tmp_path / "lumos_i2i"), "--data", str(tmp_path / "data"),
          "--limit", "4", "--out", str(tmp_path / "r4.json")])
    assert json.loads((tmp_path / "r4.json").read_text())["samples"]["n"] == 4
    (tmp_path / "lumos_i2i" / "000003.png").unlink()  # samples no longer 0..n-1: no pairing to trust
    with pytest.raises(SystemExit, match="does not hold samples"):
        main(["shape-agreement", "--samples", str(tmp_path / "lumos_i2i"), "--data", str(tmp_path / "data")])
