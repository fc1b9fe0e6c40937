"""Co-DA end to end: real Snakemake on the tiny synthetic data set (2 training volumes per modality),
semi-supervised on one modality at a 50 % label budget: supervised_subset, cps and co_da (with an
ablation row and A-only inference), the fully supervised upper bound, and a label-fraction sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_tiny_project
from tests.workflow.test_workflow import TRAIN, snakemake
from xmodseg.artifacts.model_file import ModelFile

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

DS = "tiny_synth"
BIN = Path(sys.executable).parent
HALF = {"target": "subset", "fraction": 0.5, "seed": 0}
CPS = {**TRAIN, "unlabelled_batch_size": 2, "lambda_max": 1.0, "rampup": 0.0}
CO_DA = {**CPS, "momentum": 0.9}


def write_config(workdir: Path) -> None:
    ct = {"source": "ct", "target": "ct", "seeds": [0]}  # one modality: nothing from MR
    experiments = {
        "oracle_ct": {"method": "oracle", **ct, "train": TRAIN},
        "supervised_subset_ct": {"method": "supervised_subset", **ct, "labels": HALF, "train": TRAIN},
        "cps_ct": {"method": "cps", **ct, "labels": HALF, "train": CPS},
        "co_da_ct": {"method": "co_da", **ct, "labels": HALF, "train": CO_DA},
        "co_da_nofilter_ct": {"method": "co_da", "label": "co_da: no filter", **ct, "labels": HALF, "train": {**CO_DA, "filter": False}},
        "co_da_a_ct": {"method": "co_da", "label": "co_da: model A", **ct, "labels": HALF, "train": {**CO_DA, "ensemble": False}},
        "co_da_all_ct": {"method": "co_da", **ct, "labels": {"target": "subset", "fraction": 1.0, "seed": 0}, "train": CO_DA},
        "co_da_mr": {"method": "co_da", "source": "mr", "target": "mr", "seeds": [0], "labels": HALF, "train": CO_DA},
    }
    cfg = {
        "registry": "config/tiny_datasets.yaml",
        "dataset": DS,
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "translators": {},
        "experiments": experiments,
        "report": {
            "title": "tiny Co-DA",
            "comparisons": [["co_da_ct", "supervised_subset_ct"], ["co_da_ct", "cps_ct"]],
            "sweeps": [{"title": "labelled fraction", "x": "n_labelled", "lines": {"co_da": ["co_da_ct", "co_da_all_ct"]}}],
        },
    }
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = make_tiny_project(tmp_path_factory.mktemp("co_da") / "project", {}, "unused.yaml")
    write_config(wd)
    snakemake(wd)
    return wd


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _last_log(workdir: Path, exp: str) -> dict:
    return json.loads((workdir / f"logs/train/{DS}/{exp}/seed0.jsonl").read_text().splitlines()[-1])


def test_co_da_sees_labels_of_the_subset_only_and_the_rest_as_images(workdir):
    side = _json(workdir / f"results/models/{DS}/co_da_ct/seed0/model.json")
    labels = side["labels"]
    assert (labels["target"], labels["n_labelled"], labels["n_train"]) == ("subset", 1, 2)
    assert side["data"]["source"] is None
    assert side["data"]["target"]["cases"] == labels["cases"] and side["data"]["target"]["labels_used"] is True
    unlabelled = side["data"]["target_unlabelled"]
    assert unlabelled["labels_used"] is False and set(unlabelled["cases"]).isdisjoint(labels["cases"]) and len(unlabelled["cases"]) == 1
    assert "1003" not in labels["cases"] + unlabelled["cases"]  # the test case
    model = ModelFile.load(workdir / f"results/models/{DS}/co_da_ct/seed0/model.pt")
    assert model.architecture.kind == "unet_ensemble" and model.architecture.kwargs["members"] == 2
    assert {"seg_a", "seg_b", "cps_a", "cps_b", "kept"} <= set(_last_log(workdir, "co_da_ct"))
    # the baselines drew the same labelled case; the lower bound never loads the unlabelled images
    for base in ("supervised_subset", "cps"):
        assert _json(workdir / f"results/models/{DS}/{base}_ct/seed0/model.json")["labels"]["cases"] == labels["cases"]
    assert "target_unlabelled" not in _json(workdir / f"results/models/{DS}/supervised_subset_ct/seed0/model.json")["data"]
    assert _json(workdir / f"results/models/{DS}/co_da_mr/seed0/model.json")["labels"]["n_labelled"] == 1


def test_switch_and_single_model_rows(workdir):
    assert "kept" not in _last_log(workdir, "co_da_nofilter_ct") and "cps_a" in _last_log(workdir, "co_da_nofilter_ct")
    a_only = ModelFile.load(workdir / f"results/models/{DS}/co_da_a_ct/seed0/model.pt")
    assert a_only.architecture.kwargs["members"] == 1
    full = ModelFile.load(workdir / f"results/models/{DS}/co_da_ct/seed0/model.pt")
    # A-only inference is the same training: model A's weights are the ensemble's first member
    assert all(a_only.state_dict[k].equal(full.state_dict[k]) for k in a_only.state_dict)


def test_report_states_the_budget_compares_and_plots_the_fraction_sweep(workdir):
    md = (workdir / "results/report/summary.md").read_text()
    assert "| co_da | CT | 1 | target labels: subset 1/2 (seed 0) |" in md and "| co_da | MR | 1 | target labels: subset 1/2 (seed 0) |" in md
    assert "| supervised_subset | CT | 1 | target labels: subset 1/2 (seed 0) |" in md and "→" not in md.split("## ASSD")[0]
    claims = md[md.index("## Claims"):]
    assert "| co_da_ct | supervised_subset_ct | CT | Dice |" in claims and "| co_da_ct | cps_ct | CT | Dice |" in claims
    sweep = md[md.index("## Label-budget sweeps"):]
    assert [line.split("|")[2].strip() for line in sweep.splitlines() if line.startswith("| co_da |")] == ["1", "2"]
    assert (workdir / "results/report/sweeps.png").stat().st_size > 1000
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(workdir, "-n"))


def test_the_audit_matches_every_report_row_to_its_experiment(workdir):
    """Two co_da rows on CT differ only by their label budget (the sweep): the audit must find each
    number in its own row (not recorded into DVC here, so only the value checks are read)."""
    proc = subprocess.run([str(BIN / "xmodseg"), "audit", "results/report/summary.md"], cwd=workdir, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    summary_rows = [line for line in out.splitlines() if line.startswith("| results/report/summary.csv | value |")]
    assert summary_rows and all("| ok |" in line for line in summary_rows), out[-3000:]
    assert "| results/metrics/tiny_synth/co_da_all_ct.json | value | ok |" in out
