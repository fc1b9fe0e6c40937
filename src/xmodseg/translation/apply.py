"""Apply a trained translator: a translated slice cache, quality numbers and a preview grid.

The translated cache has the preprocessing cache's format (same manifest fields, one `.npy` per
volume), so downstream rules read it like any other cache. Images are in the *target*
modality's normalised intensity space; labels are the source labels, unchanged.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from xmodseg.atomic import atomic_dir, atomic_path, save_npy
from xmodseg.hashing import sha256_file
from xmodseg.preprocess.pipeline import MANIFEST, NORM_STATS, load_manifest
from xmodseg.slices import SliceSet
from xmodseg.training.intensity import UnitRange

HIST_BINS = 128
Translate = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def translate_volume(fn: Translate, volume: np.ndarray, src: UnitRange, tgt: UnitRange, device: torch.device, batch: int = 16) -> np.ndarray:
    """[S, H, W] source-normalised slices -> target-normalised slices."""
    out = np.empty(volume.shape, np.float32)
    for i in range(0, volume.shape[0], batch):
        x = torch.from_numpy(np.array(volume[i : i + batch], dtype=np.float32)).unsqueeze(1).to(device)
        out[i : i + batch] = tgt.from_unit(fn(src.to_unit(x))).squeeze(1).float().cpu().numpy()
    return out


def translate_cache(
    fn: Translate,
    source_cache: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    src: UnitRange,
    tgt: UnitRange,
    device: torch.device,
    provenance: Mapping[str, Any],
    intensity_space: str = "zscore",
) -> Path:
    """Write the translated copy of every case of `source_cache` into `out_dir` (atomically); its
    images are in the target cache's `intensity_space`, which the manifest records."""
    source = Path(source_cache)
    manifest = load_manifest(source)
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        cases = []
        for rec in manifest.cases:
            translated = translate_volume(fn, np.load(source / rec.image, mmap_mode="r"), src, tgt, device)
            save_npy(tmp / rec.image, translated)
            shutil.copyfile(source / rec.label, tmp / rec.label)
            cases.append(replace(rec, image_sha256=sha256_file(tmp / rec.image)))
        shutil.copyfile(source / NORM_STATS, tmp / NORM_STATS)
        replace(
            manifest,
            intensity_space=intensity_space,
            cases=cases,
            translated=dict(provenance),
            source_manifest_sha256=sha256_file(source / MANIFEST),
        ).save(tmp / MANIFEST)
    return out


def _hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    h, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    h = h.astype(np.float64) + 1e-6  # keeps KL finite
    return h / h.sum()


def distribution_distance(a: np.ndarray, b: np.ndarray, max_values: int = 500_000) -> dict[str, float]:
    """1-D Wasserstein distance and KL(a || b) of intensity histograms (no labels needed)."""
    rng = np.random.default_rng(0)
    a = a.ravel() if a.size <= max_values else rng.choice(a.ravel(), max_values, replace=False)
    b = b.ravel() if b.size <= max_values else rng.choice(b.ravel(), max_values, replace=False)
    lo, hi = np.percentile(np.concatenate([a, b]), [0.1, 99.9])
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    pa, pb = _hist(a, edges), _hist(b, edges)
    return {"wasserstein": float(wasserstein_distance(a, b)), "kl": float(np.sum(pa * np.log(pa / pb)))}


def translation_quality(translated_cache: Path, source_cache: Path, target: SliceSet) -> dict[str, Any]:
    """Distances to the real target training slices, before (raw source) and after translation."""
    train = load_manifest(translated_cache).cases_in("train")
    after = np.concatenate([np.load(translated_cache / c.image).ravel() for c in train])
    before = np.concatenate([np.load(source_cache / c.image).ravel() for c in train])
    real = target.images.numpy().ravel()
    return {"before": distribution_distance(before, real), "after": distribution_distance(after, real), "n_source_cases": len(train), "target_cases": list(target.cases)}


@torch.no_grad()
def preview_grid(
    fn: Translate, reconstruct: Translate, source_cache: Path, src: UnitRange, tgt: UnitRange, device: torch.device, path: Path, n_cases: int = 3
) -> None:
    """Rows: a few training cases (the slice with most labelled foreground); columns: source,
    translated, reconstructed (translated back to the source look)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = load_manifest(source_cache)
    cases = manifest.cases_in("train")[:n_cases]
    flip = manifest.slice_axis != "axial"
    fig, axes = plt.subplots(len(cases), 3, figsize=(7.5, 2.6 * len(cases)), squeeze=False)
    for row, rec in zip(axes, cases, strict=True):
        lab = np.load(source_cache / rec.label)
        i = int(np.argmax((lab > 0).reshape(lab.shape[0], -1).sum(1)))
        x = torch.from_numpy(np.array(np.load(source_cache / rec.image, mmap_mode="r")[i : i + 1])).unsqueeze(1).to(device)
        xu = src.to_unit(x)
        fake = fn(xu)
        rec_img = reconstruct(fake)
        for ax, img, title in zip(row, (xu, fake, rec_img), ("source", "translated", "reconstructed"), strict=True):
            a = img[0, 0].float().cpu().numpy()
            ax.imshow(np.flipud(a) if flip else a, cmap="gray", vmin=-1, vmax=1)
            ax.set_title(f"{title} ({rec.case})", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
