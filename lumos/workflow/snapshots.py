"""The EMA snapshots a training run keeps, named `step-<6 digits>` (`lumos.workflow.names`): the
points of the curves against training steps (the T2I figures, Figure 5, the ablation figures)."""

from __future__ import annotations

from lumos.workflow.names import parse_run, snapshot_name


def snapshot_steps(steps: int, every: int) -> list[int]:
    """The steps at which a run of `steps` steps keeps an EMA snapshot: every `every`, and the last."""
    return sorted({*range(every, steps + 1, every), steps})


def snapshot_names(steps: int, every: int) -> list[str]:
    """The snapshot folder names of `snapshot_steps`."""
    return [snapshot_name(s) for s in snapshot_steps(steps, every)]


def t2i_snapshots(config: dict) -> list[str]:
    """The snapshots of a T2I fine-tune (`t2i.snapshot_every`)."""
    return snapshot_names(config["t2i"]["train"]["steps"], config["t2i"]["snapshot_every"])


def nvs_snapshots(config: dict) -> list[str]:
    """The snapshots of an NVS fine-tune, Figure 5's points (`nvs.snapshot_every`; unset: the last
    step only)."""
    steps = config["nvs"]["train"]["steps"]
    return snapshot_names(steps, config["nvs"].get("snapshot_every", steps))


def pretrain_snapshots(config: dict, run: str) -> list[int]:
    """The snapshot steps of a pretrain run (its own `train.steps` when it overrides them), every
    `pretrain.snapshot_every`."""
    block = config["pretrain"]["runs"][parse_run(run)["base"]]
    steps = block.get("train", {}).get("steps", config["pretrain"]["train"]["steps"])
    return snapshot_steps(steps, config["pretrain"]["snapshot_every"])
