"""The lock a trainer holds on its state folder while it trains (`state_lock`), so that two
copies of one job never write checkpoints into the same folder. Torch-free."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path

from lumos.utils import log


class StateLockedError(RuntimeError):
    """Another trainer holds the state folder."""


@contextlib.contextmanager
def state_lock(state: Path, hold: bool = True):
    """Hold an exclusive lock on `state/LOCK` for the block (`hold`: the main process; the
    others train under its lock). Two trainers on one state folder (a Snakemake restarted with
    `--nolock` while the old job still runs, a job submitted twice) would overwrite each other's
    checkpoints and the first to finish would delete the state, snapshots included: the second
    stops here with `StateLockedError`, naming the holder. The lock goes with the process (a
    killed trainer leaves none behind). On a file system without locks (Lustre mounted without
    `flock`) the run goes on unlocked, said in the log."""
    if not hold:
        yield
        return
    import fcntl

    path = Path(state) / "LOCK"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                log.warning("%s: no lock (%s): nothing stops a second trainer on this state folder", path, e)
            else:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                raise StateLockedError(
                    f"another trainer is using the state folder {state} (holder: {holder}); two trainers "
                    f"on one state folder overwrite each other's checkpoints. Wait for it to finish or stop "
                    f"it, then rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
