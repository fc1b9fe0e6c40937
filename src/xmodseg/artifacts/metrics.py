"""Metric keys (defined here once) and the two metrics documents.

- `MetricsDoc`: one seed's `metrics.json` (`xmodseg evaluate`): per test case and per class, each
  metric of CASE_METRICS, their summary over the cases, and the provenance of the numbers;
- `ExperimentMetrics`: one experiment's `results/metrics/<dataset>/<exp>.json` (`xmodseg
  aggregate`): mean and std over seeds per metric and class.

Per-case records and summaries stay plain dicts (class name -> value, statistic -> value): their
keys are class names and `evaluation.metrics.summarise`'s statistics, not a fixed schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodseg.artifacts._json import check_keys, read_json
from xmodseg.atomic import write_json

# Per case and per seed: ours on the scan grid, SIFA's (medpy 0.4) on the preprocessed grid.
CASE_METRICS: tuple[str, ...] = ("dice", "assd_mm", "sifa_dice", "sifa_assd_vox")
# With `train.snapshots: k` the mean over the last k checkpoints of these is reported too, under
# f"{key}{LAST_K}" (the last iteration's values keep the plain keys).
LAST_K = "_last_k"
LAST_K_METRICS: tuple[str, ...] = ("dice", "assd_mm")

_TITLES = {"dice": "Dice", "assd_mm": "ASSD (mm)", "sifa_dice": "Dice (SIFA-compatible)", "sifa_assd_vox": "ASSD (voxels, SIFA-compatible)"}
# Every key a summary (per seed) or an experiment's metrics file may hold -> its title, in report order.
METRIC_KEYS: dict[str, str] = {
    **{k: _TITLES[k] for k in CASE_METRICS},
    **{f"{k}{LAST_K}": f"{_TITLES[k]}, mean over the last k checkpoints" for k in LAST_K_METRICS},
}
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "assd_mm": False, "sifa_dice": True, "sifa_assd_vox": False}

_FIX_SEED = "written by `xmodseg evaluate`; rerun it"
_FIX_EXP = "written by `xmodseg aggregate`; rerun it"


@dataclass(frozen=True, kw_only=True)
class MetricsDoc:
    """One seed's evaluation: `experiment` is the experiment record the workflow passed (name,
    dataset, method, source, target, seed, ...); `path` is where it was read from (not stored)."""

    experiment: dict[str, Any]
    class_names: list[str]  # the foreground classes
    summary: dict[str, dict[str, dict[str, Any]]]  # metric key -> class or "mean" -> statistics
    cases: list[dict[str, Any]]  # per test case: files, sha256s and {metric key: {class: value}}
    provenance: dict[str, Any]
    protocol: dict[str, Any] | None = None
    checkpoints: dict[str, Any] | None = None  # `train.snapshots`: the earlier checkpoints' cases
    pooled: dict[str, Any] | None = None  # GLUA-style: all test volumes concatenated, one value per class
    path: str = field(default="", compare=False)

    @classmethod
    def from_dict(cls, d: Any, where: str, path: str = "") -> MetricsDoc:
        if not isinstance(d, Mapping) or any(k not in d for k in _SEED_REQUIRED):
            where = f"{where}: not a per-seed metrics.json"  # the usual cause: another JSON file given
        check_keys(d, _SEED_REQUIRED, _SEED_OPTIONAL, where, _FIX_SEED)
        return cls(**d, path=path)

    @classmethod
    def coerce(cls, doc: MetricsDoc | Mapping[str, Any]) -> MetricsDoc:
        """A document held as a dict in memory (the audit's recomputed one, hand-made ones in tests):
        its `_path` key is the path, keys it lacks are empty; an unknown key is still an error."""
        if isinstance(doc, MetricsDoc):
            return doc
        path = str(doc.get("_path", ""))
        body = {k: v for k, v in doc.items() if k != "_path"}
        check_keys(body, (), (*_SEED_REQUIRED, *_SEED_OPTIONAL), path or "metrics document", _FIX_SEED)
        return cls(**{"experiment": {}, "class_names": [], "summary": {}, "cases": [], "provenance": {}, **body}, path=path)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k in _SEED_ORDER if (v := getattr(self, k)) is not None}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MetricsDoc:
        return cls.from_dict(read_json(path, "metrics file", _FIX_SEED), str(path), path=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    @property
    def name(self) -> str:
        return str(self.experiment["name"])

    @property
    def seed(self) -> Any:
        return self.experiment["seed"]


_SEED_ORDER = ("experiment", "class_names", "protocol", "summary", "pooled", "cases", "checkpoints", "provenance")
_SEED_REQUIRED = ("experiment", "class_names", "summary", "cases", "provenance")
_SEED_OPTIONAL = ("protocol", "checkpoints", "pooled")


@dataclass(frozen=True, kw_only=True)
class ExperimentMetrics:
    """One experiment over its seeds: `metrics[key][class] = {"mean", "std_over_seeds"}` (None: N/A)."""

    experiment: str
    seeds: int
    metrics: dict[str, dict[str, dict[str, float | None]]]
    metrics_files: list[str]

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ExperimentMetrics:
        check_keys(d, ("experiment", "seeds", "metrics_files"), tuple(METRIC_KEYS), where, _FIX_EXP)
        return cls(
            experiment=d["experiment"],
            seeds=d["seeds"],
            metrics={k: v for k, v in d.items() if k in METRIC_KEYS},
            metrics_files=d["metrics_files"],
        )

    def to_dict(self) -> dict[str, Any]:
        unknown = [k for k in self.metrics if k not in METRIC_KEYS]
        if unknown:
            raise ValueError(f"experiment metrics of {self.experiment}: unknown metric key(s) {unknown} (known: {list(METRIC_KEYS)})")
        return {"experiment": self.experiment, "seeds": self.seeds, **self.metrics, "metrics_files": self.metrics_files}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExperimentMetrics:
        return cls.from_dict(read_json(path, "experiment metrics file", _FIX_EXP), str(Path(path)))

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())
