"""Seconds per iteration of the semi-supervised methods (supervised_subset, cps, co_da) at the demo
and paper scales, measured in one process with the variants interleaved (a busy machine slows all of
them alike); medians, and each variant's cost as a multiple of the supervised_subset iteration.

Scales:
  demo   the `segmentation` / `cps_demo` / `co_da_demo` presets of config/config.yaml (80x80,
         U-Net 16-256, batch 8 labelled + 8 unlabelled)
  paper  config/acdc_semi.yaml (256x256, U-Net 32-512, batch 12 + 12) -- seconds per iteration on a
         CPU: GPU only

    python benchmarks/bench_co_da.py --scales demo --iters 10
    python benchmarks/bench_co_da.py --scales paper --iters 2
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from step_timing import interleaved

from xmodseg.methods.cps import CoDa, Cps
from xmodseg.methods.supervised import SupervisedSubset
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.trainable import TrainData

NUM_CLASSES = 5
UNET = {
    "demo": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2},
    "paper": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "num_res_units": 2},
}
SIZE = {"demo": 80, "paper": 256}
BATCH = {"demo": 8, "paper": 12}
VARIANTS = ("supervised_subset", "cps", "co_da")


def build(variant: str, scale: str, device: torch.device) -> tuple[Any, TrainData]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    size, n = SIZE[scale], 16

    def slices(labels: bool) -> SliceSet:
        y = torch.randint(NUM_CLASSES, (n, size, size), generator=g) if labels else None
        return SliceSet(torch.randn(n, 1, size, size, generator=g), y, tuple(f"ct{i}" for i in range(n)), "ct")

    params: dict[str, Any] = {"iterations": 1000, "device": str(device), "batch_size": BATCH[scale], "network": UNET[scale]}
    data = TrainData(source=None, target=slices(True), target_unlabelled=slices(False))
    precision = choose_precision(device, "off")
    if variant == "supervised_subset":
        return SupervisedSubset(params, NUM_CLASSES, precision), data
    cls = Cps if variant == "cps" else CoDa
    return cls({**params, "lambda_max": 0.2}, NUM_CLASSES, precision), data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", nargs="+", choices=sorted(SIZE), default=["demo"])
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per variant (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the demo's jobs run 1 thread, two side by side)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = choose_device("auto")
    print(f"device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    for scale in args.scales:
        times = interleaved(VARIANTS, lambda v, scale=scale: build(v, scale, device), args.iters, device, f"[{scale}] ")
        base = statistics.median(times["supervised_subset"])
        print(f"\n{scale} scale ({SIZE[scale]}x{SIZE[scale]}, batch {BATCH[scale]} labelled + {BATCH[scale]} unlabelled): median seconds per iteration over {args.iters}")
        print("| variant | s/iteration | x supervised_subset |\n|---|---|---|")
        for v in VARIANTS:
            med = statistics.median(times[v])
            print(f"| {v} | {med:.3f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
