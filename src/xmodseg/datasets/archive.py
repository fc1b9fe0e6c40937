"""Safe extraction of zip and tar archives.

Every member is checked before anything is written: absolute paths, `..` components, symbolic and
hard links, device files and FIFOs are refused (naming the member), so a hostile or broken archive
cannot write outside the target folder. Extraction goes to a temporary sibling folder that replaces
the target only when complete.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from xmodseg.atomic import atomic_dir
from xmodseg.errors import InputDataError


class UnsafeArchive(InputDataError):
    """An archive member would escape the target folder or is not a plain file/folder."""


def _check_name(archive: Path, name: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"{archive}: member '{name}' has an absolute path; refusing to extract")
    if ".." in p.parts:
        raise UnsafeArchive(f"{archive}: member '{name}' contains '..'; refusing to extract")


def check_members(archive: str | os.PathLike[str]) -> list[str]:
    """Names of the archive's members, after checking every one of them."""
    path = Path(archive)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                _check_name(path, info.filename)
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix type recorded (a plain file)
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                    raise UnsafeArchive(f"{path}: member '{info.filename}' is a link or special file; refusing to extract")
            return [i.filename for i in zf.infolist()]
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            names = []
            for m in tf.getmembers():
                _check_name(path, m.name)
                if not (m.isreg() or m.isdir()):
                    what = "link" if (m.issym() or m.islnk()) else "device or special file"
                    raise UnsafeArchive(f"{path}: member '{m.name}' is a {what}; refusing to extract")
                names.append(m.name)
            return names
    raise InputDataError(f"{path}: not a zip or tar archive")


def extract(archive: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Extract `archive` into `target` (replaced as a whole, atomically) after checking it."""
    path, out = Path(archive), Path(target)
    check_members(path)
    with atomic_dir(out) as tmp:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(path) as tf:
                if hasattr(tarfile, "data_filter"):  # second line of defence (Python >= 3.11.4)
                    tf.extractall(tmp, filter="data")
                else:
                    tf.extractall(tmp)  # noqa: S202 - every member was checked above
    return out
