"""A slice cache from the SIFA / PnP-AdaNet release: training slices from its tfrecords, test
volumes from its heart-cropped `.nii` files, so methods train and are evaluated on exactly the
papers' data.

Both are already z-scored per volume; SIFA maps them to [-1, 1] with fixed constants
(methods.md 2.7), and so does this cache. SIFA's evaluate.py flips the test arrays on nibabel axes
0 and 1 (x and y) before slicing along axis 2 (z) to match the training orientation; here the flip
is written into the cached grid's geometry (origin at the opposite corner, x and y direction
columns negated), so predictions map back onto the released volume voxel for voxel with the
usual `to_original_grid`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import atomic_dir, save_npy, write_json
from xmodseg.datasets.tfrecord import SIFA_CLASSES, read_sifa_slices, sifa_to_unit_range
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.imageio import geometry_dict, read_image
from xmodseg.registry import DatasetSpec


def flipped_xy_geometry(img: sitk.Image) -> dict[str, Any]:
    """The grid of `img`'s array flipped along x and y (SimpleITK array axes 2 and 1)."""
    nx, ny, _ = img.GetSize()
    origin = img.TransformIndexToPhysicalPoint((nx - 1, ny - 1, 0))
    d = np.asarray(img.GetDirection()).reshape(3, 3).copy()
    d[:, 0] *= -1
    d[:, 1] *= -1
    return {"size": list(img.GetSize()), "spacing": list(img.GetSpacing()), "origin": list(origin), "direction": d.ravel().tolist()}


def build_cache(
    spec: DatasetSpec,
    modality: str,
    tfrecords: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    slices_per_case: int = 600,
) -> Path:
    """Training pseudo-cases from `tfrecords`; test cases from the registry's (imported) volumes."""
    if not tfrecords:
        raise InputDataError(f"{spec.name}/{modality}: no training tfrecords found")
    mod = spec.modality(modality)
    images, labels = [], []
    for _, s in read_sifa_slices(tfrecords):
        images.append(sifa_to_unit_range(s.image[1], mod.kind))
        labels.append(s.label)
    img_all, lab_all = np.stack(images), np.stack(labels)
    records = []
    with atomic_dir(out) as tmp:
        for k, start in enumerate(range(0, len(img_all), slices_per_case)):
            case = f"tf{k:03d}"
            records.append(_write(tmp, case, "train", img_all[start : start + slices_per_case], lab_all[start : start + slices_per_case], {}))
        for case in mod.test_cases:
            image_path, label_path = spec.image_path(modality, case), spec.label_path(modality, case)
            img = read_image(image_path)
            lab = read_image(label_path, kind="label")
            arr = sitk.GetArrayFromImage(img).astype(np.float32)[:, ::-1, ::-1]
            lab_idx = spec.labels.to_indices(sitk.GetArrayFromImage(lab), label_path)[:, ::-1, ::-1]
            extra = {
                "source_image": str(image_path),
                "source_label": str(label_path),
                "source_image_sha256": sha256_file(image_path),
                "source_label_sha256": sha256_file(label_path),
                "original_geometry": geometry_dict(img),
                "resampled_geometry": flipped_xy_geometry(img),
                "crop_start_zyx": [0, 0, 0],
                "crop_extent_zyx": list(arr.shape),
            }
            records.append(_write(tmp, case, "test", sifa_to_unit_range(arr, mod.kind), lab_idx, extra))
        manifest = {
            "format": 1,
            "dataset": spec.name,
            "modality": modality,
            "kind": mod.kind,
            "class_names": list(spec.labels.class_names) if spec.labels.class_names else SIFA_CLASSES,
            "slice_axis": "axial",  # along the released volumes' third (z) axis, as SIFA's evaluate.py
            "preprocess": {"source": "SIFA/PnP-AdaNet release", "intensity": "SIFA constants", "flip": "x and y, as evaluate.py"},
            "norm_stats_sha256": sha256_json({"sifa_constants": mod.kind}),
            "training_tfrecords": {str(f): sha256_file(f) for f in tfrecords},
            "cases": records,
        }
        write_json(tmp / "manifest.json", manifest)
    return Path(out)


def _write(folder: Path, case: str, split: str, image: np.ndarray, label: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
    save_npy(folder / f"{case}_image.npy", np.ascontiguousarray(image, dtype=np.float32))
    save_npy(folder / f"{case}_label.npy", np.ascontiguousarray(label, dtype=np.uint8))
    return {
        "case": case,
        "split": split,
        **extra,
        "image": f"{case}_image.npy",
        "label": f"{case}_label.npy",
        "shape": list(image.shape),
        "image_sha256": sha256_file(folder / f"{case}_image.npy"),
        "label_sha256": sha256_file(folder / f"{case}_label.npy"),
        "classes_present": sorted(int(v) for v in np.unique(label)),
    }
