"""Work split over parallel jobs (features per data shard, samples per batch) and gathered back
gives exactly what one job gives."""

import numpy as np
import torch

from lumos.components.encoders import build_tiny_vit
from lumos.components.vae import LatentCodec, build_tiny_vae
from lumos.features import extract_features, gather_parts, read_features
from lumos.models import LumosDiT
from lumos.sample import gather_pngs, generate, read_pngs


def _components(tmp_path):
    torch.manual_seed(0)
    vae = build_tiny_vae(32, 4, [8, 8, 8])
    vae.register_to_config(scaling_factor=1.0)
    vae.save_pretrained(tmp_path / "vae")
    build_tiny_vit(32, {"patch_size": 8, "hidden_size": 16, "layers": 1, "heads": 2}).save_pretrained(tmp_path / "dino")
    return {"vae": {"pretrained": str(tmp_path / "vae")},
            "dino": {"pretrained": str(tmp_path / "dino"), "input_size": 32}}


def test_feature_parts_gather_to_the_single_job_result(tmp_path, small_split):
    folder, images, _ = small_split  # 96 images in shards of 40: 3 data shards
    comps = _components(tmp_path)
    extract_features(str(folder), str(tmp_path / "one"), comps, ["dino"], batch_size=16)
    for part in range(2):
        extract_features(str(folder), str(tmp_path / f"p{part}"), comps, ["dino"], batch_size=16, part=part, parts=2)
    meta = gather_parts([str(tmp_path / "p0"), str(tmp_path / "p1")], str(tmp_path / "joined"))
    assert meta["shards"] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    keys = ["latents", "dino_cls", "labels"]
    one, joined = read_features(str(tmp_path / "one"), keys), read_features(str(tmp_path / "joined"), keys)
    for k in keys:
        np.testing.assert_array_equal(one[k], joined[k])  # same numbers, same order
    assert len(joined["latents"]) == len(images)


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
