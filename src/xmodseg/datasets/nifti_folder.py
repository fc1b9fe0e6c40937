"""Import scans and labels from any folder layout into the registry's layout, checked.

One importer covers the NIfTI-based sources: MM-WHS 2017 (`ct_train/ct_train_{case}_image.nii.gz`),
BTCV (`img/img{case}.nii.gz`, `label/label{case}.nii.gz`), the Medical Segmentation Decathlon
(`imagesTr/{case}.nii.gz`, `labelsTr/{case}.nii.gz`) and a user's own folder. The source layout is
given as two patterns with `{case}`; any format SimpleITK reads (.nii, .nii.gz, .nrrd, .mha, ...)
is accepted. Each image/label pair must share its geometry and every label value must be in the
registry's mapping (or `ignore`), so a wrong file or label convention stops the import with the
file named instead of surfacing later as a bad Dice. Files are written as .nii.gz with their
geometry unchanged, atomically, plus `import_manifest.json` (source and output sha256).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import write_json
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file
from xmodseg.imageio import check_pair_geometry, write_image
from xmodseg.registry import DatasetSpec

log = logging.getLogger(__name__)


def _read(path: Path, kind: str) -> sitk.Image:
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputDataError(f"{path}: cannot read as an image ({str(exc).strip().splitlines()[-1]})") from None
    if img.GetDimension() != 3:
        raise InputDataError(f"{path}: {img.GetDimension()}-D {kind}, expected a 3-D volume")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputDataError(f"{path}: {kind} has {img.GetNumberOfComponentsPerPixel()} components per voxel, expected 1")
    return img


def import_case(image_src: Path, label_src: Path, image_dst: Path, label_dst: Path, spec: DatasetSpec) -> dict[str, Any]:
    for p in (image_src, label_src):
        if not p.is_file():
            raise InputDataError(f"{p}: not found")
    image = _read(image_src, "image")
    label = _read(label_src, "label")
    check_pair_geometry(image, label, str(image_src), str(label_src))
    arr = sitk.GetArrayViewFromImage(label)
    if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
        raise InputDataError(f"{label_src}: non-integer label values")
    spec.labels.to_indices(np.asarray(arr), label_src)  # raises naming unknown label values
    write_image(image, image_dst)
    if not np.issubdtype(arr.dtype, np.integer):
        label = sitk.Cast(label, sitk.sitkInt16)
    write_image(label, label_dst)
    return {
        "image_source": str(image_src),
        "label_source": str(label_src),
        "image_source_sha256": sha256_file(image_src),
        "label_source_sha256": sha256_file(label_src),
        "image": str(image_dst),
        "label": str(label_dst),
        "image_sha256": sha256_file(image_dst),
        "label_sha256": sha256_file(label_dst),
    }


def import_cases(
    spec: DatasetSpec,
    modality: str,
    source_dir: str | os.PathLike[str],
    resolve: Callable[[Path, str], tuple[Path, Path]],
    described_as: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Import every registry case of `modality`; `resolve(folder, case)` names its source image
    and label. All cases are checked to exist before anything is written. `described_as` goes into
    the manifest (the layout the files were found by)."""
    src = Path(source_dir)
    if not src.is_dir():
        raise InputDataError(f"{src}: import folder not found")
    mod = spec.modality(modality)
    pairs: dict[str, tuple[Path, Path]] = {}
    missing = []
    for c in mod.cases:
        try:
            pairs[c] = resolve(src, c)
        except InputDataError as exc:
            missing.append((c, str(exc)))
            continue
        if not pairs[c][0].is_file():
            missing.append((c, str(pairs[c][0])))
    if missing:
        raise InputDataError(f"{src}: {len(missing)} of {len(mod.cases)} cases of '{modality}' are missing (e.g. case {missing[0][0]}: {missing[0][1]}); check the layout and case ids in the registry")
    records = []
    for case, (image_src, label_src) in pairs.items():
        rec = import_case(image_src, label_src, spec.image_path(modality, case), spec.label_path(modality, case), spec)
        records.append({"case": case, **rec})
        log.info("imported %s case %s", modality, case)
    write_json(spec.root / modality / "import_manifest.json", {"dataset": spec.name, "modality": modality, "source": str(src), "layout": dict(described_as), "cases": records})
    return records


def import_folder(
    spec: DatasetSpec,
    modality: str,
    source_dir: str | os.PathLike[str],
    layout: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Import every registry case of `modality` from `source_dir` laid out as `layout`
    ({"image": "<pattern with {case}>", "label": ...}); returns the per-case records."""

    def resolve(folder: Path, case: str) -> tuple[Path, Path]:
        return tuple(folder / layout[k].format(case=case, modality=modality) for k in ("image", "label"))  # type: ignore[return-value]

    return import_cases(spec, modality, source_dir, resolve, layout)


def list_cases(source_dir: str | os.PathLike[str], pattern: str) -> list[str]:
    """The case ids for which `pattern` (with one `{case}`, e.g. "{case}/lgemri.nrrd") names a file
    in `source_dir`: for releases whose ids are folder names (LA-2018), to paste into the registry."""
    if pattern.count("{case}") != 1:
        raise InputDataError(f"pattern '{pattern}' must contain {{case}} exactly once")
    src = Path(source_dir)
    if not src.is_dir():
        raise InputDataError(f"{src}: not a folder")
    head, tail = pattern.split("{case}")
    found = []
    for path in src.glob(head + "*" + tail):
        rel = path.relative_to(src).as_posix()
        case = rel[len(head): len(rel) - len(tail)]
        if path.is_file() and case:  # `*` never crosses a folder
            found.append(case)
    return sorted(found)
