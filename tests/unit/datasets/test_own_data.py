"""`xmodseg init-dataset` and `xmodseg check-data` on tiny folders: how classes are matched across
modalities, what is refused (and named), and the problems check-data reports per case."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tests.conftest import write_volume
from xmodseg.datasets.own_data import init_dataset, match_classes, propose_test, scan_modality
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.preprocess import PreprocessConfig
from xmodseg.preprocess.check_data import check_data, format_checks
from xmodseg.registry import load_dataset


def _case(root, case, values, shape=(8, 12, 12), spacing=(1.0, 1.0, 2.0), label_spacing=None):
    image = np.random.default_rng(len(case)).normal(100, 10, shape).astype(np.float32)
    label = np.zeros(shape, np.uint16)
    for i, v in enumerate(values):
        label[2:6, 1 + 4 * i : 4 + 4 * i, 1:11] = v
    write_volume(root / "images" / f"{case}.nii.gz", image, spacing)
    write_volume(root / "labels" / f"{case}.nii.gz", label, label_spacing or spacing)


def test_classes_match_by_value_order_or_by_map(tmp_path):
    for c in ("a1", "a2", "a3"):
        _case(tmp_path / "MR", c, [1, 2])
        _case(tmp_path / "CT", c.replace("a", "b"), [500, 205])
    mr = scan_modality("mr", tmp_path / "MR", "images/{case}.nii.gz", "labels/{case}.nii.gz")
    ct = scan_modality("ct", tmp_path / "CT", "images/{case}.nii.gz", "labels/{case}.nii.gz")
    assert (mr.values, ct.values, mr.spacing) == ([0, 1, 2], [0, 205, 500], [1.0, 1.0, 2.0])
    classes, maps = match_classes([mr, ct], None, None)
    assert classes == ["background", "class_1", "class_2"] and maps == {"mr": {0: 0, 1: 1, 2: 2}, "ct": {0: 0, 205: 1, 500: 2}}
    classes, maps = match_classes([mr, ct], ["lv", "myo"], {"ct": {500: 1, 205: 2}})
    assert classes == ["background", "lv", "myo"] and maps["ct"] == {0: 0, 205: 2, 500: 1}
    with pytest.raises(InputDataError, match=r"label values \[500\] of ct are not in --map ct"):
        match_classes([mr, ct], ["lv", "myo"], {"ct": {205: 2}})
    _case(tmp_path / "CT", "b9", [205, 500, 820])  # a third structure in one CT only
    ct = scan_modality("ct", tmp_path / "CT", "images/{case}.nii.gz", "labels/{case}.nii.gz")
    with pytest.raises(InputDataError, match=r"different numbers of non-zero label values \(mr: \[1, 2\]; ct: \[205, 500, 820\]\).*--map"):
        match_classes([mr, ct], None, None)
    assert propose_test(["c", "a", "b", "d", "e", "f"], 0.2) == ["e", "f"] and propose_test(["a", "b"], 0.9) == ["b"]


def test_init_dataset_writes_loadable_files_and_refuses_what_it_cannot_use(tmp_path):
    for c in ("p1", "p2", "p3"):
        _case(tmp_path / "MR", c, [1, 2])
    (tmp_path / "MR" / "images" / "bad name.nii.gz").write_bytes((tmp_path / "MR" / "images" / "p1.nii.gz").read_bytes())
    with pytest.raises(InputDataError, match=r"case ids \['bad name'\] are not usable names"):
        init_dataset("mine", {"mr": tmp_path / "MR"}, "images/{case}.nii.gz", out_dir=tmp_path / "cfg")
    (tmp_path / "MR" / "images" / "bad name.nii.gz").unlink()
    with pytest.raises(InputDataError, match=r"no file matches 'scans/\{case\}.nii.gz'"):
        init_dataset("mine", {"mr": tmp_path / "MR"}, "scans/{case}.nii.gz", label_pattern="labels/{case}.nii.gz", out_dir=tmp_path / "cfg")
    with pytest.raises(ConfigError, match=r"--label-pattern is needed"):
        init_dataset("mine", {"mr": tmp_path / "MR"}, "{case}.nii.gz", out_dir=tmp_path / "cfg")
    result = init_dataset("mine", {"mr": tmp_path / "MR"}, "images/{case}.nii.gz", classes=["a", "b"], out_dir=tmp_path / "cfg")
    spec = load_dataset(result.registry, "mine")
    assert spec.modality("mr").test_cases == ("p3",) and spec.labels_of("mr").class_names == ("background", "a", "b")
    cfg = yaml.safe_load(result.config.read_text())
    assert cfg["experiments"]["oracle_mr"]["train"] == {"preset": "segmentation"} and cfg["presets"]["segmentation"]["iterations"] == 600
    assert cfg["preprocess"]["spacing"] == [1.0, 1.0, 2.0] and "&" not in result.config.read_text()  # presets by name, no anchors
    with pytest.raises(ConfigError, match=r"mine_dataset.yaml exists"):
        init_dataset("mine", {"mr": tmp_path / "MR"}, "images/{case}.nii.gz", out_dir=tmp_path / "cfg")


def test_check_data_names_each_broken_case_and_keeps_checking(tmp_path):
    for c in ("p1", "p2", "p3", "p4"):
        _case(tmp_path / "MR", c, [1, 2])
    result = init_dataset("mine", {"mr": tmp_path / "MR"}, "images/{case}.nii.gz", out_dir=tmp_path / "cfg")
    _case(tmp_path / "MR", "p2", [1, 7])  # later: a value outside the mapping
    _case(tmp_path / "MR", "p3", [1, 2], label_spacing=(1.0, 1.0, 3.0))  # and a label on another grid
    spec = load_dataset(result.registry, "mine")
    cfg = PreprocessConfig.from_dict({"spacing": [1, 1, 2], "slice_axis": "axial", "crop_size": [8, 8]})
    rows = check_data(spec, ["mr"], cfg, {"mr": str(tmp_path / "MR")}, tmp_path / "qc")
    by_case = {r.case: r for r in rows}
    assert "label values [7]" in by_case["p2"].problem and "spacing" in by_case["p3"].problem
    assert "the crop keeps" in by_case["p1"].problem and by_case["p1"].inside_crop < 0.99  # 8 x 8 cuts the structures
    assert (tmp_path / "qc" / "mr" / "p1.png").is_file() and not (tmp_path / "qc" / "mr" / "p2.png").exists()
    assert format_checks(rows, tmp_path / "qc").startswith("4 PROBLEM(S): 4 cases checked")
    wide = PreprocessConfig.from_dict({"spacing": [1, 1, 2], "slice_axis": "axial", "crop_size": [32, 32]})
    rows = check_data(spec, ["mr"], wide, {"mr": str(tmp_path / "MR")}, tmp_path / "qc")
    assert {r.case for r in rows if r.problem} == {"p2", "p3"} and {r.classes_present for r in rows if not r.problem} == {"class_1,class_2"}
