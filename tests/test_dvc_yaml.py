"""dvc.yaml: one stage per configured experiment, parsed by real DVC in a scratch repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DVC = Path(sys.executable).parent / "dvc"


@pytest.mark.skipif(not DVC.exists() or shutil.which("git") is None, reason="dvc or git not installed")
def test_dvc_yaml_has_a_stage_per_experiment_and_translator(tmp_path):
    for item in ("dvc.yaml", ".dvcignore", "config"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(DVC), "init", "-q"], cwd=tmp_path, check=True)
    out = subprocess.run([str(DVC), "stage", "list"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    stages = sorted(line.split()[0] for line in out.splitlines() if line.strip())
    expected = [f"experiment@{name}" for name in cfg["experiments"]] + [f"translator@{name}" for name in cfg.get("translators", {})]
    assert stages == sorted(expected)
