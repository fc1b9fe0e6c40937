"""Tests for xmodseg.evaluation.metrics: hand-computed values, empty-mask rule, spacing, reference libraries,
and the SIFA-compatible (medpy 0.4) definitions next to ours."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from xmodseg.evaluation.metrics import (
    assd,
    dice,
    per_class_metrics,
    sifa_assd,
    sifa_dice,
    sifa_per_class_metrics,
    summarise,
    surface_distances,
)
from xmodseg.labels import IGNORE_INDEX

ISO3 = (1.0, 1.0, 1.0)


def _box(shape, *slices) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slices)] = True
    return m


# --- hand-computed cases -------------------------------------------------------------------


def test_identical_masks():
    m = _box((8, 8, 8), slice(2, 6), slice(1, 5), slice(3, 7))
    assert dice(m, m) == 1.0
    assert assd(m, m, ISO3) == 0.0


def test_single_voxels_at_known_distance():
    """Each voxel is its own surface, so every distance is the voxel-centre distance."""
    a = np.zeros((10, 10, 10), dtype=bool)
    b = np.zeros_like(a)
    a[2, 2, 2] = True
    b[5, 6, 2] = True  # 3-4-5 triangle
    assert dice(a, b) == 0.0
    assert assd(a, b, ISO3) == pytest.approx(5.0)
    assert assd(a, b, (2.0, 1.0, 1.0)) == pytest.approx(math.hypot(6.0, 4.0))


def test_2d_lines_of_different_length():
    """pred: 3 px on row 2; gt: 5 px on row 3. All pixels are surface (1 px thick).

    pred->gt: 1, 1, 1. gt->pred: sqrt2, 1, 1, 1, sqrt2 (the two end pixels go diagonally).
    Pooled mean = (6 + 2*sqrt2) / 8; a mean of the two directed means would differ.
    """
    pred = np.zeros((6, 7), dtype=bool)
    gt = np.zeros_like(pred)
    pred[2, 2:5] = True
    gt[3, 1:6] = True
    d_pg, d_gp = surface_distances(pred, gt, (1.0, 1.0))
    np.testing.assert_allclose(np.sort(d_pg), [1, 1, 1])
    np.testing.assert_allclose(np.sort(d_gp), [1, 1, 1, math.sqrt(2), math.sqrt(2)])
    expected = (6 + 2 * math.sqrt(2)) / 8
    assert assd(pred, gt, (1.0, 1.0)) == pytest.approx(expected, rel=1e-12)
    assert expected != pytest.approx((1 + (3 + 2 * math.sqrt(2)) / 5) / 2)


def test_3d_cubes_shifted_by_one_voxel():
    """Two 3x3x3 cubes shifted by one along axis 0; each has 26 surface voxels (centre is interior).

    Per direction: the far face (9 voxels) is at distance 1, the shifted cube's interior voxel that
    lies on this cube's face is at distance 1, the other 16 coincide with the other surface (0).
    ASSD = (10 + 10) / 52.
    """
    pred = _box((7, 7, 7), slice(1, 4), slice(1, 4), slice(1, 4))
    gt = _box((7, 7, 7), slice(2, 5), slice(1, 4), slice(1, 4))
    d_pg, d_gp = surface_distances(pred, gt, ISO3)
    assert d_pg.size == d_gp.size == 26
    assert np.count_nonzero(d_pg == 1.0) == 10 and np.count_nonzero(d_pg == 0.0) == 16
    assert assd(pred, gt, ISO3) == pytest.approx(20 / 52, rel=1e-12)


def test_dice_half_overlapping_boxes():
    a = _box((8, 4, 4), slice(0, 4))
    b = _box((8, 4, 4), slice(2, 6))
    assert dice(a, b) == pytest.approx(0.5)  # 2*32 / (64 + 64)
    c = _box((8, 4, 4), slice(0, 2))
    assert dice(a, c) == pytest.approx(2 * 32 / (64 + 32))


def test_dice_treats_nonzero_as_foreground():
    a = np.array([[0, 3], [0, 0]])
    b = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    assert dice(a, b) == pytest.approx(2 / 3)


# --- empty-mask rule -------------------------------------------------------------------------


def test_both_empty():
    e = np.zeros((4, 5, 6), dtype=bool)
    assert dice(e, e) == 1.0
    assert assd(e, e, ISO3) == 0.0


@pytest.mark.parametrize("pred_empty", [True, False])
def test_one_empty(pred_empty):
    e = np.zeros((4, 5, 6), dtype=bool)
    m = _box(e.shape, slice(1, 3), slice(1, 3), slice(1, 3))
    pred, gt = (e, m) if pred_empty else (m, e)
    assert dice(pred, gt) == 0.0
    assert math.isnan(assd(pred, gt, ISO3))


def test_per_class_metrics_values_and_empty_rules():
    shape = (10, 10, 10)
    gt = np.zeros(shape, dtype=np.uint8)
    pred = np.zeros(shape, dtype=np.uint8)
    gt[1:4, 1:4, 1:4] = 1
    pred[1:4, 1:4, 1:4] = 1  # class 1: identical
    gt[6:8, 6:8, 6:8] = 2  # class 2: missed by pred
    pred[6:8, 1:3, 1:3] = 3  # class 3: false positive only
    # class 4 ("absent"): in neither volume
    names = ["background", "a", "b", "c", "absent"]
    res = per_class_metrics(pred, gt, names, ISO3)
    assert list(res) == names[1:]
    assert res["a"] == {"dice": 1.0, "assd": 0.0}
    assert res["b"]["dice"] == 0.0 and math.isnan(res["b"]["assd"])
    assert res["c"]["dice"] == 0.0 and math.isnan(res["c"]["assd"])
    assert res["absent"] == {"dice": 1.0, "assd": 0.0}


def test_per_class_metrics_matches_binary_functions():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 3, size=(12, 12, 6))
    pred = np.where(rng.random(gt.shape) < 0.8, gt, rng.integers(0, 3, size=gt.shape))
    sp = (0.7, 0.9, 2.5)
    res = per_class_metrics(pred, gt, ["bg", "x", "y"], sp)
    for idx, name in ((1, "x"), (2, "y")):
        assert res[name]["dice"] == dice(pred == idx, gt == idx)
        assert res[name]["assd"] == assd(pred == idx, gt == idx, sp)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5, 6\).*\(4, 5, 7\)"):
        per_class_metrics(np.zeros((4, 5, 6), int), np.zeros((4, 5, 7), int), ["bg", "a"], ISO3)
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        dice(np.zeros(3), np.zeros(4))


def test_labels_outside_class_names_raise():
    """Passing only foreground names would shift every class; an out-of-range label catches it."""
    gt = np.array([[0, 1], [2, 2]])
    with pytest.raises(ValueError, match="outside"):
        per_class_metrics(gt, gt, ["a", "b"], (1.0, 1.0))


def test_bad_spacing_raises():
    m = _box((4, 4, 4), slice(1, 3))
    with pytest.raises(ValueError):
        assd(m, m, (1.0, 1.0))
    with pytest.raises(ValueError):
        assd(m, m, (1.0, 0.0, 1.0))


# --- spacing and border ----------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_anisotropic_shift_scales_distances(axis):
    """A slab shifted by one voxel along `axis`: every nearest neighbour lies straight across."""
    shape = (6, 7, 8)
    sl = [slice(None)] * 3
    sl[axis] = slice(2, 3)
    pred = _box(shape, *sl)
    gt = np.roll(pred, 1, axis=axis)
    iso = assd(pred, gt, ISO3)
    sp = [0.5, 0.7, 0.9]
    sp[axis] = 3.0
    aniso = assd(pred, gt, sp)
    assert iso == pytest.approx(1.0)
    assert aniso == pytest.approx(3.0 * iso)
    d_pg, d_gp = surface_distances(pred, gt, sp)
    np.testing.assert_allclose(np.concatenate([d_pg, d_gp]), 3.0)


def test_border_voxels_are_surface():
    """gt fills the whole volume: without border surface it would have no surface at all."""
    shape = (5, 6, 7)
    gt = np.ones(shape, dtype=bool)
    pred = _box(shape, slice(0, 4))
    sp = (1.0, 0.8, 2.0)
    val = assd(pred, gt, sp)
    padded = assd(np.pad(pred, 2), np.pad(gt, 2), sp)
    assert math.isfinite(val)
    assert val == pytest.approx(padded, rel=1e-12)
    assert dice(pred, gt) == dice(np.pad(pred, 2), np.pad(gt, 2))


def test_border_random_blobs_equal_padded():
    pred, gt = _blobs(seed=5, shape=(20, 20, 12))
    sp = (0.8, 0.8, 2.0)
    assert pred[0].any() or pred[-1].any() or pred[:, 0].any()  # really touches the border
    assert assd(pred, gt, sp) == pytest.approx(assd(np.pad(pred, 1), np.pad(gt, 1), sp), rel=1e-12)


# --- reference implementations -------------------------------------------------------------


def _blobs(seed: int, shape=(40, 40, 30)) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping smooth blobs: a shared noise field plus independent noise, thresholded."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
    gt = base > 0.02
    pert = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    pred = (base + 0.5 * pert) > 0.03
    assert pred.any() and gt.any() and (pred != gt).any()
    return pred, gt


SPACINGS = [(0.8, 0.8, 2.0), (1.0, 1.0, 1.0), (2.5, 0.6, 1.1)]


@pytest.mark.parametrize("seed,spacing", [(0, SPACINGS[0]), (1, SPACINGS[1]), (2, SPACINGS[2])])
def test_matches_medpy(seed, spacing):
    binary = pytest.importorskip("medpy.metric.binary", reason="medpy>=0.5 not installed")
    pred, gt = _blobs(seed)
    ref = binary.assd(pred, gt, voxelspacing=spacing, connectivity=1)
    assert assd(pred, gt, spacing) == pytest.approx(ref, rel=1e-6)
    assert dice(pred, gt) == pytest.approx(binary.dc(pred, gt), rel=1e-12)


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI-internal
@pytest.mark.parametrize("seed,spacing", [(0, SPACINGS[0]), (1, SPACINGS[1]), (2, SPACINGS[2])])
def test_matches_monai(seed, spacing):
    monai_metrics = pytest.importorskip("monai.metrics", reason="monai not installed")
    pred, gt = _blobs(seed)
    ref = monai_metrics.compute_average_surface_distance(
        pred[None, None], gt[None, None], include_background=True, symmetric=True, spacing=list(spacing)
    )
    assert assd(pred, gt, spacing) == pytest.approx(float(ref[0, 0]), rel=1e-6)


# --- SIFA-compatible definitions (medpy 0.4) next to ours ---------------------------------------
#
# medpy 0.4 (what SIFA's evaluate.py ran): assd = (mean directed pred->gt + mean directed gt->pred)/2,
# dc = 0 when both masks are empty, assd raises on an empty mask (NaN here). Ours (medpy >= 0.5,
# MONAI): assd = mean of all distances of both directions pooled, both empty -> Dice 1, ASSD 0.
# The cases below have surfaces with different voxel counts, where the two ASSDs differ.


def test_line_of_three_vs_one_voxel_beside_it():
    """gt: a 1x1x3 line (every voxel is surface); pred: one voxel next to the line's middle.

    pred->gt: 1. gt->pred: sqrt2, 1, sqrt2.
    medpy 0.4: (1 + (1 + 2*sqrt2)/3) / 2 = (2 + sqrt2)/3 ~ 1.1381.
    pooled:    (1 + 1 + 2*sqrt2) / 4     = (1 + sqrt2)/2 ~ 1.2071.
    """
    gt = np.zeros((5, 5, 5), dtype=bool)
    pred = np.zeros_like(gt)
    gt[2, 2, 1:4] = True
    pred[2, 1, 2] = True
    sifa_expected = (2 + math.sqrt(2)) / 3
    pooled_expected = (1 + math.sqrt(2)) / 2
    assert sifa_assd(pred, gt) == pytest.approx(sifa_expected, rel=1e-12)
    assert sifa_assd(gt, pred) == pytest.approx(sifa_expected, rel=1e-12)  # symmetric
    assert assd(pred, gt, ISO3) == pytest.approx(pooled_expected, rel=1e-12)
    assert abs(sifa_expected - pooled_expected) > 0.06
    assert sifa_dice(pred, gt) == dice(pred, gt) == 0.0
    # Spacing 2 along the offset axis (y): pred->gt 2; gt->pred sqrt5, 2, sqrt5.
    sp = (1.0, 2.0, 1.0)
    assert sifa_assd(pred, gt, sp) == pytest.approx((2 + (2 + 2 * math.sqrt(5)) / 3) / 2, rel=1e-12)
    assert assd(pred, gt, sp) == pytest.approx((2 + 2 + 2 * math.sqrt(5)) / 4, rel=1e-12)


def test_line_of_three_vs_its_middle_voxel():
    """pred (the middle voxel) lies on gt's surface: pred->gt 0; gt->pred 1, 0, 1.

    medpy 0.4: (0 + 2/3) / 2 = 1/3; pooled: (0 + 1 + 0 + 1) / 4 = 1/2. Dice 2*1/(1+3) = 1/2.
    """
    gt = np.zeros((1, 3, 5), dtype=bool)  # the line touches the volume border: border is surface
    gt[0, 1, 1:4] = True
    pred = np.zeros_like(gt)
    pred[0, 1, 2] = True
    assert sifa_assd(pred, gt) == pytest.approx(1 / 3, rel=1e-12)
    assert assd(pred, gt, ISO3) == pytest.approx(1 / 2, rel=1e-12)
    assert sifa_dice(pred, gt) == dice(pred, gt) == pytest.approx(0.5)


def test_cube_vs_its_centre_voxel():
    """gt: a 3x3x3 cube (26 surface voxels, centre interior); pred: the centre voxel only.

    pred->gt: 1 (a face centre). gt->pred: 6 face centres at 1, 12 edges at sqrt2, 8 corners at
    sqrt3. medpy 0.4: (1 + (6 + 12 sqrt2 + 8 sqrt3)/26) / 2 ~ 1.2062; pooled: (1 + 6 + 12 sqrt2 +
    8 sqrt3) / 27 ~ 1.4073. Dice 2*1/(1+27) = 1/14.
    """
    gt = _box((7, 7, 7), slice(2, 5), slice(2, 5), slice(2, 5))
    pred = np.zeros_like(gt)
    pred[3, 3, 3] = True
    gt_to_pred = 6 + 12 * math.sqrt(2) + 8 * math.sqrt(3)
    assert sifa_assd(pred, gt) == pytest.approx((1 + gt_to_pred / 26) / 2, rel=1e-12)
    assert assd(pred, gt, ISO3) == pytest.approx((1 + gt_to_pred) / 27, rel=1e-12)
    assert sifa_dice(pred, gt) == dice(pred, gt) == pytest.approx(1 / 14)


def test_boxes_of_different_size():
    """gt: 3x3x3 cube at [1,4)^3; pred: a 3x3x1 plate, the cube's z=1 face, one voxel out: z=0.

    pred->gt: all 9 plate voxels at 1 (straight up to the cube's bottom face).
    gt->pred: bottom face (9) at 1; middle layer z=2: 8 ring voxels at 2 (centre is interior);
    top face z=3 (9) at 3. Sum = 9 + 16 + 27 = 52 over 26 voxels = 2.
    medpy 0.4: (1 + 2) / 2 = 1.5; pooled: (9 + 52) / 35 = 61/35 ~ 1.743. Dice 0 (no overlap).
    """
    gt = _box((6, 6, 6), slice(1, 4), slice(1, 4), slice(1, 4))
    pred = _box((6, 6, 6), slice(0, 1), slice(1, 4), slice(1, 4))
    d_pg, d_gp = surface_distances(pred, gt, ISO3)
    np.testing.assert_allclose(np.sort(d_pg), [1.0] * 9)
    np.testing.assert_allclose(np.sort(d_gp), [1.0] * 9 + [2.0] * 8 + [3.0] * 9)
    assert sifa_assd(pred, gt) == pytest.approx(1.5, rel=1e-12)
    assert assd(pred, gt, ISO3) == pytest.approx(61 / 35, rel=1e-12)
    assert sifa_dice(pred, gt) == dice(pred, gt) == 0.0


def test_same_voxel_counts_give_the_same_assd():
    """With equal surface sizes the two definitions agree (the 3x3x3 cubes shifted by one)."""
    pred = _box((7, 7, 7), slice(1, 4), slice(1, 4), slice(1, 4))
    gt = _box((7, 7, 7), slice(2, 5), slice(1, 4), slice(1, 4))
    assert sifa_assd(pred, gt) == pytest.approx(assd(pred, gt, ISO3), rel=1e-12) == pytest.approx(20 / 52)


def test_sifa_empty_masks():
    """Both empty: medpy 0.4 dc gives 0 (ours 1); its assd raised (NaN here; ours 0)."""
    e = np.zeros((4, 5, 6), dtype=bool)
    assert sifa_dice(e, e) == 0.0 and dice(e, e) == 1.0
    assert math.isnan(sifa_assd(e, e)) and assd(e, e, ISO3) == 0.0
    m = _box(e.shape, slice(1, 3), slice(1, 3), slice(1, 3))
    for pred, gt in ((e, m), (m, e)):
        assert sifa_dice(pred, gt) == 0.0 == dice(pred, gt)
        assert math.isnan(sifa_assd(pred, gt)) and math.isnan(assd(pred, gt, ISO3))


def test_sifa_assd_checks_spacing_and_shape():
    m = _box((4, 4, 4), slice(1, 3))
    with pytest.raises(ValueError, match="3 entries for a 2-D"):
        sifa_assd(m[0], m[0], ISO3)
    with pytest.raises(ValueError, match="positive"):
        sifa_assd(m, m, (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(4, 4, 4\).*\(4, 4, 3\)"):
        sifa_dice(m, m[..., :3])


def test_sifa_per_class_metrics():
    """Per class as SIFA's loop over c on (pred == c, label == c); IGNORE_INDEX in gt is no class."""
    shape = (10, 10, 10)
    gt = np.zeros(shape, dtype=np.uint8)
    pred = np.zeros(shape, dtype=np.uint8)
    gt[2, 2, 1:4] = 1
    pred[2, 1, 2] = 1  # class 1: the line-vs-voxel case above
    gt[6:8, 6:8, 6:8] = 2  # class 2: missed by pred
    gt[0, 9, 9] = IGNORE_INDEX  # "no class" (SIFA release value 5): in no class
    # class 3 ("absent"): in neither volume
    names = ["background", "a", "b", "absent"]
    res = sifa_per_class_metrics(pred, gt, names)
    assert list(res) == names[1:]
    assert res["a"]["dice"] == 0.0 and res["a"]["assd"] == pytest.approx((2 + math.sqrt(2)) / 3, rel=1e-12)
    assert res["b"]["dice"] == 0.0 and math.isnan(res["b"]["assd"])
    assert res["absent"]["dice"] == 0.0 and math.isnan(res["absent"]["assd"])
    with pytest.raises(ValueError, match=r"pred labels \[255\]"):  # a prediction never has it
        sifa_per_class_metrics(gt, gt, names)
    gt[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"gt labels \[7\] outside 0..3"):
        sifa_per_class_metrics(pred, gt, names)


@pytest.mark.parametrize("seed,spacing", [(0, None), (1, SPACINGS[0]), (2, SPACINGS[2])])
def test_sifa_matches_medpy_0_4_definitions(seed, spacing):
    """medpy 0.4 assd = mean(asd(a, b), asd(b, a)); medpy's directed `asd` is unchanged since 0.4
    (same surface extraction and distance transform), so the installed medpy gives the reference."""
    binary = pytest.importorskip("medpy.metric.binary", reason="medpy not installed")
    pred, gt = _blobs(seed)
    ref = float(np.mean((binary.asd(pred, gt, voxelspacing=spacing), binary.asd(gt, pred, voxelspacing=spacing))))
    assert sifa_assd(pred, gt, spacing) == pytest.approx(ref, rel=1e-9)
    assert sifa_dice(pred, gt) == pytest.approx(binary.dc(pred, gt), rel=1e-12)
    pooled = assd(pred, gt, spacing or ISO3)
    assert sifa_assd(pred, gt, spacing) != pytest.approx(pooled, rel=1e-6)  # the definitions differ here


# --- summarise -----------------------------------------------------------------------------


def test_summarise_defined_values():
    s = summarise([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["n_undefined"] == 0
    assert s["mean"] == pytest.approx(2.5) and s["mean_defined"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(math.sqrt(1.25))  # population std, ddof=0
    assert summarise([1.0, 3.0])["std"] == pytest.approx(1.0)  # ddof=1 would give sqrt(2)


def test_summarise_with_undefined():
    s = summarise([1.0, float("nan"), 3.0])
    assert s["n"] == 3 and s["n_undefined"] == 1
    assert math.isnan(s["mean"]) and math.isnan(s["std"])
    assert s["mean_defined"] == pytest.approx(2.0)
    assert s["std_defined"] == pytest.approx(1.0)


def test_summarise_all_undefined_and_empty():
    s = summarise([float("nan")] * 2)
    assert s["n"] == 2 and s["n_undefined"] == 2 and math.isnan(s["mean_defined"])
    e = summarise([])
    assert e["n"] == 0 and e["n_undefined"] == 0 and math.isnan(e["mean"])


def test_pooled_metrics_concatenate_the_volumes_as_gluas_script():
    """Pooling weighs voxels, not volumes: a small volume's miss barely moves the pooled Dice."""
    from xmodseg.evaluation.metrics import pooled_per_class_metrics, sifa_per_class_metrics

    big_gt = np.zeros((6, 8, 8), dtype=np.int64)
    big_gt[1:5, 2:6, 2:6] = 1
    small_gt = np.zeros((2, 8, 8), dtype=np.int64)
    small_gt[0, 3:5, 3:5] = 1
    names = ["background", "A"]
    pooled = pooled_per_class_metrics([big_gt, np.zeros_like(small_gt)], [big_gt, small_gt], names)
    per_volume = [sifa_per_class_metrics(p, g, names)["A"]["dice"] for p, g in ((big_gt, big_gt), (np.zeros_like(small_gt), small_gt))]
    assert per_volume == [1.0, 0.0]  # mean over volumes: 0.5
    assert pooled["A"]["dice"] == pytest.approx(2 * 64 / (64 + 68))  # 64 of 68 labelled voxels found
    whole = sifa_per_class_metrics(np.concatenate([big_gt, np.zeros_like(small_gt)]), np.concatenate([big_gt, small_gt]), names)
    assert pooled == whole
    with pytest.raises(ValueError, match="same slice shape"):
        pooled_per_class_metrics([big_gt, np.zeros((2, 4, 4), dtype=np.int64)], [big_gt, np.zeros((2, 4, 4), dtype=np.int64)], names)
    with pytest.raises(ValueError, match="matching, non-empty"):
        pooled_per_class_metrics([], [], names)


def test_pooled_iou_counts_every_volume_together_as_cadis_miou():
    """One confusion matrix over all frames: class 1 has 2 + 0 shared pixels of unions 3 + 1 (0.5),
    not the per-frame mean (2/3 + 0)/2; class 2 absent everywhere scores 1; the ignore label is left out."""
    from xmodseg.evaluation.metrics import pooled_iou

    names = ["background", "a", "b"]
    p1, g1 = np.array([[[1, 1, 1, 0]]]), np.array([[[1, 1, 0, 0]]])
    p2, g2 = np.array([[[0, 1, 0, 0]]]), np.array([[[0, 0, 0, IGNORE_INDEX]]])
    assert pooled_iou([p1, p2], [g1, g2], names) == {"a": 0.5, "b": 1.0}
    p2[0, 0, 3] = 1  # a prediction on an ignored pixel counts nowhere
    assert pooled_iou([p1, p2], [g1, g2], names) == {"a": 0.5, "b": 1.0}
    p2[0, 0, 0] = 2  # predicted where the class is absent: IoU 0
    assert pooled_iou([p1, p2], [g1, g2], names)["b"] == 0.0
    with pytest.raises(ValueError, match="outside 0..2"):
        pooled_iou([p1], [np.array([[[3, 0, 0, 0]]])], names)
