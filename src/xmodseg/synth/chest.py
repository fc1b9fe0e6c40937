"""Unlabelled chest surroundings: body wall, lungs, diaphragm and liver, ribs, sternum, spine, mediastinum.

World frame (LPS, mm): x to the patient's left, y posterior, z superior; the body midline is
x = 0 and the nominal heart centre is near (12, -18, 0). The surroundings make the background
non-trivial (bone, fat, muscle, liver and blood-filled vessels that are not labelled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmodseg.synth.params import PhantomParams
from xmodseg.synth.shapes import Bounds, Box, Layered, LayeredGroup, Painter, Primitive, Tube, ZCylinder, layers
from xmodseg.synth.tissues import Tissue

INF = np.inf


@dataclass(frozen=True)
class ChestLayout:
    """Per-subject body measurements shared by several painters."""

    cavity_center_y: float
    cavity_semi: tuple[float, float]  # thoracic cavity (inner chest wall), x and y semi-axes
    muscle_mm: float
    fat_mm: float
    sternum_y: float  # posterior (inner) surface of the sternum
    spine_y: float  # centre of the vertebral bodies
    vertebra_radius: float


@dataclass(frozen=True)
class Thorax:
    """Thoracic cavity: lungs above the diaphragm domes, a muscular diaphragm, liver below."""

    cavity: ZCylinder
    domes: tuple[tuple[float, float, float], ...]  # (x, y, z_top) of each dome
    dome_radius: float  # radius of curvature (mm)
    diaphragm_mm: float

    def bounds(self) -> Bounds:
        return self.cavity.bounds(0.0)

    def surface(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm: the higher of the paraboloid domes."""
        k = 1.0 / (2.0 * self.dome_radius)
        out: np.ndarray | None = None
        for dx, dy, top in self.domes:
            h = np.square(x - dx)
            h += np.square(y - dy)
            h *= -k
            h += top
            out = h if out is None else np.maximum(out, h, out=out)
        assert out is not None
        return out

    def paint(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, tissue: np.ndarray) -> None:
        inside = self.cavity.inside(self.cavity.prepare(x, y, z), 0.0)
        below = z - self.surface(x, y)
        tissue[inside & (below >= 0)] = Tissue.LUNG
        tissue[inside & (below < 0)] = Tissue.MUSCLE
        tissue[inside & (below < -self.diaphragm_mm)] = Tissue.LIVER


@dataclass(frozen=True)
class RibCage:
    """Sloping ribs (cortical shell, marrow core) in the inner chest wall; costal cartilage near the sternum."""

    center_y: float
    semi: tuple[float, float]  # inner chest wall (thoracic cavity) semi-axes
    thickness: float  # radial rib thickness
    period: float  # rib spacing along z
    height: float  # rib height along z
    slope: float  # dz/dy: posterior ends are higher
    phase: float
    cartilage_x: float  # |x| below which the anterior rib is cartilage

    def bounds(self) -> Bounds:
        a, b = self.semi
        t = self.thickness
        return np.array([-a - t, self.center_y - b - t, -INF]), np.array([a + t, self.center_y + b + t, INF])

    def excludes(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Chunks whose (x, y) box lies wholly inside the cavity shrunk by 1 mm hold no rib."""
        a, b = self.semi[0] - 1.0, self.semi[1] - 1.0
        cy = self.center_y
        far_x = np.maximum(np.abs(lo[:, 0]), np.abs(hi[:, 0]))
        far_y = np.maximum(np.abs(lo[:, 1] - cy), np.abs(hi[:, 1] - cy))
        return (far_x / a) ** 2 + (far_y / b) ** 2 < 1.0

    def _ring(self, dx: np.ndarray, dy: np.ndarray, grow: float) -> np.ndarray:
        a, b = self.semi
        s = np.square(dx * (1.0 / (a + grow)))
        s += np.square(dy * (1.0 / (b + grow)))
        return s < 1.0

    def paint(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, tissue: np.ndarray) -> None:
        dy = y - self.center_y
        level = z - self.slope * dy
        level -= self.phase
        np.mod(level, self.period, out=level)
        t = self.thickness
        rib = (level < self.height) & self._ring(x, dy, t) & ~self._ring(x, dy, 0.0)
        core = (level > 1.5) & (level < self.height - 1.5) & self._ring(x, dy, t - 1.5) & ~self._ring(x, dy, 1.5)
        cartilage = (np.abs(x) < self.cartilage_x) & (dy < 0)
        tissue[rib] = Tissue.BONE_CORTICAL
        tissue[core] = Tissue.BONE_MARROW
        tissue[rib & cartilage] = Tissue.DISC


@dataclass(frozen=True)
class Spine:
    """Vertebral bodies (cortical shell, marrow, discs), spinal canal and posterior elements."""

    body: ZCylinder
    canal: ZCylinder
    arch: ZCylinder
    processes: tuple[Box, ...]  # spinous and transverse processes
    period: float
    disc: float
    phase: float

    def bounds(self) -> Bounds:
        boxes = [self.body.bounds(0.0), self.arch.bounds(0.0)] + [p.bounds(0.0) for p in self.processes]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def paint(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, tissue: np.ndarray) -> None:
        level = z - self.phase
        np.mod(level, self.period, out=level)
        bony = level >= self.disc
        parts: tuple[Primitive, ...] = (self.arch, *self.processes)
        for part in parts:
            state = part.prepare(x, y, z)
            tissue[part.inside(state, 0.0) & bony] = Tissue.BONE_CORTICAL
            tissue[part.inside(state, -1.5) & bony] = Tissue.BONE_MARROW
        tissue[self.canal.inside(self.canal.prepare(x, y, z), 0.0)] = Tissue.CSF
        state = self.body.prepare(x, y, z)
        vert = self.body.inside(state, 0.0)
        tissue[vert] = Tissue.DISC
        tissue[vert & bony] = Tissue.BONE_CORTICAL
        core = self.body.inside(state, -2.0) & (level >= self.disc + 1.5) & (level < self.period - 1.5)
        tissue[core] = Tissue.BONE_MARROW


def sample_layout(rng: np.random.Generator, params: PhantomParams) -> ChestLayout:
    """Body size and wall thicknesses of one subject."""
    scale = rng.uniform(1 - params.body_scale_jitter, 1 + params.body_scale_jitter)
    sternum_y = -78.0 * scale * rng.uniform(0.96, 1.04)
    spine_y = 75.0 * scale * rng.uniform(0.96, 1.04)
    vr = rng.uniform(15.0, 18.0)
    back = spine_y + 10.0
    return ChestLayout(
        cavity_center_y=(sternum_y + back) / 2,
        cavity_semi=(rng.uniform(122.0, 140.0) * scale, (back - sternum_y) / 2),
        muscle_mm=rng.uniform(12.0, 20.0),
        fat_mm=rng.uniform(*params.subcutaneous_fat_mm),
        sternum_y=sternum_y,
        spine_y=spine_y,
        vertebra_radius=vr,
    )


def chest_painters(rng: np.random.Generator, lay: ChestLayout, heart_floor: np.ndarray) -> list[Painter]:
    """Painters of the surroundings in painting order (later ones overwrite earlier ones).

    The diaphragm is placed so the heart rests on it at `heart_floor` (its lowest point).
    """
    cy, (a, b) = lay.cavity_center_y, lay.cavity_semi
    m, f = lay.muscle_mm, lay.fat_mm
    sy, vr = lay.spine_y, lay.vertebra_radius
    cavity = ZCylinder((0.0, cy), (a, b))
    back = ZCylinder((0.0, sy + 25.0), (55.0, 45.0))
    painters: list[Painter] = [
        Layered(ZCylinder((0.0, cy), (a + m + f, b + m + f)), layers((0.0, Tissue.FAT))),
        Layered(back, layers((f, Tissue.FAT))),
        Layered(ZCylinder((0.0, cy), (a + m, b + m)), layers((0.0, Tissue.MUSCLE))),
        Layered(back, layers((0.0, Tissue.MUSCLE))),
        _thorax(rng, cavity, heart_floor),
        _ribs(rng, cavity),
        _sternum(rng, lay.sternum_y),
        # mediastinal fat: retrosternal, superior (around the great vessels) and posterior
        Layered(ZCylinder((0.0, lay.sternum_y + 8.0), (22.0, 9.0), (-40.0, 80.0)), layers((0.0, Tissue.FAT))),
        Layered(ZCylinder((-8.0, 5.0), (30.0, 38.0), (25.0, INF)), layers((0.0, Tissue.FAT))),
        Layered(ZCylinder((8.0, sy - 20.0), (26.0, 16.0)), layers((0.0, Tissue.FAT))),
        # paraspinal muscle carves the posterior cavity so the lungs wrap around the spine
        Layered(ZCylinder((0.0, sy + 12.0), (42.0, 35.0)), layers((0.0, Tissue.MUSCLE))),
        _spine(rng, sy, vr),
        # oesophagus, trachea and main bronchi, descending aorta
        Layered(ZCylinder((2.0, sy - vr - 10.0), (7.0, 6.0)), layers((0.0, Tissue.MUSCLE), (-4.5, Tissue.AIR))),
        _airways(rng, sy - vr - 24.0),
        _descending_aorta(rng, sy),
    ]
    return painters


def _ribs(rng: np.random.Generator, cavity: ZCylinder) -> RibCage:
    return RibCage(
        center_y=cavity.center[1],
        semi=cavity.semi_axes,
        thickness=rng.uniform(8.0, 10.0),
        period=rng.uniform(22.0, 27.0),
        height=rng.uniform(9.0, 12.0),
        slope=rng.uniform(0.3, 0.5),
        phase=rng.uniform(0.0, 30.0),
        cartilage_x=rng.uniform(40.0, 55.0),
    )


def _sternum(rng: np.random.Generator, inner_y: float) -> Painter:
    """Flat bone in front of the heart, from above the FOV down to the xiphoid (about z = -70)."""
    box = Box((0.0, inner_y - 6.0, 50.0), (rng.uniform(13.0, 17.0), 6.0, 120.0))
    return Layered(box, layers((0.0, Tissue.BONE_CORTICAL), (-1.5, Tissue.BONE_MARROW)))


def _descending_aorta(rng: np.random.Generator, spine_y: float) -> Painter:
    """Left of the vertebral bodies; arterial blood like the labelled aorta, but unlabelled."""
    r = rng.uniform(10.0, 12.0)
    return Layered(ZCylinder((26.0 + rng.uniform(-3, 3), spine_y - 10.0), (r, r)), layers((1.5, Tissue.MUSCLE), (0.0, Tissue.BLOOD_ART)))


def _thorax(rng: np.random.Generator, cavity: ZCylinder, heart_floor: np.ndarray) -> Thorax:
    """Right dome higher than the left; both shifted so the surface touches the heart's lowest point."""
    cy = cavity.center[1]
    right_top = rng.uniform(8.0, 18.0)  # above the left dome
    domes = ((-55.0 + rng.uniform(-8, 8), cy + 10.0, right_top), (60.0 + rng.uniform(-8, 8), cy + 10.0, 0.0))
    thorax = Thorax(cavity=cavity, domes=domes, dome_radius=rng.uniform(95.0, 125.0), diaphragm_mm=5.0)
    fx, fy, fz = (np.array([v], dtype=np.float32) for v in heart_floor)
    shift = fz[0] + rng.uniform(-4.0, 2.0) - float(thorax.surface(fx, fy)[0])
    return Thorax(cavity=cavity, domes=tuple((x, y, float(top + shift)) for x, y, top in domes), dome_radius=thorax.dome_radius, diaphragm_mm=5.0)


def _spine(rng: np.random.Generator, sy: float, vr: float) -> Spine:
    canal_y = sy + vr + 8.0
    return Spine(
        body=ZCylinder((0.0, sy), (1.15 * vr, vr)),
        canal=ZCylinder((0.0, canal_y), (7.5, 7.0)),
        arch=ZCylinder((0.0, canal_y), (13.5, 13.0)),
        processes=(
            Box((0.0, canal_y + 25.0, 0.0), (4.0, 14.0, 1e4)),  # spinous
            Box((0.0, canal_y - 2.0, 0.0), (38.0, 5.0, 1e4)),  # transverse
        ),
        period=rng.uniform(27.0, 32.0),
        disc=rng.uniform(6.0, 8.0),
        phase=rng.uniform(0.0, 32.0),
    )


def _airways(rng: np.random.Generator, trachea_y: float) -> Painter:
    """Trachea down to the carina, then the main bronchi into the lungs (air in a thin wall)."""
    carina = (-2.0, trachea_y, rng.uniform(55.0, 70.0))
    return LayeredGroup(
        (
            Tube(((-2.0, trachea_y, 400.0), carina), 9.0),
            Tube((carina, (carina[0] - 38.0, carina[1] + 8.0, carina[2] - 30.0), (carina[0] - 70.0, carina[1] + 20.0, carina[2] - 55.0)), 6.5),
            Tube((carina, (carina[0] + 42.0, carina[1] + 10.0, carina[2] - 40.0), (carina[0] + 75.0, carina[1] + 22.0, carina[2] - 60.0)), 6.0),
        ),
        layers((2.0, Tissue.MUSCLE), (0.0, Tissue.AIR)),
    )
