"""Train one experiment (method x direction x seed) from cached slices and write the model files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from xmodseg.errors import ConfigError
from xmodseg.methods import get_method
from xmodseg.preprocess.pipeline import load_manifest
from xmodseg.training.budget import LabelBudget, load_train_data
from xmodseg.training.fit import fit_method, write_model
from xmodseg.training.inputs import resolve_inputs


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
    inputs: Mapping[str, str | os.PathLike[str]] | None = None,
    labels: Mapping[str, Any] | None = None,
    assistant_cache: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Returns the sidecar written next to the model (`<model>.json`).

    `inputs` (role -> path) must match the method's declared `inputs`; each file's sha256 joins the
    resume hash and the sidecar. `labels` is the experiment's label budget block (`{}`: the method's
    default); the drawn labelled cases are recorded in the sidecar's `labels`."""
    cls = get_method(method_name)
    cls.check_params(params, f"train parameters of method {method_name}")  # before any data is read
    budget = LabelBudget.from_block(labels, cls.needs, method_name)
    resolved = resolve_inputs(cls, inputs, "--input")
    loaded = load_train_data(cls.needs, budget, source_cache=source_cache, target_cache=target_cache, assistant_cache=assistant_cache)
    class_names = load_manifest(target_cache).class_names
    for other in (source_cache, assistant_cache):
        if other is not None and load_manifest(other).class_names != class_names:
            raise ConfigError(f"{other} and {target_cache} have different class names")
    trained = fit_method(
        cls,
        name=method_name,
        params=params,
        seed=seed,
        data=loaded.data,
        data_ids=loaded.data_ids,
        num_classes=len(class_names),
        checkpoint_dir=checkpoint_dir,
        log_path=log_path,
        stop_at=stop_at,
        inputs=resolved,
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
            "uses_target_labels_for_training": budget.target != "none",
            "labels": loaded.labels,
            "data": loaded.records,
        },
    )
