"""GPU planning for the paper configs: floating-point operations per training iteration, counted,
and GPU seconds per iteration and GPU-hours **estimated from those counts** (not measured on a GPU).

    python benchmarks/gpu_plan.py                                  # the paper configs -> a markdown table
    python benchmarks/gpu_plan.py --configs config/mmwhs_sifa.yaml --tflops 40 15

For every translator and experiment of each config, the method is built with its `train` block at
the config's scale (image size from `preprocess.crop_size`, channels and classes from the registry)
and one real training iteration runs on the CPU under `torch.utils.flop_counter.FlopCounterMode`,
which counts the matrix multiplications and convolutions of the forward and backward passes (the
optimiser's element-wise work is not counted: small next to the convolutions). A GPU's time per
iteration is then estimated as FLOPs / sustained throughput; `--tflops` takes the sustained rates
to assume (default 40 and 15 TFLOP/s: roughly an A100 and a V100-class card with fp16 autocast on
small-batch 2D conv nets, about 13 % and 12 % of their tensor-core peaks). Data loading is in memory
and not counted. With a GPU visible, `--measure` also times the iteration on it (median of 5).
GPU-hours = s/iteration x iterations x seeds. Identical jobs (same method and block) are counted once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = ["mmwhs_sifa.yaml", "abdomen_sifa.yaml", "acdc_semi.yaml", "la2018_semi.yaml", "cadis_semi.yaml"]


def slices(n: int, channels: int, size: tuple[int, int], classes: int | None, modality: str, g: torch.Generator) -> Any:
    from xmodseg.slices import SliceSet

    labels = torch.randint(classes, (n, *size), generator=g) if classes else None
    return SliceSet(torch.randn(n, channels, *size, generator=g), labels, tuple(f"{modality}{i}" for i in range(n)), modality)


def build(kind: str, name: str, block: dict[str, Any], size: tuple[int, int], channels: int, classes: int, device: torch.device) -> tuple[Any, Any]:
    """The method or translator `name` with `block`, and data it can train on."""
    from xmodseg.methods import METHODS
    from xmodseg.training.device import choose_precision
    from xmodseg.training.trainable import TrainData
    from xmodseg.translation.registry import TRANSLATORS

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cls = (METHODS if kind == "experiment" else TRANSLATORS).get(name)
    params = {**block, "device": str(device)}
    n = max(16, 2 * int(params.get("batch_size", 8)), 2 * int(params.get("unlabelled_batch_size") or 0))
    needs = cls.needs
    labelled = classes if kind == "experiment" else None
    data = TrainData(
        source=slices(n, channels, size, labelled if needs.source_labels else None, "s", g) if needs.source_images or needs.source_labels else None,
        target=slices(n, channels, size, labelled if needs.target_labels else None, "t", g) if needs.target_images or needs.target_labels else None,
        target_unlabelled=slices(n, channels, size, None, "u", g) if needs.target_labels and hasattr(cls, "unlabelled") else None,
        assistant=slices(n, channels, size, labelled, "a", g) if getattr(needs, "assistant_labels", False) else None,
    )
    method = cls(params, classes, choose_precision(device, params.get("amp", "auto")))
    return method, method.prepare(data)


def count(method: Any, data: Any) -> int:
    sampler = torch.Generator().manual_seed(1)
    with FlopCounterMode(display=False) as counter:
        method.train_step(data, sampler, 0)
    return int(counter.get_total_flops())


def measure(method: Any, data: Any, device: torch.device) -> float:
    sampler = torch.Generator().manual_seed(1)
    times = []
    for i in range(6):
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        method.train_step(data, sampler, i + 1)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def jobs(path: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, dict[str, Any], int]]]:
    from xmodseg.config.presets import expand_presets

    cfg = expand_presets(yaml.safe_load(path.read_text()))
    out = [("translator", t, e["translator"], e["train"], len(e["seeds"])) for t, e in (cfg.get("translators") or {}).items()]
    out += [("experiment", x, e["method"], e["train"], len(e["seeds"])) for x, e in (cfg.get("experiments") or {}).items()]
    return cfg, out


def main() -> None:
    from xmodseg.registry import load_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=[f"config/{c}" for c in PAPER_CONFIGS])
    ap.add_argument("--tflops", nargs="+", type=float, default=[40.0, 15.0], help="sustained TFLOP/s to assume")
    ap.add_argument("--measure", action="store_true", help="with a GPU visible: also time each iteration on it")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    cpu = torch.device("cpu")
    gpu = torch.device("cuda:0") if args.measure and torch.cuda.is_available() else None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rates = " | ".join(f"s/it @ {r:g} TFLOP/s | GPU-h @ {r:g}" for r in args.tflops)
    print(f"| config | job | method | image | GFLOP/it | iterations x seeds | {rates} |" + (" measured s/it |" if gpu else ""))
    print("|---|---|---|---|---|---|" + "---|---|" * len(args.tflops) + ("---|" if gpu else ""))
    rows, seen = [], {}
    for cfg_path in args.configs:
        cfg, todo = jobs(REPO / cfg_path)
        spec = load_dataset(REPO / cfg["registry"], cfg["dataset"])
        size = tuple(int(v) for v in cfg["preprocess"]["crop_size"])
        total = dict.fromkeys(args.tflops, 0.0)
        for kind, job, name, block, seeds in todo:
            channels = 3 if any(spec.modality(m).kind == "rgb" for m in spec.modalities) else 1
            key = json.dumps([kind, name, block, size, channels], sort_keys=True)
            if key not in seen:
                t0 = time.perf_counter()
                method, data = build(kind, name, block, size, channels, spec.labels.num_classes, cpu)
                flops = count(method, data)
                seen[key] = {"flops": flops, "measured": measure(*build(kind, name, block, size, channels, spec.labels.num_classes, gpu), gpu) if gpu else None}
                print(f"  ({name}: counted in {time.perf_counter() - t0:.0f} s on the CPU)", file=sys.stderr, flush=True)
            flops = seen[key]["flops"]
            its = int(block["iterations"])
            cells = []
            for r in args.tflops:
                s_it = flops / (r * 1e12)
                hours = s_it * its * seeds / 3600
                total[r] += hours
                cells += [f"{s_it:.3g}", f"{hours:.3g}"]
            row = {"config": cfg_path, "job": job, "method": name, "gflop": flops / 1e9, "iterations": its, "seeds": seeds, "measured_s_it": seen[key]["measured"]}
            rows.append(row)
            extra = f" {seen[key]['measured']:.3f} |" if gpu else ""
            print(f"| {Path(cfg_path).name} | {job} | {name} | {size[0]}x{size[1]}x{channels} | {flops / 1e9:.0f} | {its} x {seeds} | " + " | ".join(cells) + f" |{extra}", flush=True)
        cells = [c for r in args.tflops for c in ("", f"**{total[r]:.1f}**")]
        print(f"| {Path(cfg_path).name} | **all jobs** | | | | | " + " | ".join(cells) + " |" + (" |" if gpu else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
