"""The tiny GPU workflow shared by the local multi-GPU and the SLURM tests, and log parsing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.conftest import make_tiny_project

BIN = Path(sys.executable).parent
NET = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}
TRAIN = {"iterations": 30, "batch_size": 4, "checkpoint_every": 10, "log_every": 10, "network": NET}
GPU_CONFIG = {
    "preprocess": {"spacing": [5.0, 5.0, 5.0], "slice_axis": "coronal", "crop_size": [32, 32]},
    "experiments": {
        f"{m}_{d}": {"method": m, "source": d[:2], "target": d[-2:], "seeds": [0], "train": TRAIN}
        for m in ("source_only", "oracle")
        for d in ("mr2ct", "ct2mr")
    },
    "report": {"title": "gpu"},
}
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*GPU: (leased slot \d+ of \d+|CUDA_VISIBLE_DEVICES=\S+ set by the scheduler|released)")


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("CUDA_VISIBLE_DEVICES", None)
    e.update(extra)
    return e


def gpu_intervals(workdir: Path) -> dict[str, tuple[float, float, str, str]]:
    """{train log: (start, end, CUDA_VISIBLE_DEVICES, how it was chosen)} from the job logs."""
    out = {}
    for log in sorted((workdir / "logs" / "train").rglob("seed*.log")):
        start = end = None
        cvd = how = ""
        for line in log.read_text().splitlines():
            m = LINE.match(line)
            if not m:
                continue
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if m.group(2) == "released":
                end = t
            else:
                start = t
                cvd = re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", line).group(1)
                how = "lease" if "leased" in m.group(2) else "scheduler"
        assert start is not None and end is not None, f"{log}: no GPU start/release lines:\n{log.read_text()[-2000:]}"
        out[str(log.relative_to(workdir))] = (start, end, cvd, how)
    return out


def max_overlap(intervals) -> int:
    events = sorted([(s, 1) for s, *_ in intervals] + [(e, -1) for _, e, *_ in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def check_distinct_devices(iv: dict) -> int:
    """Overlapping jobs never share a device; returns how many pairs overlapped."""
    items = list(iv.values())
    pairs = 0
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (s1, e1, d1, _), (s2, e2, d2, _) = items[i], items[j]
            if s1 < e2 and s2 < e1:
                pairs += 1
                assert d1 != d2, f"overlapping jobs share CUDA_VISIBLE_DEVICES={d1}: {iv}"
    return pairs


def run_local(wd: Path) -> Path:
    """The README command for several GPUs on one machine, on a tiny config (CPU fallback here)."""
    make_tiny_project(wd, GPU_CONFIG, "gpu.yaml")
    cmd = [str(BIN / "snakemake"), "--cores", "8", "--resources", "gpu=2", "--configfile", "config/gpu.yaml"]  # README
    proc = subprocess.run(cmd, cwd=wd, env=env(XMODSEG_GPU_LOCK_DIR=str(wd / "gpu-locks")), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd
