"""Train one experiment (method x direction x seed) from cached slices and write the model files.

`fit_method` and `write_model` are shared with the translators (xmodseg.translation.run).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from xmodseg.atomic import write_json
from xmodseg.errors import ConfigError, TrainingIncompleteError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.methods import get_method
from xmodseg.methods.base import Method, TrainData
from xmodseg.preprocess.pipeline import MANIFEST, load_manifest
from xmodseg.provenance import provenance_block
from xmodseg.slices import SliceSet, training_slices
from xmodseg.training.checkpoint import CorruptCheckpointError, save_torch
from xmodseg.training.device import Precision, choose_device, choose_precision, describe_device
from xmodseg.training.loop import LoopConfig, LoopResult, fit
from xmodseg.training.seeding import seed_everything
from xmodseg.training.snapshots import collect_snapshots, snapshot_iterations

log = logging.getLogger(__name__)

LOOP_KEYS = ("iterations", "checkpoint_every", "log_every", "max_minutes")
# Run-time knobs that do not change what is learned (on CPU): kept out of the resume hash. Which
# checkpoints are kept as snapshots does not change the weights either.
RUNTIME_KEYS = ("device", "max_minutes", "checkpoint_every", "log_every", "warm_start", "snapshots")  # warm start: its sha256 is in the data ids


@dataclass
class Trained:
    method: Method
    result: LoopResult
    config_hash: str
    precision: Precision
    checkpoint_dir: str | os.PathLike[str] = ""
    snapshot_iterations: tuple[int, ...] = ()


def data_record(cache: str | os.PathLike[str], s: SliceSet | None, labels: bool) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"cache": str(cache), "manifest_sha256": sha256_file(Path(cache) / MANIFEST), "cases": list(s.cases), "slices": len(s), "labels_used": labels}


def cache_ids(source_cache: str | os.PathLike[str], target_cache: str | os.PathLike[str]) -> dict[str, str]:
    """What a run was trained on, as manifest hashes (part of the resume hash)."""
    return {"source": sha256_file(Path(source_cache) / MANIFEST), "target": sha256_file(Path(target_cache) / MANIFEST)}


def fit_method(
    cls: type[Method],
    *,
    name: str,
    params: Mapping[str, Any],
    seed: int,
    data: TrainData,
    data_ids: Mapping[str, str],
    num_classes: int,
    checkpoint_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    stop_at: int | None = None,
) -> Trained:
    """Seed, build `cls` on the chosen device and run the shared loop (resuming when possible)."""
    cls.check_params(params, f"{name} parameters", internal=True)
    if "iterations" not in params:
        raise ConfigError("train.iterations is required")
    device = choose_device(str(params.get("device", "auto")))
    precision = choose_precision(device, str(params.get("amp", "auto")))
    loop_cfg = LoopConfig(seed=int(seed), **{k: params[k] for k in LOOP_KEYS if k in params})
    snapshots = snapshot_iterations(loop_cfg.iterations, loop_cfg.checkpoint_every, int(params.get("snapshots", 1)))
    loop_cfg = replace(loop_cfg, snapshot_iterations=snapshots)
    hashed = {k: v for k, v in params.items() if k not in RUNTIME_KEYS}
    config_hash = sha256_json({"method": name, "params": hashed, "seed": int(seed), "data": dict(data_ids)})
    for attempt in range(3):  # last.pt, previous.pt, scratch: each failed attempt sets one file aside
        seed_everything(int(seed))  # network initialisation is part of what the seed fixes
        method = cls({**params, "seed": int(seed)}, num_classes, precision)
        prepared = method.prepare(data)
        try:
            result = fit(method, prepared, loop_cfg, checkpoint_dir=checkpoint_dir, log_path=log_path, config_hash=config_hash, stop_at=stop_at)
            break
        except CorruptCheckpointError as exc:  # loaded into a half-built method: build it afresh
            if attempt == 2:
                raise
            log.warning("%s", exc)
    if result.stopped_early:
        raise TrainingIncompleteError(
            f"stopped at the wall-clock limit (max_minutes={loop_cfg.max_minutes}) after {result.iterations_done} of "
            f"{loop_cfg.iterations} iterations; the checkpoint in {checkpoint_dir} is kept and a rerun resumes from it"
        )
    log.info("%s: %d iterations in %.1f s (%.3f s/it)", name, result.iterations_done, result.seconds, result.seconds_per_iteration)
    return Trained(method, result, config_hash, precision, checkpoint_dir, snapshots)


def write_model(model_path: str | os.PathLike[str], trained: Trained, payload: Mapping[str, Any], sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """model.pt (inference network + what rebuilds it) and its JSON sidecar, both atomically."""
    method = trained.method
    full = {
        "architecture": method.inference_architecture(),
        "state_dict": {k: v.detach().cpu() for k, v in method.inference_network().state_dict().items()},
        "config_hash": trained.config_hash,
        **payload,
    }
    if trained.snapshot_iterations:  # earlier checkpoints' weights, for the mean over the last k
        full["snapshots"] = collect_snapshots(trained.checkpoint_dir, trained.snapshot_iterations, trained.config_hash)
    save_torch(full, model_path)
    side = {
        **sidecar,
        "config_hash": trained.config_hash,
        "loop": asdict(trained.result),
        "snapshot_iterations": [*trained.snapshot_iterations, trained.result.iterations_done],
        "precision": str(trained.precision.dtype) if trained.precision.dtype else "fp32",
        "method_record": method.record(),
        "device": describe_device(trained.precision.device),
        "model_sha256": sha256_file(model_path),
        "provenance": provenance_block(),
    }
    write_json(sidecar_path(model_path), side)
    return side


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


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).with_suffix(".json")
