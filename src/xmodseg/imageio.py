"""Reading and writing NIfTI volumes with SimpleITK, with errors that name the file.

Every read of a user's volume goes through `read_image`: ITK accepts a NIfTI cut short (it fills
the rest with zeros), turns stored NaN/Inf into 0 and reads a zero spacing as 1 mm, all without an
error, so the file's own header and stored values are checked here. `write_image` checks what it
wrote before the rename, because ITK only prints an error when the disk is full.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.arrayproxy import ArrayProxy

from xmodseg.atomic import atomic_path
from xmodseg.errors import ConfigError, InputDataError, XmodsegError

log = logging.getLogger(__name__)

# Geometry tolerance for "same grid" checks, relative to the voxel spacing.
GEOMETRY_RTOL = 1e-3
# Bytes read or decompressed at a time while scanning a file (bounded memory, also for gzip bombs).
_CHUNK = 1 << 22
_FLOAT_PIXELS = {sitk.sitkFloat32, sitk.sitkFloat64}


class ImageWriteError(XmodsegError, OSError):
    """A written volume is missing, empty or incomplete (full disk, quota): nothing is renamed onto
    the final name. An OSError too, so callers that handle I/O errors handle this one."""


class _Incomplete(Exception):
    """A NIfTI file's bytes fall short of what its header promises (detail in the message)."""


def parse_nonfinite(value: object, key: str) -> str | float:
    """The `nonfinite` source option: "error" (default) or a finite number to put in place of NaN/Inf."""
    if value is None or value == "error":
        return "error"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ConfigError(f"{key}: {value!r} is neither 'error' nor a finite number (the value that replaces NaN/Inf voxels)")


def read_image(
    path: str | os.PathLike[str], *, kind: str = "image", nonfinite: str | float = "error", components: int = 1, frame: bool = False
) -> sitk.Image:
    """Read a volume; corrupt, truncated, non-3D, empty files, a non-positive spacing or NaN/Inf
    voxels raise InputDataError naming `path`. With `nonfinite` a number, NaN/Inf voxels get that
    value instead and a warning names the file and the count. `components`: values per voxel (3
    for colour frames). `frame`: a 2D image (a video frame) is read as a volume of one slice."""
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{p}: {kind} file not found")
    if p.stat().st_size == 0:
        raise InputDataError(f"{p}: {kind} file is empty (0 bytes)")
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:  # SimpleITK raises RuntimeError for unreadable/truncated files
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "rror" in line), first[-1] if first else "")
        raise InputDataError(f"{p}: cannot read {kind} (corrupt or truncated file?): {detail.strip()}") from exc
    if frame and img.GetDimension() == 2:
        img = sitk.JoinSeries(img)  # one slice, 1 mm apart
    if img.GetDimension() != 3:
        raise InputDataError(f"{p}: expected a {'2D or ' if frame else ''}3D {kind}, got {img.GetDimension()}D")
    if img.GetNumberOfComponentsPerPixel() != components:
        want = "a scalar" if components == 1 else f"a {components}-channel"
        raise InputDataError(f"{p}: expected {want} {kind}, got {img.GetNumberOfComponentsPerPixel()} components per voxel")
    if min(img.GetSize()) < 1:
        raise InputDataError(f"{p}: {kind} has no voxels (size {img.GetSize()})")
    spacing = np.asarray(img.GetSpacing(), dtype=float)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise InputDataError(f"{p}: {kind} has voxel spacing {_fmt(img.GetSpacing())}; every spacing must be a positive number of mm (fix the file's header)")
    if is_nifti(p):
        header = _nifti_header(p, kind)
        _check_nifti_geometry(p, header, kind)
        try:
            n_bad = _scan_nifti(p, header, check_values=True)
        except _Incomplete as exc:
            raise InputDataError(f"{p}: {kind} file is truncated or corrupt: {exc}") from None
    elif img.GetPixelID() in _FLOAT_PIXELS:  # other readers keep NaN/Inf: count on the image
        arr = sitk.GetArrayViewFromImage(img)
        n_bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    else:
        n_bad = 0
    if n_bad:
        img = _replace_nonfinite(img, p, kind, n_bad, nonfinite)
    return img


def is_nifti(path: str | os.PathLike[str]) -> bool:
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))


def _open_raw(p: Path) -> io.BufferedIOBase:
    return gzip.open(p, "rb") if p.name.lower().endswith(".gz") else open(p, "rb")


def _nifti_header(p: Path, kind: str) -> nib.Nifti1Header | nib.Nifti2Header:
    """The header as stored in the file (a loaded image's header has vox_offset reset to 0)."""
    try:
        with _open_raw(p) as fh:
            block = fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputDataError(f"{p}: cannot read {kind} header (corrupt or truncated file?): {exc}") from None
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        n = klass.sizeof_hdr
        if len(block) >= n and n in (int.from_bytes(block[:4], "little"), int.from_bytes(block[:4], "big")):
            try:
                header = klass(block[:n], check=False)
                header.get_data_dtype(), header.get_data_shape()  # unknown datatype codes raise here
                return header
            except Exception as exc:  # nibabel raises several types for broken headers
                raise InputDataError(f"{p}: cannot read {kind} header: {exc}") from None
    raise InputDataError(f"{p}: cannot read {kind} header: not a NIfTI-1 or NIfTI-2 header (sizeof_hdr is neither 348 nor 540)")


def _check_nifti_geometry(p: Path, header: nib.Nifti1Header, kind: str) -> None:
    """ITK reads a zero pixdim as 1 mm, and takes the spacing from pixdim even when the sform says
    otherwise (a warning only): refuse both instead of guessing."""
    ndim = int(header["dim"][0])
    pix = np.asarray(header["pixdim"][1 : 1 + min(max(ndim, 1), 3)], dtype=float)
    if not (np.isfinite(pix).all() and (pix > 0).all()):
        raise InputDataError(f"{p}: {kind} header has voxel spacing (pixdim) {_fmt(pix)}; every spacing must be a positive number of mm (fix the header, e.g. re-export the scan)")
    if int(header["sform_code"]) > 0 and len(pix) == 3:
        sform = np.asarray(header.get_sform(), dtype=float)
        if not np.isfinite(sform).all():
            raise InputDataError(f"{p}: {kind} header has a non-finite sform matrix")
        norms = np.linalg.norm(sform[:3, :3], axis=0)
        if not np.allclose(norms, pix, rtol=GEOMETRY_RTOL, atol=0):
            raise InputDataError(
                f"{p}: {kind} header is inconsistent: the sform's voxel sizes {_fmt(norms)} disagree with pixdim {_fmt(pix)} "
                "(ITK would use pixdim); fix the header so both give the spacing"
            )


def _raw_bytes(p: Path) -> Iterator[bytes]:
    """The file's bytes, decompressed if gzip, in chunks of at most _CHUNK. A corrupt or cut gzip
    stream raises _Incomplete (the CRC and length at its end are checked by zlib)."""
    with open(p, "rb") as fh:
        if not p.name.lower().endswith(".gz"):
            while chunk := fh.read(_CHUNK):
                yield chunk
            return
        d, fed = _gunzip(), False
        try:
            while chunk := fh.read(_CHUNK):
                data = chunk
                while True:
                    if d.eof:  # concatenated gzip members; zero padding after the last is tolerated
                        if not data.strip(b"\0"):
                            break
                        d = _gunzip()
                    out = d.decompress(data, _CHUNK)
                    fed = True
                    if out:
                        yield out
                    data = d.unused_data if d.eof else d.unconsumed_tail
                    if not d.eof and not data and len(out) < _CHUNK:
                        break
        except zlib.error as exc:
            raise _Incomplete(f"corrupt gzip stream ({exc})") from None
        if fed and not d.eof:
            raise _Incomplete("the gzip stream ends before its end marker")


def _gunzip():
    return zlib.decompressobj(zlib.MAX_WBITS | 16)


def _scan_nifti(p: Path, header: nib.Nifti1Header, *, check_values: bool) -> int:
    """Compare the bytes the header promises (from the stored vox_offset) with what the file holds,
    streaming; with `check_values`, also count stored NaN/Inf voxels (float types)."""
    dtype = header.get_data_dtype()
    offset = max(int(header.get_data_offset()), int(header.sizeof_hdr))
    end = offset + int(np.prod(header.get_data_shape(), dtype=np.int64)) * dtype.itemsize
    check = check_values and dtype.kind in "fc"
    if not check and not p.name.lower().endswith(".gz"):
        held = p.stat().st_size
    else:
        held, carry, bad = 0, b"", 0
        for chunk in _raw_bytes(p):
            lo, hi = max(offset - held, 0), min(end - held, len(chunk))
            held += len(chunk)
            if check and lo < hi:
                part = carry + chunk[lo:hi] if carry else chunk[lo:hi]
                whole = len(part) // dtype.itemsize
                values = np.frombuffer(part, dtype, count=whole)
                bad += whole - int(np.count_nonzero(np.isfinite(values)))
                carry = part[whole * dtype.itemsize :]
    if held < end:
        raise _Incomplete(f"header promises {end} bytes (data from byte {offset}), file holds {held}")
    return bad if check else 0


def _replace_nonfinite(img: sitk.Image, p: Path, kind: str, n_bad: int, nonfinite: str | float) -> sitk.Image:
    """ITK's NIfTI reader has already turned stored NaN/Inf into 0: locate them in the stored values."""
    if nonfinite == "error" or kind != "image":
        hint = " (or set the source option `nonfinite: <value>` to replace them)" if kind == "image" else ""
        raise InputDataError(f"{p}: {kind} has {n_bad} NaN or Inf voxels; fix the file{hint}")
    arr = sitk.GetArrayFromImage(img)
    if is_nifti(p):
        image = cast(nib.Nifti1Image, nib.load(str(p)))  # is_nifti: NIfTI-1, or NIfTI-2 (a subclass)
        stored = np.asanyarray(cast(ArrayProxy, image.dataobj).get_unscaled())  # a freshly loaded image holds a proxy
        mask = ~np.isfinite(stored.reshape(stored.shape[:3], order="F")).T  # nibabel [x, y, z] -> [z, y, x]
    else:
        mask = ~np.isfinite(arr)
    arr[mask] = nonfinite
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    log.warning("%s: %d NaN or Inf voxels replaced by %g (source option `nonfinite`)", p, int(mask.sum()), nonfinite)
    return out


def check_nonempty_image(img: sitk.Image, path: str | os.PathLike[str]) -> None:
    """An image whose voxels are all one value carries no anatomy: stop instead of training on it."""
    arr = sitk.GetArrayViewFromImage(img)
    if not np.isfinite(arr).all():
        raise InputDataError(f"{path}: image contains NaN or Inf values")
    if float(arr.max()) == float(arr.min()):
        raise InputDataError(f"{path}: image is empty (every voxel equals {float(arr.min())})")


def same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return not geometry_differences(a, b)


def geometry_differences(a: sitk.Image, b: sitk.Image) -> list[str]:
    """The grid properties (size, spacing, origin, direction) on which `a` and `b` differ."""
    if a.GetSize() != b.GetSize():
        return ["size"]
    tol = GEOMETRY_RTOL * float(np.min(a.GetSpacing()))
    checks = {
        "spacing": np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=GEOMETRY_RTOL, atol=0),
        "origin": np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=max(tol, 1e-4)),
        "direction": np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-4),
    }
    return [name for name, ok in checks.items() if not ok]


def check_pair_geometry(image: sitk.Image, label: sitk.Image, image_path: str | os.PathLike[str], label_path: str | os.PathLike[str]) -> None:
    """Image and label must share one voxel grid; otherwise labels would be misplaced silently."""
    differ = geometry_differences(image, label)
    if not differ:
        return
    raise InputDataError(
        f"{label_path}: label geometry does not match image {image_path} (differs in {', '.join(differ)}): "
        f"size {label.GetSize()} vs {image.GetSize()}, spacing {_fmt(label.GetSpacing())} vs {_fmt(image.GetSpacing())}, "
        f"origin {_fmt(label.GetOrigin())} vs {_fmt(image.GetOrigin())}, direction {_fmt(label.GetDirection())} vs {_fmt(image.GetDirection())}"
    )


def write_image(img: sitk.Image, path: str | os.PathLike[str], *, compress: bool = True, reported_as: str | os.PathLike[str] | None = None) -> None:
    """Write atomically (temp file + rename), after checking the temp file is complete: on a full
    disk ITK prints an error but returns, and the rename would commit a truncated file.
    `reported_as`: the name errors give, when `path` is itself a staging name."""
    final = Path(reported_as or path)
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(img, str(tmp), compress)
        except RuntimeError as exc:
            detail = str(exc).strip().splitlines()
            raise ImageWriteError(f"{final}: cannot write ({detail[-1] if detail else exc}); disk full or no permission?") from None
        problem = _written_problem(tmp, img)
        if problem:
            raise ImageWriteError(f"{final}: writing failed, the written file is {problem}; disk full? (nothing was written under this name)")


def _written_problem(tmp: Path, img: sitk.Image) -> str | None:
    """Why the freshly written `tmp` cannot be the image `img` (None if it is complete)."""
    size = tmp.stat().st_size if tmp.is_file() else 0
    if size == 0:
        return "empty (0 bytes)"
    if not is_nifti(tmp):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(tmp))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return f"unreadable ({size} bytes)"
        return None if tuple(reader.GetSize()) == img.GetSize() else f"of size {reader.GetSize()}, not {img.GetSize()}"
    try:
        header = _nifti_header(tmp, "image")
        _scan_nifti(tmp, header, check_values=False)
    except InputDataError:
        return f"unreadable ({size} bytes)"
    except _Incomplete as exc:
        return f"incomplete: {exc}"
    shape = tuple(int(v) for v in header.get_data_shape())
    if shape[: img.GetDimension()] != img.GetSize():
        return f"of shape {shape}, not {img.GetSize()}"
    return None


def geometry_dict(img: sitk.Image) -> dict[str, list[float] | list[int]]:
    return {
        "size": list(img.GetSize()),
        "spacing": [float(v) for v in img.GetSpacing()],
        "origin": [float(v) for v in img.GetOrigin()],
        "direction": [float(v) for v in img.GetDirection()],
    }


def reference_image(geometry: dict, pixel_id: int = sitk.sitkUInt8) -> sitk.Image:
    """An empty image on the grid described by `geometry_dict` output."""
    ref = sitk.Image([int(v) for v in geometry["size"]], pixel_id)
    ref.SetSpacing([float(v) for v in geometry["spacing"]])
    ref.SetOrigin([float(v) for v in geometry["origin"]])
    ref.SetDirection([float(v) for v in geometry["direction"]])
    return ref


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
