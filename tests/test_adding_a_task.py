"""docs/adding-a-task.md, walked through: the toy super-resolution task `sr` built only from the shared
contract (a row source with `batch_keys`, a model from a prior, `train_diffusion`, the resume key),
with no file of the package changed. What `lumos/tasks/sr.py` would hold is defined here (`SRRows`,
`make_sr_model`, `finetune_sr`); each test checks one promise of the page. Tiny on the CPU: DiT-N/2
on 4 x 8 x 8 latents, a few steps (the file runs in seconds)."""

import argparse
import copy
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lumos.models import LumosDiT
from lumos.settings import TrainSettings
from lumos.store import write_store
from lumos.tasks.prior import from_prior, load_prior
from lumos.training.loader import to_tensor
from lumos.training.loop import latest_checkpoint, train_diffusion
from lumos.training.rows import RowSource, check_batch_keys

ROWS, CHANNELS, SIZE, COND_DIM = 8, 4, 8, 16
LATENT_SHAPE = (CHANNELS, SIZE, SIZE)
# the schema has no `sr` block yet (the page adds it), so the block is validated as pretrain.train
# and then named sr.train for its error messages
TRAIN = {"steps": 4, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "ema_decay": 0.99, "checkpoint_every": 2,
         "log_every": 1}


# ------------------------------------------------------------ what lumos/tasks/sr.py would hold


def low_resolution(latents: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """`latents` downsampled `scale` x then upsampled back, both nearest: the SR model's input."""
    small = F.interpolate(latents, scale_factor=1 / scale, mode="nearest")
    return F.interpolate(small, scale_factor=scale, mode="nearest")


class SRRows:
    """Super-resolution rows over a features folder: `x0` the latent, `concat` its low-resolution
    version, `cond`/`cond_mask` the image's encoder CLS as one token (the I2I prior's condition)."""

    batch_keys = ("x0", "concat", "cond", "cond_mask")

    def __init__(self, features_dir: str, encoder: str = "dino", scale: int = 2):
        from lumos.store import FeatureStore

        self.store, self.scale = FeatureStore(features_dir), scale
        self.keys = ["latents", f"{encoder}_cls"]
        self.sizes = [self.store.n]
        self.latent_shape = self.store.row_shape("latents")
        self.cond_dim = self.store.row_shape(f"{encoder}_cls")[-1]

    def batch(self, bucket: int, rows) -> dict[str, torch.Tensor]:
        got = self.store.get(np.asarray(rows, dtype=np.int64), self.keys)
        x0 = to_tensor(got["latents"])
        cls = F.normalize(to_tensor(got[self.keys[1]])[:, None], dim=-1)
        return {"x0": x0, "concat": low_resolution(x0, self.scale), "cond": cls,
                "cond_mask": torch.ones(len(x0), 1, dtype=torch.bool)}


def make_sr_model(prior_dir: str, latent_shape, cond_dropout: float = 0.1, seed: int = 0):
    """A LumosDiT taking the noisy latent plus the low-resolution one (the patch embedding's input
    doubled: `extra_in_channels` = the latent's channels), the I2I prior's weights and condition."""
    c, h, _ = latent_shape
    torch.manual_seed(seed)
    prior, config = load_prior(prior_dir, "I2I prior", "sr.prior")
    model = LumosDiT(**{**config, "extra_in_channels": c, "cond_dropout": cond_dropout, "sample_size": h})
    return model, prior, from_prior(model, prior, keep_condition=True)


def finetune_sr(features_dir: str, prior_dir: str, train_cfg, outputs, state_dir: str, seed: int = 0,
                stop_after=None, cleanup_state: bool = True, rows=None) -> dict:
    rows = rows or SRRows(features_dir)
    model, _, report = make_sr_model(prior_dir, rows.latent_shape, seed=seed)
    return train_diffusion(model, rows, None, None, train_cfg, outputs, state_dir, seed=seed, device="cpu",
                           stop_after=stop_after, cleanup_state=cleanup_state,
                           summary_extra={"prior": prior_dir, "copied": report["copied"]})


# ------------------------------------------------------------------------------------- fixtures


def sr_train_settings(**changes) -> TrainSettings:
    return TrainSettings.from_config({**TRAIN, **changes}, "pretrain.train").replace(key="sr.train")


@pytest.fixture
def features(tmp_path) -> str:
    rng = np.random.default_rng(0)
    folder = tmp_path / "features"
    write_store(folder, {"latents": rng.standard_normal((ROWS, *LATENT_SHAPE)).astype(np.float16),
                         "dino_cls": rng.standard_normal((ROWS, COND_DIM)).astype(np.float16)}, shard_size=5)
    return str(folder)


@pytest.fixture
def prior_dir(tmp_path) -> str:
    """An I2I prior (one CLS token through cross-attention) with trained-looking weights."""
    torch.manual_seed(0)
    prior = LumosDiT.from_size("DiT-N/2", sample_size=SIZE, in_channels=CHANNELS, cond_dim=COND_DIM,
                               max_cond_tokens=1)
    with torch.no_grad():  # no zero layer left: the prior computes something
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    prior.save_pretrained(tmp_path / "prior")
    return str(tmp_path / "prior")


def weights(folder) -> dict:
    return LumosDiT.from_pretrained(str(folder)).state_dict()


# ----------------------------------------------------------------------------------------- rows


def test_sr_rows_declare_their_keys_and_carry_a_low_resolution_input(features):
    rows = SRRows(features)
    assert isinstance(rows, RowSource) and rows.sizes == [ROWS]
    batch = check_batch_keys(rows, rows.batch(0, [0, 3, 7]))  # rows across two shards
    assert batch["x0"].shape == batch["concat"].shape == (3, *LATENT_SHAPE)
    assert batch["cond"].shape == (3, 1, COND_DIM) and batch["cond_mask"].dtype == torch.bool
    torch.testing.assert_close(batch["cond"].norm(dim=-1), torch.ones(3, 1))
    # concat: every 2x2 block repeats the block's top-left value of x0 (exact: copies only)
    top_left = batch["x0"][..., ::2, ::2]
    assert torch.equal(batch["concat"], top_left.repeat_interleave(2, -2).repeat_interleave(2, -1))
    assert not torch.equal(batch["concat"], batch["x0"])


class LeakyRows(SRRows):
    """An SR source whose batches carry a key it does not declare."""

    def batch(self, bucket, rows):
        return {**super().batch(bucket, rows), "camera": torch.zeros(len(rows), 12)}


def test_an_undeclared_key_fails_at_the_first_step_naming_the_source(features, prior_dir, tmp_path):
    leaky = LeakyRows(features)
    with pytest.raises(ValueError, match=r"LeakyRows declares batch keys .*extra \['camera'\], missing \[\]"):
        check_batch_keys(leaky, leaky.batch(0, [0, 1]))
    # through the trainer: the loader's check stops the run before any step is saved
    with pytest.raises(ValueError, match=r"LeakyRows declares batch keys .*extra \['camera'\]"):
        finetune_sr(features, prior_dir, sr_train_settings(), str(tmp_path / "out"), str(tmp_path / "state"),
                    rows=leaky)
    assert latest_checkpoint(tmp_path / "state") is None and not (tmp_path / "out" / "model").exists()


# ---------------------------------------------------------------------------------------- model


def test_sr_model_from_the_prior_takes_its_weights_and_starts_as_the_prior(prior_dir):
    model, prior, report = make_sr_model(prior_dir, LATENT_SHAPE)
    # every tensor came from the prior (the widened patch embedding counts as copied), none fresh
    assert report["fresh"] == [] and report["dropped"] == [] and report["copied"] == len(model.state_dict())
    assert model.config.in_channels == CHANNELS and model.config.extra_in_channels == CHANNELS
    assert model.x_embedder.weight.shape[1] == 2 * CHANNELS  # the patch embedding's input doubled
    assert torch.equal(model.x_embedder.weight[:, :CHANNELS], prior.x_embedder.weight)
    assert model.x_embedder.weight[:, CHANNELS:].abs().max() == 0  # the low-resolution channels start at zero
    assert torch.equal(model.y_embedder.fc1.weight, prior.y_embedder.fc1.weight)  # the condition path kept
    # so at step 0 the SR model computes the prior's output whatever the low-resolution input
    # (tolerance 1e-6: the convolution sums over 8 input channels instead of 4)
    g = torch.Generator().manual_seed(1)
    x, cond = torch.randn(3, *LATENT_SHAPE, generator=g), torch.randn(3, 1, COND_DIM, generator=g)
    t, concat = torch.tensor([5, 500, 999]), torch.randn(3, *LATENT_SHAPE, generator=g)
    model.eval(), prior.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, cond, concat=concat), prior(x, t, cond), atol=1e-6, rtol=0)


def test_doubled_in_channels_is_not_the_way_to_take_concat(prior_dir):
    """`in_channels` is what is noised and predicted: a model with it doubled cannot take a
    4-channel latent plus `concat`, and says so (the doc's `extra_in_channels` is the way)."""
    _, config = load_prior(prior_dir, "I2I prior", "sr.prior")
    literal = LumosDiT(**{**config, "in_channels": 2 * CHANNELS})
    x = torch.zeros(1, *LATENT_SHAPE)
    with pytest.raises(ValueError, match=r"x has 4 channels; the model takes 8 \(\+ 0 extra\)"):
        literal(x, 1, torch.zeros(1, 1, COND_DIM), concat=torch.zeros(1, *LATENT_SHAPE))


# ------------------------------------------------------------------------------------- training


def test_finetune_sr_writes_its_outputs_resumes_and_a_finished_rerun_trains_nothing(features, prior_dir, tmp_path):
    cfg = sr_train_settings()
    # uninterrupted, state kept so that it can be rerun
    done = finetune_sr(features, prior_dir, cfg, str(tmp_path / "a"), str(tmp_path / "sa"), cleanup_state=False)
    assert done["steps"] == 4 and done["resumed_from"] == 0 and np.isfinite(done["final_loss"])
    assert done["copied"] > 0 and done["prior"] == prior_dir
    for name in ("model/config.json", "model_raw/config.json", "loss.csv", "loss.png", "train_summary.json"):
        assert (tmp_path / "a" / name).exists(), name
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "a" / "loss.csv"))] == [1, 2, 3, 4]
    raw = weights(tmp_path / "a" / "model_raw")
    assert raw["x_embedder.weight"][:, CHANNELS:].abs().max() > 0  # the low-resolution input is learnt

    # killed after step 2 (stop_after: as a signal would), then rerun with the same state folder
    assert finetune_sr(features, prior_dir, cfg, str(tmp_path / "b"), str(tmp_path / "sb"),
                       stop_after=2) == {"stopped_at": 2}
    assert not (tmp_path / "b" / "model").exists() and latest_checkpoint(tmp_path / "sb").name == "checkpoint-2"
    resumed = finetune_sr(features, prior_dir, cfg, str(tmp_path / "b"), str(tmp_path / "sb"))
    assert resumed["resumed_from"] == 2 and not (tmp_path / "sb").exists()  # cleanup_state: the state goes
    for sub in ("model", "model_raw"):  # the uninterrupted run's weights (tolerance as tests/test_train.py)
        a, b = weights(tmp_path / "a" / sub), weights(tmp_path / "b" / sub)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-7, msg=f"{sub}.{k}")
    assert (tmp_path / "a" / "loss.csv").read_bytes() == (tmp_path / "b" / "loss.csv").read_bytes()

    # a finished run rerun on its state: resumes at its last checkpoint, trains no step, same outputs
    before = {sub: weights(tmp_path / "a" / sub) for sub in ("model", "model_raw")}
    curve = (tmp_path / "a" / "loss.csv").read_bytes()
    again = finetune_sr(features, prior_dir, cfg, str(tmp_path / "a"), str(tmp_path / "sa"), cleanup_state=False)
    assert again["images_per_s"] == 0 and again["final_loss"] == done["final_loss"]
    for sub, want in before.items():  # exactly: loaded from the final checkpoint, nothing trained
        assert all(torch.equal(want[k], v) for k, v in weights(tmp_path / "a" / sub).items()), sub
    assert (tmp_path / "a" / "loss.csv").read_bytes() == curve


# ----------------------------------------------------------------------------------- resume key


def sr_train_command(tmp_path, cfg: dict) -> argparse.Namespace:
    """The flags `lumos sr-train` would parse (lumos.commands.train_outputs and the task's own)."""
    outs = {f"out_{k}": str(tmp_path / "out" / k) for k in ("model", "raw", "curve", "plot", "summary")}
    return argparse.Namespace(cfg=json.dumps(cfg), threads=1, features=str(tmp_path / "features"),
                              state=str(tmp_path / "state"), stop_after=None, prior=str(tmp_path / "prior"),
                              out_snapshots=None, **outs)


def test_the_resume_key_follows_every_sr_setting_that_changes_the_weights(features, tmp_path):
    from lumos.commands import state_folder
    from lumos.training.resume import resume_key

    cfg = {"seed": 0, "device": "cpu", "preset": "smoke", "sr.scale": 2, "sr.cond_dropout": 0.1,
           "sr.train": {**TRAIN, "loader_workers": 0, "prefetch": 2},
           "pretrain.model": {"size": "DiT-N/2", "learn_sigma": True}}
    args = sr_train_command(tmp_path, cfg)
    base = resume_key(cfg, args)
    assert state_folder(args, cfg) == str(Path(args.state) / base)
    assert resume_key(copy.deepcopy(cfg), args) == base  # deterministic

    def key(*path, value):
        """The key with the setting at `path` (a slice key, then keys inside its block) set to `value`."""
        new = copy.deepcopy(cfg)
        node = new
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return resume_key(new, args)

    # weight settings: the task's own, train fields, a setting the task adds later (nothing to list)
    for path, value in ((("sr.scale",), 4), (("sr.train", "lr"), 2e-3), (("sr.train", "steps"), 5),
                        (("sr.train", "batch_size"), 8), (("sr.train", "ema_decay"), 0.9), (("sr.sharpen",), True)):
        assert key(*path, value=value) != base, path
    # the named few that do not change the weights
    for path, value in ((("sr.train", "log_every"), 2), (("sr.train", "loader_workers"), 2),
                        (("sr.train", "prefetch"), 4), (("sr.train", "checkpoint_every"), 3), (("device",), "cuda")):
        assert key(*path, value=value) == base, path
    # flags: a new prior keys the state, threads / outputs / when to stop do not
    flag = lambda **kw: resume_key(cfg, argparse.Namespace(**{**vars(args), **kw}))  # noqa: E731
    assert flag(prior="other") != base and flag(sharpen=True) != base
    assert flag(threads=4) == flag(stop_after=2) == flag(out_model="elsewhere") == base
    # new features (their index rewritten) key a fresh state
    os.utime(Path(features) / "index.json", ns=(0, 123))
    assert resume_key(cfg, args) != base


# ------------------------------------------------------------------------------------- layering


def test_the_sr_modules_have_a_layer_and_may_import_what_sr_uses():
    import test_layering as layering

    tasks, entry = layering.layer_of("lumos.tasks.sr"), layering.layer_of("lumos.commands.sr")
    assert layering.LAYERS[tasks][0] == "tasks" and layering.LAYERS[entry][0] == "entry"
    # what lumos/tasks/sr.py imports (above) lies in its layer or below; commands sit above it
    for used in ("lumos.tasks.prior", "lumos.training.loop", "lumos.training.rows", "lumos.training.loader",
                 "lumos.store", "lumos.models", "lumos.settings", "lumos.eval.image_similarity"):
        assert layering.layer_of(used) >= tasks, used
    assert entry < tasks
