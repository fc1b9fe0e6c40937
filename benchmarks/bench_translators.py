"""Seconds per training iteration of the translators at the demo scale and at paper scale.

Demo: 80x80, batch 1, CycleGAN ngf16/ndf32/6 blocks, disentangled dim16/ndf32 (config presets
`cyclegan_demo`, `disentangled_demo`). Paper: 256x256, batch 1, ngf/dim 64, ndf 64, 9 blocks.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.trainable import TrainData
from xmodseg.translation.registry import get_translator

SCALES: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {
    "demo": (80, {"cyclegan": {"ngf": 16, "ndf": 32, "n_blocks": 6}, "disentangled": {"dim": 16, "ndf": 32}}),
    "paper": (256, {"cyclegan": {"ngf": 64, "ndf": 64, "n_blocks": 9}, "disentangled": {"dim": 64, "ndf": 64}}),
}


def bench(name: str, size: int, params: dict[str, Any], iters: int, amp: str) -> float:
    precision = choose_precision(choose_device("auto"), amp)
    method = get_translator(name)({**params, "batch_size": 1, "iterations": iters}, 0, precision)
    data = TrainData(SliceSet(torch.rand(32, 1, size, size) * 2 - 1, None, ("a",), "mr"), SliceSet(torch.rand(32, 1, size, size) * 2 - 1, None, ("b",), "ct"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        method.train_step(data, gen, 0)
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        method.train_step(data, gen, i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    args = ap.parse_args()
    for scale in args.scales:
        size, per_translator = SCALES[scale]
        for name, params in per_translator.items():
            print(f"{scale:5s} {name:12s} {size}x{size} batch 1: {bench(name, size, params, args.iters, args.amp):.3f} s/it ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
