"""MKD end to end: real Snakemake on the tiny synthetic data set (2 training volumes per modality),
MKD warm-started from the translation stage's CycleGAN in both directions at a label-scarce target
budget, its baselines under the same budget, an ablation row, and the assistant-volume sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_tiny_project
from tests.workflow.test_workflow import TRAIN, snakemake
from xmodseg.artifacts.model_file import ModelFile
from xmodseg.hashing import sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

CYCLEGAN = {"iterations": 2, "ngf": 4, "ndf": 4, "n_blocks": 1, "pool_size": 2, "checkpoint_every": 1}
MKD = {**TRAIN, "ndf": 4, "d_layers": 2, "pool_size": 2, "coupling_batch_size": 2}
DS = "tiny_synth"


def write_config(workdir: Path) -> None:
    translators, experiments = {}, {}
    for s, t in (("mr", "ct"), ("ct", "mr")):
        d = f"{s}2{t}"
        translators[f"cyclegan_{d}"] = {"translator": "cyclegan", "source": s, "target": t, "seeds": [0], "train": CYCLEGAN}
        budget = {"target": "subset", "fraction": 0.5, "seed": 0}
        assisted = {**budget, "assistant": s}
        common = {"source": s, "target": t, "seeds": [0]}
        experiments[f"oracle_subset_{d}"] = {"method": "oracle", **common, "labels": budget, "train": TRAIN}
        experiments[f"joint_subset_{d}"] = {"method": "joint", **common, "labels": assisted, "train": TRAIN}
        experiments[f"finetune_subset_{d}"] = {"method": "finetune", **common, "labels": assisted, "train": {**TRAIN, "pretrain_iterations": 2}}
        experiments[f"mkd_subset_{d}"] = {"method": "mkd", **common, "labels": assisted, "inputs": {"warm_start": f"cyclegan_{d}"}, "train": MKD}
    experiments["mkd_noiam_mr2ct"] = {"method": "mkd", "label": "mkd: no IAM", "source": "mr", "target": "ct", "seeds": [0],
                                      "labels": {"target": "subset", "fraction": 0.5, "assistant": "mr"}, "train": {**MKD, "iam": False}}
    experiments["mkd_a1_mr2ct"] = {"method": "mkd", "source": "mr", "target": "ct", "seeds": [0], "inputs": {"warm_start": "cyclegan_mr2ct"},
                                   "labels": {"target": "subset", "fraction": 0.5, "assistant": "mr", "assistant_volumes": 1}, "train": MKD}
    cfg = {
        "registry": "config/tiny_datasets.yaml",
        "dataset": DS,
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "translators": translators,
        "experiments": experiments,
        "report": {
            "title": "tiny MKD",
            "comparisons": [["mkd_subset_mr2ct", "oracle_subset_mr2ct"], ["mkd_subset_ct2mr", "joint_subset_ct2mr"]],
            "sweeps": [{"title": "assistant volumes", "x": "n_assistant", "lines": {"mkd": ["mkd_a1_mr2ct", "mkd_subset_mr2ct"]}}],
        },
    }
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = make_tiny_project(tmp_path_factory.mktemp("mkd") / "project", {}, "unused.yaml")
    write_config(wd)
    snakemake(wd)
    return wd


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize(("source", "target"), [("mr", "ct"), ("ct", "mr")])
def test_mkd_trains_on_both_labelled_modalities_from_the_warm_start_and_saves_the_ensemble(workdir, source, target):
    d = f"{source}2{target}"
    side = _json(workdir / f"results/models/{DS}/mkd_subset_{d}/seed0/model.json")
    labels = side["labels"]
    assert (labels["target"], labels["n_labelled"], labels["n_train"], labels["assistant"], labels["n_assistant"]) == ("subset", 1, 2, source, 2)
    assert side["data"]["assistant"]["cache"] == f"data/prepared/{DS}/{source}" and side["data"]["assistant"]["labels_used"] is True
    assert side["data"]["target"]["cases"] == labels["cases"] and side["data"]["target_unlabelled"]["labels_used"] is False
    translator = workdir / f"results/translators/{DS}/cyclegan_{d}/seed0/model.pt"
    assert side["inputs"]["warm_start"]["sha256"] == sha256_file(translator)
    model = ModelFile.load(workdir / f"results/models/{DS}/mkd_subset_{d}/seed0/model.pt")
    assert model.architecture.kind == "mkd_ensemble" and model.architecture.kwargs["members"] == 2
    assert {k.split(".")[1] for k in model.state_dict if k.startswith("members.")} == {"0", "1"}
    last = json.loads((workdir / f"logs/train/{DS}/mkd_subset_{d}/seed0.jsonl").read_text().splitlines()[-1])
    assert {"sup_real", "sup_syn", "kd_s2r", "kd_r2s", "g_seg_syn", "d_t", "d_a"} <= set(last)
    # the baselines under the same budget saw the same labelled target case
    for base in ("oracle", "joint", "finetune"):
        assert _json(workdir / f"results/models/{DS}/{base}_subset_{d}/seed0/model.json")["labels"]["cases"] == labels["cases"]


def test_the_ablation_and_the_sweep_rows(workdir):
    noiam = _json(workdir / f"results/models/{DS}/mkd_noiam_mr2ct/seed0/model.json")
    assert noiam["inputs"] == {} and noiam["params"]["iam"] is False
    last = json.loads((workdir / f"logs/train/{DS}/mkd_noiam_mr2ct/seed0.jsonl").read_text().splitlines()[-1])
    assert "kd_s2r" in last and "g_seg_syn" not in last
    a1 = _json(workdir / f"results/models/{DS}/mkd_a1_mr2ct/seed0/model.json")
    assert a1["labels"]["n_assistant"] == 1 and len(a1["data"]["assistant"]["cases"]) == 1


def test_report_states_both_budgets_compares_and_plots_the_sweep(workdir):
    md = (workdir / "results/report/summary.md").read_text()
    assert "| mkd | MR→CT | 1 | target labels: subset 1/2 (seed 0); assistant: mr 2/2 |" in md
    assert "| mkd | CT→MR | 1 | target labels: subset 1/2 (seed 0); assistant: ct 2/2 |" in md
    assert "| oracle | MR→CT | 1 | target labels: subset 1/2 (seed 0) |" in md
    claims = md[md.index("## Claims"):]
    assert "| mkd_subset_mr2ct | oracle_subset_mr2ct | MR→CT | Dice |" in claims and "| mkd_subset_ct2mr | joint_subset_ct2mr | CT→MR | Dice |" in claims
    sweep = md[md.index("## Label-budget sweeps"):]
    assert [line.split("|")[2].strip() for line in sweep.splitlines() if line.startswith("| mkd |")] == ["1", "2"]
    assert (workdir / "results/report/sweeps.png").stat().st_size > 1000
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(workdir, "-n"))
