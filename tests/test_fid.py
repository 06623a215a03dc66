"""FID through clean-fid with the DAG's own feature network."""

import numpy as np
import pytest
import torch
from PIL import Image

from lumos.components.classifier import ShapesClassifier
from lumos.data.shapes import generate_split
from lumos.eval import fid


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fid_net") / "net"
    ShapesClassifier(width=8, feature_dim=16).save_pretrained(folder)
    return fid.load_extractor("fid_net", {"pretrained": str(folder)})


def test_fid_of_a_set_against_itself_is_zero(extractor):
    images, _ = generate_split(200, seed=1)
    stats = fid.statistics(fid.array_features(images, extractor))
    assert abs(fid.frechet_distance(stats, stats)) < 1e-6


def test_fid_orders_same_distribution_below_a_different_one(extractor):
    a, _ = generate_split(300, seed=1, split_id=1)
    b, _ = generate_split(300, seed=2, split_id=1)  # independent sample, same distribution
    noise = np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8)
    ref = fid.statistics(fid.array_features(a, extractor))
    same = fid.frechet_distance(fid.statistics(fid.array_features(b, extractor)), ref)
    other = fid.frechet_distance(fid.statistics(fid.array_features(noise, extractor)), ref)
    assert same < other / 10


def test_folder_features_equal_array_features(extractor, tmp_path):
    """PNG files read by clean-fid give the same features as the arrays they were written from."""
    images, _ = generate_split(20, seed=3)
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i:06d}.png")
    np.testing.assert_allclose(fid.folder_features(tmp_path, extractor), fid.array_features(images, extractor),
                               rtol=1e-5, atol=1e-5)


def test_statistics_round_trip_and_missing_file(tmp_path):
    stats = fid.statistics(np.random.default_rng(0).normal(size=(50, 4)))
    fid.save_statistics(tmp_path / "ref.npz", stats)
    back = fid.load_statistics(tmp_path / "ref.npz")
    np.testing.assert_array_equal(back["sigma"], stats["sigma"])
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        fid.load_statistics(tmp_path / "missing.npz")


def test_inception_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(fid.tempfile, "gettempdir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="inception-2015-12-05.pt"):
        fid.load_extractor("inception", None)
