"""Raw NIfTI volumes of one modality -> a compact slice cache plus manifest and normalisation stats.

Cache layout (one folder per data set and modality, written atomically as a whole):
    {case}_image.npy   float32 [slices, H, W], normalised ([slices, 3, H, W] for colour frames)
    {case}_label.npy   uint8   [slices, H, W], class indices
    manifest.json      per case: split, shapes, spacing, geometry to map predictions back, sha256,
                       and the fraction of labelled voxels the crop removed (`label_crop_loss`)
    norm_stats.json    the training-split statistics used for every case

In-plane field of view (`in_plane`): `fixed_spacing` resamples to `spacing` and crops `crop_size`
voxels around the body, which cuts anatomy wider than the crop; `whole_slice` resamples each case
so its whole in-plane extent fills `crop_size` (per-case in-plane spacing, as SIFA's whole
abdominal slices resized to 256 x 256), so nothing is cropped in-plane. Either way the crop's
label loss is measured per case: a warning for any loss, an error for a test case above
`max_test_label_loss` if set (Dice on the cropped grid would not show what was cut).
A label file without any foreground voxel (after the registry mapping) stops preprocessing, for
training and test cases alike: it is almost always a wrong or empty file, trains the network on
background only, and makes a test case's Dice meaningless.
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

from xmodseg.artifacts.cache import CACHE_FORMAT, MANIFEST, CacheManifest, CaseRecord
from xmodseg.atomic import atomic_dir, save_npy, write_json
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.imageio import check_nonempty_image, check_pair_geometry, geometry_dict, read_image
from xmodseg.preprocess.crop import crop_box, crop_pad, label_crop_loss
from xmodseg.preprocess.geometry import SLICE_AXES, resample_pair
from xmodseg.preprocess.normalize import NormStats, apply_stats, fit_stats
from xmodseg.registry import DatasetSpec, assert_no_test_cases

log = logging.getLogger(__name__)

NORM_STATS = "norm_stats.json"
IN_PLANE_MODES = ("fixed_spacing", "whole_slice")


@dataclass(frozen=True)
class PreprocessConfig:
    spacing: tuple[float, float, float] = (2.5, 2.5, 2.5)  # mm along x, y, z (LPS)
    slice_axis: str = "coronal"
    crop_size: tuple[int, int] = (64, 64)  # in-plane (rows, cols) of each cached slice
    interpolator: str = "linear"
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    in_plane: str = "fixed_spacing"  # or "whole_slice": the whole in-plane extent resampled to crop_size
    # Largest fraction of a class's voxels the crop may remove from a test case; None: only warn
    # (the default, so configs written before this check keep running; the SIFA protocols set 0.01).
    max_test_label_loss: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"preprocess: unknown keys {unknown}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        cfg = cls(**kwargs)
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
        if cfg.in_plane not in IN_PLANE_MODES:
            raise ConfigError(f"preprocess.in_plane: '{cfg.in_plane}' is not one of {list(IN_PLANE_MODES)}")
        limit = cfg.max_test_label_loss
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit <= 1):
            raise ConfigError(f"preprocess.max_test_label_loss: need a fraction in [0, 1], got {cfg.max_test_label_loss}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class _Case:
    case: str
    split: str
    image: np.ndarray  # cropped, not yet normalised, [z, y, x] ([channel, z, y, x] for colour frames)
    label: np.ndarray
    record: dict[str, Any]
    foreground_voxels: int  # in the source label file, after the registry mapping


@dataclass
class Gridded:
    """A scan on the network's grid: resampled, cropped (not yet normalised), and what maps it back."""

    image: np.ndarray  # [z, y, x] ([channel, z, y, x] for colour frames)
    label: np.ndarray | None  # cropped class indices (None: no label given)
    full_label: np.ndarray | None  # the same before the crop (what the crop's label loss is measured on)
    original: sitk.Image  # the scan as read (its geometry)
    resampled: sitk.Image  # (the first channel) on the resampled grid
    start: list[int]
    extent: list[int]

    def geometry_record(self, slice_axis: str) -> dict[str, Any]:
        """The manifest fields that map a prediction on this grid back onto the scan's."""
        axis = SLICE_AXES[slice_axis]
        spacing_zyx = list(reversed(self.resampled.GetSpacing()))
        return {
            "original_geometry": geometry_dict(self.original),
            "resampled_geometry": geometry_dict(self.resampled),
            "crop_start_zyx": self.start,
            "crop_extent_zyx": self.extent,
            "slice_spacing": [spacing_zyx[axis]] + [s for a, s in enumerate(spacing_zyx) if a != axis],
        }


def to_grid(image: sitk.Image, label_idx: sitk.Image | None, cfg: PreprocessConfig, *, rgb: bool = False) -> Gridded:
    """Resample (physical space) and crop one scan and its label (class indices) as preprocessing
    does for the cache; `xmodseg predict` runs the same on scans without a label."""
    axis = SLICE_AXES[cfg.slice_axis]
    whole = cfg.in_plane == "whole_slice"
    # whole_slice: the in-plane physical axes (x y z = 2 1 0 of the [z, y, x] array) get crop_size voxels
    fit = {2 - a: int(n) for a, n in zip([a for a in range(3) if a != axis], cfg.crop_size, strict=True)} if whole else None
    channels = [sitk.VectorIndexSelectionCast(image, i, sitk.sitkFloat32) for i in range(3)] if rgb else [image]
    res_img, res_lab = resample_pair(channels[0], label_idx, cfg.spacing, cfg.interpolator, fit=fit)
    arrays = [sitk.GetArrayFromImage(res_img)] + [sitk.GetArrayFromImage(resample_pair(c, None, cfg.spacing, cfg.interpolator, fit=fit)[0]) for c in channels[1:]]
    grey = np.mean(arrays, axis=0) if rgb else arrays[0]  # the body box from the image alone
    start, extent = crop_box(grey, axis, cfg.crop_size, whole_in_plane=whole)
    cropped = [crop_pad(a, start, extent, float(a.min())) for a in arrays]
    lab_arr = sitk.GetArrayFromImage(res_lab) if res_lab is not None else None
    return Gridded(
        image=np.stack(cropped) if rgb else cropped[0],
        label=crop_pad(lab_arr, start, extent, 0) if lab_arr is not None else None,
        full_label=lab_arr,
        original=image,
        resampled=res_img,
        start=start,
        extent=extent,
    )


def _load_case(spec: DatasetSpec, modality: str, case: str, cfg: PreprocessConfig) -> _Case:
    img_path, lab_path = spec.image_path(modality, case), spec.label_path(modality, case)
    rgb = spec.modality(modality).kind == "rgb"  # colour frames: 3 channels, stored as one-slice volumes
    image = read_image(img_path, kind="image", components=3 if rgb else 1, frame=rgb)
    check_nonempty_image(image, img_path)
    label = read_image(lab_path, kind="label", frame=rgb)
    check_pair_geometry(image, label, img_path, lab_path)
    indices = spec.labels_of(modality).to_indices(sitk.GetArrayFromImage(label), lab_path)
    label_idx = sitk.GetImageFromArray(indices)
    label_idx.CopyInformation(label)
    grid = to_grid(image, label_idx, cfg, rgb=rgb)
    assert grid.label is not None and grid.full_label is not None  # a label went in, so one comes out
    record: dict[str, Any] = {
        "case": case,
        "split": spec.modality(modality).split_of(case),
        "source_image": str(img_path),
        "source_label": str(lab_path),
        "source_image_sha256": sha256_file(img_path),
        "source_label_sha256": sha256_file(lab_path),
        **grid.geometry_record(cfg.slice_axis),
        "label_crop_loss": label_crop_loss(grid.full_label, grid.label, spec.labels.class_names),
    }
    fg = int(np.count_nonzero(indices))  # 0 is background; raw `ignore` values map to it too
    return _Case(case, record["split"], grid.image, grid.label, record, fg)


def check_foreground(cases: list[_Case], spec: DatasetSpec, modality: str) -> None:
    """Stop, naming every case and label file, if a label has no foreground voxel at all."""
    empty = [c for c in cases if c.foreground_voxels == 0]
    if not empty:
        return
    files = "; ".join(f"{c.split} case {c.case}: {c.record['source_label']}" for c in empty)
    raise InputDataError(
        f"{spec.name}/{modality}: label file(s) with no foreground (every voxel is background after the registry's "
        f"labels.mapping): {files}. Likely a wrong or empty file: replace it, check datasets.{spec.name}.labels.mapping, "
        f"or remove case(s) {[c.case for c in empty]} from datasets.{spec.name}.modalities.{modality}.cases (and .test)"
    )


def check_label_loss(cases: list[_Case], cfg: PreprocessConfig, where: str) -> None:
    """Warn for every case whose crop removed labelled voxels; stop if a test case lost more than
    `max_test_label_loss` of any class (its Dice would be computed on an amputated organ)."""
    too_much = []
    for c in cases:
        loss = c.record["label_crop_loss"]
        if not loss["removed_voxels"]:
            continue
        classes = ", ".join(f"{k} {v:.1%}" for k, v in loss["per_class"].items() if v > 0)
        log.warning("%s case %s (%s): the crop removes %.1f%% of the labelled voxels (%s)", where, c.case, c.split, 100 * loss["fraction"], classes)
        if c.split == "test" and cfg.max_test_label_loss is not None and max(loss["per_class"].values()) > cfg.max_test_label_loss:
            too_much.append(f"{c.case} ({classes})")
    if not too_much:
        return
    if cfg.in_plane == "whole_slice":  # nothing is cropped in-plane: the body found along the slicing axis is too short
        fix = f"the body found from the image along the {cfg.slice_axis} axis ends before the labels; check these images"
    else:
        fix = f"use a larger preprocess.crop_size (now {list(cfg.crop_size)} voxels at {list(cfg.spacing)} mm) or preprocess.in_plane: whole_slice"
    raise ConfigError(
        f"{where}: the crop removes more than preprocess.max_test_label_loss = {cfg.max_test_label_loss:g} of a class "
        f"from test case(s) {'; '.join(too_much)}: {fix}"
    )


def preprocess_modality(spec: DatasetSpec, modality: str, cfg: PreprocessConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Preprocess every case of `modality`; statistics from its training split only."""
    mod = spec.modality(modality)
    axis = SLICE_AXES[cfg.slice_axis]
    cases = [_load_case(spec, modality, c, cfg) for c in mod.cases]
    check_foreground(cases, spec, modality)
    check_label_loss(cases, cfg, f"{spec.name}/{modality}")
    train = {c.case: c.image for c in cases if c.split == "train"}
    assert_no_test_cases(list(train), mod, "normalisation statistics")
    stats = fit_stats(train, mod.kind, ct_window=cfg.ct_window, mr_percentiles=cfg.mr_percentiles)

    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        records = [_write_case(tmp, c, stats, cfg, axis) for c in cases]
        spacing_zyx = list(reversed(cfg.spacing))
        manifest = CacheManifest(
            format=CACHE_FORMAT,
            dataset=spec.name,
            modality=modality,
            kind=mod.kind,
            class_names=list(spec.labels.class_names),
            slice_axis=cfg.slice_axis,
            # whole_slice: the in-plane spacing differs per case (each record's `slice_spacing`)
            slice_spacing=[spacing_zyx[axis]] + [s for a, s in enumerate(spacing_zyx) if a != axis] if cfg.in_plane == "fixed_spacing" else None,
            intensity_space="zscore",
            preprocess=cfg.to_dict(),
            norm_stats_sha256=sha256_json(stats.to_dict()),
            cases=records,
        )
        write_json(tmp / NORM_STATS, stats.to_dict())
        manifest.save(tmp / MANIFEST)
    log.info("preprocessed %d %s cases into %s", len(records), modality, out)
    return out


def _write_case(folder: Path, c: _Case, stats: NormStats, cfg: PreprocessConfig, axis: int) -> CaseRecord:
    channel_axes = c.image.ndim - 3  # colour frames: [channel, z, y, x] -> [slice, channel, H, W]
    image = np.ascontiguousarray(np.moveaxis(apply_stats(c.image, stats, ct_window=cfg.ct_window), axis + channel_axes, 0))
    label = np.ascontiguousarray(np.moveaxis(c.label, axis, 0))
    img_name, lab_name = f"{c.case}_image.npy", f"{c.case}_label.npy"
    save_npy(folder / img_name, image)
    save_npy(folder / lab_name, label)
    return CaseRecord(
        **c.record,
        image=img_name,
        label=lab_name,
        shape=list(image.shape),
        image_sha256=sha256_file(folder / img_name),
        label_sha256=sha256_file(folder / lab_name),
        classes_present=sorted(int(v) for v in np.unique(label)),
    )


def load_manifest(cache_dir: str | os.PathLike[str]) -> CacheManifest:
    """The manifest of the cache folder `cache_dir` (a missing folder is a configuration error:
    the stage that writes it has not run)."""
    path = Path(cache_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{path}: no preprocessing manifest (run the preprocess stage first)")
    return CacheManifest.load(path)


def load_stats(cache_dir: str | os.PathLike[str]) -> NormStats:
    return NormStats.from_dict(json.loads((Path(cache_dir) / NORM_STATS).read_text()))
