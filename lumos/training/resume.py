"""The resume key of a training command: which resumable state a run may continue.

A training command keeps its resumable state (`lumos.training.loop`: checkpoints, outside the rule's
declared outputs) in `--state/<resume key>`. A retry of the same job finds the same folder and
resumes; a run whose weights would differ finds a fresh one. The key is derived from what the
command received, not listed by hand, so a setting that a task adds keys its state by itself:

- the config slice of `--cfg` (every block the command reads, schema defaults filled), less the
  global keys `NOT_WEIGHT_KEYS` and, inside every train block, `TrainSettings.NOT_WEIGHT_FIELDS`
  (how batches are read, how often rows and checkpoints are written, how a step is computed);
- the command's flags, less `NOT_WEIGHT_ARGS` (its threads, where its state and outputs go, when
  this invocation stops, and where its inputs are);
- the modification time of each input folder's `index.json` (`INPUT_ARGS`): new features, a
  fresh state.
"""

from __future__ import annotations

from pathlib import Path

from lumos.settings import TrainSettings
from lumos.training.loop import state_key

# Global keys of every slice that do not change the weights: where the run computes, and the
# preset's name (the values the preset chose are in the slice themselves).
NOT_WEIGHT_KEYS = ("device", "preset")

# Input folders: the state is keyed by when their index was written, not by where they are.
INPUT_ARGS = ("features", "text")

# Flags that do not change the weights: argparse's own (`func`), `--cfg` (keyed entry by entry
# above), threads, the state folder itself, when this invocation stops, the declared outputs
# (`--out-snapshots` stays in: a fine-tune keeps EMA snapshots in its state only with it) and
# the input folders.
NOT_WEIGHT_ARGS = ("func", "cfg", "threads", "state", "stop_after", "out_model", "out_raw", "out_curve", "out_plot",
                   "out_summary", *INPUT_ARGS)


def weight_settings(cfg: dict, args) -> dict:
    """Everything a run's weights depend on, of the config slice `cfg` (as `setup` returned it)
    and the parsed flags `args` of its command: {"config": ..., "args": ...}."""
    config = {key: _weight_fields(tuple(key.split(".")), value) for key, value in cfg.items()
              if key not in NOT_WEIGHT_KEYS}
    flags = {name: value for name, value in vars(args).items() if name not in NOT_WEIGHT_ARGS}
    return {"config": config, "args": flags}


def resume_key(cfg: dict, args) -> str:
    """The resume key (12 hex digits) of the run `args` asks for with the config slice `cfg`:
    `weight_settings` and the modification times of its input folders' indexes, hashed."""
    inputs = [Path(getattr(args, name)) / "index.json" for name in INPUT_ARGS if getattr(args, name, None)]
    return state_key(weight_settings(cfg, args), *inputs)


def _weight_fields(path: tuple[str, ...], value):
    """`value`, found at config `path`, less `TrainSettings.NOT_WEIGHT_FIELDS` in every train block
    it holds or is (a block named `train`: `t2i.train`, a run's overrides `pretrain.runs.<run>.train`)."""
    if isinstance(value, list):
        return [_weight_fields((*path, str(i)), v) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    skip = TrainSettings.NOT_WEIGHT_FIELDS if path[-1] == "train" else ()
    return {k: _weight_fields((*path, k), v) for k, v in value.items() if k not in skip}
