"""A finished run's results table in compact form, with the cost of each stage, for BENCHMARKS.md.

``python bench/summarise_run.py RUN [--out FILE.md]`` reads ``RUN/results.xlsx`` (the table
``python -m fusion.train`` writes) and ``RUN/run_manifest.json`` (``timings_s``: CPU-process
wall seconds of each stage) and prints one Markdown table: pooled macro AUC with its 95 % CI,
the range of the per-fold AUCs, the difference from the best single modality and its
Holm-adjusted p, then the stage times. Nothing is recomputed.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd


def compact(run) -> str:
    run = Path(run)
    table = pd.read_excel(run / "results.xlsx", sheet_name=0)
    folds = [c for c in table.columns if re.fullmatch(r"Fold \d+", str(c))]
    rows = []
    for _, r in table.iterrows():
        point = [float(str(r[c]).split()[0]) for c in folds if str(r[c]) not in ("", "nan")]
        rows.append({"kind": r["Kind"], "model": r["Model"], "modality": r["Modality"], "patients": r["Patients"],
                     **({"images": r["Images"]} if "Images" in table.columns else {}),
                     "pooled macro AUC (95% CI)": r["Pooled macro AUC (95% CI)"],
                     "per fold": f"{min(point):.3f}–{max(point):.3f}" if point else "",
                     "vs best single": r["Difference vs best single"],
                     "p (Holm)": "" if pd.isna(r["p (Holm)"]) else r["p (Holm)"]})
    out = pd.DataFrame(rows).to_markdown(index=False)
    manifest = json.loads((run / "run_manifest.json").read_text())
    timings = manifest.get("timings_s") or {}
    if timings:
        cnn = timings.get("cnn")
        cost = ", ".join(f"{k} {v:.0f} s" + (f" ({v / cnn:.2f}x CNN)" if cnn and k != "cnn" else "")
                         for k, v in timings.items())
        out += f"\n\nStage times (wall, one process): {cost}.\n"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--out")
    args = p.parse_args(argv)
    text = compact(args.run)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
