"""Version-2 anatomy: version 1's chest and heart with wider variability, plus LV cavity structures
that do not look like blood, a variable aortic course and the two venae cavae told apart.

Version 1's draws come from the case's main stream in version 1's order (so a case keeps its
layout across versions); everything version 2 adds comes from a second stream (`extra`). Why the
additions exist:

- trabeculated inner LV layer and papillary muscles: labelled LV cavity (MM-WHS counts them to
  the cavity) although they look like muscle, so intensity alone cannot give the label;
- superior and inferior vena cava as their own tissues: in arterial-phase CT the SVC holds
  undiluted contrast (the source of streaks) and the IVC unenhanced blood, while in bSSFP MR both
  are bright blood like the labelled chambers;
- a random displacement of the ascending aorta's centre line: the aortic course varies between
  subjects more than a rotated template can express;
- pericardial fat pads (apex, right ventricle): in bSSFP MR fat is as bright as blood, so a bright
  mass next to the LV is fat or blood depending on where it is; in CT it is dark.
"""

from __future__ import annotations

import numpy as np

from xmodseg.synth.anatomy import Anatomy
from xmodseg.synth.chest import chest_painters, sample_layout
from xmodseg.synth.fields import random_sine_field
from xmodseg.synth.heart import (
    _SPARE_FROM_FAT,
    Heart,
    HeartPose,
    _aorta,
    _atria,
    _Draw,
    _left_ventricle,
    _right_heart,
    _Ventricle,
    lowest_point,
    lv_frame,
    sample_pose,
)
from xmodseg.synth.params import PhantomParams
from xmodseg.synth.shapes import Ellipsoid, Layered, LayeredGroup, Painter, Tube, layers, vec
from xmodseg.synth.tissues import ExtraTissue, Tissue

_VENOUS = (Tissue.BLOOD_VEN, ExtraTissue.BLOOD_SVC, ExtraTissue.BLOOD_IVC)
# Fat pads fill lung-side space only (they never displace the diaphragm, liver, vessels or bone).
_ONLY_LUNG = tuple(int(t) for t in Tissue if t not in (Tissue.LUNG,))


def sample_anatomy_v2(rng: np.random.Generator, extra: np.random.Generator, params: PhantomParams) -> Anatomy:
    """Body, heart and deformation of one subject: version 1's sequence of draws on `rng`, additions on `extra`."""
    pose = sample_pose(rng, params)
    heart = sample_heart_v2(rng, extra, params, pose)
    chest = chest_painters(rng, sample_layout(rng, params), heart.floor)
    deformation = random_sine_field(rng, params.deform_components, params.deform_amplitude_mm, params.deform_wavelength_mm, dims=3)
    return Anatomy(tuple(chest) + heart.painters, deformation, pose.center.copy())


def sample_heart_v2(rng: np.random.Generator, extra: np.random.Generator, params: PhantomParams, pose: HeartPose) -> Heart:
    """Version 1's chambers and vessels (same draws) with the version-2 structures, in painting order."""
    draw = _Draw(rng, params.chamber_jitter)
    lv = _left_ventricle(rng, params, pose, draw)
    right = _right_heart(pose, draw, lv)
    atria = _atria(rng, pose, draw)
    aorta, _ = _aorta(rng, params, pose, draw)
    fat = rng.uniform(*params.epicardial_fat_mm)
    aorta = _displace_course(extra, aorta, params.aorta_course_mm)
    aortic_root = Tube(aorta.points[1:3], aorta.radius)
    trabecular = float(extra.uniform(*params.trabecular_mm))
    papillary = _papillary_muscles(extra, params, pose, lv)
    svc, ivc = atria.cavae
    pads = _fat_pads(extra, params, pose, lv)
    painters: list[Painter] = [Layered(pad, layers((0.0, Tissue.FAT, _ONLY_LUNG))) for pad in pads]
    painters += [
        Layered(shape, layers((fat + wall, Tissue.FAT, _SPARE_FROM_FAT)))
        for shape, wall in ((atria.ra, 2.0), (right.rv, 4.0), (atria.la, 2.0), (lv.cavity, lv.myo))
    ]
    painters += [
        LayeredGroup((right.rvot, right.pa[0]), layers((fat + 2.0, Tissue.FAT, _SPARE_FROM_FAT))),
        Layered(aortic_root, layers((fat + 2.0, Tissue.FAT, _SPARE_FROM_FAT))),
        *(Layered(tube, layers((0.0, tissue))) for tube, tissue in right.lung_branches + atria.lung_branches),
        LayeredGroup((svc, ivc), layers((1.5, Tissue.MUSCLE))),
        Layered(svc, layers((0.0, ExtraTissue.BLOOD_SVC))),
        Layered(ivc, layers((0.0, ExtraTissue.BLOOD_IVC))),
        Layered(atria.ra, layers((2.0, Tissue.MYO_OTHER, _VENOUS), (0.0, Tissue.BLOOD_VEN))),
        LayeredGroup((right.rv, right.rvot), layers((3.5, Tissue.MYO_OTHER), (0.0, Tissue.BLOOD_VEN))),
        LayeredGroup(right.pa, layers((2.0, Tissue.MUSCLE, (Tissue.BLOOD_VEN,)), (0.0, Tissue.BLOOD_VEN))),
        LayeredGroup(atria.veins, layers((1.5, Tissue.MUSCLE), (0.0, Tissue.BLOOD_ART))),
        Layered(atria.la, layers((2.0, Tissue.MYO_OTHER, (Tissue.BLOOD_ART,)), (0.0, Tissue.BLOOD_LA)), cut=lv.atrial_side),
        Layered(
            lv.cavity,
            layers((lv.myo, Tissue.MYO_LV), (0.0, ExtraTissue.TRABECULAE), (-trabecular, Tissue.BLOOD_LV)),
            cut=lv.ventricle_side,
        ),
        *(Layered(p, layers((0.0, ExtraTissue.PAPILLARY, (Tissue.MYO_LV,))), cut=lv.ventricle_side) for p in papillary),
        Layered(aorta, layers((2.0, Tissue.MUSCLE), (0.0, Tissue.BLOOD_AA)), cut=lv.atrial_side),
    ]
    floor = min((lowest_point(lv.cavity, lv.myo + fat), lowest_point(right.rv, 4.0 + fat)), key=lambda p: p[2])
    return Heart(tuple(painters), floor)


def _displace_course(extra: np.random.Generator, aorta: Tube, mm: float) -> Tube:
    """Move the ascending aorta's centre line above the root by up to `mm` (the root stays on the valve)."""
    pts = [np.asarray(p, dtype=np.float64) for p in aorta.points]
    mid, top = extra.uniform(-mm, mm, size=3), extra.uniform(-mm, mm, size=3)
    pts[2] = pts[2] + mid
    pts[3] = pts[3] + top
    pts[4] = pts[4] + top
    return Tube(tuple(vec(p) for p in pts), aorta.radius)


def _fat_pads(extra: np.random.Generator, params: PhantomParams, pose: HeartPose, lv: _Ventricle) -> list[Ellipsoid]:
    """Pericardial fat pads filling the lung-side space at the apex (cardiophrenic angle) and over the
    right ventricle's free wall; sizes vary from none to large between subjects."""
    e_rv, e3, w = lv_frame()
    outer = lv.radius + lv.myo
    out = []
    for centre, axes in (
        ((1.1 * lv.length) * w - 0.6 * outer * e3 - 0.3 * outer * e_rv, (1.0, 0.6, 0.8)),  # apex, towards the diaphragm
        (0.3 * lv.length * w + 1.9 * outer * e_rv - 0.4 * outer * e3, (0.6, 0.8, 1.2)),  # over the RV free wall
    ):
        size = float(extra.uniform(*params.fat_pad_mm))
        radii = tuple(size * a * float(extra.uniform(0.8, 1.2)) for a in axes)
        out.append(pose.ellipsoid(centre, np.stack([e_rv, e3, w]), radii))
    return out


def _papillary_muscles(extra: np.random.Generator, params: PhantomParams, pose: HeartPose, lv: _Ventricle) -> list[Ellipsoid]:
    """Anterolateral and posteromedial papillary muscles: spindles on the free wall at mid-ventricle,
    pointing towards the base, half inside the cavity."""
    e_rv, e3, w = lv_frame()
    out = []
    for side in (1.0, -1.0):
        angle = np.deg2rad(extra.uniform(30.0, 60.0)) * side
        radial = -np.cos(angle) * e_rv + np.sin(angle) * e3  # towards the free (lateral) wall
        radius = float(extra.uniform(*params.papillary_radius_mm))
        height = extra.uniform(0.45, 0.7) * lv.length  # along the long axis from the base plane
        # cavity wall at that height (the cavity is centred 0.3 x length below the base)
        wall = lv.radius * float(np.sqrt(max(1.0 - ((height - 0.3 * lv.length) / lv.length) ** 2, 0.05)))
        centre = height * w + radial * max(wall - 0.8 * radius, 0.0)
        axes = np.stack([radial, np.cross(w, radial), w])
        out.append(pose.ellipsoid(centre, axes, (radius, radius, extra.uniform(2.0, 3.0) * radius)))
    return out
