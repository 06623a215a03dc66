"""The gpu preset (config/gpu.yaml) without a GPU: its DAG builds with its settings, its code path
runs on the CPU with the steps and sizes cut down on the command line, and each
training-efficiency switch (compile, fused_adamw, attention, nan_check_every) computes what the
plain eager step computes."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lumos.config import load_config
from lumos.models import LumosDiT
from lumos.training.loop import train_diffusion

ROOT = Path(__file__).resolve().parent.parent
GPU = str(ROOT / "config" / "gpu.yaml")
SHAPES_FIRST_SEEN = 576_000  # images at which the H100 sweep saw the first shapes (docs/findings.md)


def snakemake(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(cwd), *args], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def commands(out: str, word: str) -> list[dict]:
    """The `--cfg` of every printed shell command that runs `lumos <word>`."""
    lines = [line for line in out.splitlines()
             if line.startswith("Shell command:") and re.search(rf"(lumos|--) {word} ", line)]
    return [json.loads(re.search(r"--cfg '(.*?)' ", line).group(1)) for line in lines]


def test_gpu_preset_is_sized_for_shapes():
    """Each prior sees >= 10x the images at which shapes first appeared, on the factor-2 VAE's
    latents, with every efficiency switch on and bf16, on CUDA."""
    cfg = load_config("gpu")
    train = cfg["pretrain"]["train"]
    assert cfg["preset"] == "gpu" and cfg["device"] == "cuda"
    assert train["steps"] * train["batch_size"] >= 10 * SHAPES_FIRST_SEEN
    assert len(cfg["components"]["vae"]["train"]["block_out_channels"]) == 2  # one downsampling: 16x16 latents
    assert cfg["data"]["splits"]["pairs"]["n"] * 10 == cfg["data"]["splits"]["pool"]["n"]
    for block in (train, cfg["t2i"]["train"]):
        assert block["mixed_precision"] == "bf16" and block["compile"] and block["fused_adamw"]
        assert block["attention"] == "flash" and block["nan_check_every"] is None  # every log_every on a GPU
    paper = load_config("paper")
    for block in (paper["pretrain"]["train"], paper["t2i"]["train"], *(s["train"] for s in paper["t2i"]["stages"])):
        assert block["compile"] and block["fused_adamw"] and block["attention"] == "flash"


def test_gpu_table1_dry_run_shows_the_preset(tmp_path):
    """`snakemake -n results/table1.csv --configfile config/gpu.yaml`: every step with a device
    path gets cuda; the printed commands carry the preset's model, VAE, switches and sizes."""
    out = snakemake("-n", "-p", "results/table1.csv", "--configfile", GPU, cwd=tmp_path)
    for word in ("pretrain", "features", "sample", "fid", "fid-reference", "train-component"):
        cfgs = commands(out, word)
        assert cfgs and all(c["device"] == "cuda" and c["preset"] == "gpu" for c in cfgs), word
    (train,) = {json.dumps(c["pretrain.train"], sort_keys=True) for c in commands(out, "pretrain")}
    train = json.loads(train)
    assert (train["steps"], train["batch_size"], train["mixed_precision"]) == (24000, 256, "bf16")
    assert train["compile"] and train["fused_adamw"] and train["attention"] == "flash"
    assert all(c["pretrain.model"]["size"] == "DiT-T/2" for c in commands(out, "pretrain"))
    vae = [c for c in commands(out, "train-component") if "components.vae" in c]
    assert vae and vae[0]["components.vae"]["train"]["block_out_channels"] == [32, 64]
    assert "--n-samples 5000" in out
    pool = [c for c in commands(out, "data") if "data.splits.pool" in c]
    assert pool[0]["data.splits.pool"]["n"] == 60000


def test_gpu_everything_dry_run(tmp_path):
    """`snakemake -n all` and the figure targets build on the gpu preset; the T2I fine-tunes train
    with the switches on."""
    ablations = [f"results/{f}.png" for f in ("fig9", "fig10", "fig2c", "figS2", "figS3", "fig11b")]
    out = snakemake("-n", "-p", "all", "results/fig12.png", *ablations, "--configfile", GPU, cwd=tmp_path)
    finetunes = commands(out, "finetune")
    assert len(finetunes) == 26  # 15 + the 8 ablation priors' + Figure 11b's CLIP-text one + Figure G1's REPA / REG
    assert all(c["t2i.train"]["compile"] and c["t2i.train"]["steps"] == 4000 for c in finetunes)
    pretrain = commands(out, "pretrain")
    assert len(pretrain) >= 15  # 4 priors + Figure 2b's 3 pool subsets + the 8 ablation priors (+ Figure 12's)
    assert all(c["pretrain.snapshot_every"] == 4000 for c in pretrain)
    assert "rule ablation_figure:" in out or "localrule ablation_figure:" in out
    for target in ("table1", "table2", "table3", "figure", "table4", "table5", "fig2d"):
        assert f"rule {target}:" in out or f"localrule {target}:" in out, target
    nvs, i2v = commands(out, "nvs-train"), commands(out, "i2v-train")
    assert len(nvs) == 3 and all(c["nvs.train"]["steps"] == 8000 and c["nvs.train"]["compile"] for c in nvs)
    assert len(i2v) == 3 and all(c["i2v.train"]["batch_size"] == 32 for c in i2v)


CUT_DOWN = """\
# The gpu preset's code path on the CPU, sizes and steps cut down (the rest stays the preset's:
# factor-2 VAE, DiT-T/2, bf16, fused AdamW, flash attention, 2 loader workers). torch.compile is
# tested on its own below (inductor compiles for minutes on 2 cores); the nan check runs every
# 2 steps as on a GPU.
data:
  splits: {pool: {n: 512}, coco: {n: 64}, imagenet: {n: 64}, coco_ref: {n: 64}, imagenet_ref: {n: 64},
           classifier: {n: 512}, pairs: {n: 128}}
components:
  vae: {train: {steps: 20, batch_size: 32}}
  dino: {train: {steps: 10, batch_size: 32, hidden_size: 32, layers: 1, heads: 2, patch_size: 8, out_dim: 64}}
  moco: {train: {steps: 10, batch_size: 32, hidden_size: 32, layers: 1, heads: 2, patch_size: 8, out_dim: 32}}
  dino_small: {train: {steps: 4, batch_size: 32, hidden_size: 16, layers: 1, heads: 2, patch_size: 8, out_dim: 32}}
  dino_large: {train: {steps: 4, batch_size: 32, hidden_size: 48, layers: 1, heads: 2, patch_size: 8, out_dim: 32}}
  clip: {train: {steps: 4, batch_size: 32, hidden_size: 32, layers: 1, heads: 2, patch_size: 8, projection_dim: 32}}
  fid_net: {train: {steps: 20, batch_size: 64, width: 8, feature_dim: 16}}
features: {batch_size: 128}
pretrain:
  train: {steps: 9, batch_size: 16, warmup_steps: 2, checkpoint_every: 4, log_every: 3, compile: false,
          nan_check_every: 2}
  table1_beyond: []  # the paper's rows (REPA / REG: tests/test_guidance.py, the smoke Table 1)
sample: {steps: 4, batch_size: 64}
eval: {batch_size: 64, grid_images: 8}
"""


@pytest.mark.slow
def test_gpu_preset_code_path_runs_on_the_cpu(tmp_path):
    """Two Table 1 cells of the gpu preset on the CPU (Lumos-I2I on COCO, RCG on ImageNet;
    `--config device=cpu` and the sizes and steps of an extra --configfile: Snakemake reads nested
    --config values as strings): every rule of a cell runs, the priors train with bf16 autocast,
    fused AdamW, flash attention and loader workers. (The table itself is the smoke preset's code.)"""
    cut = tmp_path / "cut.yaml"
    cut.write_text(CUT_DOWN)
    cells = ("results/eval/fid/lumos_i2i_coco.json", "results/eval/fid/rcg_imagenet.json")
    snakemake(*cells, "--configfile", GPU, str(cut), "--config", "device=cpu", "--cores", "2", cwd=tmp_path)
    for cell in cells:
        fid = json.loads((tmp_path / cell).read_text())
        assert fid["fid"] > 0 and fid["n_samples"] == 64, fid
    for run in ("lumos_i2i", "rcg"):
        summary = json.loads((tmp_path / "results" / "pretrain" / run / "train_summary.json").read_text())
        assert summary["steps"] == 9 and summary["final_loss"] == summary["final_loss"]  # finite
        config = json.loads((tmp_path / "results" / "pretrain" / run / "model" / "config.json").read_text())
        assert config["sample_size"] == 16 and config["hidden_size"] == 128  # DiT-T/2 on the factor-2 latents


# --- the switches, each against the plain eager step on the CPU ---------------------------------

CFG = {"steps": 6, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.03, "warmup_steps": 2, "grad_clip": 1.0,
       "ema_decay": 0.99, "ema_warmup": True, "checkpoint_every": 3, "log_every": 2}


def _data():
    g = torch.Generator().manual_seed(0)
    lat, cond = torch.randn(32, 4, 4, 4, generator=g), torch.randn(32, 2, 16, generator=g)
    mask = torch.ones(32, 2, dtype=torch.bool)
    mask[::3, 1] = False  # padded tokens: the masked cross-attention path
    return lat, cond, mask


def _train(tmp_path, name, stop_after=None, **switches):
    """Weights (EMA and raw) after CFG's 6 steps of a DiT-N/2 with cross-attention and `switches`."""
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, in_channels=4, cond_dim=16, max_cond_tokens=2)
    out = train_diffusion(model, *_data(), {**CFG, **switches}, str(tmp_path / name), str(tmp_path / f"state_{name}"),
                          stop_after=stop_after)
    if stop_after:
        return out
    return {sub: LumosDiT.from_pretrained(str(tmp_path / name / sub)).state_dict() for sub in ("model", "model_raw")}


def _max_diff(a: dict, b: dict) -> float:
    return max((a[sub][k] - b[sub][k]).abs().max().item() for sub in a for k in a[sub])


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("eager"), "eager")


@pytest.mark.parametrize("switches, tolerance", [
    ({"nan_check_every": 3}, 0.0),  # checking less often changes nothing computed
    ({"attention": "flash"}, 0.0),  # on the CPU torch's own choice is its flash kernel already
    ({"attention": "math"}, 1e-6),  # another summation order: ~5e-8 after 6 steps
    ({"fused_adamw": True}, 1e-6),  # fused vs the loop AdamW: ~9e-8 after 6 steps
])
def test_a_switch_trains_the_same_weights(tmp_path, eager, switches, tolerance):
    """6 steps with the switch on end with the eager default's weights (EMA and raw), exactly or
    within the stated tolerance."""
    assert _max_diff(eager, _train(tmp_path, "switched", **switches)) <= tolerance


def test_compile_is_skipped_on_the_cpu_with_a_log_line(tmp_path, eager, caplog):
    """compile: true with inductor on the CPU (minutes of compilation for little gain) trains
    eagerly and says so in the log."""
    import logging

    with caplog.at_level(logging.INFO, logger="lumos"):
        assert _max_diff(eager, _train(tmp_path, "cpu", compile=True)) == 0.0
    assert "pretrain.train.compile: skipped on the CPU" in caplog.text
    assert "the first step took" not in caplog.text


def test_compiled_training_is_the_eager_training(tmp_path, eager, monkeypatch, caplog):
    """compile: true (the aot_eager backend: the same graph capture as inductor, without code
    generation) trains exactly the eager weights, logs the first (compiling) and second step's
    times, and a run stopped without compile resumes with it: the compiled model's checkpoints
    keep the parameter names."""
    import logging

    import lumos.training.loop

    monkeypatch.setattr(lumos.training.loop, "COMPILE_BACKEND", "aot_eager")
    with caplog.at_level(logging.INFO, logger="lumos"):
        assert _max_diff(eager, _train(tmp_path, "compiled", compile=True)) == 0.0
    assert re.search(r"compile: the first step took [0-9.]+ s \(torch.compile's compilation included\)", caplog.text)
    assert re.search(r"compile: the second step took [0-9.]+ s \(compiled\)", caplog.text)
    assert _train(tmp_path, "resumed", stop_after=3) == {"stopped_at": 3}
    assert _max_diff(eager, _train(tmp_path, "resumed", compile=True)) == 0.0


def test_fused_adamw_run_resumes_exactly(tmp_path):
    """The fused optimiser's state (its step counters live on the device) survives a checkpoint."""
    whole = _train(tmp_path, "whole", fused_adamw=True)
    assert _train(tmp_path, "resumed", stop_after=3, fused_adamw=True) == {"stopped_at": 3}
    assert _max_diff(whole, _train(tmp_path, "resumed", fused_adamw=True)) == 0.0


def test_an_attention_backend_without_a_cpu_kernel_stops_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"config key 'pretrain\.train\.attention': 'cudnn' has no CPU kernel"):
        _train(tmp_path, "cudnn", attention="cudnn")


@pytest.mark.parametrize("injection", ["cross_attn", "adaln", "class", "none"])
def test_the_dit_compiles_to_one_graph(injection):
    """torch.compile(fullgraph=True) captures the forward and backward whole: the GPU path of the
    DiT never reads a value back to the host (such a read would break the graph). Its outputs and
    gradients equal the eager model's (the masked cross-attention path, taken when compiling,
    gives the unmasked one's numbers)."""
    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, cond_dim=16, max_cond_tokens=3, injection=injection,
                               num_classes=5 if injection == "class" else 0)
    for p in model.parameters():  # break the zero initialisation so every path carries signal
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(6, 4, 4, 4), torch.randint(0, 1000, (6,))
    cond, mask = None, None
    if injection == "cross_attn":
        cond, mask = torch.randn(6, 3, 16), torch.ones(6, 3, dtype=torch.bool)
        mask[1, 2], mask[4] = False, False  # a padded token, a sample with none
    elif injection == "adaln":
        cond = torch.randn(6, 16)
    elif injection == "class":
        cond = torch.randint(0, 5, (6,))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")

    def step(fn, drop):
        torch.manual_seed(1)  # the same random condition dropout in both (drop None: training's own)
        model.zero_grad()
        out = fn(x, t, cond, mask, force_drop_ids=drop)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    for drop in (torch.tensor([False, True, False, False, True, False]), None):
        (out_e, grads_e), (out_c, grads_c) = step(model, drop), step(compiled, drop)
        torch.testing.assert_close(out_c, out_e, rtol=0, atol=1e-6)
        for ge, gc in zip(grads_e, grads_c, strict=True):
            torch.testing.assert_close(gc, ge, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="inductor needs a C compiler on the CPU")
def test_inductor_compiled_step_matches_eager():
    """The real backend (inductor, as on a GPU) on one training step of the hybrid loss: the loss
    within 1e-5 and every gradient within 1e-5 of eager (fused kernels round differently; after a
    few AdamW steps such differences grow to ~lr, so weights are not compared)."""
    from lumos.diffusion.gaussian import GaussianDiffusion

    torch.manual_seed(0)
    model = LumosDiT.from_size("DiT-N/2", sample_size=4, cond_dim=16, max_cond_tokens=2).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    lat, cond, mask = _data()
    x0, cond, mask = lat[:8], cond[:8], mask[:8]
    t, noise = torch.randint(0, 1000, (8,), generator=torch.Generator().manual_seed(1)), torch.randn_like(x0)
    diffusion = GaussianDiffusion()
    compiled = torch.compile(model)
    results = []
    for fn in (model, compiled):
        model.zero_grad()
        loss = diffusion.training_losses(fn, x0, t, {"cond": cond, "cond_mask": mask}, noise=noise)["loss"].mean()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (loss_e, grads_e), (loss_c, grads_c) = results
    torch.testing.assert_close(loss_c, loss_e, rtol=0, atol=1e-5)
    for ge, gc in zip(grads_e, grads_c, strict=True):
        torch.testing.assert_close(gc, ge, rtol=0, atol=1e-5)
