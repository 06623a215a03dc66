"""Diffusion training on cached features, with accelerate.

One loop serves I2I pretraining (and later the fine-tunes): AdamW with linear warm-up then a
constant learning rate, EMA of the weights (with warm-up), gradient clipping and accumulation,
mixed precision on GPUs, checkpoints every `checkpoint_every` steps and resume after a kill.

Resumable state lives in `state_dir`, *outside* the rule's declared outputs (Snakemake deletes
those before a job runs): `state_dir/checkpoint-<step>/` holds accelerate's state (model,
optimiser, scheduler, RNG) plus the EMA (batches and noise are a function of the step, so the
streaming loader simply starts at the resumed step); `state_dir/loss.csv` the curve.
The declared outputs are written only when training finishes.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lumos.loader import TensorRows, step_loader
from lumos.settings import TrainSettings
from lumos.utils import fault_point, log, progress


class BatchSampler:
    """Random batches whose randomness depends only on (seed, process, step): a resumed run, on
    any number of processes, draws exactly the batches (and noise) it would have drawn.

    `n` is the dataset size, or a list of bucket sizes (aspect-ratio buckets): then each step
    first draws a bucket with probability proportional to its size, and the batch comes from it."""

    def __init__(self, n, batch_size: int, seed: int, process: int = 0):
        self.sizes = list(n) if isinstance(n, (list, tuple)) else [n]
        self.batch_size, self.seed, self.process = batch_size, seed, process
        self.weights = torch.tensor(self.sizes, dtype=torch.float64)

    def next(self, step: int):
        """Indices for `step` and the generator the step's timesteps and noise come from."""
        _, idx, gen = self.next_bucket(step)
        return idx, gen

    def next_bucket(self, step: int):
        """(bucket, indices within it, generator) for `step`; bucket is 0 with a single dataset."""
        key = int(np.random.SeedSequence([self.seed, self.process, step]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(key)
        bucket = 0 if len(self.sizes) == 1 else int(torch.multinomial(self.weights, 1, generator=gen))
        return bucket, torch.randint(0, self.sizes[bucket], (self.batch_size,), generator=gen), gen


class EMA(torch.nn.Module):
    """Exponential moving average of a model's parameters, with optional warm-up:
    decay_n = min(decay, (1 + n) / (10 + n)), so a short run's EMA is not stuck near the init."""

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
        return {"t": t, "noise": torch.randn(x0.shape, generator=gen)}


class _StopRequested(Exception):
    pass


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
                    snapshot_every: int | None = None, summary_extra: dict | None = None) -> dict:
    """Train `model` to denoise latents given their condition; write EMA and raw weights to `outputs`.

    `latents` is a row source (`lumos.loader`; the pretrain and fine-tune paths pass one over the
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
    Returns the summary (steps, final loss, images/s, plus `summary_extra`), written once.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from lumos.diffusion.gaussian import GaussianDiffusion, prediction_type_of

    cfg = TrainSettings.from_config(cfg, "pretrain.train")
    if isinstance(outputs, (str, Path)):
        outputs = TrainOutputs.in_folder(outputs, snapshots=bool(snapshot_every))
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    accel = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=str(device) == "cpu",
    )
    set_seed(seed)
    check_attention(cfg.attention, accel.device, cfg.key)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    diffusion = GaussianDiffusion()
    prediction_type = prediction_type_of(model)  # before any wrapping
    opt = adamw(model.parameters(), cfg.lr, cfg.weight_decay, fused=cfg.fused_adamw)
    warmup = cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    compiled = cfg.compile and compiles_on(accel.device, cfg.key)
    if compiled:  # after the EMA's copy, which stays an eager model
        compile_model(model, cfg.compile_mode)
    # The scheduler is stepped by us once per optimiser update (accelerate would step a prepared
    # one once per process), and checkpointed with the EMA.
    model, opt = accel.prepare(model, opt)
    ema.to(accel.device)
    per_process, rest = divmod(cfg.batch_size, accel.num_processes * accel.gradient_accumulation_steps)
    if rest or not per_process:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {accel.num_processes} processes x "
                         f"{accel.gradient_accumulation_steps} accumulation steps (config key {cfg.key}.batch_size)")
    source = latents if hasattr(latents, "batch") else TensorRows(latents, cond, cond_mask)
    sampler = BatchSampler(source.sizes, per_process, seed, accel.process_index)
    accel.register_for_checkpointing(sched, ema)

    step = 0
    last = latest_checkpoint(state)
    if last is not None:
        accel.load_state(str(last))
        step = int(last.name.split("-")[1])
        log.info("resuming from %s at step %d", last, step)
    rows = []
    if last is not None:  # the curve up to the resumed step (state/loss.csv: checkpoints of older versions)
        curve = last / "loss.csv" if (last / "loss.csv").exists() else state / "loss.csv"
        if curve.exists():
            with open(curve) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]

    stop = {"flag": False}

    def request_stop(signum, _frame):
        log.warning("signal %d: checkpointing at the next step and exiting", signum)
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGUSR1, signal.SIGTERM)}

    def checkpoint(at: int):
        """Every process saves its part (RNG states are per process, so are its loss sums); rank 0
        adds the logged rows, then marks it complete: a kill at any point leaves either a complete
        checkpoint or one without DONE, which a resume ignores."""
        path = state / f"checkpoint-{at}"
        accel.save_state(str(path))
        # this rank's loss sums since the last logged row: the next row after a resume averages
        # the same steps as an uninterrupted run's
        torch.save({"sums": window.cpu(), "steps": window_steps}, path / f"loss_window_{accel.process_index}.pt")
        if accel.is_main_process:  # the logged rows so far, part of the checkpoint (before DONE)
            _write_rows(rows, path / "loss.csv")
        accel.wait_for_everyone()
        if accel.is_main_process:
            (path / "DONE").write_text(str(at))
            fault_point("train")
            for old in sorted(state.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
                shutil.rmtree(old, ignore_errors=True)
        accel.wait_for_everyone()

    total, every = cfg.steps, cfg.checkpoint_every
    log_every = cfg.log_every
    bar = progress(range(step, total), initial=step, total=total, desc="train", disable=not accel.is_main_process)
    t0, seen, ran = time.time(), 0, 0
    step_end = t0
    window, window_steps = torch.zeros(3, device=accel.device), 0  # running sums of loss, mse, vb between logged rows
    if last is not None and (last / f"loss_window_{accel.process_index}.pt").exists():
        saved = torch.load(last / f"loss_window_{accel.process_index}.pt")
        window, window_steps = saved["sums"].to(accel.device), saved["steps"]
    on_gpu = accel.device.type == "cuda"
    # Checking the loss waits for the device: every step on the CPU (free there), else every
    # `check_every` steps on a flag the steps accumulate, and always before a row, snapshot or
    # checkpoint is written. Between checks nothing reads a value back from the device.
    check_every = cfg.nan_check_interval(accel.device.type)
    nonfinite, unchecked = torch.zeros((), dtype=torch.bool, device=accel.device), step
    agreed_stop = False  # with several processes: the stop request they agreed on at the last check
    batches = iter(step_loader(source, sampler, step, total, cfg.loader_workers, cfg.prefetch, pin_memory=on_gpu,
                               draws=StepNoise(diffusion.num_timesteps)))
    try:
        for step in bar:
            batch = {k: v.to(accel.device, non_blocking=on_gpu) for k, v in next(batches).items()}
            x0, t, noise = batch["x0"], batch["t"], batch["noise"]
            with accel.accumulate(model):
                # every other input of the batch: cond, cond_mask, and for views concat, camera; a
                # `loss_mask` (videos: every frame but the given first one) weights the loss
                kwargs = {k: v for k, v in batch.items() if k not in ("x0", "t", "noise", "loss_mask")}
                # the attention backend is chosen in the forward; the backward runs its kernels
                with attention_backend(cfg.attention), accel.autocast():
                    losses = diffusion.training_losses(model, x0, t, model_kwargs=kwargs, noise=noise,
                                                       mask=batch.get("loss_mask"), prediction_type=prediction_type)
                loss = losses["loss"].mean()
                if check_every == 1:
                    if not torch.isfinite(loss):
                        good = latest_checkpoint(state)
                        raise FloatingPointError(
                            f"loss is {loss.item()} at step {step}; stopping. Last good checkpoint: "
                            f"{good if good else 'none yet'}. Lower {cfg.key}.lr or check the features."
                        )
                else:
                    nonfinite |= ~torch.isfinite(loss.detach())
                accel.backward(loss)
                if accel.sync_gradients and cfg.grad_clip:
                    accel.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
            if accel.sync_gradients:
                sched.step()
                ema.update(accel.unwrap_model(model))
            seen += x0.shape[0] * accel.num_processes
            ran += 1
            if compiled and ran <= 2:
                step_end = log_compile_time(ran, step_end, on_gpu)
            window += torch.stack([loss, losses["mse"].mean(), losses["vb"].mean()]).detach().float()
            window_steps += 1
            done = step + 1
            logging = step % log_every == 0 or step == total - 1
            snapshot = bool(snapshot_every) and (done % snapshot_every == 0 or done == total)
            due = check_every == 1 or done - unchecked >= check_every or logging or snapshot or done % every == 0 \
                or done == total
            if accel.num_processes > 1:  # every rank must stop at the same step (collective checkpoint)
                if due:
                    flag = accel.reduce(torch.tensor(float(stop["flag"]), device=accel.device), "max")
                    agreed_stop = bool(flag.item())
                requested = agreed_stop
            else:
                requested = stop["flag"]
            stopping = requested or bool(stop_after and ran >= stop_after)
            if check_every > 1 and (due or stopping):
                if bool(nonfinite):
                    good = latest_checkpoint(state)
                    raise FloatingPointError(
                        f"loss is nan or inf at a step from {unchecked} to {step}; stopping. Last good checkpoint: "
                        f"{good if good else 'none yet'}. Lower {cfg.key}.lr or check the features "
                        f"({cfg.key}.nan_check_every: 1 stops at the exact step)."
                    )
                unchecked = done
            if logging:  # log the mean over the steps since the last row
                # (and over the processes: every rank's batch counts)
                mean_loss, mse, vb = accel.reduce(window / window_steps, "mean").tolist()
                window.zero_()
                window_steps = 0
                row = {"step": step + 1, "loss": f"{mean_loss:.6f}", "mse": f"{mse:.6f}", "vb": f"{vb:.6f}",
                       "lr": f"{sched.get_last_lr()[0]:.3e}"}
                rows.append(row)
                bar.set_postfix(loss=row["loss"])
                if accel.is_main_process:
                    log.info("step %d loss %s mse %s", step + 1, row["loss"], row["mse"])
            if snapshot and accel.is_main_process:
                ema.model.save_pretrained(state / "snapshots" / f"step-{done:06d}")
            if done % every == 0 or done == total or stopping:
                checkpoint(done)
            if done < total and stopping:
                raise _StopRequested(done)
    except _StopRequested as s:
        log.warning("stopped at step %s after a stop request; rerun to resume", s.args[0])
        return {"stopped_at": int(s.args[0])}
    finally:
        del batches  # stops the loader's workers
        for s, h in old_handlers.items():
            signal.signal(s, h)

    elapsed = time.time() - t0
    summary = {"steps": total, "resumed_from": step + 1 - ran, "final_loss": float(rows[-1]["loss"]) if rows else math.nan,
               "images_per_s": seen / max(elapsed, 1e-9), "seconds": elapsed}
    summary.update(summary_extra or {})
    if accel.is_main_process:
        ema.model.save_pretrained(outputs.model)
        accel.unwrap_model(model).save_pretrained(outputs.raw)
        for path in (outputs.curve, outputs.plot, outputs.summary):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        _write_rows(rows, outputs.curve)
        Path(outputs.summary).write_text(json.dumps(summary, indent=1))
        plot_loss(rows, outputs.plot)
        if snapshot_every and outputs.snapshots:
            shutil.rmtree(outputs.snapshots, ignore_errors=True)
            shutil.copytree(state / "snapshots", outputs.snapshots)
        if cleanup_state:
            shutil.rmtree(state, ignore_errors=True)
    return summary


def state_key(settings: dict, input_file: Path) -> str:
    """A short hash of a run's settings and its input's modification time."""
    import hashlib

    stamp = input_file.stat().st_mtime_ns if input_file.exists() else 0
    blob = json.dumps(settings, sort_keys=True) + str(stamp)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _write_rows(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "mse", "vb", "lr"])
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
