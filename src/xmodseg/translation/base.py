"""An image translator: a `Trainable` whose inference network maps source images to the target."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from xmodseg.training.trainable import DataNeeds, InputSpec, Trainable, TrainData, set_requires_grad

if TYPE_CHECKING:  # annotations only (see xmodseg.training.trainable)
    import torch

__all__ = ["DataNeeds", "InputSpec", "TrainData", "Translator", "set_requires_grad"]


class Translator(Trainable):
    """Base of every translator in `xmodseg.translation` (CycleGAN, disentangled, ...)."""

    @abstractmethod
    def reconstruct(self, translated: torch.Tensor) -> torch.Tensor:
        """target-look -> source-look (the preview's reconstruction column)."""
