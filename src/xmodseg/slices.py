"""In-memory 2D slice sets read from the preprocessing cache, with split guards.

At the demo and paper scales a modality's training slices fit in memory (16 volumes of 256^2
coronal slices are ~1 GB float32 at full resolution, a few MB at demo scale), so batches are drawn
from tensors without DataLoader workers, which on 2 cores would compete with compute threads.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xmodseg.errors import SplitLeakError
from xmodseg.preprocess.pipeline import load_manifest


@dataclass
class SliceSet:
    """Slices of some cases of one cached modality; `labels` is None when labels must not be used."""

    images: torch.Tensor  # [N, C, H, W] float32 (C = 1, or 3 for colour frames)
    labels: torch.Tensor | None  # [N, H, W] int64
    cases: tuple[str, ...]
    modality: str
    intensity_space: str = "zscore"  # the cache manifest's: "sifa_unit" for the SIFA release (translation.intensity)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        return self.images[idx], (self.labels[idx] if self.labels is not None else None)


def load_slices(cache_dir: str | os.PathLike[str], split: str, *, with_labels: bool, cases: Collection[str] | None = None) -> SliceSet:
    """Load every slice of the cases in `split` ("train" or "test"), or of `cases` among them.

    Training code asks for split="train" only; loading test labels for training is refused here,
    and so is a `cases` id outside the split (a labelled subset never reaches a test case).
    """
    manifest = load_manifest(cache_dir)
    in_split = manifest.cases_in(split)
    if not in_split:
        raise SplitLeakError(f"{cache_dir}: no '{split}' cases in the manifest")
    if cases is not None:
        wanted = set(cases)
        outside = sorted(wanted - {c.case for c in in_split})
        if outside:
            raise SplitLeakError(f"{cache_dir}: case(s) {outside} are not '{split}' cases of the manifest")
        in_split = [c for c in in_split if c.case in wanted]
        if not in_split:
            raise SplitLeakError(f"{cache_dir}: an empty selection of '{split}' cases")
    root = Path(cache_dir)
    images = np.concatenate([np.load(root / c.image) for c in in_split])
    labels = np.concatenate([np.load(root / c.label) for c in in_split]) if with_labels else None
    return SliceSet(
        images=torch.from_numpy(images).unsqueeze(1) if images.ndim == 3 else torch.from_numpy(images),  # cached [N, H, W] or [N, C, H, W]
        labels=torch.from_numpy(labels.astype(np.int64)) if labels is not None else None,
        cases=tuple(c.case for c in in_split),
        modality=manifest.modality,
        intensity_space=manifest.image_space,
    )


def training_slices(cache_dir: str | os.PathLike[str], *, with_labels: bool, cases: Collection[str] | None = None) -> SliceSet:
    return load_slices(cache_dir, "train", with_labels=with_labels, cases=cases)


def training_cases(cache_dir: str | os.PathLike[str]) -> list[str]:
    """Case ids of the cache's training split, in manifest order."""
    return [c.case for c in load_manifest(cache_dir).cases_in("train")]
