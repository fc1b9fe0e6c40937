"""Corrupt or unusable data is refused before anything is imported or trained (issue 16): DICOM
series with a truncated, missing or misplaced slice; tfrecords with a flipped payload byte; label
files without foreground; a target modality without test cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import make_tiny_project, write_volume
from tests.unit.datasets.test_importers import write_dicom_series
from tests.unit.datasets.test_tfrecord import example, slices, write_tfrecord
from xmodseg.datasets.tfrecord import read_records, tfrecords_to_cache
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.registry import dataset_from_config, load_dataset

pytestmark = pytest.mark.usefixtures("slurm_controller")  # Snakemake starts here: see tests/conftest.py

# ---- DICOM series: every slice present, readable and in its place --------------------------------

SPACING, ORIGIN = (1.4, 1.6, 6.0), (-120.0, 35.5, 60.0)
C, S = np.cos(0.3), np.sin(0.3)
OBLIQUE = (C, 0.0, S, 0.0, 1.0, 0.0, -S, 0.0, C)  # rotation about y: positions are not just z
LAYOUT = {"dicom": "MR/{case}/DICOM_anon", "masks": "MR/{case}/Ground"}


def chaos_like(tmp_path: Path, cases=("1", "2"), n_slices: int = 6) -> tuple[object, Path, dict[str, list[Path]]]:
    """A CHAOS-like source folder (one DICOM series + one PNG mask per slice per case) and its spec."""
    rng = np.random.default_rng(0)
    src = tmp_path / "CHAOS"
    files = {}
    for case in cases:
        volume = rng.integers(0, 800, size=(n_slices, 12, 10))
        folder = src / "MR" / case
        files[case] = write_dicom_series(folder / "DICOM_anon", volume, SPACING, ORIGIN, OBLIQUE)
        (folder / "Ground").mkdir()
        for f in files[case]:
            mask = np.zeros((12, 10), np.uint8)
            mask[3:8, 2:6] = 60  # liver range
            sitk.WriteImage(sitk.GetImageFromArray(mask), str(folder / "Ground" / f"{f.stem}.png"))
    spec = dataset_from_config(
        "chaos",
        {
            "root": str(tmp_path / "raw"),
            "labels": {"classes": ["background", "liver"], "mapping": {0: 0, 63: 1}},
            "modalities": {"mr": {"kind": "mr", "image": "mr/{case}_image.nii.gz", "label": "mr/{case}_label.nii.gz", "cases": list(cases), "test": []}},
        },
    )
    return spec, src, files


def _import(spec, src):
    from xmodseg.datasets.dicom_series import import_series_with_masks

    return import_series_with_masks(spec, "mr", src, LAYOUT)


def _move_slice(path: Path, shift_mm: float) -> None:
    """Rewrite one slice with its ImagePositionPatient moved along the slice normal."""
    from xmodseg.datasets.dicom_series import keep_locale

    with keep_locale():
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.LoadPrivateTagsOn()
        img = reader.Execute()
        pos = np.array([float(v) for v in img.GetMetaData("0020|0032").split("\\")])
        normal = np.array(OBLIQUE).reshape(3, 3)[:, 2]
        img.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in pos + shift_mm * normal))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(path))
        writer.Execute(img)


def test_good_series_import_and_keep_their_geometry(tmp_path):
    spec, src, _ = chaos_like(tmp_path)
    records = _import(spec, src)
    assert [r["n_slices"] for r in records] == [6, 6]
    img = sitk.ReadImage(str(spec.image_path("mr", "2")))
    assert img.GetSpacing() == pytest.approx(SPACING, abs=1e-4)
    assert img.GetDirection() == pytest.approx(OBLIQUE, abs=1e-5)


def test_truncated_dicom_slice_is_refused_naming_folder_and_file(tmp_path):
    """GDCM leaves an unreadable file out of the series; ITK only warns and averages the spacing."""
    spec, src, files = chaos_like(tmp_path)
    cut = files["2"][2]
    cut.write_bytes(cut.read_bytes()[:-100])
    with pytest.raises(InputDataError, match=rf"MR/2/DICOM_anon: 1 DICOM file\(s\) of this folder are not in its series: \['{cut.name}'\]"):
        _import(spec, src)
    assert not spec.root.exists(), "case 1 (good) must not be imported when case 2 is refused"


def test_missing_dicom_slice_is_refused_naming_the_gap(tmp_path):
    spec, src, files = chaos_like(tmp_path)
    files["1"][3].unlink()
    (src / "MR" / "1" / "Ground" / f"{files['1'][3].stem}.png").unlink()  # mask removed too: only the gap tells
    before, after = files["1"][2].name, files["1"][4].name
    with pytest.raises(InputDataError, match=rf"MR/1/DICOM_anon: the DICOM slices are not evenly spaced .*median step 6\.000 mm.*{before} at [-\d.]+ mm -> {after} at [-\d.]+ mm \(step 12\.000 mm\)"):
        _import(spec, src)
    assert not spec.root.exists()


def test_mask_without_its_dicom_slice_is_refused(tmp_path):
    """The last slice's DICOM file is gone (no gap to see) but its mask is still there."""
    spec, src, files = chaos_like(tmp_path, cases=("1",))
    files["1"][-1].unlink()
    with pytest.raises(InputDataError, match=rf"MR/1/Ground: mask\(s\) \['{files['1'][-1].stem}.png'\] have no slice in the DICOM series"):
        _import(spec, src)


@pytest.mark.parametrize(("shift_mm", "refused"), [(0.5, True), (0.005, False)])
def test_unevenly_spaced_slices_beyond_the_tolerance_are_refused(tmp_path, shift_mm, refused):
    spec, src, files = chaos_like(tmp_path, cases=("1",))
    _move_slice(files["1"][3], shift_mm)
    if not refused:  # positions rounded by a scanner stay within the tolerance
        _import(spec, src)
        assert spec.image_path("mr", "1").is_file()
        return
    with pytest.raises(InputDataError, match=rf"not evenly spaced.*{files['1'][3].name} at [-\d.]+ mm \(step 6\.500 mm\)"):
        _import(spec, src)


# ---- tfrecords: the payload CRC-32C ---------------------------------------------------------------


def test_flipped_payload_byte_in_a_tfrecord_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    path = write_tfrecord(tmp_path / "a.tfrecords", [example(*s) for s in slices(rng, 3)])
    assert len(list(read_records(path))) == 3
    raw = bytearray(path.read_bytes())
    first = 8 + 4 + int.from_bytes(raw[:8], "little") + 4  # record 0: length, its CRC, payload, payload CRC
    raw[first + 12 + 200] ^= 0x01  # one bit of record 1's image data
    path.write_bytes(bytes(raw))
    with pytest.raises(InputDataError, match=r"a\.tfrecords: record 1 payload CRC-32C mismatch"):
        list(read_records(path))
    with pytest.raises(InputDataError, match=r"a\.tfrecords: record 1 payload CRC"):
        tfrecords_to_cache([path], tmp_path / "cache", dataset="x", modality="ct")
    assert not (tmp_path / "cache").exists()


# ---- label files without foreground ---------------------------------------------------------------

CFG = PreprocessConfig.from_dict({"spacing": [2.0, 2.0, 2.0], "slice_axis": "axial", "crop_size": [16, 16]})


@pytest.mark.parametrize(("case", "split"), [("2", "train"), ("4", "test")])
def test_label_without_foreground_stops_preprocessing(tiny_dataset, tmp_path, case, split):
    spec = load_dataset(tiny_dataset, "tiny")
    path = spec.label_path("ct", case)
    write_volume(path, np.zeros((24, 28, 28), np.uint16))
    out = tmp_path / "cache" / "ct"
    with pytest.raises(InputDataError, match=rf"tiny/ct: label file\(s\) with no foreground .*{split} case {case}: .*ct/{case}_label\.nii\.gz"):
        preprocess_modality(spec, "ct", CFG, out)
    assert not out.exists()


def test_labels_with_foreground_in_every_case_preprocess(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    assert (preprocess_modality(spec, "ct", CFG, tmp_path / "cache") / "manifest.json").is_file()


# ---- a target modality without test cases ---------------------------------------------------------


def test_empty_test_list_of_a_target_is_refused(tiny_dataset):
    from xmodseg.registry import check_has_test_cases

    raw = yaml.safe_load(tiny_dataset.read_text())["datasets"]["tiny"]
    raw["modalities"]["ct"]["test"] = []
    spec = dataset_from_config("tiny", raw)  # a modality may have no test cases (a source only) ...
    check_has_test_cases(spec, "mr", "experiments.x")
    with pytest.raises(ConfigError, match=r"datasets\.tiny\.modalities\.ct\.test is empty, but experiments\.x is evaluated on"):
        check_has_test_cases(spec, "ct", "experiments.x")  # ... but not a target


def test_workflow_with_an_empty_target_test_list_stops_before_any_job(tmp_path):
    config = {
        "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
        "experiments": {"so_mr2ct": {"method": "source_only", "source": "mr", "target": "ct", "seeds": [0], "train": {"iterations": 2}}},
    }
    project = make_tiny_project(tmp_path / "p", config)
    registry = project / "config" / "tiny_datasets.yaml"
    reg = yaml.safe_load(registry.read_text())
    reg["datasets"]["tiny_synth"]["modalities"]["ct"]["test"] = []
    registry.write_text(yaml.safe_dump(reg))
    snakemake = str(Path(sys.executable).parent / "snakemake")
    plan = subprocess.run([snakemake, "-n", "--configfile", "config/tiny.yaml"], cwd=project, capture_output=True, text=True, timeout=300)
    assert plan.returncode != 0, plan.stdout[-2000:]
    assert "datasets.tiny_synth.modalities.ct.test is empty, but experiments.so_mr2ct is evaluated" in plan.stdout + plan.stderr
