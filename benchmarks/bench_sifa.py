"""Seconds per SIFA iteration at the demo scale and at the paper scale, and the share of a step
spent drawing batches from the in-memory slice cache ("data loading").

Demo: the `sifa_demo` preset (80x80, batch 4, width 0.25, G_t ngf 16 / 6 blocks as the warm start).
Paper: 256x256, batch 8 (+8 target), width 1.0 (G_t ngf 32 / 9 blocks, E up to 512 channels).
One iteration is seven optimizer steps (G_t, D_t, E+C, U, D_s, D_p1, D_p2), each on a fresh
forward pass, as the official code.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from xmodseg.methods.sifa import Sifa
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.trainable import TrainData

SCALES: dict[str, tuple[int, dict[str, Any]]] = {
    "demo": (80, {"batch_size": 4, "width": 0.25, "generator": {"ngf": 16, "n_blocks": 6, "skip": False}, "ndf": 32}),
    "paper": (256, {"batch_size": 8, "width": 1.0}),
}
NUM_CLASSES = 5


class TimedSliceSet(SliceSet):
    """A slice set that adds the time spent in `sample` to a shared counter."""

    spent: list[float] = [0.0]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        t0 = time.perf_counter()
        out = super().sample(batch_size, generator)
        TimedSliceSet.spent[0] += time.perf_counter() - t0
        return out


def bench(size: int, params: dict[str, Any], iters: int, amp: str) -> tuple[float, float]:
    precision = choose_precision(choose_device("auto"), amp)
    method = Sifa({**params, "iterations": iters}, NUM_CLASSES, precision)
    n = 64
    images = lambda: torch.randn(n, 1, size, size)  # noqa: E731
    labels = torch.randint(NUM_CLASSES, (n, size, size))
    data = method.prepare(TrainData(TimedSliceSet(images(), labels, ("s",), "mr"), TimedSliceSet(images(), None, ("t",), "ct")))
    data = TrainData(TimedSliceSet(data.source.images, data.source.labels, ("s",), "mr"), TimedSliceSet(data.target.images, None, ("t",), "ct"))
    gen = torch.Generator().manual_seed(0)
    method.train_step(data, gen, 0)  # warm-up (allocations, cuDNN autotune)
    times, loading = [], []
    for i in range(iters):
        TimedSliceSet.spent[0] = 0.0
        t0 = time.perf_counter()
        method.train_step(data, gen, i)
        if precision.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        loading.append(TimedSliceSet.spent[0])
    return statistics.median(times), sum(loading) / sum(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    args = ap.parse_args()
    for scale in args.scales:
        size, params = SCALES[scale]
        s_it, share = bench(size, params, args.iters, args.amp)
        print(
            f"{scale:5s} sifa {size}x{size} batch {params['batch_size']} width {params['width']}: "
            f"{s_it:.3f} s/it, data loading {100 * share:.2f}% of a step ({torch.get_num_threads()} threads)"
        )


if __name__ == "__main__":
    main()
