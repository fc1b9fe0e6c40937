"""Train one experiment (method x direction x seed) from cached slices and write the model files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xmodseg.errors import ConfigError
from xmodseg.hashing import sha256_file
from xmodseg.methods import get_method
from xmodseg.preprocess.pipeline import load_manifest
from xmodseg.slices import training_slices
from xmodseg.training.fit import cache_ids, data_record, fit_method, write_model
from xmodseg.training.trainable import TrainData


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
    warm_start: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Returns the sidecar written next to the model (`<model>.json`). `warm_start` (a translator's
    model.pt) is handed to the method as `params["warm_start"]`; its hash joins the resume hash."""
    cls = get_method(method_name)
    cls.check_params(params, f"train parameters of method {method_name}")  # before any data is read
    data_ids = cache_ids(source_cache, target_cache)
    warm: dict[str, Any] = {}
    if warm_start is not None:
        if "warm_start" not in cls.internal_params:
            raise ConfigError(f"--warm-start: method {method_name} takes no warm start (sifa does)")
        if not Path(warm_start).is_file():
            raise ConfigError(f"warm start model {warm_start} does not exist")
        data_ids["warm_start"] = sha256_file(warm_start)
        warm = {"warm_start": str(warm_start)}
    needs = cls.needs
    source = training_slices(source_cache, with_labels=needs.source_labels) if needs.source_images else None
    target = training_slices(target_cache, with_labels=needs.target_labels) if needs.target_images else None
    class_names = load_manifest(target_cache)["class_names"]
    if load_manifest(source_cache)["class_names"] != class_names:
        raise ConfigError(f"{source_cache} and {target_cache} have different class names")
    trained = fit_method(
        cls,
        name=method_name,
        params={**params, **warm},
        seed=seed,
        data=TrainData(source=source, target=target),
        data_ids=data_ids,
        num_classes=len(class_names),
        checkpoint_dir=checkpoint_dir,
        log_path=log_path,
        stop_at=stop_at,
    )
    return write_model(
        model_path,
        trained,
        {"method": method_name, "class_names": class_names},
        {
            "method": method_name,
            "seed": int(seed),
            "params": dict(params),
            "selection": "last iteration (no target labels used for model selection)",
            "warm_start": {"model": str(warm_start), "sha256": data_ids["warm_start"]} if warm_start else None,
            "uses_target_labels_for_training": needs.target_labels,
            "data": {
                "source": data_record(source_cache, source, needs.source_labels),
                "target": data_record(target_cache, target, needs.target_labels),
            },
        },
    )
