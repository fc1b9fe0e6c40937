"""The SIFA release's test volumes are cached slice for slice as SIFA's evaluate.py sees them, and
predictions on those slices map back exactly onto the released files.

evaluate.py reads each volume with `medpy.io.load`, flips the array on axes 0 and 1 and predicts
`data[..., k]`. medpy (0.5, installed here) reads through SimpleITK and returns the transpose of
SimpleITK's [z, y, x] array, i.e. [x, y, z]; the medpy of SIFA's time read NIfTI with nibabel, whose
array is in the same voxel (i, j, k) order. The test compares with medpy itself on a small volume
whose three sizes differ, so any swapped, unflipped or transposed axis shows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from tests.unit.datasets.test_tfrecord import example, release_slices, write_tfrecord
from xmodseg.datasets.sifa_release import build_cache
from xmodseg.evaluation.inference import to_original_grid
from xmodseg.imageio import reference_image, same_geometry
from xmodseg.registry import dataset_from_config

medpy_load = pytest.importorskip("medpy.io").load

NX, NY, NZ = 7, 5, 4


def _rotation(deg: float) -> np.ndarray:
    """An oblique direction (rotation about a tilted axis, then x and y swapped): not identity,
    not axis-aligned."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return rx @ rz @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]])  # det +1: (-1) * (-1)


DIRECTIONS = {"oblique_det+1": _rotation(25.0), "flipped_det-1": np.diag([-1.0, 1.0, 1.0]) @ _rotation(10.0)}


def evaluate_py_mapping(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """evaluate.py's numpy mapping on its float64 batch, then the float32 network input."""
    x = np.asarray(x, dtype=np.float64)
    return np.subtract(np.multiply(np.divide(np.subtract(x, a), np.subtract(b, a)), 2.0), 1).astype(np.float32)


@pytest.fixture(params=sorted(DIRECTIONS))
def release(tmp_path, request):
    direction = DIRECTIONS[request.param]
    spec = dataset_from_config(
        "rel",
        {
            "root": str(tmp_path / "raw"),
            "source": {"kind": "sifa_release"},
            "labels": {"classes": ["background", "MYO", "LAC", "LVC", "AA"], "mapping": {i: i for i in range(5)}, "ignore": [5]},
            "modalities": {"mr": {"kind": "mr", "image": "{case}_image.nii.gz", "label": "{case}_label.nii.gz", "cases": [1007], "test": [1007]}},
        },
    )
    n = NX * NY * NZ
    image = (np.arange(n, dtype=np.float32) * 0.0371 - 2.0).reshape(NZ, NY, NX)  # distinct values, [z, y, x]
    label = (np.arange(n) % 6).astype(np.uint8).reshape(NZ, NY, NX)  # 0..5, the release's 5 included
    for arr, path in ((image, spec.image_path("mr", "1007")), (label, spec.label_path("mr", "1007"))):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.7, 1.3, 2.1))
        img.SetOrigin((12.5, -40.0, 7.25))
        img.SetDirection(direction.ravel().tolist())
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(img, str(path))
    rng = np.random.default_rng(0)
    files = [write_tfrecord(tmp_path / "mr.tfrecords", [example(*s) for s in release_slices(rng, 2)])]
    out = build_cache(spec, "mr", files, tmp_path / "cache")
    manifest = json.loads((out / "manifest.json").read_text())
    return spec, out, manifest, manifest["cases"][-1]


def test_cached_test_slices_are_evaluate_py_slices(release):
    spec, out, manifest, rec = release
    data, _ = medpy_load(str(spec.image_path("mr", "1007")))
    gt, _ = medpy_load(str(spec.label_path("mr", "1007")))
    assert data.shape == (NX, NY, NZ)  # medpy: [x, y, z]
    data, gt = np.flip(np.flip(data, axis=0), axis=1), np.flip(np.flip(gt, axis=0), axis=1)  # evaluate.py
    image, label = np.load(out / rec["image"]), np.load(out / rec["label"])
    assert image.shape == label.shape == (NZ, NX, NY)
    for k in range(NZ):
        expected = evaluate_py_mapping(data[..., k], -1.8, 4.4)  # SIFA's MR constants
        np.testing.assert_array_equal(image[k].view(np.uint32), expected.view(np.uint32))  # bit for bit
        np.testing.assert_array_equal(label[k], np.where(gt[..., k] == 5, 0, gt[..., k]))  # 5: no class = background
    assert rec["ignored_label_voxels"] == int((gt == 5).sum()) > 0


def test_cached_grid_is_the_released_grid_rearranged(release):
    """Every cached voxel sits at the physical point of the released voxel it came from; the
    direction of the cached grid has the opposite determinant, which SimpleITK accepts."""
    spec, out, manifest, rec = release
    orig = sitk.ReadImage(str(spec.image_path("mr", "1007")))
    cached = reference_image(rec["resampled_geometry"])
    assert np.linalg.det(np.reshape(cached.GetDirection(), (3, 3))) == pytest.approx(-np.linalg.det(np.reshape(orig.GetDirection(), (3, 3))))
    assert manifest["slice_axis"] == "axial"  # slices along axis 0 of the cached array
    for k, i, j in np.ndindex(NZ, NX, NY):  # cached [k, i, j] = original voxel (x, y, z) = (NX-1-i, NY-1-j, k)
        p_cached = cached.TransformIndexToPhysicalPoint((j, i, k))
        p_orig = orig.TransformIndexToPhysicalPoint((NX - 1 - i, NY - 1 - j, k))
        assert p_cached == pytest.approx(p_orig, abs=1e-9)


def test_predictions_map_back_onto_the_released_label(release):
    spec, out, manifest, rec = release
    label_file = sitk.ReadImage(str(spec.label_path("mr", "1007")))
    pred = np.load(out / rec["label"])  # a perfect prediction
    back = to_original_grid(pred, rec, manifest["slice_axis"])
    assert same_geometry(back, label_file)
    raw = sitk.GetArrayFromImage(label_file)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), np.where(raw == 5, 0, raw))
