"""Time R's ``fisher.test`` (FEXACT, Mehta & Patel) on the tables of ``bench_fisher.py``.

Context for the exact-Fisher speed goal: the same 3 x k tables, drawn with the same seed and
in the same order as ``bench/bench_fisher.py``, are given to R's ``fisher.test`` (workspace
2e9) one at a time, each in its own ``Rscript`` process under a wall-clock limit, and to our
``fisher_exact_rxc`` (no Monte Carlo fallback: ``time_budget`` = the same limit).  Prints a
markdown table of seconds and p-values (agreement where both finished).

    OMP_NUM_THREADS=1 python3 bench/bench_fisher_r.py --ks 4,5,6 --ns 600 --limit 300
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.contingency import fisher_exact_rxc  # noqa: E402
from bench.bench_fisher import make_table  # noqa: E402

R_CODE = """x <- matrix(c({cells}), nrow = {nrow}, byrow = TRUE)
t0 <- proc.time()[[3]]
p <- fisher.test(x, workspace = 2e9)$p.value
cat(sprintf("%.17g %.3f\\n", p, proc.time()[[3]] - t0))
"""


def time_r(table: np.ndarray, limit: float):
    code = R_CODE.format(cells=",".join(map(str, table.ravel())), nrow=table.shape[0])
    try:
        out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return None, None
    if out.returncode != 0:
        return None, None
    p, sec = out.stdout.split()
    return float(p), float(sec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--reps", type=int, default=3, help="tables per (k, n) cell (default: 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of bench_fisher.py (default: 0)")
    ap.add_argument("--ks", default="4,5,6", help="k values (default: 4,5,6)")
    ap.add_argument("--ns", default="600", help="n values (default: 600)")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds per table and method (default: 300)")
    args = ap.parse_args(argv)
    ks = {int(v) for v in args.ks.split(",")}
    ns = {int(v) for v in args.ns.split(",")}
    rng = np.random.default_rng(args.seed)
    shifts = [0.0, 0.15, 0.5]
    print("| k | n | table | R fisher.test s | ours s | R p | ours p | rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for k in [2, 3, 4, 5, 6]:  # the generator order of bench_fisher.py (same draws)
        for n in [100, 300, 600]:
            for i in range(args.reps):
                t = make_table(rng, k, n, shifts[i % 3], sparse=(i % 3 == 2))
                if k not in ks or n not in ns:
                    continue
                p_r, s_r = time_r(t, args.limit)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fisher_exact_rxc(t, time_budget=args.limit, work_budget=None, mc_draws=10)
                s_o = time.perf_counter() - t0
                exact = res.test == "fisher_exact"
                p_o = res.p_value if exact else None
                rel = abs(p_o - p_r) / p_r if (p_o is not None and p_r is not None) else None
                fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
                r_s = fmt(s_r, ".2f") if s_r is not None else f"> {args.limit:.0f} (stopped)"
                o_s = f"{s_o:.2f}" if exact else f"{s_o:.2f}, stopped: {res.details.get('fallback_reason', '?')}"
                print(f"| {k} | {n} | {t.tolist()} | {r_s} | {o_s} | {fmt(p_r, '.6g')} | {fmt(p_o, '.6g')} | "
                      f"{fmt(rel, '.1e')} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
