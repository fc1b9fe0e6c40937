"""One comparison grid per direction (`grid_<source>2<target>.png`): the ground truth and every
experiment's prediction on two test volumes, the median one and the worst one, on the slice with
the most labelled foreground, with a class legend. The volumes are ranked by their class-mean Dice
averaged over the direction's experiments (lowest seed each), so the grid shows a typical volume
and the hardest one rather than the best-looking slice.

Drawn from what evaluation recorded per case: the prediction on the preprocessed grid, the cached
label, and the cached image (found through the metrics file's data manifest). When those files are
absent (only the metrics restored), the figure says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodseg.artifacts.cache import CacheManifest
from xmodseg.artifacts.metrics import MetricsDoc
from xmodseg.atomic import atomic_path
from xmodseg.errors import InputDataError
from xmodseg.layout import PATTERNS
from xmodseg.reporting.compare import direction_label
from xmodseg.reporting.headline import volume_means


def grid_name(source: str, target: str) -> str:
    return Path(PATTERNS["report_grid"]).name.format(source=source, target=target)


def chosen_cases(docs: Sequence[MetricsDoc]) -> list[tuple[str, str]]:
    """[("median", case), ("worst", case)] by the class-mean Dice averaged over `docs` (one per
    experiment); one entry when both are the same volume."""
    cases = [c["case"] for c in docs[0].cases]
    scores: dict[str, list[float]] = {case: [] for case in cases}
    for d in docs:
        for case, v in zip((c["case"] for c in d.cases), volume_means(d, "dice"), strict=True):
            scores.setdefault(case, []).append(v)
    ranked = sorted(cases, key=lambda c: (float(np.nanmean(scores[c])), c))
    median, worst = ranked[(len(ranked) - 1) // 2], ranked[0]
    return [("median", median)] if median == worst else [("median", median), ("worst", worst)]


def _record(doc: MetricsDoc, case: str) -> dict[str, Any]:
    return next(c for c in doc.cases if c["case"] == case)


def _volume_slices(doc: MetricsDoc, cases: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per case: the image and label on the slice with the most labelled foreground, its index,
    and whether rows are flipped for display (read once; every experiment of a direction was
    evaluated on the same target cache)."""
    manifest_path = Path(doc.provenance["data_manifest"])
    manifest = CacheManifest.load(manifest_path)
    flip = manifest.slice_axis != "axial"  # cached slices run inferior -> superior down the rows
    out = {}
    for case in cases:
        cached = next(r for r in manifest.cases_in("test") if r.case == case)
        label = np.load(_record(doc, case)["ground_truth_preprocessed"])
        i = int(np.argmax((label > 0).reshape(label.shape[0], -1).sum(axis=1)))
        image = np.load(manifest_path.parent / cached.image, mmap_mode="r")
        shown = np.asarray(image[i]) if image.ndim == 3 else np.asarray(image[i]).mean(axis=0)
        out[case] = {"image": _shown(shown, flip), "label": _shown(label[i], flip), "slice": i, "flip": flip}
    return out


def _shown(a: np.ndarray, flip: bool) -> np.ndarray:
    return np.flipud(a) if flip else a


def _prediction_slice(doc: MetricsDoc, case: str, volume: Mapping[str, Any]) -> np.ndarray:
    with np.load(_record(doc, case)["prediction_preprocessed"]) as data:
        return _shown(data["prediction"][volume["slice"]], volume["flip"])


def grid_plot(docs: Sequence[MetricsDoc], path: Path) -> str:
    """Draw the grid of one direction (`docs`: its experiments' lowest seeds, in report order);
    return the note for the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, to_hex
    from matplotlib.patches import Patch

    exp = docs[0].experiment
    title = direction_label(exp["source"], exp["target"])
    chosen = chosen_cases(docs)
    try:
        volumes = _volume_slices(docs[0], [case for _, case in chosen])
        predictions = {(d.name, case): _prediction_slice(d, case, volumes[case]) for d in docs for _, case in chosen}
    except (OSError, KeyError, StopIteration, ValueError, InputDataError) as exc:
        fig = plt.figure(figsize=(5, 1))
        fig.text(0.5, 0.5, f"{title}: predictions or cached images not available", ha="center", va="center")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        return f"{title}: not drawn, a prediction or cached image could not be read ({type(exc).__name__}: {exc})."
    classes = docs[0].class_names
    palette = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    colours = [to_hex(palette(i)) for i in range(len(classes))]
    cmap = ListedColormap(["none", *colours])
    dice = {d.name: dict(zip((c["case"] for c in d.cases), volume_means(d, "dice"), strict=True)) for d in docs}
    rows = [("ground truth", None), *[(d.name, d) for d in docs]]
    fig, axes = plt.subplots(len(rows), len(chosen), figsize=(2.6 * len(chosen), 2.4 * len(rows)), squeeze=False)
    for r, (name, d) in enumerate(rows):
        for c, (which, case) in enumerate(chosen):
            v = volumes[case]
            lab = v["label"] if d is None else predictions[(name, case)]
            ax = axes[r][c]
            ax.imshow(v["image"], cmap="gray")
            ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=0, vmax=len(classes), alpha=0.55, interpolation="nearest")
            text = f"{which} volume {case}, slice {v['slice']}" if d is None else f"{name}: Dice {dice[name][case]:.3f}"
            ax.set_title(text, fontsize=7)
            ax.axis("off")
    fig.legend(handles=[Patch(color=col, label=cls) for cls, col in zip(classes, colours, strict=True)], loc="lower center", ncol=min(len(classes), 6), fontsize=7)
    fig.suptitle(f"{title}\nmedian and worst test volume", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return f"{title}: " + ", ".join(f"{which} volume {case}" for which, case in chosen) + "."


def grids_section(docs: Sequence[MetricsDoc], out_dir: Path) -> str:
    """One grid per direction (each experiment's lowest seed) and the Markdown that shows them."""
    first: dict[str, MetricsDoc] = {}
    for d in sorted(docs, key=lambda d: int(d.seed)):
        first.setdefault(d.name, d)
    by_direction: dict[tuple[str, str], list[MetricsDoc]] = {}
    for d in sorted(first.values(), key=lambda d: [x.name for x in docs].index(d.name)):
        by_direction.setdefault((d.experiment["source"], d.experiment["target"]), []).append(d)
    parts = ["\n## Comparison grids (median and worst test volume)\n\nGround truth, then each experiment's prediction (lowest seed), on the slice with the most labelled foreground.\n"]
    for (source, target), ds in by_direction.items():
        name = grid_name(source, target)
        note = grid_plot(ds, out_dir / name)
        parts.append(f"\n{note}\n\n![{direction_label(source, target)}]({name})\n")
    return "".join(parts)
