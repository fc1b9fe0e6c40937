"""`xmodseg record` and `xmodseg restore`: close a Snakemake run into DVC and git, and reopen it.

record: only a finished run from committed code is recorded (Snakemake has nothing left to do,
the git workspace is clean apart from the files record writes); then `dvc commit` hashes every
stage into dvc.lock, `dvc status` must be clean, Snakemake's HTML report is built with the git
commit, dirty flag and dvc.lock hash on its landing page, everything is pushed to the DVC remote
and dvc.lock plus the metrics files are committed to git.

restore: on another machine, `dvc pull` brings the data and models back, and once `dvc status` is
clean `snakemake --touch` makes Snakemake accept them (DVC does not keep timestamps); `--touch`
is refused while DVC reports changes, because it would bless stale results.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import yaml

from xmodseg.atomic import write_text
from xmodseg.environment import code_changes, parse_porcelain_z
from xmodseg.errors import XmodsegError
from xmodseg.hashing import sha256_file
from xmodseg.layout import PATTERNS
from xmodseg.provenance.dvc_lock import dvc_executable
from xmodseg.provenance.dvc_stages import write_dvc_yaml

log = logging.getLogger(__name__)

REPORT = Path(PATTERNS["provenance_report"])
REPORT_METADATA = Path(PATTERNS["provenance_metadata"])
NOTHING_TO_DO = "Nothing to be done"


class RecordRefused(XmodsegError):
    """The workspace is not in a state that can be recorded (the message says why and what to do)."""


def _run(cmd: Sequence[str], cwd: Path, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors="replace", check=False)
    if check and proc.returncode != 0:
        raise XmodsegError(f"{what} failed ({' '.join(cmd)}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def snakemake_cmd(configfile: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1"]
    return cmd + (["--configfile", configfile] if configfile else [])


def pending_jobs(repo: Path, configfile: str | None) -> str | None:
    """None if `snakemake -n` has nothing to do, else the dry run's job table."""
    out = _run([*snakemake_cmd(configfile), "-n"], repo, "snakemake dry run")
    text = out.stdout + out.stderr
    if NOTHING_TO_DO in text:
        return None
    return text.split("Job stats:", 1)[1].strip() if "Job stats:" in text else text[-2000:]


def dirty_files(repo: Path) -> list[str]:
    """Tracked files changed since HEAD, other than the pipeline's own outputs (those record writes
    and dvc.yaml's outs; the same rule as every job's provenance dirty flag)."""
    out = _run(["git", "status", "--porcelain", "-z", "--untracked-files=no"], repo, "git status")
    return code_changes(parse_porcelain_z(out.stdout), repo)


def dvc_status(repo: Path) -> dict:
    out = _run([dvc_executable(), "status", "--json"], repo, "dvc status")
    return json.loads(out.stdout or "{}")


def git_head(repo: Path) -> str:
    return _run(["git", "rev-parse", "HEAD"], repo, "git rev-parse").stdout.strip()


def report_metadata(repo: Path, configfile: str) -> dict[str, str]:
    """Shown on the HTML report's landing page: which code, config and dvc.lock it describes."""
    return {
        "Git commit": git_head(repo),
        "Git dirty": str(bool(dirty_files(repo))),
        "Config": f"{configfile} (sha256 {sha256_file(repo / configfile)[:16]})",
        "dvc.lock sha256": sha256_file(repo / "dvc.lock"),
        "Recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def build_report(repo: Path, configfile: str, out: Path = REPORT, metadata: Path = REPORT_METADATA) -> Path:
    meta = repo / metadata
    write_text(meta, yaml.safe_dump(report_metadata(repo, configfile), sort_keys=False))
    tmp = out.with_name(f".{out.stem}.partial.html")
    _run([*snakemake_cmd(configfile), "--report", str(tmp), "--report-metadata", str(meta.relative_to(repo))], repo, "snakemake --report")
    os.replace(repo / tmp, repo / out)
    return out


def record(
    repo: str | os.PathLike[str] = ".",
    *,
    configfile: str = "config/config.yaml",
    push: bool = True,
    git_commit: bool = True,
    message: str | None = None,
) -> dict[str, object]:
    root = Path(repo)
    if not (root / ".dvc").is_dir():
        raise RecordRefused(f"{root.resolve()}: not a DVC repository (run `dvc init` and set a remote; see README 'Provenance')")
    if not (root / configfile).is_file():
        raise RecordRefused(f"{configfile}: config file not found")
    tracked = _run(["git", "ls-files", "--error-unmatch", configfile], root, "git ls-files", check=False)
    if tracked.returncode != 0:
        raise RecordRefused(f"{configfile} is not committed to git; commit it first so the record names the config that ran")
    dirty = dirty_files(root)
    if dirty:
        raise RecordRefused("the git workspace has uncommitted changes, so no commit describes the code that ran: " + ", ".join(dirty[:20]) + "\ncommit them (and rerun Snakemake if they change results), then record")
    pending = pending_jobs(root, configfile)
    if pending is not None:
        raise RecordRefused(f"Snakemake still has work for {configfile}; run it to the end first:\n{pending}")
    changed_yaml = write_dvc_yaml(configfile, root / "dvc.yaml")
    log.info("dvc.yaml %s for %s", "rewritten" if changed_yaml else "unchanged", configfile)
    _run([dvc_executable(), "commit", "--force"], root, "dvc commit")
    status = dvc_status(root)
    if status:
        raise RecordRefused(f"`dvc status` is not clean after `dvc commit`: {json.dumps(status)[:2000]}")
    report = build_report(root, configfile)
    _run([dvc_executable(), "add", str(report)], root, "dvc add (HTML report)")
    if push:
        _run([dvc_executable(), "push"], root, "dvc push (is a default remote set? `dvc remote list`)")
    committed = None
    if git_commit:
        paths = ["dvc.yaml", "dvc.lock", f"{report}.dvc", str(report.parent / ".gitignore"), str(REPORT_METADATA)]
        metrics = sorted(str(p.relative_to(root)) for p in (root / PATTERNS["metrics_root"]).rglob("*.json"))
        _run(["git", "add", "--", *paths, *metrics], root, "git add")
        staged = _run(["git", "diff", "--cached", "--quiet"], root, "git diff", check=False).returncode != 0
        if staged:
            _run(["git", "commit", "-q", "-m", message or f"xmodseg record: {configfile}"], root, "git commit")
            committed = git_head(root)
    return {"configfile": configfile, "dvc_yaml_changed": changed_yaml, "report": str(report), "pushed": push, "git_commit": committed}


def restore(repo: str | os.PathLike[str] = ".", *, configfile: str = "config/config.yaml", pull: bool = True) -> None:
    """dvc pull -> dvc status clean -> snakemake --touch -> snakemake -n has nothing to do."""
    root = Path(repo)
    if pull:
        _run([dvc_executable(), "pull"], root, "dvc pull")
    status = dvc_status(root)
    if status:
        raise RecordRefused(f"`dvc status` is not clean, so restored files are not what dvc.lock records; refusing `snakemake --touch`: {json.dumps(status)[:2000]}")
    _run([*snakemake_cmd(configfile), "--touch"], root, "snakemake --touch")
    pending = pending_jobs(root, configfile)
    if pending is not None:
        raise RecordRefused(f"after restoring, Snakemake still wants to run jobs (config {configfile} differs from the recorded run?):\n{pending}")
