"""Fit anything the loop trains (a segmentation method or a translator) and write its model files.

Shared by `xmodseg.methods.run` (experiments) and `xmodseg.translation.run` (translators).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xmodseg.atomic import write_json
from xmodseg.environment import provenance_block
from xmodseg.errors import ConfigError, TrainingIncompleteError
from xmodseg.hashing import sha256_file, sha256_json
from xmodseg.training.checkpoint import CorruptCheckpointError, save_torch
from xmodseg.training.device import Precision, choose_device, choose_precision, describe_device
from xmodseg.training.inputs import ResolvedInputs
from xmodseg.training.loop import LoopConfig, LoopResult, fit, loss_curve
from xmodseg.training.params import TrainParams
from xmodseg.training.seeding import seed_everything
from xmodseg.training.snapshots import collect_snapshots, snapshot_iterations
from xmodseg.training.trainable import Trainable, TrainData

log = logging.getLogger(__name__)

LOOP_KEYS = ("iterations", "checkpoint_every", "log_every", "max_minutes")
# Run-time knobs that do not change what is learned (on CPU): kept out of the resume hash. Which
# checkpoints are kept as snapshots does not change the weights either. Declared inputs are hashed
# as data ids (xmodseg.training.inputs), never as params.
RUNTIME_KEYS = tuple(sorted(TrainParams.runtime_keys()))


def slurm_duration_minutes(text: str) -> float | None:
    """SLURM's `[days-][hours:]minutes:seconds` in minutes; None for UNLIMITED, NOT_SET or anything else."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if m is None:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return days * 1440 + hours * 60 + minutes + seconds / 60


def slurm_minutes_left() -> float | None:
    """Minutes before SLURM's time limit for this job (`squeue -j $SLURM_JOB_ID -o %L`), asked
    from inside the job so that no rule has to pass its runtime; None outside SLURM or if unknown."""
    job = os.environ.get("SLURM_JOB_ID", "").strip()
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return slurm_duration_minutes(out.stdout) if out.returncode == 0 else None


def scheduler_limit(max_minutes: float | None, minutes_left: float | None) -> float | None:
    """`max_minutes`, tightened under SLURM to the time the job has left less a margin (5 %, at
    least 3 min): the loop then stops with its checkpoint saved before SLURM kills the job, and the
    profile's retry resumes it. Without a known limit nothing changes."""
    if minutes_left is None:
        return max_minutes
    stop = minutes_left - max(3.0, 0.05 * minutes_left)
    if stop <= 0:
        return max_minutes
    log.info("SLURM: %.1f min left in this job: training stops with a checkpoint after %.1f min", minutes_left, stop)
    return stop if max_minutes is None else min(max_minutes, stop)


@dataclass
class Trained:
    method: Trainable
    result: LoopResult
    config_hash: str
    precision: Precision
    checkpoint_dir: str | os.PathLike[str] = ""
    snapshot_iterations: tuple[int, ...] = ()
    inputs: ResolvedInputs = field(default_factory=ResolvedInputs)


def fit_method(
    cls: type[Trainable],
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
    inputs: ResolvedInputs | None = None,
) -> Trained:
    """Seed, build `cls` on the chosen device and run the shared loop (resuming when possible).

    `params` is the `train` block as given: hashed as written (runtime keys left out), typed by
    `cls.params_type`. Every declared input's sha256 joins `data_ids` under its role."""
    if "iterations" not in params:
        raise ConfigError("train.iterations is required")
    typed = cls.params_type.from_block({**params, "seed": int(seed)}, f"{name} parameters", internal=True, owner=cls.name)
    inputs = inputs or ResolvedInputs()
    clash = sorted(set(inputs.ids()) & set(data_ids))
    if clash:
        raise ConfigError(f"{name}: input role(s) {clash} clash with the data ids {sorted(data_ids)}")
    device = choose_device(typed.device)
    precision = choose_precision(device, typed.amp)
    loop_cfg = LoopConfig(seed=int(seed), **{k: getattr(typed, k) for k in LOOP_KEYS if k in params})
    snapshots = snapshot_iterations(loop_cfg.iterations, loop_cfg.checkpoint_every, typed.snapshots)
    loop_cfg = replace(loop_cfg, snapshot_iterations=snapshots, max_minutes=scheduler_limit(loop_cfg.max_minutes, slurm_minutes_left()))
    hashed = {k: v for k, v in params.items() if k not in RUNTIME_KEYS}
    if typed.amp == "bf16_native":  # the arithmetic depends on the machine: a checkpoint resumes only in the same precision
        hashed["amp_used"] = str(precision.dtype) if precision.dtype else "fp32"
    config_hash = sha256_json({"method": name, "params": hashed, "seed": int(seed), "data": {**data_ids, **inputs.ids()}})
    for attempt in range(3):  # last.pt, previous.pt, scratch: each failed attempt sets one file aside
        seed_everything(int(seed))  # network initialisation is part of what the seed fixes
        method = cls(typed, num_classes, precision, inputs=inputs.paths)
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
    return Trained(method, result, config_hash, precision, checkpoint_dir, snapshots, inputs)


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
        "loss_curve": loss_curve(trained.checkpoint_dir) if trained.checkpoint_dir else None,
        "snapshot_iterations": [*trained.snapshot_iterations, trained.result.iterations_done],
        "precision": str(trained.precision.dtype) if trained.precision.dtype else "fp32",
        "inputs": trained.inputs.record(),
        "method_record": method.record(),
        "device": describe_device(trained.precision.device),
        "model_sha256": sha256_file(model_path),
        "provenance": provenance_block(),
    }
    write_json(sidecar_path(model_path), side)
    return side


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).with_suffix(".json")
