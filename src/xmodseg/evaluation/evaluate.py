"""Per-volume evaluation of one trained model on the target test volumes, with provenance.

Two protocols side by side:
- ours (`dice`, `assd_mm`): predictions mapped back to each scan's original grid, compared with
  the original label, ASSD in millimetres with the scan's spacing;
- SIFA-compatible (`sifa_dice`, `sifa_assd_vox`): medpy 0.4's `dc` and `assd` as the official
  SIFA evaluate.py called them (per class and 3D volume, no spacing), on the preprocessed grid.
  They line up with the papers' tables only when that grid is the release grid (the SIFA/PnP-AdaNet
  release cache); on our own preprocessing grid they are a different resolution's numbers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from xmodseg.artifacts.cache import MANIFEST, CacheManifest
from xmodseg.artifacts.metrics import CASE_METRICS, LAST_K, LAST_K_METRICS, MetricsDoc
from xmodseg.artifacts.model_file import Sidecar, Snapshot
from xmodseg.atomic import atomic_path
from xmodseg.environment import provenance_block
from xmodseg.errors import InputDataError
from xmodseg.evaluation import metrics
from xmodseg.evaluation.inference import predict_slices, to_original_grid
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.imageio import check_pair_geometry, read_image, write_image
from xmodseg.labels import LabelMapping
from xmodseg.layout import sidecar_of
from xmodseg.nn.networks import load_model
from xmodseg.preprocess.pipeline import load_manifest
from xmodseg.registry import DatasetSpec
from xmodseg.training.device import choose_device, describe_device

log = logging.getLogger(__name__)

# v2: sifa_* follow medpy 0.4 (directed means averaged, Dice 0 when both masks are empty); v1 used
# our own definitions for them, so v1 and v2 sifa_* values are not comparable.
PROTOCOL = {
    "name": "xmodseg-eval-v2",
    "unit": "3D volume (all slices predicted and stacked)",
    "dice": "binary Dice per foreground class on the original scan grid",
    "assd_mm": "symmetric ASSD: all surface distances of both directions averaged together (= MONAI symmetric ASD = medpy >= 0.5 assd), mm",
    "empty_rule": "both empty: Dice 1, ASSD 0; exactly one empty: Dice 0, ASSD undefined (N/A); a mean over cases is N/A if any case is",
    "sifa_compatible": (
        "sifa_dice / sifa_assd_vox: medpy 0.4 binary.dc and binary.assd as the official SIFA evaluate.py calls them, "
        "per class c and volume on (pred == c, label == c), on the preprocessed grid, no spacing (ASSD in voxels). "
        "dc = 2|P∩G|/(|P|+|G|), 0 when both masks are empty; assd = (mean directed distance pred->gt + mean directed "
        "distance gt->pred) / 2, surfaces = mask XOR its connectivity-1 erosion (volume border is surface); "
        "ASSD undefined (N/A) if either mask is empty, where medpy raised. Comparable with the published tables only "
        "on the release grid (the SIFA/PnP-AdaNet release cache), not on our own preprocessing grid"
    ),
    "std": "population std (ddof=0) over test volumes",
}


def _class_table(per_class: Mapping[str, Mapping[str, float]], key: str) -> dict[str, float]:
    return {c: float(v[key]) for c, v in per_class.items()}


def evaluate_model(
    *,
    model_path: str | os.PathLike[str],
    target_cache: str | os.PathLike[str],
    spec: DatasetSpec,
    predictions_dir: str | os.PathLike[str],
    metrics_path: str | os.PathLike[str],
    experiment: Mapping[str, Any],
    batch_size: int = 32,
    overlay_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Predict and score the target test volumes; `overlay_path` (default: overlay.npz next to
    the metrics) gets the test slice with the most labelled foreground, for the report."""
    device = choose_device("auto")
    net, model = load_model(str(model_path), device)
    manifest = load_manifest(target_cache)
    fg = manifest.class_names[1:]
    out_dir = Path(predictions_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases, best_overlay = evaluate_cases(net, manifest, target_cache, spec, out_dir, device, batch_size)
    summary = {key: summarise_cases(cases, key, fg) for key in CASE_METRICS}
    pooled = pooled_metrics(cases, manifest.class_names)
    checkpoints = evaluate_snapshots(model.snapshots or [], net, manifest, target_cache, spec, out_dir, device, batch_size)
    if checkpoints is not None:
        summary.update(last_k_summary(cases, checkpoints["per_iteration"], fg))
    doc = MetricsDoc(
        experiment=dict(experiment),
        class_names=fg,
        protocol=PROTOCOL,
        summary=summary,
        pooled=pooled,
        cases=cases,
        checkpoints=checkpoints,
        provenance=provenance_block(
            config=dict(experiment),
            config_sha256=sha256_json(dict(experiment)),
            seed=experiment.get("seed"),
            device=describe_device(device),
            model=str(model_path),
            model_sha256=sha256_file(model_path),
            model_config_hash=model.config_hash,
            data_manifest=str(Path(target_cache) / MANIFEST),
            data_manifest_sha256=sha256_file(Path(target_cache) / MANIFEST),
            labels=label_record(spec.labels_of(manifest.modality)),
            label_budget=_label_budget(model_path),
        ),
    )
    if best_overlay is not None:
        overlay = Path(overlay_path) if overlay_path is not None else Path(metrics_path).with_name("overlay.npz")
        save_overlay(overlay, {**best_overlay[1], "slice_axis": manifest.slice_axis})
    doc.save(metrics_path)
    return doc.to_dict()


def _label_budget(model_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The model sidecar's `labels` (label budget and the labelled target training cases drawn), so
    a metrics file says which target labels its model saw; None without a sidecar."""
    side = Path(sidecar_of(Path(model_path)))
    return Sidecar.load(side).labels if side.is_file() else None


def evaluate_cases(
    net: torch.nn.Module,
    manifest: CacheManifest,
    target_cache: str | os.PathLike[str],
    spec: DatasetSpec,
    out_dir: Path,
    device: torch.device,
    batch_size: int,
) -> tuple[list[dict[str, Any]], tuple[int, dict[str, Any]] | None]:
    """Predict every test volume with `net`, store the predictions in `out_dir` (scan grid and
    preprocessed grid) and score them; also the slice for the overlay."""
    class_names = manifest.class_names
    out_dir.mkdir(parents=True, exist_ok=True)
    cases: list[dict[str, Any]] = []
    best_overlay: tuple[int, dict[str, Any]] | None = None
    for rec in manifest.cases_in("test"):
        if rec.source_label is None:
            raise InputDataError(f"{target_cache}/{MANIFEST}: test case {rec.case} records no source label to score against; rebuild the cache")
        image = np.load(Path(target_cache) / rec.image, mmap_mode="r")
        pred = predict_slices(net, image, device, batch_size)
        cached_label = np.load(Path(target_cache) / rec.label)
        best_overlay = _keep_best_slice(best_overlay, rec.case, image, cached_label, pred)
        pred_img = to_original_grid(pred, rec, manifest.slice_axis)
        gt_sha = sha256_file(rec.source_label)
        if gt_sha != rec.source_label_sha256:
            raise InputDataError(f"{rec.source_label}: ground truth changed since preprocessing (sha256 differs from {target_cache}/manifest.json); rerun preprocessing")
        gt_img = read_image(rec.source_label, kind="label")
        scores = score_case(pred, cached_label, pred_img, gt_img, spec.labels_of(manifest.modality), class_names, rec.source_label)
        pred_path = out_dir / f"{rec.case}_pred.nii.gz"
        write_image(pred_img, pred_path)
        grid_path = out_dir / f"{rec.case}_pred_preprocessed.npz"
        save_prediction_grid(grid_path, pred)
        cases.append(
            {
                "case": rec.case,
                "prediction": str(pred_path),
                "prediction_sha256": sha256_file(pred_path),
                "prediction_preprocessed": str(grid_path),
                "prediction_preprocessed_sha256": sha256_file(grid_path),
                "ground_truth": rec.source_label,
                "ground_truth_sha256": gt_sha,
                "ground_truth_preprocessed": str(Path(target_cache) / rec.label),
                "ground_truth_preprocessed_sha256": rec.label_sha256,
                **scores,
            }
        )
        log.info("case %s: mean Dice %.3f", rec.case, float(np.mean(list(cases[-1]["dice"].values()))))
    if not cases:
        raise ValueError(f"{target_cache}: no test cases to evaluate")
    return cases, best_overlay


def evaluate_snapshots(
    snapshots: Sequence[Snapshot],
    net: torch.nn.Module,
    manifest: CacheManifest,
    target_cache: str | os.PathLike[str],
    spec: DatasetSpec,
    out_dir: Path,
    device: torch.device,
    batch_size: int,
) -> dict[str, Any] | None:
    """The earlier checkpoints a model file carries (`train.snapshots`), each evaluated like the
    main weights, with its predictions under `out_dir/iter<N>/`; None when there are none."""
    if not snapshots:
        return None
    main_state = {k: v.clone() for k, v in net.state_dict().items()}
    per_iteration = []
    try:
        for snap in snapshots:
            it = int(snap.iteration)
            net.load_state_dict(snap.state_dict)
            net.eval()
            cases, _ = evaluate_cases(net, manifest, target_cache, spec, out_dir / f"iter{it:08d}", device, batch_size)
            per_iteration.append({"iteration": it, "cases": cases})
            log.info("checkpoint %d: mean Dice %.3f", it, float(np.mean([np.mean(list(c["dice"].values())) for c in cases])))
    finally:
        net.load_state_dict(main_state)
    return {
        "selection": "none: the last iteration and the mean over the last k checkpoints are reported; target labels choose nothing",
        "iterations": [p["iteration"] for p in per_iteration],
        "per_iteration": per_iteration,
    }


def last_k_cases(main: Sequence[Mapping[str, Any]], earlier: Sequence[Mapping[str, Any]], classes: list[str]) -> list[dict[str, Any]]:
    """Per case and class, the mean over the earlier checkpoints and the last iteration (NaN if any is)."""
    out = []
    for i, case in enumerate(main):
        runs = [case] + [p["cases"][i] for p in earlier]
        if any(r["case"] != case["case"] for r in runs):
            raise ValueError(f"checkpoint evaluations list different cases than the last iteration ({case['case']})")
        out.append({"case": case["case"], **{key: {c: float(np.mean([r[key][c] for r in runs])) for c in classes} for key in LAST_K_METRICS}})
    return out


def last_k_summary(main: Sequence[Mapping[str, Any]], earlier: Sequence[Mapping[str, Any]], classes: list[str]) -> dict[str, Any]:
    cases = last_k_cases(main, earlier, classes)
    return {f"{key}{LAST_K}": summarise_cases(cases, key, classes) for key in LAST_K_METRICS}


def score_case(
    pred: np.ndarray,
    cached_label: np.ndarray,
    pred_img: sitk.Image,
    gt_img: sitk.Image,
    labels: LabelMapping,
    class_names: list[str],
    gt_source: str,
) -> dict[str, dict[str, float]]:
    """Both protocols for one volume: ours on the scan grid (mm, spacing reversed to the array's
    z, y, x order), SIFA's (medpy 0.4, voxels) on the preprocessed grid. `xmodseg audit`
    recomputes reported numbers with this same function from the stored predictions, so a value
    can be checked for exact equality."""
    check_pair_geometry(gt_img, pred_img, gt_source, "<mapped prediction>")
    gt = labels.to_indices(sitk.GetArrayFromImage(gt_img), gt_source)
    ours = metrics.per_class_metrics(sitk.GetArrayFromImage(pred_img), gt, class_names, spacing=tuple(reversed(gt_img.GetSpacing())))
    sifa = metrics.sifa_per_class_metrics(pred, cached_label, class_names)
    return {
        "dice": _class_table(ours, "dice"),
        "assd_mm": _class_table(ours, "assd"),
        "sifa_dice": _class_table(sifa, "dice"),
        "sifa_assd_vox": _class_table(sifa, "assd"),
    }


def pooled_metrics(cases: Sequence[Mapping[str, Any]], class_names: list[str]) -> dict[str, Any]:
    """GLUA's pooled numbers (metrics.pooled_per_class_metrics) from the stored preprocessed-grid
    predictions and labels of `cases`, in case order; what `xmodseg audit` recomputes."""
    preds = [load_prediction_grid(c["prediction_preprocessed"]) for c in cases]
    gts = [np.load(c["ground_truth_preprocessed"]) for c in cases]
    table = metrics.pooled_per_class_metrics(preds, gts, class_names)
    out: dict[str, Any] = {
        "definition": "all test volumes concatenated along the slice axis (GLUA metric.py); medpy 0.4 dc/assd, voxels; "
        "IoU from the voxel counts of all volumes together (CaDIS's mIoU: one confusion matrix over all test frames)",
        "cases": [c["case"] for c in cases],
    }
    for key, name in (("sifa_dice", "dice"), ("sifa_assd_vox", "assd")):
        per_class = {cls: float(v[name]) for cls, v in table.items()}
        out[key] = {**per_class, "mean": float(np.mean(list(per_class.values())))}
    iou = metrics.pooled_iou(preds, gts, class_names)
    out["iou"] = {**iou, "mean": float(np.mean(list(iou.values())))}
    return out


def label_record(labels: LabelMapping) -> dict[str, Any]:
    """The raw-value mapping used on the ground truth (recorded so an audit needs no registry)."""
    return {"classes": list(labels.class_names), "mapping": {str(k): v for k, v in sorted(labels.raw_to_index.items())}, "ignore": sorted(labels.ignore)}


def save_prediction_grid(path: Path, pred: np.ndarray) -> None:
    """The argmax labels on the preprocessed grid (what the SIFA-compatible numbers are computed on)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, prediction=pred)


def load_prediction_grid(path: str | os.PathLike[str]) -> np.ndarray:
    with np.load(path) as data:
        return data["prediction"]


def _keep_best_slice(
    best: tuple[int, dict[str, Any]] | None, case: str, image: np.ndarray, label: np.ndarray, pred: np.ndarray
) -> tuple[int, dict[str, Any]]:
    """Track the test slice with the most labelled foreground (deterministic choice for overlays)."""
    counts = (label > 0).reshape(label.shape[0], -1).sum(axis=1)
    i = int(np.argmax(counts))
    if best is not None and best[0] >= counts[i]:
        return best
    shown = np.array(image[i]) if image.ndim == 3 else np.asarray(image[i]).mean(axis=0)  # colour frames: shown grey
    return int(counts[i]), {"case": case, "slice": i, "image": shown, "label": label[i], "prediction": pred[i]}


def save_overlay(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in data.items()}
        np.savez_compressed(fh, **arrays)


def summarise_cases(cases: Sequence[Mapping[str, Any]], key: str, classes: list[str]) -> dict[str, Any]:
    """Per class: mean/std over volumes; `mean`: the average of the class means (paper style)."""
    per_class = {c: metrics.summarise([case[key][c] for case in cases]) for c in classes}
    class_means = [per_class[c]["mean"] for c in classes]
    per_case_means = [float(np.mean([case[key][c] for c in classes])) for case in cases]
    overall = metrics.summarise(per_case_means)
    overall["mean"] = float(np.mean(class_means))  # NaN (N/A) if any class mean is
    return {**per_class, "mean": overall}
