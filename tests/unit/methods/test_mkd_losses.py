"""MKD's distillation term on tiny tensors: known values, the temperature, the detached teacher."""

from __future__ import annotations

import math

import pytest
import torch

from xmodseg.labels import IGNORE_INDEX
from xmodseg.methods.mkd_losses import distillation_loss


def test_known_value_of_one_pixel():
    # teacher logits (0, ln 3) at T = 1 -> p = (1/4, 3/4); student (0, 0) -> q = (1/2, 1/2)
    teacher = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    student = torch.zeros(1, 2, 1, 1)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert distillation_loss(student, teacher, temperature=1.0).item() == pytest.approx(kl, rel=1e-6)
    # T = 2: softened teacher (0, ln 3 / 2) -> p = (1/(1+sqrt3), sqrt3/(1+sqrt3)), times T^2 = 4
    p1 = 1 / (1 + math.sqrt(3))
    p2 = 1 - p1
    kl2 = p1 * math.log(p1 / 0.5) + p2 * math.log(p2 / 0.5)
    assert distillation_loss(student, teacher, temperature=2.0).item() == pytest.approx(4 * kl2, rel=1e-6)


def test_zero_when_student_equals_teacher_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 5, 5, generator=g)
    assert distillation_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(z, torch.randn(2, 4, 5, 5, generator=g)).item() > 0


def test_teacher_gets_no_gradient_and_student_does():
    g = torch.Generator().manual_seed(1)
    student = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    teacher = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    distillation_loss(student, teacher).backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0


def test_ignored_pixels_are_left_out_and_bad_temperatures_refused():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(1, 3, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[:, :2] = IGNORE_INDEX
    kept = distillation_loss(s[:, :, 2:], t[:, :, 2:])
    assert distillation_loss(s, t, labels=labels).item() == pytest.approx(kept.item(), rel=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(s, t, temperature=0)
