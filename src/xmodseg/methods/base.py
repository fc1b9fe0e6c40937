"""A segmentation method: a `Trainable` whose inference network segments target images."""

from __future__ import annotations

from xmodseg.training.trainable import DataNeeds, InputSpec, Trainable, TrainData, set_requires_grad

__all__ = ["DataNeeds", "InputSpec", "SegmentationMethod", "TrainData", "set_requires_grad"]


class SegmentationMethod(Trainable):
    """Base of every method in `xmodseg.methods` (source-only, oracle, SIFA, ...)."""
