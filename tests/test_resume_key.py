"""The resume key of every training command (`lumos.training.resume`): changing any setting of the config
slice or any flag the command receives changes the key, except the named few that do not change
the weights (loader, logging cadence, step implementation, device; threads, outputs, when to
stop). Fast: no training; each command's slice is the one its rule passes, from config/smoke.yaml."""

import copy
import dataclasses
import json
import os

import pytest

from lumos.cli import build_parser
from lumos.commands import setup, state_folder
from lumos.config import config_slice, load_config
from lumos.training.resume import INPUT_ARGS, NOT_WEIGHT_ARGS, NOT_WEIGHT_KEYS, resume_key
from lumos.settings import TrainSettings

# The settings that may change without a fresh state: short, deliberate lists. Fields of a train
# block; global keys of a slice; flags.
NOT_WEIGHTS = {"loader_workers", "prefetch", "log_every", "checkpoint_every", "compile", "compile_mode", "attention",
               "nan_check_every"}
NOT_WEIGHT_GLOBALS = {"device", "preset"}
NOT_WEIGHT_FLAGS = {"cfg", "threads", "state", "stop_after", "out_model", "out_raw", "out_curve", "out_plot",
                    "out_summary", "features", "text"}

# Each training command: its config slice (the keys its rule passes: rules/*.smk, cfg_json) and flags.
COMMANDS = {
    "pretrain": (["pretrain.runs.lumos_i2i", "pretrain.model", "pretrain.train", "pretrain.snapshot_every"],
                 ["--run-name", "lumos_i2i", "--pool-size", "16", "--cond-dropout", "0.3", "--out-snapshots", "snaps"]),
    "finetune": (["t2i.train", "t2i.cond_dropout", "t2i.snapshot_every", "t2i.long_caption_fraction", "pretrain.model"],
                 ["--ft", "lumos_i2i-t5-mixed-n0", "--prior", "prior", "--out-snapshots", "snaps", "--text", "TEXT"]),
    "finetune-stage": (["t2i.stages.0.train", "t2i.cond_dropout", "t2i.long_caption_fraction", "pretrain.model"],
                       ["--ft", "lumos_i2i-t5-mixed-n0", "--stage", "2", "--init", "stage1", "--text", "TEXT"]),
    "nvs-train": (["nvs.train", "nvs.cond_dropout", "nvs.encoder", "nvs.snapshot_every", "nvs.prediction_type",
                   "pretrain.model"], ["--prior", "prior", "--prior-kind", "i2i", "--out-snapshots", "snaps"]),
    "i2v-train": (["i2v.train", "i2v.cond_dropout", "i2v.encoder", "pretrain.model"],
                  ["--prior", "prior", "--prior-kind", "i2i"]),
}
# A run's overrides of pretrain.train are a train block too.
RUN_OVERRIDES = {"steps": 7, "lr": 2e-3, "loader_workers": 2, "log_every": 3}


@pytest.fixture(scope="module")
def smoke():
    return load_config("smoke")


def _inputs(folder):
    """Two input folders (features, text) with an index each."""
    for name in INPUT_ARGS:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "index.json").write_text("{}")
    return folder


def _received(smoke, tmp_path, name):
    """(config slice as the command receives it from `setup`, its parsed flags)."""
    keys, flags = COMMANDS[name]
    cfg = config_slice(smoke, *keys)
    if name == "pretrain":
        cfg["pretrain.runs.lumos_i2i"]["train"] = dict(RUN_OVERRIDES)
    _inputs(tmp_path)
    flags = [f.replace("TEXT", str(tmp_path / "text")) for f in flags]
    outs = [a for k in ("model", "raw", "curve", "plot", "summary") for a in (f"--out-{k}", str(tmp_path / k))]
    args = build_parser().parse_args([name.removesuffix("-stage"), "--cfg", json.dumps(cfg), "--features",
                                      str(tmp_path / "features"), "--state", str(tmp_path / "state"), "--threads", "1",
                                      *outs, *flags])
    return setup(args)[0], args


def _leaves(value, path):
    """The paths of every setting in `value` (nested dicts and lists)."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _other(value):
    """A value different from `value`, of its kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 1]
    return 1 if value is None else {"other": 1}


def _changed(cfg, path):
    cfg = copy.deepcopy(cfg)
    node = cfg
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = _other(node[path[-1]])
    return cfg


def _in_train_block(path):
    """Whether the setting at `path` is a field of a train block (`t2i.train`, a run's `train`)."""
    parent = path[-2] if len(path) > 2 else path[0].rsplit(".", 1)[-1]
    return len(path) > 1 and parent == "train"


def _is_not_weight(path):
    """A global key of the excluded few, or an excluded field of a train block."""
    return path[0] in NOT_WEIGHT_GLOBALS if len(path) == 1 else _in_train_block(path) and path[-1] in NOT_WEIGHTS


def test_the_excluded_settings_are_the_named_few():
    assert set(TrainSettings.NOT_WEIGHT_FIELDS) == NOT_WEIGHTS
    assert set(NOT_WEIGHT_KEYS) == NOT_WEIGHT_GLOBALS
    assert set(NOT_WEIGHT_ARGS) == NOT_WEIGHT_FLAGS | {"func"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_weight_setting_of_the_slice_keys_the_state(smoke, tmp_path, name):
    """Each setting of the slice, one at a time: a new key unless it is one of the named few."""
    cfg, args = _received(smoke, tmp_path, name)
    base = resume_key(cfg, args)
    assert resume_key(copy.deepcopy(cfg), args) == base  # deterministic
    paths = list(_leaves(cfg, ()))
    fields = {f.name for f in dataclasses.fields(TrainSettings)} - {"key"}
    assert fields <= {p[-1] for p in paths if _in_train_block(p)}  # every field of the train block is tried
    for path in paths:
        same = resume_key(_changed(cfg, path), args) == base
        assert same == _is_not_weight(path), f"{name}: changing {'.'.join(map(str, path))} " + (
            "keeps the key" if same else "changes the key")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_weight_flag_keys_the_state(smoke, tmp_path, name):
    """Each flag, one at a time: a new key unless it says where things go, threads or when to stop."""
    cfg, args = _received(smoke, tmp_path, name)
    base = resume_key(cfg, args)
    moved = _inputs(tmp_path / "moved")  # the same inputs elsewhere, written at the same time
    for kind in INPUT_ARGS:
        stamp = (tmp_path / kind / "index.json").stat().st_mtime_ns
        os.utime(moved / kind / "index.json", ns=(stamp, stamp))
    for flag, value in vars(args).items():
        if flag == "func":
            continue
        new = str(moved / flag) if flag in INPUT_ARGS else _other(value)
        same = resume_key(cfg, type(args)(**{**vars(args), flag: new})) == base
        assert same == (flag in NOT_WEIGHT_FLAGS), f"{name}: changing --{flag} " + (
            "keeps the key" if same else "changes the key")


@pytest.mark.parametrize("name", ["finetune", "pretrain"])
def test_new_input_features_key_a_fresh_state(smoke, tmp_path, name):
    cfg, args = _received(smoke, tmp_path, name)
    base = resume_key(cfg, args)
    for kind in (INPUT_ARGS if name == "finetune" else INPUT_ARGS[:1]):
        os.utime(tmp_path / kind / "index.json", ns=(0, 123 + len(kind)))
        assert resume_key(cfg, args) != base, kind
        base = resume_key(cfg, args)


@pytest.mark.parametrize("name, module, function", [
    ("pretrain", "lumos.tasks.i2i", "pretrain"), ("finetune", "lumos.tasks.t2i", "finetune"),
    ("finetune-stage", "lumos.tasks.t2i", "finetune"), ("nvs-train", "lumos.tasks.nvs", "finetune_nvs"),
    ("i2v-train", "lumos.tasks.i2v", "finetune_i2v")])
def test_each_command_trains_in_the_state_folder_of_its_key(smoke, tmp_path, monkeypatch, capsys, name, module,
                                                            function):
    """The command hands its trainer `--state/<resume key>` of the slice and flags it received."""
    import importlib

    cfg, args = _received(smoke, tmp_path, name)
    seen = []
    monkeypatch.setattr(importlib.import_module(module), function,
                        lambda *a, **kw: seen.extend(x for x in a if str(x).startswith(args.state)) or {"steps": 0})
    args.func(args)
    assert seen == [state_folder(args, cfg)] and seen[0].endswith(resume_key(cfg, args))
