"""Train one experiment (method x direction x seed) from cached slices and write the model files."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from xmodseg.atomic import atomic_path, write_json
from xmodseg.errors import ConfigError, TrainingIncompleteError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.methods import get_method
from xmodseg.methods.base import TrainData
from xmodseg.preprocess.pipeline import MANIFEST, load_manifest
from xmodseg.provenance import provenance_block
from xmodseg.slices import SliceSet, training_slices
from xmodseg.training.device import choose_device, choose_precision, describe_device
from xmodseg.training.loop import LoopConfig, fit
from xmodseg.training.seeding import seed_everything

log = logging.getLogger(__name__)

LOOP_KEYS = ("iterations", "checkpoint_every", "log_every", "max_minutes")


def _data_record(cache: str | os.PathLike[str], s: SliceSet | None, labels: bool) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "cache": str(cache),
        "manifest_sha256": sha256_file(Path(cache) / MANIFEST),
        "cases": list(s.cases),
        "slices": len(s),
        "labels_used": labels,
    }


def train_experiment(
    *,
    method_name: str,
    params: Mapping[str, Any],
    seed: int,
    source_cache: str | os.PathLike[str],
    target_cache: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    checkpoint_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Returns the sidecar written next to the model (`<model>.json`)."""
    cls = get_method(method_name)
    needs = cls.needs
    source = training_slices(source_cache, with_labels=needs.source_labels) if needs.source_images else None
    target = training_slices(target_cache, with_labels=needs.target_labels) if needs.target_images else None
    class_names = load_manifest(target_cache)["class_names"]
    if load_manifest(source_cache)["class_names"] != class_names:
        raise ConfigError(f"{source_cache} and {target_cache} have different class names")

    device = choose_device(str(params.get("device", "auto")))
    precision = choose_precision(device, str(params.get("amp", "auto")))
    if "iterations" not in params:
        raise ConfigError("train.iterations is required")
    loop_cfg = LoopConfig(seed=int(seed), **{k: params[k] for k in LOOP_KEYS if k in params})
    data_ids = {
        "source": sha256_file(Path(source_cache) / MANIFEST),
        "target": sha256_file(Path(target_cache) / MANIFEST),
    }
    # Device and run-time knobs do not change what is learned on CPU, so they stay out of the hash.
    hashed = {k: v for k, v in params.items() if k not in ("device", "max_minutes", "checkpoint_every", "log_every")}
    config_hash = sha256_json({"method": method_name, "params": hashed, "seed": int(seed), "data": data_ids})

    seed_everything(int(seed))  # network initialisation is part of what the seed fixes
    method = cls(params, len(class_names), precision)
    result = fit(
        method,
        TrainData(source=source, target=target),
        loop_cfg,
        checkpoint_dir=checkpoint_dir,
        log_path=log_path,
        config_hash=config_hash,
        stop_at=stop_at,
    )
    if result.stopped_early:
        raise TrainingIncompleteError(
            f"stopped at the wall-clock limit (max_minutes={loop_cfg.max_minutes}) after {result.iterations_done} of "
            f"{loop_cfg.iterations} iterations; the checkpoint in {checkpoint_dir} is kept and a rerun resumes from it"
        )
    payload = {
        "architecture": method.inference_architecture(),
        "state_dict": {k: v.detach().cpu() for k, v in method.inference_network().state_dict().items()},
        "method": method_name,
        "class_names": class_names,
        "config_hash": config_hash,
    }
    with atomic_path(model_path) as tmp:
        torch.save(payload, tmp)
    sidecar = {
        "method": method_name,
        "seed": int(seed),
        "params": dict(params),
        "config_hash": config_hash,
        "selection": "last iteration (no target labels used for model selection)",
        "uses_target_labels_for_training": needs.target_labels,
        "loop": asdict(result),
        "precision": str(precision.dtype) if precision.dtype else "fp32",
        "device": describe_device(device),
        "data": {"source": _data_record(source_cache, source, needs.source_labels), "target": _data_record(target_cache, target, needs.target_labels)},
        "model_sha256": sha256_file(model_path),
        "provenance": provenance_block(),
    }
    write_json(sidecar_path(model_path), sidecar)
    log.info("%s: %d iterations in %.1f s (%.3f s/it)", method_name, result.iterations_done, result.seconds, result.seconds_per_iteration)
    return sidecar


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    p = Path(model_path)
    return p.with_suffix(".json")
