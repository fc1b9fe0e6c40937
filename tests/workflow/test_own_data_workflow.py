"""A researcher's own MR + CT folders end to end (issue 22): `xmodseg init-dataset` lists the cases
and label values (different per modality: MR 1/2, CT 100/200), writes a registry entry and a
config; `xmodseg check-data` checks every case; the workflow runs at a tiny scale; `xmodseg
predict` segments an unlabelled scan on its own grid; `xmodseg explain` traces a number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import blob_case, make_tiny_project, write_volume
from tests.workflow.test_workflow import TRAIN, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_controller")]  # slurm_controller: see tests/conftest.py

BIN = Path(sys.executable).parent
VALUES = {"mr": {205: 1, 500: 2}, "ct": {205: 100, 500: 200}}  # the same two structures, each modality its own values


def write_folder(root: Path, modality: str, cases: list[str], seed: int, spacing=(2.0, 2.0, 3.0)) -> None:
    rng = np.random.default_rng(seed)
    for i, case in enumerate(cases):
        image, label = blob_case(rng, kind=modality, scale=100.0 * (i + 1))
        own = np.zeros(label.shape, np.uint16)
        for raw, value in VALUES[modality].items():
            own[label == raw] = value
        write_volume(root / "images" / f"{case}.nii.gz", image.astype(np.float32), spacing)
        write_volume(root / "labels" / f"{case}.nii.gz", own, spacing)


def xmodseg(wd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "xmodseg"), *args], cwd=wd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("own")
    wd = make_tiny_project(base / "project", {}, "unused.yaml")
    write_folder(base / "MR", "mr", ["p1", "p2", "p3", "p4"], 0)
    write_folder(base / "CT", "ct", ["s01", "s02", "s03", "s04"], 1)
    (base / "MR" / "images" / "p9.nii.gz").write_bytes((base / "MR" / "images" / "p1.nii.gz").read_bytes())  # a scan without a label
    return wd, base


@pytest.fixture(scope="module")
def initialised(project) -> tuple[Path, Path, str]:
    wd, base = project
    proc = xmodseg(wd, "init-dataset", "--name", "mine", "--mr", str(base / "MR"), "--ct", str(base / "CT"), "--pattern", "images/{case}.nii.gz", "--classes", "myo", "lv")
    assert proc.returncode == 0, proc.stderr
    return wd, base, proc.stdout


def test_init_dataset_writes_a_registry_entry_with_one_mapping_per_modality(initialised):
    wd, base, out = initialised
    entry = yaml.safe_load((wd / "config/mine_dataset.yaml").read_text())["datasets"]["mine"]
    assert entry["labels"]["classes"] == ["background", "myo", "lv"]
    assert entry["modalities"]["mr"]["labels"]["mapping"] == {0: 0, 1: 1, 2: 2} and entry["modalities"]["ct"]["labels"]["mapping"] == {0: 0, 100: 1, 200: 2}
    assert entry["modalities"]["mr"]["cases"] == ["p1", "p2", "p3", "p4"] and entry["modalities"]["mr"]["test"] == ["p4"]
    assert entry["source"]["layout"] == {"image": "images/{case}.nii.gz", "label": "labels/{case}.nii.gz"}
    assert "label values [0, 100, 200] -> 0=background, 100=myo, 200=lv" in out and "1 scans without a label left out: p9" in out
    cfg = yaml.safe_load((wd / "config/mine.yaml").read_text())
    assert cfg["data_path"] == {"mr": str(base / "MR"), "ct": str(base / "CT")} and set(cfg["experiments"]) == {"source_only_mr2ct", "source_only_ct2mr", "oracle_mr", "oracle_ct"}
    again = xmodseg(wd, "init-dataset", "--name", "mine", "--mr", str(base / "MR"), "--pattern", "images/{case}.nii.gz")
    assert again.returncode == 2 and "config/mine_dataset.yaml exists" in again.stderr  # nothing overwritten


def test_check_data_then_the_workflow_then_predict_and_explain(initialised):
    wd, base, _ = initialised
    proc = xmodseg(wd, "check-data", "--configfile", "config/mine.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok: 8 cases checked") and "myo,lv" in proc.stdout
    assert (wd / "results/check-data/mine/ct/s01.png").stat().st_size > 1000 and (wd / "results/check-data/mine/check.tsv").is_file()

    cfg = yaml.safe_load((wd / "config/mine.yaml").read_text())
    cfg["preprocess"]["crop_size"] = [32, 32]
    for exp in cfg["experiments"].values():
        exp["train"] = TRAIN
    (wd / "config/tiny.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(wd)
    metrics = json.loads((wd / "results/evaluation/mine/oracle_ct/seed0/metrics.json").read_text())
    assert metrics["class_names"] == ["myo", "lv"] and metrics["provenance"]["labels"]["mapping"] == {"0": 0, "100": 1, "200": 2}

    scans = base / "new"
    scans.mkdir()
    scan = scans / "unseen.nii.gz"
    image, _ = blob_case(np.random.default_rng(7), kind="ct")
    write_volume(scan, image.astype(np.float32), (1.5, 1.5, 2.5), origin=(10.0, -5.0, 3.0))
    proc = xmodseg(wd, "predict", "-m", "results/models/mine/oracle_ct/seed0/model.pt", "-i", str(scans), "-o", str(base / "pred"))
    assert proc.returncode == 0, proc.stderr
    pred, src = sitk.ReadImage(str(base / "pred/unseen.nii.gz")), sitk.ReadImage(str(scan))
    assert (pred.GetSize(), pred.GetSpacing(), pred.GetOrigin()) == (src.GetSize(), src.GetSpacing(), src.GetOrigin())
    assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2}
    record = json.loads((base / "pred/predictions.json").read_text())
    assert record["cache"] == "data/prepared/mine/ct" and record["scans"][0]["scan"] == str(scan)
    again = xmodseg(wd, "predict", "-m", "results/models/mine/oracle_ct/seed0/model.pt", "-i", str(scan), "-o", str(base / "pred"))
    assert again.returncode == 2 and "unseen.nii.gz exists" in again.stderr
    source_only = xmodseg(wd, "predict", "-m", "results/models/mine/source_only_mr2ct/seed0/model.pt", "-i", str(scan), "-o", str(base / "p2"))
    assert source_only.returncode == 2 and "pass --cache data/prepared/<dataset>/<target modality>" in source_only.stderr

    proc = xmodseg(wd, "explain", "oracle_ct", "lv")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("oracle_ct: Dice lv = ") and "method oracle on ct -> ct of data set mine" in out
    assert "target data/prepared/mine/ct" in out and "4 iterations" in out and "verify every link: xmodseg audit results/metrics/mine/oracle_ct.json" in out
    assert len(out.splitlines()) <= 15
