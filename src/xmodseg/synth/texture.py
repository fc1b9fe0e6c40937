"""Spatially correlated random fields on a voxel grid: tissue texture and CT noise (phantom version 2).

Real tissue is not homogeneous and CT noise is not white (the reconstruction filter correlates
neighbouring voxels); both are random fields with a correlation length of a millimetre or more. Drawing white noise on a coarse grid, repeating it to
the full grid and box-filtering it gives such a field at the cost of a few passes over the volume
(a full-resolution Gaussian filter of the same width would cost several times more).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def correlated_field(rng: np.random.Generator, shape: Sequence[int], spacing_mm: Sequence[float], corr_mm: float) -> np.ndarray:
    """float32 field of `shape` (array order), zero mean, unit standard deviation, correlated over ~`corr_mm`.

    `spacing_mm` is the voxel size along each array axis. Axes whose voxels are already longer than
    the correlation length get independent values per voxel (smoothed by the coarse filter only).
    """
    factors = [max(1, int(round(corr_mm / max(s, 1e-6)))) for s in spacing_mm]
    coarse_shape = [math.ceil(n / f) + 1 for n, f in zip(shape, factors)]
    coarse = rng.standard_normal(coarse_shape, dtype=np.float32)
    coarse = ndimage.gaussian_filter(coarse, 0.6, mode="wrap", truncate=2.5)
    offsets = [int(rng.integers(0, f)) for f in factors]
    field = coarse
    for axis, (n, f, o) in enumerate(zip(shape, factors, offsets)):
        if f > 1:
            field = np.repeat(field, f, axis=axis)
            field = ndimage.uniform_filter1d(field, f, axis=axis, mode="nearest")
        field = np.take(field, np.arange(o, o + n), axis=axis)
    field = np.ascontiguousarray(field, dtype=np.float32)
    field -= float(field.mean())
    std = float(field.std())
    field /= max(std, 1e-6)
    return field
