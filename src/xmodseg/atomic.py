"""Atomic file writes: write to a temporary sibling, then rename.

A crash mid-write leaves only a `.partial` file, never a truncated file under the final name
(Snakemake and DVC would otherwise take it as complete). Temporary names carry the writer's host
and pid (`.<name>.partial-<host>-<pid>-<random>`), so the next write of the same final path removes
the ones a killed process left behind without touching a live writer's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _host_tag() -> str:
    """This host's name as a file-name token (no '-'); temps of other hosts on a shared file system
    are never judged by the local process table."""
    host = socket.gethostname() or "localhost"
    tag = re.sub(r"[^A-Za-z0-9]", "_", host)
    if len(tag) > 24:
        tag = f"{tag[:15]}_{hashlib.sha256(host.encode()).hexdigest()[:8]}"
    return tag


def _token() -> str:
    return f"{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs on this host (True when unsure: another user's process, pid 0)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


def _remove(entry: os.DirEntry[str]) -> None:
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)


def clean_stale(final: str | os.PathLike[str], suffix: str = "") -> list[Path]:
    """Remove temporary siblings of `final` left by processes of this host that are no longer
    running; return what was removed.

    Only names this module makes for exactly `final` are considered: `.<name>.partial-<host>-<pid>-
    <hex>` (+ `suffix`), `.<name>.old-<host>-<pid>-<hex>` and the older `.<name>.old-<pid>`. A
    `.old-` folder is the previous complete result of a process killed between its two renames; it
    is removed only once `final` exists again, otherwise kept and named in a warning.
    """
    final = Path(final)
    if os.name != "posix" or not final.parent.is_dir():
        return []
    name, host = re.escape(final.name), re.escape(_host_tag())
    own = re.compile(rf"\.{name}\.(?P<kind>partial|old)-{host}-(?P<pid>[0-9]+)-[0-9a-f]{{8}}(?P<suffix>.*)")
    legacy_old = re.compile(rf"\.{name}\.old-(?P<pid>[0-9]+)")
    removed: list[Path] = []
    prefix = f".{final.name}."
    with os.scandir(final.parent) as entries:
        candidates = [e for e in entries if e.name.startswith(prefix)]
    for entry in candidates:
        if m := own.fullmatch(entry.name):
            kind, pid = m["kind"], int(m["pid"])
            if m["suffix"] != (suffix if kind == "partial" else ""):
                continue
        elif m := legacy_old.fullmatch(entry.name):
            kind, pid = "old", int(m["pid"])
        else:
            continue
        if _pid_alive(pid):
            continue
        if kind == "old" and not final.exists():
            log.warning("%s is missing: %s holds its previous complete result (process %d was killed while "
                        "replacing it); kept until a new result is in place", final, entry.name, pid)
            continue
        _remove(entry)
        log.info("%s: removed %s, left by process %d, which is no longer running", final, entry.name, pid)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path` (same suffixes); rename it onto `path` on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes) or ".tmp"
    clean_stale(final, suffix)
    while True:
        tmp = final.with_name(f".{final.name}.partial-{_token()}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            exc.filename = str(final)  # a failed write (ENOSPC) names no file: name the one being written
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path` (an existing complete folder
    is swapped out only then), on failure it is removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    while True:
        token = _token()
        tmp = final.with_name(f".{final.name}.partial-{token}")
        try:
            tmp.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{token}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    clean_stale(final)  # a killed run's `.old-` folder, kept while `final` was missing


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
