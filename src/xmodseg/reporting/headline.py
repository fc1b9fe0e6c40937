"""The report's first table: one row per experiment, grouped by direction, answering "how well does
each method adapt": mean Dice with its spread and a 95% interval, the share of the domain gap it
closes, ASSD, seeds and label budget.

- Dice and ASSD: the class mean (the `mean` column of the tables below), averaged over seeds.
- ± : the std over seeds when there are several, otherwise over test volumes; the `± over` column
  says which.
- 95% CI: percentile bootstrap of the mean over (test volume, seed) values of the per-volume class
  mean Dice (the same bootstrap as the claims); it describes these runs on these volumes.
- Gap closed: (Dice − source_only) / (oracle − source_only) in %, against the first source_only
  experiment of the same direction and the first oracle of the same target trained on all its
  labels (not a labelled-subset oracle); "–" when one of them
  is missing, when the oracle is not above source_only, or for one-modality experiments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from xmodseg.artifacts.metrics import MetricsDoc
from xmodseg.reporting.compare import CONFIDENCE, bootstrap_interval, direction_label

HEADING = "## Headline: mean Dice per method and direction"


def volume_means(doc: MetricsDoc, metric: str) -> list[float]:
    """Per test volume, the mean over the foreground classes (NaN if any class is undefined)."""
    return [float(np.mean([case[metric][c] for c in doc.class_names])) for case in doc.cases]


def _mean_over_seeds(docs: Sequence[MetricsDoc], metric: str) -> float:
    values = [float(d.summary[metric]["mean"]["mean"]) for d in docs]
    return math.nan if any(math.isnan(v) for v in values) else float(np.mean(values))


Label = Callable[[Mapping[str, Any]], str]  # an experiment record -> its row label
Budget = Callable[[MetricsDoc], str]  # a metrics document -> its label-budget text


def _all_target_labels(exp: Mapping[str, Any]) -> bool:
    """The reference oracle trains on every target label, not on a labelled subset."""
    return (exp.get("labels") or {}).get("target") in (None, "all")


def headline_rows(docs: Sequence[MetricsDoc], label: Label, budget: Budget) -> list[dict[str, Any]]:
    """One row per experiment (directions in order of first appearance); `label`/`budget`: the
    report's row label and label-budget text of a document."""
    by_exp: dict[str, list[MetricsDoc]] = {}
    for d in docs:
        by_exp.setdefault(d.name, []).append(d)
    dice = {name: _mean_over_seeds(ds, "dice") for name, ds in by_exp.items()}

    def first(method: str, match: Mapping[str, Any]) -> str | None:
        return next(
            (n for n, ds in by_exp.items() if ds[0].experiment.get("method") == method and _all_target_labels(ds[0].experiment) and all(ds[0].experiment.get(k) == v for k, v in match.items())),
            None,
        )

    rows = []
    for name, ds in by_exp.items():
        exp = ds[0].experiment
        values = [v for d in ds for v in volume_means(d, "dice")]
        low, high = bootstrap_interval(values) if len(values) >= 2 else (math.nan, math.nan)
        seed_values = [float(d.summary["dice"]["mean"]["mean"]) for d in ds]
        over_seeds = len(ds) > 1
        spread = float(np.std(seed_values)) if over_seeds else float(ds[0].summary["dice"]["mean"]["std"])  # as the tables below
        gap = math.nan
        if exp.get("source") != exp.get("target"):
            so, oracle = first("source_only", {"source": exp.get("source"), "target": exp.get("target")}), first("oracle", {"target": exp.get("target")})
            if so is not None and oracle is not None and dice[oracle] > dice[so]:
                gap = 100.0 * (dice[name] - dice[so]) / (dice[oracle] - dice[so])
        rows.append(
            {
                "experiment": name,
                "direction": direction_label(exp["source"], exp["target"]),
                "method": label(exp),
                "labels": budget(ds[0]),
                "seeds": len(ds),
                "volumes": len(ds[0].cases),
                "dice": dice[name],
                "spread": spread,
                "spread_over": "seeds" if over_seeds else "volumes",
                "ci": (low, high),
                "gap_closed": gap,
                "assd_mm": _mean_over_seeds(ds, "assd_mm"),
            }
        )
    order = list(dict.fromkeys(r["direction"] for r in rows))
    return sorted(rows, key=lambda r: order.index(r["direction"]))


def _num(v: float, fmt: str = ".3f") -> str:
    return "N/A" if math.isnan(v) else format(v, fmt)


def headline_section(docs: Sequence[MetricsDoc], label: Label, budget: Budget) -> str:
    """The headline table as Markdown (its header starts with `direction`, so the audit's reader
    of `method | direction` tables leaves it to `xmodseg.provenance.audit`'s own check)."""
    parts = [
        f"\n{HEADING}\n\n"
        "Dice and ASSD are the class mean on the target test volumes, averaged over seeds; ± is the std over the "
        "unit named in `± over`. 95% CI: percentile bootstrap of the mean over (test volume, seed) values; it "
        "describes these runs on these volumes. Gap closed: (Dice − source_only) / (oracle − source_only) of the "
        "same direction; – where it does not apply. Which differences are real is in the Claims section.\n\n",
        f"| direction | method | labels | seeds | volumes | Dice | ± | ± over | {CONFIDENCE:.0%} CI | gap closed | ASSD (mm) | experiment |\n",
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    ]
    for r in headline_rows(docs, label, budget):
        low, high = r["ci"]
        ci = "–" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"
        gap = "–" if math.isnan(r["gap_closed"]) else f"{r['gap_closed']:.0f} %"
        parts.append(
            f"| {r['direction']} | {r['method']} | {r['labels']} | {r['seeds']} | {r['volumes']} | {_num(r['dice'])} | "
            f"{_num(r['spread'])} | {r['spread_over']} | {ci} | {gap} | {_num(r['assd_mm'], '.2f')} | {r['experiment']} |\n"
        )
    return "".join(parts)
