"""What training cost and how it went, from each model's sidecar (found through the metrics file's
`provenance.model`): a time table per experiment and learning curves (`learning_curves.png`) from
the binned loss history the sidecar keeps (`xmodseg.training.loop.loss_curve`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodseg.artifacts.metrics import MetricsDoc
from xmodseg.artifacts.model_file import Sidecar
from xmodseg.atomic import atomic_path
from xmodseg.errors import InputDataError
from xmodseg.layout import PATTERNS, sidecar_of

TIME_HEADING = "## Training time"
CURVES_FILE = Path(PATTERNS["report_curves"]).name


def sidecars(docs: Sequence[MetricsDoc]) -> dict[tuple[str, int], Sidecar | None]:
    """{(experiment, seed): the model's sidecar, or None when the metrics file names no model or the
    sidecar is absent or unreadable (e.g. only the metrics were restored)}."""
    out: dict[tuple[str, int], Sidecar | None] = {}
    for d in docs:
        model = d.provenance.get("model")
        side = None
        if model and Path(sidecar_of(model)).is_file():
            try:
                side = Sidecar.load(sidecar_of(model))
            except InputDataError:
                side = None
        out[(d.name, int(d.seed))] = side
    return out


def _device(side: Sidecar) -> str:
    dev = side.device or {}
    return str(dev.get("gpu_name") or dev.get("device") or "?")


def time_section(docs: Sequence[MetricsDoc], found: dict[tuple[str, int], Sidecar | None]) -> str:
    """Per experiment: seeds, iterations, s/iteration and minutes per seed (mean over seeds) and the
    device. A resumed run's time covers the last run only, as the sidecar records it."""
    by_exp: dict[str, list[Sidecar | None]] = {}
    for (name, _seed), side in found.items():
        by_exp.setdefault(name, []).append(side)
    if not any(s is not None for ss in by_exp.values() for s in ss):
        return ""
    parts = [
        f"\n{TIME_HEADING}\n\nFrom each model's sidecar (`loop`): iterations done, seconds per iteration and minutes of "
        "training per seed, mean over seeds; a resumed seed counts its last run only (marked). Translators' times are in "
        "the translation table. Machine-dependent: compare within one report.\n\n"
        "| experiment | seeds | iterations | s/it | minutes per seed | device |\n|---|---|---|---|---|---|\n"
    ]
    for name, sides in by_exp.items():
        known = [s for s in sides if s is not None and s.loop]
        if not known:
            parts.append(f"| {name} | {len(sides)} | – | – | – | no sidecar |\n")
            continue
        loops = [s.loop or {} for s in known]
        its = sorted({int(lp.get("iterations_done", 0)) for lp in loops})
        s_it = [float(lp.get("seconds_per_iteration", math.nan)) for lp in loops]
        minutes = [float(lp.get("seconds", math.nan)) / 60 for lp in loops]
        resumed = any(int(lp.get("resumed_from", 0) or 0) > 0 for lp in loops)
        devices = ", ".join(dict.fromkeys(_device(s) for s in known))
        parts.append(
            f"| {name} | {len(sides)} | {'/'.join(map(str, its))} | {np.mean(s_it):.3f} | {np.mean(minutes):.1f}{' (resumed)' if resumed else ''} | {devices} |\n"
        )
    return "".join(parts)


def curves_plot(found: dict[tuple[str, int], Sidecar | None], path: Path) -> int:
    """One panel per experiment (its lowest seed with a loss history), one line per loss term; the
    number of experiments drawn (0: the figure says that no sidecar holds a history)."""
    first: dict[str, tuple[int, dict[str, Any]]] = {}
    for (name, seed), side in sorted(found.items(), key=lambda kv: kv[0][1]):
        if side is not None and side.loss_curve and name not in first:
            first[name] = (seed, side.loss_curve)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not first:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "no loss history in the model sidecars", ha="center", va="center")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        return 0
    cols = min(4, len(first))
    rows = math.ceil(len(first) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(first) :]:
        ax.axis("off")
    for ax, (name, (seed, curve)) in zip(axes.flat, first.items(), strict=False):
        x = curve["iterations"]
        for term, values in curve["terms"].items():
            y = [math.nan if v is None else v for v in values]
            ax.plot(x, y, label=term, linewidth=1, marker="o" if len(x) <= 5 else None, markersize=3)
        ax.set_title(f"{name} (seed {seed})", fontsize=8)
        ax.set_xlabel("iteration", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return len(first)
