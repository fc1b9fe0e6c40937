"""Failures that tell the truth (issue 16): stale temporaries of killed writers are cleaned, the
provenance dirty flag ignores the pipeline's own outputs and names what was dirty, and the report
title is printed as written."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import xmodseg
from xmodseg.atomic import atomic_dir, atomic_path
from xmodseg.environment import git_info

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py

SRC = str(Path(xmodseg.__file__).resolve().parents[1])

# A writer in another process: it opens atomic_dir/atomic_path on argv[1], writes, prints the
# temporary name, then either SIGKILLs itself ("kill"), dies between atomic_dir's two renames
# ("between"), or stays alive ("live").
WRITER = """
import os, signal, sys, time
from pathlib import Path
from xmodseg.atomic import atomic_dir, atomic_path

final, kind, fate = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if fate == "between":
    real, calls = os.replace, []
    def replace(a, b):
        real(a, b)
        calls.append(a)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
with (atomic_dir(final) if kind == "dir" else atomic_path(final)) as tmp:
    (tmp / "payload" if kind == "dir" else tmp).write_text("new")
    print(tmp.name, flush=True)
    if fate == "kill":
        os.kill(os.getpid(), 9)
    if fate == "live":
        time.sleep(120)
"""


def _writer(final: Path, kind: str, fate: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(final), kind, fate], stdout=subprocess.PIPE, text=True, env=env)
    name = proc.stdout.readline().strip()
    assert name, f"writer ({kind}, {fate}) printed no temporary name"
    if fate != "live":
        assert proc.wait(timeout=60) == -9
    return proc, name


def _hidden(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(".")}


def test_atomic_dir_removes_temporaries_of_killed_writers_and_keeps_a_live_ones(tmp_path):
    final = tmp_path / "cache" / "mr"
    live, live_tmp = _writer(final, "dir", "live")
    try:
        _, stale1 = _writer(final, "dir", "kill")
        _, stale2 = _writer(final, "dir", "kill")  # each new writer cleans up after the dead ones
        assert stale2 in _hidden(final.parent) and live_tmp in _hidden(final.parent)
        # Look-alikes that are not our exact naming are never touched.
        others = [stale1 + "x", stale1.replace(".mr.", ".mri.", 1), ".mr.partial-foo", "mr.partial"]
        for name in others:
            (final.parent / name).mkdir()
        with atomic_dir(final) as tmp:
            (tmp / "payload").write_text("done")
        assert (final / "payload").read_text() == "done"
        left = _hidden(final.parent) | {p.name for p in final.parent.iterdir()}
        assert stale1 not in left and stale2 not in left, "a killed writer's temporary folder was left behind"
        assert live_tmp in left, "a running writer's temporary folder was removed"
        assert set(others) <= left
        assert live.poll() is None
    finally:
        live.kill()
        live.wait()


def test_atomic_path_removes_partial_files_of_killed_writers_only(tmp_path):
    final = tmp_path / "img.nii.gz"
    live, live_tmp = _writer(final, "file", "live")
    try:
        _, stale = _writer(final, "file", "kill")
        download_partial = tmp_path / "img.nii.gz.partial"  # a resumable download: not ours
        download_partial.write_text("bytes so far")
        with atomic_path(final) as tmp:
            assert tmp.name.endswith(".nii.gz")  # writers pick the format from the suffix
            tmp.write_text("done")
        assert final.read_text() == "done"
        names = {p.name for p in tmp_path.iterdir()}
        assert stale not in names and live_tmp in names and download_partial.name in names
    finally:
        live.kill()
        live.wait()


def test_writer_killed_between_renames_keeps_the_old_result_until_a_new_one_lands(tmp_path, caplog):
    final = tmp_path / "prepared"
    with atomic_dir(final) as tmp:
        (tmp / "payload").write_text("old")
    writer, _ = _writer(final, "dir", "between")
    assert not final.exists()
    old = [p for p in tmp_path.iterdir() if ".old-" in p.name]
    assert len(old) == 1 and (old[0] / "payload").read_text() == "old"
    legacy = tmp_path / f".prepared.old-{writer.pid}"  # the naming of earlier versions
    legacy.mkdir()
    # A failing rerun: the previous complete result must survive, and the warning says where it is.
    with caplog.at_level(logging.WARNING, logger="xmodseg.atomic"), pytest.raises(RuntimeError):
        with atomic_dir(final):
            raise RuntimeError("job failed")
    assert old[0].is_dir() and not final.exists()
    assert old[0].name in caplog.text and "previous complete result" in caplog.text
    with atomic_dir(final) as tmp:
        (tmp / "payload").write_text("new")
    assert (final / "payload").read_text() == "new"
    assert not old[0].exists() and not legacy.exists(), "stale .old- folders stay after the result is replaced"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    files = {
        "src/pkg/mod.py": "x = 1\n",
        "src/pkg/a b.py": "y = 2\n",
        "config/config.yaml": "a: 1\n",
        "results/metrics/ds/x.json": "{}\n",
        "results/figures/fig.txt": "figure\n",
        "dvc.yaml": json.dumps({"stages": {
            "s": {"cmd": "true", "deps": ["src/pkg"], "outs": [{"results/figures": {"cache": False}}, {"src": {"cache": False}}]},
        }}),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    return root


def test_provenance_dirty_flag_ignores_pipeline_outputs_and_names_dirty_files(repo):
    assert git_info(repo)["dirty"] is False
    (repo / "results/metrics/ds/x.json").write_text('{"dice": 0.5}\n')  # rewritten by a rerun
    (repo / "results/figures/fig.txt").write_text("new figure\n")  # a dvc.yaml out tracked in git
    (repo / "dvc.yaml").write_text((repo / "dvc.yaml").read_text() + "\n")  # rewritten by record
    info = git_info(repo)
    assert info["dirty"] is False and info["commit"]
    assert info["dirty_files"] == [] and info["dirty_count"] == 0
    # Code is dirty even though a (hostile or mistaken) dvc.yaml declares `src` an output.
    (repo / "src/pkg/mod.py").write_text("x = 2\n")
    (repo / "src/pkg/a b.py").write_text("y = 3\n")
    (repo / "config/config.yaml").write_text("a: 2\n")
    info = git_info(repo)
    assert info["dirty"] is True
    assert sorted(info["dirty_files"]) == ["config/config.yaml", "src/pkg/a b.py", "src/pkg/mod.py"] and info["dirty_count"] == 3
    # record refuses by the same rule
    from xmodseg.provenance.record import dirty_files

    assert sorted(dirty_files(repo)) == sorted(info["dirty_files"])


def test_provenance_lists_at_most_20_dirty_files_and_counts_all(repo):
    for i in range(25):
        (repo / f"src/pkg/m{i:02d}.py").write_text("z = 0\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "more")
    for i in range(25):
        (repo / f"src/pkg/m{i:02d}.py").write_text("z = 1\n")
    info = git_info(repo)
    assert info["dirty"] is True and info["dirty_count"] == 25 and len(info["dirty_files"]) == 20
    assert set(info["dirty_files"]) <= {f"src/pkg/m{i:02d}.py" for i in range(25)}


def test_git_info_outside_a_repository_is_unknown(tmp_path):
    info = git_info(tmp_path)
    assert info["commit"] is None and info["dirty"] is None


TITLE = "xmodseg: tiny \"phantom\" $(touch pwned) 'x'"


def test_report_markdown_title_is_the_plain_title(tmp_path):
    from tests.unit.reporting.test_report import _experiments
    from xmodseg.reporting.report import build_report

    build_report(_experiments(tmp_path / "evaluation")[:1], tmp_path / "r", title=TITLE)
    assert (tmp_path / "r" / "summary.md").read_text().splitlines()[0] == f"# {TITLE}"


def test_report_rule_passes_the_title_unquoted_to_the_cli(tmp_path):
    from tests.conftest import make_tiny_project
    from xmodseg.cli import build_parser

    train = {"iterations": 2}
    config = {
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "experiments": {"so_mr2ct": {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": train}},
        "report": {"title": TITLE},
    }
    project = make_tiny_project(tmp_path / "p", config)
    snakemake = str(Path(sys.executable).parent / "snakemake")
    plan = subprocess.run([snakemake, "results/report/summary.md", "-n", "-p", "--configfile", "config/tiny.yaml"],
                          cwd=project, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    lines = [ln[ln.index("xmodseg report "):] for ln in plan.stdout.splitlines() if "xmodseg report --" in ln]
    assert len(lines) == 1, plan.stdout[-3000:]
    argv = shlex.split(lines[0])
    args = build_parser().parse_args(argv[1:argv.index(">")])
    assert args.title == TITLE
