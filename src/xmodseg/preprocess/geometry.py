"""Orientation and resampling in physical space (SimpleITK).

Everything downstream assumes an axis-aligned LPS grid: numpy arrays from
`sitk.GetArrayFromImage` are then [z (I->S), y (A->P), x (R->L)].
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

CANONICAL = "LPS"  # DICOMOrient("LPS") yields the identity direction matrix

# Slicing axis name -> axis of the [z, y, x] numpy array.
SLICE_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}

INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
    "nearest": sitk.sitkNearestNeighbor,
}


def to_canonical(img: sitk.Image) -> sitk.Image:
    """Permute/flip axes (lossless) so the direction matrix is as close to identity as possible."""
    return sitk.DICOMOrient(img, CANONICAL)


def physical_bounds(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Min/max physical coordinates of the voxel *corners*, valid for oblique direction matrices."""
    size = np.asarray(img.GetSize())
    corners = [img.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]) for corner in itertools.product(*[(-0.5, s - 0.5) for s in size])]
    pts = np.asarray(corners)
    return pts.min(axis=0), pts.max(axis=0)


def axis_aligned_grid(img: sitk.Image, spacing: Sequence[float]) -> sitk.Image:
    """An identity-direction reference grid with `spacing` covering the physical extent of `img`."""
    sp = np.asarray(spacing, dtype=float)
    lo, hi = physical_bounds(img)
    size = np.maximum(1, np.round((hi - lo) / sp - 1e-6).astype(int))
    origin = lo + sp / 2.0
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in sp])
    ref.SetOrigin([float(o) for o in origin])
    ref.SetDirection(np.eye(3).ravel().tolist())
    return ref


def whole_extent_grid(img: sitk.Image, spacing: Sequence[float], fit: Mapping[int, int]) -> sitk.Image:
    """Like `axis_aligned_grid`, but each physical axis in `fit` (0 x, 1 y, 2 z) gets exactly
    `fit[axis]` voxels spanning the image's whole extent (spacing = extent / voxels), so a fixed
    slice size holds the whole field of view instead of cropping it."""
    ref = axis_aligned_grid(img, spacing)
    lo, hi = physical_bounds(img)
    sp, size = list(ref.GetSpacing()), list(ref.GetSize())
    for axis, n in fit.items():
        sp[axis], size[axis] = float(hi[axis] - lo[axis]) / int(n), int(n)
    out = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    out.SetSpacing([float(s) for s in sp])
    out.SetOrigin([float(o) for o in lo + np.asarray(sp) / 2.0])
    out.SetDirection(np.eye(3).ravel().tolist())
    return out


def resample_like(img: sitk.Image, reference: sitk.Image, interpolator: str, default: float, pixel_id: int) -> sitk.Image:
    """Resample `img` onto `reference`'s grid with an identity transform (pure physical-space mapping)."""
    return sitk.Resample(img, reference, sitk.Transform(), INTERPOLATORS[interpolator], float(default), pixel_id)


def resample_pair(
    image: sitk.Image,
    label: sitk.Image | None,
    spacing: Sequence[float],
    interpolator: str = "linear",
    fit: Mapping[int, int] | None = None,
) -> tuple[sitk.Image, sitk.Image | None]:
    """Canonicalise and resample an image (linear/B-spline) and its label (nearest) to `spacing`,
    or for the physical axes in `fit`, to that many voxels over the whole extent (`whole_extent_grid`)."""
    image = to_canonical(image)
    ref = axis_aligned_grid(image, spacing) if fit is None else whole_extent_grid(image, spacing, fit)
    background = float(sitk.GetArrayViewFromImage(image).min())
    out_img = resample_like(image, ref, interpolator, background, sitk.sitkFloat32)
    out_lab = None
    if label is not None:
        out_lab = resample_like(to_canonical(label), ref, "nearest", 0, sitk.sitkUInt8)
    return out_img, out_lab
