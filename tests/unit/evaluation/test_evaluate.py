"""evaluate.score_case on known predictions: per-class Dice and ASSD in mm on an anisotropic scan
grid (hand-computed, and wrong if the spacing order were not reversed to the array's z, y, x), and
the SIFA-compatible (medpy 0.4) values on the cached grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from xmodseg.errors import InputDataError
from xmodseg.evaluation import metrics
from xmodseg.evaluation.evaluate import PROTOCOL, score_case
from xmodseg.labels import IGNORE_INDEX, LabelMapping

NAMES = ["background", "MYO", "LVC", "AA"]
LABELS = LabelMapping.from_config(NAMES, {0: 0, 205: 1, 500: 2, 820: 3})
SPACING_XYZ = (0.8, 1.5, 3.0)  # SimpleITK order; the array is (z, y, x), so x (0.8) is array axis 2

# Boxes (a, b, c) = voxels along (z, y, x); raw value, start (z, y, x).
BOXES = {"MYO": ((3, 4, 5), 205, (1, 1, 1)), "LVC": ((4, 3, 6), 500, (4, 6, 4))}


def _volume() -> np.ndarray:
    vol = np.zeros((9, 10, 12), dtype=np.uint16)
    for (a, b, c), raw, (z, y, x) in BOXES.values():
        vol[z : z + a, y : y + b, x : x + c] = raw
    return vol


def _image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING_XYZ)
    img.SetOrigin((-12.0, 30.5, 7.0))
    return img


def _shifted_box_values(a: int, b: int, c: int, step: float) -> tuple[float, float]:
    """Dice and ASSD of an a x b x c box against itself shifted by one voxel along its c axis,
    when `step` (the spacing along that axis) is the smallest spacing.

    Each surface has N = abc - (a-2)(b-2)(c-2) voxels. Per direction, the a*b voxels of the face
    that left the other box are `step` from its facing face; the (a-2)(b-2) voxels of the
    opposite face that are now inside the other box are min(step, other spacings) = `step` from
    its surface; all others lie on the other surface (0). Both directions are alike, so the pooled
    and the directed-mean ASSD agree. Dice: 2 a b (c-1) / (2 a b c) = (c-1)/c.
    """
    n = a * b * c - (a - 2) * (b - 2) * (c - 2)
    return (c - 1) / c, step * (a * b + (a - 2) * (b - 2)) / n


def test_score_case_dice_and_mm_assd_on_an_anisotropic_grid():
    gt = _volume()
    pred = np.roll(gt, 1, axis=2)  # one voxel along x (0.8 mm); nothing wraps around
    assert not pred[..., 0].any()
    gt_img, pred_img = _image(gt), _image(LABELS.to_indices(pred))
    # The cached grid stores coronal slices [y, z, x]; voxel units there.
    cached_gt = np.moveaxis(LABELS.to_indices(gt), 1, 0)
    cached_pred = np.moveaxis(LABELS.to_indices(pred), 1, 0)
    scores = score_case(cached_pred, cached_gt, pred_img, gt_img, LABELS, NAMES, "gt.nii.gz")

    assert set(scores) == {"dice", "assd_mm", "sifa_dice", "sifa_assd_vox"}
    for cls, ((a, b, c), _, _) in BOXES.items():
        dice_exp, assd_mm_exp = _shifted_box_values(a, b, c, SPACING_XYZ[0])
        _, assd_vox_exp = _shifted_box_values(a, b, c, 1.0)
        assert scores["dice"][cls] == pytest.approx(dice_exp, rel=1e-12)
        assert scores["assd_mm"][cls] == pytest.approx(assd_mm_exp, rel=1e-12)
        assert scores["sifa_dice"][cls] == pytest.approx(dice_exp, rel=1e-12)
        assert scores["sifa_assd_vox"][cls] == pytest.approx(assd_vox_exp, rel=1e-12)
    # MYO: 3x4x5 box, N = 54, 14 voxels per direction at 0.8 mm -> 0.8 * 14 / 54.
    assert scores["assd_mm"]["MYO"] == pytest.approx(0.8 * 14 / 54, rel=1e-12)
    assert scores["assd_mm"]["LVC"] == pytest.approx(0.8 * 14 / 64, rel=1e-12)
    # The spacing in SimpleITK's (x, y, z) order on the (z, y, x) array gives another number:
    # 3.0 mm across the shifted faces. The test above would catch that mistake.
    myo = LABELS.to_indices(gt) == 1
    wrong = metrics.assd(np.roll(myo, 1, axis=2), myo, SPACING_XYZ)
    assert wrong != pytest.approx(scores["assd_mm"]["MYO"], rel=1e-3)
    # AA is in neither volume: our rule gives Dice 1 / ASSD 0, medpy 0.4 gives Dice 0 / undefined.
    assert scores["dice"]["AA"] == 1.0 and scores["assd_mm"]["AA"] == 0.0
    assert scores["sifa_dice"]["AA"] == 0.0 and math.isnan(scores["sifa_assd_vox"]["AA"])


def test_score_case_sifa_values_are_medpy_0_4_not_pooled():
    """On the cached grid: MYO is a 3x3x3 cube predicted as its centre voxel, LVC a 1x1x3 line
    predicted as one voxel beside its middle (surfaces of different sizes, where the definitions
    differ); the scan-grid inputs are a perfect prediction and do not interfere."""
    cached_gt = np.zeros((7, 7, 7), dtype=np.uint8)
    cached_pred = np.zeros_like(cached_gt)
    cached_gt[2:5, 2:5, 2:5] = 1
    cached_pred[3, 3, 3] = 1
    cached_gt[0, 5, 1:4] = 2
    cached_pred[0, 4, 2] = 2
    cached_gt[6, 6, 6] = IGNORE_INDEX  # no class in the cached label: in none of SIFA's classes
    gt_img, pred_img = _image(_volume()), _image(LABELS.to_indices(_volume()))
    scores = score_case(cached_pred, cached_gt, pred_img, gt_img, LABELS, NAMES, "gt.nii.gz")

    cube = 6 + 12 * math.sqrt(2) + 8 * math.sqrt(3)  # gt->pred distances of the 26 cube voxels
    assert scores["sifa_assd_vox"]["MYO"] == pytest.approx((1 + cube / 26) / 2, rel=1e-12)
    assert scores["sifa_assd_vox"]["MYO"] != pytest.approx((1 + cube) / 27, rel=1e-3)  # pooled
    assert scores["sifa_dice"]["MYO"] == pytest.approx(2 / 28, rel=1e-12)
    assert scores["sifa_assd_vox"]["LVC"] == pytest.approx((2 + math.sqrt(2)) / 3, rel=1e-12)
    assert scores["sifa_assd_vox"]["LVC"] != pytest.approx((1 + math.sqrt(2)) / 2, rel=1e-3)
    assert scores["sifa_dice"]["LVC"] == 0.0
    assert scores["dice"] == {"MYO": 1.0, "LVC": 1.0, "AA": 1.0}
    assert scores["assd_mm"] == {"MYO": 0.0, "LVC": 0.0, "AA": 0.0}


def test_score_case_refuses_a_prediction_on_another_grid():
    gt_img = _image(_volume())
    pred_img = _image(LABELS.to_indices(_volume()))
    pred_img.SetSpacing((0.8, 1.5, 2.5))
    cached = np.zeros((2, 2, 2), dtype=np.uint8)
    with pytest.raises(InputDataError, match="gt.nii.gz"):
        score_case(cached, cached, pred_img, gt_img, LABELS, NAMES, "gt.nii.gz")


def test_protocol_names_medpy_0_4_and_the_release_grid():
    assert PROTOCOL["name"] == "xmodseg-eval-v2"
    text = PROTOCOL["sifa_compatible"]
    assert "medpy 0.4" in text and "release grid" in text and "not on our own preprocessing grid" in text
