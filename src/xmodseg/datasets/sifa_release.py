"""A slice cache from the SIFA / PnP-AdaNet release: training slices from its tfrecords, test
volumes from its heart-cropped `.nii` files, so methods train and are evaluated on exactly the
papers' data, decoded and oriented as SIFA's own code does.

Both are already z-scored per volume; SIFA maps them to [-1, 1] with fixed constants
(methods.md 2.7), and so does this cache (`intensity_space: sifa_unit`).

Test orientation. SIFA's evaluate.py loads a test volume with `medpy.io.load` (array indexed
[x, y, z]), flips axes 0 and 1 and predicts the 2-D slices `data[..., k]`, indexed [x, y] like the
training slices of the tfrecords. SimpleITK's array is [z, y, x], so cached slice k is
`arr[k, ::-1, ::-1].T`. The cached array [k, x', y'] is written down as a 3-D grid of its own
(`sifa_test_geometry`: x and y swapped and negated, origin at the last x and y voxel), so
predictions map back onto the released volume voxel for voxel with the usual `to_original_grid`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.artifacts.cache import MANIFEST, CacheManifest, CaseRecord
from xmodseg.atomic import atomic_dir
from xmodseg.datasets.tfrecord import (
    SIFA_CLASSES,
    SIFA_UNIT_SPACE,
    TEST_PRECISION,
    ignored_record,
    intensity_record,
    sifa_unit_range,
    write_cached_case,
    write_training_cases,
)
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.imageio import geometry_dict, read_image
from xmodseg.registry import DatasetSpec

log = logging.getLogger(__name__)

# The cache's slices run along its first array axis: "axial" is the name SLICE_AXES gives axis 0.
SLICE_AXIS = "axial"


def sifa_test_orientation(arr: np.ndarray) -> np.ndarray:
    """A SimpleITK [z, y, x] array as SIFA's test slices: [k] = flip(flip(medpy [x, y, z], 0), 1)[..., k]."""
    return np.ascontiguousarray(np.transpose(arr[:, ::-1, ::-1], (0, 2, 1)))


def sifa_test_geometry(img: sitk.Image) -> dict[str, Any]:
    """The grid of `sifa_test_orientation(array of img)` seen as a 3-D image.

    Its array [k, i, j] holds `img` voxel (x, y, z) = (nx-1-i, ny-1-j, k); as an image index
    (j, i, k), so its x axis is `img`'s y reversed, its y axis `img`'s x reversed. The direction
    matrix has the opposite determinant of `img`'s, which SimpleITK resamples like any other.
    """
    nx, ny, nz = img.GetSize()
    sx, sy, sz = img.GetSpacing()
    d = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    direction = np.stack([-d[:, 1], -d[:, 0], d[:, 2]], axis=1)
    origin = img.TransformIndexToPhysicalPoint((nx - 1, ny - 1, 0))
    return {
        "size": [ny, nx, nz],
        "spacing": [float(sy), float(sx), float(sz)],
        "origin": [float(v) for v in origin],
        "direction": [float(v) for v in direction.ravel()],
    }


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
    ignore = sorted(spec.labels.ignore)
    with atomic_dir(out) as tmp:
        records, ignored = write_training_cases(tfrecords, mod.kind, tmp, slices_per_case)
        for case in mod.test_cases:
            image_path, label_path = spec.image_path(modality, case), spec.label_path(modality, case)
            img = read_image(image_path)
            lab = read_image(label_path, kind="label")
            arr = sitk.GetArrayFromImage(img)  # the file's own dtype, as medpy reads it
            raw = sitk.GetArrayFromImage(lab)
            n_ignored = int(np.count_nonzero(np.isin(raw, ignore))) if ignore else 0
            if n_ignored:
                log.info("%s: %d voxels with label values %s count as background (as in SIFA's evaluate.py)", label_path, n_ignored, ignore)
            lab_idx = sifa_test_orientation(spec.labels.to_indices(raw, label_path))
            extra = {
                "source_image": str(image_path),
                "source_label": str(label_path),
                "source_image_sha256": sha256_file(image_path),
                "source_label_sha256": sha256_file(label_path),
                "original_geometry": geometry_dict(img),
                "resampled_geometry": sifa_test_geometry(img),
                "crop_start_zyx": [0, 0, 0],
                "crop_extent_zyx": list(lab_idx.shape),
                "ignored_label_voxels": n_ignored,  # raw `labels.ignore` values, background here
            }
            image = sifa_unit_range(sifa_test_orientation(arr), mod.kind, TEST_PRECISION)
            records.append(write_cached_case(tmp, case, "test", image, lab_idx, extra))
        cases = [CaseRecord.from_dict(r, f"{Path(out) / MANIFEST} case {r.get('case')}") for r in records]
        manifest = CacheManifest(
            format=1,
            dataset=spec.name,
            modality=modality,
            kind=mod.kind,
            class_names=list(spec.labels.class_names) if spec.labels.class_names else SIFA_CLASSES,
            slice_axis=SLICE_AXIS,  # cache array axis 0: the released volumes' third (z) axis, as evaluate.py
            preprocess={
                "source": "SIFA/PnP-AdaNet release",
                "intensity": "SIFA constants",
                "flip": "x and y, then slices indexed [x, y], as evaluate.py (medpy array flipped on axes 0 and 1)",
            },
            intensity_space=SIFA_UNIT_SPACE,
            intensity=intensity_record(mod.kind),
            norm_stats_sha256=sha256_json({"sifa_constants": mod.kind}),
            training_tfrecords={str(f): sha256_file(f) for f in tfrecords},
            **ignored_record(ignored),
            test_ignored_label_voxels={r["case"]: r["ignored_label_voxels"] for r in records if r["split"] == "test"},
            cases=cases,
        )
        manifest.save(tmp / MANIFEST)
    return Path(out)
