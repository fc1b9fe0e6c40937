"""Import ACDC (cine MR): each patient's end-diastolic and end-systolic frames, found via Info.cfg.

ACDC's frame numbers differ per patient (`patient001_frame01`, `patient001_frame12`, ...); the
patient's `Info.cfg` says which are ED and ES. A registry case id ends in `_ED` or `_ES`
(`patient001_ED`), so both frames of a patient are separate volumes that the registry keeps in
the same split. Patient folders are found anywhere below the given folder, so the release's
`database/training/` and `database/testing/` (or older layouts) need no configuration.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from xmodseg.datasets.nifti_folder import import_cases
from xmodseg.errors import InputDataError
from xmodseg.registry import DatasetSpec

PHASES = ("ED", "ES")


def read_info(path: Path) -> dict[str, str]:
    """`Info.cfg` as a dict (`ED: 1` lines)."""
    if not path.is_file():
        raise InputDataError(f"{path}: not found (every ACDC patient folder has an Info.cfg naming its ED and ES frames)")
    info = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def frame_of(info_path: Path, phase: str) -> int:
    """The frame number of `phase` (ED or ES) in one patient's Info.cfg."""
    value = read_info(info_path).get(phase)
    if value is None or not re.fullmatch(r"\d+", value):
        raise InputDataError(f"{info_path}: no integer '{phase}:' line (got {value!r})")
    return int(value)


def split_case(case: str) -> tuple[str, str]:
    """`patient001_ED` -> (`patient001`, `ED`)."""
    patient, _, phase = case.rpartition("_")
    if not patient or phase not in PHASES:
        raise InputDataError(f"ACDC case id '{case}' must look like patient001_ED or patient001_ES")
    return patient, phase


def import_acdc(spec: DatasetSpec, modality: str, source_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Import every registry case (`<patient>_<ED|ES>`) of `modality` from an ACDC folder."""
    src = Path(source_dir)
    patients: dict[str, Path] = {}
    if src.is_dir():
        for info in sorted(src.rglob("Info.cfg")):
            patients.setdefault(info.parent.name, info.parent)

    def resolve(folder: Path, case: str) -> tuple[Path, Path]:
        patient, phase = split_case(case)
        where = patients.get(patient)
        if where is None:
            raise InputDataError(f"no folder {patient}/ with an Info.cfg below {folder}")
        stem = where / f"{patient}_frame{frame_of(where / 'Info.cfg', phase):02d}"
        return Path(f"{stem}.nii.gz"), Path(f"{stem}_gt.nii.gz")

    return import_cases(spec, modality, src, resolve, {"image": "<patient>/<patient>_frameNN.nii.gz (NN from Info.cfg)", "label": "<patient>/<patient>_frameNN_gt.nii.gz"})
