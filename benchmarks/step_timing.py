"""Timing training iterations side by side: every variant is built and warmed up once, then the
variants take turns, one iteration each, so that a busy machine slows all of them alike (compare
ratios measured in one run, not numbers from different runs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

import torch

V = TypeVar("V", bound=Hashable)


def timed_step(method: Any, data: Any, sampler: torch.Generator, step: int, device: torch.device) -> float:
    """Seconds of one `train_step` (CUDA synchronised on both sides)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    method.train_step(data, sampler, step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def interleaved(variants: Iterable[V], build: Callable[[V], tuple[Any, Any]], iters: int, device: torch.device, tag: str = "") -> dict[V, list[float]]:
    """{variant: seconds of each timed iteration}, after one warm-up iteration each (printed)."""
    built = {}
    for v in variants:
        method, data = build(v)
        sampler = torch.Generator().manual_seed(1)
        label = " ".join(map(str, v)) if isinstance(v, tuple) else v
        print(f"  {tag}{label}: warm-up iteration {timed_step(method, data, sampler, 0, device):.2f} s", flush=True)
        built[v] = (method, data, sampler)
    times: dict[V, list[float]] = {v: [] for v in built}
    for i in range(iters):
        for v, (method, data, sampler) in built.items():
            times[v].append(timed_step(method, data, sampler, i + 1, device))
    return times
