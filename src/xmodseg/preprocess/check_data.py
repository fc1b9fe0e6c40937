"""`xmodseg check-data`: every case of a config's data set checked as preprocessing will see it,
before any job runs, with one QC picture per case.

Per case: the image and label read in full, their geometry compared, the label values mapped with
the modality's mapping, the scan resampled and cropped with the config's `preprocess` block, and
the fraction of labelled voxels that stays inside the crop. Registration-gated and own data are
read where `data_path` says (the import layout), everything else where the registry puts it. The
QC picture is the slice with the most labelled voxels, the label outlined. The table is printed
and written as `check.tsv`; a case with a problem is named with the reason, the others still run.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmodseg.atomic import atomic_path
from xmodseg.errors import XmodsegError
from xmodseg.preprocess.geometry import SLICE_AXES
from xmodseg.preprocess.pipeline import PreprocessConfig, _load_case
from xmodseg.registry import DatasetSpec, SourceKind


@dataclass
class CaseCheck:
    modality: str
    case: str
    split: str
    problem: str = ""  # empty: fine
    size: str = ""
    spacing: str = ""
    classes_present: str = ""
    labelled_voxels: int = 0
    inside_crop: float = float("nan")  # fraction of the labelled voxels the crop keeps
    picture: str = ""


def source_spec(spec: DatasetSpec, modality: str, data_path: Mapping[str, str]) -> DatasetSpec:
    """`spec` reading `modality` where its files are before import: the data_path folder with the
    source layout (folder importer), or the registry's own layout once imported or generated."""
    kind = spec.source_kind(modality)
    src = spec.source_of(modality)
    imported = (spec.root / modality / "import_manifest.json").is_file()
    if kind not in (SourceKind.IMPORT,) or imported or src.get("importer", "folder") != "folder":
        return spec
    folder = data_path.get(modality) or src.get("path")
    layout = src.get("layout") or {}
    if not folder or not Path(folder).is_dir() or not {"image", "label"} <= set(layout):
        return spec
    mod = dataclasses.replace(spec.modality(modality), image_pattern=str(layout["image"]), label_pattern=str(layout["label"]))
    return dataclasses.replace(spec, root=Path(folder).expanduser(), modalities={**spec.modalities, modality: mod})


def check_modality(spec: DatasetSpec, modality: str, cfg: PreprocessConfig, pictures: Path | None) -> list[CaseCheck]:
    """Every case of `modality`, each as preprocessing loads it; problems are recorded, not raised."""
    out = []
    for case in spec.modality(modality).cases:
        row = CaseCheck(modality, case, spec.modality(modality).split_of(case))
        try:
            loaded = _load_case(spec, modality, case, cfg)
        except XmodsegError as exc:
            row.problem = str(exc)
            out.append(row)
            continue
        rec = loaded.record
        geometry = rec["original_geometry"]
        row.size = "x".join(str(v) for v in geometry["size"])
        row.spacing = "x".join(f"{v:.3g}" for v in geometry["spacing"])
        present = sorted(int(v) for v in np.unique(loaded.label) if v)
        row.classes_present = ",".join(spec.labels.class_names[i] for i in present)
        loss = rec["label_crop_loss"]
        row.labelled_voxels = int(loss["labelled_voxels"])
        row.inside_crop = 1.0 - float(loss["fraction"])
        if loaded.foreground_voxels == 0:
            row.problem = f"no labelled voxel in {rec['source_label']} after the label mapping"
        elif row.inside_crop < 0.99:
            row.problem = f"the crop keeps {row.inside_crop:.1%} of the labelled voxels: enlarge preprocess.crop_size or use in_plane: whole_slice"
        if pictures is not None:
            row.picture = str(qc_picture(loaded.image, loaded.label, SLICE_AXES[cfg.slice_axis], pictures / modality / f"{case}.png", f"{modality} {case} ({row.split})"))
        out.append(row)
    return out


def qc_picture(image: np.ndarray, label: np.ndarray, axis: int, path: Path, title: str) -> Path:
    """The slice with the most labelled voxels, grey, with the label's outline in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grey = image.mean(axis=0) if image.ndim == 4 else image  # colour frames: shown grey
    counts = np.moveaxis(label > 0, axis, 0).reshape(label.shape[axis], -1).sum(axis=1)
    i = int(np.argmax(counts))
    img, lab = np.take(grey, i, axis=axis), np.take(label, i, axis=axis)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    ax.imshow(img, cmap="gray")
    if lab.any():
        ax.contour(lab, levels=np.arange(0.5, float(lab.max()) + 1), cmap="tab10", linewidths=1)
    ax.set_title(f"{title}, slice {i}", fontsize=8)
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def check_data(spec: DatasetSpec, modalities: Sequence[str], cfg: PreprocessConfig, data_path: Mapping[str, str], out_dir: str | os.PathLike[str]) -> list[CaseCheck]:
    """Check every case of `modalities`; QC pictures and `check.tsv` under `out_dir`."""
    out = Path(out_dir)
    rows: list[CaseCheck] = []
    for m in modalities:
        rows += check_modality(source_spec(spec, m, data_path), m, cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "check.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in dataclasses.fields(CaseCheck)], delimiter="\t")
        writer.writeheader()
        writer.writerows(dataclasses.asdict(r) for r in rows)
    return rows


def format_checks(rows: Sequence[CaseCheck], where: Any) -> str:
    bad = [r for r in rows if r.problem]
    lines = [f"{'ok' if not bad else f'{len(bad)} PROBLEM(S)'}: {len(rows)} cases checked; QC pictures and check.tsv in {where}", ""]
    lines.append(f"{'modality':8} {'case':24} {'split':5} {'size':14} {'spacing mm':16} {'in crop':>7}  classes / problem")
    for r in rows:
        crop = "" if np.isnan(r.inside_crop) else f"{r.inside_crop:.1%}"
        lines.append(f"{r.modality:8} {r.case:24} {r.split:5} {r.size:14} {r.spacing:16} {crop:>7}  {('PROBLEM: ' + r.problem) if r.problem else r.classes_present}")
    return "\n".join(lines)
