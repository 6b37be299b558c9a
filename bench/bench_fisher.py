"""Time the exact Fisher-Freeman-Halton test on 3 x k tables (goal: <= 1 s per table).

Run single-threaded from the repository root:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python3 bench/bench_fisher.py --reps 3 --budget 20

Tables: three groups sized 45% / 25% / 30% of n (metastatic / lymphoma / benign), k ordered
categories drawn from group-specific multinomials (association shift 0, 0.15, 0.5; every
third table "sparse": the two extreme categories rare, expected counts < 5), seeded.
Prints a markdown table: k, n, median and max seconds, and how many were exact vs fallback.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.contingency import fisher_exact_rxc  # noqa: E402


def make_table(rng, k, n, shift, sparse):
    sizes = np.round(n * np.array([0.45, 0.25, 0.30])).astype(int)
    base = np.ones(k)
    if sparse:
        base[[0, k - 1]] = 0.08
    rows = []
    for g, s in enumerate(sizes):
        w = base * np.exp(shift * (g - 1) * np.linspace(-1, 1, k))
        rows.append(rng.multinomial(s, w / w.sum()))
    t = np.array(rows)
    t = t[:, t.sum(0) > 0]
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark the exact r x c Fisher test on 3 x k tables.")
    ap.add_argument("--reps", type=int, default=3, help="tables per (k, n) cell (default: 3)")
    ap.add_argument("--budget", type=float, default=20.0, help="time budget per table, s (default: 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    ap.add_argument("--ks", default="2,3,4,5,6")
    ap.add_argument("--ns", default="100,300,600")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"load average at start {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    shifts = [0.0, 0.15, 0.5]
    print("| k | n | tables | median s | max s | exact / fallback |")
    print("|---|---|---|---|---|---|")
    for k in [int(v) for v in args.ks.split(",")]:
        for n in [int(v) for v in args.ns.split(",")]:
            times, kinds = [], []
            for i in range(args.reps):
                t = make_table(rng, k, n, shifts[i % 3], sparse=(i % 3 == 2))
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fisher_exact_rxc(t, time_budget=args.budget, mc_draws=10_000)
                times.append(time.perf_counter() - t0)
                kinds.append(res.test)
            ex = sum(k_ == "fisher_exact" for k_ in kinds)
            print(f"| {k} | {n} | {len(times)} | {np.median(times):.3f} | {max(times):.3f} | "
                  f"{ex} / {len(times) - ex} |", flush=True)
    print(f"goal: <= 1 s per table (exact); fallback = exceeded --budget {args.budget} s "
          f"or the memory cap; load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
