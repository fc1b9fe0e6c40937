"""GLUA's step-B loss terms (xmodseg.methods.glua_losses) on tiny tensors with values worked out by hand."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xmodseg.methods.glua_losses import adversarial_target, discriminator_loss, segmentation_loss


def _by_hand_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(1)
    y = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()
    per_class = [1 - (2 * (p[:, c] * y[:, c]).sum() + 1e-5) / ((p[:, c] ** 2).sum() + (y[:, c] ** 2).sum() + 1e-5) for c in range(logits.shape[1])]
    return torch.stack(per_class).mean()


def test_segmentation_loss_is_half_ce_half_squared_dice_over_all_classes():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    expected = 0.5 * F.cross_entropy(logits, labels) + 0.5 * _by_hand_dice(logits, labels)
    assert torch.allclose(segmentation_loss(logits, labels), expected, atol=1e-6)
    # a confident, correct prediction: CE ~ 0, Dice ~ 0
    sure = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 40
    assert segmentation_loss(sure, labels) < 1e-3


def test_least_squares_terms():
    zeros, ones = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    # the segmenter wants target inputs scored as source (0): two discriminators, summed
    assert adversarial_target(ones, zeros).item() == 1.0 and adversarial_target(0.5 * ones).item() == 0.25
    # the discriminators: source -> 0, target -> 1, no 1/2 factor
    assert discriminator_loss(zeros, ones).item() == 0.0
    assert discriminator_loss(ones, zeros).item() == 2.0
    assert math.isclose(discriminator_loss(0.5 * ones, 0.5 * ones).item(), 0.5)


def test_ignored_pixels_add_nothing_to_the_segmentation_loss():
    """The SIFA release's ignore label: the loss does not depend on the logits there, equals the
    plain loss when nothing is ignored, and stays finite (the plain path would fail on the value)."""
    from xmodseg.labels import IGNORE_INDEX

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, generator=g)
    labels = torch.randint(3, (2, 6, 6), generator=g)
    plain = segmentation_loss(logits, labels)
    ignored = labels.clone()
    ignored[:, :2] = IGNORE_INDEX
    a = segmentation_loss(logits, ignored)
    other = logits.clone()
    other[:, :, :2] = torch.randn(2, 3, 2, 6, generator=g) * 10  # anything at the ignored pixels
    b = segmentation_loss(other, ignored)
    assert torch.isfinite(a) and torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, plain)
    # nothing ignored: the masked computation equals the official one
    from xmodseg.methods.glua_losses import _dice_of_probabilities
    from xmodseg.nn.ignore_label import masked_onehot

    onehot, mask = masked_onehot(labels, 3, logits.dtype)
    masked = 0.5 * torch.nn.functional.cross_entropy(logits, labels) + 0.5 * _dice_of_probabilities(torch.softmax(logits, 1) * mask, onehot)
    assert torch.allclose(masked, plain, atol=1e-6)
