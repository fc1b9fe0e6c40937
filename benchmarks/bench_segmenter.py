"""Seconds per training iteration of the baseline segmenter, with and without data loading.

Data loading = drawing a batch of slices from the in-memory slice set (what the training loop
does); "no data loading" reuses one batch, as nnU-Net's benchmark trainer does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from xmodseg.methods.supervised import SourceOnly
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.trainable import TrainData


def bench(size: int, batch: int, iters: int, amp: str, reuse_batch: bool) -> float:
    precision = choose_precision(choose_device("auto"), amp)
    n = 512
    data = SliceSet(torch.randn(n, 1, size, size), torch.randint(0, 5, (n, size, size)), ("x",), "mr")
    method = SourceOnly({"batch_size": batch, "iterations": iters, "lr": 1e-3}, 5, precision)
    gen = torch.Generator().manual_seed(0)
    fixed = TrainData(SliceSet(*data.sample(batch, gen), ("x",), "mr"), None)
    source = fixed if reuse_batch else TrainData(data, None)
    for _ in range(3):  # warm-up
        method.train_step(source, gen, 0)
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        method.train_step(source, gen, i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    args = ap.parse_args()
    for size, batch in ((80, 8), (256, 8)):
        with_loading = bench(size, batch, args.iters, args.amp, reuse_batch=False)
        without = bench(size, batch, args.iters, args.amp, reuse_batch=True)
        share = max(with_loading - without, 0.0) / with_loading
        print(f"{size}x{size} batch {batch}: {with_loading:.4f} s/it ({without:.4f} without data loading; loading share {share:.1%})")


if __name__ == "__main__":
    main()
