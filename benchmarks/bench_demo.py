"""The default demo's time budget: `make demo` from a fresh clone, timed, and its per-stage table.

    python benchmarks/bench_demo.py                       # clone this checkout's HEAD to a temporary folder, run `make demo`
    python benchmarks/bench_demo.py --project DIR         # only the table, from a finished run's results/benchmarks/

The budget (issue 18): the whole demo, installation included, <= 15 minutes of wall clock on 2 cores
with all seven methods. The table gives per stage the *job time* (the sum of the jobs' wall times
from Snakemake's `benchmark:` files; divided by the 2 cores it is what the jobs need) and CPU time;
a fresh clone adds the wall clock of installation and of the workflow and the verdict. Run it on a
quiet machine and name the CPU with the result: a busy one stretches every row alike, and another
CPU model changes them all.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORES = 2
BUDGET_MINUTES = 15.0  # wall clock from a fresh clone, installation included


def stage_table(project: Path) -> tuple[dict[str, dict[str, float]], float, float]:
    """Per rule: jobs, summed wall and CPU seconds (from results/benchmarks/<rule>/...tsv)."""
    stages: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "cpu": 0.0, "longest": 0.0})
    root = project / "results" / "benchmarks"
    files = sorted(root.rglob("*.tsv"))
    if not files:
        sys.exit(f"no benchmark files under {root}: run the demo first (or give --project the folder of a finished run)")
    for path in files:
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        stage = path.relative_to(root).parts[0]
        wall, cpu = float(row["s"]), float(row.get("cpu_time") or 0.0)
        s = stages[stage]
        s["jobs"] += 1
        s["wall"] += wall
        s["cpu"] += cpu
        s["longest"] = max(s["longest"], wall)
    total_wall = sum(s["wall"] for s in stages.values())
    total_cpu = sum(s["cpu"] for s in stages.values())
    return dict(stages), total_wall, total_cpu


def print_table(project: Path) -> float:
    stages, total_wall, total_cpu = stage_table(project)
    print(f"{'stage (rule)':22s} {'jobs':>5s} {'sum wall s':>11s} {'sum CPU s':>10s} {'longest s':>10s} {'share':>6s}")
    for name, s in sorted(stages.items(), key=lambda kv: -kv[1]["wall"]):
        print(f"{name:22s} {int(s['jobs']):5d} {s['wall']:11.1f} {s['cpu']:10.1f} {s['longest']:10.1f} {100 * s['wall'] / total_wall:5.1f}%")
    job_minutes = total_wall / CORES / 60
    print(f"{'total':22s} {sum(int(s['jobs']) for s in stages.values()):5d} {total_wall:11.1f} {total_cpu:10.1f}")
    print(f"job time on {CORES} cores (sum of wall / {CORES}): {job_minutes:.2f} min; CPU time / {CORES}: {total_cpu / CORES / 60:.2f} min")
    return job_minutes


def run_fresh() -> Path:
    """Clone HEAD (committed work only, as CI sees it) and time `make install` and the workflow."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_demo-"))
    clone = tmp / "main"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    shared = REPO.parent / "shared"
    if shared.exists():
        os.symlink(shared, tmp / "shared")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    t0 = time.perf_counter()
    subprocess.run(["make", "install"], cwd=clone, env=env, check=True)
    t1 = time.perf_counter()
    subprocess.run(["make", "demo"], cwd=clone, env=env, check=True)
    t2 = time.perf_counter()
    total = (t2 - t0) / 60
    verdict = "within" if total <= BUDGET_MINUTES else "over"
    print(f"fresh clone {clone}: installation {t1 - t0:.0f} s, workflow {t2 - t1:.0f} s, total {total:.1f} min (wall clock): {verdict} the {BUDGET_MINUTES:.0f}-min budget on {_cpu()}")
    return clone


def _cpu() -> str:
    """The CPU model and core count, to name with the time (the budget is per machine kind)."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    except OSError:
        names = []
    return f"{os.cpu_count()} cores of {names[0] if names else 'an unknown CPU'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="a finished run's folder (default: run `make demo` in a fresh clone)")
    ap.add_argument("--keep", action="store_true", help="keep the fresh clone (default: removed after the table)")
    args = ap.parse_args()
    project = args.project.resolve() if args.project else run_fresh()
    print_table(project)
    if not args.project and not args.keep:
        shutil.rmtree(project.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
