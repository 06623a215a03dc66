"""The training loop: loss goes down, a killed run resumes to the same weights, NaN stops cleanly."""

import csv
import os
import subprocess
import sys

import pytest
import torch

from lumos.models import LumosDiT
from lumos.training.lock import StateLockedError, state_lock
from lumos.training.loop import latest_checkpoint, train_diffusion

CFG = {"steps": 12, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.03, "warmup_steps": 2, "grad_clip": 1.0,
       "ema_decay": 0.99, "ema_warmup": True, "checkpoint_every": 4, "log_every": 1}


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 4, 4, generator=g), torch.randn(n, 2, 16, generator=g), torch.ones(n, 2, dtype=torch.bool)


def model(seed=0):
    torch.manual_seed(seed)
    return LumosDiT.from_size("DiT-N/2", sample_size=4, in_channels=4, cond_dim=16, max_cond_tokens=2)


def weights(folder):
    return LumosDiT.from_pretrained(folder).state_dict()


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    lat, cond, mask = data()
    train_diffusion(model(), lat, cond, mask, CFG, str(tmp_path / "a"), str(tmp_path / "state_a"))

    stopped = train_diffusion(model(), lat, cond, mask, CFG, str(tmp_path / "b"), str(tmp_path / "state_b"), stop_after=6)
    assert stopped == {"stopped_at": 6}
    assert not (tmp_path / "b" / "model").exists()  # nothing declared is written by an interrupted run
    assert latest_checkpoint(tmp_path / "state_b").name == "checkpoint-6"
    summary = train_diffusion(model(seed=123), lat, cond, mask, CFG, str(tmp_path / "b"), str(tmp_path / "state_b"))
    assert summary["resumed_from"] == 6

    for sub in ("model", "model_raw"):
        a, b = weights(tmp_path / "a" / sub), weights(tmp_path / "b" / sub)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-7, msg=f"{sub}.{k} differs after resume")
    rows = list(csv.DictReader(open(tmp_path / "b" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))  # no duplicated or missing steps


def test_resume_between_logged_rows_writes_the_uninterrupted_loss_record(tmp_path):
    """Stopped at step 6 with rows every 4 steps (the window since row 5 holds a step): the
    resumed run's loss.csv is byte for byte the uninterrupted run's; the loss sums since the last
    row are part of the checkpoint."""
    lat, cond, mask = data()
    cfg = {**CFG, "log_every": 4, "checkpoint_every": 3}
    train_diffusion(model(), lat, cond, mask, cfg, str(tmp_path / "a"), str(tmp_path / "state_a"))
    assert train_diffusion(model(), lat, cond, mask, cfg, str(tmp_path / "b"), str(tmp_path / "state_b"),
                           stop_after=6) == {"stopped_at": 6}
    # the checkpoint holds the rows so far (written before DONE: a kill between them loses nothing)
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "state_b" / "checkpoint-6" / "loss.csv"))] == ["1", "5"]
    train_diffusion(model(seed=123), lat, cond, mask, cfg, str(tmp_path / "b"), str(tmp_path / "state_b"))
    a, b = (tmp_path / "a" / "loss.csv").read_bytes(), (tmp_path / "b" / "loss.csv").read_bytes()
    assert [r.split(b",")[0] for r in a.splitlines()[1:]] == [b"1", b"5", b"9", b"12"]
    assert a == b


def test_training_decreases_loss_and_writes_outputs(tmp_path):
    lat, cond, mask = data(n=8)
    cfg = {**CFG, "steps": 60, "batch_size": 8, "checkpoint_every": 30, "log_every": 10, "lr": 2e-3}
    summary = train_diffusion(model(), lat, cond, mask, cfg, str(tmp_path / "out"), str(tmp_path / "state"))
    rows = list(csv.DictReader(open(tmp_path / "out" / "loss.csv")))
    first = sum(float(r["loss"]) for r in rows[:2]) / 2
    last = sum(float(r["loss"]) for r in rows[-2:]) / 2
    assert last < 0.8 * first, (first, last)  # tolerance: at least 20% lower after 60 steps
    assert summary["images_per_s"] > 0
    for name in ("model/config.json", "model_raw/config.json", "loss.png", "train_summary.json"):
        assert (tmp_path / "out" / name).exists(), name


def test_ema_warmup_tracks_the_model_early():
    from lumos.training.loop import EMA

    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.9999, warmup=True)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # first update: decay min(0.9999, 1/10) = 0.1
    torch.testing.assert_close(ema.model.weight, net.weight - 0.1, rtol=0, atol=1e-6)


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    lat, cond, mask = data()
    cfg = {**CFG, "steps": 4, "checkpoint_every": 2}
    train_diffusion(model(), lat, cond, mask, cfg, str(tmp_path / "out"), str(tmp_path / "state"))
    bad = torch.full_like(lat, float("nan"))
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 4.*checkpoint-4"):
        train_diffusion(model(), bad, cond, mask, {**cfg, "steps": 8}, str(tmp_path / "out2"), str(tmp_path / "state"))
    assert latest_checkpoint(tmp_path / "state").name == "checkpoint-4"


def test_nan_check_every_n_steps_names_the_steps_and_keeps_the_last_good_checkpoint(tmp_path):
    """With `nan_check_every` (a GPU's default: every log_every steps) nothing waits for the device
    between checks; a nan stops the run at the next check, naming the steps it lies between, and
    nothing after the last good check is saved."""
    lat, cond, mask = data()
    cfg = {**CFG, "steps": 4, "checkpoint_every": 2}
    train_diffusion(model(), lat, cond, mask, cfg, str(tmp_path / "out"), str(tmp_path / "state"))
    bad = torch.full_like(lat, float("nan"))
    windowed = {**cfg, "steps": 12, "checkpoint_every": 100, "log_every": 100, "nan_check_every": 3}
    with pytest.raises(FloatingPointError, match=r"at a step from 4 to 6; .*checkpoint-4.*Lower pretrain\.train\.lr.*"
                                                 r"pretrain\.train\.nan_check_every: 1"):
        train_diffusion(model(), bad, cond, mask, windowed, str(tmp_path / "out2"), str(tmp_path / "state"))
    assert latest_checkpoint(tmp_path / "state").name == "checkpoint-4"
    assert not (tmp_path / "out2" / "model").exists()


def test_nan_check_interval_is_every_step_on_cpu_and_per_logged_row_on_gpu():
    from lumos.settings import TrainSettings

    cfg = TrainSettings.from_config({**CFG, "log_every": 50}, "pretrain.train")
    assert cfg.nan_check_interval("cpu") == 1 and cfg.nan_check_interval("cuda") == 50
    assert cfg.replace(nan_check_every=7).nan_check_interval("cuda") == 7


def test_resume_key_leaves_out_how_a_step_is_computed():
    """A run killed with torch.compile off resumes with it on (and so on for the attention backend
    and the nan check); fused AdamW keys the state, whose optimiser layout follows it."""
    from lumos.settings import TrainSettings

    cfg = TrainSettings.from_config(CFG, "pretrain.train")
    same = cfg.replace(compile=True, compile_mode="max-autotune", attention="flash", nan_check_every=10,
                       loader_workers=3)
    assert same.resume_key() == cfg.resume_key()
    assert cfg.replace(fused_adamw=True).resume_key() != cfg.resume_key()


def test_nan_loss_error_names_the_settings_of_this_run(tmp_path):
    """A fine-tune's NaN names t2i.train.lr, not pretrain.train.lr: settings carry their key."""
    from lumos.settings import TrainSettings

    lat, cond, mask = data()
    cfg = TrainSettings.from_config({**CFG, "steps": 2}, "t2i.stages.0.train")
    with pytest.raises(FloatingPointError, match=r"Lower t2i\.stages\.0\.train\.lr"):
        train_diffusion(model(), torch.full_like(lat, float("nan")), cond, mask, cfg, str(tmp_path / "o"),
                        str(tmp_path / "s"))


def test_outputs_go_where_the_rule_declares_them(tmp_path):
    """Every file of a finished run is written at the path it is given, the summary once with the
    caller's extra keys."""
    import json

    from lumos.training.loop import TrainOutputs

    lat, cond, mask = data()
    out = TrainOutputs(*(str(tmp_path / name) for name in ("ema", "raw", "c/curve.csv", "p/plot.png", "s/sum.json")))
    summary = train_diffusion(model(), lat, cond, mask, {**CFG, "steps": 2}, out, str(tmp_path / "state"),
                              summary_extra={"prior": "none"})
    assert json.loads((tmp_path / "s" / "sum.json").read_text()) == summary and summary["prior"] == "none"
    for name in ("ema/config.json", "raw/config.json", "c/curve.csv", "p/plot.png"):
        assert (tmp_path / name).exists(), name


def test_state_key_follows_settings_and_input(tmp_path):
    from lumos.training.loop import state_key

    f = tmp_path / "index.json"
    f.write_text("{}")
    base = state_key({"lr": 1e-3}, f)
    assert state_key({"lr": 1e-3}, f) == base
    assert state_key({"lr": 2e-3}, f) != base
    os.utime(f, ns=(0, 123))  # new features -> a fresh state folder
    assert state_key({"lr": 1e-3}, f) != base


def test_cleanup_state_removes_the_finished_runs_state(tmp_path):
    lat, cond, mask = data()
    train_diffusion(model(), lat, cond, mask, {**CFG, "steps": 2}, str(tmp_path / "out"), str(tmp_path / "state"),
                    cleanup_state=True)
    assert (tmp_path / "out" / "model").exists() and not (tmp_path / "state").exists()


def test_a_second_trainer_on_a_busy_state_folder_stops_naming_the_holder(tmp_path):
    lat, cond, mask = data()
    state = tmp_path / "state"
    state.mkdir()
    with state_lock(state):  # the first trainer, still running
        with pytest.raises(StateLockedError, match=rf"state folder .*state .*pid {os.getpid()} on "):
            train_diffusion(model(), lat, cond, mask, {**CFG, "steps": 4}, str(tmp_path / "out"), str(state))
        assert not list(state.glob("checkpoint-*")) and not (tmp_path / "out" / "model").exists()
    # the first one gone, the same folder trains
    summary = train_diffusion(model(), lat, cond, mask, {**CFG, "steps": 4}, str(tmp_path / "out"), str(state))
    assert summary["steps"] == 4 and latest_checkpoint(state).name == "checkpoint-4"


def test_a_killed_trainer_leaves_no_lock_behind(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from lumos.training.lock import state_lock\n"
                               "with state_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)",
                               str(state)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StateLockedError, match=f"pid {holder.pid} "):
            with state_lock(state):
                pass
    finally:
        holder.kill()
        holder.wait()
    with state_lock(state):  # SIGKILL released it
        assert (state / "LOCK").read_text().startswith(f"pid {os.getpid()} ")


def _launch(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lumos.cli", "launch", "--processes", "2", "--", *args],
                          capture_output=True, text=True, cwd=cwd, env={**os.environ, "LUMOS_NO_PROGRESS": "1"})


def test_two_processes_train_checkpoint_and_resume_like_one_run(tmp_path):
    """`lumos launch --processes 2` (torchrun + gloo on CPU): ranks draw different batches,
    only rank 0 writes, and a run stopped at step 6 resumes to the uninterrupted run's weights."""
    import json

    import numpy as np

    from lumos.store import write_store

    lat, cond, _ = data(64)
    feats = tmp_path / "features"
    write_store(feats, {"latents": lat.numpy().astype(np.float16), "dino_cls": cond[:, 0].numpy().astype(np.float16)},
                shard_size=24)
    cfg = json.dumps({"seed": 0, "device": "cpu", "preset": "smoke",
                      "pretrain.runs.lumos_i2i": {"encoder": "dino", "injection": "cross_attn", "tokens": "cls"},
                      "pretrain.model": {"size": "DiT-N/2", "learn_sigma": True, "cond_dropout": 0.1},
                      "pretrain.train": {**CFG, "batch_size": 8, "log_every": 2}})
    common = ["pretrain", "--threads", "1", "--cfg", cfg, "--run-name", "lumos_i2i", "--features", str(feats)]

    def outputs(folder):
        f = tmp_path / folder
        return ["--out-model", str(f / "model"), "--out-raw", str(f / "model_raw"), "--out-curve", str(f / "loss.csv"),
                "--out-plot", str(f / "loss.png"), "--out-summary", str(f / "train_summary.json")]

    a = _launch(*common, *outputs("a"), "--state", str(tmp_path / "sa"), cwd=tmp_path)
    assert a.returncode == 0, a.stderr[-3000:]
    assert a.stdout.count('"steps": 12') == 2  # both ranks finished ...
    rows = list(csv.DictReader(open(tmp_path / "a" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == [1, 3, 5, 7, 9, 11, 12]  # ... one curve, written once
    # run b checks the loss (and agrees on stopping) every 3 steps only, as on a GPU: same weights
    windowed = json.loads(cfg)
    windowed["pretrain.train"]["nan_check_every"] = 3
    common = ["pretrain", "--threads", "1", "--cfg", json.dumps(windowed), "--run-name", "lumos_i2i",
              "--features", str(feats)]
    b = _launch(*common, *outputs("b"), "--state", str(tmp_path / "sb"), "--stop-after", "6", cwd=tmp_path)
    assert b.returncode != 0 and not (tmp_path / "b" / "model").exists()
    b = _launch(*common, *outputs("b"), "--state", str(tmp_path / "sb"), cwd=tmp_path)
    assert b.returncode == 0 and b.stderr.count("resuming from") == 2, b.stderr[-3000:]
    for sub in ("model", "model_raw"):
        wa, wb = weights(tmp_path / "a" / sub), weights(tmp_path / "b" / sub)
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)


def _store(tmp_path, n=48):
    """A features folder of `n` rows in shards of 20 (latents, DINO CLS, subset hash)."""
    import numpy as np

    from lumos.data.subsets import subset_values
    from lumos.store import write_store

    lat, cond, _ = data(n)
    folder = tmp_path / "features"
    write_store(folder, {"latents": lat.numpy().astype(np.float16), "dino_cls": cond[:, 0].numpy().astype(np.float16),
                         "subset_u": subset_values([str(i) for i in range(n)], 0)}, shard_size=20)
    return str(folder)


def test_streaming_loader_run_resumes_exactly_with_any_worker_count(tmp_path):
    """A pretrain run reading the store through 2 loader workers, killed at step 5 and resumed,
    ends with exactly (torch.equal) the weights of an uninterrupted run, with 2 workers or none."""
    from lumos.tasks.i2i import pretrain
    from lumos.settings import ModelSettings, RunSettings, TrainSettings

    feats = _store(tmp_path)
    run = RunSettings(injection="cross_attn", tokens="cls", encoder="dino")
    net = ModelSettings(size="DiT-N/2", learn_sigma=True, cond_dropout=0.1)

    def train(name, workers, **kw):
        cfg = TrainSettings.from_config({**CFG, "loader_workers": workers, "prefetch": 3}, "pretrain.train")
        return pretrain(feats, run, net, cfg, str(tmp_path / name), str(tmp_path / f"state_{name}"), 0, "cpu", **kw)

    train("main", 0)
    train("workers", 2)
    assert train("resumed", 2, stop_after=5) == {"stopped_at": 5}
    assert train("resumed", 2)["resumed_from"] == 5
    for sub in ("model", "model_raw"):
        want = weights(tmp_path / "main" / sub)
        for other in ("workers", "resumed"):
            got = weights(tmp_path / other / sub)
            assert all(torch.equal(want[k], got[k]) for k in want), (other, sub)


def test_a_signal_to_every_process_checkpoints_with_loader_workers(tmp_path):
    """SLURM's SIGUSR1 reaches the loader workers too: the run still checkpoints, exits 75 and resumes."""
    import json
    import signal

    feats = _store(tmp_path)
    cfg = json.dumps({"seed": 0, "device": "cpu",
                      "pretrain.runs.lumos_i2i": {"encoder": "dino", "injection": "cross_attn", "tokens": "cls"},
                      "pretrain.model": {"size": "DiT-N/2", "learn_sigma": True, "cond_dropout": 0.1},
                      "pretrain.train": {**CFG, "steps": 100000, "checkpoint_every": 100000, "loader_workers": 2}})
    out = [f"--out-{k}={tmp_path / k}" for k in ("model", "raw", "curve", "plot", "summary")]
    proc = subprocess.Popen([sys.executable, "-m", "lumos.cli", "pretrain", "--threads", "1", "--cfg", cfg,
                             "--run-name", "lumos_i2i", "--features", feats, "--state", str(tmp_path / "s"), *out],
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "LUMOS_NO_PROGRESS": "1"})
    for line in proc.stderr:
        if "step 3 loss" in line:
            os.killpg(proc.pid, signal.SIGUSR1)  # the whole process group, workers included
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 75, rest[-3000:]
    assert "stopped at step" in rest and "exited unexpectedly" not in rest
    assert latest_checkpoint(tmp_path / "s" / os.listdir(tmp_path / "s")[0]) is not None
