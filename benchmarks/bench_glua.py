"""Seconds per GLUA iteration (step B: segmenter update, then D_f + D_o update) and per AD-GAN
iteration (step A), at the demo scale and at the paper scale, measured in one process with the
variants interleaved (a busy machine slows all of them alike); medians.

Scales:
  demo   the `glua_demo` / `adgan_demo` presets of config/config.yaml (80x80; GLUA: blocks
         2-2-2-1-1, width 0.25, batch 4+4; AD-GAN: ngf 16, 4 residual blocks, batch 2)
  paper  256x256; GLUA: ResNet-101 layout (3-4-23-2-1), width 1, batch 12+12 (the official code);
         AD-GAN: ngf 64, batch 8 (methods.md §3.11) -- minutes per iteration on a CPU: GPU only
Settings: `fp32` (amp off) and `fast` (bf16 autocast where native + channels_last + fused optimisers).

    python benchmarks/bench_glua.py --scales demo --iters 10
    python benchmarks/bench_glua.py --scales paper --iters 1 --settings fp32 --models glua
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from step_timing import interleaved

from xmodseg.methods.glua import Glua
from xmodseg.slices import SliceSet
from xmodseg.training.device import choose_device, choose_precision
from xmodseg.training.trainable import TrainData
from xmodseg.translation.adgan import Adgan

NUM_CLASSES = 5
SCALES: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {
    "demo": {
        "glua": (80, {"batch_size": 4, "blocks": [2, 2, 2, 1, 1], "width": 0.25}),
        "adgan": (80, {"batch_size": 2, "ngf": 16, "n_res": 4, "mlp_dim": 64, "ndf": 32}),
    },
    "paper": {
        "glua": (256, {"batch_size": 12, "blocks": [3, 4, 23, 2, 1], "width": 1.0}),
        "adgan": (256, {"batch_size": 8, "ngf": 64, "n_res": 4, "mlp_dim": 64, "ndf": 64}),
    },
}
SETTINGS: dict[str, dict[str, Any]] = {
    "fp32": {"amp": "off"},
    "fast": {"amp": "bf16_native", "channels_last": True, "optimizer_impl": "fused"},
}


def build(model: str, size: int, params: dict[str, Any], setting: dict[str, Any], device: torch.device) -> tuple[Any, TrainData]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n = max(16, 2 * params["batch_size"])
    source = SliceSet(torch.randn(n, 1, size, size, generator=g), torch.randint(NUM_CLASSES, (n, size, size), generator=g), tuple(f"s{i}" for i in range(n)), "mr")
    target = SliceSet(torch.randn(n, 1, size, size, generator=g), None, tuple(f"t{i}" for i in range(n)), "ct")
    cls = Glua if model == "glua" else Adgan
    full = {"iterations": 1000, "device": str(device), **params, **setting}
    return cls(full, NUM_CLASSES, choose_precision(device, full["amp"])), TrainData(source=source, target=target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", nargs="+", choices=sorted(SCALES), default=["demo"])
    ap.add_argument("--models", nargs="+", choices=["glua", "adgan"], default=["glua", "adgan"])
    ap.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["fp32", "fast"])
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per variant (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the demo's jobs run 1 thread, two side by side)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = choose_device("auto")
    print(f"device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    for scale in args.scales:
        variants = [(m, s) for m in args.models for s in args.settings]
        times = interleaved(variants, lambda v, scale=scale: build(v[0], *SCALES[scale][v[0]], SETTINGS[v[1]], device), args.iters, device, f"[{scale}] ")
        print(f"\n{scale} scale: median seconds per iteration over {args.iters}")
        print("| model | setting | image | batch | s/iteration | vs fp32 |\n|---|---|---|---|---|---|")
        for m, s in variants:
            size, params = SCALES[scale][m]
            med = statistics.median(times[(m, s)]) if times[(m, s)] else float("nan")
            base = times.get((m, "fp32"))
            ratio = f"{statistics.median(base) / med:.2f}x" if base and s != "fp32" else "1.00x" if s == "fp32" else "–"
            batch = f"{params['batch_size']}+{params['batch_size']}" if m == "glua" else f"{params['batch_size']} per domain"
            print(f"| {m} | {s} | {size}x{size} | {batch} | {med:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
