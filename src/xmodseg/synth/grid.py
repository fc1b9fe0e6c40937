"""Voxel grids of the two modalities and their world coordinates.

CT is near-axial but stored with left-right and anterior-posterior flipped (direction
diag(-1, -1, 1), as for RAS-ordered scans); MR is a coronal slice stack with permuted axes,
tilted obliquely per scan. Downstream code therefore has to work in physical space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from xmodseg.synth.params import PhantomParams
from xmodseg.synth.shapes import Vec, rotation_matrix, vec

# The FOV is aimed a little posterior and inferior of the heart centre so the spine and the
# diaphragm are in view, as in cardiac crops.
FOV_CENTER_SHIFT = np.array([0.0, 10.0, -8.0])
CT_DIRECTION = np.diag([-1.0, -1.0, 1.0])
# Coronal stack: i -> patient left, j -> inferior, k (slices) -> posterior.
MR_BASE_DIRECTION = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Grid:
    """A SimpleITK-style voxel grid: world = origin + direction @ (spacing * index), index (i, j, k)."""

    size: tuple[int, int, int]
    spacing: Vec
    origin: Vec
    direction: tuple[float, ...]  # 9 values, row-major, as sitk.Image.GetDirection()

    @property
    def matrix(self) -> np.ndarray:
        """direction @ diag(spacing): columns are the world steps of i, j and k."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3) * np.asarray(self.spacing)[None, :]

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """numpy (k, j, i) shape, as sitk.GetArrayFromImage returns."""
        return self.size[2], self.size[1], self.size[0]

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def world_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 world x, y, z of every voxel centre, each shaped like `array_shape`."""
        m = self.matrix
        ni, nj, nk = self.size
        i = np.arange(ni, dtype=np.float64)
        j = np.arange(nj, dtype=np.float64)
        k = np.arange(nk, dtype=np.float64)
        out = []
        for c in range(3):
            part_k = (self.origin[c] + m[c, 2] * k).astype(np.float32)[:, None, None]
            part_j = (m[c, 1] * j).astype(np.float32)[None, :, None]
            part_i = (m[c, 0] * i).astype(np.float32)[None, None, :]
            out.append(part_k + part_j + part_i)
        return out[0], out[1], out[2]


def centered_grid(center: np.ndarray, direction: np.ndarray, spacing: Vec, fov_mm: Vec) -> Grid:
    """Grid of `fov_mm` (per index axis) around the world point `center`."""
    size = tuple(max(1, int(round(f / s))) for f, s in zip(fov_mm, spacing))
    half = np.asarray(spacing) * (np.asarray(size) - 1) / 2.0
    origin = np.asarray(center) - direction @ half
    return Grid(size=(size[0], size[1], size[2]), spacing=vec(spacing), origin=vec(origin), direction=tuple(float(v) for v in direction.ravel()))


def subslice_grid(grid: Grid, n: int) -> Grid:
    """Each slice (k) split into n thinner slices centred within it; for odd n the middle one is the slice centre."""
    si, sj, sk = grid.spacing
    d = np.asarray(grid.direction).reshape(3, 3)
    origin = np.asarray(grid.origin) - d[:, 2] * sk * (n - 1) / (2.0 * n)
    return Grid(size=(grid.size[0], grid.size[1], grid.size[2] * n), spacing=(si, sj, sk / n), origin=vec(origin), direction=grid.direction)


def mr_direction(rng: np.random.Generator, oblique_deg: tuple[float, float]) -> np.ndarray:
    """Coronal stack whose slice normal is tilted by a random angle in `oblique_deg` (random tilt axis)."""
    angle = np.deg2rad(rng.uniform(*oblique_deg)) * rng.choice([-1.0, 1.0])
    phi = rng.uniform(0.0, 2.0 * np.pi)
    axis = np.array([np.cos(phi), 0.0, np.sin(phi)])  # perpendicular to the base slice normal (0, 1, 0)
    return rotation_matrix(axis, float(angle)) @ MR_BASE_DIRECTION


def sample_grid(kind: str, rng: np.random.Generator, params: PhantomParams, heart_center: np.ndarray) -> Grid:
    """The acquisition grid of one scan of `kind` ("mr" or "ct"), aimed at the heart."""
    center = np.asarray(heart_center) + FOV_CENTER_SHIFT + rng.uniform(-params.fov_jitter_mm, params.fov_jitter_mm, size=3)
    if kind == "ct":
        return centered_grid(center, CT_DIRECTION, params.ct_spacing_mm, params.ct_fov_mm)
    if kind == "mr":
        return centered_grid(center, mr_direction(rng, params.mr_oblique_deg), params.mr_spacing_mm, params.mr_fov_mm)
    raise ValueError(f"unknown modality kind '{kind}' (expected 'mr' or 'ct')")


def chunked_coordinates(grid: Grid, block: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z of the grid (padded to whole blocks) as float32 arrays (blocks, block**3).

    Each row is one compact block of voxels, so structures can skip the blocks they do not touch.
    """
    ni, nj, nk = grid.size
    nb = [math.ceil(n / block) for n in (nk, nj, ni)]
    ck, cj, ci = (a.ravel() * block for a in np.meshgrid(*(np.arange(n, dtype=np.float64) for n in nb), indexing="ij"))
    kk, jj, ii = (a.ravel() for a in np.meshgrid(*(np.arange(block, dtype=np.float64),) * 3, indexing="ij"))
    m = grid.matrix
    out = []
    for c in range(3):
        coarse = (grid.origin[c] + m[c, 0] * ci + m[c, 1] * cj + m[c, 2] * ck).astype(np.float32)
        fine = (m[c, 0] * ii + m[c, 1] * jj + m[c, 2] * kk).astype(np.float32)
        out.append(coarse[:, None] + fine[None, :])
    return out[0], out[1], out[2]


def unchunk(values: np.ndarray, grid: Grid, block: int = 8) -> np.ndarray:
    """Inverse of the chunk layout of `chunked_coordinates`: a (k, j, i) array of the grid's shape."""
    nk, nj, ni = grid.array_shape
    nb = [math.ceil(n / block) for n in (nk, nj, ni)]
    vol = values.reshape(nb[0], nb[1], nb[2], block, block, block).transpose(0, 3, 1, 4, 2, 5)
    vol = vol.reshape(nb[0] * block, nb[1] * block, nb[2] * block)
    return np.ascontiguousarray(vol[:nk, :nj, :ni])
