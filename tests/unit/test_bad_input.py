"""Bad input stops with a message naming the file or key, and leaves no complete-looking output."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tests.conftest import REPO, write_volume
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import load_dataset

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py

CFG = PreprocessConfig.from_dict({"spacing": [1.5, 1.5, 1.5], "slice_axis": "axial", "crop_size": [16, 16]})


def _run_expecting(tiny_dataset, tmp_path, match):
    spec = load_dataset(tiny_dataset, "tiny")
    out = tmp_path / "cache" / "ct"
    with pytest.raises(InputDataError, match=match):
        preprocess_modality(spec, "ct", CFG, out)
    assert not out.exists(), "a failed run must not leave a cache folder"
    assert not list((tmp_path / "cache").glob("*")), "no temporary folder left behind"


def test_corrupt_nifti(tiny_dataset, tmp_path):
    path = load_dataset(tiny_dataset, "tiny").image_path("ct", "2")
    path.write_bytes(b"this is not a nifti file at all" * 10)
    _run_expecting(tiny_dataset, tmp_path, r"ct/2_image\.nii\.gz: cannot read image")


def test_truncated_nifti(tiny_dataset, tmp_path):
    path = load_dataset(tiny_dataset, "tiny").image_path("ct", "3")
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    _run_expecting(tiny_dataset, tmp_path, r"ct/3_image\.nii\.gz")


def test_empty_file(tiny_dataset, tmp_path):
    load_dataset(tiny_dataset, "tiny").label_path("ct", "1").write_bytes(b"")
    _run_expecting(tiny_dataset, tmp_path, r"ct/1_label\.nii\.gz: label file is empty")


def test_geometry_mismatch(tiny_dataset, tmp_path):
    path = load_dataset(tiny_dataset, "tiny").label_path("ct", "2")
    write_volume(path, np.zeros((24, 28, 28), np.uint16), spacing=(1.0, 1.0, 2.0))
    _run_expecting(tiny_dataset, tmp_path, r"ct/2_label\.nii\.gz: label geometry does not match image")


def test_label_values_outside_mapping(tiny_dataset, tmp_path):
    path = load_dataset(tiny_dataset, "tiny").label_path("ct", "1")
    lab = np.zeros((24, 28, 28), np.uint16)
    lab[5:8, 5:8, 5:8] = 999
    write_volume(path, lab)
    _run_expecting(tiny_dataset, tmp_path, r"ct/1_label\.nii\.gz: label values \[999\]")


def test_empty_image(tiny_dataset, tmp_path):
    path = load_dataset(tiny_dataset, "tiny").image_path("ct", "1")
    write_volume(path, np.full((24, 28, 28), -1000.0, np.float32))
    _run_expecting(tiny_dataset, tmp_path, r"ct/1_image\.nii\.gz: image is empty")


def test_missing_file(tiny_dataset, tmp_path):
    load_dataset(tiny_dataset, "tiny").image_path("ct", "2").unlink()
    _run_expecting(tiny_dataset, tmp_path, r"ct/2_image\.nii\.gz: image file not found")


def test_invalid_config_names_the_key():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(cfg, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))  # the default is valid
    cfg["preprocess"]["spacing"] = [2.5, -1, 2.5]
    with pytest.raises(WorkflowError, match=r"spacing"):
        validate(cfg, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["experiments"]["oracle_mr2ct"]["train"]["iterations"] = 0
    with pytest.raises(WorkflowError, match=r"iterations"):
        validate(cfg, schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))


def test_registry_errors_name_the_key(tmp_path):
    reg = tmp_path / "r.yaml"
    reg.write_text(yaml.safe_dump({"datasets": {"x": {"labels": {"classes": ["bg", "a"], "mapping": {0: 0, 1: 1}}, "modalities": {"ct": {"image": "a", "label": "b", "cases": [1, 2], "test": [3]}}}}}))
    with pytest.raises(ConfigError, match=r"datasets\.x\.modalities\.ct\.test: \['3'\] are not in"):
        load_dataset(reg, "x")
    with pytest.raises(ConfigError, match="not in"):
        load_dataset(reg, "missing")
