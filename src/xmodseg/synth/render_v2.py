"""Version-2 appearance: textured tissues, modality-specific artefacts and contrast relations that an
intensity lookup table cannot translate.

What version 2 adds to version 1's rendering, and why (real MM-WHS MR and CT differ in all of these):

- **texture**: every tissue carries spatially correlated heterogeneity (myocardium and liver
  mottling, fat septa, lung vessels, marrow), and the trabeculated LV layer mixes blood and muscle;
  textures differ between the modalities, so a translator has to invent them;
- **MR**: anterior and posterior surface-coil arrays (sensitivity falls off with depth: the chest
  wall is bright, the posterior heart with the LA darker than the LV), bSSFP off-resonance dark bands, dark chemical-shift lines at fat/water
  boundaries (out-of-phase echo), thick slices with through-slice partial volume (version 1);
- **CT**: correlated noise (the reconstruction filter), undiluted contrast in the superior
  vena cava with streaks and a beam-hardening dark band towards the spine, unenhanced inferior vena
  cava blood and swirls of it in the right heart;
- **contrast relations**: structures that look alike in one modality only (fat and right-heart
  blood as bright as LV blood in bSSFP but not in CT; the IVC like muscle in CT but like blood in
  MR) and brightness orders that swap (myocardium darker than liver and skeletal muscle in MR,
  brighter in CT; right-heart blood relative to LV blood set by the bolus timing in CT only).

Random values come from the case's version-2 stream, never from version 1's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from xmodseg.synth.fields import SineField, random_sine_field
from xmodseg.synth.grid import Grid
from xmodseg.synth.params import PhantomParams
from xmodseg.synth.texture import correlated_field
from xmodseg.synth.tissues import NUM_TISSUES_V2, ExtraTissue, Tissue

T, X = Tissue, ExtraTissue

# bSSFP signal relative to LV blood, per-subject ranges (sequence, field strength, physiology).
MR_RANGES: dict[int, tuple[float, float]] = {
    T.AIR: (0.0, 0.0),
    T.LUNG: (0.03, 0.08),
    T.FAT: (0.85, 1.1),  # as bright as blood: a look-alike in MR only
    T.MUSCLE: (0.28, 0.40),  # brighter than myocardium in MR, darker in CT (swap)
    T.MYO_LV: (0.16, 0.26),
    T.BLOOD_VEN: (0.8, 1.0),  # deoxygenated blood: a little darker than LV blood, never much
    T.BONE_CORTICAL: (0.02, 0.05),
    T.BONE_MARROW: (0.45, 0.7),
    T.LIVER: (0.28, 0.40),  # brighter than myocardium in MR, darker in arterial-phase CT (swap)
    T.CSF: (0.8, 1.0),
    T.DISC: (0.35, 0.55),
    X.BLOOD_SVC: (0.9, 1.1),  # inflow: bright like the labelled chambers
    X.BLOOD_IVC: (0.85, 1.05),
}
# Arterial-phase contrast CT, HU ranges; blood, myocardium and right heart from PhantomParams.
CT_RANGES: dict[int, tuple[float, float]] = {
    T.AIR: (-1000.0, -1000.0),
    T.LUNG: (-880.0, -800.0),
    T.FAT: (-130.0, -70.0),
    T.MUSCLE: (35.0, 60.0),
    T.BONE_CORTICAL: (750.0, 1100.0),
    T.BONE_MARROW: (250.0, 450.0),
    T.LIVER: (50.0, 85.0),  # arterial phase: barely enhanced, below the myocardium
    T.CSF: (0.0, 15.0),
    T.DISC: (70.0, 100.0),
    X.BLOOD_IVC: (30.0, 70.0),  # unenhanced venous return: looks like muscle, not like blood
}
# Texture amplitude (standard deviation of the correlated texture field's contribution):
# MR relative to the tissue's own signal, CT in HU.
MR_TEXTURE: dict[int, float] = {
    T.LUNG: 0.5,
    T.FAT: 0.08,
    T.MUSCLE: 0.08,
    T.MYO_LV: 0.08,
    T.MYO_OTHER: 0.08,
    X.PAPILLARY: 0.08,
    T.BLOOD_LV: 0.04,
    T.BLOOD_LA: 0.04,
    T.BLOOD_AA: 0.04,
    T.BLOOD_ART: 0.04,
    T.BLOOD_VEN: 0.05,
    T.BONE_MARROW: 0.15,
    T.LIVER: 0.10,
    X.BLOOD_SVC: 0.05,
    X.BLOOD_IVC: 0.05,
}
CT_TEXTURE_HU: dict[int, float] = {
    T.LUNG: 40.0,
    T.FAT: 15.0,
    T.MUSCLE: 8.0,
    T.MYO_LV: 15.0,
    T.MYO_OTHER: 15.0,
    X.PAPILLARY: 15.0,
    T.BLOOD_LV: 12.0,
    T.BLOOD_LA: 12.0,
    T.BLOOD_AA: 12.0,
    T.BLOOD_ART: 12.0,
    T.BONE_MARROW: 40.0,
    T.BONE_CORTICAL: 60.0,
    T.LIVER: 15.0,
    X.BLOOD_IVC: 8.0,
}
# Water-based tissues: a voxel of one of these next to fat is an out-of-phase (India ink) boundary.
_NOT_WATER = (T.AIR, T.LUNG, T.FAT, T.BONE_CORTICAL)
LEFT_BLOOD = (T.BLOOD_LV, T.BLOOD_LA, T.BLOOD_AA, T.BLOOD_ART)
# Trabeculated layer: mostly blood with muscle strands; mean muscle fraction and its spread (x the
# texture field, clipped to +-1.5 standard deviations, so the layer stays between muscle and blood).
TRABECULAR_MUSCLE = 0.35
TRABECULAR_SPREAD = 0.23


@dataclass(frozen=True, eq=False)
class MrAppearanceV2:
    values: np.ndarray  # (NUM_TISSUES_V2,) signal relative to LV blood, before coil, bias and gain
    texture: np.ndarray  # (NUM_TISSUES_V2,) amplitude of the texture field, same units (trabeculae: their mixing)
    texture_corr_mm: float
    gain: float
    bias: SineField  # smooth relative deviation, as version 1
    coil_anterior_y: float  # world y (mm) of the anterior array
    coil_posterior_y: float
    coil_falloff_mm: float
    coil_posterior: float  # posterior array sensitivity relative to the anterior one
    coil_max: float  # sensitivity cap relative to the heart centre
    heart_y: float  # world y of the heart centre, where the sensitivity is 1
    banding: SineField  # off-resonance phase (rad) around `banding_offset`, one output
    banding_offset: float
    banding_depth: float
    chemical_shift: float
    noise_sigma: float


@dataclass(frozen=True, eq=False)
class CtAppearanceV2:
    values: np.ndarray  # (NUM_TISSUES_V2,) HU
    texture: np.ndarray  # (NUM_TISSUES_V2,) HU amplitude of the texture field (trabeculae, right-heart swirls included)
    texture_corr_mm: float
    noise_sigma: float
    noise_corr_mm: float
    psf_sigma_mm: float
    streak_hu: float  # peak streak amplitude next to the SVC
    streak_angles: np.ndarray  # (N,) rad
    streak_weights: np.ndarray  # (N,) signed, |w| <= 1
    streak_width_mm: float
    streak_length_mm: float
    beam_hardening_hu: float
    beam_hardening_width_mm: float


def sample_mr_appearance_v2(rng: np.random.Generator, params: PhantomParams, heart_center: np.ndarray) -> MrAppearanceV2:
    """Per-subject bSSFP contrast, texture amplitudes, coil geometry, banding and noise level."""
    values = np.zeros(NUM_TISSUES_V2, dtype=np.float32)
    for tissue, (lo, hi) in MR_RANGES.items():
        values[tissue] = rng.uniform(lo, hi)
    values[list(LEFT_BLOOD)] = 1.0
    values[T.MYO_OTHER] = values[X.PAPILLARY] = values[T.MYO_LV]
    values[X.TRABECULAE] = 1.0 - TRABECULAR_MUSCLE * (1.0 - values[T.MYO_LV])
    scale = rng.uniform(*params.texture_scale)
    texture = np.zeros(NUM_TISSUES_V2, dtype=np.float32)
    for tissue, amp in MR_TEXTURE.items():
        texture[tissue] = amp * values[tissue] * scale
    texture[X.TRABECULAE] = TRABECULAR_SPREAD * (1.0 - values[T.MYO_LV])
    gain = float(np.exp(rng.uniform(np.log(params.mr_gain[0]), np.log(params.mr_gain[1]))))
    bias = random_sine_field(rng, 3, 1.0, params.mr_bias_wavelength_mm, dims=1)
    bias = SineField(bias.wavevectors, bias.phases, bias.amplitudes * (params.mr_bias_amplitude / max(bias.max_abs, 1e-9)))
    cycles = rng.uniform(*params.mr_banding_cycles)
    banding = random_sine_field(rng, 2, 1.0, (150.0, 400.0), dims=1)
    banding = SineField(banding.wavevectors, banding.phases, banding.amplitudes * (np.pi * cycles / max(banding.max_abs, 1e-9)))
    hy = float(heart_center[1])
    return MrAppearanceV2(
        values=values,
        texture=texture,
        texture_corr_mm=float(rng.uniform(*params.texture_corr_mm)),
        gain=gain,
        bias=bias,
        coil_anterior_y=hy - float(rng.uniform(95.0, 130.0)),
        coil_posterior_y=hy + float(rng.uniform(140.0, 175.0)),
        coil_falloff_mm=float(rng.uniform(*params.mr_coil_falloff_mm)),
        coil_posterior=float(rng.uniform(*params.mr_coil_posterior)),
        coil_max=params.mr_coil_max,
        heart_y=hy,
        banding=banding,
        banding_offset=float(rng.uniform(0.0, 2.0 * np.pi)),
        banding_depth=float(rng.uniform(*params.mr_banding_depth)),
        chemical_shift=float(rng.uniform(*params.mr_chemical_shift)),
        noise_sigma=float(rng.uniform(*params.mr_noise_fraction)) * gain,
    )


def sample_ct_appearance_v2(rng: np.random.Generator, params: PhantomParams) -> CtAppearanceV2:
    """Per-subject HU values (bolus timing), texture amplitudes, noise, streak and beam-hardening geometry."""
    values = np.zeros(NUM_TISSUES_V2, dtype=np.float32)
    for tissue, (lo, hi) in CT_RANGES.items():
        values[tissue] = rng.uniform(lo, hi)
    blood = rng.uniform(*params.ct_blood_hu)
    myo = rng.uniform(*params.ct_myocardium_hu)
    values[list(LEFT_BLOOD)] = blood
    values[T.BLOOD_VEN] = blood * rng.uniform(*params.ct_right_heart_ratio)
    values[[T.MYO_LV, T.MYO_OTHER, X.PAPILLARY]] = myo
    values[X.TRABECULAE] = blood - TRABECULAR_MUSCLE * (blood - myo)
    svc = rng.uniform(*params.ct_svc_hu)
    values[X.BLOOD_SVC] = max(svc, values[T.BLOOD_VEN])
    scale = rng.uniform(*params.texture_scale)
    texture = np.zeros(NUM_TISSUES_V2, dtype=np.float32)
    for tissue, amp in CT_TEXTURE_HU.items():
        texture[tissue] = amp * scale
    texture[X.TRABECULAE] = TRABECULAR_SPREAD * (blood - myo)
    texture[T.BLOOD_VEN] = 0.25 * max(values[T.BLOOD_VEN] - values[X.BLOOD_IVC], 0.0)  # swirls of unenhanced IVC inflow
    n = int(rng.integers(6, 14))
    return CtAppearanceV2(
        values=values,
        texture=texture,
        texture_corr_mm=float(rng.uniform(*params.texture_corr_mm)),
        noise_sigma=float(rng.uniform(*params.ct_noise_hu)),
        noise_corr_mm=params.ct_noise_corr_mm,
        psf_sigma_mm=params.ct_psf_sigma_mm,
        streak_hu=float(rng.uniform(*params.ct_streak_fraction)) * float(values[X.BLOOD_SVC]),
        streak_angles=rng.uniform(0.0, np.pi, size=n),
        streak_weights=rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.3, 1.0, size=n),
        streak_width_mm=float(rng.uniform(1.0, 2.0)),
        streak_length_mm=float(rng.uniform(40.0, 90.0)),
        beam_hardening_hu=float(rng.uniform(*params.ct_beam_hardening_hu)) * min(1.0, float(values[X.BLOOD_SVC]) / 1000.0),
        beam_hardening_width_mm=float(rng.uniform(3.0, 6.0)),
    )


def render_mr_v2(tissue_sub: np.ndarray, subslices: int, grid: Grid, app: MrAppearanceV2, rng: np.random.Generator) -> np.ndarray:
    """bSSFP-like magnitude image from a sub-sliced tissue map (see the module docstring for what is modelled)."""
    nk, nj, ni = grid.array_shape
    signal = app.values[tissue_sub]
    _chemical_shift(tissue_sub, signal, app.chemical_shift)
    shape4 = (nk, subslices, nj, ni)
    signal = signal.reshape(shape4).mean(axis=1, dtype=np.float32)
    texture = app.texture[tissue_sub].reshape(shape4).mean(axis=1, dtype=np.float32)
    spacing = (grid.spacing[2], grid.spacing[1], grid.spacing[0])
    texture *= _texture_field(rng, signal.shape, spacing, app.texture_corr_mm)
    signal += texture
    np.maximum(signal, 0.0, out=signal)
    x, y, z = grid.world_coordinates()
    signal *= _coil_sensitivity(y, app)
    signal *= _banding(x, y, z, app)
    (bias,) = app.bias(x, y, z)
    bias += 1.0
    signal *= bias
    signal *= app.gain
    real = rng.standard_normal(signal.shape, dtype=np.float32)
    real *= app.noise_sigma
    real += signal
    imag = rng.standard_normal(signal.shape, dtype=np.float32)
    imag *= app.noise_sigma
    return np.hypot(real, imag, out=real)


def render_ct_v2(tissue: np.ndarray, grid: Grid, app: CtAppearanceV2, rng: np.random.Generator) -> np.ndarray:
    """HU image: textured tissue values, PSF blur, SVC streaks and beam hardening, correlated noise; whole HU."""
    spacing = (grid.spacing[2], grid.spacing[1], grid.spacing[0])
    image = app.values[tissue]
    texture = app.texture[tissue]
    texture *= _texture_field(rng, image.shape, spacing, app.texture_corr_mm)
    image += texture
    for axis, s in zip((2, 1, 0), grid.spacing):
        sigma = app.psf_sigma_mm / s
        if sigma > 0.05:
            image = ndimage.gaussian_filter1d(image, sigma, axis=axis, mode="nearest", truncate=3.0)
    _add_streaks(image, tissue, grid, app)
    noise = correlated_field(rng, image.shape, spacing, app.noise_corr_mm) if app.noise_corr_mm > 0 else rng.standard_normal(image.shape, dtype=np.float32)
    noise *= app.noise_sigma
    image += noise
    return np.rint(image, out=image)


def _texture_field(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...], corr_mm: float) -> np.ndarray:
    """One correlated field for every tissue, clipped to +-1.5 standard deviations (trabecular mixing
    stays between muscle and blood)."""
    field = correlated_field(rng, shape, spacing, corr_mm)
    return np.clip(field, -1.5, 1.5, out=field)


def _chemical_shift(tissue: np.ndarray, signal: np.ndarray, loss: float) -> None:
    """Darken fat voxels with an in-plane water neighbour: the out-of-phase boundary line of bSSFP."""
    if loss <= 0:
        return
    fat = tissue == T.FAT
    lut = np.ones(NUM_TISSUES_V2, dtype=bool)
    lut[list(_NOT_WATER)] = False
    water = lut[tissue]
    edge = np.zeros_like(fat)
    for axis in (1, 2):  # in-plane axes of the (k, j, i) array
        n = fat.shape[axis]
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(0, n - 1), slice(1, n)
        edge[tuple(a)] |= water[tuple(b)]
        edge[tuple(b)] |= water[tuple(a)]
    edge &= fat
    signal[edge] *= 1.0 - loss


def _coil_sensitivity(y: np.ndarray, app: MrAppearanceV2) -> np.ndarray:
    """Anterior + posterior receive arrays, each falling off exponentially with depth; 1 at the heart
    centre (posterior structures such as the LA end up darker than the LV), at most `coil_max`."""
    ant = y - app.coil_anterior_y
    np.maximum(ant, 0.0, out=ant)
    ant *= -1.0 / app.coil_falloff_mm
    np.exp(ant, out=ant)
    post = app.coil_posterior_y - y
    np.maximum(post, 0.0, out=post)
    post *= -1.0 / app.coil_falloff_mm
    np.exp(post, out=post)
    post *= app.coil_posterior
    ant += post
    ref = np.exp(-(app.heart_y - app.coil_anterior_y) / app.coil_falloff_mm) + app.coil_posterior * np.exp(
        -(app.coil_posterior_y - app.heart_y) / app.coil_falloff_mm
    )
    ant *= 1.0 / ref
    return np.minimum(ant, app.coil_max, out=ant)


def _banding(x: np.ndarray, y: np.ndarray, z: np.ndarray, app: MrAppearanceV2) -> np.ndarray:
    """bSSFP signal profile over the off-resonance phase: dark bands where the phase passes pi."""
    (phase,) = app.banding(x, y, z)
    if app.banding_depth <= 0 or not np.any(app.banding.amplitudes):
        return np.ones_like(phase)
    phase += app.banding_offset
    d = np.mod(phase, 2.0 * np.pi)
    d -= np.pi
    d *= 1.0 / 0.35  # band half-width in radians
    np.square(d, out=d)
    d *= -0.5
    np.exp(d, out=d)
    d *= -app.banding_depth
    d += 1.0
    return d


def _add_streaks(image: np.ndarray, tissue: np.ndarray, grid: Grid, app: CtAppearanceV2) -> None:
    """Streaks radiating from the dense SVC in each axial slice, and a dark band from it to the spine.

    The CT grid is near-axial: array axis 0 is the slice (z), axes 1 and 2 are in-plane.
    """
    svc = tissue == X.BLOOD_SVC
    area = svc.sum(axis=(1, 2))
    if app.streak_hu <= 0 and app.beam_hardening_hu <= 0 or area.max() < 3:
        return
    nk, nj, ni = image.shape
    sj, si = grid.spacing[1], grid.spacing[0]
    jj = (np.arange(nj, dtype=np.float32) * sj)[:, None]
    ii = (np.arange(ni, dtype=np.float32) * si)[None, :]
    # one streak pattern around the origin on a canvas twice the slice, shifted to each slice's SVC centre
    cj = (np.arange(2 * nj, dtype=np.float32) - nj) * sj
    ci = (np.arange(2 * ni, dtype=np.float32) - ni) * si
    dj, di = cj[:, None], ci[None, :]
    r = np.sqrt(dj * dj + di * di)
    canvas = np.zeros((2 * nj, 2 * ni), dtype=np.float32)
    for angle, weight in zip(app.streak_angles, app.streak_weights):
        across = di * np.float32(np.sin(angle)) - dj * np.float32(np.cos(angle))
        canvas += np.float32(weight) * np.exp(-0.5 * np.square(across / app.streak_width_mm))
    canvas *= np.exp(-r / app.streak_length_mm) * np.float32(app.streak_hu)
    # vertebral body: bone near the midline (world x = 0), posterior of the SVC (CT in-plane axes are world x, y)
    d = np.asarray(grid.direction).reshape(3, 3)
    wx = grid.origin[0] + d[0, 0] * si * np.arange(ni)
    wy = grid.origin[1] + d[1, 1] * sj * np.arange(nj)
    bone = np.isin(tissue, (T.BONE_CORTICAL, T.BONE_MARROW))
    full = float(area.max())
    for k in np.flatnonzero(area >= 3):
        frac = float(area[k]) / full
        pj, pi = (float(v.mean()) for v in np.nonzero(svc[k]))
        oj, oi = nj - int(round(pj)), ni - int(round(pi))
        image[k] += frac * canvas[oj : oj + nj, oi : oi + ni]
        if app.beam_hardening_hu > 0:
            spine = _spine_centre(bone[k], np.abs(wx) < 30.0, wy > float(np.interp(pj, np.arange(nj), wy)) + 40.0)
            if spine is not None:
                image[k] -= frac * app.beam_hardening_hu * _band(jj, ii, (pj * sj, pi * si), (spine[0] * sj, spine[1] * si), app.beam_hardening_width_mm)


def _spine_centre(bone: np.ndarray, midline_i: np.ndarray, posterior_j: np.ndarray) -> tuple[float, float] | None:
    """Index centre of the bone near the midline and well posterior of the SVC (the vertebra), if any."""
    j, i = np.nonzero(bone & posterior_j[:, None] & midline_i[None, :])
    if j.size < 10:
        return None
    return float(j.mean()), float(i.mean())


def _band(jj: np.ndarray, ii: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: float) -> np.ndarray:
    """Gaussian profile across the segment a-b (mm coordinates), fading out beyond its ends."""
    vj, vi = b[0] - a[0], b[1] - a[1]
    length = max(np.hypot(vj, vi), 1e-3)
    uj, ui = vj / length, vi / length
    along = (jj - a[0]) * uj + (ii - a[1]) * ui
    across = (jj - a[0]) * ui - (ii - a[1]) * uj
    inside = np.clip(np.minimum(along, length - along) / 10.0 + 1.0, 0.0, 1.0)
    return np.exp(-0.5 * np.square(across / width)) * inside
