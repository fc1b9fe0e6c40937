"""One random subject's anatomy, defined analytically in world (LPS, mm) coordinates.

`tissue_at` maps world points to tissue classes. Points come in spatially compact chunks so
each structure is evaluated only on the chunks its bounding box touches: that keeps a
3-4 million voxel volume at about a second on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmodseg.synth.chest import chest_painters, sample_layout
from xmodseg.synth.fields import SineField, random_sine_field
from xmodseg.synth.heart import sample_heart, sample_pose
from xmodseg.synth.params import PhantomParams
from xmodseg.synth.shapes import Painter


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Painters in painting order, plus a smooth displacement applied to world points first."""

    painters: tuple[Painter, ...]
    deformation: SineField
    heart_center: np.ndarray  # world position of the heart's centre (where the FOV is aimed)


def sample_anatomy(rng: np.random.Generator, params: PhantomParams) -> Anatomy:
    """Draw body, heart pose and shapes, and deformation of one subject from `rng`."""
    pose = sample_pose(rng, params)
    heart = sample_heart(rng, params, pose)
    chest = chest_painters(rng, sample_layout(rng, params), heart.floor)
    deformation = random_sine_field(rng, params.deform_components, params.deform_amplitude_mm, params.deform_wavelength_mm, dims=3)
    return Anatomy(tuple(chest) + heart.painters, deformation, pose.center.copy())


def tissue_at(anatomy: Anatomy, points: np.ndarray, y: np.ndarray | None = None, z: np.ndarray | None = None) -> np.ndarray:
    """Tissue class (uint8) per world point: `tissue_at(a, points_n_by_3)` or `tissue_at(a, x, y, z)`.

    The result has the shape of the points (N for an (N, 3) array, else the shape of x).
    """
    if y is None and z is None:
        pts = np.asarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"expected an (N, 3) array of world points, got shape {pts.shape}")
        coords = [pts[:, i] for i in range(3)]
        shape: tuple[int, ...] = (pts.shape[0],)
    elif y is not None and z is not None:
        coords = [np.asarray(v, dtype=np.float32) for v in (points, y, z)]
        shape = coords[0].shape
        if coords[1].shape != shape or coords[2].shape != shape:
            raise ValueError("x, y and z must have the same shape")
    else:
        raise ValueError("pass either an (N, 3) array or all three of x, y, z")
    x1, y1, z1 = (np.ascontiguousarray(c.reshape(1, -1)) for c in coords)
    return tissue_at_chunks(anatomy, x1, y1, z1).reshape(shape)


def tissue_at_chunks(anatomy: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Tissue classes for float32 world coordinates shaped (chunks, points per chunk).

    Chunks should be spatially compact (see `xmodseg.synth.grid.chunked_coordinates`); any
    chunking gives the same answer, compact chunks only make it faster.
    """
    dx, dy, dz = anatomy.deformation(x, y, z)
    dx += x
    dy += y
    dz += z
    lo = np.stack([dx.min(axis=1), dy.min(axis=1), dz.min(axis=1)], axis=1)
    hi = np.stack([dx.max(axis=1), dy.max(axis=1), dz.max(axis=1)], axis=1)
    tissue = np.zeros(x.shape, dtype=np.uint8)
    for painter in anatomy.painters:
        sel = _touched_chunks(painter, lo, hi)
        if sel.size == 0:
            continue
        if sel.size == x.shape[0]:
            painter.paint(dx, dy, dz, tissue)
            continue
        sub = tissue[sel]
        painter.paint(dx[sel], dy[sel], dz[sel], sub)
        tissue[sel] = sub
    return tissue


def _touched_chunks(painter: Painter, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Indices of chunks whose bounding box meets the painter's bounding box."""
    blo, bhi = painter.bounds()
    hit = np.all((lo <= bhi) & (hi >= blo), axis=1)
    excludes = getattr(painter, "excludes", None)
    if excludes is not None:
        hit &= ~excludes(lo, hi)
    return np.flatnonzero(hit)
