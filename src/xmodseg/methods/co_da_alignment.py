"""Co-DA's pseudo-label machinery (methods.md §5.5, steps 3-7), on softmax maps [B, C, H, W].

- `ClassMarginals`: running class-wise marginal predictions (EMA over every pixel of each batch),
  one for labelled and one for unlabelled images, per model (USB's DistAlign with a model target).
- `align`: p_u * pi_l / pi_u, renormalised over classes: the unlabelled predictions re-weighted so
  their marginal matches what the same model predicts on labelled images (minority classes that
  the model under-predicts on unlabelled data get their share back before pseudo-labelling).
- `ExpectationFilter`: keeps a pixel whose confidence reaches the running class-wise expectation
  of confidence for its pseudo-class (FreeMatch-style self-adaptive threshold, class by class).
- `sigmoid_rampup`: the unsupervised weight's schedule (CPS, Laine & Aila).

None of these carry gradients: they only make targets and masks.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-6


def pixel_mean(probs: torch.Tensor) -> torch.Tensor:
    """[B, C, ...] -> [C]: the mean probability of each class over every pixel of the batch."""
    return probs.detach().transpose(0, 1).reshape(probs.shape[1], -1).float().mean(dim=1)


class ClassMarginals:
    """EMA of the class-wise mean prediction; the first update sets it (no uniform prior to wash out)."""

    def __init__(self, num_classes: int, momentum: float) -> None:
        self.momentum = momentum
        self.value = torch.full((num_classes,), 1.0 / num_classes)
        self.started = False

    def update(self, probs: torch.Tensor) -> torch.Tensor:
        mean = pixel_mean(probs)
        self.value = mean.clone() if not self.started else self.momentum * self.value.to(mean.device) + (1 - self.momentum) * mean
        self.started = True
        return self.value

    def state_dict(self) -> dict[str, object]:
        return {"value": self.value.cpu().clone(), "started": self.started}

    def load_state_dict(self, state: dict[str, object], device: torch.device) -> None:
        value = state["value"]
        assert isinstance(value, torch.Tensor)
        self.value = value.to(device)
        self.started = bool(state["started"])


def align(probs_u: torch.Tensor, marginal_l: torch.Tensor, marginal_u: torch.Tensor) -> torch.Tensor:
    """p_u * (pi_l + eps) / (pi_u + eps), renormalised over the class axis (dim 1)."""
    shape = (1, -1) + (1,) * (probs_u.dim() - 2)
    ratio = ((marginal_l + EPS) / (marginal_u + EPS)).view(shape).to(probs_u)
    weighted = probs_u.detach() * ratio
    return weighted / weighted.sum(dim=1, keepdim=True)


def class_sums(classes: torch.Tensor, values: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: how many `values` and their sum. On the CPU `index_add_` (sequential: the same
    every run); elsewhere one-hot sums, because `index_add_` adds atomically on CUDA, in an order
    that changes from run to run."""
    if classes.device.type == "cpu":
        counts = torch.bincount(classes, minlength=num_classes).float()
        return counts, torch.zeros(num_classes).index_add_(0, classes, values)
    onehot = torch.nn.functional.one_hot(classes, num_classes).to(values.dtype)
    return onehot.sum(dim=0), (onehot * values.unsqueeze(1)).sum(dim=0)


class ExpectationFilter:
    """Class-wise expectation of confidence e_c (EMA of the mean max-probability over the pixels
    pseudo-labelled c; initialised at 1/C); `mask` keeps pixels with confidence >= e_{pseudo-class}.
    Classes absent from a batch keep their expectation."""

    def __init__(self, num_classes: int, momentum: float) -> None:
        self.momentum = momentum
        self.expectation = torch.full((num_classes,), 1.0 / num_classes)

    def update(self, confidence: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        """Fold this batch's class-wise mean confidence into the expectation; returns it."""
        e = self.expectation.to(confidence.device)
        counts, sums = class_sums(pseudo.reshape(-1), confidence.detach().reshape(-1).float(), e.numel())
        present = counts > 0
        batch_mean = torch.where(present, sums / counts.clamp_min(1), e)
        self.expectation = torch.where(present, self.momentum * e + (1 - self.momentum) * batch_mean, e)
        return self.expectation

    def mask(self, confidence: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        """1.0 where a pixel's confidence reaches its pseudo-class's expectation, else 0.0."""
        return (confidence >= self.expectation.to(confidence.device)[pseudo]).float()

    def state_dict(self) -> dict[str, object]:
        return {"expectation": self.expectation.cpu().clone()}

    def load_state_dict(self, state: dict[str, object], device: torch.device) -> None:
        value = state["expectation"]
        assert isinstance(value, torch.Tensor)
        self.expectation = value.to(device)


def sigmoid_rampup(step: int, length: int) -> float:
    """exp(-5 (1 - t/L)^2) for t < L, then 1 (0 length: 1 from the start)."""
    if length <= 0:
        return 1.0
    t = min(max(step, 0), length) / length
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
