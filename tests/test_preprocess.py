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
