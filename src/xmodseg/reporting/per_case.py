"""Per test volume values: every (experiment, seed, volume, metric, class) value in `per_case.csv`,
and per direction a Markdown table of each volume's class-mean Dice per experiment, so a mean is
never read without the volumes behind it (one bad volume can carry a 4-volume mean)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from xmodseg.artifacts.metrics import CASE_METRICS, MetricsDoc
from xmodseg.atomic import write_text
from xmodseg.layout import PATTERNS
from xmodseg.reporting.compare import direction_label
from xmodseg.reporting.headline import volume_means

HEADING = "## Per test volume: Dice (class mean)"
FILE = Path(PATTERNS["report_per_case"]).name
COLUMNS = ["experiment", "seed", "source", "target", "case", "metric", "class", "value"]


def per_case_table(docs: Sequence[MetricsDoc]) -> pd.DataFrame:
    """One row per (experiment, seed, test volume, metric, class); class `mean` is the volume's
    mean over the foreground classes."""
    rows = []
    for d in docs:
        exp = d.experiment
        for key in CASE_METRICS:
            means = volume_means(d, key)
            for case, mean in zip(d.cases, means, strict=True):
                for cls in [*d.class_names, "mean"]:
                    value = mean if cls == "mean" else float(case[key][cls])
                    rows.append({"experiment": d.name, "seed": d.seed, "source": exp["source"], "target": exp["target"], "case": case["case"], "metric": key, "class": cls, "value": value})
    return pd.DataFrame(rows, columns=COLUMNS)


def per_case_csv(docs: Sequence[MetricsDoc]) -> str:
    """per_case.csv's text (the report writes it, the audit makes it again to compare)."""
    return str(per_case_table(docs).to_csv(index=False, float_format="%.6f"))


def write_per_case_csv(docs: Sequence[MetricsDoc], path: Path) -> None:
    write_text(path, per_case_csv(docs))


def per_case_section(docs: Sequence[MetricsDoc]) -> str:
    """Per direction: rows = test volumes, columns = experiments, cells = class-mean Dice averaged
    over the experiment's seeds (the seeds' values share the volume)."""
    table = per_case_table(docs)
    dice = table[(table["metric"] == "dice") & (table["class"] == "mean")]
    if dice.empty:
        return ""
    parts = [f"\n{HEADING}\n\nEach test volume's Dice averaged over its classes, mean over the experiment's seeds; every metric, class and seed is in `per_case.csv`.\n"]
    for (source, target), grp in dice.groupby(["source", "target"], sort=False):
        experiments = list(dict.fromkeys(grp["experiment"]))
        cases = list(dict.fromkeys(grp["case"]))
        means = grp.groupby(["case", "experiment"])["value"].mean()
        parts.append(f"\n**{direction_label(source, target)}**\n\n| test volume | " + " | ".join(experiments) + " |\n|---|" + "---|" * len(experiments) + "\n")
        for case in cases:
            cells = [means.get((case, e), math.nan) for e in experiments]
            parts.append(f"| {case} | " + " | ".join("–" if math.isnan(v) else f"{v:.3f}" for v in cells) + " |\n")
        worst = {e: float(np.min([means.get((c, e), math.nan) for c in cases])) for e in experiments}
        parts.append("| worst | " + " | ".join("–" if math.isnan(v) else f"{v:.3f}" for v in worst.values()) + " |\n")
    return "".join(parts)
