"""Importers: the generic folder importer on the real CT (geometry kept through preprocessing),
DICOM series + PNG masks (CHAOS layout) written here with SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from tests.conftest import SHARED_DATA
from xmodseg.datasets.nifti_folder import import_folder
from xmodseg.errors import InputDataError
from xmodseg.evaluation.inference import to_original_grid
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
    # Exact where the grids allow it: at the scan's own spacing the resampled grid's voxel centres
    # are the scan's (only the RAS -> LPS flip of x and y), nearest-neighbour resampling moves no
    # value, and a crop larger than the scan (176 > 166, 164 in-plane) pads but cuts nothing.
    truth = sitk.GetArrayFromImage(src_lab)  # [z, y, x]
    cache = preprocess_modality(spec, "ct", PreprocessConfig(spacing=src_img.GetSpacing(), slice_axis="axial", crop_size=(176, 176)), tmp_path / "cache")
    manifest = load_manifest(cache).to_dict()
    rec = manifest["cases"][0]
    g = rec["original_geometry"]
    assert tuple(g["size"]) == src_img.GetSize()
    assert g["spacing"] == pytest.approx(src_img.GetSpacing()) and g["origin"] == pytest.approx(src_img.GetOrigin())
    assert g["direction"] == pytest.approx(src_img.GetDirection())
    cached = np.load(cache / rec["label"])
    assert all(v <= 0 for v in rec["crop_start_zyx"])  # the crop holds the whole scan
    (z0, y0, x0), (nz, ny, nx) = [-v for v in rec["crop_start_zyx"]], truth.shape
    np.testing.assert_array_equal(cached[z0 : z0 + nz, y0 : y0 + ny, x0 : x0 + nx], truth[:, ::-1, ::-1])
    assert cached.sum() == truth.sum()  # nothing outside the scan's footprint in the cache
    back = to_original_grid(cached, rec, manifest["slice_axis"])
    assert _geometry(back)[0] == src_img.GetSize()
    assert back.GetSpacing() == pytest.approx(src_img.GetSpacing()) and back.GetOrigin() == pytest.approx(src_img.GetOrigin())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), truth)

    # At 2 mm exactness is impossible (0.795 mm in-plane detail is lost), but the error is bounded:
    # scan voxel x -> nearest 2 mm grid point g (|g - x| <= 1 mm per axis) -> its value came from
    # the scan voxel y nearest to g (|y - g| <= 0.3975 mm in-plane). So |y - x| <= 1.3975 mm <
    # 2 * 0.795 mm: at most one voxel away in-plane; along z (5 mm slices) g is within 1 mm of x's
    # own slice, which stays the nearest. Every voxel of the round trip therefore carries a label
    # found in its own slice's 3x3 neighbourhood of the truth (binary: between their min and max).
    cache2 = preprocess_modality(spec, "ct", PreprocessConfig(spacing=(2.0, 2.0, 2.0), slice_axis="axial", crop_size=(160, 160)), tmp_path / "cache2")
    rec2 = load_manifest(cache2).to_dict()["cases"][0]
    back2 = sitk.GetArrayFromImage(to_original_grid(np.load(cache2 / rec2["label"]), rec2, "axial"))
    assert (back2 != truth).any()  # really lossy: the bound below is needed
    lo = ndimage.minimum_filter(truth, size=(1, 3, 3), mode="nearest")
    hi = ndimage.maximum_filter(truth, size=(1, 3, 3), mode="nearest")
    assert np.all((lo <= back2) & (back2 <= hi))


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


def _volume(path, array: np.ndarray, spacing=(1.5, 1.5, 10.0)) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin((-100.0, 20.0, 5.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def write_acdc_patient(root, patient: str, ed: int, es: int, n_frames: int = 14) -> dict[int, np.ndarray]:
    """An ACDC patient folder: Info.cfg, and ED/ES frames whose voxels say their frame number."""
    folder = root / patient
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 180.0\nNbFrame: {n_frames}\nWeight: 80.0\n")
    frames = {}
    for f in (ed, es):
        image = np.full((4, 12, 10), float(f), np.float32)
        label = np.zeros((4, 12, 10), np.uint8)
        label[1:3, 2:6, 2:6] = 1 + f % 3
        _volume(folder / f"{patient}_frame{f:02d}.nii.gz", image)
        _volume(folder / f"{patient}_frame{f:02d}_gt.nii.gz", label)
        frames[f] = label
    return frames


def acdc_spec(root, patients: str, test: str):
    from xmodseg.registry import load_registry

    entry = dict(load_registry("config/datasets.yaml")["acdc"])
    entry["root"] = str(root)
    mr = dict(entry["modalities"]["mr"])
    mr["cases"] = {"format": "patient{0}_{1}", "product": [patients, ["ED", "ES"]]}
    mr["test"] = {"format": "patient{0}_{1}", "product": [test, ["ED", "ES"]]}
    entry["modalities"] = {"mr": mr}
    return dataset_from_config("acdc", entry)


def test_acdc_importer_takes_the_ed_and_es_frames_named_by_info_cfg(tmp_path):
    from xmodseg.datasets.fetch import import_modality

    src = tmp_path / "ACDC" / "database"
    frames1 = write_acdc_patient(src / "training", "patient001", ed=1, es=12)
    frames2 = write_acdc_patient(src / "testing", "patient002", ed=3, es=9)
    spec = acdc_spec(tmp_path / "raw", "001-002", "002-002")
    assert spec.modality("mr").cases == ("patient001_ED", "patient001_ES", "patient002_ED", "patient002_ES")
    assert spec.modality("mr").train_cases == ("patient001_ED", "patient001_ES")  # a patient's frames stay together
    marker = tmp_path / "marker.json"
    marker.write_text(f'{{"folder": "{tmp_path / "ACDC"}"}}')
    records = import_modality(spec, "mr", marker)
    assert [r["case"] for r in records] == list(spec.modality("mr").cases)
    for case, frame, labels in (("patient001_ED", 1, frames1), ("patient001_ES", 12, frames1), ("patient002_ED", 3, frames2), ("patient002_ES", 9, frames2)):
        img = sitk.ReadImage(str(spec.image_path("mr", case)))
        assert np.all(sitk.GetArrayFromImage(img) == frame), case
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(spec.label_path("mr", case)))), labels[frame])
        assert img.GetSpacing() == pytest.approx((1.5, 1.5, 10.0))


def test_acdc_importer_names_the_broken_patient(tmp_path):
    from xmodseg.datasets.acdc import import_acdc

    src = tmp_path / "ACDC"
    write_acdc_patient(src, "patient001", ed=1, es=12)
    spec = acdc_spec(tmp_path / "raw", "001-002", "002-002")
    with pytest.raises(InputDataError, match=r"2 of 4 cases .*patient002_ED: no folder patient002/"):
        import_acdc(spec, "mr", src)
    write_acdc_patient(src, "patient002", ed=2, es=5)
    (src / "patient002" / "Info.cfg").write_text("ED: first\nES: 5\n")
    with pytest.raises(InputDataError, match=r"patient002/Info.cfg: no integer 'ED:' line"):
        import_acdc(spec, "mr", src)
    assert not (tmp_path / "raw" / "mr").exists()  # all cases are checked before anything is written
    (src / "patient002" / "Info.cfg").write_text("ED: 2\nES: 5\n")
    bad = np.zeros((4, 12, 10), np.uint8)
    bad[0, 0, 0] = 4  # ACDC has labels 0-3 only
    _volume(src / "patient002" / "patient002_frame05_gt.nii.gz", bad)
    with pytest.raises(InputDataError, match=r"patient002_frame05_gt.nii.gz.*label values \[4\]"):
        import_acdc(spec, "mr", src)


def test_case_ids_from_ranges_and_products():
    from xmodseg.errors import ConfigError
    from xmodseg.registry import load_dataset, parse_cases

    assert parse_cases("1001-1003", "k") == ("1001", "1002", "1003")
    assert parse_cases("008-011", "k") == ("008", "009", "010", "011")
    assert parse_cases({"format": "p{0}_{1}", "product": ["1-2", ["ED", "ES"]]}, "k") == ("p1_ED", "p1_ES", "p2_ED", "p2_ES")
    with pytest.raises(ConfigError, match=r"k.format: 'p\{0\}_\{2\}' does not fit 2 product parts"):
        parse_cases({"format": "p{0}_{2}", "product": ["1-2", ["ED"]]}, "k")
    with pytest.raises(ConfigError, match="exactly `format` and `product`"):
        parse_cases({"product": ["1-2"]}, "k")
    acdc = load_dataset("config/datasets.yaml", "acdc").modality("mr")
    assert len(acdc.cases) == 200 and len(acdc.test_cases) == 40 and acdc.cases[0] == "patient001_ED"
    assert {c.rpartition("_")[0] for c in acdc.test_cases}.isdisjoint(c.rpartition("_")[0] for c in acdc.train_cases)


def test_la2018_release_lists_its_cases_and_imports_nrrd(tmp_path, capsys):
    """LA-2018 as released ("Training Set/<id>/lgemri.nrrd + laendo.nrrd", mask 0/255): the
    registry's la2018 entry imports all 100 ids with the mask mapped to 1, its split is UA-MT's
    80 / 20, and `xmodseg list-cases` lists a copy's ids."""
    from xmodseg.cli import main
    from xmodseg.datasets.fetch import import_modality
    from xmodseg.registry import load_registry

    entry = dict(load_registry("config/datasets.yaml")["la2018"])
    entry["root"] = str(tmp_path / "raw")
    spec = dataset_from_config("la2018", entry)
    mr = spec.modality("mr")
    assert len(mr.cases) == 100 and len(mr.test_cases) == 20 and len(mr.train_cases) == 80
    assert mr.train_cases[:2] == ("06SR5RBREL16DQ6M8LWS", "0RZDK210BSMWAA6467LU") and "ZQPMJ4XEC5A4BISD45P1" in mr.test_cases
    src = tmp_path / "Training Set"
    rng = np.random.default_rng(0)
    for case in mr.cases:
        mask = np.zeros((4, 8, 8), np.uint8)
        mask[1:3, 2:6, 2:6] = 255
        _volume(src / case / "lgemri.nrrd", rng.normal(size=(4, 8, 8)).astype(np.float32), spacing=(0.625, 0.625, 0.625))
        _volume(src / case / "laendo.nrrd", mask, spacing=(0.625, 0.625, 0.625))
    (src / "notes.txt").write_text("not a case")
    assert main(["list-cases", str(src), "--pattern", "{case}/lgemri.nrrd"]) == 0
    assert capsys.readouterr().out.strip() == "cases: [" + ", ".join(f'"{c}"' for c in sorted(mr.cases)) + "]"
    assert main(["list-cases", str(src), "--pattern", "{case}/missing.nrrd"]) == 2
    marker = tmp_path / "marker.json"
    marker.write_text(f'{{"folder": "{src}"}}')
    records = import_modality(spec, "mr", marker)
    assert len(records) == 100
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(spec.label_path("mr", "0RZDK210BSMWAA6467LU"))))
    assert lab.max() == 255 and spec.labels.to_indices(lab, "x").max() == 1
    assert sitk.ReadImage(str(spec.image_path("mr", "ZQPMJ4XEC5A4BISD45P1"))).GetSpacing() == pytest.approx((0.625,) * 3)


def test_case_lists_from_a_file_beside_the_registry(tmp_path):
    from xmodseg.errors import ConfigError
    from xmodseg.registry import parse_cases

    (tmp_path / "ids.txt").write_text("# frames\nVideo1_frame000090\n\n  Video1_frame000100  \n")
    assert parse_cases({"file": "ids.txt"}, "k", tmp_path) == ("Video1_frame000090", "Video1_frame000100")
    with pytest.raises(ConfigError, match=r"k.file: cannot read .*missing.txt .*one case id per line"):
        parse_cases({"file": "missing.txt"}, "k", tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"k.file: .*empty.txt lists no case ids"):
        parse_cases({"file": "empty.txt"}, "k", tmp_path)


def _cadis_spec(root, cases, test):
    from xmodseg.registry import load_registry

    entry = dict(load_registry("config/datasets.yaml")["cadis"])
    entry["root"] = str(root)
    entry["modalities"] = {"rgb": {**entry["modalities"]["rgb"], "cases": cases, "test": test}}
    return dataset_from_config("cadis", entry)


def _png(path, array, vector):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))


def test_cadis_frames_import_and_preprocess_as_three_channel_slices(tmp_path):
    """RGB PNG frames through import and preprocessing: one-slice volumes with 3 channels, the
    cache [1, 3, H, W] z-scored with training-frame statistics, CaDIS ids mapped to Task 1, and a
    prediction maps back onto the 2D frame's grid."""
    from xmodseg.datasets.cadis import import_cadis

    src = tmp_path / "CaDIS"
    rng = np.random.default_rng(0)
    cases = ["Video1_frame000090", "Video1_frame000100", "Video2_frame000090"]
    for case in cases:
        video = case.split("_")[0].replace("Video", "")
        label = np.full((20, 30), 5, np.uint8)
        label[5:15, 10:20] = 0  # pupil
        label[1:3, 2:28] = 33  # an instrument (Troutman forceps) -> "instrument"
        rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
        _png(src / f"Video{int(video):02d}" / "Images" / f"{case}.png", rgb, True)
        _png(src / f"Video{int(video):02d}" / "Labels" / f"{case}.png", label, False)
    spec = _cadis_spec(tmp_path / "raw", cases, ["Video2_frame000090"])
    records = import_cadis(spec, "rgb", src)
    assert [r["case"] for r in records] == cases
    img = sitk.ReadImage(str(spec.image_path("rgb", cases[0])))
    assert img.GetNumberOfComponentsPerPixel() == 3
    cfg = PreprocessConfig.from_dict({"spacing": [1, 1, 1], "slice_axis": "axial", "in_plane": "whole_slice", "crop_size": [16, 16]})
    out = preprocess_modality(spec, "rgb", cfg, tmp_path / "cache")
    manifest = load_manifest(out)
    rec = {r.case: r for r in manifest.cases}
    image = np.load(out / rec[cases[0]].image)
    assert image.shape == (1, 3, 16, 16) and image.dtype == np.float32
    label = np.load(out / rec[cases[0]].label)
    assert set(np.unique(label)) == {1, 6, 8}  # pupil 0 -> 1, skin 5 -> 6, instrument 33 -> 8
    train_pixels = np.concatenate([np.load(out / rec[c].image).ravel() for c in cases[:2]])
    assert abs(train_pixels.mean()) < 0.05 and abs(train_pixels.std() - 1) < 0.05  # training frames' statistics
    back = to_original_grid(label, rec[cases[0]].to_dict(), "axial")
    assert back.GetSize() == (30, 20, 1)


def test_cadis_import_names_the_bad_frame(tmp_path):
    from xmodseg.datasets.cadis import import_cadis

    src = tmp_path / "CaDIS"
    case = "Video1_frame000090"
    _png(src / "Video01" / "Images" / f"{case}.png", np.zeros((8, 8, 3), np.uint8) + 50, True)
    _png(src / "Video01" / "Labels" / f"{case}.png", np.full((8, 8), 36, np.uint8), False)  # CaDIS has 0-35
    spec = _cadis_spec(tmp_path / "raw", [case, "Video2_frame000090"], ["Video2_frame000090"])
    with pytest.raises(InputDataError, match=r"1 of 2 cases of 'rgb' are missing .*Video02/Images/Video2_frame000090.png"):
        import_cadis(spec, "rgb", src)
    spec = _cadis_spec(tmp_path / "raw", [case], [])
    with pytest.raises(InputDataError, match=r"Video1_frame000090.png.*label values \[36\]"):
        import_cadis(spec, "rgb", src)
    _png(src / "Video01" / "Images" / f"{case}.png", np.zeros((8, 8), np.uint8) + 50, False)  # a grey frame
    _png(src / "Video01" / "Labels" / f"{case}.png", np.full((8, 8), 3, np.uint8), False)
    with pytest.raises(InputDataError, match=r"Video1_frame000090.png: expected a 3-channel image, got 1 components"):
        import_cadis(spec, "rgb", src)
    with pytest.raises(InputDataError, match=r"no Video01 \.\.\. Video25 folders here"):
        import_cadis(spec, "rgb", tmp_path)
    with pytest.raises(InputDataError, match=r"CaDIS case id 'frame12' must look like Video1_frame000090"):
        import_cadis(_cadis_spec(tmp_path / "raw", ["frame12"], []), "rgb", src)
    assert not (tmp_path / "raw" / "frames").exists()  # nothing written by a failed import
