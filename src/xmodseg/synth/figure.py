"""The README's side-by-side figure: the same cases drawn as phantom version 1 and version 2, per modality.

    python -m xmodseg.synth.figure docs/          # writes docs/phantom_v1_v2_mr.png and ..._ct.png

A case id draws the same layout in both versions (version 2 takes version 1's draws first), so
each column shows one subject: version 1 on top, version 2 below, the slice through the most
labelled voxels in the scan's own orientation (MR coronal, CT axial), radiological view (patient
right on the left), labels as contours. Training cases of `datasets.synthetic` only.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import atomic_path
from xmodseg.synth.generate import case_rng, simulate_case
from xmodseg.synth.params import PhantomParams

SEED = 2026  # the registry's `synthetic` seed
CASES = ("1001", "1002", "1004")  # training cases in both modalities (not among the test ids)
LABEL_COLOURS = {205: ("MYO", "#e41a1c"), 420: ("LAC", "#ff7f00"), 500: ("LVC", "#4daf4a"), 820: ("AA", "#984ea3")}


def display_slice(kind: str, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(image slice, label slice, grey window) of the slice with the most labelled voxels, in radiological view."""
    k = int(np.argmax((label > 0).sum(axis=(1, 2))))
    img, lab = image[k], label[k]
    if kind == "ct":  # rows run posterior -> anterior and columns towards the patient's right: flip both
        img, lab = img[::-1, ::-1], lab[::-1, ::-1]
        window = (-350.0, 650.0)
    else:  # coronal rows run superior -> inferior already; columns towards the patient's left: flip
        img, lab = img[:, ::-1], lab[:, ::-1]
        window = (0.0, float(np.percentile(image, 99.5)))
    return img, lab, window


def comparison_figure(
    kind: str, out: Path, cases: Sequence[str] = CASES, seed: int = SEED, overrides: Mapping[str, Any] | None = None
) -> Path:
    """Rows: phantom versions 1 and 2; columns: `cases`; written atomically as a PNG (`overrides`: e.g. coarser grids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(2, len(cases), figsize=(2.6 * len(cases), 5.6), squeeze=False)
    for row, version in enumerate((1, 2)):
        params = PhantomParams.from_overrides(overrides, version=version)
        for col, case in enumerate(cases):
            c = simulate_case(kind, case_rng(seed, kind, case), params)
            img, lab, (lo, hi) = display_slice(kind, sitk.GetArrayFromImage(c.image), sitk.GetArrayFromImage(c.label))
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            for raw, (_, colour) in LABEL_COLOURS.items():
                if (lab == raw).any():
                    ax.contour(lab == raw, levels=[0.5], colors=[colour], linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"version {version}")
            if row == 0:
                ax.set_title(f"{kind.upper()} case {case}", fontsize=9)
    handles = [Line2D([0], [0], color=colour, lw=1.5, label=name) for name, colour in LABEL_COLOURS.values()]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=72, format="png")
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, help="folder for phantom_v1_v2_mr.png and phantom_v1_v2_ct.png")
    args = ap.parse_args(argv)
    for kind in ("mr", "ct"):
        print(comparison_figure(kind, args.out_dir / f"phantom_v1_v2_{kind}.png"))


if __name__ == "__main__":
    main()
