"""Report: per-experiment aggregation over seeds, summary tables (CSV + Markdown), a bar plot and
image overlays, each number linked to the metrics file (and hence the provenance) it came from."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xmodseg.artifacts.metrics import LAST_K, METRIC_KEYS, ExperimentMetrics, MetricsDoc
from xmodseg.atomic import atomic_path, write_text
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.reporting.case_grid import grids_section
from xmodseg.reporting.compare import (
    CONFIDENCE,
    N_RESAMPLES,
    RNG_SEED,
    Comparison,
    compare_docs,
    direction_label,
    format_diff,
    format_interval,
    format_p,
    pairs_text,
    rows,
)
from xmodseg.reporting.compare import METRICS as COMPARED
from xmodseg.reporting.headline import HEADING as HEADLINE_HEADING
from xmodseg.reporting.headline import headline_section
from xmodseg.reporting.per_case import FILE as PER_CASE_FILE
from xmodseg.reporting.per_case import HEADING as PER_CASE_HEADING
from xmodseg.reporting.per_case import per_case_section, write_per_case_csv
from xmodseg.reporting.training_record import CURVES_FILE, curves_plot, sidecars, time_section


def _load_metrics(paths: Sequence[str | os.PathLike[str]]) -> list[MetricsDoc]:
    return [MetricsDoc.load(p) for p in paths]


def _load(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """JSON documents other than metrics (translation quality), with their `_path`."""
    out = []
    for p in paths:
        d = json.loads(Path(p).read_text())
        d["_path"] = str(p)
        out.append(d)
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if np.isnan(arr).any():
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


def long_table(docs: Sequence[MetricsDoc | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (experiment, seed, metric, class): the test-set mean of that seed, with the
    experiment's label budget."""
    rows = []
    for d in map(MetricsDoc.coerce, docs):
        exp = d.experiment
        budget = label_budget(d)
        for key in METRIC_KEYS:
            for cls, stats in d.summary.get(key, {}).items():
                rows.append(
                    {
                        "experiment": exp["name"],
                        "method": method_label(exp),
                        "source": exp["source"],
                        "target": exp["target"],
                        "labels": budget,
                        "seed": exp["seed"],
                        "metric": key,
                        "class": cls,
                        "value": stats["mean"],
                        "volume_std": stats["std"],
                        "n_volumes": stats["n"],
                        "n_undefined": stats["n_undefined"],
                        "metrics_file": d.path,
                    }
                )
    return pd.DataFrame(rows)


# Where evaluation copies the sidecar's drawn label record ({"target", "cases", "n_train", "seed",
# "fraction", "assistant", ...}, xmodseg.training.budget) in the metrics provenance.
LABEL_BUDGET = "label_budget"


def label_budget(doc: MetricsDoc | Mapping[str, Any]) -> str:
    """What the experiment saw of the target labels, stated on every row so that a semi-supervised
    or supervised number is never read as an unsupervised one, e.g. "target labels: none",
    "target labels: subset 4/16 (seed 0); assistant: mr 8/16" (4 labelled of the 16 target training
    cases, 8 of the 16 assistant ones). From the drawn record in the metrics provenance, else the experiment's `labels` block,
    else the method's declaration (all if it declares target labels, none otherwise)."""
    doc = MetricsDoc.coerce(doc)
    exp = doc.experiment
    block = exp.get("labels") or {}
    drawn = doc.provenance.get(LABEL_BUDGET) or {}
    target = drawn.get("target") or block.get("target") or ("all" if _declares_target_labels(str(exp.get("method"))) else "none")
    text = f"target labels: {target}"
    if target == "subset":
        cases = drawn.get("cases", block.get("cases"))
        if cases is None:  # evaluated without a drawn record: only the fraction is known
            size = f"fraction {block.get('fraction')}"
        else:
            size = f"{len(cases)}/{drawn['n_train']}" if drawn.get("n_train") is not None else str(len(cases))
        how = "cases " + ", ".join(str(c) for c in block["cases"]) if block.get("cases") else f"seed {drawn.get('seed', block.get('seed', 0))}"
        text += f" {size} ({how})"
    assistant = drawn.get("assistant") or block.get("assistant")
    if not assistant:
        return text
    if drawn.get("n_assistant") is not None and drawn.get("n_assistant_train") is not None:
        return f"{text}; assistant: {assistant} {drawn['n_assistant']}/{drawn['n_assistant_train']}"
    volumes = block.get("assistant_volumes")
    return f"{text}; assistant: {assistant}" + (f" {volumes} volumes" if volumes else "")


def _declares_target_labels(method: str) -> bool:
    from xmodseg.methods import METHODS  # the declarations: no method module, no torch

    try:
        return bool(METHODS.declared.get(method).needs.target_labels)
    except KeyError:
        return False


def method_label(exp: Mapping[str, Any]) -> str:
    """Row label: the config's `label` if given (ablation rows), else the method, plus the
    translator kind for translation-based methods, plus the experiment's `scale` note (how the run
    departs from the paper's method), so a reduced run is never read as the published one."""
    extra = [str(exp["scale"])] if exp.get("scale") else []
    if exp.get("label"):
        base = str(exp["label"])
    else:
        base = str(exp["method"])
        translator = exp.get("translator_kind") or exp.get("translator")
        extra = [str(translator), *extra] if translator else extra
    return f"{base} ({'; '.join(extra)})" if extra else base


def seed_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (experiment, metric, class)."""
    rows = []
    keys = ["experiment", "method", "source", "target", "metric", "class"]
    for key, grp in long.groupby(keys, sort=False):
        mean, std = _mean_std(grp["value"].tolist())
        named = dict(zip(keys, key, strict=True))
        rows.append(
            {
                **{k: named[k] for k in keys[:4]},
                "labels": "; ".join(dict.fromkeys(grp["labels"])),
                **{k: named[k] for k in keys[4:]},
                "mean": mean,
                "std_over_seeds": std,
                "n_seeds": int(grp["seed"].nunique()),
                "volume_std": float(grp["volume_std"].mean()),
                "n_volumes": int(grp["n_volumes"].iloc[0]),
                "n_undefined": int(grp["n_undefined"].sum()),
                "metrics_files": ";".join(grp["metrics_file"]),
            }
        )
    return pd.DataFrame(rows)


def aggregate_seeds(metrics_files: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> dict[str, Any]:
    """One experiment's seeds in one small JSON (what `dvc metrics show` displays)."""
    summary = seed_summary(long_table(_load_metrics(metrics_files)))
    if summary["experiment"].nunique() != 1:
        raise ValueError(f"aggregate expects one experiment, got {sorted(summary['experiment'].unique())}")
    metrics = {}
    for key in METRIC_KEYS:
        sub = summary[summary["metric"] == key]
        if sub.empty:  # e.g. the last-k keys of an experiment without snapshots
            continue
        metrics[key] = {r["class"]: {"mean": round6(r["mean"]), "std_over_seeds": round6(r["std_over_seeds"])} for _, r in sub.iterrows()}
    result = ExperimentMetrics(experiment=summary["experiment"].iloc[0], seeds=len(metrics_files), metrics=metrics, metrics_files=[str(p) for p in metrics_files])
    result.save(out)
    return result.to_dict()


def round6(v: float) -> float | None:
    return None if math.isnan(v) else round(float(v), 6)


def format_cell(mean: float, std: float, n_undefined: int = 0) -> str:
    if math.isnan(mean):
        return f"N/A ({n_undefined} undef.)" if n_undefined else "N/A"
    return f"{mean:.3f} ± {std:.3f}"


def spread_unit(n_seeds: int) -> str:
    """What the ± of a reported cell is over: seeds when there are several, else test volumes."""
    return "seeds" if n_seeds > 1 else "volumes"


def markdown_table(summary: pd.DataFrame, metric: str) -> str:
    sub = summary[summary["metric"] == metric]
    classes = list(dict.fromkeys(sub["class"]))
    header = "| method | direction | seeds | ± over | labels | " + " | ".join(classes) + " |\n|---|---|---|---|---|" + "---|" * len(classes) + "\n"
    lines = []
    for (_, method, source, target), grp in sub.groupby(["experiment", "method", "source", "target"], sort=False):
        by_cls = {r["class"]: r for _, r in grp.iterrows()}
        n_seeds = int(grp["n_seeds"].iloc[0])
        cells = []
        for c in classes:
            r = by_cls[c]
            std = r["std_over_seeds"] if n_seeds > 1 else r["volume_std"]
            cells.append(format_cell(r["mean"], std, int(r["n_undefined"])))
        lines.append(f"| {method} | {direction_label(source, target)} | {n_seeds} | {spread_unit(n_seeds)} | {grp['labels'].iloc[0]} | " + " | ".join(cells) + " |")
    return header + "\n".join(lines) + "\n"


def bar_plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = summary[summary["metric"] == "dice"]
    directions = list(dict.fromkeys(zip(sub["source"], sub["target"], strict=True)))
    fig, axes = plt.subplots(1, len(directions), figsize=(6 * len(directions), 4), squeeze=False)
    for ax, (src, tgt) in zip(axes[0], directions, strict=True):
        d = sub[(sub["source"] == src) & (sub["target"] == tgt)]
        classes = list(dict.fromkeys(d["class"]))
        # one bar group per experiment: two experiments may share a row label (e.g. two translators
        # of one kind); the experiment name then tells them apart in the legend
        experiments = list(dict.fromkeys(d["experiment"]))
        labels = {e: str(d.loc[d["experiment"] == e, "method"].iloc[0]) for e in experiments}
        shared = {lab for lab in labels.values() if list(labels.values()).count(lab) > 1}
        width = 0.8 / max(len(experiments), 1)
        x = np.arange(len(classes))
        for i, e in enumerate(experiments):
            dm = d[d["experiment"] == e].set_index("class").loc[classes]
            err = np.where(dm["n_seeds"] > 1, dm["std_over_seeds"], dm["volume_std"])
            label = f"{labels[e]} [{e}]" if labels[e] in shared else labels[e]
            ax.bar(x + i * width, dm["mean"], width, yerr=err, capsize=2, label=label)
        ax.set_xticks(x + width * (len(experiments) - 1) / 2, classes)
        ax.set_ylim(0, 1)
        ax.set_ylabel("Dice")
        ax.set_title(f"{direction_label(src, tgt)} (target test volumes)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def overlay_plot(overlay_npz: Path, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    d = dict(np.load(overlay_npz))
    if str(d.get("slice_axis", "axial")) != "axial":
        # Cached slices run inferior -> superior down the rows; show superior at the top.
        for key in ("image", "label", "prediction"):
            d[key] = np.flipud(d[key])
    cmap = ListedColormap(["none", "tab:red", "tab:green", "tab:blue", "tab:orange"])
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, (name, lab) in zip(axes, [("image", None), ("ground truth", d["label"]), ("prediction", d["prediction"])], strict=True):
        ax.imshow(d["image"], cmap="gray")
        if lab is not None:
            ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=0, vmax=4, alpha=0.5, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{title}: case {d['case']}, slice {int(d['slice'])}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def build_report(
    metrics_files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    title: str = "xmodseg report",
    translation: Sequence[str | os.PathLike[str]] = (),
    anatomy: Sequence[str | os.PathLike[str]] = (),
    reference: Mapping[str, Any] | None = None,
    comparisons: Sequence[Sequence[str]] = (),
    source_kinds: Mapping[str, str] | None = None,
    overlays: Sequence[str | os.PathLike[str]] | None = None,
    sweeps: Sequence[Mapping[str, Any]] = (),
) -> None:
    """summary.md/csv, comparisons.csv, the bar plot and overlays. `comparisons`: explicit
    (A, B) experiment pairs on top of the default claims; `source_kinds`: {modality: the data
    set's source kind}, which says whether SIFA-compatible numbers are on the release grid;
    `overlays`: the overlay.npz of each metrics file, in the same order (None: no overlay figures);
    `sweeps`: label-budget sweeps ({title, x, lines}) drawn in sweeps.png with their table."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = _load_metrics(metrics_files)
    summary = seed_summary(long_table(docs))
    with atomic_path(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6f")
    made, notes = run_comparisons(docs, comparisons)
    write_comparisons_csv(made, out_dir / "comparisons.csv")
    bar_plot(summary, out_dir / "dice_bar.png")
    write_per_case_csv(docs, out_dir / PER_CASE_FILE)
    if overlays is not None and len(overlays) != len(metrics_files):
        raise ConfigError(f"report: {len(overlays)} overlay files for {len(metrics_files)} metrics files; pass one overlay per metrics file, in the same order")
    figures = _overlays(docs, out_dir, overlays or [])
    md = _markdown(title, summary, docs, claims_section(made, notes))
    md += per_case_section(docs) + grids_section(docs, out_dir) + training_section(docs, out_dir)
    if sweeps:
        md += sweep_section(summary, docs, sweeps, out_dir / "sweeps.png")
    if reference:
        md += reference_section(summary, reference, source_kinds)
    if translation:
        md += translation_section(translation, anatomy, out_dir)
    md += overlays_section(figures) + provenance_section(docs)
    write_text(out_dir / "summary.md", md)


def training_section(docs: Sequence[MetricsDoc], out_dir: Path) -> str:
    """Training time per experiment and the learning curves, from the model sidecars."""
    found = sidecars(docs)
    drawn = curves_plot(found, out_dir / CURVES_FILE)
    return time_section(docs, found) + "\n## Learning curves\n\n" + (
        f"Loss terms per iteration of each experiment's lowest seed ({drawn} experiments), binned to at most 100 points, from the model sidecars.\n\n![learning curves]({CURVES_FILE})\n"
        if drawn
        else "No model sidecar of these experiments holds a loss history (trained before sidecars kept one, or only the metrics are present).\n"
    )


SWEEP_AXIS_LABELS = {"n_assistant": "labelled assistant volumes", "n_labelled": "labelled target volumes"}


def sweep_points(summary: pd.DataFrame, docs: Sequence[MetricsDoc], sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One point per experiment of the sweep: x from its runs' drawn label budget (every seed must
    agree), y the mean Dice over its seeds (class mean), with the std over seeds."""
    dice = summary[(summary["metric"] == "dice") & (summary["class"] == "mean")].set_index("experiment")
    points = []
    for line, names in sweep["lines"].items():
        for name in names:
            xs = {(d.provenance.get(LABEL_BUDGET) or {}).get(sweep["x"]) for d in docs if d.name == name}
            if name not in dice.index or len(xs) != 1 or None in xs:
                raise ConfigError(f"report sweep '{sweep['title']}': {name} has no metrics or no single recorded {sweep['x']} ({sorted(map(str, xs))}); rerun its evaluation")
            row, (x,) = dice.loc[name], xs
            points.append({"line": line, "experiment": name, "x": int(x or 0), "mean": float(row["mean"]), "std": float(row["std_over_seeds"]), "n_seeds": int(row["n_seeds"])})
    return points


def sweep_section(summary: pd.DataFrame, docs: Sequence[MetricsDoc], sweeps: Sequence[Mapping[str, Any]], path: Path) -> str:
    """Dice against a label budget (`report.sweeps`): one panel per sweep in `path`, and a table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_points = [sweep_points(summary, docs, sw) for sw in sweeps]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 3.6), squeeze=False)
    parts = ["\n## Label-budget sweeps\n\nMean Dice over the target test volumes (class mean) against the label budget; mean ± std over seeds.\n\n![sweeps](sweeps.png)\n"]
    for ax, sweep, points in zip(axes[0], sweeps, all_points, strict=True):
        parts.append(f"\n**{sweep['title']}**\n\n| line | {SWEEP_AXIS_LABELS[sweep['x']]} | experiment | Dice | seeds |\n|---|---|---|---|---|\n")
        for line in sweep["lines"]:
            pts = sorted((p for p in points if p["line"] == line), key=lambda p: p["x"])
            ax.errorbar([p["x"] for p in pts], [p["mean"] for p in pts], yerr=[p["std"] for p in pts], marker="o", capsize=3, label=line)
            parts += [f"| {line} | {p['x']} | {p['experiment']} | {format_cell(p['mean'], p['std'])} | {p['n_seeds']} |\n" for p in pts]
        ax.set_xlabel(SWEEP_AXIS_LABELS[sweep["x"]])
        ax.set_ylabel("Dice (class mean)")
        ax.set_title(sweep["title"], fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return "".join(parts)


def reference_section(summary: pd.DataFrame, reference: Mapping[str, Any], source_kinds: Mapping[str, str] | None = None) -> str:
    """Our SIFA-compatible mean Dice next to the published one (both in %), per experiment named
    in `reference`, with the grid it was computed on: only the SIFA/PnP-AdaNet release grid
    (source kind `sifa_release`) is the papers' grid. A `claim` (text) is listed below the table
    for papers whose numbers are not known, only a statement such as GLUA's abstract's."""
    dice = summary[summary["metric"] == "sifa_dice"]
    classes = list(dict.fromkeys(dice["class"]))
    lines = [
        "\n## Published numbers (SIFA-compatible Dice %, ours / paper / Δ = ours − paper)\n",
        "| experiment | method | grid | paper | " + " | ".join(classes) + " |",
        "|---|---|---|---|" + "---|" * len(classes),
    ]
    claims: list[str] = []  # published statements without per-class numbers (e.g. "+3.92 Dice over the state of the art")
    for exp, ref in reference.items():
        sel = dice[dice["experiment"] == exp]
        if sel.empty:
            continue
        ours = {r["class"]: r["mean"] for _, r in sel.iterrows()}
        cells = []
        for c in classes:
            o = "N/A" if math.isnan(ours.get(c, math.nan)) else f"{100 * ours[c]:.1f}"
            p = ref.get("dice", {}).get(c)
            delta = f"{float(o) - float(p):+.1f}" if p is not None and o != "N/A" else "–"  # of the numbers shown
            cells.append(f"{o} / {p if p is not None else '–'} / {delta}")
        method, target = sel["method"].iloc[0], sel["target"].iloc[0]
        lines.append(f"| {exp} | {method} | {_grid(source_kinds, target)} | {ref.get('source', '')} | " + " | ".join(cells) + " |")
        if ref.get("claim"):
            claims.append(f"- {exp}: {' '.join(str(ref['claim']).split())} ({ref.get('source', 'no source given')})")
    lines.append(
        "\nOurs: `sifa_dice`, Dice on the preprocessed grid as SIFA's evaluate.py computes it. It is comparable with the "
        "papers only when the run used the SIFA/PnP-AdaNet release grid (data-set source kind `sifa_release`, "
        "grid `release`); on our own preprocessing it is a different grid and sampling, so a row there is a "
        "reference point, not a reproduction. Scan-grid Dice and ASSD (mm) are in the tables above.\n"
    )
    if claims:
        lines.append("Published claims without per-class numbers (–: no number to compare with):\n\n" + "\n".join(claims) + "\n")
    return "\n".join(lines) + "\n"


def _grid(source_kinds: Mapping[str, str] | None, target: str) -> str:
    if source_kinds is None or target not in source_kinds:
        return "unknown"
    kind = source_kinds[target]
    return "release" if kind == "sifa_release" else f"own ({kind})"


# ---- claims: paired differences between experiments (xmodseg.reporting.compare) ---------------------------

COMPARISON_COLUMNS = [
    "experiment_a", "experiment_b", "target", "metric", "class", "mean_diff", "ci_low", "ci_high",
    "n_pairs", "n_volumes", "n_seeds", "n_dropped", "n_a_better", "n_b_better", "sign_test_p", "verdict",
]


def _is_adaptation(method: str) -> bool:
    """Unsupervised adaptation: the method's class declares target images and no target labels."""
    from xmodseg.methods import METHODS

    try:
        needs = METHODS.declared.get(method).needs
    except KeyError:
        return False
    return bool(needs.target_images and not needs.target_labels)


def default_pairs(experiments: Mapping[str, Mapping[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
    """Every adaptation experiment against the translate_then_segment experiment of its direction
    (the one on the same translator if there is one, so that e.g. GLUA and its baseline differ only
    by step B; else the first), and both against the first source_only one; notes for references
    that are missing."""
    def first(method: str, direction: tuple[str, str], translator: str | None = None) -> str | None:
        found = [n for n, e in experiments.items() if e["method"] == method and (e["source"], e["target"]) == direction]
        same = [n for n in found if translator is not None and experiments[n].get("translator") == translator]
        return (same or found)[0] if found else None

    pairs: list[tuple[str, str]] = []
    notes: list[str] = []
    for name, exp in experiments.items():
        if not _is_adaptation(exp["method"]):
            continue
        direction = (exp["source"], exp["target"])
        arrow = direction_label(*direction)
        t2s, source_only = first("translate_then_segment", direction, exp.get("translator")), first("source_only", direction)
        for ref, method in ((t2s, "translate_then_segment"), (source_only, "source_only")):
            if ref is None:
                notes.append(f"{name} not compared with {method}: no {method} experiment for {arrow}.")
            else:
                pairs.append((name, ref))
        if t2s is not None and source_only is not None:
            pairs.append((t2s, source_only))
    return list(dict.fromkeys(pairs)), notes


def run_comparisons(docs: Sequence[MetricsDoc | Mapping[str, Any]], explicit: Sequence[Sequence[str]] = ()) -> tuple[list[Comparison], list[str]]:
    """The default pairs (skipped with a note when they cannot be paired) and the explicit
    `report.comparisons` pairs (an error when they cannot)."""
    by_exp: dict[str, list[MetricsDoc]] = {}
    for d in map(MetricsDoc.coerce, docs):
        by_exp.setdefault(d.name, []).append(d)
    experiments = {name: ds[0].experiment for name, ds in by_exp.items()}
    pairs, notes = default_pairs(experiments)
    made = []
    for a, b in pairs:
        try:
            made.append(compare_docs(by_exp[a], by_exp[b]))
        except InputDataError as exc:
            notes.append(f"{a} not compared with {b}: {exc}")
    for i, pair in enumerate(explicit):
        if len(pair) != 2:
            raise ConfigError(f"report.comparisons[{i}]: {list(pair)} is not a pair [A, B] of experiment names")
        a, b = str(pair[0]), str(pair[1])
        for n in (a, b):
            if n not in by_exp:
                raise ConfigError(f"report.comparisons[{i}]: '{n}' is not an experiment of this report (have: {sorted(by_exp)})")
        if (a, b) in pairs:
            continue
        try:
            made.append(compare_docs(by_exp[a], by_exp[b]))
        except InputDataError as exc:
            raise ConfigError(f"report.comparisons[{i}]: {exc}; remove the pair or fix the experiments") from None
        pairs.append((a, b))
    return made, notes


def write_comparisons_csv(comparisons: Sequence[Comparison], path: Path) -> None:
    table = pd.DataFrame([r for c in comparisons for r in rows(c)], columns=COMPARISON_COLUMNS)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")


def claims_section(comparisons: Sequence[Comparison], notes: Sequence[str]) -> str:
    """Paired differences as a Markdown section (headers never start with `method | direction`,
    the audit's marker for a table of reported numbers)."""
    parts = [
        "\n## Claims (paired differences, bootstrap 95% CI)\n\n",
        "A − B per (target test volume, seed) pair: the same test volume and the same training seed in both "
        "experiments, of the per-volume mean over the foreground classes (per class for Dice below). Mean over pairs "
        f"with a percentile bootstrap {CONFIDENCE:.0%} interval ({N_RESAMPLES:,} resamples of the pairs, RNG seed {RNG_SEED}; "
        "`xmodseg compare A B` prints the same). Dice: positive = A better; ASSD: negative = A better; a pair with an "
        "undefined ASSD (an empty mask) is dropped and counted. The unit is the (volume, seed) pair and n is small "
        "(e.g. 4 test volumes × 1 seed = 4 pairs); pairs sharing a volume or a seed are not independent and a "
        "percentile bootstrap is too narrow at such n (4 same-signed differences always give an interval that "
        "excludes 0, where an exact sign test gives p = 0.125), so an interval describes these runs on these volumes, "
        "not patients in general. Also in `comparisons.csv`.\n\n",
    ]
    if comparisons:
        parts.append("| A | B | direction | metric | A − B | 95% CI | pairs (volumes × seeds) | A better in | verdict |\n")
        parts.append("|---|---|---|---|---|---|---|---|---|\n")
        for c in comparisons:
            for d in c.differences:
                if d.cls != "mean":
                    continue
                parts.append(
                    f"| {c.a} | {c.b} | {c.directions[0]} | {COMPARED[d.metric][0]} | {format_diff(d.mean_diff)} | {format_interval(d)} | "
                    f"{pairs_text(c, d)} | {d.n_a_better} of {d.n_pairs} (sign test p {format_p(d.sign_test_p)}) | {c.verdict_text(d)} |\n"
                )
        classes = list(dict.fromkeys(d.cls for c in comparisons for d in c.differences if d.metric == "dice" and d.cls != "mean"))
        parts.append("\nDice per class, A − B [95% CI]:\n\n| A | B | " + " | ".join(classes) + " |\n|---|---|" + "---|" * len(classes) + "\n")
        for c in comparisons:
            cells = {d.cls: f"{format_diff(d.mean_diff)} {format_interval(d)}" for d in c.differences if d.metric == "dice"}
            parts.append(f"| {c.a} | {c.b} | " + " | ".join(cells.get(k, "–") for k in classes) + " |\n")
    else:
        parts.append("No comparison: no adaptation experiment with a reference in its direction, and no `report.comparisons`.\n")
    if notes:
        parts.append("\n" + "".join(f"- {n}\n" for n in notes))
    return "".join(parts)


def _overlays(docs: list[MetricsDoc], out_dir: Path, overlays: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    """One overlay per experiment (its lowest seed); `overlays` pairs with `docs`."""
    first: dict[str, tuple[MetricsDoc, Path]] = {}
    for d, npz in sorted(zip(docs, map(Path, overlays)), key=lambda pair: pair[0].seed):
        first.setdefault(d.name, (d, npz))
    made = {}
    for name, (d, npz) in first.items():
        if npz.is_file():
            png = out_dir / f"overlay_{name}.png"
            overlay_plot(npz, f"{name} (seed {d.seed})", png)
            made[name] = png.name
    return made


def _markdown(title: str, summary: pd.DataFrame, docs: list[MetricsDoc], claims: str = "") -> str:
    parts = [f"# {' '.join(str(title).split()) or 'xmodseg report'}\n"]  # one heading line, as given (no quoting)
    parts.append(
        "Target-domain test volumes, 3D per volume. Values are mean ± std: std over seeds when an experiment "
        "has several seeds, otherwise over test volumes (the `± over` column says which). N/A: ASSD undefined for some "
        "volume (empty prediction or ground truth). `mean` is the average of the class means.\n"
    )
    parts.append(headline_section(summary, docs))
    for key, label in METRIC_KEYS.items():
        if key.endswith(LAST_K):
            continue
        parts.append(f"\n## {label}\n\n" + markdown_table(summary, key))
    parts.append(last_k_section(summary, docs))
    parts.append(pooled_section(docs))
    parts.append("\n![Dice per class](dice_bar.png)\n")
    parts.append(claims)
    return "".join(parts)


def overlays_section(overlays: Mapping[str, str]) -> str:
    if not overlays:
        return ""
    parts = ["\n## Overlays (target image, ground truth, prediction)\n"]
    parts += [f"\n**{name}**\n\n![{name}]({png})\n" for name, png in overlays.items()]
    return "".join(parts)


def provenance_section(docs: Sequence[MetricsDoc]) -> str:
    """Per seed: the metrics file, model, commit and data behind its numbers (`xmodseg audit` checks them)."""
    parts = ["\n## Provenance\n\n| experiment | seed | metrics file | model sha256 | git commit | dirty | data manifest sha256 |\n|---|---|---|---|---|---|---|\n"]
    for d in sorted(docs, key=lambda d: (d.name, d.seed)):
        prov = d.provenance
        git = prov.get("git", {})
        parts.append(
            f"| {d.name} | {d.seed} | `{d.path}` | `{prov['model_sha256'][:12]}` | "
            f"`{(git.get('commit') or 'n/a')[:12]}` | {git.get('dirty')} | `{prov['data_manifest_sha256'][:12]}` |\n"
        )
    return "".join(parts)


def audited_sections(docs: Sequence[MetricsDoc]) -> dict[str, str]:
    """{heading: section text} of the report's sections made only from the metrics documents, which
    the audit remakes from its recomputed documents and compares row by row."""
    return {HEADLINE_HEADING: headline_section(seed_summary(long_table(docs)), docs), PER_CASE_HEADING: per_case_section(docs)}


def last_k_section(summary: pd.DataFrame, docs: Sequence[MetricsDoc]) -> str:
    """The mean over the last k checkpoints beside the last iteration, for the experiments that keep
    snapshots: how much a number depends on where training happened to stop. No checkpoint is
    chosen (target labels select nothing)."""
    keys = [k for k in METRIC_KEYS if k.endswith(LAST_K) and not summary[summary["metric"] == k].empty]
    if not keys:
        return ""
    iterations: dict[str, str] = {}
    for d in docs:
        if d.checkpoints is not None:
            iters = [*d.checkpoints["iterations"], "last"]
            iterations.setdefault(d.name, ", ".join(str(i) for i in iters))
    parts = [
        "\n## Checkpoints: mean over the last k\n\n"
        "The tables above are the last iteration. Below, for experiments that keep snapshots, each test volume's "
        "value is averaged over the last k checkpoints (iterations listed), then summarised as above; the last "
        "iteration is one of them. No checkpoint is selected, with or without target labels.\n\n"
    ]
    parts += [f"- {name}: iterations {its}\n" for name, its in iterations.items()]
    for key in keys:
        parts.append(f"\n## {METRIC_KEYS[key]}\n\n" + markdown_table(summary, key))
    return "".join(parts)


POOLED_METRICS = {"sifa_dice": "Dice", "sifa_assd_vox": "ASSD (voxels)", "iou": "IoU (mean = mIoU)"}
POOLED_HEADING = "## Pooled over test volumes (GLUA's evaluation)"


def pooled_section(docs: Sequence[MetricsDoc]) -> str:
    """GLUA's pooled numbers (all test volumes concatenated, one value per class and seed) beside the
    per-volume tables, so a row can be put next to either kind of published table. Mean ± std over
    seeds; no spread over volumes exists for a pooled value (one seed: ± –)."""
    by_exp: dict[str, list[MetricsDoc]] = {}
    for d in docs:
        if d.pooled:
            by_exp.setdefault(d.name, []).append(d)
    if not by_exp:
        return ""
    first = next(iter(by_exp.values()))[0].pooled or {}
    parts = [
        f"\n{POOLED_HEADING}\n\n"
        f"{first.get('definition', 'all test volumes concatenated')}. One value per class and seed, so no spread over "
        "volumes; ± is the std over seeds (– with one seed). The tables above average per volume instead.\n"
    ]
    for key, label in POOLED_METRICS.items():
        classes = list(dict.fromkeys(c for ds in by_exp.values() for d in ds for c in (d.pooled or {}).get(key, {})))
        if not classes:
            continue
        parts.append(f"\n### Pooled {label}\n\n| method | direction | seeds | labels | " + " | ".join(classes) + " |\n|---|---|---|---|" + "---|" * len(classes) + "\n")
        for ds in by_exp.values():
            exp = ds[0].experiment
            cells = []
            for c in classes:
                values = [float((d.pooled or {}).get(key, {}).get(c, math.nan)) for d in ds]
                mean, std = _mean_std(values)
                cells.append("N/A" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}" if len(ds) > 1 else f"{mean:.3f} ± –")
            parts.append(f"| {method_label(exp)} | {direction_label(exp['source'], exp['target'])} | {len(ds)} | {label_budget(ds[0])} | " + " | ".join(cells) + " |\n")
    return "".join(parts)


def translation_section(quality_files: Sequence[str | os.PathLike[str]], anatomy_files: Sequence[str | os.PathLike[str]], out_dir: Path) -> str:
    """Translator table: cost, intensity-distribution distance to the real target (before/after,
    no labels needed) and the evaluation-only anatomy check, with links to the preview grids."""
    anatomy = {str(Path(p).parent): json.loads(Path(p).read_text()) for p in anatomy_files}
    lines = [
        "\n## Image translation\n\n",
        "Distances between intensity histograms of translated source and real target training slices "
        "(lower is closer; `before` = untranslated source). Anatomy check (evaluation only): Dice of the target "
        "oracle's prediction on translated source test volumes against the source labels (`untranslated` for reference).\n\n",
        "| translator | direction | seed | iterations | s/it | minutes | W1 before → after | KL before → after | anatomy Dice translated | untranslated |\n",
        "|---|---|---|---|---|---|---|---|---|---|\n",
    ]
    previews = []
    for q in _load(quality_files):
        d = q["intensity_distance"]
        folder = str(Path(q["_path"]).parent)
        a = anatomy.get(folder)
        dice_t = f"{a['translated']['summary']['mean']['mean']:.3f}" if a else "n/a (no oracle)"
        dice_u = f"{a['untranslated']['summary']['mean']['mean']:.3f}" if a else "n/a"
        name = Path(folder).parent.name
        lines.append(
            f"| {name} ({q['translator']}) | {q['source'].upper()}→{q['target'].upper()} | {q['seed']} | {q['iterations']} | "
            f"{q['seconds_per_iteration']:.3f} | {q['seconds'] / 60:.1f} | {d['before']['wasserstein']:.3f} → {d['after']['wasserstein']:.3f} | "
            f"{d['before']['kl']:.3f} → {d['after']['kl']:.3f} | {dice_t} | {dice_u} |\n"
        )
        previews.append((f"{name} seed {q['seed']}", os.path.relpath(Path(folder) / "preview.png", out_dir)))
    lines.append("\nPreview grids (source / translated / reconstructed):\n")
    for label, rel in previews:
        lines.append(f"\n**{label}**\n\n![{label}]({rel})\n")
    return "".join(lines)
