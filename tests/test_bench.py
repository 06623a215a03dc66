"""The FLOP count behind the GPU benchmark's MFU, and the benchmark's code path on CPU."""

import re

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lumos.bench.gpu import counted_forward_flops, dit_forward_flops
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


def test_gpu_benchmark_refuses_without_cuda(monkeypatch):
    """Without CUDA, `lumos bench --gpu` stops at once (exit status 1) saying CUDA is needed and
    which command benchmarks the CPU instead; it does not start DiT-XL/2 on the CPU."""
    from lumos.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--gpu", "--variants", "bf16,all"])
    message = str(exit_.value.code)
    assert exit_.value.code not in (0, None)
    assert "needs a CUDA GPU" in message and "`lumos bench`" in message and "`lumos bench --data`" in message


def test_parse_variants():
    """Every variant but baseline is bf16 plus its switches; + combines; `all` is the presets' set."""
    from lumos.bench.gpu import Variant, parse_variants

    got = dict(parse_variants("baseline, bf16,sdpa-cudnn,compile+fused-adamw,step-sync,all"))
    assert got["baseline"] == Variant(bf16=False)
    assert got["bf16"] == Variant()
    assert got["sdpa-cudnn"] == Variant(attention="cudnn")
    assert got["compile+fused-adamw"] == Variant(compile=True, fused_adamw=True)
    assert got["step-sync"] == Variant(step_sync=True)
    assert got["all"] == Variant(attention="flash", compile=True, fused_adamw=True)
    with pytest.raises(ValueError, match="unknown benchmark variant 'flash'.*sdpa-flash"):
        parse_variants("bf16,flash")


def test_flops_per_image_of_the_benchmarked_models():
    """The FLOP counts behind MFU: DiT-XL/2 with one 768-d DINO CLS token read by cross-attention
    at 256 px (docs/benchmarks.md: 275.5 GFLOP forward, 826.4 per trained image), and the gpu preset's
    DiT-T/2 on its factor-2 VAE's 16x16 latents with the tiny DINO's 64-d CLS, checked against
    FlopCounterMode on a real forward."""
    from lumos.config import load_config

    with torch.device("meta"):  # the config only: no 825M weights to initialise
        xl = LumosDiT.from_size("DiT-XL/2", sample_size=32, cond_dim=768, max_cond_tokens=1).config
    assert dit_forward_flops(xl, 1) / 1e9 == pytest.approx(275.48, abs=0.01)
    gpu = load_config("gpu")
    latent = gpu["data"]["image_size"] // 2 ** (len(gpu["components"]["vae"]["train"]["block_out_channels"]) - 1)
    width = gpu["components"]["dino"]["train"]["hidden_size"]
    model = LumosDiT.from_size(gpu["pretrain"]["model"]["size"], sample_size=latent, cond_dim=width, max_cond_tokens=1)
    x, t = torch.randn(2, 4, latent, latent), torch.tensor([1, 500])
    with sdpa_kernel(SDPBackend.MATH):
        cond, mask = torch.randn(2, 1, width), torch.ones(2, 1, dtype=torch.bool)
        counted = counted_forward_flops(model.eval(), x, t, cond, mask)
    assert (latent, width) == (16, 64)
    assert counted == dit_forward_flops(model.config, 1) and counted / 1e9 == pytest.approx(0.128, abs=0.001)


def test_gpu_benchmark_variants_run_on_cpu(capsys, monkeypatch):
    """`--variants` on a tiny DiT on the CPU (torch.compile with the aot_eager backend): one line
    per variant, the FLOPs per trained image stated, and a table with every variant."""
    import lumos.training.loop
    from lumos.cli import main

    monkeypatch.setattr(lumos.training.loop, "COMPILE_BACKEND", "aot_eager")
    variants = "baseline,bf16,sdpa-math,compile,fused-adamw,step-sync,all"
    main(["bench", "--gpu", "--device", "cpu", "--size", "DiT-N/2", "--latent-size", "8", "--cond-dim", "16",
          "--batch", "4", "--steps", "1", "--variants", variants])
    out = capsys.readouterr().out
    assert "GFLOP/image analytic" in out and "training step = 3 forwards" in out
    lines = [line for line in out.splitlines() if line.startswith("train variant ")]
    assert [line.split()[2].rstrip(":") for line in lines] == variants.split(",")
    assert all(float(line.split(" img/s")[0].split()[-1]) > 0 for line in lines)
    table = [line for line in out.splitlines() if line.startswith("| ") and "GFLOP per trained image" not in line]
    assert [row.split("|")[1].strip() for row in table[1:]] == variants.split(",")


def test_cpu_benchmark_quick_mode_prints_every_line(capsys):
    """`lumos bench --quick` (the CPU benchmark's smoke check): both training lines and both
    samplers print positive throughputs."""
    from lumos.cli import main

    main(["bench", "--quick"])
    out = capsys.readouterr().out
    assert out.startswith("# lumos bench: torch ") and "batch 8" in out.splitlines()[0]
    for name in ("DiT-T/2", "DiT-S/2"):
        line = next(line for line in out.splitlines() if line.startswith(f"train {name}"))
        cached, online = (float(v) for v in re.findall(r"([0-9.]+) img/s", line))
        assert cached > 0 and online > 0 and re.search(r"caching speed-up x[0-9.]+$", line)
    for sampler in ("ddpm   25 steps", "dpm++   2 steps"):
        line = next(line for line in out.splitlines() if line.startswith(f"sample DiT-T/2 {sampler}"))
        assert float(re.search(r"([0-9.]+) img/s", line).group(1)) > 0


def test_data_benchmark_quick_prints_the_jpeg_curation_lines(tmp_path, capsys, monkeypatch):
    """`lumos bench --data --quick`: 8 realistic JPEGs; a line per path with its images per
    CPU-second and ratio to the plain Pillow loop, the curation job (`lumos data` with the --cfg the
    workflow passes: data.curation.* keys) and the output tolerance, met. Structure, not timings."""
    import json
    import re

    from lumos.cli import main

    monkeypatch.setenv("LUMOS_NO_PROGRESS", "1")
    main(["bench", "--data", "--quick", "--work", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# lumos bench --data --jpeg: 8 realistic JPEGs (") and "-> 256 px" in lines[0]
    rates = {}
    for line in lines:
        m = re.match(r"(.+?)\s+([\d.]+) images/CPU-s\s+([\d.]+)x plain", line)
        if m:
            rates[m[1]] = (float(m[2]), float(m[3]))
    assert [label.split(" (")[0] for label in rates] == [
        "plain Pillow loop", "old curation path", "new curation path", "curate_part, min_side 0",
        "curate_part, min_side 512", "one curation job"]
    assert all(rate > 0 and ratio > 0 for rate, ratio in rates.values())
    assert next(iter(rates.values()))[1] == 1.0
    tolerance = next(line for line in lines if line.startswith("output vs old path: mean abs diff"))
    assert re.search(r"of 255; tolerance mean <= 1.0, image <= 2.0, max <= 64: met \(", tolerance)
    assert json.loads((tmp_path / "job" / "curation.json").read_text())["totals"] == {"seen": 8, "kept": 8}
    assert json.loads((tmp_path / "curate_min512" / "curation.json").read_text())["totals"]["too_small"] >= 1


def test_plan_benchmark_times_a_dry_run(capsys):
    """`lumos bench --plan` dry-runs a DAG and prints its job count, CPU and wall seconds."""
    from conftest import ROOT

    from lumos.cli import main

    main(["bench", "--plan", "--configfile", str(ROOT / "config" / "smoke.yaml"), "--targets",
          "results/table1.csv", "--repeats", "1"])
    out = capsys.readouterr().out
    m = re.search(r"best of 1: ([\d.]+) CPU-s, ([\d.]+) s wall for (\d+) jobs", out)
    assert m, out
    cpu, wall, jobs = float(m.group(1)), float(m.group(2)), int(m.group(3))
    assert jobs > 20 and 0 < cpu and 0 < wall, out


def test_planning_reads_no_signature_and_formats_each_command_once(tmp_path):
    """Planning work per job, counted in a dry run of the smoke Table 1 with its jobs printed (where
    resources are evaluated and shell commands formatted), so planning does not slow down more than
    it must with every job added:
    - Snakemake reads the signature of every input, params, resources and priority function it calls,
      once per job (`get_function_params`), unless told the parameters (`read_signatures_once`,
      rules/common.smk): none is read per job;
    - `Job.log_info` formats a job's shell command three times unless `format_shell_commands_once`
      hands it one: each job's is formatted once.
    Fails if a Snakemake upgrade drops either hook or a new rule's function escapes the first."""
    import subprocess
    import sys

    from conftest import ROOT

    counter = (
        "import atexit, collections, inspect, sys\n"
        "import snakemake.common, snakemake.jobs\n"
        "assert snakemake.common.get_function_params.__code__.co_name == 'get_function_params'  # the frame seen\n"
        "calls = []\n"
        "real = inspect.signature\n"
        "def counted(obj, *a, **k):\n"
        "    if sys._getframe(1).f_code.co_name == 'get_function_params':\n"
        "        code = getattr(obj, '__code__', None)\n"
        "        calls.append(f'{code.co_filename}:{code.co_firstlineno}' if code else repr(obj))\n"
        "    return real(obj, *a, **k)\n"
        "inspect.signature = counted\n"
        "formats = collections.Counter()\n"
        "real_format = snakemake.jobs.Job.format_wildcards\n"
        "def format_counted(job, string, **k):\n"
        "    if string is not None and string == job.rule.shellcmd:\n"
        "        formats[id(job)] += 1\n"
        "    return real_format(job, string, **k)\n"
        "snakemake.jobs.Job.format_wildcards = format_counted\n"
        "atexit.register(lambda: print('SIGNATURES', len(calls), sorted(set(calls))[:5], file=sys.stderr))\n"
        "atexit.register(lambda: print('FORMATS', len(formats), sorted(collections.Counter(formats.values()).items()),"
        " file=sys.stderr))\n"
        "from snakemake.cli import main\n"
        "sys.argv = ['snakemake'] + sys.argv[1:]\n"
        "main()\n"
    )
    args = ["-n", "results/table1.csv", "--snakefile", str(ROOT / "Snakefile"),
            "--configfile", str(ROOT / "config" / "smoke.yaml"), "--directory", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-c", counter, *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = int(re.search(r"^total\s+(\d+)$", proc.stdout, re.M).group(1))
    assert jobs > 20 and "resources:" in proc.stdout, proc.stdout[-2000:]
    assert "SIGNATURES 0 []" in proc.stderr, proc.stderr[-2000:]
    # jobs whose command was formatted, [(times, jobs)]: every job of Table 1 runs a shell command,
    # each formatted once (three times without the hook)
    assert f"FORMATS {jobs} [(1, {jobs})]" in proc.stderr, proc.stderr[-2000:]
