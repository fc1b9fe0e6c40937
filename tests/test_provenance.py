"""Record and audit for real: git + DVC (local remote) + Snakemake on a tiny config in a temporary
repository; tampering with any link of the chain makes the audit fail naming that link; a fresh
clone restores with `dvc pull` and audits clean without retraining."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import make_tiny_project
from tests.test_workflow import SIFA, TRAIN, TRANSLATE

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CONFIG = "config/tiny.yaml"
DS = "tiny_synth"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["DVC_NO_ANALYTICS"] = "1"
    e.setdefault("GIT_AUTHOR_NAME", "test")
    e.setdefault("GIT_AUTHOR_EMAIL", "test@example.org")
    e.setdefault("GIT_COMMITTER_NAME", "test")
    e.setdefault("GIT_COMMITTER_EMAIL", "test@example.org")
    return e


def run(cwd: Path, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", CONFIG, *args)


def xmodseg(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run(cwd, str(BIN / "xmodseg"), *args, ok=ok)


def write_config(repo: Path, oracle_iterations: int = 4) -> None:
    cfg = {
        "registry": "config/tiny_datasets.yaml",
        "dataset": DS,
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "translators": {"cyclegan_mr2ct": {"translator": "cyclegan", "source": "mr", "target": "ct", "seeds": [0], "train": TRANSLATE}},
        "experiments": {
            "source_only_mr2ct": {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": TRAIN},
            "oracle_mr2ct": {"method": "oracle", "source": "mr", "target": "ct", "seeds": [0, 1], "train": {**TRAIN, "iterations": oracle_iterations}},
            "t2s_cyclegan_mr2ct": {"method": "translate_then_segment", "source": "mr", "target": "ct", "translator": "cyclegan_mr2ct", "seeds": [0], "train": TRAIN},
            "sifa_mr2ct": {"method": "sifa", "source": "mr", "target": "ct", "warm_start": "cyclegan_mr2ct", "seeds": [0], "train": SIFA},
        },
        "report": {"title": "tiny"},
    }
    (repo / CONFIG).write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A project repository after `snakemake` and `xmodseg record`, with a local DVC remote."""
    base = tmp_path_factory.mktemp("provenance")
    repo = make_tiny_project(base / "project", {}, "unused.yaml", extra=("src", ".gitignore", ".dvcignore"))
    write_config(repo)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, str(BIN / "dvc"), "init", "-q")
    run(repo, str(BIN / "dvc"), "remote", "add", "-d", "local", str(base / "dvc-remote"))
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "project")
    snakemake(repo)
    out = xmodseg(repo, "record", "--configfile", CONFIG)
    assert "recorded" in out.stdout
    return repo


def audit(repo: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = xmodseg(repo, "audit", *args, ok=False)
    assert (proc.returncode == 0) == ok, f"audit exit {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_record_commits_lineage_and_pushes(repo):
    assert run(repo, "git", "status", "--porcelain", "--untracked-files=no").stdout.strip() == ""
    log = run(repo, "git", "log", "--format=%s").stdout.splitlines()
    assert log[0] == f"xmodseg record: {CONFIG}"
    tracked = run(repo, "git", "ls-files").stdout.split()
    assert {"dvc.lock", "dvc.yaml", f"results/metrics/{DS}/oracle_mr2ct.json", "results/provenance/report.html.dvc"} <= set(tracked)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    exp = lock["experiment-sifa_mr2ct"]
    assert exp["params"][CONFIG]["experiments.sifa_mr2ct"]["warm_start"] == "cyclegan_mr2ct"
    deps = {d["path"] for d in exp["deps"]}
    assert f"results/translators/{DS}/cyclegan_mr2ct/seed0/model.pt" in deps and f"data/prepared/{DS}/ct" in deps
    assert {d["path"] for d in lock["experiment-t2s_cyclegan_mr2ct"]["deps"]} >= {f"data/translated/{DS}/cyclegan_mr2ct/seed0"}
    assert json.loads(run(repo, str(BIN / "dvc"), "status", "--json").stdout or "{}") == {}
    remote_files = [p for p in (repo.parent / "dvc-remote").rglob("*") if p.is_file()]
    assert len(remote_files) > 20
    # The HTML report names the code commit and the dvc.lock it describes.
    meta = yaml.safe_load((repo / "results/provenance/report_metadata.yaml").read_text())
    assert meta["Git commit"] == run(repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    html = (repo / "results/provenance/report.html").read_text(errors="replace")
    assert meta["Git commit"] in html and len(html) > 100_000


def test_audit_passes_for_report_experiment_and_seed(repo):
    out = audit(repo, "results/report/summary.md").stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and line.endswith(" ok |")]
    assert len(rows) == 4 * 4 * 5  # experiments x metrics x (4 classes + mean)
    assert "80 numbers, 80 ok, 0 broken: PASS" in out
    out = audit(repo, "oracle_mr2ct", "--reinfer").stdout
    assert "20 numbers, 20 ok" in out and "re-predicted identically" in out
    audit(repo, f"results/evaluation/{DS}/sifa_mr2ct/seed0/metrics.json")


def _tamper_model(repo: Path) -> Path:
    p = repo / f"results/models/{DS}/oracle_mr2ct/seed1/model.pt"
    p.write_bytes(p.read_bytes() + b"\0")
    return p


def _tamper_prediction(repo: Path) -> Path:
    p = repo / f"results/evaluation/{DS}/oracle_mr2ct/seed0/predictions/1003_pred.nii.gz"
    img = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(img)
    arr[arr.shape[0] // 2, :, :] = 1  # one slab relabelled
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(p))
    return p


def _tamper_metrics_value(repo: Path) -> Path:
    p = repo / f"results/metrics/{DS}/oracle_mr2ct.json"
    doc = json.loads(p.read_text())
    doc["dice"]["MYO"]["mean"] = round(doc["dice"]["MYO"]["mean"] + 0.05, 6)
    p.write_text(json.dumps(doc, indent=2))
    return p


def _tamper_raw_data(repo: Path) -> Path:
    p = repo / f"data/raw/{DS}/ct_train/ct_train_1003_label.nii.gz"
    img = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = 205  # one voxel of a test ground truth
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    sitk.WriteImage(new, str(p))
    return p


@pytest.mark.parametrize(
    ("tamper", "probe", "link", "n_broken"),
    [
        # a model or prediction of one oracle seed breaks that experiment's 20 numbers only
        (_tamper_model, f"results/models/{DS}/oracle_mr2ct/seed1/model.pt", "model", 20),
        (_tamper_prediction, f"results/evaluation/{DS}/oracle_mr2ct/seed0/predictions/1003_pred.nii.gz", "predictions", 20),
        # an edited number: its value and its file's dvc.lock record break (the file holds 20 numbers)
        (_tamper_metrics_value, f"results/metrics/{DS}/oracle_mr2ct.json", "value", 20),
        # every model was evaluated on that CT test volume
        (_tamper_raw_data, f"data/raw/{DS}/ct_train/ct_train_1003_label.nii.gz", "data", 80),
    ],
)
def test_tampering_breaks_the_named_link(repo, tamper, probe, link, n_broken):
    original = (repo / probe).read_bytes()
    try:
        tamper(repo)
        out = audit(repo, "results/report/summary.md", ok=False).stdout
        assert out.splitlines()[-1] == f"80 numbers, {80 - n_broken} ok, {n_broken} broken: FAIL"
        rows = [line for line in out.splitlines() if "| BROKEN: " in line]
        assert len(rows) == n_broken
        named = "dvc.lock" if tamper is _tamper_metrics_value else link  # see below for the edited value
        assert all(named in line.split("BROKEN:")[1] for line in rows), rows[:3]
        chain = [line for line in out.splitlines() if f"| {link} | BROKEN |" in line]
        assert chain and any(Path(probe).name in line for line in chain), out[:4000]
        if tamper is _tamper_metrics_value:
            assert any(line.startswith(f"| {probe} | dvc.lock | BROKEN |") for line in out.splitlines())
            assert sum("value" in line.split("BROKEN:")[1] for line in rows) == 1  # only the edited number
    finally:
        (repo / probe).write_bytes(original)
    audit(repo, "results/report/summary.md")  # restored: clean again


def test_fresh_clone_restores_and_audits_without_retraining(repo, tmp_path):
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "results/models").exists()
    out = xmodseg(clone, "restore", "--configfile", CONFIG)
    assert "nothing to do" in out.stdout
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(clone, "-n"))
    # Nothing ran: every executed job writes a benchmark record, training writes checkpoints.
    assert not (clone / "results/benchmarks").exists() and not (clone / "results/checkpoints").exists()
    out = audit(clone, "results/report/summary.md").stdout
    assert "80 numbers, 80 ok, 0 broken: PASS" in out
    # A restored workspace with a stale file is not blessed by --touch.
    (clone / f"results/metrics/{DS}/sifa_mr2ct.json").write_text("{}\n")
    refused = xmodseg(clone, "restore", "--no-pull", "--configfile", CONFIG, ok=False)
    assert refused.returncode == 2 and "dvc status" in refused.stderr and "refusing" in refused.stderr


def test_record_refuses_a_dirty_workspace_or_unfinished_run_then_compares_two_runs(repo):
    rule = repo / "workflow/rules/report.smk"
    original = rule.read_text()
    rule.write_text(original + "\n# local edit\n")
    out = xmodseg(repo, "record", "--configfile", CONFIG, ok=False)
    assert out.returncode == 2 and "uncommitted changes" in out.stderr and "workflow/rules/report.smk" in out.stderr
    rule.write_text(original)
    # A new hyperparameter, committed but not yet run: Snakemake still has work.
    write_config(repo, oracle_iterations=6)
    run(repo, "git", "commit", "-q", "-am", "oracle: 6 iterations")
    out = xmodseg(repo, "record", "--configfile", CONFIG, ok=False)
    assert out.returncode == 2 and "Snakemake still has work" in out.stderr and "train" in out.stderr
    snakemake(repo)
    xmodseg(repo, "record", "--configfile", CONFIG)
    dvc = str(BIN / "dvc")
    params = run(repo, dvc, "params", "diff", "HEAD~2", "HEAD", "--md").stdout
    assert "experiments.oracle_mr2ct.train.iterations" in params and "| 4 " in params and "| 6 " in params
    metrics = run(repo, dvc, "metrics", "diff", "HEAD~2", "HEAD", "--md").stdout
    assert f"results/metrics/{DS}/oracle_mr2ct.json" in metrics and "dice.MYO.mean" in metrics
    assert f"results/metrics/{DS}/sifa_mr2ct.json" not in metrics  # unchanged experiments do not show
    shown = run(repo, dvc, "metrics", "show", "--md").stdout
    assert "dice.mean.mean" in shown and f"results/metrics/{DS}/sifa_mr2ct.json" in shown
    audit(repo, "results/report/summary.md")
