"""Train one translator (source -> target, seed) and produce its translated cache, quality numbers
and preview grid. Uses only the training splits' images: no labels at all."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xmodseg.atomic import write_json
from xmodseg.slices import SliceSet, training_slices
from xmodseg.training.budget import cache_ids, data_record
from xmodseg.training.fit import fit_method, write_model
from xmodseg.training.inputs import resolve_inputs
from xmodseg.training.intensity import UnitRange, unit_range_for
from xmodseg.translation.apply import preview_grid, translate_cache, translation_quality
from xmodseg.translation.base import TrainData, Translator
from xmodseg.translation.registry import get_translator


def _unit(s: SliceSet, r: UnitRange) -> SliceSet:
    return SliceSet(r.to_unit(s.images), None, s.cases, s.modality, s.intensity_space)


def train_translator(
    *,
    translator: str,
    params: Mapping[str, Any],
    seed: int,
    source_cache: str | os.PathLike[str],
    target_cache: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    out_cache: str | os.PathLike[str],
    quality_path: str | os.PathLike[str],
    preview_path: str | os.PathLike[str],
    stop_at: int | None = None,
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """`inputs` (role -> path): the translator's declared inputs, hashed into the resume hash and
    the sidecar like a method's (xmodseg.training.inputs)."""
    cls = get_translator(translator)
    cls.check_params(params, f"train parameters of translator {translator}")  # before any data is read
    resolved = resolve_inputs(cls, inputs, "--input")
    source = training_slices(source_cache, with_labels=False)
    target = training_slices(target_cache, with_labels=False)
    mode = str(params.get("intensity", "auto"))
    r_s = unit_range_for(source.images, source.intensity_space, mode, f"source ({source_cache})")
    r_t = unit_range_for(target.images, target.intensity_space, mode, f"target ({target_cache})")
    data = TrainData(source=_unit(source, r_s), target=_unit(target, r_t))
    trained = fit_method(
        cls,
        name=translator,
        params=params,
        seed=seed,
        data=data,
        data_ids=cache_ids(source_cache, target_cache),
        num_classes=0,
        checkpoint_dir=checkpoint_dir,
        log_path=log_path,
        stop_at=stop_at,
        inputs=resolved,
    )
    method = trained.method
    assert isinstance(method, Translator)
    for net in method.networks().values():
        net.eval()
    method.prepare_inference(data)
    ranges = {"source": r_s.to_dict(), "target": r_t.to_dict()}
    sidecar = write_model(
        model_path,
        trained,
        {"translator": translator, "intensity_ranges": ranges},
        {
            "translator": translator,
            "seed": int(seed),
            "params": dict(params),
            "intensity_ranges": ranges,
            "data": {"source": data_record(source_cache, source, False), "target": data_record(target_cache, target, False)},
        },
    )
    device = trained.precision.device
    generator = method.inference_network()
    with torch.no_grad():
        cache = translate_cache(
            generator,
            source_cache,
            out_cache,
            r_s,
            r_t,
            device,
            {"translator": translator, "seed": int(seed), "model": str(model_path), "model_sha256": sidecar["model_sha256"]},
            intensity_space=target.intensity_space,
        )
        quality = translation_quality(cache, Path(source_cache), target)
        preview_grid(generator, method.reconstruct, Path(source_cache), r_s, r_t, device, Path(preview_path))
    write_json(
        quality_path,
        {
            "translator": translator,
            "seed": int(seed),
            "source": source.modality,
            "target": target.modality,
            "iterations": sidecar["loop"]["iterations_done"],
            "seconds": sidecar["loop"]["seconds"],
            "seconds_per_iteration": sidecar["loop"]["seconds_per_iteration"],
            "params": dict(params),
            "intensity_distance": quality,
            "model_sha256": sidecar["model_sha256"],
        },
    )
    return sidecar
