"""GLUA end to end: real Snakemake on the tiny synthetic data set, step A (`adgan`) and step B
(`glua`) in both directions, its baseline on the same translated cache, and an ablation row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_tiny_project
from tests.workflow.test_workflow import TRAIN, snakemake
from xmodseg.artifacts.model_file import ModelFile

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

ADGAN = {"iterations": 3, "batch_size": 2, "ngf": 4, "n_res": 1, "mlp_dim": 8, "ndf": 4, "pool_size": 2, "checkpoint_every": 1}
GLUA = {"iterations": 3, "batch_size": 2, "blocks": [1, 1, 1, 1, 1], "width": 0.125, "checkpoint_every": 1, "log_every": 1}
DS = "tiny_synth"


def write_config(workdir: Path) -> None:
    translators, experiments = {}, {}
    for s, t in (("mr", "ct"), ("ct", "mr")):
        d = f"{s}2{t}"
        translators[f"adgan_{d}"] = {"translator": "adgan", "source": s, "target": t, "seeds": [0], "train": ADGAN}
        common = {"source": s, "target": t, "translator": f"adgan_{d}", "seeds": [0]}
        experiments[f"t2s_adgan_{d}"] = {"method": "translate_then_segment", **common, "train": TRAIN}
        experiments[f"glua_{d}"] = {"method": "glua", **common, "train": GLUA}
    experiments["glua_global_mr2ct"] = {
        "method": "glua", "label": "GLUA global alignment only", "source": "mr", "target": "ct", "translator": "adgan_mr2ct", "seeds": [0],
        "train": {**GLUA, "feature_discriminator": False, "output_discriminator": False, "local_mask": False},
    }
    cfg = {
        "registry": "config/tiny_datasets.yaml",
        "dataset": DS,
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "translators": translators,
        "experiments": experiments,
        "report": {"title": "tiny GLUA"},
    }
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    wd = make_tiny_project(tmp_path_factory.mktemp("glua") / "project", {}, "unused.yaml")
    write_config(wd)
    snakemake(wd)
    return wd


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("direction", ["mr2ct", "ct2mr"])
def test_glua_trains_on_the_adgan_cache_its_baseline_uses_and_carries_d_f(workdir, direction):
    models = workdir / "results/models" / DS
    cache = f"data/translated/{DS}/adgan_{direction}/seed0"
    glua, t2s = _json(models / f"glua_{direction}/seed0/model.json"), _json(models / f"t2s_adgan_{direction}/seed0/model.json")
    assert glua["data"]["source"]["cache"] == cache == t2s["data"]["source"]["cache"]  # the two differ only by step B
    assert glua["uses_target_labels_for_training"] is False and glua["data"]["target"]["labels_used"] is False
    model = ModelFile.load(models / f"glua_{direction}/seed0/model.pt")  # what evaluation rebuilds: D_f is part of it
    assert model.architecture.kind == "glua_deeplab" and model.architecture.kwargs["local_mask"] is True
    assert any(k.startswith("feature_discriminator.") for k in model.state_dict), sorted(model.state_dict)[:5]
    losses = [json.loads(line) for line in (workdir / f"logs/train/{DS}/glua_{direction}/seed0.jsonl").read_text().splitlines()]
    assert {"seg", "adv_feature", "adv_output", "d_feature", "d_output", "mask_mean"} <= set(losses[-1])
    metrics = _json(workdir / f"results/evaluation/{DS}/glua_{direction}/seed0/metrics.json")
    pooled = metrics["pooled"]
    assert pooled["cases"] == [c["case"] for c in metrics["cases"]]
    assert set(pooled["sifa_dice"]) == {"MYO", "LAC", "LVC", "AA", "mean"} and 0.0 <= pooled["sifa_dice"]["mean"] <= 1.0
    quality = _json(workdir / f"results/translators/{DS}/adgan_{direction}/seed0/quality.json")
    assert quality["translator"] == "adgan" and quality["iterations"] == 3


def test_the_ablation_row_has_no_discriminator_and_no_mask(workdir):
    model = ModelFile.load(workdir / f"results/models/{DS}/glua_global_mr2ct/seed0/model.pt")
    assert model.architecture.kwargs["local_mask"] is False and not any(k.startswith("feature_discriminator.") for k in model.state_dict)
    losses = json.loads((workdir / f"logs/train/{DS}/glua_global_mr2ct/seed0.jsonl").read_text().splitlines()[-1])
    assert "seg" in losses and not {"adv_feature", "adv_output", "d_feature", "d_output", "mask_mean"} & set(losses)


def test_report_compares_glua_with_its_baseline_and_states_pooled_numbers(workdir):
    md = (workdir / "results/report/summary.md").read_text()
    claims = md[md.index("## Claims"):]
    for arrow, d in (("MR→CT", "mr2ct"), ("CT→MR", "ct2mr")):
        assert f"| glua_{d} | t2s_adgan_{d} | {arrow} | Dice |" in claims
        assert f"| glua (adgan) | {arrow} | 1 | target labels: none |" in md
    pooled = md[md.index("## Pooled over test volumes"):]
    assert "| glua (adgan) | MR→CT | 1 |" in pooled and "| GLUA global alignment only | MR→CT | 1 |" in pooled
    assert "| translate_then_segment (adgan) | CT→MR | 1 |" in pooled
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(workdir, "-n"))
