"""The levers for shapes (beyond the paper; config/levers.yaml): a run's own objective, a DINO trained
longer as REPA's target, and the curves of the class-grid scores against pretraining steps."""

import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lumos.config import ConfigError, load_config, load_yaml

ROOT = Path(__file__).resolve().parent.parent
LEVERS = load_yaml((ROOT / "config" / "levers.yaml").read_text())


def _slice(config: dict, run: str) -> dict:
    return {f"pretrain.runs.{run}": config["pretrain"]["runs"][run], "pretrain.model": config["pretrain"]["model"]}


def test_a_run_sets_its_own_objective_over_pretrain_model():
    from lumos.commands.pretrain import model_settings
    from lumos.settings import RunSettings
    from lumos.tasks.i2i import build_model

    tiny = load_config("tiny", LEVERS)
    want = {"class_i2i": None, "class_x0": "sample", "class_snr5": None, "class_v_snr5": "v_prediction"}
    for run, kind in want.items():
        settings = model_settings(_slice(tiny, run), Namespace(run_name=run))
        assert settings.prediction_type == kind and settings.size == tiny["pretrain"]["model"]["size"]
        block = RunSettings.from_config(tiny["pretrain"]["runs"][run], f"pretrain.runs.{run}")
        model = build_model(settings, block, (4, 4, 4), cond_dim=0, n_tokens=0)
        assert model.config.prediction_type == (kind or "epsilon")  # saved with the prior; its fine-tunes keep it
    assert tiny["pretrain"]["runs"]["class_snr5"]["train"] == {"snr_gamma": 5}
    # only the objective may differ per run: the DiT's size is shared by every prior and fine-tune
    with pytest.raises(ConfigError, match="size"):
        load_config("tiny", {"pretrain": {"runs": {"x": {"injection": "class", "model": {"size": "DiT-B/2"}}}}})


def test_no_preset_plans_a_lever_or_its_encoder():
    for preset in ("tiny", "smoke", "paper"):
        config = load_config(preset)
        assert config["pretrain"]["class_curves"] == [] and "dino_long" not in config["components"]
        assert not set(LEVERS["pretrain"]["runs"]) - {"class_i2i"} & set(config["pretrain"]["runs"])


def test_the_lever_config_plans_the_curves_of_every_lever(tmp_path):
    """`snakemake results/class_curves.png --configfile config/levers.yaml`: the seven class priors
    (snapshots kept), the longer DINO and its patch tokens of the pool, one scoring job."""
    levers = str(ROOT / "config" / "levers.yaml")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "results/class_curves.png", "--snakefile",
                           str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", levers, "-n", "-p"],
                          capture_output=True, text=True, check=True)
    out = proc.stdout
    runs = LEVERS["pretrain"]["class_curves"]
    for run in runs:
        assert f"results/pretrain/{run}/snapshots" in out and f"--run-name {run} " in out
    assert "lumos train-component --component dino_long" in out and "results/features/pool+dino_long" in out
    assert out.count("lumos class-curves ") == 1
    assert all(f"{run}=results/pretrain/{run}/snapshots" in out for run in runs)


def test_class_curves_take_class_priors_only():
    from lumos.workflow.figures import class_curve_runs

    tiny = load_config("tiny", LEVERS)
    assert class_curve_runs(tiny) == LEVERS["pretrain"]["class_curves"]
    for bad in ("lumos_i2i", "no_such_run"):
        with pytest.raises(ConfigError, match=f"pretrain.class_curves names '{bad}'"):
            class_curve_runs(load_config("tiny", {**LEVERS, "pretrain": {**LEVERS["pretrain"], "class_curves": [bad]}}))


class _BrightnessDetector(torch.nn.Module):
    """A stand-in Shapes classifier whose presence logits (its `multi` head) depend only on each
    image's mean brightness: its scores follow the samples, so two models' rows differ when their
    samples do."""

    def __init__(self):
        from lumos.data.worlds.shapes import COLOURS, NUM_CLASSES, SHAPES

        super().__init__()
        self.width = len(SHAPES) + len(COLOURS) + NUM_CLASSES  # lumos.components.classifier.target_groups
        self.scale = torch.nn.Parameter(torch.tensor(5000.0), requires_grad=False)

    def forward(self, x):
        level = x.mean(dim=(1, 2, 3))[:, None]
        return {"multi": torch.sin(level * self.scale + torch.arange(self.width) * 1.7) * 5}


def test_class_curves_score_each_snapshot_and_the_untrained_model(tmp_path):
    from lumos.components.vae import LatentCodec, build_tiny_vae
    from lumos.data.worlds.shapes import NUM_CLASSES
    from lumos.eval.diagnose import attributes_present, class_samples, class_scores_by_step
    from lumos.models import LumosDiT
    from lumos.report.figures import build_class_curves

    torch.manual_seed(0)
    codec = LatentCodec(build_tiny_vae(16, 4, [8, 8, 8]), 1.0)
    net = _BrightnessDetector()
    snapshots = []
    for step in (500, 1000):
        torch.manual_seed(step)
        model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="class", num_classes=NUM_CLASSES).eval()
        for p in model.parameters():  # as trained weights: DiT's zero-initialised output layers no longer zero
            p.data.add_(0.05 * torch.randn_like(p))
        snapshots.append((step, model))
    rows = class_scores_by_step(snapshots, codec, net, (4, 4, 4), guidance_scale=2.0, steps=2, seed=3, repeats=1)
    assert [r["step"] for r in rows] == [0, 500, 1000] and all(r["samples"] == NUM_CLASSES for r in rows)
    # each snapshot's point is the class grid of that snapshot, with the same labels and noise
    for (step, model), row in zip(snapshots, rows[1:]):
        images, shape, colour = class_samples(model, codec, (4, 4, 4), 2.0, 2, seed=3, repeats=1)
        assert {k: row[k] for k in ("colour", "shape", "pair")} == attributes_present(net, images, shape, colour)
    # step 0: the snapshots' architecture freshly initialised with the seed (not a snapshot's weights)
    torch.manual_seed(3)
    fresh = LumosDiT.from_config(snapshots[0][1].config).eval()
    images, shape, colour = class_samples(fresh, codec, (4, 4, 4), 2.0, 2, seed=3, repeats=1)
    assert {k: rows[0][k] for k in ("colour", "shape", "pair")} == attributes_present(net, images, shape, colour)
    assert len({(r["colour"], r["shape"], r["pair"]) for r in rows}) == 3  # the detector tells the models apart

    table = build_class_curves([{"label": "eps", **r} for r in rows] + [{"label": "x0", **rows[0]}],
                               str(tmp_path / "c.png"), str(tmp_path / "c.csv"))
    saved = pd.read_csv(tmp_path / "c.csv")
    assert list(saved.label) == ["eps"] * 3 + ["x0"] and (saved.source == "measured").all()
    np.testing.assert_allclose(saved["shape"], table["shape"])
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_class_curves_let_each_snapshot_go_before_loading_the_next():
    import gc
    import weakref

    from lumos.components.vae import LatentCodec, build_tiny_vae
    from lumos.data.worlds.shapes import NUM_CLASSES
    from lumos.eval.diagnose import class_scores_by_step
    from lumos.models import LumosDiT

    torch.manual_seed(0)
    codec = LatentCodec(build_tiny_vae(16, 4, [8, 8, 8]), 1.0)
    loaded, alive = [], []

    def snapshots():  # as `lumos class-curves` loads them: one by one, when asked for
        for step in (500, 1000, 1500, 2000):
            gc.collect()
            alive.append(sum(ref() is not None for ref in loaded))
            model = LumosDiT.from_size("DiT-N/2", sample_size=4, injection="class", num_classes=NUM_CLASSES).eval()
            loaded.append(weakref.ref(model))
            yield step, model

    rows = class_scores_by_step(snapshots(), codec, _BrightnessDetector(), (4, 4, 4), guidance_scale=2.0, steps=1,
                                seed=3, repeats=1)
    assert [r["step"] for r in rows] == [0, 500, 1000, 1500, 2000]
    # when each snapshot is loaded, at most the one before it is still referenced (by the generator)
    assert alive == [0, 1, 1, 1]
