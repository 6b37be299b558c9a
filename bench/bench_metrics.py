"""Timing of classification_metrics with a patient-level bootstrap (586 patients, 3 classes).

Target: 2000 resamples of 586 patients x 13 metrics in seconds, not minutes.

Examples
--------
    python bench/bench_metrics.py                       # 586 patients, 1 and 3 images each
    python bench/bench_metrics.py --n-boot 5000 --repeats 3
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.metrics import classification_metrics

CLASSES = ["metastatic", "lymphoma", "benign"]


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Time classification_metrics with a patient-level bootstrap.",
                                add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("Examples\n--------\n")[1])
    p.add_argument("--patients", type=int, default=586, help="patients (default: 586)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    p.add_argument("--repeats", type=int, default=1, help="timed repeats, best reported (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="data and bootstrap seed (default: 0)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    rng = np.random.default_rng(args.seed)
    y = rng.integers(0, 3, args.patients)
    print("| images per patient | predictions | resamples | metrics | best time (s) |")
    print("|---|---|---|---|---|")
    for per in (1, 3):
        pid = np.repeat(np.arange(args.patients), per)
        logits = rng.normal(size=(pid.size, 3)) + np.eye(3)[y[pid]]
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = np.array(CLASSES)[y[pid]]
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = classification_metrics(labels, proba, CLASSES, pid, n_boot=args.n_boot, seed=args.seed)
            best = min(best, time.perf_counter() - t0)
        print(f"| {per} | {pid.size} | {args.n_boot} | {len(out)} | {best:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
