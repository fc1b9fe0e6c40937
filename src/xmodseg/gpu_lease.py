"""Which GPU a job uses when Snakemake runs several GPU jobs on one machine.

Snakemake's `--resources gpu=N` bounds how many `gpu=1` jobs run at once but does not say which
device each gets (snakemake#281), so two jobs would both use cuda:0. A job therefore leases a slot:
a non-blocking exclusive `flock` on one of N lock files; the winning index becomes
`CUDA_VISIBLE_DEVICES`. The kernel drops the lock when the process exits, even on SIGKILL, so a
killed job never leaks its GPU. When a scheduler already chose the device (SLURM sets
`CUDA_VISIBLE_DEVICES`), no lease is taken.

N comes from Snakemake's own `--resources gpu=N`: the rules hand it to each GPU job as
`--gpu-slots N` (XMODSEG_GPU_SLOTS when a command is run by hand), so there is exactly one place to
state how many GPUs a machine has.

The lock folder must be private: in a folder another local user can write to, they could hold
every slot or plant links that make a job write to the victim's files. So the folder is created
0700 and refused unless it is a real directory (not a link) owned by this user and not writable by
group or others; lock files are opened without following links and never truncated.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xmodseg.errors import ConfigError

log = logging.getLogger(__name__)

SLOTS_ENV = "XMODSEG_GPU_SLOTS"
LOCK_DIR_ENV = "XMODSEG_GPU_LOCK_DIR"


@dataclass
class Lease:
    """The device this process uses; `handle` keeps the lock for the life of the process."""

    visible_devices: str | None
    source: str  # "lease", "scheduler" or "none"
    handle: IO[bytes] | None = None


_current: Lease | None = None


def _private_runtime_dir() -> Path | None:
    """$XDG_RUNTIME_DIR if it is what the XDG spec promises (absolute, a real directory owned by
    this user, mode 0700): a per-user folder no one else can write to."""
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if not value or not os.path.isabs(value):
        return None
    try:
        st = os.lstat(value)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.access(value, os.W_OK | os.X_OK):
        return None
    return Path(value)


def default_lock_dir() -> Path:
    """Machine-wide per user, so two workflows on one box share (and do not collide on) GPUs:
    $XMODSEG_GPU_LOCK_DIR, else a folder in $XDG_RUNTIME_DIR, else one in the temporary directory.
    Runs that must share GPUs need the same choice (set XMODSEG_GPU_LOCK_DIR when some of them
    start without a login session, e.g. from cron, or outlive it: logging out may remove
    $XDG_RUNTIME_DIR)."""
    chosen = os.environ.get(LOCK_DIR_ENV)
    if chosen:
        return Path(chosen)
    runtime = _private_runtime_dir()
    if runtime is not None:
        return runtime / "xmodseg-gpu-locks"
    return Path(tempfile.gettempdir()) / f"xmodseg-gpu-locks-{os.getuid()}"


def _refuse(path: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"GPU lock folder {path}: {problem}; refusing to use it (another local user could hold every GPU slot "
        f"or redirect the lock files). Remove it if it is yours, or set {LOCK_DIR_ENV} to a private folder (yours, mode 0700)"
    )


def open_private_dir(directory: Path) -> int:
    """A descriptor of `directory`, created 0700 if missing; refused unless it is a real directory
    owned by this user and not writable by group or others. Lock files are then opened relative
    to the descriptor, so the folder cannot be swapped for a link after the check."""
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # checked below; a link (even a dangling one) is never followed to create a target
    except OSError as exc:
        raise _refuse(directory, f"cannot be created ({exc.strerror})") from None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        is_link = os.path.islink(directory)
        raise _refuse(directory, "is a symbolic link" if is_link else f"is not a usable directory ({exc.strerror})") from None
    st = os.fstat(fd)
    problem = None
    if st.st_uid != os.getuid():
        problem = f"owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    elif st.st_mode & 0o022:
        problem = f"writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    if problem:
        os.close(fd)
        raise _refuse(directory, problem)
    return fd


def _try_lock(dir_fd: int, name: str, directory: Path) -> IO[bytes] | None:
    """Open (never following a link, never truncating) and try-lock one slot's file."""
    path = directory / name
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(directory, f"{name} is a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_nlink != 1:
        os.close(fd)
        raise _refuse(directory, f"{path.name} is not a plain lock file of yours (a device, a hard link or another user's file)")
    fh = os.fdopen(fd, "r+b", buffering=0)  # kept open: the lock lives as long as the process
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    os.pwrite(fd, f"pid {os.getpid():<10}\n".encode(), 0)  # fixed width: overwrites the last holder's line
    return fh


def acquire(slots: int | None = None, lock_dir: str | os.PathLike[str] | None = None, timeout: float = 24 * 3600) -> Lease:
    """Set CUDA_VISIBLE_DEVICES for this process (call before CUDA is initialised). `slots`: the
    job's `--gpu-slots`; None reads $XMODSEG_GPU_SLOTS (direct CLI use)."""
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
        log.debug("GPU: no GPU slots declared (run with --resources gpu=N); no lease")
        return _current
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    dir_fd = open_private_dir(directory)
    try:
        deadline = time.monotonic() + timeout
        rng = random.Random(os.getpid())
        while True:
            for i in range(slots):  # lowest free slot first
                handle = _try_lock(dir_fd, f"gpu{i}.lock", directory)
                if handle is not None:
                    os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
                    _current = Lease(str(i), "lease", handle)
                    log.info("GPU: leased slot %d of %d -> CUDA_VISIBLE_DEVICES=%d (lock %s)", i, slots, i, directory / f"gpu{i}.lock")
                    return _current
            if time.monotonic() > deadline:
                raise TimeoutError(f"no free GPU slot among {slots} in {directory} after {timeout:.0f} s")
            time.sleep(0.2 + rng.random() * 0.3)  # jitter: jobs started together do not retry in lockstep
    finally:
        os.close(dir_fd)


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
