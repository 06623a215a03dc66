"""Figure S7's interpolation: spherical paths between CLS tokens, shared noise, exact ends."""

import numpy as np
import torch

from lumos.components.vae import LatentCodec, build_tiny_vae
from lumos.diffusion.sampling import sample
from lumos.features import condition_tokens
from lumos.interpolate import choose_pairs, interpolation_conditions, sample_with_noise, slerp
from lumos.models import LumosDiT


def test_slerp_has_exact_ends_and_stays_on_the_sphere():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    ua, ub = a / a.norm(), b / b.norm()
    for t in (0.25, 0.5, 0.75):
        p = slerp(ua, ub, t)
        assert abs(float(p.norm()) - 1) < 1e-5  # unit vectors stay unit (tolerance 1e-5)
        angle = lambda x, y: torch.arccos((x @ y).clamp(-1, 1))  # noqa: E731
        assert abs(float(angle(ua, p) - t * angle(ua, ub))) < 1e-4  # constant angular speed
    mid = slerp(a, b, 0.5)  # norm interpolated linearly for raw (adaLN) vectors
    assert abs(float(mid.norm() - (a.norm() + b.norm()) / 2)) < 1e-4


def test_ends_of_the_strip_are_the_end_images_own_samples():
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="cross_attn", cond_dim=8, max_cond_tokens=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    codec = LatentCodec(build_tiny_vae(16, 4, [8, 8, 8]), 1.0)
    cls = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    cfg = {"sampler": "dpm++", "steps": 3, "guidance_scale": 2.0}
    cond = interpolation_conditions(cls[0], cls[1], [0.0, 0.5, 1.0], "cross_attn")
    strip = sample_with_noise(model, codec, cond, (4, 4, 4), cfg, seed=7)
    for end, row in ((0, 0), (1, 2)):  # the training condition of each end image, sampled on its own
        own, mask = condition_tokens({"dino_cls": cls[end : end + 1]}, "dino", "cls", "cross_attn")
        lat = sample(model, (1, 4, 4, 4), own, mask, sampler="dpm++", num_steps=3, guidance_scale=2.0,
                     generator=torch.Generator().manual_seed(7))
        assert np.array_equal(strip[row], codec.decode(lat)[0])
    assert not np.array_equal(strip[0], strip[2])  # the condition changes the image


def test_pairs_are_distinct_and_seeded():
    pairs = choose_pairs(20, 5, seed=3)
    flat = [i for p in pairs for i in p]
    assert len(set(flat)) == 10 and pairs == choose_pairs(20, 5, seed=3) and pairs != choose_pairs(20, 5, seed=4)
