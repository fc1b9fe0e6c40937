"""DICOM series with per-slice PNG masks (the CHAOS layout) to NIfTI with the series' geometry.

SimpleITK (GDCM) orders the slices by position and gives spacing, origin and direction. CHAOS ships
one PNG mask per DICOM file, with the same file stem; masks are stacked in the series' order and
take its geometry. CHAOS encodes organs as grey values within ranges (liver 55-70, right kidney
110-135, left kidney 175-200, spleen 240-255); they are snapped to 63/126/189/252, the raw values
the registry maps to classes, and any other non-zero value stops the import naming the file.

GDCM silently leaves out a file it cannot read (e.g. truncated) and ITK then only warns while it
averages the spacing over the gap, misplacing every later slice. So a series is refused unless every
DICOM file of its folder is in it, its slices share one orientation and are evenly spaced along the
slice normal, and every PNG mask has its DICOM slice; all cases are checked before any is written.
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
# A slice step may differ from the series' median step by the larger of these: positions are
# decimal strings that scanners round, a missing slice doubles a step.
SLICE_STEP_REL_TOL = 0.01
SLICE_STEP_ABS_TOL_MM = 0.01
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima", ""}


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
    """The single DICOM series in `folder` and its files in slice order (checked: `series_files`)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputDataError(f"{path}: DICOM folder not found")
    with keep_locale():
        files = _series_files(path)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            raise InputDataError(f"{path}: cannot read the DICOM series ({str(exc).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3 or image.GetDepth() != len(files):
        raise InputDataError(f"{path}: the series has {len(files)} files but reads as an image of size {image.GetSize()}; expected one slice per file")
    return image, files


def series_files(folder: str | os.PathLike[str]) -> list[str]:
    """The files of the single DICOM series in `folder` in slice order, refused (naming the files
    and the gap) if a DICOM file of the folder is not in it or its slices are not evenly spaced."""
    path = Path(folder)
    if not path.is_dir():
        raise InputDataError(f"{path}: DICOM folder not found")
    with keep_locale():
        return _series_files(path)


def _series_files(path: Path) -> list[str]:
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
    if not ids:
        raise InputDataError(f"{path}: no DICOM series found")
    if len(ids) > 1:
        raise InputDataError(f"{path}: {len(ids)} DICOM series ({', '.join(ids)}); expected one per folder")
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), ids[0]))
    in_series = {Path(f).name for f in files}
    left_out = [p.name for p in _dicom_candidates(path) if p.name not in in_series]
    if left_out:
        raise InputDataError(
            f"{path}: {len(left_out)} DICOM file(s) of this folder are not in its series: {left_out[:10]}; "
            "they are unreadable (truncated or corrupt?) or from another series, and importing would leave "
            "their slices out. Restore the file(s) from the source, or move them out of the folder if they "
            "do not belong to this series"
        )
    _check_slice_spacing(path, files)
    return files


def _dicom_candidates(path: Path) -> list[Path]:
    """Files of `path` that should be DICOM slices: a DICOM-like suffix (none, .dcm, .dicom, .ima)
    or the "DICM" marker at byte 128; hidden files and DICOMDIR are not slices."""
    out = []
    for p in sorted(path.iterdir()):
        if p.name.startswith(".") or p.name.upper() == "DICOMDIR" or not p.is_file():
            continue
        if p.suffix.lower() in DICOM_SUFFIXES:
            out.append(p)
            continue
        with open(p, "rb") as fh:
            fh.seek(128)
            if fh.read(4) == b"DICM":
                out.append(p)
    return out


def _tag_floats(reader: sitk.ImageFileReader, tag: str, n: int, file: str) -> np.ndarray:
    if not reader.HasMetaDataKey(tag):
        raise InputDataError(f"{file}: DICOM tag ({tag.replace('|', ',')}) is missing, so the slice's place in the series cannot be checked")
    text = reader.GetMetaData(tag)
    try:
        values = np.array([float(v) for v in text.strip().split("\\")])
    except ValueError:
        values = np.array([])
    if values.size != n or not np.isfinite(values).all():
        raise InputDataError(f"{file}: DICOM tag ({tag.replace('|', ',')}) is '{text.strip()}', expected {n} finite numbers")
    return values


def slice_positions(files: list[str]) -> np.ndarray:
    """Each file's position (mm) along the slice normal; one orientation for all, else refused."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    orientation: np.ndarray | None = None
    positions = []
    for f in files:
        reader.SetFileName(f)
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputDataError(f"{f}: cannot read the DICOM header ({str(exc).strip().splitlines()[-1]})") from None
        iop = _tag_floats(reader, "0020|0037", 6, f)
        ipp = _tag_floats(reader, "0020|0032", 3, f)
        if orientation is None:
            orientation = iop
        elif np.abs(iop - orientation).max() > 1e-4:
            raise InputDataError(f"{f}: slice orientation {iop.tolist()} differs from {Path(files[0]).name}'s {orientation.tolist()}; one series must have one orientation")
        normal = np.cross(orientation[:3], orientation[3:])
        positions.append(float(ipp @ normal / np.linalg.norm(normal)))
    return np.array(positions)


def _check_slice_spacing(path: Path, files: list[str]) -> None:
    if len(files) < 2:
        return
    z = slice_positions(files)
    steps = np.diff(z)
    median = float(np.median(steps))
    tol = max(SLICE_STEP_REL_TOL * abs(median), SLICE_STEP_ABS_TOL_MM)
    bad = np.flatnonzero(np.abs(steps - median) > tol)
    if abs(median) <= SLICE_STEP_ABS_TOL_MM or bad.size:
        name = [Path(f).name for f in files]
        gaps = "; ".join(f"{name[i]} at {z[i]:.3f} mm -> {name[i + 1]} at {z[i + 1]:.3f} mm (step {steps[i]:.3f} mm)" for i in bad[:5])
        raise InputDataError(
            f"{path}: the DICOM slices are not evenly spaced along the slice normal (median step {median:.3f} mm, "
            f"tolerance {tol:.3g} mm): {gaps or 'slices share positions'}{' ...' if bad.size > 5 else ''}. "
            "A slice is missing or unreadable, or the folder mixes acquisitions; importing would average the "
            "spacing and misplace every later slice. Restore the missing file(s) or split the series"
        )


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


def mask_files(mask_dir: Path, dicom_files: list[str]) -> dict[str, Path]:
    """{stem: PNG} of the series' masks: exactly one per DICOM file, else refused naming the files."""
    pngs = {p.stem: p for p in mask_dir.glob("*.png")}
    if not pngs:
        raise InputDataError(f"{mask_dir}: no PNG masks found")
    stems = {Path(f).stem for f in dicom_files}
    for f in dicom_files:
        if Path(f).stem not in pngs:
            raise InputDataError(f"{mask_dir}: no mask {Path(f).stem}.png for DICOM file {f}")
    extra = sorted(pngs.keys() - stems)
    if extra:
        raise InputDataError(
            f"{mask_dir}: mask(s) {[pngs[k].name for k in extra[:10]]} have no slice in the DICOM series of "
            f"{Path(dicom_files[0]).parent}; their DICOM file is missing or unreadable. Restore it, or remove "
            "the mask if the slice does not exist"
        )
    return pngs


def masks_to_label(mask_dir: str | os.PathLike[str], dicom_files: list[str], reference: sitk.Image, ranges: Mapping[int, tuple[int, int]]) -> sitk.Image:
    """Stack the PNG of each DICOM file (same stem) in the series' slice order."""
    folder = Path(mask_dir)
    pngs = mask_files(folder, dicom_files)
    slices = []
    for f in dicom_files:
        png = pngs[Path(f).stem]
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
    cases = spec.modality(modality).cases
    for case in cases:  # every series and its masks before anything is written
        files = series_files(src / layout["dicom"].format(case=case, modality=modality))
        mask_files(src / layout["masks"].format(case=case, modality=modality), files)
    records = []
    for case in cases:
        dicom_dir = src / layout["dicom"].format(case=case, modality=modality)
        image, files = read_series(dicom_dir)
        label = masks_to_label(src / layout["masks"].format(case=case, modality=modality), files, image, ranges)
        spec.labels_of(modality).to_indices(sitk.GetArrayViewFromImage(label), dicom_dir)
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
