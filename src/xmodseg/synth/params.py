"""Every knob of the synthetic phantom, with defaults that give MM-WHS-like crops in about a second.

Ranges are `(low, high)` pairs sampled uniformly per subject; the registry entry
`datasets.<name>.source.params` overrides any field by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xmodseg.errors import ConfigError

Pair = tuple[float, float]
Triple = tuple[float, float, float]


@dataclass(frozen=True)
class PhantomParams:
    """Geometry, anatomy variability and appearance of the two phantom modalities."""

    # --- CT grid: near-axial, stored with a left-right/anterior-posterior flip (RAS-like index order)
    ct_spacing_mm: Triple = (1.25, 1.25, 1.25)
    ct_fov_mm: Triple = (190.0, 190.0, 180.0)
    # --- MR grid: coronal slice stack, tilted obliquely; spacing/FOV in index order (in-plane, in-plane, slice)
    mr_spacing_mm: Triple = (1.5, 1.5, 4.5)
    mr_fov_mm: Triple = (210.0, 195.0, 180.0)
    mr_subslices: int = 3  # odd: sub-slices averaged for through-slice partial volume
    mr_oblique_deg: Pair = (10.0, 25.0)
    fov_jitter_mm: float = 8.0  # random shift of the FOV centre relative to the heart
    # --- anatomy variability
    heart_rotation_deg: float = 12.0
    heart_scale_jitter: float = 0.15
    heart_offset_mm: float = 10.0
    chamber_jitter: float = 0.08  # extra per-chamber size variation (fraction)
    deform_amplitude_mm: float = 3.0
    deform_wavelength_mm: Pair = (70.0, 160.0)
    deform_components: int = 4
    myo_thickness_mm: Pair = (8.0, 12.0)
    lv_cavity_radius_mm: Pair = (20.0, 25.0)
    lv_cavity_length_mm: Pair = (52.0, 64.0)
    aorta_radius_mm: Pair = (12.0, 16.0)
    epicardial_fat_mm: Pair = (3.0, 8.0)
    subcutaneous_fat_mm: Pair = (6.0, 25.0)
    body_scale_jitter: float = 0.08
    # --- appearance, both modalities
    tissue_jitter: float = 0.10  # per-subject relative jitter of tissue values
    # --- MR (bSSFP-like)
    mr_gain: Pair = (200.0, 2000.0)  # log-uniform global gain (arbitrary units)
    mr_bias_amplitude: float = 0.25  # peak relative deviation of the multiplicative bias field
    mr_bias_wavelength_mm: Pair = (250.0, 500.0)
    mr_noise_fraction: Pair = (0.025, 0.05)  # Gaussian sigma per channel relative to blood signal
    # --- CT (contrast-enhanced, Hounsfield units)
    ct_blood_hu: Pair = (250.0, 400.0)
    ct_myocardium_hu: Pair = (80.0, 130.0)
    ct_noise_hu: Pair = (15.0, 30.0)
    ct_psf_sigma_mm: float = 0.7

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None, key: str = "datasets.synthetic.source.params") -> PhantomParams:
        """Defaults updated by `overrides`; an unknown name or a bad value raises ConfigError naming `key.name`."""
        defaults = cls()
        values: dict[str, Any] = {}
        for name, raw in (overrides or {}).items():
            if name not in _FIELD_NAMES:
                raise ConfigError(f"{key}.{name}: unknown phantom parameter (known: {', '.join(sorted(_FIELD_NAMES))})")
            values[name] = _coerce(raw, getattr(defaults, name), f"{key}.{name}")
        params = dataclasses.replace(defaults, **values)
        problems = params.problems()
        if problems:
            name, message = problems[0]
            raise ConfigError(f"{key}.{name}: {message}")
        return params

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every value that would make the generator fail or produce nonsense."""
        out: list[tuple[str, str]] = []
        for name in ("ct_spacing_mm", "ct_fov_mm", "mr_spacing_mm", "mr_fov_mm"):
            if min(getattr(self, name)) <= 0:
                out.append((name, "all values must be > 0"))
        for name in ("ct", "mr"):
            sp, fov = getattr(self, f"{name}_spacing_mm"), getattr(self, f"{name}_fov_mm")
            if min(sp) > 0 and min(f / s for f, s in zip(fov, sp)) < 4:
                out.append((f"{name}_fov_mm", "field of view must span at least 4 voxels per axis"))
        if self.mr_subslices < 1 or self.mr_subslices % 2 == 0:
            out.append(("mr_subslices", "must be an odd number >= 1 (the middle sub-slice carries the label)"))
        if self.deform_components < 0:
            out.append(("deform_components", "must be >= 0"))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and len(value) == 2 and value[0] > value[1]:
                out.append((f.name, f"range low {value[0]} is above high {value[1]}"))
        for name in ("heart_scale_jitter", "chamber_jitter", "tissue_jitter", "body_scale_jitter", "mr_bias_amplitude"):
            if not 0 <= getattr(self, name) < 0.5:
                out.append((name, "must be in [0, 0.5)"))
        for name in ("mr_gain", "deform_wavelength_mm", "mr_bias_wavelength_mm", "aorta_radius_mm", "myo_thickness_mm"):
            if getattr(self, name)[0] <= 0:
                out.append((name, "values must be > 0"))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(PhantomParams))


def _coerce(raw: Any, default: Any, key: str) -> Any:
    """Convert a YAML value to the type of the default (lists become tuples of floats)."""
    if isinstance(default, tuple):
        if not isinstance(raw, (list, tuple)) or len(raw) != len(default):
            raise ConfigError(f"{key}: expected a list of {len(default)} numbers, got {raw!r}")
        return tuple(_number(v, key) for v in raw)
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ConfigError(f"{key}: expected true/false, got {raw!r}")
        return raw
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{key}: expected an integer, got {raw!r}")
        return raw
    return _number(raw, key)


def _number(raw: Any, key: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {raw!r}")
    return float(raw)
