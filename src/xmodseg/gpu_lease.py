"""Which GPU a job uses when Snakemake runs several GPU jobs on one machine.

Snakemake's `--resources gpu=N` bounds how many `gpu=1` jobs run at once but does not say which
device each gets (snakemake#281), so two jobs would both use cuda:0. A job therefore leases a slot:
a non-blocking exclusive `flock` on one of N lock files; the winning index becomes
`CUDA_VISIBLE_DEVICES`. The kernel drops the lock when the process exits, even on SIGKILL, so a
killed job never leaks its GPU. When a scheduler already chose the device (SLURM sets
`CUDA_VISIBLE_DEVICES`), no lease is taken.

N comes from Snakemake's own `--resources gpu=N` (the Snakefile exports it as XMODSEG_GPU_SLOTS),
so there is exactly one place to state how many GPUs a machine has.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

SLOTS_ENV = "XMODSEG_GPU_SLOTS"
LOCK_DIR_ENV = "XMODSEG_GPU_LOCK_DIR"


@dataclass
class Lease:
    """The device this process uses; `handle` keeps the lock for the life of the process."""

    visible_devices: str | None
    source: str  # "lease", "scheduler" or "none"
    handle: IO[str] | None = None


_current: Lease | None = None


def export_slots(slots: int | None) -> None:
    """Called by the Snakefile with the N of `--resources gpu=N`: local jobs inherit it."""
    if slots:
        os.environ[SLOTS_ENV] = str(slots)
    else:
        os.environ.pop(SLOTS_ENV, None)


def default_lock_dir() -> Path:
    """Machine-wide per user, so two workflows on one box share (and do not collide on) GPUs."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"xmodseg-gpu-locks-{os.getuid()}")


def _try_lock(path: Path) -> IO[str] | None:
    fh = open(path, "a+")  # noqa: SIM115 - kept open: the lock lives as long as the process
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    return fh


def acquire(slots: int | None = None, lock_dir: str | os.PathLike[str] | None = None, timeout: float = 24 * 3600) -> Lease:
    """Set CUDA_VISIBLE_DEVICES for this process (call before CUDA is initialised)."""
    global _current
    if _current is not None:
        return _current
    if os.environ.get("CUDA_VISIBLE_DEVICES") not in (None, ""):
        _current = Lease(os.environ["CUDA_VISIBLE_DEVICES"], "scheduler")
        log.info("GPU: CUDA_VISIBLE_DEVICES=%s set by the scheduler; no lease", _current.visible_devices)
        return _current
    if slots is None:
        env = os.environ.get(SLOTS_ENV, "")
        slots = int(env) if env.strip() else 0
    if slots <= 0:
        _current = Lease(None, "none")
        log.info("GPU: no GPU slots declared (run with --resources gpu=N); using the default device")
        return _current
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    rng = random.Random(os.getpid())
    while True:
        for i in range(slots):  # lowest free slot first
            handle = _try_lock(directory / f"gpu{i}.lock")
            if handle is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
                _current = Lease(str(i), "lease", handle)
                log.info("GPU: leased slot %d of %d -> CUDA_VISIBLE_DEVICES=%d (lock %s)", i, slots, i, directory / f"gpu{i}.lock")
                return _current
        if time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU slot among {slots} in {directory} after {timeout:.0f} s")
        time.sleep(0.2 + rng.random() * 0.3)  # jitter: jobs started together do not retry in lockstep


def release() -> None:
    """Drop the lease early (normally the process exit does it); logged so job logs show when a
    job stopped holding its device."""
    global _current
    if _current is None:
        return
    if _current.handle is not None:
        fcntl.flock(_current.handle.fileno(), fcntl.LOCK_UN)
        _current.handle.close()
    log.info("GPU: released CUDA_VISIBLE_DEVICES=%s (%s)", _current.visible_devices, _current.source)
    _current = None
