"""The slice cache's `manifest.json`: one typed record for the three writers of a cache.

- our preprocessing (`xmodseg.preprocess.pipeline`): z-scored volumes resampled and cropped from the
  raw scans, with the geometry that maps predictions back;
- the SIFA/PnP-AdaNet release (`xmodseg.datasets.sifa_release`, `xmodseg.datasets.tfrecord`):
  training pseudo-cases from tfrecords (no raw scan), test volumes from the released files, in
  SIFA's unit space (`intensity` block, ignored-pixel counts);
- a translated copy of either (`xmodseg.translation.apply`): the source manifest with the
  translated images' hashes, `translated` (which model) and `source_manifest_sha256`.

Optional keys are None when absent and are left out when written. The writers order the keys in
two ways, kept so a manifest's bytes (and the sha256 every later stage records) do not change: a
cache in SIFA's unit space (it has the `intensity` block) lists `preprocess` before
`intensity_space`, our preprocessing after it.

Example:
    >>> m = CacheManifest.load_dir("data/prepared/synthetic/ct")  # doctest: +SKIP
    >>> [c.case for c in m.cases_in("test")]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from xmodseg.artifacts._json import check_keys, read_json
from xmodseg.atomic import write_json
from xmodseg.errors import InputDataError

MANIFEST = "manifest.json"
CACHE_FORMAT = 1
SPLITS = ("train", "test")
_FIX = "rebuild the cache with the preprocess stage"


@dataclass(frozen=True, kw_only=True)
class CaseRecord:
    """One cached volume: its arrays (`image`, `label`: file names inside the cache folder) and, for
    volumes cut from a raw scan, that scan and the grids that map a prediction back onto it."""

    case: str
    split: str
    image: str
    label: str
    shape: list[int]
    image_sha256: str
    label_sha256: str
    classes_present: list[int]
    # from a raw scan (our preprocessing, the release's test volumes; not tfrecord slices)
    source_image: str | None = None
    source_label: str | None = None
    source_image_sha256: str | None = None
    source_label_sha256: str | None = None
    original_geometry: dict[str, Any] | None = None
    resampled_geometry: dict[str, Any] | None = None
    crop_start_zyx: list[int] | None = None
    crop_extent_zyx: list[int] | None = None
    slice_spacing: list[float] | None = None  # this case's, [slice axis, rows, cols] (mm)
    label_crop_loss: dict[str, Any] | None = None  # the labelled voxels the crop removed
    # SIFA's label 5 (no class): raw voxels counted as background (test), pixels cached as IGNORE_INDEX (all)
    ignored_label_voxels: int | None = None
    ignored_pixels: int | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> CaseRecord:
        check_keys(d, _CASE_REQUIRED, _CASE_OPTIONAL, where, _FIX)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k in _CASE_ORDER if (v := getattr(self, k)) is not None}

    @property
    def has_source(self) -> bool:
        """Whether the volume was cut from a raw scan (and can be mapped back onto it)."""
        return self.source_label is not None and self.original_geometry is not None


@dataclass(frozen=True, kw_only=True)
class CacheManifest:
    """What a cache folder holds and how it was made (see the module docstring for the writers)."""

    format: int
    dataset: str
    modality: str
    kind: str  # the modality's kind: "ct", "mr" or "rgb"
    class_names: list[str]
    slice_axis: str  # the name of the slicing axis in preprocess.geometry.SLICE_AXES
    cases: list[CaseRecord]
    slice_spacing: list[float] | None = None  # fixed_spacing preprocessing: the same for every case
    source: dict[str, Any] | None = None  # tfrecords_to_cache: the files read and their sha256
    preprocess: dict[str, Any] | None = None
    intensity_space: str | None = None  # "zscore" or "sifa_unit"
    intensity: dict[str, Any] | None = None  # SIFA's fixed mapping (caches in its unit space)
    norm_stats_sha256: str | None = None
    training_tfrecords: dict[str, str] | None = None
    ignore_index: int | None = None
    ignored_pixels: dict[str, int] | None = None
    ignored_pixels_total: int | None = None
    test_ignored_label_voxels: dict[str, int] | None = None
    translated: dict[str, Any] | None = None  # a translated cache: the translator model that made it
    source_manifest_sha256: str | None = None  # ... and the manifest of the cache it translated

    @classmethod
    def from_dict(cls, d: Any, where: str) -> CacheManifest:
        check_keys(d, _REQUIRED, _OPTIONAL, where, _FIX)
        if not isinstance(d["cases"], list):
            raise _error(where, "'cases' is not a list")
        cases = [CaseRecord.from_dict(c, f"{where} cases[{i}]") for i, c in enumerate(d["cases"])]
        return cls(**{**d, "cases": cases})

    def to_dict(self) -> dict[str, Any]:
        order = _ORDER if self.intensity is not None else _ZSCORE_ORDER
        out: dict[str, Any] = {}
        for k in order:
            v = getattr(self, k)
            if v is not None:
                out[k] = [c.to_dict() for c in v] if k == "cases" else v
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CacheManifest:
        p = Path(path)
        return cls.from_dict(read_json(p, "preprocessing manifest", "run the preprocess stage first"), str(p))

    @classmethod
    def load_dir(cls, cache_dir: str | os.PathLike[str]) -> CacheManifest:
        """The manifest of the cache folder `cache_dir`."""
        return cls.load(Path(cache_dir) / MANIFEST)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    def cases_in(self, split: str) -> list[CaseRecord]:
        if split not in SPLITS:
            raise ValueError(f"split '{split}' is not one of {SPLITS}")
        return [c for c in self.cases if c.split == split]

    @property
    def image_space(self) -> str:
        """The intensity space of the cached images (caches written before it was recorded: z-scored)."""
        return self.intensity_space or "zscore"


def _error(where: str, problem: str) -> InputDataError:
    return InputDataError(f"{where}: {problem} ({_FIX})")


def _field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


_CASE_REQUIRED = ("case", "split", "image", "label", "shape", "image_sha256", "label_sha256", "classes_present")
_CASE_OPTIONAL = tuple(k for k in _field_names(CaseRecord) if k not in _CASE_REQUIRED)
# The key order every writer uses (each writes a subsequence of it).
_CASE_ORDER = (
    "case", "split", "source_image", "source_label", "source_image_sha256", "source_label_sha256", "original_geometry",
    "resampled_geometry", "crop_start_zyx", "crop_extent_zyx", "slice_spacing", "label_crop_loss", "ignored_label_voxels",
    "image", "label", "shape", "image_sha256", "label_sha256", "classes_present", "ignored_pixels",
)  # fmt: skip

_REQUIRED = ("format", "dataset", "modality", "kind", "class_names", "slice_axis", "cases")
_OPTIONAL = tuple(k for k in _field_names(CacheManifest) if k not in _REQUIRED)
# Caches in SIFA's unit space (release, tfrecords): `preprocess` before `intensity_space`.
_ORDER = (
    "format", "dataset", "modality", "kind", "class_names", "slice_axis", "slice_spacing", "source", "preprocess",
    "intensity_space", "intensity", "norm_stats_sha256", "training_tfrecords", "ignore_index", "ignored_pixels",
    "ignored_pixels_total", "test_ignored_label_voxels", "cases", "translated", "source_manifest_sha256",
)  # fmt: skip
# Our preprocessing: `intensity_space` before `preprocess`.
_ZSCORE_ORDER = tuple(
    {"preprocess": "intensity_space", "intensity_space": "preprocess"}.get(k, k) for k in _ORDER
)
