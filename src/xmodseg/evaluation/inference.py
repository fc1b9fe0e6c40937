"""Slice-wise inference on cached target volumes and mapping predictions back to the scan's grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from xmodseg.artifacts.cache import CaseRecord
from xmodseg.errors import InputDataError
from xmodseg.imageio import reference_image
from xmodseg.preprocess.crop import uncrop
from xmodseg.preprocess.geometry import SLICE_AXES, resample_like


@torch.no_grad()
def predict_slices(net: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 32) -> np.ndarray:
    """Argmax labels [S, H, W] for every slice of a [S, H, W] volume, or of [S, C, H, W] colour
    frames (all slices, no remainder dropped)."""
    out = np.empty((images.shape[0], *images.shape[-2:]), dtype=np.uint8)
    for i in range(0, images.shape[0], batch_size):
        batch = torch.from_numpy(np.array(images[i : i + batch_size], dtype=np.float32))
        batch = (batch.unsqueeze(1) if batch.ndim == 3 else batch).to(device)
        out[i : i + batch_size] = net(batch).argmax(dim=1).cpu().numpy().astype(np.uint8)
    return out


def to_original_grid(pred: np.ndarray, record: CaseRecord | Mapping[str, Any], slice_axis: str) -> sitk.Image:
    """Undo slicing, cropping and resampling: a label image on the original scan's voxel grid.

    Nearest-neighbour resampling in physical space, so the result opens aligned with the original
    image in ITK-SNAP or 3D Slicer. `record`: the case's manifest record (as read from the JSON,
    for callers that hold it so).
    """
    rec = record if isinstance(record, CaseRecord) else CaseRecord.from_dict(record, f"case record {record.get('case')}")
    if rec.resampled_geometry is None or rec.original_geometry is None or rec.crop_start_zyx is None:
        raise InputDataError(f"case {rec.case}: its manifest record has no scan geometry (not cut from a raw scan), so it cannot be mapped back")
    return map_back(pred, rec.original_geometry, rec.resampled_geometry, rec.crop_start_zyx, slice_axis)


def map_back(pred: np.ndarray, original: Mapping[str, Any], resampled: Mapping[str, Any], crop_start_zyx: Sequence[int], slice_axis: str) -> sitk.Image:
    """`to_original_grid` from the geometry alone (a scan predicted without a cache record)."""
    zyx = np.moveaxis(pred, 0, SLICE_AXES[slice_axis])
    full = uncrop(zyx, list(crop_start_zyx), list(reversed(resampled["size"])), fill=0)
    on_resampled = sitk.GetImageFromArray(full)
    ref = reference_image(dict(resampled))
    on_resampled.CopyInformation(ref)
    return resample_like(on_resampled, reference_image(dict(original)), "nearest", 0, sitk.sitkUInt8)
