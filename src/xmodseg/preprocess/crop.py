"""Fixed-size in-plane crop/pad around a region found from the image alone (never from labels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def body_mask(volume: np.ndarray) -> np.ndarray:
    """Foreground (body) mask by Otsu thresholding, largest connected component.

    Uses only image intensities, so it is the same at training and test time.
    """
    img = sitk.GetImageFromArray(volume.astype(np.float32))
    mask = sitk.GetArrayFromImage(sitk.OtsuThreshold(img, 0, 1)).astype(bool)
    labelled, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, n + 1))
        mask = labelled == (int(np.argmax(sizes)) + 1)
    return mask


def crop_box(volume: np.ndarray, slice_axis: int, size: Sequence[int], *, whole_in_plane: bool = False) -> tuple[list[int], list[int]]:
    """Start index and size per array axis: `size` in-plane, centred on the body bounding box; full
    body extent along the slicing axis. Starts may be negative or exceed the array (padding).
    `whole_in_plane`: the whole array in-plane (already resampled to `size`), nothing cropped."""
    mask = body_mask(volume)
    if not mask.any():
        mask = np.ones_like(mask)
    coords = np.argwhere(mask)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    in_plane = [a for a in range(3) if a != slice_axis]
    start, extent = [0, 0, 0], [0, 0, 0]
    start[slice_axis], extent[slice_axis] = int(lo[slice_axis]), int(hi[slice_axis] - lo[slice_axis] + 1)
    for axis, n in zip(in_plane, size, strict=True):
        if whole_in_plane:
            start[axis], extent[axis] = 0, int(volume.shape[axis])
            continue
        centre = (lo[axis] + hi[axis]) / 2.0
        start[axis] = int(np.floor(centre - n / 2.0 + 0.5))
        extent[axis] = int(n)
    return start, extent


def _overlap(start: Sequence[int], extent: Sequence[int], shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices of the full array and of the box where a box at `start` (size `extent`) overlaps it."""
    full, box = [], []
    for s, e, n in zip(start, extent, shape, strict=True):
        a, b = max(s, 0), min(s + e, n)
        if b <= a:
            return None
        full.append(slice(a, b))
        box.append(slice(a - s, b - s))
    return tuple(full), tuple(box)


def crop_pad(volume: np.ndarray, start: Sequence[int], extent: Sequence[int], fill: float) -> np.ndarray:
    """Extract `volume[start:start+extent]`, padding with `fill` where the box leaves the array."""
    out = np.full(tuple(extent), fill, dtype=volume.dtype)
    if (ov := _overlap(start, extent, volume.shape)) is not None:
        out[ov[1]] = volume[ov[0]]
    return out


def uncrop(cropped: np.ndarray, start: Sequence[int], full_shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """Inverse of `crop_pad`: place a cropped array back into an array of `full_shape`."""
    out = np.full(tuple(full_shape), fill, dtype=cropped.dtype)
    if (ov := _overlap(start, cropped.shape, full_shape)) is not None:
        out[ov[0]] = cropped[ov[1]]
    return out


def label_crop_loss(label: np.ndarray, cropped: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """The fraction of labelled voxels (overall and per class) a crop removed: `label` before,
    `cropped` after. Quality control only: labels never place the crop."""
    n = len(class_names)
    before = np.bincount(label.ravel(), minlength=n)[:n]
    after = np.bincount(cropped.ravel(), minlength=n)[:n]
    total, kept = int(before[1:].sum()), int(after[1:].sum())
    return {
        "fraction": (total - kept) / total if total else 0.0,
        "per_class": {name: float((before[i] - after[i]) / before[i]) if before[i] else 0.0 for i, name in enumerate(class_names) if i},
        "labelled_voxels": total,
        "removed_voxels": total - kept,
    }
