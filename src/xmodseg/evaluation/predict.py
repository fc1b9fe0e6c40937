"""`xmodseg predict`: segment new, unlabelled scans with a trained model, like `nnUNetv2_predict -i IN -o OUT`.

Each scan goes through the same steps as the model's test volumes: resampled and cropped with the
target cache's `preprocess` block, normalised with that cache's training-split statistics
(`norm_stats.json`), predicted slice by slice, and mapped back onto the scan's own grid (a label
NIfTI that opens aligned with the scan). The target cache is the one the model's sidecar names
(methods trained on target images), or `--cache` (e.g. `data/prepared/<dataset>/<target>` for a
source-only model). `predictions.json` records the model, the cache and every input's sha256.
Existing outputs are not overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodseg.artifacts.cache import MANIFEST
from xmodseg.artifacts.model_file import Sidecar
from xmodseg.atomic import write_json
from xmodseg.errors import ConfigError, InputDataError
from xmodseg.evaluation.inference import map_back, predict_slices
from xmodseg.hashing import sha256_file
from xmodseg.imageio import check_nonempty_image, read_image, write_image
from xmodseg.layout import sidecar_of
from xmodseg.nn.networks import load_model
from xmodseg.preprocess.geometry import SLICE_AXES
from xmodseg.preprocess.normalize import apply_stats
from xmodseg.preprocess.pipeline import PreprocessConfig, load_manifest, load_stats, to_grid
from xmodseg.training.device import choose_device

SCAN_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png")


def scan_name(path: Path) -> str:
    """The file name without its image suffix (`case01.nii.gz` -> `case01`)."""
    name = path.name
    for suffix in SCAN_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_scans(inp: Path) -> list[Path]:
    """One scan, or every scan file directly inside a folder (sorted)."""
    if inp.is_file():
        return [inp]
    if not inp.is_dir():
        raise InputDataError(f"{inp}: no such file or folder")
    scans = sorted(p for p in inp.iterdir() if p.is_file() and p.name.endswith(SCAN_SUFFIXES))
    if not scans:
        raise InputDataError(f"{inp}: no scan files ({', '.join(SCAN_SUFFIXES)}) in this folder")
    return scans


def target_cache_of(model_path: Path, cache: str | os.PathLike[str] | None) -> Path:
    """`cache` if given, else the target cache the model's sidecar names."""
    if cache is not None:
        return Path(cache)
    side = Path(sidecar_of(model_path))
    target = Sidecar.load(side).data.get("target") if side.is_file() else None
    if not target:
        raise ConfigError(f"{model_path}: its sidecar names no target cache (a source-only model?); pass --cache data/prepared/<dataset>/<target modality>")
    return Path(target["cache"])


def predict_scans(
    model_path: str | os.PathLike[str],
    inputs: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Predict every scan of `inputs` (a file or a folder) into `out_dir/<name>.nii.gz`."""
    model = Path(model_path)
    cache_dir = target_cache_of(model, cache)
    if not (cache_dir / MANIFEST).is_file():
        raise ConfigError(f"{cache_dir}: no preprocessing manifest here; pass --cache the target modality's cache (data/prepared/<dataset>/<modality>)")
    manifest = load_manifest(cache_dir)
    if manifest.preprocess is None or manifest.image_space != "zscore":
        raise ConfigError(f"{cache_dir}: a release cache ({manifest.image_space}); predict needs a cache made by our preprocessing")
    cfg = PreprocessConfig.from_dict(manifest.preprocess)
    stats = load_stats(cache_dir)
    rgb = manifest.kind == "rgb"
    scans = list_scans(Path(inputs))
    out = Path(out_dir)
    targets = {s: out / f"{scan_name(s)}.nii.gz" for s in scans}
    existing = [str(t) for t in [*targets.values(), out / "predictions.json"] if t.exists()]
    if existing:
        raise ConfigError(f"{existing[0]} exists ({len(existing)} of {len(scans)} outputs); choose another output folder (predict overwrites nothing)")
    device = choose_device("auto")
    net, model_file = load_model(str(model), device)
    out.mkdir(parents=True, exist_ok=True)
    axis = SLICE_AXES[cfg.slice_axis]
    records = []
    for scan, target in targets.items():
        image = read_image(scan, kind="image", components=3 if rgb else 1, frame=rgb)
        check_nonempty_image(image, scan)
        grid = to_grid(image, None, cfg, rgb=rgb)
        normalised = apply_stats(grid.image, stats, ct_window=cfg.ct_window)
        slices = np.ascontiguousarray(np.moveaxis(normalised, axis + normalised.ndim - 3, 0))
        pred = predict_slices(net, slices, device, batch_size)
        g = grid.geometry_record(cfg.slice_axis)
        write_image(map_back(pred, g["original_geometry"], g["resampled_geometry"], g["crop_start_zyx"], cfg.slice_axis), target)
        records.append({"scan": str(scan), "scan_sha256": sha256_file(scan), "prediction": str(target), "prediction_sha256": sha256_file(target)})
    write_json(out / "predictions.json", {
        "model": str(model), "model_sha256": sha256_file(model), "method": model_file.method, "class_names": model_file.class_names,
        "cache": str(cache_dir), "cache_manifest_sha256": sha256_file(cache_dir / MANIFEST), "scans": records,
    })
    return records


def format_predictions(records: Sequence[dict[str, Any]]) -> str:
    return "\n".join(f"{r['scan']} -> {r['prediction']}" for r in records)
