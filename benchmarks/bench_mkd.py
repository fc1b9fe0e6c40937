"""Seconds per MKD iteration (IAM generator + discriminators, then both segmenters) next to its
baselines (target-only = `oracle`, `joint`) at the demo and paper scales, measured in one process
with the variants interleaved (a busy machine slows all of them alike); medians, and each variant's
cost as a multiple of the target-only iteration.

Scales:
  demo   the `mkd_demo` / `segmentation` presets of config/config.yaml (80x80, U-Net 16-256, batch
         8 + 8; IAM ngf 16, 6 residual blocks, ndf 32, CycleGAN batch 1, coupling batch 2)
  paper  config/mmwhs_sifa.yaml (256x256, U-Net 32-512, batch 8 + 8; IAM ngf 64, 9 blocks, ndf 64,
         coupling over the whole batch) -- tens of seconds per iteration on a CPU: GPU only
Variants: mkd, mkd without IAM (`iam: false`), joint, target-only.

    python benchmarks/bench_mkd.py --scales demo --iters 10
    python benchmarks/bench_mkd.py --scales paper --iters 2
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from step_timing import interleaved

from xmodseg.methods.mkd import Mkd
from xmodseg.methods.multimodal import Joint
from xmodseg.methods.supervised import Oracle
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.trainable import TrainData

NUM_CLASSES = 5
UNET = {"demo": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2},
        "paper": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "num_res_units": 2}}
IAM = {"demo": {"ngf": 16, "n_blocks": 6, "ndf": 32, "coupling_batch_size": 2}, "paper": {"ngf": 64, "n_blocks": 9, "ndf": 64}}
SIZE = {"demo": 80, "paper": 256}
VARIANTS = ("target-only", "joint", "mkd no IAM", "mkd")


def build(variant: str, scale: str, device: torch.device) -> tuple[Any, TrainData]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    size, n = SIZE[scale], 16

    def slices(modality: str) -> SliceSet:
        return SliceSet(torch.randn(n, 1, size, size, generator=g), torch.randint(NUM_CLASSES, (n, size, size), generator=g), tuple(f"{modality}{i}" for i in range(n)), modality)

    params: dict[str, Any] = {"iterations": 1000, "device": str(device), "batch_size": 8, "network": UNET[scale]}
    data = TrainData(source=None, target=slices("ct"), target_unlabelled=None, assistant=slices("mr"))
    precision = choose_precision(device, "off")
    if variant == "target-only":
        return Oracle(params, NUM_CLASSES, precision), data
    if variant == "joint":
        return Joint(params, NUM_CLASSES, precision), data
    method = Mkd({**params, **(IAM[scale] if variant == "mkd" else {"iam": False})}, NUM_CLASSES, precision)
    return method, method.prepare(data)


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
        base = statistics.median(times["target-only"])
        print(f"\n{scale} scale ({SIZE[scale]}x{SIZE[scale]}, batch 8 per modality): median seconds per iteration over {args.iters}")
        print("| variant | s/iteration | x target-only |\n|---|---|---|")
        for v in VARIANTS:
            med = statistics.median(times[v])
            print(f"| {v} | {med:.3f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
