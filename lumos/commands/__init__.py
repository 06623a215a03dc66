"""The `lumos` commands: thin adapters, one module per pipeline stage.

Each module has a `register(add)` function that declares its commands with `add(name, function,
**flags)` (see `lumos.cli`); a command parses its flags and `--cfg`, calls the package, and
writes what its rule declares. The helpers here are what every command shares.
"""

from __future__ import annotations

import json
from pathlib import Path


def setup(args, preset_keys: tuple[str, ...] = ()):
    """Logging, threads and seeds for a command; returns (config slice, torch device).

    `--cfg` is a config slice ({dotted key: value}, see `lumos.config.config_slice`), validated
    against the schema here, so a wrong value fails naming its key. `preset_keys` are taken from
    the full config of the slice's preset (tiny by default) when `--cfg` does not give them: the
    hand-run diagnostics need no `--cfg`.
    """
    from lumos.config import ConfigError, config_slice, load_config, validate_slice
    from lumos.utils import resolve_device, setup_logging, setup_torch

    setup_logging()
    try:
        cfg = json.loads(getattr(args, "cfg", None) or "{}")
    except json.JSONDecodeError as err:
        raise ConfigError(f"--cfg is not valid JSON: {err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError("--cfg must be a JSON object of {dotted config key: value}")
    missing = [k for k in preset_keys if k not in cfg]
    if missing:
        cfg = {**config_slice(load_config(cfg.get("preset", "tiny")), *missing), **cfg}
    cfg.setdefault("seed", 0)
    cfg.setdefault("device", "auto")
    validate_slice(cfg)
    setup_torch(getattr(args, "threads", None), cfg["seed"])
    return cfg, resolve_device(cfg["device"])


def write_json(path, obj) -> None:
    """Write `obj` as indented JSON (folders created; written beside, then renamed)."""
    from lumos.utils import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def optional_path(value: str) -> str | None:
    """argparse type: a folder, or 'none' (no model / from scratch) -> None."""
    return None if value == "none" else value


def train_outputs(add_flags) -> dict:
    """The flags naming every file a training run writes (the rule's declared outputs)."""
    req = {"required": True}
    return dict(out_model=("EMA weights folder", req), out_raw=("raw weights folder", req),
                out_curve=("loss curve CSV", req), out_plot=("loss curve PNG", req),
                out_summary=("train_summary.json", req), **add_flags)


def outputs_of(args):
    """The `TrainOutputs` of a command's `--out-*` flags."""
    from lumos.training.loop import TrainOutputs

    return TrainOutputs(args.out_model, args.out_raw, args.out_curve, args.out_plot, args.out_summary,
                        getattr(args, "out_snapshots", None))


def state_folder(args, cfg: dict) -> str:
    """A training command's resumable state folder: `--state/<resume key>`, the key derived from
    the config slice `cfg` it received (as `setup` returned it) and its flags (`lumos.training.resume`). A
    retry of the same job resumes; a changed setting or new features start afresh."""
    from lumos.training.resume import resume_key

    return str(Path(args.state) / resume_key(cfg, args))


EXIT_RESUMABLE = 75  # EX_TEMPFAIL: stopped after a checkpoint; run again to resume


def finish_training(summary: dict) -> None:
    """Print a run's summary; a run stopped after a checkpoint exits 75 so it is retried/requeued."""
    import sys

    print(json.dumps(summary))
    if "stopped_at" in summary:
        sys.exit(EXIT_RESUMABLE)
