"""Preprocessing pipeline: cache layout, manifest, training-only statistics, split guard."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import write_volume
from xmodseg.errors import ConfigError, SplitLeakError
from xmodseg.preprocess import PreprocessConfig, preprocess_modality
from xmodseg.preprocess.crop import crop_pad, uncrop
from xmodseg.preprocess.normalize import apply_stats, fit_stats
from xmodseg.preprocess.pipeline import load_stats
from xmodseg.registry import assert_no_test_cases, load_dataset

CFG = PreprocessConfig.from_dict({"spacing": [1.5, 1.5, 1.5], "slice_axis": "coronal", "crop_size": [16, 16]})


def test_cache_manifest_and_shapes(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    out = preprocess_modality(spec, "mr", CFG, tmp_path / "cache" / "mr")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["case"] for c in manifest["cases"]] == ["1", "2", "3", "4"]
    assert [c["split"] for c in manifest["cases"]] == ["train", "train", "train", "test"]
    for c in manifest["cases"]:
        img = np.load(out / c["image"], mmap_mode="r")
        lab = np.load(out / c["label"])
        assert img.dtype == np.float32 and lab.dtype == np.uint8
        assert list(img.shape) == c["shape"] and img.shape[1:] == (16, 16)
        assert set(np.unique(lab)) <= {0, 1, 3}  # 205 -> MYO (1), 500 -> LVC (3)
        assert len(c["image_sha256"]) == 64 and len(c["source_image_sha256"]) == 64
    assert manifest["slice_spacing"] == [1.5, 1.5, 1.5]
    assert not list(out.parent.glob(".*partial*")), "no temporary folder left behind"


def test_statistics_come_from_training_split_only(tiny_dataset, tmp_path):
    spec = load_dataset(tiny_dataset, "tiny")
    out1 = preprocess_modality(spec, "ct", CFG, tmp_path / "a")
    stats1 = load_stats(out1)
    assert stats1.cases == ("1", "2", "3")
    # Make the test case wildly different: the stored statistics must not move.
    test_img = spec.image_path("ct", "4")
    img = sitk.ReadImage(str(test_img))
    write_volume(test_img, sitk.GetArrayFromImage(img) * 3 + 500, img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    stats2 = load_stats(preprocess_modality(spec, "ct", CFG, tmp_path / "b"))
    assert stats2 == stats1


def test_normalisation_ct_window_and_mr_scale():
    rng = np.random.default_rng(1)
    ct = {"a": rng.normal(0, 400, (8, 8, 8)).astype(np.float32), "b": rng.normal(100, 400, (8, 8, 8)).astype(np.float32)}
    s = fit_stats(ct, "ct", ct_window=(-100, 200), mr_percentiles=(1, 99))
    assert (s.clip_low, s.clip_high) == (-100, 200)
    z = apply_stats(ct["a"], s, ct_window=(-100, 200))
    assert z.max() <= (200 - s.mean) / s.std + 1e-5
    # MR: a scan and the same scan x1000 normalise identically (arbitrary units removed).
    mr = rng.gamma(2.0, 1.0, (8, 8, 8)).astype(np.float32)
    sm = fit_stats({"a": mr}, "mr", ct_window=(-100, 200), mr_percentiles=(1, 99))
    np.testing.assert_allclose(apply_stats(mr, sm, ct_window=(0, 1)), apply_stats(mr * 1000, sm, ct_window=(0, 1)), rtol=1e-5, atol=1e-5)


def test_split_guard(tiny_dataset):
    spec = load_dataset(tiny_dataset, "tiny")
    with pytest.raises(SplitLeakError, match=r"\['4'\]"):
        assert_no_test_cases(["1", "4"], spec.modality("ct"), "training")
    assert spec.modality("ct").train_cases == ("1", "2", "3")


def test_crop_pad_round_trip():
    vol = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    start, extent = [-1, 2, 3], [7, 3, 9]  # pads at both ends of axes 0 and 2
    c = crop_pad(vol, start, extent, fill=-1)
    assert c.shape == (7, 3, 9) and c[0, 0, 0] == -1
    back = uncrop(c, start, vol.shape, fill=0)
    np.testing.assert_array_equal(back[:, 2:5, 3:7], vol[:, 2:5, 3:7])


def test_bad_preprocess_config_names_the_key():
    with pytest.raises(ConfigError, match="slice_axis"):
        PreprocessConfig.from_dict({"slice_axis": "oblique"})
    with pytest.raises(ConfigError, match="unknown keys"):
        PreprocessConfig.from_dict({"spacingg": [1, 1, 1]})


# ---- field of view: what the in-plane crop removes, and whole slices --------------------------

WIDE = {"classes": ["background", "organ", "other"], "mapping": {0: 0, 1: 1, 2: 2}}


def wide_case(organ_leaves_the_crop: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[z, y, x] = 6 x 20 x 40 at 1 mm: a body over the whole width (x), air above and below (y).
    "organ" (6 x 10 x 20 = 1200 voxels) spans x 0..19 when it leaves a 20-wide crop centred on
    the body (x 10..29), else x 10..29; "other" (6 x 3 x 10 = 180 voxels) is always inside."""
    rng = np.random.default_rng(seed)
    label = np.zeros((6, 20, 40), np.uint8)
    x0 = 0 if organ_leaves_the_crop else 10
    label[:, 5:15, x0 : x0 + 20] = 1
    label[:, 15:18, 14:24] = 2
    image = np.full(label.shape, -1000.0)
    image[:, 2:18, :] = 40.0
    image = image + np.where(label > 0, 60.0, 0.0) + rng.normal(0, 5, label.shape)
    return image.astype(np.float32), label


def wide_dataset(tmp_path, leaves: dict[str, bool]):
    from xmodseg.registry import dataset_from_config

    root = tmp_path / "raw"
    for i, (case, out) in enumerate(leaves.items()):
        image, label = wide_case(out, i)
        write_volume(root / "ct" / f"{case}_image.nii.gz", image)
        write_volume(root / "ct" / f"{case}_label.nii.gz", label)
    mod = {"kind": "ct", "image": "ct/{case}_image.nii.gz", "label": "ct/{case}_label.nii.gz", "cases": list(leaves), "test": ["t"]}
    return dataset_from_config("wide", {"root": str(root), "source": {"kind": "local"}, "labels": WIDE, "modalities": {"ct": mod}})


FIXED = {"spacing": [1.0, 1.0, 1.0], "slice_axis": "axial", "crop_size": [20, 20], "max_test_label_loss": 0.01}


def test_crop_label_loss_is_in_the_manifest_and_warned_for_training_cases(tmp_path, caplog):
    spec = wide_dataset(tmp_path, {"a": True, "b": False, "t": False})
    with caplog.at_level("WARNING", logger="xmodseg.preprocess.pipeline"):
        out = preprocess_modality(spec, "ct", PreprocessConfig.from_dict(FIXED), tmp_path / "cache")
    manifest = json.loads((out / "manifest.json").read_text())
    loss = {c["case"]: c["label_crop_loss"] for c in manifest["cases"]}
    # "organ": 6 x 10 x 20 voxels, x 0..9 outside the crop (x 10..29): 600 removed; "other" kept
    assert loss["a"] == {"fraction": 600 / 1380, "per_class": {"organ": 0.5, "other": 0.0}, "labelled_voxels": 1380, "removed_voxels": 600}
    assert loss["b"]["removed_voxels"] == 0 and loss["t"]["fraction"] == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "case a (train)" in warnings[0] and "43.5%" in warnings[0] and "organ 50.0%" in warnings[0]
    assert manifest["intensity_space"] == "zscore" and manifest["cases"][0]["slice_spacing"] == [1.0, 1.0, 1.0]


def test_a_test_case_losing_labels_to_the_crop_stops_preprocessing(tmp_path, caplog):
    spec = wide_dataset(tmp_path, {"a": False, "b": False, "t": True})
    with pytest.raises(ConfigError, match=r"test case\(s\) t \(organ 50\.0%\).*crop_size.*in_plane: whole_slice"):
        preprocess_modality(spec, "ct", PreprocessConfig.from_dict(FIXED), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    out = preprocess_modality(spec, "ct", PreprocessConfig.from_dict({**FIXED, "max_test_label_loss": 0.5}), tmp_path / "cache")
    assert json.loads((out / "manifest.json").read_text())["cases"][2]["label_crop_loss"]["per_class"]["organ"] == 0.5  # 0.5 is not above 0.5
    unset = {k: v for k, v in FIXED.items() if k != "max_test_label_loss"}  # default: warn only
    preprocess_modality(spec, "ct", PreprocessConfig.from_dict(unset), tmp_path / "cache2")
    assert any("case t (test)" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_whole_slice_keeps_every_labelled_voxel_and_maps_back_exactly(tmp_path):
    """The 20 x 40 mm slice resampled to 60 x 120: every original voxel centre is a new voxel
    centre (an odd integer factor), so nearest-neighbour there and back is the identity: the exact
    round trip shows nothing was cut. (A non-integer factor would only map back to within
    nearest-neighbour resampling; the second config checks just the crop loss and the spacing.)"""
    from xmodseg.evaluation.inference import to_original_grid

    spec = wide_dataset(tmp_path, {"a": True, "b": True, "t": True})
    cfg = PreprocessConfig.from_dict({**FIXED, "crop_size": [60, 120], "in_plane": "whole_slice"})
    out = preprocess_modality(spec, "ct", cfg, tmp_path / "cache")
    manifest = json.loads((out / "manifest.json").read_text())
    for rec in manifest["cases"]:
        assert rec["label_crop_loss"]["removed_voxels"] == 0 and rec["shape"] == [6, 60, 120]
        assert rec["slice_spacing"] == pytest.approx([1.0, 1 / 3, 1 / 3])
        back = to_original_grid(np.load(out / rec["label"]), rec, manifest["slice_axis"])
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(sitk.ReadImage(rec["source_label"])))
    assert "slice_spacing" not in manifest  # per case in whole_slice mode

    odd = PreprocessConfig.from_dict({**FIXED, "crop_size": [16, 16], "in_plane": "whole_slice"})  # 1.25 x 2.5 mm pixels
    manifest = json.loads((preprocess_modality(spec, "ct", odd, tmp_path / "odd") / "manifest.json").read_text())
    for rec in manifest["cases"]:
        assert rec["label_crop_loss"]["removed_voxels"] == 0 and rec["shape"] == [6, 16, 16]
        assert rec["resampled_geometry"]["spacing"] == pytest.approx([2.5, 1.25, 1.0]) and rec["resampled_geometry"]["size"] == [16, 16, 6]


def test_new_preprocess_keys_are_checked():
    with pytest.raises(ConfigError, match="in_plane"):
        PreprocessConfig.from_dict({"in_plane": "whole"})
    for bad in (1.5, -0.1, "1%", True):
        with pytest.raises(ConfigError, match="max_test_label_loss"):
            PreprocessConfig.from_dict({"max_test_label_loss": bad})
    assert PreprocessConfig().in_plane == "fixed_spacing" and PreprocessConfig().max_test_label_loss is None
