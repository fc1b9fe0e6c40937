"""Mapping raw label values of a data set (e.g. MM-WHS 205/420/500/820) to class indices 0..K."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from xmodseg.errors import InputDataError

# Cached label value for pixels that belong to no class (e.g. the SIFA release's value 5, which
# SIFA's depth-5 one-hot turns into an all-zero vector): never foreground, excluded from every
# training loss (cross-entropy and Dice). Never produced from our own raw data (`ignore` raw values
# there become background on purpose).
IGNORE_INDEX = 255


@dataclass(frozen=True)
class LabelMapping:
    """`raw_to_index` maps each raw value to a class index; `ignore` raw values become background.

    Any other raw value is an error: silently dropping an unknown label is how converted data sets
    end up with wrong classes (nnU-Net #1247, #2500).
    """

    class_names: tuple[str, ...]  # index 0 is background
    raw_to_index: Mapping[int, int]
    ignore: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        n = len(self.class_names)
        for raw, idx in self.raw_to_index.items():
            if not 0 <= idx < n:
                raise ValueError(f"label mapping {raw} -> {idx}: index outside 0..{n - 1}")

    @classmethod
    def from_config(cls, class_names: Sequence[str], mapping: Mapping[int | str, int], ignore: Sequence[int] = ()) -> LabelMapping:
        return cls(tuple(class_names), {int(k): int(v) for k, v in mapping.items()}, frozenset(int(v) for v in ignore))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def foreground(self) -> tuple[str, ...]:
        return self.class_names[1:]

    def to_indices(self, raw: np.ndarray, source: str | os.PathLike[str] = "<array>") -> np.ndarray:
        """Map a raw label array to uint8 class indices; unknown values raise naming `source`."""
        if not np.issubdtype(raw.dtype, np.integer):
            if not np.all(np.isfinite(raw)) or not np.all(np.equal(np.mod(raw, 1), 0)):
                raise InputDataError(f"{source}: label volume has non-integer values")
            raw = raw.astype(np.int64)
        values = np.unique(raw)
        known = set(self.raw_to_index) | set(self.ignore)
        unknown = [int(v) for v in values if int(v) not in known]
        if unknown:
            raise InputDataError(
                f"{source}: label values {unknown[:10]} are not in the data set's label mapping "
                f"(known: {sorted(known)}); add them to 'labels.mapping' or 'labels.ignore' in the registry"
            )
        out = np.zeros(raw.shape, dtype=np.uint8)
        for v in values:
            idx = self.raw_to_index.get(int(v), 0)
            if idx:
                out[raw == v] = idx
        return out
