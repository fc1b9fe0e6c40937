"""Modality-aware intensity normalisation whose statistics come from the training split only.

- CT (Hounsfield units are calibrated): clip to a fixed HU window, then z-score with the mean/std
  of the windowed *training* voxels.
- MR (arbitrary units per scan): divide by the scan's own robust maximum (its 99th percentile, a
  property of the image, not of a split), clip to percentiles pooled over the *training* volumes,
  then z-score with the training mean/std.
- RGB (8-bit colour frames): clip to [0, 255], then one z-score with the mean/std of every channel
  of the *training* frames pooled (the channels keep their relative scale).

The statistics are a stored artifact (`norm_stats.json`), never hard-coded constants (SIFA's
-1.8/4.4 and -2.8/3.2 had to be recomputed for every new preprocessing: cchen-cc/SIFA#42).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from xmodseg.errors import InputDataError

MR_SCALE_PERCENTILE = 99.0
RGB_RANGE = (0.0, 255.0)


@dataclass(frozen=True)
class NormStats:
    kind: str
    clip_low: float
    clip_high: float
    mean: float
    std: float
    cases: tuple[str, ...]  # the training cases the statistics were computed from

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cases"] = list(self.cases)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls(d["kind"], float(d["clip_low"]), float(d["clip_high"]), float(d["mean"]), float(d["std"]), tuple(d["cases"]))


def scan_scale(volume: np.ndarray) -> float:
    """Per-scan intensity scale for MR: the 99th percentile of voxels above the scan's minimum."""
    body = volume[volume > volume.min()]
    if body.size == 0:
        raise InputDataError("MR volume has a single intensity value")
    scale = float(np.percentile(body, MR_SCALE_PERCENTILE))
    return scale if scale > 0 else 1.0


def _prepare(volume: np.ndarray, kind: str, ct_window: Sequence[float]) -> np.ndarray:
    if kind == "ct":
        return np.clip(volume, ct_window[0], ct_window[1]).astype(np.float32)
    if kind == "mr":
        return (volume / scan_scale(volume)).astype(np.float32)
    if kind == "rgb":
        return volume.astype(np.float32)
    raise ValueError(f"unknown modality kind '{kind}'")


def fit_stats(
    volumes: dict[str, np.ndarray], kind: str, *, ct_window: Sequence[float], mr_percentiles: Sequence[float]
) -> NormStats:
    """Fit clipping bounds and z-score statistics on the given (training) volumes."""
    if not volumes:
        raise InputDataError("no training volumes to compute normalisation statistics from")
    prepared = np.concatenate([_prepare(v, kind, ct_window).ravel() for v in volumes.values()])
    if kind == "ct":
        lo, hi = float(ct_window[0]), float(ct_window[1])
    elif kind == "rgb":
        lo, hi = RGB_RANGE
    else:
        lo, hi = (float(x) for x in np.percentile(prepared, list(mr_percentiles)))
    clipped = np.clip(prepared, lo, hi)
    std = float(clipped.std())
    return NormStats(kind, lo, hi, float(clipped.mean()), std if std > 0 else 1.0, tuple(volumes))


def apply_stats(volume: np.ndarray, stats: NormStats, *, ct_window: Sequence[float]) -> np.ndarray:
    x = np.clip(_prepare(volume, stats.kind, ct_window), stats.clip_low, stats.clip_high)
    return ((x - stats.mean) / stats.std).astype(np.float32)
