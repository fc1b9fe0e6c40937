"""Every knob of the synthetic phantom, with defaults that give MM-WHS-like crops in about a second.

Ranges are `(low, high)` pairs sampled uniformly per subject; the registry entry
`datasets.<name>.source.params` overrides any field by name. The registry's `source.version`
picks the phantom version (1 when absent): `PhantomParams.defaults(version)`. The dataclass
defaults are version 2; version 1 keeps its original values, has the version-2 features off and
does not accept their names (so an old entry means exactly what it meant).
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

    version: int = 2  # phantom version (1: homogeneous tissues, smooth bias; 2: xmodseg.synth.render_v2)

    # --- CT grid: near-axial, stored with a left-right/anterior-posterior flip (RAS-like index order)
    ct_spacing_mm: Triple = (1.25, 1.25, 1.25)
    ct_fov_mm: Triple = (190.0, 190.0, 180.0)
    # --- MR grid: coronal slice stack, tilted obliquely; spacing/FOV in index order (in-plane, in-plane, slice)
    mr_spacing_mm: Triple = (1.5, 1.5, 4.5)
    mr_fov_mm: Triple = (210.0, 195.0, 180.0)
    mr_subslices: int = 3  # odd: sub-slices averaged for through-slice partial volume
    mr_oblique_deg: Pair = (10.0, 25.0)
    fov_jitter_mm: float = 8.0  # random shift of the FOV centre relative to the heart
    # --- anatomy variability (version 2: wider ranges than version 1's, see _V1_VALUES)
    heart_rotation_deg: float = 13.0
    heart_scale_jitter: float = 0.16
    heart_offset_mm: float = 10.5
    chamber_jitter: float = 0.10  # extra per-chamber size variation (fraction)
    deform_amplitude_mm: float = 3.3
    deform_wavelength_mm: Pair = (65.0, 160.0)
    deform_components: int = 4
    myo_thickness_mm: Pair = (8.0, 12.0)
    lv_cavity_radius_mm: Pair = (19.5, 25.5)
    lv_cavity_length_mm: Pair = (51.0, 65.0)
    aorta_radius_mm: Pair = (11.5, 16.5)
    epicardial_fat_mm: Pair = (2.5, 9.0)
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
    ct_blood_hu: Pair = (280.0, 550.0)  # left-heart contrast blood (bolus timing and dose)
    ct_myocardium_hu: Pair = (90.0, 150.0)
    ct_noise_hu: Pair = (20.0, 40.0)  # noise std at the scan's voxel size
    ct_psf_sigma_mm: float = 0.7
    # --- version 2 only (ignored, and refused as overrides, in version 1). Why each exists: the
    # cross-modality gap of real data is more than a tissue lookup table (README "The synthetic phantom").
    # anatomy: LV cavity interior that does not look like blood (labelled LV cavity, as in MM-WHS)
    trabecular_mm: Pair = (0.5, 2.0)  # trabeculated inner layer of the LV cavity
    papillary_radius_mm: Pair = (2.0, 3.0)  # two papillary muscles
    aorta_course_mm: float = 5.0  # extra random displacement of the ascending aorta's centre line
    fat_pad_mm: Pair = (0.0, 30.0)  # size of the pericardial fat pads at the apex and over the RV (0: none)
    # tissue texture: spatially correlated heterogeneity inside every tissue (scale 0 = homogeneous)
    texture_scale: Pair = (0.7, 1.3)  # per subject, x the per-tissue amplitudes of xmodseg.synth.render_v2
    texture_corr_mm: Pair = (4.0, 8.0)  # correlation length of the texture fields
    # MR artefacts
    mr_coil_falloff_mm: Pair = (100.0, 180.0)  # surface-coil sensitivity decay length with depth (anterior, posterior)
    mr_coil_posterior: Pair = (0.4, 0.9)  # posterior array sensitivity relative to the anterior one
    mr_coil_max: float = 3.0  # sensitivity cap near the arrays, relative to the heart centre
    mr_banding_depth: Pair = (0.3, 0.7)  # bSSFP off-resonance dark bands: signal loss at the band centre
    mr_banding_cycles: Pair = (0.0, 0.7)  # off-resonance phase range over the FOV, in cycles (0: no band)
    mr_chemical_shift: Pair = (0.1, 0.3)  # signal loss of voxels at fat/water boundaries (out-of-phase bSSFP)
    mr_flow_void: Pair = (0.0, 0.6)  # signal loss in the dephasing jet of the aortic root
    # CT artefacts and contrast timing
    ct_noise_corr_mm: float = 2.5  # noise correlation length (the reconstruction filter's non-white noise)
    ct_svc_hu: Pair = (300.0, 2500.0)  # undiluted contrast in the superior vena cava (arm injection)
    ct_streak_fraction: Pair = (0.1, 0.25)  # peak streak amplitude next to the SVC, as a fraction of its HU
    ct_beam_hardening_hu: Pair = (40.0, 120.0)  # dark band between the dense SVC and the spine
    ct_right_heart_ratio: Pair = (0.4, 0.9)  # right-heart blood HU / left-heart blood HU (bolus timing)

    @classmethod
    def defaults(cls, version: int = 2) -> PhantomParams:
        """The defaults of phantom `version` (1 or 2)."""
        if version == 1:
            return dataclasses.replace(cls(), version=1, **_V1_VALUES)
        if version == 2:
            return cls()
        raise ValueError(f"unknown phantom version {version!r} (known: 1, 2)")

    @classmethod
    def from_overrides(
        cls, overrides: Mapping[str, Any] | None, key: str = "datasets.synthetic.source.params", version: int = 2
    ) -> PhantomParams:
        """Defaults of `version` updated by `overrides`; an unknown name or a bad value raises ConfigError naming `key.name`."""
        defaults = cls.defaults(version)
        known = _V1_FIELD_NAMES if version == 1 else _FIELD_NAMES
        values: dict[str, Any] = {}
        for name, raw in (overrides or {}).items():
            if name in _FIELD_NAMES and name not in known:
                raise ConfigError(f"{key}.{name}: a phantom version 2 parameter; set source.version: 2 to use it")
            if name not in known:
                raise ConfigError(f"{key}.{name}: unknown phantom parameter (known: {', '.join(sorted(known))})")
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
        if self.version == 2:
            out += self._problems_v2()
        elif self.version == 1:
            out += [(n, "a phantom version 2 parameter; version 1 has it off") for n, off in _V2_ONLY_OFF.items() if getattr(self, n) != off]
        else:
            out.append(("version", "must be 1 or 2"))
        return out

    def _problems_v2(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name in ("texture_corr_mm", "mr_coil_falloff_mm", "papillary_radius_mm"):
            if getattr(self, name)[0] <= 0:
                out.append((name, "values must be > 0"))
        for name in ("trabecular_mm", "fat_pad_mm", "texture_scale", "mr_coil_posterior", "mr_banding_cycles", "ct_streak_fraction", "ct_beam_hardening_hu"):
            if getattr(self, name)[0] < 0:
                out.append((name, "values must be >= 0"))
        for name in ("mr_banding_depth", "mr_chemical_shift", "mr_flow_void"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi > 1:
                out.append((name, "values must be in [0, 1] (a fraction of the signal)"))
        for name in ("aorta_course_mm", "ct_noise_corr_mm"):
            if getattr(self, name) < 0:
                out.append((name, "must be >= 0"))
        if self.mr_coil_max < 1:
            out.append(("mr_coil_max", "must be >= 1 (the sensitivity is 1 at the heart centre)"))
        if self.ct_right_heart_ratio[0] <= 0:
            out.append(("ct_right_heart_ratio", "values must be > 0"))
        if self.trabecular_mm[1] >= self.lv_cavity_radius_mm[0] / 2:
            out.append(("trabecular_mm", f"must stay below half the smallest LV cavity radius ({self.lv_cavity_radius_mm[0] / 2:g} mm)"))
        return out

    def as_dict(self) -> dict[str, Any]:
        """Every parameter of this version (version 1: exactly its original fields, as its cards list them)."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "version"]
        if self.version == 1:
            names = [n for n in names if n in _V1_FIELD_NAMES]
        return {n: (list(v) if isinstance(v := getattr(self, n), tuple) else v) for n in names}


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(PhantomParams)) - {"version"}
# Version 1's values where version 2 differs (its wider anatomy and appearance ranges), and the
# version-2-only features switched off.
_V2_ONLY_OFF: dict[str, Any] = {
    "trabecular_mm": (0.0, 0.0),
    "papillary_radius_mm": (0.0, 0.0),
    "aorta_course_mm": 0.0,
    "fat_pad_mm": (0.0, 0.0),
    "texture_scale": (0.0, 0.0),
    "texture_corr_mm": (0.0, 0.0),
    "mr_coil_falloff_mm": (0.0, 0.0),
    "mr_coil_max": 0.0,
    "mr_coil_posterior": (0.0, 0.0),
    "mr_banding_depth": (0.0, 0.0),
    "mr_banding_cycles": (0.0, 0.0),
    "mr_chemical_shift": (0.0, 0.0),
    "mr_flow_void": (0.0, 0.0),
    "ct_noise_corr_mm": 0.0,
    "ct_svc_hu": (0.0, 0.0),
    "ct_streak_fraction": (0.0, 0.0),
    "ct_beam_hardening_hu": (0.0, 0.0),
    "ct_right_heart_ratio": (0.0, 0.0),
}
_V1_VALUES: dict[str, Any] = {
    "heart_rotation_deg": 12.0,
    "heart_scale_jitter": 0.15,
    "heart_offset_mm": 10.0,
    "chamber_jitter": 0.08,
    "deform_amplitude_mm": 3.0,
    "deform_wavelength_mm": (70.0, 160.0),
    "deform_components": 4,
    "lv_cavity_radius_mm": (20.0, 25.0),
    "lv_cavity_length_mm": (52.0, 64.0),
    "aorta_radius_mm": (12.0, 16.0),
    "epicardial_fat_mm": (3.0, 8.0),
    "ct_blood_hu": (250.0, 400.0),
    "ct_myocardium_hu": (80.0, 130.0),
    "ct_noise_hu": (15.0, 30.0),
    **_V2_ONLY_OFF,
}
_V1_FIELD_NAMES = _FIELD_NAMES - set(_V2_ONLY_OFF)


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
