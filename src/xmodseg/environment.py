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
from pathlib import Path
from typing import Any

import yaml

PACKAGES = ("xmodseg", "torch", "monai", "SimpleITK", "numpy", "scipy", "pandas", "snakemake", "dvc")
# Tracked files the pipeline itself rewrites: `xmodseg record` regenerates dvc.yaml and dvc.lock and
# commits the metrics (DVC metrics, cache: false) and the HTML report's .dvc file. Changes to them
# say nothing about the code that ran; dvc.yaml's git-kept outputs are added in pipeline_outputs.
RECORDED_OUTPUTS = ("dvc.yaml", "dvc.lock", "results/metrics/", "results/provenance/")
MAX_LISTED = 20


def pipeline_outputs(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """RECORDED_OUTPUTS plus the outputs `root`/dvc.yaml keeps in git (`cache: false`; DVC's cached
    outputs are git-ignored), unless one overlaps a stage's `deps`, so code is never declared away.
    A missing or unreadable dvc.yaml adds none."""
    try:
        stages = (yaml.safe_load((Path(root) / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages") or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return RECORDED_OUTPUTS
    deps: list[str] = []
    in_git: list[str] = []
    for stage in stages.values() if isinstance(stages, dict) else ():
        if not isinstance(stage, dict) or stage.get("wdir"):
            continue
        for key in ("deps", "outs", "metrics", "plots"):
            for item in stage.get(key) or []:
                for path, opts in (item.items() if isinstance(item, dict) else [(item, None)]):
                    if not isinstance(path, str) or not path.strip("/.") or path.startswith(("/", "../")):
                        continue
                    if key == "deps":
                        deps.append(path.rstrip("/"))
                    elif isinstance(opts, dict) and opts.get("cache") is False:
                        in_git.append(path.rstrip("/"))
    overlaps = lambda a, b: a == b or a.startswith(b + "/") or b.startswith(a + "/")  # noqa: E731
    declared = [f for o in in_git if not any(overlaps(o, d) for d in deps) for f in (o, o + "/")]
    return tuple(dict.fromkeys([*RECORDED_OUTPUTS, *declared]))


def is_pipeline_output(path: str, outputs: tuple[str, ...]) -> bool:
    """`outputs` entries ending in '/' are folders (anything under them matches), others files."""
    return any(path.startswith(o) if o.endswith("/") else path == o for o in outputs)


def parse_porcelain_z(text: str) -> list[str]:
    """Paths from `git status --porcelain -z` (both sides of a rename or copy)."""
    fields, paths = text.split("\0"), []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if "R" in entry[:2] or "C" in entry[:2]:
            if i < len(fields) and fields[i]:
                paths.append(fields[i])
            i += 1
    return paths


def code_changes(changed: list[str], root: str | os.PathLike[str]) -> list[str]:
    """The changed tracked files that are not the pipeline's own outputs."""
    outputs = pipeline_outputs(root)
    return [p for p in dict.fromkeys(changed) if not is_pipeline_output(p, outputs)]


def git_info(cwd: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Commit of the repository containing `cwd` and whether tracked files other than the pipeline's
    own outputs differ from it, naming them (the first MAX_LISTED); None outside a git checkout."""

    def run(*args: str) -> str | None:
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # parallel jobs: status must not take index.lock
        try:
            out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.decode("utf-8", errors="replace")

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "dirty_files": None, "dirty_count": None}
    top = run("rev-parse", "--show-toplevel")
    status = run("status", "--porcelain", "-z", "--untracked-files=no")
    if top is None or status is None:
        return {"commit": commit.strip(), "dirty": None, "dirty_files": None, "dirty_count": None}
    dirty = code_changes(parse_porcelain_z(status), top.strip())
    return {"commit": commit.strip(), "dirty": bool(dirty), "dirty_files": dirty[:MAX_LISTED], "dirty_count": len(dirty)}


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
