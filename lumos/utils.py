"""Small shared helpers: devices, threads, seeds, logging, progress bars, file linking and safe
writes."""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("lumos")


def setup_logging(verbose: bool = True) -> None:
    """Log lines with a timestamp to stderr (rules redirect it to their `log:` file)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def setup_torch(threads: int | None = None, seed: int | None = None):
    """Set torch's CPU thread count and all seeds; return torch."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
    return torch


def resolve_device(name: str = "auto"):
    """'auto' -> cuda when available, else cpu. 'cuda' without a GPU is a clear error."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but no CUDA device is visible")
    return torch.device(name)


def optimiser_step(opt, loss, step: int, what: str, params=None, max_norm: float | None = None) -> None:
    """One optimiser step of a component's training loop: a non-finite loss stops training with a
    clear error naming `what` and the step; with `max_norm` the gradients of `params` are clipped
    to that norm first."""
    import torch

    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} loss is {loss.item()} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
    fault_point("component")


def progress(iterable=None, **kwargs):
    """A tqdm bar that stays readable in a log file (fewer refreshes when not a terminal)."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", os.environ.get("LUMOS_NO_PROGRESS") == "1")
    return tqdm(iterable, **kwargs)


def link_or_copy(src, dst) -> None:
    """Hard-link `src` to `dst` (instant, no extra space); copy where linking is not possible
    (another filesystem)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, Path(dst))


class WriteError(OSError):
    """A file could not be written; the message names the file, why, and the free space."""


def write_error(path, err: OSError) -> WriteError:
    """`err` (raised writing `path`) as one line naming the file, the reason and the free space
    on its filesystem. numpy's short write (`N requested and M written`) has no errno: with
    under 64 MiB free it is taken for a full disk."""
    folder = Path(path).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or (err.errno is None and free < 64 * 2**20):
        why = "no space left on the device"
    elif err.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    elif err.errno == errno.EROFS:
        why = "read-only filesystem"
    else:
        why = str(err)
    return WriteError(err.errno, f"cannot write {path}: {why} ({free / 2**20:.1f} MiB free in {folder}; {err})")


def atomic_write(path, write) -> Path:
    """Write `path` by `write(tmp)` to a temporary name beside it (same suffix, so writers that
    infer the format from it keep working), then rename it into place: a kill leaves no half-written
    file under the real name. A failed write removes the temporary file and raises `WriteError`."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise err if isinstance(err, WriteError) else write_error(path, err) from err
    return path


def png_complete(path) -> bool:
    """Whether `path` is a whole PNG (every chunk present, checksums right): what a resume may skip."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def fault_point(name: str) -> None:
    """A place where the fault-injection test (tests/test_faults.py) kills this process with
    SIGKILL, as a crash or `kill -9` would, mid-work: when `name` is in $LUMOS_FAULT_POINTS
    (comma-separated), once per name (a marker file in $LUMOS_FAULT_DIR records that it fired).
    Nothing happens when the variable is unset."""
    points = os.environ.get("LUMOS_FAULT_POINTS")
    if not points or name not in points.split(","):
        return
    marker = Path(os.environ["LUMOS_FAULT_DIR"]) / name
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def gather_pngs(parts: list[str], out_dir: str) -> int:
    """Join sample folders of the jobs of one sampling task (hard links; copies across filesystems)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for p in parts:
        for f in sorted(Path(p).glob("*.png")):
            if (out / f.name).exists():
                raise ValueError(f"sample {f.name} is in two parts ({p})")
            link_or_copy(f, out / f.name)
            count += 1
            fault_point("gather")
    log.info("gathered %d samples from %d parts into %s", count, len(parts), out)
    return count
