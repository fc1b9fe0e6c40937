"""Learning-rate schedules by name, shared by every method (stepped once per iteration)."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


def make_schedule(opt: torch.optim.Optimizer, kind: str, iterations: int, decay_start: float = 0.5) -> LRScheduler:
    """'constant'; 'poly' ((1 - t/T)^0.9, nnU-Net); 'linear' (constant until `decay_start` x T, then
    linearly to 0, CycleGAN's schedule)."""
    if kind == "constant":
        return LambdaLR(opt, lambda _: 1.0)
    if kind == "poly":
        return LambdaLR(opt, lambda i: max(1.0 - i / iterations, 0.0) ** 0.9)
    if kind == "linear":
        start = int(decay_start * iterations)
        return LambdaLR(opt, lambda i: 1.0 if i < start else max(0.0, 1.0 - (i - start) / max(iterations - start, 1)))
    raise ValueError(f"unknown learning-rate schedule '{kind}' (constant, poly or linear)")
