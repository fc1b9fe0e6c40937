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
