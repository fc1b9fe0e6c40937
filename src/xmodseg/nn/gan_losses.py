"""Loss terms of the translators (least-squares GAN, L1 reconstruction)."""

from __future__ import annotations

import torch


def lsgan_discriminator(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """1/2 [ mean (D(real) - 1)^2 + mean D(fake)^2 ]."""
    return 0.5 * (((real_scores - 1) ** 2).mean() + (fake_scores**2).mean())


def lsgan_generator(fake_scores: torch.Tensor) -> torch.Tensor:
    """mean (D(fake) - 1)^2: the generator wants its fakes scored as real."""
    return ((fake_scores - 1) ** 2).mean()


def least_squares(scores: torch.Tensor, label: float) -> torch.Tensor:
    """mean (D(x) - label)^2: one least-squares term, for the GANs whose labels or factors differ
    from the two above (AD-GAN pushes real images to "fake"; GLUA's discriminators have no 1/2)."""
    return ((scores - label) ** 2).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean()
