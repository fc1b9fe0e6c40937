"""An image translator: a `Trainable` whose inference network maps source images to the target."""

from __future__ import annotations

from xmodseg.training.trainable import DataNeeds, Trainable, TrainData, set_requires_grad

__all__ = ["DataNeeds", "TrainData", "Translator", "set_requires_grad"]


class Translator(Trainable):
    """Base of every translator in `xmodseg.translation` (CycleGAN, disentangled, ...)."""
