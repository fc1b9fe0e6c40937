"""The `download`/`import` stage: get a registry data set's files into its raw layout.

Registry `source:` kinds handled here (the synthetic phantom is `xmodseg synth`):

- `download`: `files: [{url, sha256 | md5, name}]` fetched into `data/downloads/<dataset>/`
  (resumable, verified), archives extracted safely; https only and a checksum required unless the
  file's entry says `insecure: true` (http://, file://) or `allow_unpinned: true` (no checksum);
- `import`: data behind a registration (MM-WHS, BTCV, ACDC, LA-2018, CaDIS). `path:` points to the
  user's archive or folder; without it, or if it does not exist, the stage stops saying where to
  request the data (`request:`) and where to put it.

Then `importer:` converts each modality with `layout:` (patterns relative to the extracted or
given folder): `folder` (NIfTI/any ITK format pairs), `dicom_masks` (DICOM series + PNG masks) or
`acdc` (ED/ES frames named by each patient's Info.cfg; no layout needed) or `cadis` (one RGB
video frame per case, `VideoNN/Images|Labels/<case>.png`; no layout needed).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xmodseg.atomic import write_json
from xmodseg.datasets.archive import extract
from xmodseg.datasets.download import download, sha256_of
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.registry import DatasetSpec, check_name

log = logging.getLogger(__name__)

KINDS = ("download", "import", "sifa_release")  # sifa_release: imported like `import`
FILE_KEYS = ("url", "name", "sha256", "md5", "size", "insecure", "allow_unpinned")


class DataNotProvided(InputDataError):
    """A registration-gated data set is not where the config says (the message says what to do)."""


def check_file_entry(f: Any, key: str) -> dict[str, Any]:
    """One `files:` entry of a download source: known keys only (a misspelt `allow_unpinned` must
    not pass unnoticed), a plain file name, and the two opt-outs as real booleans."""
    if not isinstance(f, Mapping):
        raise ConfigError(f"{key}: expected a mapping with url, name and sha256")
    unknown = sorted(set(f) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {unknown} (valid: {list(FILE_KEYS)})")
    for required in ("url", "name"):
        if not isinstance(f.get(required), str):
            raise ConfigError(f"{key}.{required} is required (a string)")
    check_name(f["name"], f"{key}.name", "file name")  # a plain name: the file stays in the downloads folder
    for flag in ("insecure", "allow_unpinned"):
        if not isinstance(f.get(flag, False), bool):
            raise ConfigError(f"{key}.{flag}: expected true or false, got {f[flag]!r}")
    return dict(f)


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def prepare_source(
    spec: DatasetSpec, modality: str, downloads: str | os.PathLike[str], marker: str | os.PathLike[str], path: str | None = None
) -> dict[str, Any]:
    """Download or locate one modality's files; writes `marker` (JSON: the folder importers read
    from, and the checksums of what it came from). `path` (from the workflow config) overrides
    the registry's `source.path` of an `import` source."""
    src: dict[str, Any] = dict(spec.source_of(modality))
    if path:
        src["path"] = path
    kind = src.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"datasets.{spec.name}.source.kind: '{kind}' is not one of {KINDS}")
    base = Path(downloads)
    record: dict[str, Any] = {"dataset": spec.name, "modality": modality, "kind": kind, "files": []}
    if kind == "download":
        files = src.get("files") or []
        own = "files" in (spec.modality(modality).source or {})
        key = f"datasets.{spec.name}{f'.modalities.{modality}' if own else ''}.source.files"
        if not files:
            raise ConfigError(f"{key}: empty")
        for i, entry in enumerate(files):
            f = check_file_entry(entry, f"{key}[{i}]")
            opts = {"insecure": f.get("insecure", False), "allow_unpinned": f.get("allow_unpinned", False)}
            dest = download(f["url"], base / f["name"], f.get("sha256"), md5=f.get("md5"), size=f.get("size"), **opts)
            record["files"].append({"url": f["url"], "path": str(dest), "sha256": sha256_of(dest)})
        archives = [Path(r["path"]) for r in record["files"] if _is_archive(Path(r["path"]))]
        folder = base / "extracted"
        for a in archives:
            extract(a, folder / a.name.split(".")[0])
        record["folder"] = str(folder)
    else:  # import, sifa_release
        raw = src.get("path")
        where = "put the archive or folder somewhere and set `data_path: <it>` in your workflow config (or source.path in the registry)"
        if not raw:
            raise DataNotProvided(f"data set '{spec.name}' needs registration: request it at {src.get('request', '(see README)')}, then {where}")
        located = Path(os.path.expanduser(str(raw)))
        if not located.exists():
            raise DataNotProvided(f"{located}: not found (data set '{spec.name}'; request it at {src.get('request', '(see README)')}, then {where})")
        if located.is_file():
            if not _is_archive(located):
                raise InputDataError(f"{located}: not a folder or a zip/tar archive")
            digest = sha256_of(located)
            if src.get("sha256") and digest != src["sha256"]:
                raise InputDataError(f"{located}: sha256 {digest} is not the registry's {src['sha256']} (a different release or a damaged copy)")
            folder = base / "extracted" / located.name.split(".")[0]
            extract(located, folder)
            record["files"].append({"path": str(located), "sha256": digest})
            record["folder"] = str(folder)
        else:
            record["folder"] = str(located)
    if src.get("subdir"):
        record["folder"] = str(Path(record["folder"]) / src["subdir"])
    write_json(marker, record)
    return record


def release_tfrecords(spec: DatasetSpec, modality: str, marker: str | os.PathLike[str]) -> list[Path]:
    """The release's training tfrecords of `modality` (`source.train_glob` under the source folder)."""
    folder = Path(json.loads(Path(marker).read_text())["folder"])
    pattern = spec.source_of(modality).get("train_glob")
    if not pattern:
        raise ConfigError(f"datasets.{spec.name}: source.train_glob for '{modality}' is missing")
    files = sorted(folder.glob(pattern))
    if not files:
        raise InputDataError(f"{folder}: no files match {pattern} (the release's training tfrecords of '{modality}')")
    return files


def import_modality(spec: DatasetSpec, modality: str, marker: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Convert one modality from the prepared source folder into the registry layout."""
    folder = Path(json.loads(Path(marker).read_text())["folder"])
    src = spec.source_of(modality)
    importer = src.get("importer", "folder")
    if importer == "acdc":  # finds its files through each patient's Info.cfg
        from xmodseg.datasets.acdc import import_acdc

        return import_acdc(spec, modality, folder)
    if importer == "cadis":  # one frame per case; the video folder follows from the frame's id
        from xmodseg.datasets.cadis import import_cadis

        return import_cadis(spec, modality, folder)
    layout = src.get("layout")
    if not layout:
        raise ConfigError(f"datasets.{spec.name}: source.layout for '{modality}' is missing (patterns of the source files)")
    if importer == "folder":
        from xmodseg.datasets.nifti_folder import import_folder

        _check_msd_cases(spec, modality, folder)
        return import_folder(spec, modality, folder, layout)
    if importer == "dicom_masks":
        from xmodseg.datasets.dicom_series import CHAOS_MR_RANGES, import_series_with_masks

        ranges = {int(k): tuple(v) for k, v in (src.get("mask_ranges") or CHAOS_MR_RANGES).items()}
        return import_series_with_masks(spec, modality, folder, layout, ranges)
    raise ConfigError(f"datasets.{spec.name}.source.importer: '{importer}' is not folder, dicom_masks, acdc or cadis")


def _check_msd_cases(spec: DatasetSpec, modality: str, folder: Path) -> None:
    """A Decathlon task lists its training cases in dataset.json: name any disagreement."""
    meta = folder / "dataset.json"
    if not meta.is_file():
        return
    listed = {Path(t["image"]).name.split(".")[0] for t in json.loads(meta.read_text()).get("training", [])}
    missing = sorted(set(spec.modality(modality).cases) - listed)
    if missing:
        raise InputDataError(f"{meta}: cases {missing[:10]} of the registry are not in this task's training list")
