"""Diffusion training on cached features, with accelerate.

One loop serves I2I pretraining and the fine-tunes: AdamW with linear warm-up then a
constant learning rate, EMA of the weights (with warm-up), gradient clipping and accumulation,
mixed precision on GPUs, checkpoints every `checkpoint_every` steps and resume after a kill.

Resumable state lives in `state_dir`, *outside* the rule's declared outputs (Snakemake deletes
those before a job runs): `state_dir/checkpoint-<step>/` holds accelerate's state (model,
optimiser, scheduler, RNG) plus the EMA (batches and noise are a function of the step, so the
streaming loader simply starts at the resumed step); `state_dir/loss.csv` the curve.
While a run trains, its main process holds `state_dir/LOCK` (`lumos.training.lock`): a second trainer
on the same folder stops at once instead of overwriting the first one's checkpoints.
The declared outputs are written only when training finishes. A training command names its
state folder by the settings its weights depend on (`lumos.training.resume`).

`train_diffusion` reads as its phases, each a function below it: `_set_up` (accelerator,
optimiser, EMA, sampler), `_resume` (the newest complete checkpoint), `_stop_signals`,
`_train_steps` (per step: `_step`, the loss checks `_watch_loss` / `_check_losses`, `_log_row`,
the EMA snapshot, `_checkpoint`), `_write_outputs`; `_Run` holds what they share.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import math
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lumos.models.guidance import guided_training_losses
from lumos.training.loader import BatchSampler, TensorRows, step_loader
from lumos.training.lock import state_lock
from lumos.training.rows import TRAINER_KEYS
from lumos.settings import TrainSettings
from lumos.utils import fault_point, log, progress


class EMA(torch.nn.Module):
    """Exponential moving average of a model's parameters, with optional warm-up:
    decay_n = min(decay, (1 + n) / (10 + n)), so a short run's EMA is not stuck near the init.

    Kept rather than diffusers' `EMAModel`, which gives other weights with the warm-up every preset
    uses: its first update copies the weights (decay 0, where this one's is 0.1), and its n-th
    decay is this one's (n+1)-th (measured on a tiny MLP, 6 AdamW steps: 2.0e-6 apart with
    update_after_step=0, 9.9e-4 with -1). Without warm-up only `EMAModel(foreach=True,
    update_after_step=-1, min_decay=decay)` is bit-identical. This one also copies the buffers,
    keeps a whole model to save and sample, and is the module existing checkpoints hold."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool):
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._count: int | None = None  # num_updates on the host: reading the buffer on a GPU waits for it

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._count = None  # re-read num_updates once after a resume
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        if self._count is None:
            self._count = int(self.num_updates)
        n = self._count
        d = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        ema, params = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        if all(e.dtype == p.dtype for e, p in zip(ema, params)):
            torch._foreach_lerp_(ema, params, 1 - d)  # one multi-tensor kernel on a GPU; lerp_ per tensor on the CPU
        else:
            for e, p in zip(ema, params):
                e.lerp_(p.to(e.dtype), 1 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
        self.num_updates += 1
        self._count += 1


def latest_checkpoint(state_dir: Path) -> Path | None:
    """The newest complete checkpoint folder (one with a DONE marker), if any."""
    done = [p for p in state_dir.glob("checkpoint-*") if (p / "DONE").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


# -----------------------------------------------------------------------------------------------
# The training-efficiency switches (`compile`, `fused_adamw`, `attention` of a train block), shared
# with `lumos bench --gpu`, which measures each.
# -----------------------------------------------------------------------------------------------

# SDPA backends per `attention` setting, in priority order: flash and cudnn fall back to the
# memory-efficient kernel where they cannot run (a mask over padded condition tokens, fp32).
SDPA_BACKENDS = {
    "flash": ("FLASH_ATTENTION", "EFFICIENT_ATTENTION"),
    "cudnn": ("CUDNN_ATTENTION", "EFFICIENT_ATTENTION"),
    "efficient": ("EFFICIENT_ATTENTION",),
    "math": ("MATH",),
}
CPU_ATTENTION = ("auto", "flash", "math")  # settings with a CPU kernel (flash: torch's CPU flash attention)
COMPILE_BACKEND = "inductor"  # torch.compile's backend (tests on the CPU swap in "aot_eager")


def attention_backend(name: str):
    """A (single-use) context in which every `F.scaled_dot_product_attention` (the DiT's self- and
    cross-attention) runs on the SDPA backend `name` (`auto`: no constraint, torch's choice)."""
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, b) for b in SDPA_BACKENDS[name]], set_priority=True)


def check_attention(name: str, device, key: str) -> None:
    """Stop early, naming the config key, when the attention backend has no kernel on `device`."""
    if torch.device(device).type == "cpu" and name not in CPU_ATTENTION:
        raise ValueError(f"config key '{key}.attention': {name!r} has no CPU kernel; on the CPU use one of "
                         f"{list(CPU_ATTENTION)}")


def compiles_on(device, key: str) -> bool:
    """Whether `compile: true` compiles on `device`: not on the CPU with inductor, where its minutes
    of compilation (DiT-XL/2: over 9 minutes before the first step) outweigh its gain (1.08-1.16x
    per DiT-T/2 step); the step then runs eagerly, said in the log. Other backends (the tests'
    aot_eager) compile everywhere."""
    if torch.device(device).type == "cpu" and COMPILE_BACKEND == "inductor":
        log.info("%s.compile: skipped on the CPU (inductor's compile time outweighs its gain there); eager steps",
                 key)
        return False
    return True


def log_compile_time(ran: int, since: float, on_gpu: bool) -> float:
    """Log the wall time since `since` of the first step (compilation included) or the second
    (compiled); returns now."""
    if on_gpu:
        torch.cuda.synchronize()
    now = time.time()
    if ran == 1:
        log.info("compile: the first step took %.1f s (torch.compile's compilation included)", now - since)
    else:
        log.info("compile: the second step took %.3f s (compiled)", now - since)
    return now


def compile_model(model: torch.nn.Module, mode: str = "default") -> torch.nn.Module:
    """Compile `model`'s forward in place (`nn.Module.compile`): parameters, state dict and saved
    weights keep their names, so checkpoints and outputs are the same files as without it."""
    model.compile(backend=COMPILE_BACKEND, **({"mode": mode} if COMPILE_BACKEND == "inductor" else {}))
    return model


def adamw(params, lr: float, weight_decay: float, fused: bool = False) -> torch.optim.AdamW:
    """The run's AdamW; `fused` updates every parameter in one kernel (torch has fused AdamW on
    CUDA and the CPU); otherwise torch's default implementation (foreach on CUDA, a loop on the CPU)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True if fused else None)


class StepNoise:
    """A training step's timesteps and noise, drawn from the step's generator right after its rows
    (`BatchSampler.next_bucket`): the loader makes them with the batch, ahead of the step, and on a
    GPU they travel pinned and asynchronously with it."""

    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps

    def __call__(self, batch: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
        x0 = batch["x0"]
        t = torch.randint(0, self.num_timesteps, (x0.shape[0],), generator=gen)
        draws = {"t": t, "noise": torch.randn(x0.shape, generator=gen)}
        if "enc_cls" in batch:  # a REG run's class token is noised at the same t (lumos.models.guidance)
            draws["token_noise"] = torch.randn(batch["enc_cls"].shape, generator=gen)
        return draws


@dataclass(frozen=True)
class TrainOutputs:
    """Where a finished run writes what its rule declares: EMA weights, raw weights, loss curve
    (CSV + PNG), the summary and, for fine-tunes, the EMA snapshots of the figure curves."""

    model: str
    raw: str
    curve: str
    plot: str
    summary: str
    snapshots: str | None = None

    @classmethod
    def in_folder(cls, folder, snapshots: bool = False) -> "TrainOutputs":
        """The standard names inside one run folder (library use and tests)."""
        f = Path(folder)
        return cls(str(f / "model"), str(f / "model_raw"), str(f / "loss.csv"), str(f / "loss.png"),
                   str(f / "train_summary.json"), str(f / "snapshots") if snapshots else None)


def train_diffusion(model, latents, cond: torch.Tensor | None, cond_mask: torch.Tensor | None,
                    cfg: TrainSettings | dict, outputs: TrainOutputs | str, state_dir: str, seed: int = 0,
                    device: str = "cpu", stop_after: int | None = None, cleanup_state: bool = False,
                    snapshot_every: int | None = None, summary_extra: dict | None = None,
                    guidance: dict | None = None) -> dict:
    """Train `model` to denoise latents given their condition; write EMA and raw weights to `outputs`.

    `latents` is a row source (`lumos.training.rows.RowSource`; the pretrain and fine-tune paths pass one over the
    feature store, with `cond` and `cond_mask` None), or in-memory tensors `latents`, `cond`,
    `cond_mask` (tests, diagnostics), each of which may also be a list with one entry per
    aspect-ratio bucket (latents of different sizes). Each step trains on a batch from one
    bucket. Batches are read by a DataLoader (`cfg.loader_workers` processes, `cfg.prefetch`
    batches each; 0: in this process), each rank its own rows, from the resumed step on; they
    depend only on (seed, rank, step), so the weights do not depend on the worker count.

    `cfg` is a `TrainSettings` (a plain dict is validated as `pretrain.train`, schema defaults
    filled). `outputs` names every file the run writes (`TrainOutputs`; a folder means the
    standard names inside it).

    The GPU switches of `cfg` (`compile`, `fused_adamw`, `attention`, `nan_check_every`; see
    config/schema.yaml) change how a step is computed, not what: on the CPU their defaults are
    the plain eager step, and no step reads a value back from a GPU except at the loss checks
    and logged rows (timesteps and noise come with the batch, prefetched and pinned).

    `snapshot_every` also saves the EMA weights every that many steps (kept in the state folder
    while training, moved to `outputs.snapshots/step-<n>` at the end): the points of the
    fine-tuning curves.
    `stop_after` ends this invocation after that many steps (after checkpointing), as a kill
    would; a later call with the same `state_dir` resumes. SIGUSR1/SIGTERM do the same.
    `cleanup_state` removes `state_dir` once the outputs are written (the run is complete).
    `guidance` (a REPA / REG run's blocks, `RunSettings.guidance`) adds their loss terms to the
    step's (`lumos.models.guidance.guided_training_losses`).
    Returns the summary (steps, final loss, images/s, plus `summary_extra`), written once.

    The phases, each a function below: set-up, resume, the steps (each: the step, the loss
    checks, the logged row, snapshot and checkpoint due), the outputs.
    """
    cfg = TrainSettings.from_config(cfg, "pretrain.train")
    if isinstance(outputs, (str, Path)):
        outputs = TrainOutputs.in_folder(outputs, snapshots=bool(snapshot_every))
    run = _set_up(model, latents, cond, cond_mask, cfg, Path(state_dir), seed, device)
    run.guidance = guidance
    with state_lock(run.state, hold=run.accel.is_main_process):
        _resume(run)
        with _stop_signals() as stop:
            stopped_at = _train_steps(run, stop, stop_after, snapshot_every)
        if stopped_at is not None:
            log.warning("stopped at step %s after a stop request; rerun to resume", stopped_at)
            return {"stopped_at": stopped_at}
        return _write_outputs(run, outputs, snapshot_every, cleanup_state, summary_extra)


@dataclass
class _Run:
    """One invocation of `train_diffusion`: what `_set_up` makes (fixed for the run), then the
    counters that `_resume` starts and each step advances."""

    cfg: TrainSettings
    accel: Any  # the accelerate.Accelerator
    model: torch.nn.Module  # as prepared by accelerate (wrapped when there are several processes)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: EMA
    diffusion: Any  # the GaussianDiffusion whose loss is trained
    prediction_type: str
    source: Any  # the row source (lumos.training.rows.RowSource)
    sampler: BatchSampler
    state: Path
    compiled: bool
    check_every: int  # steps between loss checks (`TrainSettings.nan_check_interval`)
    step: int = 0  # the step being trained; before the loop, the one this invocation starts at
    rows: list[dict] = field(default_factory=list)  # the logged rows of the loss curve
    window: torch.Tensor | None = None  # this rank's sums of loss, mse, vb (and `terms`) since the last row
    window_steps: int = 0
    seen: int = 0  # images trained on by this invocation, all processes together
    ran: int = 0  # steps run by this invocation
    unchecked: int = 0  # the first step no loss check has covered yet
    nonfinite: torch.Tensor | None = None  # on the device: a loss since `unchecked` was nan or inf
    agreed_stop: bool = False  # with several processes: the stop request agreed at the last check
    t0: float = 0.0  # when the steps began
    step_end: float = 0.0  # when the last timed step ended (compile times)
    guidance: dict | None = None  # a REPA / REG run's blocks (lumos.models.guidance)

    @property
    def terms(self) -> tuple:
        """The guidance terms a row logs beside the loss: "repa" and / or "reg", those switched on."""
        return tuple(k for k, block in (self.guidance or {}).items() if block)

    @property
    def on_gpu(self) -> bool:
        return self.accel.device.type == "cuda"


def _set_up(model, latents, cond, cond_mask, cfg: TrainSettings, state: Path, seed: int, device) -> _Run:
    """Set-up: the accelerator (mixed precision, accumulation, processes) and the seed, the
    optimiser with its warm-up schedule, the EMA (an eager copy, made before any compilation),
    the model prepared for the processes, and the sampler of each step's rows."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from lumos.diffusion.gaussian import GaussianDiffusion, prediction_type_of

    state.mkdir(parents=True, exist_ok=True)
    accel = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                        cpu=str(device) == "cpu")
    set_seed(seed)
    check_attention(cfg.attention, accel.device, cfg.key)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    diffusion = GaussianDiffusion()
    prediction_type = prediction_type_of(model)  # before any wrapping
    opt = adamw(model.parameters(), cfg.lr, cfg.weight_decay, fused=cfg.fused_adamw)
    warmup = cfg.warmup_steps
    # Not diffusers' get_constant_schedule_with_warmup: its factor is s / warmup, so its first update
    # runs at lr 0 and every warm-up step one step behind this one (other weights; equal only at warmup 0).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    compiled = cfg.compile and compiles_on(accel.device, cfg.key)
    if compiled:  # after the EMA's copy, which stays an eager model
        compile_model(model, cfg.compile_mode)
    # The scheduler is stepped by us once per optimiser update (accelerate would step a prepared
    # one once per process), and checkpointed with the EMA.
    model, opt = accel.prepare(model, opt)
    ema.to(accel.device)
    per_process = _per_process_batch(cfg, accel)
    source = latents if hasattr(latents, "batch") else TensorRows(latents, cond, cond_mask)
    sampler = BatchSampler(source.sizes, per_process, seed, accel.process_index)
    accel.register_for_checkpointing(sched, ema)
    return _Run(cfg, accel, model, opt, sched, ema, diffusion, prediction_type, source, sampler, state, compiled,
                cfg.nan_check_interval(accel.device.type))


def _per_process_batch(cfg: TrainSettings, accel) -> int:
    """Each process's rows per accumulation step: `batch_size` must split evenly among them."""
    per_process, rest = divmod(cfg.batch_size, accel.num_processes * accel.gradient_accumulation_steps)
    if rest or not per_process:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {accel.num_processes} processes x "
                         f"{accel.gradient_accumulation_steps} accumulation steps (config key {cfg.key}.batch_size)")
    return per_process


def _resume(run: _Run) -> None:
    """Resume: load the newest complete checkpoint of the state folder, if any (model, optimiser,
    scheduler, EMA, RNG states), with the rows logged up to it and this rank's loss sums since
    the last row; the counters start at its step (at 0 without one)."""
    accel, state = run.accel, run.state
    run.window = torch.zeros(3 + len(run.terms), device=accel.device)
    last = latest_checkpoint(state)
    if last is not None:
        accel.load_state(str(last))
        run.step = int(last.name.split("-")[1])
        log.info("resuming from %s at step %d", last, run.step)
        # the curve up to the resumed step (state/loss.csv: checkpoints of older versions)
        curve = last / "loss.csv" if (last / "loss.csv").exists() else state / "loss.csv"
        if curve.exists():
            with open(curve) as f:
                run.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= run.step]
        window = last / f"loss_window_{accel.process_index}.pt"
        if window.exists():
            saved = torch.load(window)
            run.window, run.window_steps = saved["sums"].to(accel.device), saved["steps"]
    run.unchecked = run.step
    run.nonfinite = torch.zeros((), dtype=torch.bool, device=accel.device)


@contextlib.contextmanager
def _stop_signals():
    """While training, SIGUSR1 and SIGTERM set the yielded flag (`stop["flag"]`): the run
    checkpoints at the next step and stops. The previous handlers come back afterwards."""
    stop = {"flag": False}

    def request_stop(signum, _frame):
        log.warning("signal %d: checkpointing at the next step and exiting", signum)
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)


def _train_steps(run: _Run, stop: dict, stop_after: int | None, snapshot_every: int | None) -> int | None:
    """The steps from the resumed one to `cfg.steps`, each: the step on its batch (read ahead by
    the loader, with its timesteps and noise), then the loss check, logged row, EMA snapshot and
    checkpoint that are due. Returns the step at which a stop request (a signal, `stop_after`)
    ended this invocation, after its checkpoint; None once the run is complete.

    Checking the loss waits for the device: every step on the CPU (free there), else every
    `check_every` steps on a flag the steps accumulate, and always before a row, snapshot or
    checkpoint is written. Between checks nothing reads a value back from the device."""
    cfg, accel = run.cfg, run.accel
    total = cfg.steps
    bar = progress(range(run.step, total), initial=run.step, total=total, desc="train",
                   disable=not accel.is_main_process)
    run.t0 = run.step_end = time.time()
    batches = iter(step_loader(run.source, run.sampler, run.step, total, cfg.loader_workers, cfg.prefetch,
                               pin_memory=run.on_gpu, draws=StepNoise(run.diffusion.num_timesteps)))
    try:
        for step in bar:
            run.step = step
            batch = {k: v.to(accel.device, non_blocking=run.on_gpu) for k, v in next(batches).items()}
            loss, losses = _step(run, batch)
            _tally(run, batch["x0"], loss, losses)
            done = step + 1
            logging, snapshot, checkpoint = _due(run, snapshot_every)
            due = logging or snapshot or checkpoint or run.check_every == 1 or done - run.unchecked >= run.check_every
            stopping = _stop_requested(run, stop, due) or bool(stop_after and run.ran >= stop_after)
            if run.check_every > 1 and (due or stopping):
                _check_losses(run)
            if logging:
                _log_row(run, bar)
            if snapshot and accel.is_main_process:
                run.ema.model.save_pretrained(run.state / "snapshots" / f"step-{done:06d}")
            if checkpoint or stopping:
                _checkpoint(run, done)
            if done < total and stopping:
                return done
    finally:
        del batches  # stops the loader's workers
    return None


def _step(run: _Run, batch: dict) -> tuple[torch.Tensor, dict]:
    """The step: the diffusion loss of the batch, its backward, gradient clipping and the
    optimiser (at the end of each accumulation), then the learning-rate schedule and the EMA.
    Returns the mean loss and the per-sample losses (loss, mse, vb)."""
    cfg, accel, model = run.cfg, run.accel, run.model
    x0, t, noise = batch["x0"], batch["t"], batch["noise"]
    with accel.accumulate(model):
        # every other key of the batch is a model input (the source's batch_keys beyond
        # lumos.training.rows.TRAINER_KEYS: see lumos.training.rows.RowSource); a `loss_mask` weights the loss
        kwargs = {k: v for k, v in batch.items() if k not in TRAINER_KEYS}
        # the attention backend is chosen in the forward; the backward runs its kernels
        with attention_backend(cfg.attention), accel.autocast():
            if run.guidance:  # REPA / REG: their terms added to the diffusion loss
                losses = guided_training_losses(run.diffusion, model, x0, t, noise, kwargs, run.guidance,
                                                batch.get("enc_patch"), batch.get("enc_cls"), batch.get("token_noise"),
                                                prediction_type=run.prediction_type, mask=batch.get("loss_mask"),
                                                snr_gamma=cfg.snr_gamma)
            else:
                losses = run.diffusion.training_losses(model, x0, t, model_kwargs=kwargs, noise=noise,
                                                       mask=batch.get("loss_mask"),
                                                       prediction_type=run.prediction_type, snr_gamma=cfg.snr_gamma)
        loss = losses["loss"].mean()
        _watch_loss(run, loss)
        accel.backward(loss)
        if accel.sync_gradients and cfg.grad_clip:
            accel.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        run.opt.step()
        run.opt.zero_grad(set_to_none=True)
    if accel.sync_gradients:
        run.sched.step()
        run.ema.update(accel.unwrap_model(model))
    return loss, losses


def _watch_loss(run: _Run, loss: torch.Tensor) -> None:
    """Check (within the step, before its backward): with a check every step, a nan or inf loss
    stops the run at once; otherwise it only sets the device-side flag that `_check_losses` reads."""
    if run.check_every == 1:
        if not torch.isfinite(loss):
            raise _loss_error(run, f"{loss.item()} at step {run.step}")
    else:
        run.nonfinite |= ~torch.isfinite(loss.detach())


def _check_losses(run: _Run) -> None:
    """Check (every `check_every` steps, and before anything is written): stop if a loss since the
    last check was nan or inf, naming the steps it lies between."""
    if bool(run.nonfinite):
        raise _loss_error(run, f"nan or inf at a step from {run.unchecked} to {run.step}",
                          f" ({run.cfg.key}.nan_check_every: 1 stops at the exact step)")
    run.unchecked = run.step + 1


def _loss_error(run: _Run, what: str, hint: str = "") -> FloatingPointError:
    """The error of a bad loss: where it was, the last good checkpoint, what to change."""
    good = latest_checkpoint(run.state)
    return FloatingPointError(f"loss is {what}; stopping. Last good checkpoint: {good if good else 'none yet'}. "
                              f"Lower {run.cfg.key}.lr or check the features{hint}.")


def _tally(run: _Run, x0: torch.Tensor, loss: torch.Tensor, losses: dict) -> None:
    """After a step: count its images and itself, log the first two steps' times when compiled,
    and add its losses to the window the next logged row averages."""
    run.seen += x0.shape[0] * run.accel.num_processes
    run.ran += 1
    if run.compiled and run.ran <= 2:
        run.step_end = log_compile_time(run.ran, run.step_end, run.on_gpu)
    terms = [losses[k].mean() for k in run.terms]
    run.window += torch.stack([loss, losses["mse"].mean(), losses["vb"].mean(), *terms]).detach().float()
    run.window_steps += 1


def _due(run: _Run, snapshot_every: int | None) -> tuple[bool, bool, bool]:
    """What the current step writes: (a logged row, every `log_every` steps; an EMA snapshot, every
    `snapshot_every`; a checkpoint, every `checkpoint_every`), each also at the last step."""
    step, total = run.step, run.cfg.steps
    done = step + 1
    logging = step % run.cfg.log_every == 0 or step == total - 1
    snapshot = bool(snapshot_every) and (done % snapshot_every == 0 or done == total)
    return logging, snapshot, done % run.cfg.checkpoint_every == 0 or done == total


def _stop_requested(run: _Run, stop: dict, due: bool) -> bool:
    """Whether a signal asked the run to stop. With several processes every rank must stop at the
    same step (the checkpoint is collective): at each step with a check due they agree (the max
    over ranks), and act on the last agreement in between."""
    accel = run.accel
    if accel.num_processes == 1:
        return stop["flag"]
    if due:
        flag = accel.reduce(torch.tensor(float(stop["flag"]), device=accel.device), "max")
        run.agreed_stop = bool(flag.item())
    return run.agreed_stop


def _log_row(run: _Run, bar) -> None:
    """Logging: a row of the loss curve, the mean over the steps since the last row and over the
    processes (every rank's batch counts)."""
    mean_loss, mse, vb, *terms = run.accel.reduce(run.window / run.window_steps, "mean").tolist()
    run.window.zero_()
    run.window_steps = 0
    row = {"step": run.step + 1, "loss": f"{mean_loss:.6f}", "mse": f"{mse:.6f}", "vb": f"{vb:.6f}",
           **{k: f"{v:.6f}" for k, v in zip(run.terms, terms)}, "lr": f"{run.sched.get_last_lr()[0]:.3e}"}
    run.rows.append(row)
    bar.set_postfix(loss=row["loss"])
    if run.accel.is_main_process:
        log.info("step %d loss %s mse %s", run.step + 1, row["loss"], row["mse"])


def _checkpoint(run: _Run, at: int) -> None:
    """A checkpoint: every process saves its part (RNG states are per process, so are its loss
    sums); rank 0 adds the logged rows, then marks it complete. A kill at any point leaves either
    a complete checkpoint or one without DONE, which a resume ignores. Keeps the newest two."""
    accel, state = run.accel, run.state
    path = state / f"checkpoint-{at}"
    accel.save_state(str(path))
    # this rank's loss sums since the last logged row: the next row after a resume averages
    # the same steps as an uninterrupted run's
    torch.save({"sums": run.window.cpu(), "steps": run.window_steps}, path / f"loss_window_{accel.process_index}.pt")
    if accel.is_main_process:  # the logged rows so far, part of the checkpoint (before DONE)
        _write_rows(run.rows, path / "loss.csv")
    accel.wait_for_everyone()
    if accel.is_main_process:
        (path / "DONE").write_text(str(at))
        fault_point("train")
        for old in sorted(state.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
            shutil.rmtree(old, ignore_errors=True)
    accel.wait_for_everyone()


def _write_outputs(run: _Run, outputs: TrainOutputs, snapshot_every: int | None, cleanup_state: bool,
                   summary_extra: dict | None) -> dict:
    """Outputs of a complete run (rank 0): EMA and raw weights, the loss curve, the summary, the
    EMA snapshots; then, with `cleanup_state`, the state folder goes. Returns the summary."""
    elapsed = time.time() - run.t0
    rows = run.rows
    summary = {"steps": run.cfg.steps, "resumed_from": run.step + 1 - run.ran,
               "final_loss": float(rows[-1]["loss"]) if rows else math.nan,
               "images_per_s": run.seen / max(elapsed, 1e-9), "seconds": elapsed}
    summary.update(summary_extra or {})
    if run.accel.is_main_process:
        run.ema.model.save_pretrained(outputs.model)
        run.accel.unwrap_model(run.model).save_pretrained(outputs.raw)
        for path in (outputs.curve, outputs.plot, outputs.summary):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        _write_rows(rows, outputs.curve)
        Path(outputs.summary).write_text(json.dumps(summary, indent=1))
        plot_loss(rows, outputs.plot)
        if snapshot_every and outputs.snapshots:
            shutil.rmtree(outputs.snapshots, ignore_errors=True)
            shutil.copytree(run.state / "snapshots", outputs.snapshots)
        if cleanup_state:
            shutil.rmtree(run.state, ignore_errors=True)
    return summary


def state_key(settings: dict, *input_files: Path) -> str:
    """A short hash of a run's settings and its input files' modification times (0: missing);
    `lumos.training.resume` derives a training command's settings."""
    stamps = (f.stat().st_mtime_ns if f.exists() else 0 for f in map(Path, input_files))
    blob = json.dumps(settings, sort_keys=True) + "".join(str(stamp) for stamp in stamps)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _write_rows(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["step", "loss", "mse", "vb", "lr"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_loss(rows: list[dict], path) -> None:
    """A loss-curve PNG (log scale) from the logged rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label="loss (mse + vb)")
    ax.plot([int(r["step"]) for r in rows], [float(r["mse"]) for r in rows], label="mse", alpha=0.7)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
