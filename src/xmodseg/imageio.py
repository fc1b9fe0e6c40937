"""Reading and writing NIfTI volumes with SimpleITK, with errors that name the file."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import nibabel as nib

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import atomic_path
from xmodseg.errors import InputDataError

# Geometry tolerance for "same grid" checks, relative to the voxel spacing.
GEOMETRY_RTOL = 1e-3


def read_image(path: str | os.PathLike[str], *, kind: str = "image") -> sitk.Image:
    """Read a volume; corrupt, truncated, non-3D or empty files raise InputDataError naming `path`."""
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
    _check_nifti_complete(p, kind)
    if img.GetDimension() != 3:
        raise InputDataError(f"{p}: expected a 3D {kind}, got {img.GetDimension()}D")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputDataError(f"{p}: expected a scalar {kind}, got {img.GetNumberOfComponentsPerPixel()} components")
    if min(img.GetSize()) < 1:
        raise InputDataError(f"{p}: {kind} has no voxels (size {img.GetSize()})")
    return img


def _check_nifti_complete(p: Path, kind: str) -> None:
    """ITK reads a NIfTI whose voxel data is cut short without complaint; compare the byte count the
    header promises with what the file holds."""
    name = p.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    try:
        header = nib.load(str(p)).header
        expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    except Exception as exc:  # nibabel raises many types for broken headers
        raise InputDataError(f"{p}: cannot read {kind} header: {exc}") from exc
    if name.endswith(".gz"):
        actual = 0
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            with open(p, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    actual += len(d.decompress(chunk))
                    while d.unused_data:  # concatenated gzip members
                        rest = d.unused_data
                        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                        actual += len(d.decompress(rest))
        except zlib.error as exc:
            raise InputDataError(f"{p}: cannot read {kind} (corrupt gzip stream): {exc}") from exc
    else:
        actual = p.stat().st_size
    if actual < expected:
        raise InputDataError(f"{p}: {kind} file is truncated: header promises {expected} bytes, file holds {actual}")


def check_nonempty_image(img: sitk.Image, path: str | os.PathLike[str]) -> None:
    """An image whose voxels are all one value carries no anatomy: stop instead of training on it."""
    arr = sitk.GetArrayViewFromImage(img)
    if not np.isfinite(arr).all():
        raise InputDataError(f"{path}: image contains NaN or Inf values")
    if float(arr.max()) == float(arr.min()):
        raise InputDataError(f"{path}: image is empty (every voxel equals {float(arr.min())})")


def same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    if a.GetSize() != b.GetSize():
        return False
    sp = np.asarray(a.GetSpacing())
    tol = GEOMETRY_RTOL * float(sp.min())
    return (
        np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=GEOMETRY_RTOL, atol=0)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=max(tol, 1e-4))
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-4)
    )


def check_pair_geometry(image: sitk.Image, label: sitk.Image, image_path: str | os.PathLike[str], label_path: str | os.PathLike[str]) -> None:
    """Image and label must share one voxel grid; otherwise labels would be misplaced silently."""
    if same_geometry(image, label):
        return
    raise InputDataError(
        f"{label_path}: label geometry does not match image {image_path}: "
        f"size {label.GetSize()} vs {image.GetSize()}, spacing {_fmt(label.GetSpacing())} vs {_fmt(image.GetSpacing())}, "
        f"origin {_fmt(label.GetOrigin())} vs {_fmt(image.GetOrigin())}"
    )


def write_image(img: sitk.Image, path: str | os.PathLike[str], *, compress: bool = True) -> None:
    """Write atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), compress)


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


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
