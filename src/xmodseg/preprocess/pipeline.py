"""Raw NIfTI volumes of one modality -> a compact slice cache plus manifest and normalisation stats.

Cache layout (one folder per data set and modality, written atomically as a whole):
    {case}_image.npy   float32 [slices, H, W], normalised
    {case}_label.npy   uint8   [slices, H, W], class indices
    manifest.json      per case: split, shapes, spacing, geometry to map predictions back, sha256
    norm_stats.json    the training-split statistics used for every case
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import atomic_dir, save_npy, write_json
from xmodseg.errors import ConfigError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.imageio import check_nonempty_image, check_pair_geometry, geometry_dict, read_image
from xmodseg.preprocess.crop import crop_box, crop_pad
from xmodseg.preprocess.geometry import SLICE_AXES, resample_pair
from xmodseg.preprocess.normalize import NormStats, apply_stats, fit_stats
from xmodseg.registry import DatasetSpec, assert_no_test_cases

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
NORM_STATS = "norm_stats.json"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class PreprocessConfig:
    spacing: tuple[float, float, float] = (2.5, 2.5, 2.5)  # mm along x, y, z (LPS)
    slice_axis: str = "coronal"
    crop_size: tuple[int, int] = (64, 64)  # in-plane (rows, cols) of each cached slice
    interpolator: str = "linear"
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"preprocess: unknown keys {unknown}")
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        if cfg.slice_axis not in SLICE_AXES:
            raise ConfigError(f"preprocess.slice_axis: '{cfg.slice_axis}' is not one of {sorted(SLICE_AXES)}")
        if cfg.interpolator not in ("linear", "bspline"):
            raise ConfigError(f"preprocess.interpolator: '{cfg.interpolator}' is not linear or bspline")
        if min(cfg.spacing) <= 0 or len(cfg.spacing) != 3:
            raise ConfigError(f"preprocess.spacing: need three positive values, got {cfg.spacing}")
        if len(cfg.crop_size) != 2 or min(cfg.crop_size) < 8:
            raise ConfigError(f"preprocess.crop_size: need two sizes >= 8, got {cfg.crop_size}")
        if cfg.ct_window[0] >= cfg.ct_window[1]:
            raise ConfigError(f"preprocess.ct_window: low must be below high, got {cfg.ct_window}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class _Case:
    case: str
    split: str
    image: np.ndarray  # cropped, not yet normalised, [z, y, x]
    label: np.ndarray
    record: dict[str, Any]


def _load_case(spec: DatasetSpec, modality: str, case: str, cfg: PreprocessConfig) -> _Case:
    img_path, lab_path = spec.image_path(modality, case), spec.label_path(modality, case)
    image = read_image(img_path, kind="image")
    check_nonempty_image(image, img_path)
    label = read_image(lab_path, kind="label")
    check_pair_geometry(image, label, img_path, lab_path)
    indices = spec.labels.to_indices(sitk.GetArrayFromImage(label), lab_path)
    label_idx = sitk.GetImageFromArray(indices)
    label_idx.CopyInformation(label)
    res_img, res_lab = resample_pair(image, label_idx, cfg.spacing, cfg.interpolator)
    img_arr = sitk.GetArrayFromImage(res_img)
    lab_arr = sitk.GetArrayFromImage(res_lab)
    axis = SLICE_AXES[cfg.slice_axis]
    start, extent = crop_box(img_arr, axis, cfg.crop_size)
    record = {
        "case": case,
        "split": spec.modality(modality).split_of(case),
        "source_image": str(img_path),
        "source_label": str(lab_path),
        "source_image_sha256": sha256_file(img_path),
        "source_label_sha256": sha256_file(lab_path),
        "original_geometry": geometry_dict(image),
        "resampled_geometry": geometry_dict(res_img),
        "crop_start_zyx": start,
        "crop_extent_zyx": extent,
    }
    return _Case(
        case,
        record["split"],
        crop_pad(img_arr, start, extent, float(img_arr.min())),
        crop_pad(lab_arr, start, extent, 0),
        record,
    )


def preprocess_modality(spec: DatasetSpec, modality: str, cfg: PreprocessConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Preprocess every case of `modality`; statistics from its training split only."""
    mod = spec.modality(modality)
    axis = SLICE_AXES[cfg.slice_axis]
    cases = [_load_case(spec, modality, c, cfg) for c in mod.cases]
    train = {c.case: c.image for c in cases if c.split == "train"}
    assert_no_test_cases(list(train), mod, "normalisation statistics")
    stats = fit_stats(train, mod.kind, ct_window=cfg.ct_window, mr_percentiles=cfg.mr_percentiles)

    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        records = [_write_case(tmp, c, stats, cfg, axis) for c in cases]
        spacing_zyx = list(reversed(cfg.spacing))
        manifest = {
            "format": CACHE_FORMAT,
            "dataset": spec.name,
            "modality": modality,
            "kind": mod.kind,
            "class_names": list(spec.labels.class_names),
            "slice_axis": cfg.slice_axis,
            "slice_spacing": [spacing_zyx[axis]] + [s for a, s in enumerate(spacing_zyx) if a != axis],
            "preprocess": cfg.to_dict(),
            "norm_stats_sha256": sha256_json(stats.to_dict()),
            "cases": records,
        }
        write_json(tmp / NORM_STATS, stats.to_dict())
        write_json(tmp / MANIFEST, manifest)
    log.info("preprocessed %d %s cases into %s", len(records), modality, out)
    return out


def _write_case(folder: Path, c: _Case, stats: NormStats, cfg: PreprocessConfig, axis: int) -> dict[str, Any]:
    image = np.ascontiguousarray(np.moveaxis(apply_stats(c.image, stats, ct_window=cfg.ct_window), axis, 0))
    label = np.ascontiguousarray(np.moveaxis(c.label, axis, 0))
    img_name, lab_name = f"{c.case}_image.npy", f"{c.case}_label.npy"
    save_npy(folder / img_name, image)
    save_npy(folder / lab_name, label)
    return {
        **c.record,
        "image": img_name,
        "label": lab_name,
        "shape": list(image.shape),
        "image_sha256": sha256_file(folder / img_name),
        "label_sha256": sha256_file(folder / lab_name),
        "classes_present": sorted(int(v) for v in np.unique(label)),
    }


def load_manifest(cache_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{path}: no preprocessing manifest (run the preprocess stage first)")
    return json.loads(path.read_text())


def load_stats(cache_dir: str | os.PathLike[str]) -> NormStats:
    return NormStats.from_dict(json.loads((Path(cache_dir) / NORM_STATS).read_text()))
