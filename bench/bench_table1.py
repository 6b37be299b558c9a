"""Table 1 timing at 586, 100k and 1M rows against the ``tableone`` package.

Both tools summarise the same variables of the simulated cohort by group and compute one
p-value per variable.  ``tableone`` is told which variables are categorical and which are
non-normal (so it uses Kruskal–Wallis for them and one-way ANOVA otherwise, chi-square for
categorical rows); our engine chooses its tests itself, so p-values are compared only on the
rows where both tools ran the same test, and the table says which.

Examples
--------
    python bench/bench_table1.py                    # 586, 100k and 1M rows
    python bench/bench_table1.py --sizes 586 100000 # skip the 1M run
    python bench/bench_table1.py --markdown out.md  # also write the markdown table
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd

from analysis.cohort import validate_cohort
from analysis.schema import load_schema
from analysis.simulate import simulate_cohort
from analysis.table1 import build_table1

# our test name -> tableone's name for the same test
SAME_TEST = {
    "chi_square": "Chi-squared",
    "anova": "One-way ANOVA",
    "kruskal_wallis": "Kruskal-Wallis",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time Table 1 against tableone at several cohort sizes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples\n--------\n", 1)[1],
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[586, 100_000, 1_000_000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default=None, help="write the results table to this file")
    return p


def run_tableone(df, schema, decisions):
    from tableone import TableOne

    cats = [v.name for v in schema.variables if v.type != "continuous"]
    cols = [v.name for v in schema.variables]
    nonnormal = [v for v in cols if decisions.get(v) == "kruskal_wallis"]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = TableOne(df, columns=cols, categorical=cats, groupby=schema.group_column,
                     nonnormal=nonnormal, pval=True, htest_name=True)
    elapsed = time.perf_counter() - t0
    tbl = t.tableone
    pcol = [c for c in tbl.columns if c[1] == "P-Value"][0]
    tcol = [c for c in tbl.columns if c[1] == "Test"][0]
    out = {}
    for (var_label, level), row in tbl.iterrows():
        name = var_label.split(",")[0].strip()
        if name in cols and str(row[tcol]).strip():
            out[name] = (str(row[tcol]).strip(), row[pcol])
    # raw p-values (tableone's display rounds them)
    raw = {k: v for k, v in getattr(t, "_htest_table", pd.DataFrame()).get("P-Value", pd.Series(dtype=float)).items()}
    return elapsed, out, raw


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    schema = load_schema()
    rows = []
    for n in args.sizes:
        df = simulate_cohort(n=n, seed=args.seed)
        t0 = time.perf_counter()
        cohort = validate_cohort(df, schema, source=f"simulated n={n}")
        t_valid = time.perf_counter() - t0
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = build_table1(cohort, posthoc=True, regression=False)
        t_ours = time.perf_counter() - t0
        stats = result.stats.set_index("variable")
        decisions = stats["test"].to_dict()
        data = cohort.data.copy()
        for c in data.columns:
            if isinstance(data[c].dtype, pd.CategoricalDtype):
                data[c] = data[c].astype(object)
        t_tableone, tone, raw = run_tableone(data, schema, decisions)
        diffs, compared = [], 0
        for var, test in decisions.items():
            if test in SAME_TEST and var in raw:
                p_ours, p_theirs = stats.loc[var, "p_value"], float(raw[var])
                if np.isfinite(p_ours) and np.isfinite(p_theirs) and p_theirs > 0:
                    diffs.append(abs(p_ours - p_theirs) / p_theirs)
                    compared += 1
        rows.append({
            "rows": n, "validate_s": round(t_valid, 2), "table1_s": round(t_ours, 2),
            "tableone_s": round(t_tableone, 2), "p_compared": compared,
            "max_rel_p_diff": (max(diffs) if diffs else float("nan")),
        })
        print(rows[-1], file=sys.stderr, flush=True)
    out = pd.DataFrame(rows)
    md = out.to_markdown(index=False) if hasattr(out, "to_markdown") else out.to_string(index=False)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
