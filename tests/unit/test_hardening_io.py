"""Issue 16, corrupt data must never be imported: every volume is read through one checked reader
(truncation measured from the file's own vox_offset, stored NaN/Inf, header spacing), a failed
write is never committed, a bad case leaves no half-imported data set, and a geometry mismatch
names the property that differs."""

from __future__ import annotations

import gzip
import json
import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from tests.conftest import blob_case, write_volume
from xmodseg import imageio
from xmodseg.atomic import write_json
from xmodseg.cli import main
from xmodseg.datasets.nifti_folder import import_folder
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.imageio import check_pair_geometry, read_image, write_image
from xmodseg.registry import dataset_from_config, load_dataset

CASES = ["1", "2", "3"]
LAYOUT = {"image": "img/{case}.nii.gz", "label": "lab/{case}.nii.gz"}


def _entry(root: Path, **source) -> dict:
    return {
        "root": str(root),
        "source": {"kind": "import", "importer": "folder", "layout": LAYOUT, **source},
        "labels": {"classes": ["background", "a", "b"], "mapping": {0: 0, 205: 1, 500: 2}},
        "modalities": {"ct": {"kind": "ct", "image": "ct/{case}_image.nii.gz", "label": "ct/{case}_label.nii.gz", "cases": CASES, "test": ["3"]}},
    }


def _source(folder: Path, seed: int = 0, ext: str = "nii.gz") -> Path:
    """Three CT blob cases laid out as LAYOUT (image extension `ext`)."""
    rng = np.random.default_rng(seed)
    for case in CASES:
        img, lab = blob_case(rng)
        write_volume(folder / f"img/{case}.{ext}", img)
        write_volume(folder / f"lab/{case}.nii.gz", lab)
    return folder


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def _cut(path: Path, keep: float | int) -> None:
    """Cut `path`'s data: a fraction (float) of the compressed bytes, or drop `keep` (negative int)
    bytes from the decompressed stream and recompress."""
    raw = path.read_bytes()
    if isinstance(keep, float):
        path.write_bytes(raw[: int(len(raw) * keep)])
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(gzip.decompress(raw)[:keep]))
    else:
        path.write_bytes(raw[:keep])


# ---- one checked reader: truncation ----------------------------------------------------------


@pytest.mark.parametrize("ext, keep", [("nii.gz", 0.5), ("nii", 0.6)])
def test_importer_refuses_truncated_nifti(tmp_path, ext, keep):
    """ITK fills a cut file with zeros; the importer used to write that as a valid volume."""
    src = _source(tmp_path / "src", ext=ext)
    _cut(src / f"img/2.{ext}", keep)
    spec = dataset_from_config("t", {**_entry(tmp_path / "raw"), "source": {"kind": "import", "importer": "folder"}})
    layout = {**LAYOUT, "image": f"img/{{case}}.{ext}"}
    name = re.escape(f"img/2.{ext}")
    with pytest.raises(InputDataError, match=rf"{name}: (image file is truncated|cannot read image)"):
        import_folder(spec, "ct", src, layout)
    assert _files(tmp_path / "raw") == {}, "nothing may be imported from a source with a truncated file"


@pytest.mark.parametrize("ext", ["nii", "nii.gz"])
def test_short_truncation_counts_from_the_files_vox_offset(tmp_path, ext):
    """A file short by fewer bytes than its 352-byte header passed when the offset came from a
    loaded header (0) instead of the file's vox_offset."""
    path = write_volume(tmp_path / f"v.{ext}", np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8) + 1)
    read_image(path)  # complete: fine
    _cut(path, -10)
    with pytest.raises(InputDataError, match=rf"{re.escape(path.name)}: image file is truncated.* promises 1696 bytes \(data from byte 352\), file holds 1686"):
        read_image(path)


def test_gzip_stream_cut_before_its_end_is_refused(tmp_path):
    path = write_volume(tmp_path / "v.nii.gz", np.ones((4, 5, 6), np.int16))
    path.write_bytes(path.read_bytes()[:-4])  # all voxels there, CRC/length trailer cut
    with pytest.raises(InputDataError, match=r"v\.nii\.gz: image file is truncated or corrupt: the gzip stream ends"):
        read_image(path)


# ---- stored NaN / Inf --------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["nii.gz", "nrrd"])
def test_nonfinite_voxels_refused_or_replaced_with_a_warning(tmp_path, ext, caplog):
    """SimpleITK's NIfTI reader turns stored NaN/Inf into 0; a NaN .nrrd used to be imported as a
    NIfTI that reads back as zeros."""
    src = _source(tmp_path / "src", ext=ext)
    img, _ = blob_case(np.random.default_rng(0))
    img[3, 4, 5], img[6, 7, 8], img[9, 9, 9] = np.nan, np.inf, -np.inf
    write_volume(src / f"img/2.{ext}", img)
    registry = tmp_path / "reg.yaml"
    layout = {**LAYOUT, "image": f"img/{{case}}.{ext}"}
    registry.write_text(yaml.safe_dump({"datasets": {"t": {**_entry(tmp_path / "raw", layout=layout)}}}))
    spec = load_dataset(registry, "t")
    with pytest.raises(InputDataError, match=rf"img/2\.{ext}: image has 3 NaN or Inf voxels"):
        import_folder(spec, "ct", src, layout)
    assert _files(tmp_path / "raw") == {}

    registry.write_text(yaml.safe_dump({"datasets": {"t": {**_entry(tmp_path / "raw", layout=layout, nonfinite=-1000)}}}))
    with caplog.at_level(logging.WARNING, logger="xmodseg.imageio"):
        import_folder(load_dataset(registry, "t"), "ct", src, layout)
    assert any(f"2.{ext}: 3 NaN or Inf voxels replaced by -1000" in r.getMessage() for r in caplog.records)
    out = sitk.GetArrayFromImage(read_image(spec.image_path("ct", "2")))
    assert out[3, 4, 5] == out[6, 7, 8] == out[9, 9, 9] == -1000
    ok = np.isfinite(img)
    np.testing.assert_array_equal(out[ok], img[ok])


def test_nonfinite_option_is_checked_and_labels_are_never_patched(tmp_path):
    registry = tmp_path / "reg.yaml"
    registry.write_text(yaml.safe_dump({"datasets": {"t": _entry(tmp_path / "raw", nonfinite="zero")}}))
    with pytest.raises(ConfigError, match=r"datasets\.t\.source\.nonfinite: 'zero' is neither 'error' nor a finite number"):
        import_folder(load_dataset(registry, "t"), "ct", _source(tmp_path / "src"), LAYOUT)
    lab = write_volume(tmp_path / "lab.nii.gz", np.array([[[0.0, np.nan]]], np.float32))
    with pytest.raises(InputDataError, match=r"lab\.nii\.gz: label has 1 NaN or Inf voxels"):
        read_image(lab, kind="label", nonfinite=0.0)


# ---- header spacing --------------------------------------------------------------------------


def _nifti(path: Path, pixdim, sform_scale=None) -> Path:
    img = nib.Nifti1Image(np.ones((5, 6, 7), np.float32), np.eye(4))
    if sform_scale is not None:
        img.set_sform(np.diag([*sform_scale, 1.0]), code=1)
    img.header["pixdim"][1:4] = pixdim
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("pixdim", [(0.0, 1.0, 1.0), (1.0, -2.0, 1.0), (1.0, 1.0, np.nan)])
def test_non_positive_or_nan_pixdim_refused(tmp_path, pixdim):
    """ITK reads a zero (or NaN) pixdim as 1 mm without a word."""
    path = _nifti(tmp_path / "s.nii.gz", pixdim)
    with pytest.raises(InputDataError, match=r"s\.nii\.gz: image header has voxel spacing \(pixdim\)"):
        read_image(path)


def test_sform_disagreeing_with_pixdim_refused(tmp_path):
    read_image(_nifti(tmp_path / "ok.nii.gz", (2.0, 2.0, 3.0), sform_scale=(2.0, 2.0, 3.0)))
    path = _nifti(tmp_path / "s.nii.gz", (1.0, 1.0, 1.0), sform_scale=(2.0, 2.0, 1.0))
    with pytest.raises(InputDataError, match=r"s\.nii\.gz: image header is inconsistent: the sform's voxel sizes \(2, 2, 1\) disagree with pixdim \(1, 1, 1\)"):
        read_image(path)


# ---- failed writes -----------------------------------------------------------------------------


@pytest.mark.parametrize("written", [b"", "half"])
def test_failed_write_is_not_committed(tmp_path, monkeypatch, written):
    """On a full disk sitk.WriteImage prints an error and returns: the rename used to commit a
    0-byte or truncated file under the final name."""
    real = sitk.WriteImage

    def full_disk(img, name, compress=True):
        if written == "half":
            real(img, name, compress)
            Path(name).write_bytes(Path(name).read_bytes()[: Path(name).stat().st_size // 2])
        else:
            Path(name).write_bytes(written)

    monkeypatch.setattr(imageio.sitk, "WriteImage", full_disk)
    final = tmp_path / "out" / "x.nii.gz"
    img = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32))
    with pytest.raises(OSError, match=r"out/x\.nii\.gz: writing failed, the written file is .*disk full\?"):
        write_image(img, final)
    assert list((tmp_path / "out").iterdir()) == [], "neither the final name nor a temporary file may remain"
    monkeypatch.setattr(imageio.sitk, "WriteImage", real)
    write_image(img, final)  # a healthy write passes its own check
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(final)), sitk.GetArrayFromImage(img))


def _cli_project(tmp_path: Path) -> tuple[Path, Path]:
    src = _source(tmp_path / "src")
    registry = tmp_path / "reg.yaml"
    registry.write_text(yaml.safe_dump({"datasets": {"t": _entry(tmp_path / "raw")}}))
    marker = tmp_path / "marker.json"
    marker.write_text(json.dumps({"folder": str(src)}))
    return registry, marker


def test_cli_reports_disk_full_and_oserrors_naming_the_path(tmp_path, monkeypatch, capsys):
    registry, marker = _cli_project(tmp_path)
    args = ["import", "--registry", str(registry), "--dataset", "t", "--modality", "ct", "--marker", str(marker)]
    monkeypatch.setattr(imageio.sitk, "WriteImage", lambda img, name, compress=True: Path(name).write_bytes(b""))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "xmodseg import: error:" in err and "disk full?" in err and "raw/ct/1_image.nii.gz" in err and "Traceback" not in err
    assert _files(tmp_path / "raw") == {}
    monkeypatch.undo()

    def no_space(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)  # the manifest, written by xmodseg.atomic
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "raw/ct/import_manifest.json" in err and "(disk full?)" in err


def test_atomic_write_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match=r"No space left on device: '.*m\.json'"):
        write_json(tmp_path / "m.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


# ---- no half-imported data set ---------------------------------------------------------------


def test_cli_import_with_a_bad_case_writes_nothing_and_keeps_the_previous_import(tmp_path, capsys):
    registry, marker = _cli_project(tmp_path)
    args = ["import", "--registry", str(registry), "--dataset", "t", "--modality", "ct", "--marker", str(marker)]
    src = tmp_path / "src"
    good = (src / "lab/3.nii.gz").read_bytes()
    bad = np.zeros((24, 28, 28), np.uint16)
    bad[2, 2, 2] = 999
    write_volume(src / "lab/3.nii.gz", bad)
    assert main(args) == 2
    assert "lab/3.nii.gz: label values [999]" in capsys.readouterr().err
    assert _files(tmp_path / "raw") == {}, "cases 1 and 2 must not be left behind"

    (src / "lab/3.nii.gz").write_bytes(good)
    assert main(args) == 0
    before = _files(tmp_path / "raw")
    assert "ct/import_manifest.json" in before and "ct/1_image.nii.gz" in before
    _source(src, seed=1)  # new scans for every case ...
    write_volume(src / "lab/3.nii.gz", bad)  # ... and a bad last case
    assert main(args) == 2
    assert _files(tmp_path / "raw") == before, "a failed import must leave the previous complete import as it was"


# ---- geometry messages -----------------------------------------------------------------------


def test_direction_only_mismatch_is_named():
    image = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    label = sitk.Image(4, 5, 6, sitk.sitkUInt8)
    label.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    with pytest.raises(InputDataError, match=r"l\.nii\.gz: label geometry does not match image i\.nii\.gz \(differs in direction\).*direction \(-1, 0, 0, 0, -1, 0, 0, 0, 1\) vs \(1, 0, 0"):
        check_pair_geometry(image, label, "i.nii.gz", "l.nii.gz")
    label = sitk.Image(4, 5, 6, sitk.sitkUInt8)
    label.SetSpacing((1, 1, 2))
    label.SetOrigin((0, 0, 5))
    with pytest.raises(InputDataError, match=r"differs in spacing, origin\)"):
        check_pair_geometry(image, label, "i.nii.gz", "l.nii.gz")
