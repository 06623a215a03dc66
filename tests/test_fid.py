"""FID through clean-fid with the DAG's own feature network."""

import numpy as np
import pytest
import torch
from PIL import Image

from lumos.components.classifier import ShapesClassifier
from lumos.data.worlds.shapes import generate_split
from lumos.eval import fid


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fid_net") / "net"
    ShapesClassifier(width=8, feature_dim=16).save_pretrained(folder)
    return fid.load_extractor("fid_net", {"pretrained": str(folder)})


def test_fid_jobs_read_the_trunk_without_diffusers(tmp_path):
    """An FID job loads the classifier's trunk straight from its safetensors (importing diffusers
    was about 2 s of a 5 s job): the same features as the diffusers model, no diffusers or
    transformers imported; other layouts go through the model's from_pretrained."""
    import subprocess
    import sys

    from lumos.components.loading import MissingWeightsError

    torch.manual_seed(0)
    net = ShapesClassifier(width=8, feature_dim=16)
    for m in net.modules():  # trained-looking BatchNorm statistics, so a dropped buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    net.save_pretrained(tmp_path / "net")
    net.save_pretrained(tmp_path / "bin", safe_serialization=False)
    images = torch.from_numpy(generate_split(8, seed=4)[0]).permute(0, 3, 1, 2).float()
    expected = net.eval().features(images / 127.5 - 1).detach()
    for folder in ("net", "bin"):
        feats = fid.load_extractor("fid_net", {"pretrained": str(tmp_path / folder)}).model(images)
        torch.testing.assert_close(feats, expected, rtol=0, atol=0)
    code = ("import sys; from lumos.eval.fid import load_extractor; load_extractor('fid_net', {'pretrained': sys.argv[1]});"
            " print([m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers')])")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "net")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    with pytest.raises(MissingWeightsError, match="components.fid_net.pretrained"):
        fid.load_extractor("fid_net", {"pretrained": str(tmp_path / "missing")})


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
    # read in chunks of one 4-image batch (the progress bar's steps): the same features
    np.testing.assert_allclose(fid.folder_features(tmp_path, extractor, batch_size=4, chunk_batches=1),
                               fid.array_features(images, extractor), rtol=1e-5, atol=1e-5)


def test_statistics_round_trip_and_missing_file(tmp_path):
    stats = fid.statistics(np.random.default_rng(0).normal(size=(50, 4)))
    fid.save_statistics(tmp_path / "ref.npz", stats)
    back = fid.load_statistics(tmp_path / "ref.npz")
    np.testing.assert_array_equal(back["sigma"], stats["sigma"])
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        fid.load_statistics(tmp_path / "missing.npz")


@pytest.mark.parametrize("path, message", [
    (None, "config key 'eval.inception' is not set"),
    ("{tmp}/inception-2015-12-05.pt", "does not exist.*'eval.inception'"),
    ("{tmp}/inception.pt", "must name clean-fid's 'inception-2015-12-05.pt'"),
])
def test_inception_missing_is_a_clear_error(tmp_path, path, message):
    with pytest.raises(FileNotFoundError, match=message):
        fid.load_extractor("inception", None, inception=path and path.format(tmp=tmp_path))


def test_inception_fid_runs_from_the_configured_file_offline(small_split, inception_standin, tmp_path):
    """With TMPDIR elsewhere (SLURM sites set one per job) and no network, `lumos fid-reference`
    and `lumos fid` read Inception from `eval.inception`: clean-fid's /tmp copy and download are
    never consulted (a download attempt would fail: nothing here reaches the network)."""
    import json
    import os
    import subprocess
    import sys

    data, images, _ = small_split
    cfg = json.dumps({"eval.fid_extractor": "inception", "eval.inception": str(inception_standin),
                      "eval.batch_size": 16})
    env = {**os.environ, "TMPDIR": str(tmp_path / "job_tmp")}
    (tmp_path / "job_tmp").mkdir()
    lumos = [sys.executable, "-m", "lumos.cli"]
    ref = tmp_path / "ref.npz"
    subprocess.run([*lumos, "fid-reference", "--cfg", cfg, "--threads", "1", "--data", str(data), "--out", str(ref)],
                   check=True, env=env)
    stats = fid.load_statistics(ref)
    assert stats["mu"].shape == (2048,) and int(stats["n"]) == len(images)
    proc = subprocess.run([*lumos, "fid", "--cfg", cfg, "--threads", "1", "--run", "r", "--split", "pool", "--data",
                           str(data), "--reference", str(ref), "--out", str(tmp_path / "fid.json")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "fid.json").read_text())
    assert result["extractor"] == fid.INCEPTION_NAME and abs(result["fid"]) < 1e-2  # the split against itself (rank-deficient covariances: sqrtm noise)


@pytest.mark.parametrize("a, b, input_size, ok", [
    ((32, 32), (32, 32), None, True),
    ((64, 64), (32, 32), None, False),  # a native-size network needs equal sizes
    ((256, 256), (256, 256), 299, True),
    ((1024, 1024), (299, 299), 299, True),  # both only scaled down to 299
    ((1024, 1024), (512, 512), 299, True),
    ((1024, 1024), (256, 256), 299, False),  # the reference would be upscaled, the samples downscaled
    ((768, 1024), (512, 512), 299, False),  # another aspect ratio: squashed differently
])
def test_comparable_sizes(a, b, input_size, ok):
    assert fid.comparable(a, b, input_size) is ok
    assert fid.comparable(b, a, input_size) is ok


def _fid_args(cfg, samples, reference, out):
    return ["fid", "--cfg", cfg, "--threads", "1", "--run", "r", "--split", "pool", "--samples", str(samples),
            "--reference", str(reference), "--out", str(out)]


def test_fid_command_checks_sample_size_against_the_reference(small_split, tmp_path, capsys):
    """`lumos fid-reference` records the reference images' size; `lumos fid` stops on samples of
    another size, naming both, and records the sizes it compared."""
    import json

    from lumos.cli import main

    data, images, _ = small_split
    torch.manual_seed(0)
    net = tmp_path / "net"
    ShapesClassifier(width=8, feature_dim=16).save_pretrained(net)
    cfg = json.dumps({"eval.fid_extractor": "fid_net", "eval.batch_size": 50, "components.fid_net": {"pretrained": str(net)}})
    ref = tmp_path / "ref.npz"
    main(["fid-reference", "--cfg", cfg, "--threads", "1", "--data", str(data), "--out", str(ref)])
    assert fid.load_statistics(ref)["image_size"].tolist() == [32, 32]
    for size in (32, 48):
        (tmp_path / f"samples{size}").mkdir()
        for i, img in enumerate(images[:20]):
            Image.fromarray(img).resize((size, size)).save(tmp_path / f"samples{size}" / f"{i:06d}.png")
    main(_fid_args(cfg, tmp_path / "samples32", ref, tmp_path / "fid.json"))
    result = json.loads((tmp_path / "fid.json").read_text())
    assert result["image_sizes"] == [[32, 32]] and result["reference_image_size"] == [32, 32]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(_fid_args(cfg, tmp_path / "samples48", ref, tmp_path / "fid48.json"))
    err = capsys.readouterr().err
    assert "48x48" in err and "32x32" in err and "same size" in err
    assert not (tmp_path / "fid48.json").exists()


def test_inception_sizes_1024_samples_need_a_reference_of_at_least_299():
    """The released T2I row's case: 1024 px samples against a 256 px reference stop (clean-fid
    would upscale one side and downscale the other); against 299 px they pass. Statistics that do
    not record a size (older files) are not checked."""
    inception = fid.Extractor(None, None, "inception-v3 (clean-fid, clean mode)", "cpu", fid.INCEPTION_SIZE)
    samples = {(1024, 1024): "000000.png"}
    with pytest.raises(ValueError, match=r"1024x1024 px .* 256x256 px: .* at least 299 px"):
        fid.check_comparable(samples, {"image_size": np.array([256, 256])}, inception, "reference_coco.npz")
    fid.check_comparable(samples, {"image_size": np.array([299, 299])}, inception)
    fid.check_comparable(samples, {"mu": np.zeros(2)}, inception)


def test_low_rank_frechet_distance_equals_clean_fids():
    """With fewer images than feature dimensions (the stand-in paper run: 8 images, 2048-d), FID's
    trace term comes from the n x n matrix F sigma_b F^T: clean-fid's value to 1e-6 relative."""
    from cleanfid.fid import frechet_distance as clean

    rng = np.random.default_rng(0)
    a = fid.statistics(rng.normal(size=(12, 64)))
    b = fid.statistics(rng.normal(0.3, 1.2, size=(80, 64)))
    assert "factor" in a and "factor" not in b
    expected = clean(a["mu"], a["sigma"], b["mu"], b["sigma"])
    assert fid.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)
    c = fid.statistics(rng.normal(size=(9, 64)))
    assert fid.frechet_distance(a, c) == pytest.approx(clean(a["mu"], a["sigma"], c["mu"], c["sigma"]), rel=1e-6)
