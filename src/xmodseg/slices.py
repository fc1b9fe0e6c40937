"""In-memory 2D slice sets read from the preprocessing cache, with split guards.

At the demo and paper scales a modality's training slices fit in memory (16 volumes of 256^2
coronal slices are ~1 GB float32 at full resolution, a few MB at demo scale), so batches are drawn
from tensors without DataLoader workers, which on 2 cores would compete with compute threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xmodseg.errors import SplitLeakError
from xmodseg.preprocess.pipeline import load_manifest


@dataclass
class SliceSet:
    """Slices of some cases of one cached modality; `labels` is None when labels must not be used."""

    images: torch.Tensor  # [N, 1, H, W] float32
    labels: torch.Tensor | None  # [N, H, W] int64
    cases: tuple[str, ...]
    modality: str
    intensity_space: str = "zscore"  # the cache manifest's: "sifa_unit" for the SIFA release (translation.intensity)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        return self.images[idx], (self.labels[idx] if self.labels is not None else None)


def load_slices(cache_dir: str | os.PathLike[str], split: str, *, with_labels: bool) -> SliceSet:
    """Load every slice of the cases in `split` ("train" or "test").

    Training code asks for split="train" only; loading test labels for training is refused here.
    """
    manifest = load_manifest(cache_dir)
    cases = [c for c in manifest["cases"] if c["split"] == split]
    if not cases:
        raise SplitLeakError(f"{cache_dir}: no '{split}' cases in the manifest")
    root = Path(cache_dir)
    images = np.concatenate([np.load(root / c["image"]) for c in cases])
    labels = np.concatenate([np.load(root / c["label"]) for c in cases]) if with_labels else None
    return SliceSet(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)) if labels is not None else None,
        cases=tuple(c["case"] for c in cases),
        modality=manifest["modality"],
        intensity_space=str(manifest.get("intensity_space", "zscore")),
    )


def training_slices(cache_dir: str | os.PathLike[str], *, with_labels: bool) -> SliceSet:
    return load_slices(cache_dir, "train", with_labels=with_labels)

