"""Aesthetic scores computed by a model for sources that ship none: the LAION improved aesthetic
predictor's head, the scorer against a hand computation, scoring jobs that read what curation
jobs read, curation filtering on their files, and clear errors for missing weights and config."""

import io
import json
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lumos.components.aesthetic import CLIP_MEAN, CLIP_STD, AestheticHead, AestheticScorer
from lumos.components.loading import MissingWeightsError
from lumos.config import ConfigError
from lumos.data.aesthetic_scores import load_scores, score_part
from lumos.data.curate import curate_part
from lumos.data.shards import read_records
from lumos.data.sources import Source, split_sources


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny random CLIPModel (32 px, 16-d projection) saved as a folder, and a random head
    saved with torch.save: the spec of an `aesthetic.model` block."""
    from lumos.components.text import build_tiny_clip

    out = tmp_path_factory.mktemp("aesthetic")
    torch.manual_seed(0)
    clip = build_tiny_clip(50, 32, {"hidden_size": 32, "layers": 1, "heads": 2, "projection_dim": 16,
                                    "patch_size": 8, "max_length": 16})
    clip.save_pretrained(out / "clip")
    head = AestheticHead(16)
    torch.save(head.state_dict(), out / "head.pth")
    return {"clip": str(out / "clip"), "head": str(out / "head.pth")}


def _png(size, seed) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_head_keys_are_the_released_ones_and_it_gives_one_score_per_row():
    head = AestheticHead()
    assert set(head.state_dict()) == {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}
    assert head.layers[0].in_features == 768
    assert head.eval()(torch.randn(5, 768)).shape == (5, 1)


def test_scorer_equals_the_hand_computation(model, tmp_path):
    """Image tower -> visual projection -> L2 normalise -> head, with OpenAI CLIP's mean/std; PIL
    images and arrays alike; the head from .safetensors too."""
    from safetensors.torch import save_file
    from transformers import CLIPModel

    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    scorer = AestheticScorer(model)
    got = scorer.scores(list(images))
    assert got.dtype == np.float32 and got.shape == (6,)

    clip = CLIPModel.from_pretrained(model["clip"]).eval()
    head = AestheticHead(16)
    head.load_state_dict(torch.load(model["head"], weights_only=True))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        emb = F.normalize(clip.visual_projection(clip.vision_model(pixel_values=x).pooler_output), dim=-1)
        want = head.eval()(emb).squeeze(1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(scorer.scores([Image.fromarray(im) for im in images]), got, atol=1e-6)

    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    again = AestheticScorer({**model, "head": str(tmp_path / "head.safetensors")}).scores(list(images))
    np.testing.assert_allclose(again, got, atol=1e-6)
    wide = Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    assert scorer.fit(wide).shape == (32, 32, 3)  # shorter side to 32, centre crop
    assert scorer.scores([]).shape == (0,)


def _sources(tmp_path, spec, min_score):
    """A webdataset source scored by its metadata (2 shards) and a folder source scored by the
    model (14 images in units of 3 files, one corrupt)."""
    wds = tmp_path / "laion"
    wds.mkdir()
    for s in range(2):
        with tarfile.open(wds / f"{s:05d}.tar", "w") as tar:
            for i in range(3):
                for ext, data in (("png", _png((40, 40), 100 + 3 * s + i)), ("txt", b"a thing"),
                                  ("json", json.dumps({"aesthetic": 4.0 + 2 * (i % 2)}).encode())):
                    info = tarfile.TarInfo(f"{i:09d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    folder = tmp_path / "sam"
    folder.mkdir()
    for i in range(13):
        (folder / f"{i:02d}.png").write_bytes(_png((36 + 3 * i, 40 + 2 * (i % 4)), i))
    (folder / "07b.png").write_bytes(b"not an image")  # the 9th file: unit 2
    return [Source("laion", str(wds), format="webdataset", aesthetic={"key": "aesthetic", "min": 5.0}),
            Source("sam", str(folder), aesthetic={"min": min_score, "model": spec})]


def test_scoring_jobs_read_what_curation_jobs_read_and_curation_filters_on_them(model, tmp_path):
    """parts=2: scoring job k writes exactly the keys curation job k reads from the model-scored
    source (the unreadable file left out: curation counts it as such); curation with min = the median score
    keeps exactly the images above it and counts the rest as low_aesthetic."""
    sources = _sources(tmp_path, model, -1e9)
    files = [str(tmp_path / f"scores.part{k}.jsonl") for k in range(2)]
    counts = [score_part("pool", sources, files[k], k, 2, files_per_unit=3, batch_size=4, workers=2)
              for k in range(2)]
    scores = [load_scores(f) for f in files]
    assert not set(scores[0]) & set(scores[1])
    assert set(scores[0]) | set(scores[1]) == {f"sam/{i:02d}.png" for i in range(13)}
    assert sorted(c["scored"] for c in counts) == [6, 7] and sum(c.get("unreadable", 0) for c in counts) == 1
    for k in range(2):  # keep everything: every item curation reads has a score, none is missing
        report = curate_part("pool", sources, 100, 16, 100, str(tmp_path / f"all{k}"), k, 2, files_per_unit=3,
                             scores=files[k])
        sam = report["by_source"]["sam"]
        assert sam == {"seen": len(scores[k]) + k, "kept": len(scores[k]), **({"not_an_image": 1} if k else {})}
        assert {r["key"] for r in read_records(tmp_path / f"all{k}") if r["source"] == "sam"} == set(scores[k])

    median = float(np.median([s for part in scores for s in part.values()]))
    sources[1] = replace(sources[1], aesthetic={"min": median, "model": model})
    kept = low = 0
    for k in range(2):
        report = curate_part("pool", sources, 100, 16, 100, str(tmp_path / f"cut{k}"), k, 2, files_per_unit=3,
                             scores=files[k])
        records = [r for r in read_records(tmp_path / f"cut{k}") if r["source"] == "sam"]
        assert {r["key"] for r in records} == {key for key, s in scores[k].items() if s > median}
        assert all(r["aesthetic"] == scores[k][r["key"]] for r in records)
        sam = report["by_source"]["sam"]
        assert sam.get("low_aesthetic", 0) == sum(s <= median for s in scores[k].values())
        assert report["by_source"]["laion"] == {"seen": 3, "kept": 1, "low_aesthetic": 2}  # metadata scores
        kept, low = kept + sam["kept"], low + sam.get("low_aesthetic", 0)
    assert kept > 0 and low > 0 and kept + low == 13


def test_curation_needs_the_scores_and_counts_missing_keys(model, tmp_path):
    sources = _sources(tmp_path, model, 0.0)
    with pytest.raises(ValueError, match="scores file"):
        curate_part("pool", sources, 100, 16, 100, str(tmp_path / "x"))
    (tmp_path / "empty.jsonl").write_text("")
    report = curate_part("pool", sources, 100, 16, 100, str(tmp_path / "y"), scores=str(tmp_path / "empty.jsonl"))
    assert report["by_source"]["sam"] == {"seen": 14, "no_aesthetic_score": 13, "not_an_image": 1}


def test_missing_weights_name_the_config_key(model, tmp_path):
    sources = _sources(tmp_path, {**model, "head": str(tmp_path / "absent.pth")}, 5.0)
    with pytest.raises(MissingWeightsError, match=r"data\.sources\.pool\.1\.aesthetic\.model\.head"):
        score_part("pool", sources, str(tmp_path / "s.jsonl"))
    sources[1] = replace(sources[1], aesthetic={"min": 5.0, "model": {**model, "clip": str(tmp_path / "absent_clip")}})
    with pytest.raises(MissingWeightsError, match=r"data\.sources\.pool\.1\.aesthetic\.model\.clip"):
        score_part("pool", sources, str(tmp_path / "s.jsonl"))


@pytest.mark.parametrize("aesthetic, match", [
    ({"min": 5.0, "key": "aesthetic", "model": {"clip": "c", "head": "h"}}, "got both"),
    ({"min": 5.0}, "got neither"),
])
def test_aesthetic_takes_exactly_one_of_key_and_model(aesthetic, match):
    cfg = {"data.sources.pool": [{"name": "laion", "path": "/x"},
                                 {"name": "sam", "path": "/y", "aesthetic": aesthetic}]}
    with pytest.raises(ConfigError, match=rf"data\.sources\.pool\.1\.aesthetic'.*{match}"):
        split_sources(cfg, "pool")


def test_model_block_is_checked_by_the_schema():
    ok = {"data.sources.pool": [{"name": "sam", "path": "/y",
                                 "aesthetic": {"min": 5.0, "model": {"clip": "openai/clip-vit-large-patch14",
                                                                     "head": "/w/head.pth"}}}]}
    assert split_sources(ok, "pool")[0].aesthetic["model"]["head"] == "/w/head.pth"
    bad = {"data.sources.pool": [{"name": "sam", "path": "/y", "aesthetic": {"min": 5.0, "model": {"clip": "c"}}}]}
    with pytest.raises(ConfigError, match=r"data\.sources\.pool\.0\.aesthetic\.model\.head"):
        split_sources(bad, "pool")
