"""Tissue classes of the phantom and their raw MM-WHS label values.

Anatomy is painted as tissue classes; labels and both modalities' intensities are lookups on them,
so the label map and the images can never disagree.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    AIR = 0
    LUNG = 1
    FAT = 2
    MUSCLE = 3  # skeletal muscle, vessel walls, diaphragm, oesophagus
    MYO_LV = 4  # labelled: LV myocardium (205)
    MYO_OTHER = 5  # unlabelled cardiac muscle: RV free wall, atrial walls
    BLOOD_LV = 6  # labelled: LV blood cavity (500)
    BLOOD_LA = 7  # labelled: LA blood cavity (420)
    BLOOD_AA = 8  # labelled: ascending aorta (820)
    BLOOD_ART = 9  # unlabelled arterial blood: descending aorta, pulmonary veins
    BLOOD_VEN = 10  # unlabelled right-heart blood: RA, RV, pulmonary artery, venae cavae
    BONE_CORTICAL = 11
    BONE_MARROW = 12
    LIVER = 13
    CSF = 14
    DISC = 15  # intervertebral discs, costal cartilage


NUM_TISSUES = len(Tissue)

# Raw label values of the four SIFA/MM-WHS structures (everything else is background 0).
RAW_LABELS: dict[Tissue, int] = {
    Tissue.MYO_LV: 205,
    Tissue.BLOOD_LA: 420,
    Tissue.BLOOD_LV: 500,
    Tissue.BLOOD_AA: 820,
}


def label_lut() -> np.ndarray:
    """uint16 lookup table tissue index -> raw MM-WHS label value."""
    lut = np.zeros(NUM_TISSUES, dtype=np.uint16)
    for tissue, raw in RAW_LABELS.items():
        lut[int(tissue)] = raw
    return lut


def tissue_to_label(tissue: np.ndarray) -> np.ndarray:
    return label_lut()[tissue]


class ExtraTissue(IntEnum):
    """Tissue classes only phantom version 2 paints, numbered after `Tissue` so one uint8 map holds both
    (version 1's lookups stay exactly as they were)."""

    TRABECULAE = 16  # labelled LV cavity (500): trabeculated inner layer, blood mixed with muscle strands
    PAPILLARY = 17  # labelled LV cavity (500): papillary muscles, MM-WHS counts them to the cavity
    BLOOD_SVC = 18  # unlabelled: superior vena cava, undiluted contrast in CT (arm injection)
    BLOOD_IVC = 19  # unlabelled: inferior vena cava, unenhanced blood in arterial-phase CT


NUM_TISSUES_V2 = NUM_TISSUES + len(ExtraTissue)
ALL_TISSUES: tuple[int, ...] = tuple(int(t) for t in Tissue) + tuple(int(t) for t in ExtraTissue)

RAW_LABELS_V2: dict[int, int] = {
    **{int(t): raw for t, raw in RAW_LABELS.items()},
    int(ExtraTissue.TRABECULAE): 500,
    int(ExtraTissue.PAPILLARY): 500,
}


def tissue_to_label_v2(tissue: np.ndarray) -> np.ndarray:
    """Raw MM-WHS label values of a version-2 tissue map (trabeculae and papillary muscles are LV cavity)."""
    lut = np.zeros(NUM_TISSUES_V2, dtype=np.uint16)
    for t, raw in RAW_LABELS_V2.items():
        lut[t] = raw
    return lut[tissue]
