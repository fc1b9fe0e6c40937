"""Resampling in physical space, on the real MSD spleen CT and on an oblique synthetic volume."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import SHARED_DATA
from xmodseg.preprocess.geometry import physical_bounds, resample_like, resample_pair

CT = SHARED_DATA / "sub-spleen2_ct.nii.gz"
SEG = SHARED_DATA / "sub-spleen2_ct_seg-manual.nii.gz"

pytestmark = pytest.mark.skipif(not CT.exists(), reason=f"real CT test data not found at {CT} (needs ../shared beside the repo)")


def _centroid_mm(label: sitk.Image) -> np.ndarray:
    f = sitk.LabelShapeStatisticsImageFilter()
    f.Execute(label)
    return np.asarray(f.GetCentroid(1))


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 1.5), (0.8, 0.8, 2.5)])
def test_real_ct_geometry_and_label_volume_preserved(spacing):
    img, seg = sitk.ReadImage(str(CT)), sitk.ReadImage(str(SEG), sitk.sitkUInt8)
    out_img, out_seg = resample_pair(img, seg, spacing)
    assert out_img.GetSpacing() == pytest.approx(spacing)
    assert out_img.GetDirection() == pytest.approx(np.eye(3).ravel().tolist())  # canonical LPS
    assert out_seg.GetSize() == out_img.GetSize() and out_seg.GetOrigin() == out_img.GetOrigin()
    # The physical extent covered is the original one (within half an output voxel per side).
    lo0, hi0 = physical_bounds(img)
    lo1, hi1 = physical_bounds(out_img)
    assert np.all(np.abs(lo1 - lo0) <= np.asarray(spacing) / 2 + 1e-6)
    assert np.all(np.abs(hi1 - hi0) <= np.asarray(spacing) / 2 + 1e-6)
    # The label keeps its volume (mm^3) and position (centroid in mm).
    vol0 = sitk.GetArrayFromImage(seg).sum() * np.prod(img.GetSpacing())
    vol1 = sitk.GetArrayFromImage(out_seg).sum() * np.prod(out_seg.GetSpacing())
    assert vol1 == pytest.approx(vol0, rel=0.02)
    assert np.linalg.norm(_centroid_mm(out_seg) - _centroid_mm(seg)) < 0.5 * max(spacing)
    # HU values stay in range (linear interpolation does not overshoot).
    a0, a1 = sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(out_img)
    assert a1.min() >= a0.min() - 1e-3 and a1.max() <= a0.max() + 1e-3


def test_round_trip_back_to_original_grid():
    img, seg = sitk.ReadImage(str(CT)), sitk.ReadImage(str(SEG), sitk.sitkUInt8)
    _, out_seg = resample_pair(img, seg, (0.8, 0.8, 1.0))
    back = resample_like(out_seg, seg, "nearest", 0, sitk.sitkUInt8)
    a, b = sitk.GetArrayFromImage(seg) > 0, sitk.GetArrayFromImage(back) > 0
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.97


def test_oblique_direction_is_resampled_in_physical_space(tmp_path):
    """A sphere at a known physical position stays there when the input grid is rotated."""
    theta = np.deg2rad(20)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    size, spacing, origin = (40, 40, 20), (1.0, 1.0, 2.5), (-10.0, -30.0, 5.0)
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing(spacing)
    ref.SetOrigin(origin)
    ref.SetDirection(rot.ravel().tolist())
    centre = np.asarray(ref.TransformContinuousIndexToPhysicalPoint((20.0, 20.0, 10.0)))
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).reshape(-1, 3)
    pts = np.asarray(origin) + (idx * spacing) @ rot.T
    inside = (np.linalg.norm(pts - centre, axis=1) < 8).reshape(size)
    arr = np.transpose(inside, (2, 1, 0)).astype(np.uint8)  # [z, y, x]
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(ref)
    img = sitk.Cast(lab, sitk.sitkFloat32) * 100.0
    out_img, out_lab = resample_pair(img, lab, (1.0, 1.0, 1.0))
    assert out_lab.GetDirection() == pytest.approx(np.eye(3).ravel().tolist())
    assert np.linalg.norm(_centroid_mm(out_lab) - centre) < 0.6
    assert np.linalg.norm(_centroid_mm(out_lab) - _centroid_mm(lab)) < 0.6
