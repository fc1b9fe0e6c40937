"""Data roles and label budgets: which slices, and whose labels, a training job loads.

An experiment's `labels:` block says how many target labels its method may see (`target: none |
subset | all`; the default follows the method's `DataNeeds`) and whether a second labelled modality
(`assistant`) joins. A subset is a `fraction` of the target cache's training cases or explicit
`cases`, drawn deterministically: the sorted training case ids permuted by
`numpy.random.default_rng(seed)`, the first round-half-up(fraction x n) (at least 1) kept. Test cases
are never candidates, and target labels are loaded only for the labelled cases of a method that
declares target labels (the split guard in `xmodseg.slices` refuses anything else).

Example:
    >>> b = LabelBudget.from_block({"target": "subset", "fraction": 0.5, "seed": 1}, DataNeeds(target_images=True, target_labels=True), "oracle")
    >>> b.draw(["1", "2", "3", "4"], "cache")  # doctest: +SKIP
    ('2', '3')
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodseg.errors import ConfigError, InputDataError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.preprocess.pipeline import MANIFEST, load_manifest
from xmodseg.slices import SliceSet, training_cases, training_slices
from xmodseg.training.trainable import DataNeeds, TrainData

TARGETS = ("none", "subset", "all")
KEYS = ("target", "fraction", "cases", "seed", "assistant", "assistant_volumes")


@dataclass(frozen=True)
class LabelBudget:
    """A checked `labels:` block. `cases`: explicit labelled case ids (subset only)."""

    target: str
    fraction: float | None = None
    cases: tuple[str, ...] | None = None
    seed: int = 0
    assistant: str | None = None
    assistant_volumes: int | None = None  # labelled assistant training volumes (None: all)

    @classmethod
    def from_block(cls, block: Mapping[str, Any] | None, needs: DataNeeds, method: str, where: str = "labels") -> LabelBudget:
        """Defaults from `needs`, then the contract's rules; ConfigError naming the key otherwise."""
        block = dict(block or {})
        unknown = sorted(str(k) for k in block if k not in KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; valid keys: {', '.join(KEYS)}")
        target = block.get("target", "all" if needs.target_labels else "none")
        if target not in TARGETS:
            raise ConfigError(f"{where}.target: {target!r} is not one of {', '.join(TARGETS)}")
        if target != "none" and not needs.target_labels:
            raise ConfigError(f"{where}.target: method {method} declares no target labels; only 'none' is allowed (got {target!r})")
        if target == "none" and needs.target_labels:
            raise ConfigError(f"{where}.target: method {method} trains on target labels; use 'subset' (with fraction or cases) or 'all'")
        fraction, cases = block.get("fraction"), block.get("cases")
        if target == "subset":
            if (fraction is None) == (cases is None):
                raise ConfigError(f"{where}: target 'subset' needs exactly one of 'fraction' (of the training cases) or 'cases' (ids)")
        elif fraction is not None or cases is not None:
            raise ConfigError(f"{where}: 'fraction' / 'cases' apply only with target 'subset' (here {target!r})")
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
                raise ConfigError(f"{where}.fraction: {fraction!r} must be a number in (0, 1]")
            fraction = float(fraction)
        if cases is not None:
            if isinstance(cases, str) or not isinstance(cases, Sequence) or not cases:
                raise ConfigError(f"{where}.cases: a non-empty list of case ids (got {cases!r})")
            cases = tuple(str(c) for c in cases)
            if len(set(cases)) != len(cases):
                raise ConfigError(f"{where}.cases: duplicate case ids in {list(cases)}")
        seed = block.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{where}.seed: {seed!r} must be a non-negative integer")
        assistant = block.get("assistant")
        if assistant is not None and not needs.assistant_labels:
            raise ConfigError(f"{where}.assistant: method {method} declares no assistant (second labelled) modality")
        if assistant is None and needs.assistant_labels:
            raise ConfigError(f"{where}.assistant: method {method} trains on a second labelled modality; name it (e.g. assistant: mr)")
        if assistant is not None and not isinstance(assistant, str):
            raise ConfigError(f"{where}.assistant: {assistant!r} must be a modality name")
        volumes = block.get("assistant_volumes")
        if volumes is not None:
            if assistant is None:
                raise ConfigError(f"{where}.assistant_volumes: needs `assistant` (the second labelled modality)")
            if isinstance(volumes, bool) or not isinstance(volumes, int) or volumes < 1:
                raise ConfigError(f"{where}.assistant_volumes: {volumes!r} must be a positive integer")
        return cls(target=target, fraction=fraction, cases=cases, seed=int(seed), assistant=assistant, assistant_volumes=volumes)

    @property
    def is_default(self) -> bool:
        """Budgets that leave the resume hash as it was before budgets existed (all or none, no assistant)."""
        return self.target != "subset" and self.assistant is None

    def draw(self, train_cases: Sequence[str], cache: str | os.PathLike[str], test_cases: Sequence[str] = ()) -> tuple[str, ...]:
        """The labelled target training cases (sorted): none, all, or the subset."""
        ordered = sorted(train_cases)
        if self.target == "none":
            return ()
        if self.target == "all":
            return tuple(ordered)
        if self.cases is not None:
            for case in self.cases:
                if case in test_cases:
                    raise ConfigError(f"labels.cases: '{case}' is a test case of {cache}; a labelled subset comes from the training cases only")
                if case not in ordered:
                    raise ConfigError(f"labels.cases: '{case}' is not a training case of {cache} (training cases: {', '.join(ordered)})")
            return tuple(sorted(self.cases))
        assert self.fraction is not None
        if not ordered:
            raise InputDataError(f"{cache}: no training cases to draw a labelled subset from")
        k = max(1, math.floor(self.fraction * len(ordered) + 0.5))
        order = np.random.default_rng(self.seed).permutation(len(ordered))
        return tuple(sorted(ordered[i] for i in order[:k]))

    def draw_assistant(self, train_cases: Sequence[str], cache: str | os.PathLike[str]) -> tuple[str, ...]:
        """The assistant's labelled training volumes (sorted): all, or `assistant_volumes` of them,
        the first of the sorted ids permuted with `seed` (so with one seed 4 volumes are among the 8)."""
        ordered = sorted(train_cases)
        if self.assistant_volumes is None:
            return tuple(ordered)
        if self.assistant_volumes > len(ordered):
            raise ConfigError(f"labels.assistant_volumes: {self.assistant_volumes} but {cache} has {len(ordered)} training cases")
        order = np.random.default_rng(self.seed).permutation(len(ordered))
        return tuple(sorted(ordered[i] for i in order[: self.assistant_volumes]))

    def record(self, labelled: Sequence[str], n_train: int, assistant: Sequence[str] = (), n_assistant_train: int = 0) -> dict[str, Any]:
        """The sidecar's `labels` block (and what metrics provenance carries); the assistant's drawn
        volumes only when there is an assistant."""
        extra = {"assistant_cases": list(assistant), "n_assistant": len(assistant), "n_assistant_train": n_assistant_train} if self.assistant else {}
        return {
            "target": self.target,
            "cases": list(labelled),
            "n_labelled": len(labelled),
            "n_train": n_train,
            "seed": self.seed,
            "fraction": self.fraction,
            "assistant": self.assistant,
        } | extra


@dataclass
class LoadedData:
    """What `load_train_data` read: the slices, the resume hash's data ids, the sidecar records."""

    data: TrainData
    data_ids: dict[str, str]
    labels: dict[str, Any]
    records: dict[str, dict[str, Any] | None]


def data_record(cache: str | os.PathLike[str], s: SliceSet | None, labels: bool) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"cache": str(cache), "manifest_sha256": sha256_file(Path(cache) / MANIFEST), "cases": list(s.cases), "slices": len(s), "labels_used": labels}


def cache_ids(source_cache: str | os.PathLike[str], target_cache: str | os.PathLike[str]) -> dict[str, str]:
    """What a run was trained on, as manifest hashes (part of the resume hash)."""
    return {"source": sha256_file(Path(source_cache) / MANIFEST), "target": sha256_file(Path(target_cache) / MANIFEST)}


def load_train_data(
    needs: DataNeeds,
    budget: LabelBudget,
    *,
    source_cache: str | os.PathLike[str],
    target_cache: str | os.PathLike[str],
    assistant_cache: str | os.PathLike[str] | None = None,
) -> LoadedData:
    """The slices `needs` and `budget` allow, nothing more: target labels only for the labelled
    training cases, no test case ever. With budget `all` (or `none`) `target` is exactly what it was
    before budgets existed, and so are the data ids (`source`, `target` manifest hashes); a subset
    adds `labels` (hash of the drawn cases and seed) and an assistant its manifest hash."""
    if (assistant_cache is None) != (budget.assistant is None):
        raise ConfigError(
            "labels.assistant and --assistant-cache go together: "
            + (f"labels.assistant is '{budget.assistant}' but no assistant cache was given" if assistant_cache is None else "an assistant cache was given but labels.assistant is not set")
        )
    ids = cache_ids(source_cache, target_cache)
    manifest = load_manifest(target_cache)
    train = training_cases(target_cache)
    test = [c.case for c in manifest.cases_in("test")]
    labelled = budget.draw(train, target_cache, test)
    source = training_slices(source_cache, with_labels=needs.source_labels) if needs.source_images else None
    target: SliceSet | None = None
    unlabelled: SliceSet | None = None
    if budget.target == "subset":
        target = training_slices(target_cache, with_labels=True, cases=labelled)
        rest = [c for c in train if c not in labelled]
        if needs.target_images and rest:
            unlabelled = training_slices(target_cache, with_labels=False, cases=rest)
        ids["labels"] = sha256_json({"cases": list(labelled), "seed": budget.seed, "fraction": budget.fraction})
    elif needs.target_images or needs.target_labels:
        target = training_slices(target_cache, with_labels=needs.target_labels)
    assistant: SliceSet | None = None
    assistant_cases: tuple[str, ...] = ()
    assistant_train: list[str] = []
    if assistant_cache is not None:
        assistant_train = training_cases(assistant_cache)
        assistant_cases = budget.draw_assistant(assistant_train, assistant_cache)
        assistant = training_slices(assistant_cache, with_labels=True, cases=assistant_cases)
        if assistant.modality != budget.assistant:
            raise ConfigError(f"--assistant-cache {assistant_cache}: holds modality '{assistant.modality}', labels.assistant says '{budget.assistant}'")
        ids["assistant"] = sha256_file(Path(assistant_cache) / MANIFEST)
        if budget.assistant_volumes is not None:
            ids["assistant"] = sha256_json({"manifest": ids["assistant"], "cases": list(assistant_cases)})
    records = {
        "source": data_record(source_cache, source, needs.source_labels),
        "target": data_record(target_cache, target, budget.target != "none"),
    }
    if unlabelled is not None:
        records["target_unlabelled"] = data_record(target_cache, unlabelled, False)
    if assistant is not None:
        assert assistant_cache is not None
        records["assistant"] = data_record(assistant_cache, assistant, True)
    labels = budget.record(labelled, len(train), assistant_cases, len(assistant_train))
    return LoadedData(TrainData(source, target, unlabelled, assistant), ids, labels, records)
