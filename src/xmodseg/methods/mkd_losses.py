"""MKD's distillation term (Li et al., AAAI 2020; our choice, methods.md §4.7 choice 4).

Pixel-wise KL(softmax(z_T / T) || softmax(z_S / T)) x T^2 between a teacher's and a student's
logits, averaged over pixels, the teacher detached (Hinton's form; the same lab's UMMKD uses a
temperature-2 softened KL). The T^2 factor keeps the gradient's scale independent of T. Pixels with
the ignore label (when labels are given) are left out, as in every supervised term here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xmodseg.nn.ignore_label import valid_mask


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """student/teacher logits [B, K, H, W]; `labels` [B, H, W] only to leave out ignored pixels."""
    if temperature <= 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
    per_pixel = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)  # [B, H, W]
    if labels is not None:
        valid = valid_mask(labels)
        per_pixel = per_pixel[valid] if bool(valid.any()) else per_pixel.sum() * 0.0
    return per_pixel.mean() * t * t
