"""`xmodseg init-dataset`: a registry entry and a workflow config for a researcher's own folders.

Given one folder per modality and the pattern of an image inside it (`images/{case}.nii.gz`), it
lists the cases, reads every label file (fully: a file that cannot be read stops here, not in a
job), collects the label values found per modality, matches them to classes, proposes a test split
and writes two files that the workflow reads as they are:

- `<name>_dataset.yaml`: the registry entry (folder importer, one label mapping per modality, cases
  and test ids), so the shipped registry stays untouched;
- `<name>.yaml`: a demo-scale workflow config (`data_path` for each modality, whole-slice
  preprocessing that crops nothing, source-only and oracle in each direction).

Classes are matched by the order of their values when no `--map` is given: the i-th smallest
non-zero value of each modality is class i (MR 1, 2 and CT 100, 200 -> class_1, class_2). The
printed summary says so; check it. Existing files are never overwritten.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import yaml

from xmodseg.atomic import atomic_path
from xmodseg.datasets.nifti_folder import list_cases
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.imageio import read_image
from xmodseg.registry import MODALITY_KINDS, NAME_PATTERN, NAME_RULE, check_name, dataset_from_config

# Demo scale (the default demo's U-Net block): fits a 2-core CPU in minutes; raise for real runs.
DEMO_TRAIN: dict[str, Any] = {
    "iterations": 600,
    "batch_size": 8,
    "lr": 0.002,
    "lr_schedule": "poly",
    "weight_decay": 0.00001,
    "checkpoint_every": 200,
    "log_every": 25,
    "network": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2},
}
DEMO_SCALE = "demo scale: U-Net 16-256 ch, 96x96 whole slices, batch 8, 600 it"


@dataclass
class ModalityScan:
    """What one modality's folder holds: labelled cases, scans without a label, label values."""

    name: str
    folder: Path
    cases: list[str]
    unlabelled: list[str]
    values: list[int]  # every label value found, sorted
    spacing: list[float] = field(default_factory=list)  # median voxel spacing (x, y, z) of the images

    @property
    def foreground(self) -> list[int]:
        return [v for v in self.values if v != 0]


def label_pattern_for(pattern: str, label_pattern: str | None) -> str:
    """The labels' pattern: given, or the images' with `images` -> `labels` (`imagesTr` -> `labelsTr`)."""
    if label_pattern:
        return label_pattern
    if "images" in pattern:
        return pattern.replace("images", "labels")
    raise ConfigError(f"--label-pattern is needed: the image pattern '{pattern}' has no 'images' part to turn into 'labels'")


def scan_modality(name: str, folder: str | os.PathLike[str], pattern: str, label_pattern: str) -> ModalityScan:
    """List the cases of one folder and read every label (values) and image header (spacing)."""
    root = Path(folder).expanduser().resolve()
    found = list_cases(root, pattern)
    if not found:
        raise InputDataError(f"{root}: no file matches '{pattern}' ({name}); check --pattern (relative to the folder, with {{case}})")
    bad = [c for c in found if not re.match(NAME_PATTERN, c)]
    if bad:
        raise InputDataError(f"{root}: case ids {bad[:5]} are not usable names ({NAME_RULE}); rename those files")
    cases, unlabelled, values, spacings = [], [], set(), []
    for case in found:
        label_file = root / label_pattern.format(case=case, modality=name)
        if not label_file.is_file():
            unlabelled.append(case)
            continue
        label = read_image(label_file, kind="label")
        arr = sitk.GetArrayViewFromImage(label)
        if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
            raise InputDataError(f"{label_file}: non-integer label values (is this an image, not a label?)")
        values |= {int(v) for v in np.unique(arr)}
        image_file = root / pattern.format(case=case, modality=name)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(image_file))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputDataError(f"{image_file}: cannot read the image header (corrupt file, or not an image?)") from None
        spacings.append(reader.GetSpacing())
        cases.append(case)
    if len(cases) < 2:
        raise InputDataError(f"{root}: {len(cases)} labelled case(s) of {name} (label files '{label_pattern}'); training and testing need at least 2")
    return ModalityScan(name, root, cases, unlabelled, sorted(values), [float(s) for s in np.median(np.asarray(spacings), axis=0)])


def match_classes(scans: Sequence[ModalityScan], classes: Sequence[str] | None, maps: Mapping[str, Mapping[int, int]] | None) -> tuple[list[str], dict[str, dict[int, int]]]:
    """Class names and, per modality, raw value -> class index. `maps` (from `--map mr:1=1,2=2`)
    win; otherwise the i-th non-zero value of every modality is class i, which needs the same
    number of values in each modality."""
    maps = dict(maps or {})
    counts = {s.name: len(s.foreground) for s in scans if s.name not in maps}
    n = len(classes) if classes else (next(iter(counts.values())) if counts else max(max(m.values(), default=0) for m in maps.values()))
    if len(set(counts.values()) | ({n} if classes else set())) > 1:
        found = "; ".join(f"{s.name}: {s.foreground}" for s in scans)
        raise InputDataError(
            f"the modalities have different numbers of non-zero label values ({found}), so classes cannot be matched by order; "
            "say which value is which class with --map (e.g. --map mr:1=1,2=2 --map ct:100=1,205=2) and name them with --classes"
        )
    out: dict[str, dict[int, int]] = {}
    for s in scans:
        mapping = {int(k): int(v) for k, v in maps[s.name].items()} if s.name in maps else {v: i + 1 for i, v in enumerate(s.foreground)}
        mapping.setdefault(0, 0)
        missing = [v for v in s.values if v not in mapping]
        if missing:
            raise InputDataError(f"{s.folder}: label values {missing} of {s.name} are not in --map {s.name}:...; map them (0 = background)")
        out[s.name] = dict(sorted(mapping.items()))
    names = list(classes) if classes else [f"class_{i}" for i in range(1, n + 1)]
    for name in names:
        check_name(name, "--classes", "class name")
    return ["background", *names], out


def propose_test(cases: Sequence[str], fraction: float) -> list[str]:
    """The last `fraction` of the sorted cases (at least one, at least one left to train on)."""
    k = min(max(1, math.ceil(fraction * len(cases))), len(cases) - 1)
    return sorted(cases)[-k:]


@dataclass
class InitResult:
    registry: Path
    config: Path
    scans: list[ModalityScan]
    classes: list[str]
    mappings: dict[str, dict[int, int]]
    tests: dict[str, list[str]]

    def summary(self) -> str:
        lines = []
        for s in self.scans:
            m = self.mappings[s.name]
            lines.append(f"{s.name}: {len(s.cases)} labelled cases in {s.folder} (test: {', '.join(self.tests[s.name])})"
                         + (f"; {len(s.unlabelled)} scans without a label left out: {', '.join(s.unlabelled[:5])}" if s.unlabelled else ""))
            lines.append(f"  label values {s.values} -> " + ", ".join(f"{v}={self.classes[i]}" for v, i in m.items()))
        lines += [
            "Classes are matched by the order of their values unless --map said otherwise: check the lines above.",
            f"wrote {self.registry} (the registry entry) and {self.config} (a demo-scale workflow config)",
            f"next: xmodseg check-data --configfile {self.config}",
            f"      snakemake --cores 2 --configfile {self.config}",
        ]
        return "\n".join(lines)


def init_dataset(
    name: str,
    folders: Mapping[str, str | os.PathLike[str]],
    pattern: str,
    *,
    label_pattern: str | None = None,
    classes: Sequence[str] | None = None,
    maps: Mapping[str, Mapping[int, int]] | None = None,
    test_fraction: float = 0.2,
    out_dir: str | os.PathLike[str] = "config",
) -> InitResult:
    """Scan the folders, write `<out_dir>/<name>_dataset.yaml` and `<out_dir>/<name>.yaml`."""
    check_name(name, "--name", "data-set name")
    if not folders:
        raise ConfigError("give at least one modality folder (--mr DIR and/or --ct DIR)")
    for mod in folders:
        if mod not in MODALITY_KINDS:
            raise ConfigError(f"modality '{mod}': one of {list(MODALITY_KINDS)}")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"--test-fraction {test_fraction}: a fraction in (0, 1)")
    out = Path(out_dir)
    registry_file, config_file = out / f"{name}_dataset.yaml", out / f"{name}.yaml"
    for f in (registry_file, config_file):
        if f.exists():
            raise ConfigError(f"{f} exists; choose another --name or --out, or move it away (init-dataset overwrites nothing)")
    labels_at = label_pattern_for(pattern, label_pattern)
    scans = [scan_modality(m, folder, pattern, labels_at) for m, folder in folders.items()]
    class_names, mappings = match_classes(scans, classes, maps)
    tests = {s.name: propose_test(s.cases, test_fraction) for s in scans}
    entry = {
        "description": f"{name}: own data ({', '.join(f'{len(s.cases)} {s.name}' for s in scans)}), written by xmodseg init-dataset",
        "root": f"data/raw/{name}",
        "source": {"kind": "import", "importer": "folder", "request": "your own data: data_path in the workflow config",
                   "layout": {"image": pattern, "label": labels_at}},
        "labels": {"classes": class_names},
        "modalities": {s.name: {"kind": s.name, "labels": {"mapping": mappings[s.name]}, "cases": s.cases, "test": tests[s.name]} for s in scans},
    }
    dataset_from_config(name, entry)  # the entry must load as the workflow will load it
    _write_new(registry_file, _REGISTRY_HEAD + yaml.safe_dump({"datasets": {name: entry}}, sort_keys=False, default_flow_style=None, width=120))
    _write_new(config_file, _config_text(name, registry_file, scans))
    return InitResult(registry_file, config_file, scans, class_names, mappings, tests)


_REGISTRY_HEAD = """# Written by `xmodseg init-dataset` from your folders. Check the label mapping of each modality
# (values -> class index; classes matched by the order of their values unless --map said otherwise)
# and the proposed test cases, then run `xmodseg check-data --configfile <the config>`.
"""


def _config_text(name: str, registry: Path, scans: Sequence[ModalityScan]) -> str:
    mods = [s.name for s in scans]
    z = max(float(np.median([s.spacing[2] for s in scans])), 0.5)
    experiments: dict[str, Any] = {}
    for s in mods:
        for t in mods:
            if s != t:
                experiments[f"source_only_{s}2{t}"] = {"method": "source_only", "scale": DEMO_SCALE, "source": s, "target": t, "seeds": [0], "train": {"preset": "segmentation"}}
    for t in mods:
        experiments[f"oracle_{t}"] = {"method": "oracle", "scale": DEMO_SCALE, "source": t, "target": t, "seeds": [0], "train": {"preset": "segmentation"}}
    cfg = {
        "registry": registry.as_posix(),
        "dataset": name,
        "data_path": {s.name: str(s.folder) for s in scans},
        "preprocess": {"spacing": [1.0, 1.0, round(z, 2)], "slice_axis": "axial", "in_plane": "whole_slice", "crop_size": [96, 96], "interpolator": "linear",
                       "ct_window": [-1000, 1000], "mr_percentiles": [0.5, 99.5]},
        "presets": {"segmentation": DEMO_TRAIN},
        "translators": {},
        "experiments": experiments,
        "report": {"title": f"xmodseg: {name}"},
    }
    head = (
        f"# Written by `xmodseg init-dataset` for '{name}': demo scale (U-Net 16-256, 96 x 96 whole slices, 600 iterations).\n"
        "# Add methods from config/config.yaml's experiments (translators, SIFA, GLUA, ...) in the same form, with\n"
        "# `train: {preset: NAME, key: override}` (copy the preset you need under presets:); for real runs use a larger\n"
        "# crop_size and the *_paper presets. Run: snakemake --cores 2 --configfile <this file>\n"
    )
    return head + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=120)


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
