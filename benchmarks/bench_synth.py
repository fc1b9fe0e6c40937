"""Time phantom generation per case at default parameters (median of N cases), per phantom version.

    python benchmarks/bench_synth.py -n 5                # versions 1 and 2
    python benchmarks/bench_synth.py -n 5 --version 2

Run with OMP_NUM_THREADS=1 on an otherwise idle machine; the demo generates 20 cases per modality.
"""

from __future__ import annotations

import argparse
import statistics
import time

from xmodseg.synth import PhantomParams, generate_case
from xmodseg.synth.generate import case_rng


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="cases per modality")
    ap.add_argument("--version", type=int, choices=(1, 2), action="append", help="phantom version (default: both)")
    args = ap.parse_args()
    for version in args.version or (1, 2):
        params = PhantomParams.defaults(version)
        for kind in ("mr", "ct"):
            times = []
            for i in range(args.n):
                t0 = time.perf_counter()
                image, _ = generate_case(kind, case_rng(1, kind, str(1001 + i)), params)
                times.append(time.perf_counter() - t0)
            print(
                f"v{version} {kind}: size {image.GetSize()}, median {statistics.median(times):.3f} s/case "
                f"(min {min(times):.3f}, max {max(times):.3f})"
            )


if __name__ == "__main__":
    main()
