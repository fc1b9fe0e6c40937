"""Per-volume segmentation metrics: Dice and symmetric average surface distance (ASSD).

Axis and spacing order
----------------------
Masks are numpy arrays in whatever axis order the caller uses; ``spacing[i]`` is the voxel
size along array axis ``i``. ``sitk.GetArrayFromImage`` returns arrays in (z, y, x) order while
``image.GetSpacing()`` is (x, y, z), so such callers must pass ``image.GetSpacing()[::-1]``.
Distances come out in the units of ``spacing`` (mm for physical spacing, voxels for all ones).

ASSD definition
---------------
Surface voxels are ``mask XOR binary_erosion(mask)`` with the face-connected (connectivity 1)
structuring element; voxels on the volume border count as surface. ASSD is the mean of *all*
surface distances of both directions together (pred surface -> nearest gt surface voxel,
concatenated with gt surface -> nearest pred surface voxel). This equals MONAI's
``compute_average_surface_distance(symmetric=True)`` and medpy>=0.5 ``binary.assd``
(connectivity=1). Older medpy (<0.5) averaged the two directed means instead, which differs
when the surfaces have different voxel counts (:func:`sifa_assd`). Directed distances:
:func:`surface_distances`.

Empty masks (our rule, in one place: :func:`_empty_mask_rule`)
-------------------------------------------------------------
* pred and gt both empty: Dice = 1.0, ASSD = 0.0 (nothing to find, nothing found).
* exactly one empty: Dice = 0.0, ASSD = NaN ("undefined", reported as N/A as in the papers).
  :func:`summarise` counts such cases in ``n_undefined`` and makes ``mean`` NaN.

SIFA-compatible definitions (medpy 0.4)
---------------------------------------
The official SIFA ``evaluate.py`` ran medpy 0.4 (``binary.dc`` and ``binary.assd``, no spacing),
whose definitions differ from the ones above; the published tables can only be matched with them
(:func:`sifa_dice`, :func:`sifa_assd`, :func:`sifa_per_class_metrics`):

* Dice is 2|P∩G| / (|P| + |G|) as above, but 0.0 when both masks are empty (medpy 0.4 caught the
  ZeroDivisionError with 0.0; medpy >= 0.5 returns 1.0).
* ASSD is the mean of the two *directed* average surface distances,
  (mean(pred->gt) + mean(gt->pred)) / 2, with the same surfaces (connectivity 1, border voxels
  are surface) and voxel units unless a spacing is given. It weights each direction equally
  instead of each surface voxel, so it differs from the pooled mean when the surfaces have
  different voxel counts.
* If either mask is empty medpy raised RuntimeError (SIFA's script crashed); here ASSD is NaN
  (N/A), also when both are empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from xmodseg.labels import IGNORE_INDEX

__all__ = [
    "assd",
    "dice",
    "per_class_metrics",
    "sifa_assd",
    "sifa_dice",
    "sifa_per_class_metrics",
    "summarise",
    "surface_distances",
]


def _empty_mask_rule(pred_any: bool, gt_any: bool) -> dict[str, float] | None:
    """Metric values when at least one mask is empty, else None (the single place of the rule)."""
    if pred_any and gt_any:
        return None
    if not pred_any and not gt_any:
        return {"dice": 1.0, "assd": 0.0}
    return {"dice": 0.0, "assd": math.nan}


def _as_mask_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero = foreground; shapes must match because a silent broadcast would give wrong numbers."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
    return pred.astype(bool, copy=False), gt.astype(bool, copy=False)


def _check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.size != ndim:
        raise ValueError(f"spacing {tuple(sp)} has {sp.size} entries for a {ndim}-D array")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing {tuple(sp)} must be finite and positive")
    return sp


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice overlap 2|P∩G| / (|P| + |G|) of two binary masks of any ndim (nonzero = foreground)."""
    p, g = _as_mask_pair(pred, gt)
    n_p = int(np.count_nonzero(p))
    n_g = int(np.count_nonzero(g))
    empty = _empty_mask_rule(n_p > 0, n_g > 0)
    if empty is not None:
        return empty["dice"]
    inter = int(np.count_nonzero(p & g))
    return 2.0 * inter / (n_p + n_g)


def _surface_points(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Physical coordinates of surface voxels (mask minus its connectivity-1 erosion)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    surface = mask & ~ndimage.binary_erosion(mask, structure=structure)
    return np.argwhere(surface) * spacing


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances (pred->gt, gt->pred); both masks must be non-empty.

    Only the bounding box of pred|gt is processed, padded by one background voxel so that
    voxels on the volume border are surface (same as eroding with a background border).
    """
    p, g = _as_mask_pair(pred, gt)
    sp = _check_spacing(spacing, p.ndim)
    if not (p.any() and g.any()):
        raise ValueError("surface distances need two non-empty masks; see the empty-mask rule")
    union = p | g
    box = tuple(
        slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(union)
    )
    p = np.pad(p[box], 1)
    g = np.pad(g[box], 1)
    pts_p = _surface_points(p, sp)
    pts_g = _surface_points(g, sp)
    d_pg, _ = cKDTree(pts_g).query(pts_p, k=1)
    d_gp, _ = cKDTree(pts_p).query(pts_g, k=1)
    return np.asarray(d_pg, dtype=np.float64), np.asarray(d_gp, dtype=np.float64)


def assd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """Mean of all surface distances of both directions, in units of `spacing`."""
    p, g = _as_mask_pair(pred, gt)
    _check_spacing(spacing, p.ndim)
    empty = _empty_mask_rule(bool(p.any()), bool(g.any()))
    if empty is not None:
        return empty["assd"]
    d_pg, d_gp = surface_distances(p, g, spacing)
    return float(np.concatenate([d_pg, d_gp]).mean())


def sifa_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """medpy 0.4 ``dc`` as SIFA's evaluate.py used it: our Dice except 0.0 when both are empty."""
    p, g = _as_mask_pair(pred, gt)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    if total == 0:
        return 0.0
    return 2.0 * int(np.count_nonzero(p & g)) / total


def sifa_assd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """medpy 0.4 ``assd``: the average of the two directed mean surface distances.

    Voxel units when `spacing` is None (SIFA passed none). NaN if either mask is empty, where
    medpy 0.4 raised.
    """
    p, g = _as_mask_pair(pred, gt)
    sp = (1.0,) * p.ndim if spacing is None else spacing
    _check_spacing(sp, p.ndim)
    if not (p.any() and g.any()):
        return math.nan
    d_pg, d_gp = surface_distances(p, g, sp)
    return float((d_pg.mean() + d_gp.mean()) / 2.0)


def _check_label_pair(
    pred_labels: np.ndarray, gt_labels: np.ndarray, class_names: Sequence[str], gt_extra: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Same shapes, and labels in 0..K (plus `gt_extra` in gt): a value outside would silently
    count as no class, which is how passing only the foreground names goes unnoticed."""
    pred_labels = np.asarray(pred_labels)
    gt_labels = np.asarray(gt_labels)
    if pred_labels.shape != gt_labels.shape:
        raise ValueError(f"pred shape {pred_labels.shape} != gt shape {gt_labels.shape}")
    n_classes = len(class_names)
    for name, arr, extra in (("pred", pred_labels, ()), ("gt", gt_labels, tuple(gt_extra))):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            bad = sorted({int(v) for v in np.unique(arr)} - set(range(n_classes)) - set(extra))
            if bad:
                raise ValueError(
                    f"{name} labels {bad} outside 0..{n_classes - 1} for class_names {list(class_names)}"
                )
    return pred_labels, gt_labels


def sifa_per_class_metrics(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    class_names: Sequence[str],
    spacing: Sequence[float] | None = None,
) -> dict[str, dict[str, float]]:
    """{name: {"dice", "assd"}} for classes 1..K with :func:`sifa_dice` / :func:`sifa_assd`.

    As SIFA's loop over ``c in 1..K`` on ``label == c``: a ground-truth value of
    ``labels.IGNORE_INDEX`` (no class) is in no class; any other value outside 0..K raises.
    """
    pred_labels, gt_labels = _check_label_pair(pred_labels, gt_labels, class_names, gt_extra=(IGNORE_INDEX,))
    if spacing is not None:
        _check_spacing(spacing, pred_labels.ndim)
    out: dict[str, dict[str, float]] = {}
    for idx in range(1, len(class_names)):
        p = pred_labels == idx
        g = gt_labels == idx
        out[class_names[idx]] = {"dice": sifa_dice(p, g), "assd": sifa_assd(p, g, spacing)}
    return out


def pooled_per_class_metrics(
    pred_volumes: Sequence[np.ndarray],
    gt_volumes: Sequence[np.ndarray],
    class_names: Sequence[str],
) -> dict[str, dict[str, float]]:
    """GLUA's evaluation (its metric.py): all test volumes concatenated along the slice axis into
    one array, then medpy's ``dc`` and ``assd`` once per class, in voxels (no spacing). medpy 0.4
    was the release of the time, so the definitions are :func:`sifa_dice` / :func:`sifa_assd`.
    A pooled Dice weighs large volumes more than a per-volume mean and has no spread over volumes;
    adjacent volumes touch at the seams, as in the original script."""
    if not pred_volumes or len(pred_volumes) != len(gt_volumes):
        raise ValueError(f"pooled metrics need matching, non-empty volume lists (got {len(pred_volumes)} and {len(gt_volumes)})")
    shapes = {v.shape[1:] for v in (*pred_volumes, *gt_volumes)}
    if len(shapes) != 1:
        raise ValueError(f"pooled metrics concatenate slices: every volume needs the same slice shape, got {sorted(shapes)}")
    return sifa_per_class_metrics(np.concatenate(list(pred_volumes)), np.concatenate(list(gt_volumes)), class_names)


def pooled_iou(pred_volumes: Sequence[np.ndarray], gt_volumes: Sequence[np.ndarray], class_names: Sequence[str]) -> dict[str, float]:
    """Intersection over union per foreground class, counted over every voxel of every volume
    together: CaDIS's mIoU, which accumulates one confusion matrix over all test frames
    (RViMLab/MICCAI2021_Cataract_semantic_segmentation utils/metrics.py). Ground-truth pixels of
    `labels.IGNORE_INDEX` are left out, as a confusion matrix without that class does. A class
    absent from prediction and ground truth alike scores 1, as Dice does here."""
    if not pred_volumes or len(pred_volumes) != len(gt_volumes):
        raise ValueError(f"pooled IoU needs matching, non-empty volume lists (got {len(pred_volumes)} and {len(gt_volumes)})")
    n = len(class_names)
    inter, union = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for pred, gt in zip(pred_volumes, gt_volumes, strict=True):
        pred, gt = _check_label_pair(pred, gt, class_names, gt_extra=(IGNORE_INDEX,))
        kept = gt != IGNORE_INDEX
        pred, gt = pred[kept], gt[kept]
        both = np.bincount(gt[pred == gt].ravel(), minlength=n)[:n]
        inter += both
        union += np.bincount(pred.ravel(), minlength=n)[:n] + np.bincount(gt.ravel(), minlength=n)[:n] - both
    return {name: float(inter[i] / union[i]) if union[i] else 1.0 for i, name in enumerate(class_names) if i}


def per_class_metrics(
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    class_names: Sequence[str],
    spacing: Sequence[float],
) -> dict[str, dict[str, float]]:
    """{name: {"dice", "assd"}} for classes 1..K of integer label volumes.

    ``class_names[i]`` names label ``i``; index 0 is background and is skipped (same convention
    as ``LabelMapping.class_names``). A label value outside 0..K raises, which also catches
    callers that pass only the foreground names by mistake.
    """
    pred_labels, gt_labels = _check_label_pair(pred_labels, gt_labels, class_names)
    _check_spacing(spacing, pred_labels.ndim)
    out: dict[str, dict[str, float]] = {}
    for idx in range(1, len(class_names)):
        p = pred_labels == idx
        g = gt_labels == idx
        out[class_names[idx]] = {"dice": dice(p, g), "assd": assd(p, g, spacing)}
    return out


def summarise(values: Sequence[float]) -> dict[str, float | int]:
    """Aggregate per-case values; NaN means undefined (one mask empty).

    ``mean``/``std`` are NaN if any value is undefined (reported as N/A, paper-compatible);
    ``mean_defined``/``std_defined`` use the defined values only. std is the population std
    (ddof=0). With no values at all, every statistic is NaN.
    """
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    undefined = np.isnan(arr)
    defined = arr[~undefined]
    n_undefined = int(undefined.sum())
    mean_defined = float(defined.mean()) if defined.size else math.nan
    std_defined = float(defined.std(ddof=0)) if defined.size else math.nan
    all_defined = n_undefined == 0 and arr.size > 0
    return {
        "mean": mean_defined if all_defined else math.nan,
        "std": std_defined if all_defined else math.nan,
        "n": int(arr.size),
        "n_undefined": n_undefined,
        "mean_defined": mean_defined,
        "std_defined": std_defined,
    }
