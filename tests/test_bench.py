"""The FLOP count behind the GPU benchmark's MFU, and the benchmark's code path on CPU."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lumos.bench_gpu import counted_forward_flops, dit_forward_flops
from lumos.models import LumosDiT


def test_dit_xl2_forward_flops_match_the_dit_paper():
    """DiT-XL/2 at 256 px without a condition path: 118.6 GMACs per the DiT paper, ~237 GFLOP."""
    model_cfg = LumosDiT.from_size("DiT-XL/2", sample_size=32, injection="none").config
    assert dit_forward_flops(model_cfg) / 1e9 == pytest.approx(237.2, abs=0.1)


@pytest.mark.parametrize("injection,tokens,width,padded", [
    ("cross_attn", 1, 64, 0), ("cross_attn", 12, 48, 4), ("adaln", 1, 64, 0), ("none", 0, 64, 0)])
def test_analytic_flops_equal_torch_flop_counter(injection, tokens, width, padded):
    """Every matrix product is counted: the formula equals FlopCounterMode exactly (the math SDPA
    backend decomposes attention into counted matmuls)."""
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=8, injection=injection, cond_dim=width,
                               max_cond_tokens=max(tokens, 1)).eval()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    cond = mask = None
    if injection == "cross_attn":
        cond = torch.randn(2, tokens, width)
        mask = torch.ones(2, tokens, dtype=torch.bool)
        if padded:
            mask[:, -padded:] = False
    elif injection == "adaln":
        cond = torch.randn(2, width)
    with sdpa_kernel(SDPBackend.MATH):
        counted = counted_forward_flops(model, x, t, cond, mask)
    assert counted == dit_forward_flops(model.config, tokens)


def test_gpu_benchmark_runs_on_cpu(capsys):
    """`lumos bench --gpu` on a tiny DiT on CPU: every line prints with a positive throughput."""
    from lumos.cli import main

    main(["bench", "--gpu", "--device", "cpu", "--size", "DiT-N/2", "--steps", "1", "--batch", "2",
          "--sample-batch", "2", "--quick"])
    out = capsys.readouterr().out
    train = next(line for line in out.splitlines() if line.startswith("train "))
    sample = next(line for line in out.splitlines() if line.startswith("sample "))
    assert float(train.split(" img/s")[0].split()[-1]) > 0
    assert float(sample.split(" img/s")[0].split()[-1]) > 0
