"""Smooth random fields as sums of plane waves: anatomy deformation and the MR bias field.

A few long-wavelength sinusoids are smooth by construction, cost one `sin` per point and
component, and need no interpolation of a coarse grid (which would be slow at full resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SineField:
    """f_d(p) = sum_c amplitudes[c, d] * sin(wavevectors[c] . p + phases[c]) for each output dimension d."""

    wavevectors: np.ndarray  # (C, 3), rad/mm
    phases: np.ndarray  # (C,)
    amplitudes: np.ndarray  # (C, D)

    @property
    def dims(self) -> int:
        return int(self.amplitudes.shape[1])

    @property
    def max_abs(self) -> float:
        """Upper bound of |f_d| over all points (used to pad bounding boxes)."""
        return float(np.abs(self.amplitudes).sum(axis=0).max()) if self.amplitudes.size else 0.0

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
        out = [np.zeros(x.shape, dtype=np.float32) for _ in range(self.dims)]
        for k, phi, amp in zip(self.wavevectors, self.phases, self.amplitudes):
            k0, k1, k2 = (float(v) for v in k)
            s = k0 * x + k1 * y + k2 * z
            s += float(phi)
            np.sin(s, out=s)
            for d in range(self.dims):
                if amp[d] != 0:
                    out[d] += float(amp[d]) * s
        return out


def random_sine_field(
    rng: np.random.Generator, components: int, amplitude: float, wavelength_mm: tuple[float, float], dims: int
) -> SineField:
    """Random directions and wavelengths; each component's amplitude vector has norm amplitude/sqrt(C)."""
    n = max(int(components), 0)
    directions = rng.normal(size=(n, 3))
    directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-9)
    wavelengths = rng.uniform(wavelength_mm[0], wavelength_mm[1], size=n)
    wavevectors = directions * (2 * np.pi / wavelengths)[:, None]
    phases = rng.uniform(0, 2 * np.pi, size=n)
    amps = rng.normal(size=(n, dims))
    amps /= np.maximum(np.linalg.norm(amps, axis=1, keepdims=True), 1e-9)
    amps *= amplitude / np.sqrt(max(n, 1))
    return SineField(wavevectors, phases, amps)
