"""Importers: the generic folder importer on the real CT (geometry kept through preprocessing),
DICOM series + PNG masks (CHAOS layout) written here with SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import SHARED_DATA
from xmodseg.datasets.nifti_folder import import_folder
from xmodseg.errors import InputDataError
from xmodseg.inference import to_original_grid
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.preprocess.pipeline import load_manifest
from xmodseg.registry import dataset_from_config

CT = SHARED_DATA / "sub-spleen2_ct.nii.gz"
SPLEEN_LAYOUT = {"image": "{case}_ct.nii.gz", "label": "{case}_ct_seg-manual.nii.gz"}


def spleen_spec(root, mapping=None):
    return dataset_from_config(
        "spleen",
        {
            "root": str(root),
            "source": {"kind": "import", "importer": "folder"},
            "labels": {"classes": ["background", "spleen"], "mapping": mapping or {0: 0, 1: 1}},
            "modalities": {"ct": {"kind": "ct", "image": "ct/{case}_image.nii.gz", "label": "ct/{case}_label.nii.gz", "cases": ["sub-spleen2"], "test": []}},
        },
    )


def _geometry(img: sitk.Image):
    return img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection()


@pytest.mark.skipif(not CT.exists(), reason=f"real CT test data not found at {CT} (needs ../shared beside the repo)")
def test_folder_importer_on_the_real_ct_keeps_geometry_through_preprocessing(tmp_path):
    spec = spleen_spec(tmp_path / "raw")
    records = import_folder(spec, "ct", SHARED_DATA, SPLEEN_LAYOUT)
    assert [r["case"] for r in records] == ["sub-spleen2"] and (tmp_path / "raw/ct/import_manifest.json").is_file()
    src_img, src_lab = sitk.ReadImage(str(CT)), sitk.ReadImage(str(SHARED_DATA / SPLEEN_LAYOUT["label"].format(case="sub-spleen2")))
    img, lab = sitk.ReadImage(str(spec.image_path("ct", "sub-spleen2"))), sitk.ReadImage(str(spec.label_path("ct", "sub-spleen2")))
    assert _geometry(img) == _geometry(src_img) and _geometry(lab) == _geometry(src_lab)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(src_img))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(src_lab))
    # Preprocessing records the scan's geometry and its cached label maps back onto the scan's grid.
    cache = preprocess_modality(spec, "ct", PreprocessConfig(spacing=(2.0, 2.0, 2.0), slice_axis="axial", crop_size=(160, 160)), tmp_path / "cache")
    manifest = load_manifest(cache)
    rec = manifest["cases"][0]
    g = rec["original_geometry"]
    assert tuple(g["size"]) == src_img.GetSize()
    assert g["spacing"] == pytest.approx(src_img.GetSpacing()) and g["origin"] == pytest.approx(src_img.GetOrigin())
    assert g["direction"] == pytest.approx(src_img.GetDirection())
    back = to_original_grid(np.load(cache / rec["label"]), rec, manifest["slice_axis"])
    assert _geometry(back)[0] == src_img.GetSize()
    assert back.GetSpacing() == pytest.approx(src_img.GetSpacing()) and back.GetOrigin() == pytest.approx(src_img.GetOrigin())
    a, b = sitk.GetArrayFromImage(back) > 0, sitk.GetArrayFromImage(src_lab) > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9  # 2 mm round trip of a manual label


@pytest.mark.skipif(not CT.exists(), reason=f"real CT test data not found at {CT} (needs ../shared beside the repo)")
def test_folder_importer_refuses_unknown_labels_and_missing_cases(tmp_path):
    with pytest.raises(InputDataError, match=r"seg-manual.*label values \[1\]"):
        import_folder(spleen_spec(tmp_path / "raw", mapping={0: 0, 205: 1}), "ct", SHARED_DATA, SPLEEN_LAYOUT)
    with pytest.raises(InputDataError, match="1 of 1 cases of 'ct' are missing"):
        import_folder(spleen_spec(tmp_path / "raw2"), "ct", SHARED_DATA, {"image": "{case}.nii.gz", "label": "{case}_l.nii.gz"})
    assert not (tmp_path / "raw" / "ct" / "sub-spleen2_image.nii.gz").exists()


def write_dicom_series(folder, volume: np.ndarray, spacing, origin, direction) -> list[str]:
    """One DICOM file per slice (SimpleITK), positions along the slice normal; CHAOS-like names."""
    from xmodseg.datasets.dicom_series import keep_locale

    with keep_locale():
        return _write_series(folder, volume, spacing, origin, direction)


def _write_series(folder, volume, spacing, origin, direction) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    img = sitk.GetImageFromArray(volume.astype(np.int16))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    series_uid = "1.2.826.0.1.3680043.2.1125.1.20261122"
    names = []
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (
            ("0008|0060", "MR"),
            ("0020|000d", series_uid + ".0"),
            ("0020|000e", series_uid),
            ("0020|0013", str(k + 1)),
            ("0020|0032", "\\".join(f"{v:.6f}" for v in pos)),
            ("0020|0037", "\\".join(f"{v:.6f}" for v in direction[0:7:3] + direction[1:8:3])),
            ("0018|0050", f"{spacing[2]:.6f}"),
            ("0028|0030", f"{spacing[1]:.6f}\\{spacing[0]:.6f}"),
            ("0008|0018", f"{series_uid}.{k + 1}"),
        ):
            sl.SetMetaData(tag, value)
        name = folder / f"IMG-0001-{k + 1:05d}.dcm"
        writer.SetFileName(str(name))
        writer.Execute(sl)
        names.append(name)
    return names


def test_dicom_series_with_png_masks_imports_with_correct_geometry(tmp_path):
    from xmodseg.datasets.dicom_series import import_series_with_masks

    rng = np.random.default_rng(0)
    shape = (6, 20, 16)  # z, y, x
    volume = rng.integers(0, 800, size=shape)
    organ = np.zeros(shape, np.uint8)
    organ[1:5, 5:12, 4:10] = 63
    organ[2:4, 14:18, 2:6] = 252
    spacing, origin = (1.4, 1.6, 6.0), (-120.0, 35.5, 60.0)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c)  # oblique: rotation about y
    src = tmp_path / "CHAOS" / "Train_Sets" / "MR" / "1" / "T2SPIR"
    files = write_dicom_series(src / "DICOM_anon", volume, spacing, origin, direction)
    (src / "Ground").mkdir()
    for k, f in enumerate(files):  # CHAOS grey values vary within a range: liver 55-70
        mask = np.where(organ[k] == 63, 60, organ[k]).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(src / "Ground" / f"{f.stem}.png"))
    spec = dataset_from_config(
        "chaos",
        {
            "root": str(tmp_path / "raw"),
            "labels": {"classes": ["background", "liver", "kidney_r", "kidney_l", "spleen"], "mapping": {0: 0, 63: 1, 126: 2, 189: 3, 252: 4}},
            "modalities": {"mr": {"kind": "mr", "image": "mr/{case}_image.nii.gz", "label": "mr/{case}_label.nii.gz", "cases": ["1"], "test": []}},
        },
    )
    layout = {"dicom": "Train_Sets/MR/{case}/T2SPIR/DICOM_anon", "masks": "Train_Sets/MR/{case}/T2SPIR/Ground"}
    import locale

    before = locale.setlocale(locale.LC_ALL)
    import_series_with_masks(spec, "mr", tmp_path / "CHAOS", layout)
    assert locale.setlocale(locale.LC_ALL) == before  # GDCM's reset to "C" is undone
    img = sitk.ReadImage(str(spec.image_path("mr", "1")))
    lab = sitk.ReadImage(str(spec.label_path("mr", "1")))
    assert img.GetSize() == (16, 20, 6)
    assert img.GetSpacing() == pytest.approx(spacing, abs=1e-4)
    assert img.GetOrigin() == pytest.approx(origin, abs=1e-4)
    assert img.GetDirection() == pytest.approx(direction, abs=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), volume)
    assert _geometry(lab)[0] == img.GetSize() and lab.GetDirection() == pytest.approx(img.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lab), organ)  # 60 snapped to 63, slices in order
    # A mask value outside every organ range is refused, naming the PNG.
    bad = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "Ground" / f"{files[2].stem}.png")))
    bad[0, 0] = 99
    sitk.WriteImage(sitk.GetImageFromArray(bad), str(src / "Ground" / f"{files[2].stem}.png"))
    with pytest.raises(InputDataError, match=rf"{files[2].stem}.png: mask values \[99\]"):
        import_series_with_masks(spec, "mr", tmp_path / "CHAOS", layout)
