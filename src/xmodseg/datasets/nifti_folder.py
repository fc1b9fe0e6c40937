"""Import scans and labels from any folder layout into the registry's layout, checked.

One importer covers the NIfTI-based sources: MM-WHS 2017 (`ct_train/ct_train_{case}_image.nii.gz`),
BTCV (`img/img{case}.nii.gz`, `label/label{case}.nii.gz`), the Medical Segmentation Decathlon
(`imagesTr/{case}.nii.gz`, `labelsTr/{case}.nii.gz`) and a user's own folder. The source layout is
given as two patterns with `{case}`; any format SimpleITK reads (.nii, .nii.gz, .nrrd, .mha, ...)
is accepted. Each image/label pair must share its geometry and every label value must be in the
registry's mapping (or `ignore`), so a wrong file or label convention stops the import with the
file named instead of surfacing later as a bad Dice. Every file is read through
`xmodseg.imageio.read_image` (truncation, header spacing and NaN/Inf checks); NaN/Inf image voxels
stop the import unless the source says `nonfinite: <value>`. Files are written as .nii.gz with
their geometry unchanged under temporary names, renamed into place only once every case has
passed (a bad case leaves no partial data set, and a previous complete import stays as it was),
then `import_manifest.json` (source and output sha256).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import atomic_path, write_json
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file
from xmodseg.imageio import check_pair_geometry, parse_nonfinite, read_image, write_image
from xmodseg.registry import DatasetSpec

log = logging.getLogger(__name__)


def import_case(
    image_src: Path,
    label_src: Path,
    image_dst: Path,
    label_dst: Path,
    spec: DatasetSpec,
    *,
    nonfinite: str | float = "error",
    staged: contextlib.ExitStack | None = None,
    rgb: bool = False,
    modality: str | None = None,
) -> dict[str, Any]:
    """Check one image/label pair and write it to `image_dst`, `label_dst`; returns its record.
    With `staged`, the files are written under temporary names that the stack renames on exit.
    `rgb`: a colour frame (2D, 3 channels, e.g. PNG) and its 2D label, written as one-slice volumes.
    `modality`: whose label mapping applies (its own, else the data set's)."""
    for p in (image_src, label_src):
        if not p.is_file():
            raise InputDataError(f"{p}: not found")
    image = read_image(image_src, kind="image", nonfinite=nonfinite, components=3 if rgb else 1, frame=rgb)
    label = read_image(label_src, kind="label", frame=rgb)
    check_pair_geometry(image, label, str(image_src), str(label_src))
    arr = sitk.GetArrayViewFromImage(label)
    if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
        raise InputDataError(f"{label_src}: non-integer label values")
    (spec.labels_of(modality) if modality else spec.labels).to_indices(np.asarray(arr), label_src)  # raises naming unknown label values
    image_out, label_out = (image_dst, label_dst) if staged is None else [staged.enter_context(atomic_path(p)) for p in (image_dst, label_dst)]
    write_image(image, image_out, reported_as=image_dst)
    if not np.issubdtype(arr.dtype, np.integer):
        label = sitk.Cast(label, sitk.sitkInt16)
    write_image(label, label_out, reported_as=label_dst)
    return {
        "image_source": str(image_src),
        "label_source": str(label_src),
        "image_source_sha256": sha256_file(image_src),
        "label_source_sha256": sha256_file(label_src),
        "image": str(image_dst),
        "label": str(label_dst),
        "image_sha256": sha256_file(image_out),
        "label_sha256": sha256_file(label_out),
    }


def import_cases(
    spec: DatasetSpec,
    modality: str,
    source_dir: str | os.PathLike[str],
    resolve: Callable[[Path, str], tuple[Path, Path]],
    described_as: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Import every registry case of `modality`; `resolve(folder, case)` names its source image
    and label. All cases are checked to exist before anything is read; the output files take their
    final names only after every case has been checked and written, so a bad case k leaves neither
    cases 1..k-1 of a half import nor a changed previous import. `described_as` goes into the
    manifest (the layout the files were found by)."""
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
    where = f"datasets.{spec.name}.modalities.{modality}.source" if "nonfinite" in (mod.source or {}) else f"datasets.{spec.name}.source"
    nonfinite = parse_nonfinite(spec.source_of(modality).get("nonfinite"), f"{where}.nonfinite")
    manifest = spec.root / modality / "import_manifest.json"
    records = []
    with contextlib.ExitStack() as staged:  # each file under a temporary name, renamed once every case passed
        for case, (image_src, label_src) in pairs.items():
            rec = import_case(image_src, label_src, spec.image_path(modality, case), spec.label_path(modality, case), spec, nonfinite=nonfinite, staged=staged, rgb=mod.kind == "rgb", modality=modality)
            records.append({"case": case, **rec})
            log.info("checked %s case %s", modality, case)
        manifest.unlink(missing_ok=True)  # from here on the files are no longer the previous import's
    write_json(manifest, {"dataset": spec.name, "modality": modality, "source": str(src), "layout": dict(described_as), "cases": records})
    log.info("imported %d %s cases", len(records), modality)
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
