"""Work split over parallel jobs (features per data shard, samples per batch) and gathered back
gives exactly what one job gives."""

import numpy as np
import pytest
import torch

from lumos.components.encoders import build_tiny_vit
from lumos.components.vae import LatentCodec, build_tiny_vae
from lumos.data.subsets import subset_values
from lumos.features import extract_features, read_features, scene_labels
from lumos.models import LumosDiT
from lumos.sample import generate, read_pngs
from lumos.store import gather_parts
from lumos.utils import gather_pngs


def _components(tmp_path):
    torch.manual_seed(0)
    vae = build_tiny_vae(32, 4, [8, 8, 8])
    vae.register_to_config(scaling_factor=1.0)
    vae.save_pretrained(tmp_path / "vae")
    build_tiny_vit(32, {"patch_size": 8, "hidden_size": 16, "layers": 1, "heads": 2}).save_pretrained(tmp_path / "dino")
    return {"vae": {"pretrained": str(tmp_path / "vae")},
            "dino": {"pretrained": str(tmp_path / "dino"), "input_size": 32}}


def test_feature_parts_gather_to_the_single_job_result(tmp_path, small_split):
    folder, images, records = small_split  # 96 images in shards of 40: 3 data shards
    comps = _components(tmp_path)
    extract_features(str(folder), str(tmp_path / "one"), comps, ["dino"], batch_size=16, seed=5)
    for part in range(2):
        extract_features(str(folder), str(tmp_path / f"p{part}"), comps, ["dino"], batch_size=16, part=part, parts=2,
                         seed=5)
    meta = gather_parts([str(tmp_path / "p0"), str(tmp_path / "p1")], str(tmp_path / "joined"))
    assert meta["shards"] == ["shard-00000", "shard-00001", "shard-00002"] and meta["shard_sizes"] == [40, 40, 16]
    keys = ["latents", "dino_cls", "labels", "subset_u"]
    one, joined = read_features(str(tmp_path / "one"), keys), read_features(str(tmp_path / "joined"), keys)
    for k in keys:
        np.testing.assert_array_equal(one[k], joined[k])  # same numbers, same order
    assert len(joined["latents"]) == len(images)
    np.testing.assert_array_equal(joined["labels"], scene_labels(records))  # per shard, from its own records
    keys = [r.get("key", str(r["index"])) for r in records]
    np.testing.assert_array_equal(joined["subset_u"], subset_values(keys, 5))
    shard = tmp_path / "joined" / "shard-00001"
    assert np.load(shard / "latents.npy", mmap_mode="r").dtype == np.float16  # memory-mappable fp16
    assert (shard / "latents.npy").stat().st_ino == (tmp_path / "p1" / "shard-00001" / "latents.npy").stat().st_ino
    with pytest.raises(ValueError, match="overlap"):
        gather_parts([str(tmp_path / "p0"), str(tmp_path / "one")], str(tmp_path / "twice"))


class _CharEncoder:
    """A stand-in text encoder: one token per character (code, index), right-padded to max_length."""

    max_length = 512  # longer than any Shapes caption: nothing is cut

    def __call__(self, captions):
        lengths = torch.tensor([min(len(c), self.max_length) for c in captions])
        mask = torch.arange(self.max_length)[None] < lengths[:, None]
        codes = torch.tensor([[ord(ch) for ch in c[: self.max_length].ljust(self.max_length)] for c in captions])
        tokens = torch.stack([codes.float(), torch.arange(self.max_length).float().expand_as(codes)], -1)
        return tokens + 0.5, mask  # the padding is not zero, as a real encoder's is not


def test_text_feature_parts_gather_to_the_single_job_result(tmp_path, small_split):
    """Each job reads only its shards' captions; the gather's width is the longest caption of any shard."""
    from lumos.features import _encode_captions

    folder, _, records = small_split
    enc = {"t5": _CharEncoder()}
    one = _encode_captions(str(folder), str(tmp_path / "one"), enc, ["t5"], 16, 0, 1)
    parts = [_encode_captions(str(folder), str(tmp_path / f"p{k}"), enc, ["t5"], 16, k, 2) for k in range(2)]
    meta = gather_parts([str(tmp_path / "p0"), str(tmp_path / "p1")], str(tmp_path / "joined"))
    longest = max(len(r[f"{kind}_caption"]) for r in records for kind in ("short", "long"))
    assert one["tokens"] == meta["tokens"] == {"t5": longest} and max(p["tokens"]["t5"] for p in parts) == longest
    keys = ["t5_short", "t5_short_mask", "t5_long", "t5_long_mask"]
    a, b = read_features(str(tmp_path / "one"), keys), read_features(str(tmp_path / "joined"), keys)
    assert all(np.array_equal(a[k], b[k]) for k in keys)
    lengths = np.array([len(r["long_caption"]) for r in records])
    np.testing.assert_array_equal(b["t5_long_mask"].sum(1), lengths)
    np.testing.assert_array_equal(b["t5_long"][1, : lengths[1], 0], [ord(c) + 0.5 for c in records[1]["long_caption"]])


def test_sample_parts_gather_to_the_single_job_result(tmp_path):
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="cross_attn", cond_dim=8, max_cond_tokens=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    codec = LatentCodec(build_tiny_vae(16, 4, [8, 8, 8]), 1.0)
    cond, mask = torch.randn(10, 1, 8), torch.ones(10, 1, dtype=torch.bool)
    cfg = {"sampler": "dpm++", "steps": 3, "guidance_scale": 2.0, "batch_size": 4}  # 3 batches
    generate(model, codec, cond, mask, (4, 4, 4), str(tmp_path / "one"), str(tmp_path / "w1"), cfg, seed=0)
    counts = [generate(model, codec, cond, mask, (4, 4, 4), str(tmp_path / f"p{k}"), str(tmp_path / f"w{k}p"), cfg,
                       seed=0, part=k, parts=2) for k in range(2)]
    assert counts == [6, 4]  # batches 0 and 2 vs batch 1
    assert gather_pngs([str(tmp_path / "p0"), str(tmp_path / "p1")], str(tmp_path / "joined")) == 10
    np.testing.assert_array_equal(read_pngs(str(tmp_path / "one")), read_pngs(str(tmp_path / "joined")))
