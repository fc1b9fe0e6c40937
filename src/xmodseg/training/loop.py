"""The one training loop: iterations, periodic atomic checkpoints, automatic resume, JSONL log,
NaN/Inf guard, progress bar with s/iteration, optional wall-clock limit."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from xmodseg.errors import TrainingDivergedError
from xmodseg.methods.base import Method, TrainData
from xmodseg.training.checkpoint import load_checkpoint, save_checkpoint
from xmodseg.training.seeding import rng_state, seed_everything, set_rng_state
from xmodseg.training.snapshots import save_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    iterations: int
    seed: int
    checkpoint_every: int = 200
    log_every: int = 20
    max_minutes: float | None = None  # stop early (recorded) instead of overrunning a budget
    snapshot_iterations: tuple[int, ...] = ()  # checkpoint iterations whose inference weights are kept (see snapshots.py)


@dataclass
class LoopResult:
    iterations_done: int
    resumed_from: int
    seconds: float
    seconds_per_iteration: float
    stopped_early: bool
    last_losses: dict[str, float]


def fit(
    method: Method,
    data: TrainData,
    cfg: LoopConfig,
    *,
    checkpoint_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    config_hash: str,
    stop_at: int | None = None,
) -> LoopResult:
    """Train `method` for `cfg.iterations`, resuming from `checkpoint_dir` when it holds a
    checkpoint of the same configuration. `stop_at` ends the run early after checkpointing (used
    to test that interrupted + resumed equals uninterrupted)."""
    sampler = seed_everything(cfg.seed)
    start = 0
    state = load_checkpoint(checkpoint_dir, config_hash)
    if state is not None:
        method.load_state_dict(state["method"])
        set_rng_state(state["rng"], sampler)
        start = int(state["iteration"])
        log.info("resuming from iteration %d (%s)", start, checkpoint_dir)
    method.train()
    log_file = Path(log_path)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    end = cfg.iterations if stop_at is None else min(stop_at, cfg.iterations)
    t0 = time.perf_counter()
    losses: dict[str, float] = {}
    step = start
    stopped_early = False
    with open(log_file, "a", encoding="utf-8") as jl, tqdm(
        total=cfg.iterations, initial=start, mininterval=5.0, desc=method.name, unit="it", dynamic_ncols=False
    ) as bar:
        if start:
            jl.write(json.dumps({"event": "resumed", "iteration": start}) + "\n")
        window_t, window_n = time.perf_counter(), 0
        while step < end:
            losses = method.train_step(data, sampler, step)
            _check_finite(losses, step + 1, checkpoint_dir)
            step += 1
            window_n += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == end:
                now = time.perf_counter()
                s_it = (now - window_t) / max(window_n, 1)
                window_t, window_n = now, 0
                jl.write(json.dumps({"iteration": step, "s_per_it": round(s_it, 4), **losses}) + "\n")
                jl.flush()
                bar.set_postfix({"s/it": f"{s_it:.3f}", **{k: f"{v:.4f}" for k, v in losses.items()}})
            if step in cfg.snapshot_iterations:
                save_snapshot(checkpoint_dir, step, config_hash, method.inference_network())
            if step % cfg.checkpoint_every == 0 or step == end:
                _save(method, sampler, step, config_hash, checkpoint_dir)
            if cfg.max_minutes is not None and (time.perf_counter() - t0) / 60.0 > cfg.max_minutes and step < end:
                log.warning("wall-clock limit of %.1f min reached at iteration %d of %d", cfg.max_minutes, step, cfg.iterations)
                _save(method, sampler, step, config_hash, checkpoint_dir)
                stopped_early = True
                break
    seconds = time.perf_counter() - t0
    done = step - start
    return LoopResult(step, start, seconds, seconds / done if done else math.nan, stopped_early, losses)


def _save(method: Method, sampler: Any, step: int, config_hash: str, folder: str | os.PathLike[str]) -> None:
    save_checkpoint(folder, {"iteration": step, "config_hash": config_hash, "method": method.state_dict(), "rng": rng_state(sampler)})


def _check_finite(losses: dict[str, float], step: int, checkpoint_dir: str | os.PathLike[str]) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise TrainingDivergedError(
            f"loss became non-finite at iteration {step}: {bad}; the last good checkpoint is kept in {checkpoint_dir} "
            "(lower the learning rate or disable mixed precision and rerun)"
        )
