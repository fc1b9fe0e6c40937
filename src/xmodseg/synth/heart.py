"""The heart and great vessels of one random subject, as painters in world coordinates.

Shapes are laid out in a template frame whose origin is the centre of the LV base (the
mitral/aortic valve plane) and whose axes are the world LPS axes for an unrotated heart. The
LV long axis points to the apex: anterior, inferior and to the left. A random pose (rotation,
scale, offset) maps the template into the world; the valve plane splits the ventricle (below)
from the atria and the aortic root (above), so labels meet there as in MM-WHS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xmodseg.synth.params import PhantomParams
from xmodseg.synth.shapes import Ellipsoid, HalfSpace, Layered, LayeredGroup, Painter, Tube, layers, random_rotation, vec
from xmodseg.synth.tissues import Tissue

# Unrotated LV long axis (base -> apex): left, anterior, inferior in LPS.
LONG_AXIS = np.array([0.62, -0.58, -0.53]) / np.linalg.norm([0.62, -0.58, -0.53])
# Nominal world position of the heart's rotation centre (slightly left of the midline, anterior).
NOMINAL_CENTER = np.array([12.0, -15.0, 0.0])
PIVOT_FROM_BASE = 15.0  # mm from the LV base centre along the long axis


def lv_frame() -> np.ndarray:
    """Rows: towards the RV (right-anterior), a third axis with a superior component, the long axis."""
    w = LONG_AXIS
    e_rv = np.array([-1.0, -1.0, 0.0])
    e_rv -= (e_rv @ w) * w
    e_rv /= np.linalg.norm(e_rv)
    e3 = np.cross(w, e_rv)
    if e3[2] < 0:
        e3 = -e3
    return np.stack([e_rv, e3, w])


@dataclass(frozen=True, eq=False)
class HeartPose:
    """world = center + scale * rotation @ (template - pivot)."""

    center: np.ndarray
    rotation: np.ndarray
    scale: float

    def point(self, t: Sequence[float] | np.ndarray) -> np.ndarray:
        pivot = PIVOT_FROM_BASE * LONG_AXIS
        return self.center + self.scale * (self.rotation @ (np.asarray(t, dtype=np.float64) - pivot))

    def ellipsoid(self, center: np.ndarray, axes: np.ndarray, radii: Sequence[float]) -> Ellipsoid:
        rows = axes @ self.rotation.T
        return Ellipsoid(vec(self.point(center)), (vec(rows[0]), vec(rows[1]), vec(rows[2])), vec(self.scale * np.asarray(radii)))

    def tube(self, points: Sequence[Sequence[float] | np.ndarray], radius: float) -> Tube:
        return Tube(tuple(vec(self.point(p)) for p in points), float(self.scale * radius))

    def plane(self, normal: np.ndarray, through: np.ndarray) -> HalfSpace:
        """Half space {n . t >= n . through} of the template, mapped to the world."""
        n = self.rotation @ normal
        return HalfSpace(vec(n), float(n @ self.point(through)))


def sample_pose(rng: np.random.Generator, params: PhantomParams) -> HeartPose:
    offset = rng.uniform(-params.heart_offset_mm, params.heart_offset_mm, size=3)
    scale = rng.uniform(1 - params.heart_scale_jitter, 1 + params.heart_scale_jitter)
    return HeartPose(NOMINAL_CENTER + offset, random_rotation(rng, params.heart_rotation_deg), float(scale))


@dataclass(frozen=True, eq=False)
class Heart:
    painters: tuple[Painter, ...]  # in painting order
    floor: np.ndarray  # lowest point of the ventricles' epicardial fat: where the heart rests on the diaphragm


def lowest_point(e: Ellipsoid, grow: float) -> np.ndarray:
    """Point of the (grown) ellipsoid with the smallest z."""
    axes = np.asarray(e.axes)
    r2 = (np.asarray(e.radii) + grow) ** 2
    m = (axes.T * r2) @ axes  # shape matrix: x^T m^-1 x <= 1
    return np.asarray(e.center) - m[:, 2] / np.sqrt(m[2, 2])


@dataclass(frozen=True)
class _Draw:
    """Per-chamber jitter of sizes and positions."""

    rng: np.random.Generator
    jitter: float

    def size(self, value: float) -> float:
        return float(value * self.rng.uniform(1 - self.jitter, 1 + self.jitter))

    def move(self, p: np.ndarray, mm: float = 3.0) -> np.ndarray:
        return p + self.rng.uniform(-mm, mm, size=3)


@dataclass(frozen=True, eq=False)
class _Ventricle:
    cavity: Ellipsoid
    myo: float  # wall thickness
    ventricle_side: HalfSpace
    atrial_side: HalfSpace
    radius: float
    length: float


def sample_heart(rng: np.random.Generator, params: PhantomParams, pose: HeartPose) -> Heart:
    """Draw the chambers and vessels of one subject and return them in painting order."""
    draw = _Draw(rng, params.chamber_jitter)
    lv = _left_ventricle(rng, params, pose, draw)
    right = _right_heart(pose, draw, lv)
    atria = _atria(rng, pose, draw)
    aorta, aortic_root = _aorta(rng, params, pose, draw)
    fat = rng.uniform(*params.epicardial_fat_mm)
    painters: list[Painter] = [
        Layered(shape, layers((fat + wall, Tissue.FAT, _SPARE_FROM_FAT)))
        for shape, wall in ((atria.ra, 2.0), (right.rv, 4.0), (atria.la, 2.0), (lv.cavity, lv.myo))
    ]
    painters += [
        LayeredGroup((right.rvot, right.pa[0]), layers((fat + 2.0, Tissue.FAT, _SPARE_FROM_FAT))),
        Layered(aortic_root, layers((fat + 2.0, Tissue.FAT, _SPARE_FROM_FAT))),
        *(Layered(tube, layers((0.0, tissue))) for tube, tissue in right.lung_branches + atria.lung_branches),
        LayeredGroup(atria.cavae, layers((1.5, Tissue.MUSCLE), (0.0, Tissue.BLOOD_VEN))),
        Layered(atria.ra, layers((2.0, Tissue.MYO_OTHER, (Tissue.BLOOD_VEN,)), (0.0, Tissue.BLOOD_VEN))),
        LayeredGroup((right.rv, right.rvot), layers((3.5, Tissue.MYO_OTHER), (0.0, Tissue.BLOOD_VEN))),
        LayeredGroup(right.pa, layers((2.0, Tissue.MUSCLE, (Tissue.BLOOD_VEN,)), (0.0, Tissue.BLOOD_VEN))),
        LayeredGroup(atria.veins, layers((1.5, Tissue.MUSCLE), (0.0, Tissue.BLOOD_ART))),
        Layered(atria.la, layers((2.0, Tissue.MYO_OTHER, (Tissue.BLOOD_ART,)), (0.0, Tissue.BLOOD_LA)), cut=lv.atrial_side),
        Layered(lv.cavity, layers((lv.myo, Tissue.MYO_LV), (0.0, Tissue.BLOOD_LV)), cut=lv.ventricle_side),
        Layered(aorta, layers((2.0, Tissue.MUSCLE), (0.0, Tissue.BLOOD_AA)), cut=lv.atrial_side),
    ]
    floor = min((lowest_point(lv.cavity, lv.myo + fat), lowest_point(right.rv, 4.0 + fat)), key=lambda p: p[2])
    return Heart(tuple(painters), floor)


def _left_ventricle(rng: np.random.Generator, params: PhantomParams, pose: HeartPose, draw: _Draw) -> _Ventricle:
    """Prolate cavity centred below the base plane; the myocardium is the cavity grown by its thickness,
    both cut at the base plane, which gives a cup open at the valves."""
    frame = lv_frame()
    w = frame[2]
    base = np.zeros(3)
    length = rng.uniform(*params.lv_cavity_length_mm)
    radius = rng.uniform(*params.lv_cavity_radius_mm)
    cavity = pose.ellipsoid(base + 0.3 * length * w, frame, (radius, draw.size(0.95 * radius), length))
    return _Ventricle(cavity, rng.uniform(*params.myo_thickness_mm), pose.plane(w, base), pose.plane(-w, base), radius, length)


@dataclass(frozen=True, eq=False)
class _RightHeart:
    rv: Ellipsoid
    rvot: Tube
    pa: tuple[Tube, ...]  # trunk, left and right branch
    lung_branches: tuple[tuple[Tube, int], ...]


def _right_heart(pose: HeartPose, draw: _Draw, lv: _Ventricle) -> _RightHeart:
    """RV crescent on the septal side of the LV, outflow tract up to the pulmonary trunk and its branches."""
    frame = lv_frame()
    e_rv, _, w = frame
    outer = lv.radius + lv.myo
    center = draw.move(0.3 * lv.length * w + 0.8 * outer * e_rv)
    rv = pose.ellipsoid(center, frame, (draw.size(0.8 * outer), draw.size(1.1 * outer), draw.size(0.8 * lv.length)))
    root = draw.move(np.array([16.0, -32.0, 20.0]))
    split = root + np.array([6.0, 24.0, 28.0])
    r = draw.size(13.0)
    left_end, right_end = split + (55.0, 40.0, -15.0), split + (-70.0, 25.0, -12.0)
    pa = (
        pose.tube([root, split], r),
        pose.tube([split, split + (30.0, 25.0, -5.0), left_end], 0.75 * r),
        pose.tube([split, split + (-35.0, 20.0, -5.0), right_end], 0.75 * r),
    )
    branches = tuple((t, int(Tissue.BLOOD_VEN)) for end, side in ((left_end, 1.0), (right_end, -1.0)) for t in _lung_branches(draw.rng, pose, end, side, 3))
    return _RightHeart(rv, pose.tube([center, root], draw.size(13.0)), pa, branches)


@dataclass(frozen=True, eq=False)
class _Atria:
    ra: Ellipsoid
    cavae: tuple[Tube, Tube]
    la: Ellipsoid
    veins: tuple[Tube, ...]
    lung_branches: tuple[tuple[Tube, int], ...]


def _atria(rng: np.random.Generator, pose: HeartPose, draw: _Draw) -> _Atria:
    """RA on the right with the venae cavae; LA posterior-superior to the LV base with four pulmonary veins."""
    e_rv, _, w = lv_frame()
    ra_center = draw.move(np.array([-42.0, 2.0, 8.0]))
    ra = pose.ellipsoid(ra_center, random_rotation(rng, 20.0), (draw.size(22.0), draw.size(22.0), draw.size(27.0)))
    cavae = (
        pose.tube([ra_center + (0.0, 0.0, 15.0), ra_center + (-2.0, -2.0, 250.0)], draw.size(9.0)),
        pose.tube([ra_center + (2.0, 6.0, -15.0), ra_center + (6.0, 18.0, -250.0)], draw.size(11.0)),
    )
    la_center = draw.move(-16.0 * w - 10.0 * e_rv, 2.0)
    la = pose.ellipsoid(la_center, lv_frame(), (draw.size(24.0), draw.size(25.0), draw.size(22.0)))
    ends = [(la_center + (side * 12.0, dy, dz), la_center + (side * 55.0, dy + 6.0, dz * 1.5), side) for side, dy, dz in _PV_OFFSETS]
    veins = tuple(pose.tube([start, end], draw.size(6.0)) for start, end, _ in ends)
    branches = tuple((t, int(Tissue.BLOOD_ART)) for _, end, side in ends for t in _lung_branches(rng, pose, end, side, 3))
    return _Atria(ra, cavae, la, veins, branches)


def _aorta(rng: np.random.Generator, params: PhantomParams, pose: HeartPose, draw: _Draw) -> tuple[Tube, Tube]:
    """Ascending aorta from the LV outflow (anterior to the LA) up beyond the top of the FOV; and its root segment."""
    e_rv, e3, w = lv_frame()
    root = 12.0 * e_rv + 6.0 * e3
    r = rng.uniform(*params.aorta_radius_mm)
    p1 = draw.move(root + (-6.0, -8.0, 30.0))
    p2 = p1 + (-3.0, 0.0, 40.0) + rng.uniform(-4, 4, size=3)
    return pose.tube([root + 8.0 * w, root, p1, p2, p2 + (2.0, 12.0, 200.0)], r), pose.tube([root, p1], r)


def _lung_branches(rng: np.random.Generator, pose: HeartPose, root: np.ndarray, side: float, n: int) -> list[Tube]:
    """Thin kinked vessels fanning out laterally from a hilar vessel end, so the lungs are not empty."""
    out = []
    for _ in range(n):
        d = np.array([side, rng.uniform(-0.4, 0.8), rng.uniform(-1.0, 1.0)])
        d /= np.linalg.norm(d)
        half = rng.uniform(20.0, 40.0)
        mid = root + half * d
        bend = d + rng.normal(scale=0.35, size=3)
        out.append(pose.tube([root, mid, mid + half * bend / np.linalg.norm(bend)], rng.uniform(2.5, 4.5)))
    return out


# (side, posterior, superior) offsets of the pulmonary veins from the LA centre
_PV_OFFSETS = ((-1.0, 8.0, 8.0), (-1.0, 10.0, -6.0), (1.0, 8.0, 8.0), (1.0, 10.0, -6.0))

# Epicardial fat does not overwrite bone, airways or vessels it happens to touch.
_SPARE_FROM_FAT = (
    Tissue.BONE_CORTICAL,
    Tissue.BONE_MARROW,
    Tissue.AIR,
    Tissue.DISC,
    Tissue.CSF,
    Tissue.BLOOD_ART,
)
