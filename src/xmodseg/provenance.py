"""What produced a result: code version (git), software versions, host and device.

Written next to every model and metrics file (as nnU-Net writes debug.json), so a number can be
traced without Snakemake's machine-local `.snakemake/` metadata.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

PACKAGES = ("xmodseg", "torch", "monai", "SimpleITK", "numpy", "scipy", "pandas", "snakemake", "dvc")


def git_info(cwd: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Commit and dirty flag of the repository containing `cwd` (None outside a git checkout)."""

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def provenance_block(**extra: Any) -> dict[str, Any]:
    return {"git": git_info(), "versions": package_versions(), "environment": environment(), **extra}
