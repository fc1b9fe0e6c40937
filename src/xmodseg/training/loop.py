"""The one training loop: iterations, periodic atomic checkpoints, automatic resume, JSONL log,
NaN/Inf guard, progress bar with s/iteration, optional wall-clock limit.

The loss log's full history lives in the checkpoint folder (`losses.jsonl`), cut back to the
resumed checkpoint's iteration on resume, so records after it are not repeated; each run copies
it to `log_path` and appends there too. Snakemake empties a rule's `log:` files when a job
restarts, so `log_path` alone would start at the resume point.

Loss terms come back from `train_step` as tensors and are read on the host only when needed (a log
record, a checkpoint or snapshot, the wall-clock stop, the end): one device-to-host transfer per
read instead of a synchronisation per term per iteration, which stalls a GPU. The NaN/Inf guard
checks every pending iteration at each read, before anything is logged or saved, and names the
first iteration and term that went non-finite; at most `log_every` iterations run past it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from xmodseg.atomic import write_text
from xmodseg.errors import TrainingDivergedError
from xmodseg.training.checkpoint import CorruptCheckpointError, resume_checkpoint, save_checkpoint, set_aside
from xmodseg.training.seeding import rng_state, seed_everything, set_rng_state
from xmodseg.training.snapshots import save_snapshot
from xmodseg.training.trainable import Trainable, TrainData

log = logging.getLogger(__name__)

HISTORY = "losses.jsonl"  # in the checkpoint folder: the loss log's full history


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
    method: Trainable,
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
    resume = resume_checkpoint(checkpoint_dir, config_hash)
    if resume.state is not None:
        assert resume.path is not None
        try:
            method.load_state_dict(resume.state["method"])
            set_rng_state(resume.state["rng"], sampler)
        except Exception as exc:  # readable, but not this method's state: the method is now half-loaded
            aside = set_aside(resume.path)
            raise CorruptCheckpointError(
                f"{resume.path} does not fit {method.name} ({type(exc).__name__}: {str(exc).strip()[:200]}); kept as {aside}; "
                "the next attempt resumes from the previous checkpoint if usable, else from scratch", resume.path,
            ) from exc
        start = int(resume.state["iteration"])
        log.info("resuming from iteration %d (%s)", start, resume.path)
    method.train()
    events = [{"event": "checkpoint_set_aside", "file": str(p), "kept_as": str(a), "iteration": start} for p, a in resume.set_aside]
    if start:
        events.append({"event": "resumed", "iteration": start})
    log_files = _prepare_loss_logs(Path(checkpoint_dir), Path(log_path), start, events)
    end = cfg.iterations if stop_at is None else min(stop_at, cfg.iterations)
    t0 = time.perf_counter()
    losses: dict[str, float] = {}
    step = start
    saved = start if resume.state is not None else -1
    stopped_early = False
    plain = not sys.stderr.isatty()  # a log file gets one plain line per log interval, not a redrawn bar
    with contextlib.ExitStack() as stack, tqdm(
        total=cfg.iterations, initial=start, mininterval=5.0, desc=method.name, unit="it", dynamic_ncols=False, disable=plain
    ) as bar:
        outputs = [stack.enter_context(open(f, "a", encoding="utf-8")) for f in log_files]
        window_t, window_n = time.perf_counter(), 0
        pending: list[tuple[int, Mapping[str, float | torch.Tensor]]] = []  # (iteration, terms) not yet read
        while step < end:
            pending.append((step + 1, method.train_step(data, sampler, step)))
            step += 1
            window_n += 1
            bar.update(1)
            out_of_time = cfg.max_minutes is not None and (time.perf_counter() - t0) / 60.0 > cfg.max_minutes and step < end
            if step % cfg.log_every == 0 or step == end or step % cfg.checkpoint_every == 0 or step in cfg.snapshot_iterations or out_of_time:
                losses = _read_losses(pending, checkpoint_dir)  # raises on a non-finite term: nothing below runs
                pending.clear()
            if step % cfg.log_every == 0 or step == end:
                now = time.perf_counter()
                s_it = (now - window_t) / max(window_n, 1)
                window_t, window_n = now, 0
                line = json.dumps({"iteration": step, "s_per_it": round(s_it, 4), **losses}) + "\n"
                for fh in outputs:  # history first: a kill between the two leaves the log one line short, not the history
                    fh.write(line)
                    fh.flush()
                bar.set_postfix({"s/it": f"{s_it:.3f}", **{k: f"{v:.4f}" for k, v in losses.items()}})
                if plain:
                    log.info("%s iteration %d/%d: %.3f s/it, %s", method.name, step, cfg.iterations, s_it, ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
            if step in cfg.snapshot_iterations:
                save_snapshot(checkpoint_dir, step, config_hash, method.inference_network())
            if step % cfg.checkpoint_every == 0 or step == end:
                _save(method, sampler, step, config_hash, checkpoint_dir)
                saved = step
            if out_of_time:
                log.warning("wall-clock limit of %.1f min reached at iteration %d of %d", cfg.max_minutes, step, cfg.iterations)
                if saved != step:  # a second save of the same iteration would push the real previous one out
                    _save(method, sampler, step, config_hash, checkpoint_dir)
                stopped_early = True
                break
    seconds = time.perf_counter() - t0
    done = step - start
    return LoopResult(step, start, seconds, seconds / done if done else math.nan, stopped_early, losses)


def _prepare_loss_logs(folder: Path, log_path: Path, start: int, events: list[dict[str, Any]]) -> list[Path]:
    """Cut the history back to `start` (records of iterations after the resumed checkpoint will be
    redone), add `events`, copy it to `log_path`; return the files to append to (history first)."""
    history = folder / HISTORY
    kept = []
    if start and history.is_file():
        for line in history.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                keep = isinstance(rec, dict) and int(rec.get("iteration", 0)) <= start
            except (json.JSONDecodeError, TypeError, ValueError):  # a line cut by a kill
                continue
            if keep:
                kept.append(line + "\n")
    text = "".join(kept) + "".join(json.dumps(e) + "\n" for e in events)
    write_text(history, text)
    if log_path.resolve() == history.resolve():
        return [history]
    write_text(log_path, text)
    return [history, log_path]


CURVE_POINTS = 100  # points kept per loss term in the sidecar's learning curve


def loss_curve(folder: str | os.PathLike[str], max_points: int = CURVE_POINTS) -> dict[str, Any] | None:
    """The loss history of `folder` (its `losses.jsonl`) cut into at most `max_points` bins of
    consecutive log records: per bin its last iteration and each term's mean, so the report draws
    learning curves from the model's sidecar (a declared output) instead of from log files. None
    without a history."""
    history = Path(folder) / HISTORY
    if not history.is_file():
        return None
    records = []
    for line in history.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if isinstance(rec, dict) and isinstance(rec.get("iteration"), int) and "event" not in rec:
            records.append(rec)
    if not records:
        return None
    terms = list(dict.fromkeys(k for r in records for k in r if k not in ("iteration", "s_per_it")))
    n = min(max_points, len(records))
    bins = [records[i * len(records) // n : (i + 1) * len(records) // n] for i in range(n)]
    curve: dict[str, Any] = {"iterations": [b[-1]["iteration"] for b in bins], "terms": {}}
    for term in terms:
        means = []
        for b in bins:
            values = [float(r[term]) for r in b if isinstance(r.get(term), (int, float))]
            means.append(round(sum(values) / len(values), 6) if values else None)
        curve["terms"][term] = means
    return curve


def _save(method: Trainable, sampler: Any, step: int, config_hash: str, folder: str | os.PathLike[str]) -> None:
    save_checkpoint(folder, {"iteration": step, "config_hash": config_hash, "method": method.state_dict(), "rng": rng_state(sampler)})


def _read_losses(pending: list[tuple[int, Mapping[str, float | torch.Tensor]]], checkpoint_dir: str | os.PathLike[str]) -> dict[str, float]:
    """The last pending iteration's terms as floats, after checking every pending iteration's terms
    in order (the first non-finite one raises)."""
    values = [v for _, terms in pending for v in terms.values()]
    floats = _as_floats(values)
    i, row = 0, {}
    for step, terms in pending:
        row = dict(zip(terms, floats[i : i + len(terms)]))
        i += len(terms)
        _check_finite(row, step, checkpoint_dir)
    return row


def _as_floats(values: list[float | torch.Tensor]) -> list[float]:
    """One stack and one host copy for all 0-d tensors. Stacking promotes float dtypes only by
    widening (bf16/fp16 -> fp32 -> fp64), which is exact: each float equals `float(term)`."""
    out: list[float] = [math.nan] * len(values)
    where: list[int] = []
    tensors: list[torch.Tensor] = []
    for i, v in enumerate(values):
        if isinstance(v, torch.Tensor) and v.dim() == 0:
            where.append(i)
            tensors.append(v)
        else:  # a Python number (or a one-element tensor)
            out[i] = float(v)
    if tensors:
        try:
            with torch.no_grad():
                floats = torch.stack(tensors).tolist()
        except RuntimeError:  # tensors on different devices
            floats = [float(t) for t in tensors]
        for i, x in zip(where, floats):
            out[i] = float(x)
    return out


def _check_finite(losses: dict[str, float], step: int, checkpoint_dir: str | os.PathLike[str]) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise TrainingDivergedError(
            f"loss became non-finite at iteration {step}: {bad}; the last good checkpoint is kept in {checkpoint_dir} "
            "(lower the learning rate or disable mixed precision and rerun)"
        )
