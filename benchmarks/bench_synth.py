"""Time phantom generation per case at default parameters (median of N cases)."""

from __future__ import annotations

import argparse
import statistics
import time

from xmodseg.synth import PhantomParams, generate_case
from xmodseg.synth.generate import case_rng


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=5, help="cases per modality")
    args = ap.parse_args()
    params = PhantomParams()
    for kind in ("mr", "ct"):
        times = []
        for i in range(args.n):
            t0 = time.perf_counter()
            image, _ = generate_case(kind, case_rng(1, kind, str(1001 + i)), params)
            times.append(time.perf_counter() - t0)
        print(f"{kind}: size {image.GetSize()}, median {statistics.median(times):.3f} s/case (min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
