"""DICOM series with per-slice PNG masks (the CHAOS layout) to NIfTI with the series' geometry.

SimpleITK (GDCM) orders the slices by position and gives spacing, origin and direction. CHAOS ships
one PNG mask per DICOM file, with the same file stem; masks are stacked in the series' order and
take its geometry. CHAOS encodes organs as grey values within ranges (liver 55-70, right kidney
110-135, left kidney 175-200, spleen 240-255); they are snapped to 63/126/189/252, the raw values
the registry maps to classes, and any other non-zero value stops the import naming the file.
"""

from __future__ import annotations

import contextlib
import locale
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import write_json
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file
from xmodseg.imageio import write_image
from xmodseg.registry import DatasetSpec

log = logging.getLogger(__name__)

CHAOS_MR_RANGES = {63: (55, 70), 126: (110, 135), 189: (175, 200), 252: (240, 255)}


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """GDCM (SimpleITK's DICOM I/O) resets the process locale to "C", after which Python decodes
    text as ASCII; restore the caller's locale afterwards."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def read_series(folder: str | os.PathLike[str]) -> tuple[sitk.Image, list[str]]:
    """The single DICOM series in `folder` and its files in slice order."""
    path = Path(folder)
    if not path.is_dir():
        raise InputDataError(f"{path}: DICOM folder not found")
    with keep_locale():
        return _read_series(path)


def _read_series(path: Path) -> tuple[sitk.Image, list[str]]:
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(path))
    if not ids:
        raise InputDataError(f"{path}: no DICOM series found")
    if len(ids) > 1:
        raise InputDataError(f"{path}: {len(ids)} DICOM series ({', '.join(ids)}); expected one per folder")
    files = list(reader.GetGDCMSeriesFileNames(str(path), ids[0]))
    reader.SetFileNames(files)
    try:
        return reader.Execute(), files
    except RuntimeError as exc:
        raise InputDataError(f"{path}: cannot read the DICOM series ({str(exc).strip().splitlines()[-1]})") from None


def snap_mask_values(mask: np.ndarray, ranges: Mapping[int, tuple[int, int]], source: str) -> np.ndarray:
    out = np.zeros(mask.shape, np.uint8)
    known = mask == 0
    for value, (lo, hi) in ranges.items():
        sel = (mask >= lo) & (mask <= hi)
        out[sel] = value
        known |= sel
    if not known.all():
        bad = sorted({int(v) for v in np.unique(mask[~known])})
        raise InputDataError(f"{source}: mask values {bad[:10]} are in no organ range {dict(ranges)}")
    return out


def masks_to_label(mask_dir: str | os.PathLike[str], dicom_files: list[str], reference: sitk.Image, ranges: Mapping[int, tuple[int, int]]) -> sitk.Image:
    """Stack the PNG of each DICOM file (same stem) in the series' slice order."""
    folder = Path(mask_dir)
    pngs = {p.stem: p for p in folder.glob("*.png")}
    if not pngs:
        raise InputDataError(f"{folder}: no PNG masks found")
    slices = []
    for f in dicom_files:
        png = pngs.get(Path(f).stem)
        if png is None:
            raise InputDataError(f"{folder}: no mask {Path(f).stem}.png for DICOM file {f}")
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(png)))
        if arr.ndim == 3:  # RGB(A) PNG: the grey value is in every channel
            arr = arr[..., 0]
        if arr.shape != reference.GetSize()[1::-1]:
            raise InputDataError(f"{png}: mask is {arr.shape[1]}x{arr.shape[0]}, the DICOM slice is {reference.GetSize()[0]}x{reference.GetSize()[1]}")
        slices.append(snap_mask_values(arr, ranges, str(png)))
    label = sitk.GetImageFromArray(np.stack(slices))
    label.CopyInformation(reference)
    return label


def import_series_with_masks(
    spec: DatasetSpec,
    modality: str,
    source_dir: str | os.PathLike[str],
    layout: Mapping[str, str],
    ranges: Mapping[int, tuple[int, int]] = CHAOS_MR_RANGES,
) -> list[dict[str, Any]]:
    """Every registry case of `modality`: `layout["dicom"]` / `layout["masks"]` folders (with
    `{case}`) under `source_dir` to NIfTI image + label in the registry layout."""
    src = Path(source_dir)
    records = []
    for case in spec.modality(modality).cases:
        dicom_dir = src / layout["dicom"].format(case=case, modality=modality)
        image, files = read_series(dicom_dir)
        label = masks_to_label(src / layout["masks"].format(case=case, modality=modality), files, image, ranges)
        spec.labels.to_indices(sitk.GetArrayViewFromImage(label), dicom_dir)
        write_image(image, spec.image_path(modality, case))
        write_image(label, spec.label_path(modality, case))
        records.append(
            {
                "case": case,
                "dicom": str(dicom_dir),
                "n_slices": len(files),
                "image": str(spec.image_path(modality, case)),
                "label": str(spec.label_path(modality, case)),
                "image_sha256": sha256_file(spec.image_path(modality, case)),
                "label_sha256": sha256_file(spec.label_path(modality, case)),
            }
        )
        log.info("imported %s case %s (%d DICOM slices)", modality, case, len(files))
    write_json(spec.root / modality / "import_manifest.json", {"dataset": spec.name, "modality": modality, "source": str(src), "layout": dict(layout), "cases": records})
    return records
