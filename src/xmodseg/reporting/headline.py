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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from xmodseg.artifacts.metrics import MetricsDoc
from xmodseg.reporting.compare import CONFIDENCE, bootstrap_interval, direction_label

HEADING = "## Headline: mean Dice per method and direction"


def volume_means(doc: MetricsDoc, metric: str) -> list[float]:
    """Per test volume, the mean over the foreground classes (NaN if any class is undefined)."""
    return [float(np.mean([case[metric][c] for c in doc.class_names])) for case in doc.cases]


def _all_target_labels(exp: Mapping[str, Any]) -> bool:
    """The reference oracle trains on every target label, not on a labelled subset."""
    return (exp.get("labels") or {}).get("target") in (None, "all")


def headline_rows(summary: pd.DataFrame, docs: Sequence[MetricsDoc]) -> list[dict[str, Any]]:
    """One row per experiment (directions in order of first appearance). Dice, ASSD, their spread,
    row label and label budget are the class-mean rows of `summary` (`report.seed_summary`, as in
    the tables below); the interval and the gap's references come from the documents."""
    by_exp: dict[str, list[MetricsDoc]] = {}
    for d in docs:
        by_exp.setdefault(d.name, []).append(d)
    means = summary[summary["class"] == "mean"].set_index(["metric", "experiment"])
    dice = {name: float(means.loc[("dice", name), "mean"]) for name in by_exp}

    def first(method: str, match: Mapping[str, Any]) -> str | None:
        return next(
            (n for n, ds in by_exp.items() if ds[0].experiment.get("method") == method and _all_target_labels(ds[0].experiment) and all(ds[0].experiment.get(k) == v for k, v in match.items())),
            None,
        )

    rows = []
    for name, ds in by_exp.items():
        exp = ds[0].experiment
        row = means.loc[("dice", name)]
        values = [v for d in ds for v in volume_means(d, "dice")]
        low, high = bootstrap_interval(values) if len(values) >= 2 else (math.nan, math.nan)
        over_seeds = int(row["n_seeds"]) > 1
        gap = math.nan
        if exp.get("source") != exp.get("target"):
            so, oracle = first("source_only", {"source": exp.get("source"), "target": exp.get("target")}), first("oracle", {"target": exp.get("target")})
            if so is not None and oracle is not None and dice[oracle] > dice[so]:
                gap = 100.0 * (dice[name] - dice[so]) / (dice[oracle] - dice[so])
        rows.append(
            {
                "experiment": name,
                "direction": direction_label(exp["source"], exp["target"]),
                "method": row["method"],
                "labels": row["labels"],
                "seeds": int(row["n_seeds"]),
                "volumes": int(row["n_volumes"]),
                "dice": dice[name],
                "spread": float(row["std_over_seeds"] if over_seeds else row["volume_std"]),
                "spread_over": "seeds" if over_seeds else "volumes",
                "ci": (low, high),
                "gap_closed": gap,
                "assd_mm": float(means.loc[("assd_mm", name), "mean"]),
            }
        )
    order = list(dict.fromkeys(r["direction"] for r in rows))
    return sorted(rows, key=lambda r: order.index(r["direction"]))


def _num(v: float, fmt: str = ".3f") -> str:
    return "N/A" if math.isnan(v) else format(v, fmt)


def headline_section(summary: pd.DataFrame, docs: Sequence[MetricsDoc]) -> str:
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
    for r in headline_rows(summary, docs):
        low, high = r["ci"]
        ci = "–" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"
        gap = "–" if math.isnan(r["gap_closed"]) else f"{r['gap_closed']:.0f} %"
        parts.append(
            f"| {r['direction']} | {r['method']} | {r['labels']} | {r['seeds']} | {r['volumes']} | {_num(r['dice'])} | "
            f"{_num(r['spread'])} | {r['spread_over']} | {ci} | {gap} | {_num(r['assd_mm'], '.2f')} | {r['experiment']} |\n"
        )
    return "".join(parts)
