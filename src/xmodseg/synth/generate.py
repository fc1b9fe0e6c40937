"""Generating phantom cases and writing a modality of the synthetic data set to disk."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from xmodseg.atomic import write_json, write_text
from xmodseg.errors import ConfigError
from xmodseg.imageio import write_image
from xmodseg.registry import DatasetSpec
from xmodseg.synth.anatomy import Anatomy, sample_anatomy, tissue_at_chunks
from xmodseg.synth.anatomy_v2 import sample_anatomy_v2
from xmodseg.synth.card import card_dict, card_markdown
from xmodseg.synth.grid import Grid, chunked_coordinates, sample_grid, subslice_grid, unchunk
from xmodseg.synth.params import PhantomParams
from xmodseg.synth.render import render_ct, render_mr, sample_ct_appearance, sample_mr_appearance
from xmodseg.synth.render_v2 import render_ct_v2, render_mr_v2, sample_ct_appearance_v2, sample_mr_appearance_v2
from xmodseg.synth.tissues import tissue_to_label, tissue_to_label_v2

# Generator version per phantom version (recorded in the data-set card); version 1 is frozen.
GENERATOR_VERSIONS = {1: "1.0.0", 2: "2.0.0"}
GENERATOR_VERSION = GENERATOR_VERSIONS[2]
SEEDING = "numpy.random.default_rng([seed, crc32(modality name), int(case)])"
SEEDING_V2 = SEEDING + "; version-2 additions from its first child stream, Generator.spawn(1)[0]"

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """One generated scan; `tissue` (k, j, i) is the tissue class at each voxel centre (for checks)."""

    image: sitk.Image
    label: sitk.Image
    tissue: np.ndarray
    grid: Grid
    anatomy: Anatomy


def simulate_case(modality_kind: str, rng: np.random.Generator, params: PhantomParams) -> PhantomCase:
    """Draw a subject, aim a scan of `modality_kind` at its heart and render it (phantom `params.version`)."""
    if modality_kind not in ("mr", "ct"):
        raise ValueError(f"unknown modality kind '{modality_kind}' (expected 'mr' or 'ct')")
    if params.version != 1:
        return _simulate_case_v2(modality_kind, rng, params)
    anatomy = sample_anatomy(rng, params)
    grid = sample_grid(modality_kind, rng, params, anatomy.heart_center)
    if modality_kind == "mr":
        appearance = sample_mr_appearance(rng, params)
        n = params.mr_subslices
        fine = subslice_grid(grid, n)
        tissue_fine = unchunk(tissue_at_chunks(anatomy, *chunked_coordinates(fine)), fine)
        image = render_mr(tissue_fine, n, grid, appearance, rng)
        tissue = np.ascontiguousarray(tissue_fine[n // 2 :: n])  # labels at slice centres
    else:
        ct = sample_ct_appearance(rng, params)
        tissue = unchunk(tissue_at_chunks(anatomy, *chunked_coordinates(grid)), grid)
        image = render_ct(tissue, grid, ct, rng)
    label = tissue_to_label(tissue)
    return PhantomCase(_image(image.astype(np.float32, copy=False), grid), _image(label, grid), tissue, grid, anatomy)


def _simulate_case_v2(modality_kind: str, rng: np.random.Generator, params: PhantomParams) -> PhantomCase:
    """Version 2: version 1's anatomy and grid draws on `rng`, every addition on a child stream of it."""
    extra = rng.spawn(1)[0]
    anatomy = sample_anatomy_v2(rng, extra, params)
    grid = sample_grid(modality_kind, rng, params, anatomy.heart_center)
    if modality_kind == "mr":
        appearance = sample_mr_appearance_v2(extra, params, anatomy.heart_center)
        n = params.mr_subslices
        fine = subslice_grid(grid, n)
        tissue_fine = unchunk(tissue_at_chunks(anatomy, *chunked_coordinates(fine)), fine)
        image = render_mr_v2(tissue_fine, n, grid, appearance, extra)
        tissue = np.ascontiguousarray(tissue_fine[n // 2 :: n])
    else:
        ct = sample_ct_appearance_v2(extra, params)
        tissue = unchunk(tissue_at_chunks(anatomy, *chunked_coordinates(grid)), grid)
        image = render_ct_v2(tissue, grid, ct, extra)
    label = tissue_to_label_v2(tissue)
    return PhantomCase(_image(image.astype(np.float32, copy=False), grid), _image(label, grid), tissue, grid, anatomy)


def generate_case(modality_kind: str, rng: np.random.Generator, params: PhantomParams) -> tuple[sitk.Image, sitk.Image]:
    """(image float32, label uint16 with raw MM-WHS values 0/205/420/500/820) on one grid."""
    case = simulate_case(modality_kind, rng, params)
    return case.image, case.label


def case_rng(seed: int, modality: str, case: str) -> np.random.Generator:
    """Independent stream per (seed, modality, case): MR and CT case 1001 are different subjects."""
    return np.random.default_rng([int(seed), zlib.crc32(modality.encode()), _case_number(case)])


def generate_modality(spec: DatasetSpec, modality: str) -> list[Path]:
    """Write every case of `modality` (image + label) and the data-set card; return the written paths."""
    mod = spec.modality(modality)
    key = f"datasets.{spec.name}.source"
    seed = _seed(spec.source, key)
    version = _version(spec.source, key)
    params = PhantomParams.from_overrides(_overrides(spec.source, key), key=f"{key}.params", version=version)
    written: list[Path] = []
    for case in mod.cases:
        start = time.perf_counter()
        image, label = generate_case(mod.kind, case_rng(seed, modality, case), params)
        image_path, label_path = spec.image_path(modality, case), spec.label_path(modality, case)
        write_image(image, image_path)
        write_image(label, label_path)
        written += [image_path, label_path]
        log.info("%s case %s: %s (%.2f s)", modality, case, image.GetSize(), time.perf_counter() - start)
    card = card_dict(
        dataset=spec.name,
        modality=modality,
        kind=mod.kind,
        seed=seed,
        cases=mod.cases,
        test_cases=mod.test_cases,
        params=params,
        image_pattern=mod.image_pattern,
        label_pattern=mod.label_pattern,
        version=GENERATOR_VERSIONS[version],
        seeding=SEEDING if version == 1 else SEEDING_V2,
    )
    card_dir = spec.root / modality
    write_json(card_dir / "dataset_card.json", card)
    write_text(card_dir / "dataset_card.md", card_markdown(card))
    return written + [card_dir / "dataset_card.json", card_dir / "dataset_card.md"]


def _image(array: np.ndarray, grid: Grid) -> sitk.Image:
    return grid.apply_to(sitk.GetImageFromArray(array))


def _case_number(case: str) -> int:
    """Numeric case ids seed directly; other ids through a stable hash."""
    text = str(case)
    return int(text) if text.isdigit() else zlib.crc32(text.encode())


def _seed(source: Mapping[str, Any], key: str) -> int:
    seed = source.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{key}.seed: expected a non-negative integer, got {seed!r}")
    return seed


def _version(source: Mapping[str, Any], key: str) -> int:
    """`source.version` (1 when absent, so entries written before version 2 keep their meaning)."""
    version = source.get("version", 1)
    if isinstance(version, bool) or version not in GENERATOR_VERSIONS:
        raise ConfigError(f"{key}.version: expected one of {sorted(GENERATOR_VERSIONS)} (the phantom version), got {version!r}")
    return int(version)


def _overrides(source: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    raw = source.get("params") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}.params: expected a mapping of phantom parameters, got {raw!r}")
    return raw
