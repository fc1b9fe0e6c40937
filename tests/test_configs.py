"""Every shipped config validates and plans (snakemake -n) without its data: the real-data
protocols need only data, not code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_tiny_project

BIN = Path(sys.executable).parent
CONFIGS = sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "datasets.yaml")


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    return make_tiny_project(tmp_path_factory.mktemp("configs") / "p", {}, "unused.yaml")


@pytest.mark.parametrize("name", [*CONFIGS, "mmwhs_sifa.yaml:mmwhs_sifa_release"])
def test_config_plans(copy, name):
    name, _, dataset = name.partition(":")
    cfg = copy / "config" / name
    if dataset:  # the same protocol on the SIFA release: one line differs
        text = (REPO / "config" / name).read_text().replace("dataset: mmwhs ", f"dataset: {dataset} ", 1)
        cfg = copy / "config" / f"_{dataset}.yaml"
        cfg.write_text(text)
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", str(cfg.relative_to(copy))], cwd=copy, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "rule all" in out or "localrule all" in out
    if name in ("mmwhs_sifa.yaml", "abdomen_sifa.yaml"):
        assert "fetch_source_ct" in out and "import_ct" in out and ("release_cache" in out) == bool(dataset)
