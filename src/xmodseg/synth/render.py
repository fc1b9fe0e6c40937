"""Turning tissue maps into MR-like (bSSFP) and CT-like (contrast CT) images.

The two modalities are made deliberately different, as in MM-WHS: in bSSFP MR blood and fat
are bright, myocardium is darker than skeletal muscle, lung and cortical bone are dark, and the
image carries a smooth coil bias, Rician noise, thick slices and an arbitrary scale; in CT (HU)
contrast blood is bright, fat is dark, myocardium is brighter than fat and bone is brightest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from xmodseg.synth.fields import SineField, random_sine_field
from xmodseg.synth.grid import Grid
from xmodseg.synth.params import PhantomParams
from xmodseg.synth.tissues import NUM_TISSUES, Tissue

# bSSFP signal relative to arterial blood (~T2/T1 weighting).
MR_NOMINAL: dict[Tissue, float] = {
    Tissue.AIR: 0.0,
    Tissue.LUNG: 0.05,
    Tissue.FAT: 0.95,
    Tissue.MUSCLE: 0.32,
    Tissue.MYO_LV: 0.20,
    Tissue.MYO_OTHER: 0.20,
    Tissue.BLOOD_LV: 1.0,
    Tissue.BLOOD_LA: 1.0,
    Tissue.BLOOD_AA: 1.0,
    Tissue.BLOOD_ART: 1.0,
    Tissue.BLOOD_VEN: 1.0,
    Tissue.BONE_CORTICAL: 0.03,
    Tissue.BONE_MARROW: 0.55,
    Tissue.LIVER: 0.26,
    Tissue.CSF: 0.9,
    Tissue.DISC: 0.45,
}

# Contrast-enhanced CT (arterial phase), HU ranges; blood and myocardium come from the parameters.
CT_RANGES: dict[Tissue, tuple[float, float]] = {
    Tissue.AIR: (-1000.0, -1000.0),
    Tissue.LUNG: (-880.0, -800.0),
    Tissue.FAT: (-120.0, -80.0),
    Tissue.MUSCLE: (40.0, 60.0),
    Tissue.BONE_CORTICAL: (750.0, 1000.0),
    Tissue.BONE_MARROW: (300.0, 450.0),
    Tissue.LIVER: (70.0, 110.0),
    Tissue.CSF: (0.0, 15.0),
    Tissue.DISC: (70.0, 100.0),
}

LEFT_BLOOD = (Tissue.BLOOD_LV, Tissue.BLOOD_LA, Tissue.BLOOD_AA, Tissue.BLOOD_ART)
MYOCARDIUM = (Tissue.MYO_LV, Tissue.MYO_OTHER)


@dataclass(frozen=True, eq=False)
class MrAppearance:
    values: np.ndarray  # (NUM_TISSUES,) signal before gain and bias
    gain: float
    bias: SineField  # relative deviation, |bias| <= mr_bias_amplitude
    noise_sigma: float  # per channel, in final (gained) units


@dataclass(frozen=True, eq=False)
class CtAppearance:
    values: np.ndarray  # (NUM_TISSUES,) HU
    noise_sigma: float
    psf_sigma_mm: float


def sample_mr_appearance(rng: np.random.Generator, params: PhantomParams) -> MrAppearance:
    """Per-subject tissue values (+-tissue_jitter), gain (log-uniform), bias field and noise level."""
    jit = params.tissue_jitter
    values = np.array([MR_NOMINAL[t] * rng.uniform(1 - jit, 1 + jit) for t in Tissue], dtype=np.float32)
    blood = values[Tissue.BLOOD_LV]
    values[list(LEFT_BLOOD)] = blood
    values[Tissue.BLOOD_VEN] = blood * rng.uniform(0.92, 1.02)
    values[Tissue.MYO_OTHER] = values[Tissue.MYO_LV]
    gain = float(np.exp(rng.uniform(np.log(params.mr_gain[0]), np.log(params.mr_gain[1]))))
    bias = random_sine_field(rng, 3, 1.0, params.mr_bias_wavelength_mm, dims=1)
    scale = params.mr_bias_amplitude / max(bias.max_abs, 1e-9)
    bias = SineField(bias.wavevectors, bias.phases, bias.amplitudes * scale)
    sigma = float(rng.uniform(*params.mr_noise_fraction)) * float(blood) * gain
    return MrAppearance(values, gain, bias, sigma)


def sample_ct_appearance(rng: np.random.Generator, params: PhantomParams) -> CtAppearance:
    """Per-subject HU values: contrast blood and myocardium from the parameters, others from CT_RANGES."""
    values = np.zeros(NUM_TISSUES, dtype=np.float32)
    for tissue, (lo, hi) in CT_RANGES.items():
        values[tissue] = rng.uniform(lo, hi)
    blood = rng.uniform(*params.ct_blood_hu)
    values[list(LEFT_BLOOD)] = blood
    values[Tissue.BLOOD_VEN] = blood * rng.uniform(0.7, 1.05)  # right heart: contrast mixed with unenhanced return
    values[list(MYOCARDIUM)] = rng.uniform(*params.ct_myocardium_hu)
    return CtAppearance(values, float(rng.uniform(*params.ct_noise_hu)), params.ct_psf_sigma_mm)


def render_mr(tissue_sub: np.ndarray, subslices: int, grid: Grid, app: MrAppearance, rng: np.random.Generator) -> np.ndarray:
    """bSSFP-like magnitude image on `grid` from a tissue map with `subslices` sub-slices per slice.

    Sub-slices are averaged (through-slice partial volume), then bias, gain and Rician noise
    (magnitude of a complex signal with Gaussian noise in both channels) are applied.
    """
    nk, nj, ni = grid.array_shape
    signal = app.values[tissue_sub].reshape(nk, subslices, nj, ni).mean(axis=1, dtype=np.float32)
    (bias,) = app.bias(*grid.world_coordinates())
    bias += 1.0
    signal *= bias
    signal *= app.gain
    real = rng.standard_normal(signal.shape, dtype=np.float32)
    real *= app.noise_sigma
    real += signal
    imag = rng.standard_normal(signal.shape, dtype=np.float32)
    imag *= app.noise_sigma
    return np.hypot(real, imag, out=real)


def render_ct(tissue: np.ndarray, grid: Grid, app: CtAppearance, rng: np.random.Generator) -> np.ndarray:
    """HU image: tissue values blurred by a Gaussian PSF, plus Gaussian noise, rounded to whole HU.

    Whole HU are what scanners store; they also make the float32 files compress about twofold.
    """
    image = app.values[tissue]
    for axis, spacing in zip((2, 1, 0), grid.spacing):  # array axes are (k, j, i)
        sigma = app.psf_sigma_mm / spacing
        if sigma > 0.05:
            image = ndimage.gaussian_filter1d(image, sigma, axis=axis, mode="nearest", truncate=3.0)
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= app.noise_sigma
    image += noise
    return np.rint(image, out=image)
