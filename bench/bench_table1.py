"""Table 1 timing at 586, 100k and 1M rows against the ``tableone`` package.

Both tools summarise the same 16 variables of the simulated cohort
(:func:`analysis.simulate.simulate_cohort`, validated by
:func:`analysis.cohort.validate_cohort`) by group and compute one p-value per variable.
Our engine chooses its tests itself; ``tableone`` is then told the same choice wherever
it has the test:

* our chi-square / Fisher rows -> ``categorical`` (tableone runs Pearson chi-square via
  ``scipy.stats.chi2_contingency``; its Yates correction applies only to 2 x 2 tables,
  and with three groups every table has df >= 2, so none is corrected);
* our Kruskal–Wallis rows -> ``nonnormal`` continuous (``scipy.stats.kruskal``); ordinal
  variables tested by Kruskal–Wallis on their level scores are passed as their numeric
  grades (a monotone recoding of the scores, so the ranks and H are identical);
* our one-way ANOVA and Welch ANOVA rows -> normal continuous (tableone runs the classical
  ``scipy.stats.f_oneway``; it has no Welch ANOVA for three groups, so Welch rows are
  timed but not compared).

``include_null=False`` keeps tableone from turning missing categorical values into a
``'None'`` level that enters its chi-square test (our engine never tests missing values).
P-values are compared only where both tools ran the same test on the same data.
tableone discards its test statistics (``tableone/statistics.py`` ``_p_test``), so the
statistic column compares ours with the scipy function tableone calls, run on the same
grouped data tableone builds.

Timings: ``validate`` is :func:`validate_cohort`; ``table1`` is :func:`build_table1`
with post hoc tests, effect sizes with CIs and q-values but ``regression=False`` (the
multinomial odds ratios are timed separately at the first size); ``tableone`` is the
``TableOne(...)`` call.  Imports are warmed up before timing.  Peak RSS is the process
maximum so far (sizes run in ascending order).

Examples
--------
    python bench/bench_table1.py                              # 586, 100k and 1M rows
    python bench/bench_table1.py --sizes 586 100000           # skip the 1M run
    python bench/bench_table1.py --markdown bench/results/table1_vs_tableone.md
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import shlex
import sys
import time
import warnings
from importlib import metadata

import numpy as np
import pandas as pd
from scipy import stats

from analysis.cohort import validate_cohort
from analysis.schema import load_schema
from analysis.simulate import simulate_cohort
from analysis.table1 import build_table1

#: our test name -> tableone's test name (its 'Test' column) for the same computation
SAME_TEST = {"chi_square": "Chi-squared", "anova": "One-way ANOVA",
             "kruskal_wallis": "Kruskal-Wallis"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time Table 1 against tableone at several cohort sizes; compare p-values.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples\n--------\n", 1)[1],
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[586, 100_000, 1_000_000])
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default: 0)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timing repeats for sizes below 100000, median reported (default: 3)")
    p.add_argument("--markdown", default=None, help="write the report to this file")
    return p


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, repeats=1):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def tableone_spec(schema, decisions):
    """(categorical, nonnormal, numeric_ordinals) lists telling tableone our choice."""
    categorical, nonnormal, numeric = [], [], []
    for v in schema.variables:
        test = decisions[v.name]
        if v.type == "continuous":
            if test == "kruskal_wallis":
                nonnormal.append(v.name)
        elif v.type == "ordinal" and test in ("kruskal_wallis", "anova", "welch_anova"):
            numeric.append(v.name)
            if test == "kruskal_wallis":
                nonnormal.append(v.name)
        else:
            categorical.append(v.name)
    return categorical, nonnormal, numeric


def tableone_frame(cohort, categorical, numeric):
    """cohort.data with plain object / float columns (tableone's expected input)."""
    data = cohort.data
    gcol = cohort.schema.group_column
    out = {gcol: data[gcol].astype(object)}
    for v in cohort.schema.variables:
        col = data[v.name]
        if v.name in numeric:
            out[v.name] = pd.to_numeric(col.astype(object), errors="coerce").astype(float)
        elif v.name in categorical:
            out[v.name] = col.astype(object)
        else:
            out[v.name] = col.astype(float)
    frame = pd.DataFrame(out, index=data.index)
    return frame.loc[frame[gcol].notna()]


def scipy_statistic(frame, gcol, var, test, group_levels):
    """The statistic of the scipy call tableone makes, on the data tableone builds."""
    if test == "chi_square":
        cross = pd.crosstab(frame[gcol], frame[var])
        return float(stats.chi2_contingency(cross.T.to_numpy())[0])
    samples = [frame.loc[frame[gcol] == g, var].dropna().to_numpy() for g in group_levels]
    if test == "anova":
        return float(stats.f_oneway(*samples).statistic)
    return float(stats.kruskal(*samples).statistic)


def _rel(a, b):
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return math.inf
    return abs(a - b) / abs(b)


def run_size(n, args, schema):
    from tableone import TableOne

    load = os.getloadavg()[0]
    reps = args.repeats if n < 100_000 else 1
    df, t_sim = _timed(lambda: simulate_cohort(n=n, seed=args.seed))
    cohort, t_val = _timed(lambda: validate_cohort(df, schema, source=f"simulated n={n}"), reps)
    del df
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, t_ours = _timed(lambda: build_table1(cohort, posthoc=True, regression=False), reps)
    stats_ = result.stats.set_index("variable")
    decisions = stats_["test"].to_dict()
    categorical, nonnormal, numeric = tableone_spec(schema, decisions)
    frame = tableone_frame(cohort, categorical, numeric)
    gcol = schema.group_column
    cols = [v.name for v in schema.variables]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tone, t_tone = _timed(lambda: TableOne(
            frame, columns=cols, categorical=categorical, groupby=gcol, nonnormal=nonnormal,
            pval=True, htest_name=True, include_null=False), reps)
    htest = tone.htest_table
    rows = []
    for var in cols:
        ours, theirs = decisions[var], str(htest.loc[var, "Test"])
        p_o, p_t = float(stats_.loc[var, "p_value"]), float(htest.loc[var, "P-Value"])
        row = {"rows": n, "variable": var, "our_test": ours, "tableone_test": theirs,
               "p_ours": p_o, "p_tableone": p_t, "p_rel_diff": math.nan,
               "stat_ours": float(stats_.loc[var, "statistic"]), "stat_scipy": math.nan,
               "stat_rel_diff": math.nan, "compared": False}
        if ours in SAME_TEST and theirs.startswith(SAME_TEST[ours]):
            row["compared"] = True
            row["p_rel_diff"] = _rel(p_o, p_t)
            row["stat_scipy"] = scipy_statistic(frame, gcol, var, ours, result.group_levels)
            row["stat_rel_diff"] = _rel(row["stat_ours"], row["stat_scipy"])
        rows.append(row)
    detail = pd.DataFrame(rows)
    cmp_ = detail[detail["compared"]]
    both_zero = int(((cmp_["p_ours"] == 0) & (cmp_["p_tableone"] == 0)).sum())
    finite = cmp_[(cmp_["p_tableone"] > 0) | (cmp_["p_ours"] > 0)]
    summary = {
        "rows": n, "load_1min": round(load, 2), "simulate_s": t_sim, "validate_s": t_val,
        "table1_s": t_ours, "tableone_s": t_tone, "peak_rss_mib": int(round(_rss_mib())),
        "tests_compared": len(cmp_), "p_both_zero": both_zero,
        "max_rel_p_diff": float(finite["p_rel_diff"].max()) if len(finite) else math.nan,
        "max_rel_stat_diff": float(cmp_["stat_rel_diff"].max()) if len(cmp_) else math.nan,
        "not_compared": ", ".join(f"{r.variable} ({r.our_test} vs {r.tableone_test})"
                                  for r in detail[~detail["compared"]].itertuples()),
    }
    extra = {}
    if n == min(args.sizes):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res_reg, t_reg = _timed(lambda: build_table1(cohort, posthoc=True, regression=True), reps)
        extra = {"table1_with_regression_s": t_reg, "regression_note": res_reg.regression_note}
    return summary, detail, extra


def _warm_up(schema):
    """Import and first-call costs (scipy, statsmodels, tableone) outside the timings."""
    from tableone import TableOne

    cohort = validate_cohort(simulate_cohort(n=90, seed=99), schema)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_table1(cohort, regression=True, n_boot=50)
        data = cohort.data.astype(object)
        TableOne(data, columns=["age", "sex"], categorical=["sex"], groupby=schema.group_column,
                 pval=True)


def _fmt(x, digits=3):
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(x)
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}"


def _md_table(frame, digits=3):
    head = "| " + " | ".join(frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_fmt(v, digits) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def report(summaries, details, extra, command) -> str:
    versions = {k: metadata.version(k) for k in ("tableone", "pandas", "numpy", "scipy")}
    summ = pd.DataFrame(summaries)
    lines = [
        "# Table 1: our engine vs tableone",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs "
        f"(1-minute load average at the start of each size in the table); Python "
        f"{platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "## Timing (seconds; median of repeats below 100k rows, single run above)",
        "",
        _md_table(summ[["rows", "load_1min", "simulate_s", "validate_s", "table1_s",
                        "tableone_s", "peak_rss_mib"]]),
        "",
    ]
    if extra:
        lines += [f"Multinomial regression (univariable + multivariable odds ratios) at "
                  f"{summaries[0]['rows']} rows: `build_table1(regression=True)` takes "
                  f"{extra['table1_with_regression_s']:.2f} s in total, i.e. "
                  f"{extra['table1_with_regression_s'] - summaries[0]['table1_s']:.2f} s for the "
                  f"regression (note: {extra['regression_note'] or 'none'}).", ""]
    lines += [
        "## p-value agreement where both ran the same test",
        "",
        "`max_rel_p_diff` is over the compared tests whose p-values are not both 0.0 "
        "(`p_both_zero` counts the p-values that underflow to 0.0 in both tools); "
        "`max_rel_stat_diff` compares our statistic with the scipy call tableone makes "
        "(tableone itself does not keep its statistics).",
        "",
        _md_table(summ[["rows", "tests_compared", "p_both_zero", "max_rel_p_diff",
                        "max_rel_stat_diff"]]),
        "",
        "Not compared (different tests):",
        "",
    ]
    lines += [f"- {s['rows']} rows: {s['not_compared'] or 'none'}" for s in summaries]
    lines += ["", "## Per variable", ""]
    det = pd.concat(details, ignore_index=True)
    lines.append(_md_table(det[["rows", "variable", "our_test", "tableone_test", "p_ours",
                                "p_tableone", "p_rel_diff", "stat_rel_diff"]], digits=4))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    schema = load_schema()
    _warm_up(schema)
    summaries, details, extra = [], [], {}
    for n in sorted(args.sizes):
        summary, detail, more = run_size(n, args, schema)
        summaries.append(summary)
        details.append(detail)
        extra = extra or more
        print(", ".join(f"{k}={_fmt(v)}" for k, v in summary.items() if k != "not_compared"),
              file=sys.stderr, flush=True)
    command = "python bench/bench_table1.py " + " ".join(shlex.quote(a) for a in
                                                         (argv if argv is not None else sys.argv[1:]))
    text = report(summaries, details, extra, command.strip())
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote: {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
