"""Analytic 3D primitives in world (LPS, mm) coordinates, and the painter that layers tissues with them.

A primitive answers "is this point inside me, grown by g mm?" for float32 coordinate arrays.
Growing one primitive by different amounts gives wall/lumen/fat shells of a structure with a
single evaluation of its local coordinates, which keeps the phantom fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Vec = tuple[float, float, float]
Bounds = tuple[np.ndarray, np.ndarray]  # (lo, hi), each of shape (3,); entries may be +-inf


def vec(v: Sequence[float] | np.ndarray) -> Vec:
    """Plain Python floats, so float32 arrays are never promoted to float64 by a numpy scalar."""
    return (float(v[0]), float(v[1]), float(v[2]))


class Primitive(Protocol):
    def bounds(self, grow: float) -> Bounds: ...

    def prepare(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Any: ...

    def inside(self, state: Any, grow: float) -> np.ndarray: ...


class Painter(Protocol):
    """Anything that overwrites tissue classes of points inside it (later painters win)."""

    def bounds(self) -> Bounds: ...

    def paint(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, tissue: np.ndarray) -> None: ...


@dataclass(frozen=True)
class HalfSpace:
    """Points with normal . p >= offset (e.g. the ventricular side of the valve plane)."""

    normal: Vec
    offset: float

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        n0, n1, n2 = self.normal
        return n0 * x + n1 * y + n2 * z >= self.offset


@dataclass(frozen=True)
class Ellipsoid:
    """Oriented ellipsoid: `axes` are orthonormal rows (local axis directions), `radii` semi-axes in mm."""

    center: Vec
    axes: tuple[Vec, Vec, Vec]
    radii: Vec

    def bounds(self, grow: float) -> Bounds:
        a = np.asarray(self.axes)
        r = np.asarray(self.radii) + grow
        half = np.sqrt(((a * r[:, None]) ** 2).sum(axis=0))
        c = np.asarray(self.center)
        return c - half, c + half

    def prepare(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cx, cy, cz = self.center
        dx, dy, dz = x - cx, y - cy, z - cz
        (a0, a1, a2), (b0, b1, b2), (c0, c1, c2) = self.axes
        return a0 * dx + a1 * dy + a2 * dz, b0 * dx + b1 * dy + b2 * dz, c0 * dx + c1 * dy + c2 * dz

    def inside(self, state: tuple[np.ndarray, np.ndarray, np.ndarray], grow: float) -> np.ndarray:
        q0, q1, q2 = state
        r0, r1, r2 = (max(r + grow, 1e-3) for r in self.radii)
        s = np.square(q0 * (1.0 / r0))
        s += np.square(q1 * (1.0 / r1))
        s += np.square(q2 * (1.0 / r2))
        return s < 1.0


@dataclass(frozen=True)
class Tube:
    """Tube of constant radius around a polyline (a chain of capsules): vessels, airways."""

    points: tuple[Vec, ...]
    radius: float

    def bounds(self, grow: float) -> Bounds:
        p = np.asarray(self.points)
        r = self.radius + grow
        return p.min(axis=0) - r, p.max(axis=0) + r

    def prepare(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Squared distance to the centre line."""
        best: np.ndarray | None = None
        for a, b in zip(self.points[:-1], self.points[1:]):
            seg = np.subtract(b, a)
            length = float(np.linalg.norm(seg))
            u0, u1, u2 = (float(v) for v in seg / max(length, 1e-6))
            dx, dy, dz = x - a[0], y - a[1], z - a[2]
            proj = u0 * dx + u1 * dy + u2 * dz
            t = np.clip(proj, 0.0, length)
            d2 = dx * dx + dy * dy + dz * dz - t * (2.0 * proj - t)
            best = d2 if best is None else np.minimum(best, d2, out=best)
        assert best is not None
        return best

    def inside(self, state: np.ndarray, grow: float) -> np.ndarray:
        r = max(self.radius + grow, 0.0)
        return state < r * r


@dataclass(frozen=True)
class ZCylinder:
    """Elliptic cylinder along the body (z) axis, optionally limited in z: chest layers, spine, oesophagus."""

    center: tuple[float, float]
    semi_axes: tuple[float, float]
    z_range: tuple[float, float] = (-np.inf, np.inf)

    def bounds(self, grow: float) -> Bounds:
        (cx, cy), (a, b) = self.center, self.semi_axes
        lo = np.array([cx - a - grow, cy - b - grow, self.z_range[0]])
        hi = np.array([cx + a + grow, cy + b + grow, self.z_range[1]])
        return lo, hi

    def prepare(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        cx, cy = self.center
        z0, z1 = self.z_range
        zmask = None if (np.isinf(z0) and np.isinf(z1)) else (z >= z0) & (z <= z1)
        return x - cx, y - cy, zmask

    def inside(self, state: tuple[np.ndarray, np.ndarray, np.ndarray | None], grow: float) -> np.ndarray:
        dx, dy, zmask = state
        a, b = (max(v + grow, 1e-3) for v in self.semi_axes)
        s = np.square(dx * (1.0 / a))
        s += np.square(dy * (1.0 / b))
        m = s < 1.0
        return m if zmask is None else m & zmask


@dataclass(frozen=True)
class Box:
    """Axis-aligned box (sternum)."""

    center: Vec
    half: Vec

    def bounds(self, grow: float) -> Bounds:
        c, h = np.asarray(self.center), np.asarray(self.half) + grow
        return c - h, c + h

    def prepare(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cx, cy, cz = self.center
        return np.abs(x - cx), np.abs(y - cy), np.abs(z - cz)

    def inside(self, state: tuple[np.ndarray, np.ndarray, np.ndarray], grow: float) -> np.ndarray:
        ax, ay, az = state
        hx, hy, hz = self.half
        return (ax < hx + grow) & (ay < hy + grow) & (az < hz + grow)


@dataclass(frozen=True)
class Layer:
    """One shell of a structure: the primitive grown by `grow` mm is painted with `tissue`, except
    where the current tissue is in `spare` (a chamber wall must not close a vein's opening)."""

    grow: float
    tissue: int
    spare: tuple[int, ...] = ()

    def apply(self, mask: np.ndarray, tissue: np.ndarray) -> None:
        if self.spare:
            lut = np.zeros(256, dtype=bool)
            lut[list(self.spare)] = True
            mask &= ~lut[tissue]
        tissue[mask] = self.tissue


def layers(*spec: tuple[float, int] | tuple[float, int, tuple[int, ...]]) -> tuple[Layer, ...]:
    """Shorthand: layers((4, WALL), (0, LUMEN)) paints the wall shell, then the lumen over it."""
    return tuple(Layer(float(s[0]), int(s[1]), tuple(int(v) for v in s[2]) if len(s) > 2 else ()) for s in spec)


@dataclass(frozen=True)
class Layered:
    """Paint the layers of one primitive in order, outermost first (e.g. fat, wall, lumen).

    `cut` keeps only one side of a plane (chambers end at the valve plane).
    """

    shape: Primitive
    layers: tuple[Layer, ...]
    cut: HalfSpace | None = None

    def bounds(self) -> Bounds:
        return self.shape.bounds(max(0.0, max(layer.grow for layer in self.layers)))

    def paint(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, tissue: np.ndarray) -> None:
        state = self.shape.prepare(x, y, z)
        keep = self.cut.contains(x, y, z) if self.cut is not None else None
        for layer in self.layers:
            mask = self.shape.inside(state, layer.grow)
            if keep is not None:
                mask &= keep
            layer.apply(mask, tissue)


@dataclass(frozen=True)
class LayeredGroup:
    """Several primitives forming one structure (branching vessels, airways): every wall layer is
    painted before every lumen layer, so junctions stay open."""

    shapes: tuple[Primitive, ...]
    layers: tuple[Layer, ...]
    cut: HalfSpace | None = None

    def bounds(self) -> Bounds:
        g = max(0.0, max(layer.grow for layer in self.layers))
        boxes = [s.bounds(g) for s in self.shapes]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def paint(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, tissue: np.ndarray) -> None:
        states = [s.prepare(x, y, z) for s in self.shapes]
        keep = self.cut.contains(x, y, z) if self.cut is not None else None
        for layer in self.layers:
            for shape, state in zip(self.shapes, states):
                mask = shape.inside(state, layer.grow)
                if keep is not None:
                    mask &= keep
                layer.apply(mask, tissue)


def rotation_matrix(axis: Sequence[float] | np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues rotation about a (not necessarily unit) axis."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * kx + (1 - np.cos(angle_rad)) * (kx @ kx)


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """Rotation about a uniformly random axis by an angle uniform in [-max_deg, max_deg]."""
    axis = rng.normal(size=3)
    return rotation_matrix(axis, np.deg2rad(rng.uniform(-max_deg, max_deg)))
