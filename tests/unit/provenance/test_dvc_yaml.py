"""dvc.yaml: generated from the config, one stage per Snakemake target, parsed by real DVC."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from xmodseg.errors import ConfigError
from xmodseg.provenance.dvc_stages import render_dvc_yaml, render_stages

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py

DVC = Path(sys.executable).parent / "dvc"


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # configs name the registry relative to the project root


def test_committed_dvc_yaml_is_the_rendering_of_the_default_config(in_repo, tmp_path, capsys):
    assert (REPO / "dvc.yaml").read_text() == render_dvc_yaml("config/config.yaml"), "run `xmodseg dvc-yaml`"
    from xmodseg.cli import main

    assert main(["dvc-yaml", "--configfile", "config/config.yaml", "--out", str(tmp_path / "dvc.yaml")]) == 0
    assert (tmp_path / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text() and "written for config/config.yaml" in capsys.readouterr().out


def test_stages_list_exactly_what_each_target_reads(in_repo):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    stages = render_stages(cfg, "config/config.yaml")
    sifa = stages["experiment-sifa_mr2ct"]
    assert "results/translators/synthetic/cyclegan_mr2ct/seed0/model.pt" in sifa["deps"]  # the warm start
    assert {"data/prepared/synthetic/mr", "data/prepared/synthetic/ct"} <= set(sifa["deps"])
    t2s = stages["experiment-t2s_cyclegan_mr2ct"]
    assert "data/translated/synthetic/cyclegan_mr2ct/seed0" in t2s["deps"] and "data/prepared/synthetic/mr" not in t2s["deps"]
    assert t2s["params"] == [{"config/config.yaml": ["experiments.t2s_cyclegan_mr2ct", "preprocess", "evaluation"]}]
    assert t2s["metrics"] == [{"results/metrics/synthetic/t2s_cyclegan_mr2ct.json": {"cache": False}}]
    assert t2s["cmd"].startswith("snakemake results/metrics/synthetic/t2s_cyclegan_mr2ct.json --cores")  # target first
    # the CT oracle feeds the MR->CT translator's anatomy check
    assert "results/models/synthetic/oracle_mr2ct/seed0/model.pt" in stages["translate-cyclegan_mr2ct"]["deps"]
    assert stages["data"]["outs"] == ["data/raw/synthetic"]
    # no two stages own the same output (DVC would refuse the file)
    outs = [o if isinstance(o, str) else next(iter(o)) for s in stages.values() for o in s["outs"] + s.get("metrics", [])]
    assert len(outs) == len(set(outs))


def test_unknown_translator_is_a_config_error(in_repo):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["experiments"]["sifa_mr2ct"]["inputs"] = {"warm_start": "nope"}
    with pytest.raises(ConfigError, match=r"experiments\.sifa_mr2ct\.inputs\.warm_start: 'nope' is not an entry of translators"):
        render_stages(cfg, "config/config.yaml")


@pytest.mark.skipif(not DVC.exists() or shutil.which("git") is None, reason="dvc or git not installed")
@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/synthetic_full.yaml"])
def test_real_dvc_parses_the_rendering(tmp_path, configfile):
    for item in (".dvcignore", "config"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(DVC), "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(render_dvc_yaml(configfile))
    out = subprocess.run([str(DVC), "stage", "list"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    cfg = yaml.safe_load((REPO / configfile).read_text())
    stages = sorted(line.split()[0] for line in out.splitlines() if line.strip())
    expected = (
        ["data", "report"]
        + [f"preprocess-{m}" for m in ("ct", "mr")]
        + [f"experiment-{name}" for name in cfg["experiments"]]
        + [f"translate-{name}" for name in cfg.get("translators", {})]
    )
    assert stages == sorted(expected)
