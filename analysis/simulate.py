"""Deterministic demo cohort of cervical lymph nodes (metastatic / lymphoma / benign).

The numbers are invented but their direction follows the ultrasound literature on
cervical lymphadenopathy, so that the demo Table 1 looks like a real one: metastatic nodes
are found in older patients and are round, with an absent hilum, peripheral or mixed
vascularity, necrosis, calcification (papillary thyroid carcinoma) and high elasticity
scores; lymphomatous nodes are large, round, markedly hypoechoic, with a narrowed or absent
hilum and central or mixed vascularity; benign (reactive) nodes are oval (L/S > 2), with a
preserved hilum, hilar or no flow and soft elastography (Ahuja & Ying 2005,
doi:10.2214/ajr.184.5.01841691; Ying et al. 2013, doi:10.1016/j.ultrasmedbio.2013.01.012).
All distributions overlap: no variable separates the groups on its own.

Command line::

    python -m analysis.simulate --out demo_data            # demo_data/cohort.xlsx + schema
"""
from __future__ import annotations

import argparse
import datetime as _dt
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.schema import default_schema_path

__all__ = ["simulate_cohort", "write_cohort", "build_parser", "main", "GROUP_SHARES"]

#: Share of each group in the published-size demo (246 / 128 / 212 of 586).
GROUP_SHARES = {"metastatic": 246 / 586, "lymphoma": 128 / 586, "benign": 212 / 586}

_FIXED_TIME = _dt.datetime(2024, 1, 1, 0, 0, 0)

# Probabilities per group, levels in schema order.
_P = {
    "sex_male": {"metastatic": 0.62, "lymphoma": 0.55, "benign": 0.45},
    "location": {  # I, II, III, IV, V, VI
        "metastatic": [0.08, 0.30, 0.25, 0.20, 0.10, 0.07],
        "lymphoma": [0.10, 0.25, 0.20, 0.15, 0.25, 0.05],
        "benign": [0.20, 0.35, 0.20, 0.10, 0.10, 0.05]},
    "shape": {  # oval, round, irregular
        "metastatic": [0.30, 0.50, 0.20], "lymphoma": [0.30, 0.62, 0.08], "benign": [0.78, 0.18, 0.04]},
    "margin": {  # smooth, irregular, ill-defined
        "metastatic": [0.35, 0.35, 0.30], "lymphoma": [0.70, 0.15, 0.15], "benign": [0.85, 0.10, 0.05]},
    "hilum": {  # present, narrowed, absent
        "metastatic": [0.15, 0.25, 0.60], "lymphoma": [0.15, 0.35, 0.50], "benign": [0.75, 0.18, 0.07]},
    "internal_echo": {  # hypoechoic, isoechoic, heterogeneous
        "metastatic": [0.35, 0.10, 0.55], "lymphoma": [0.80, 0.05, 0.15], "benign": [0.45, 0.40, 0.15]},
    "calcification": {"metastatic": 0.20, "lymphoma": 0.02, "benign": 0.03},
    "necrosis": {"metastatic": 0.35, "lymphoma": 0.08, "benign": 0.03},
    "cdfi_pattern": {  # avascular, hilar, central, peripheral, mixed
        "metastatic": [0.10, 0.10, 0.10, 0.40, 0.30], "lymphoma": [0.05, 0.20, 0.30, 0.10, 0.35],
        "benign": [0.30, 0.55, 0.05, 0.05, 0.05]},
    "adler_grade": {  # 1, 2, 3 when the node has flow
        "metastatic": [0.25, 0.40, 0.35], "lymphoma": [0.20, 0.40, 0.40], "benign": [0.60, 0.32, 0.08]},
    "elasticity_score": {  # 1..5
        "metastatic": [0.03, 0.07, 0.20, 0.35, 0.35], "lymphoma": [0.10, 0.30, 0.35, 0.18, 0.07],
        "benign": [0.30, 0.40, 0.20, 0.07, 0.03]},
    "hospital": {  # Hospital A, B, C (case mix differs a little between hospitals)
        "metastatic": [0.48, 0.32, 0.20], "lymphoma": [0.40, 0.38, 0.22], "benign": [0.44, 0.31, 0.25]},
}
_AGE = {"metastatic": (58.0, 11.0), "lymphoma": (50.0, 16.0), "benign": (38.0, 14.0)}
# short axis in mm: lognormal median and log-sd
_SHORT = {"metastatic": (10.5, 0.38), "lymphoma": (14.0, 0.40), "benign": (6.5, 0.35)}
# L/S ratio - 1 by shape: lognormal median and log-sd
_RATIO = {"round": (0.35, 0.45), "oval": (1.45, 0.35), "irregular": (0.60, 0.45)}
# share of missing values per column (recorded as empty cells)
_MISSING = {"age": 0.005, "internal_echo": 0.02, "calcification": 0.01, "adler_grade": 0.02,
            "elasticity_score": 0.04}

LEVELS = {
    "location": ["I", "II", "III", "IV", "V", "VI"],
    "shape": ["oval", "round", "irregular"],
    "margin": ["smooth", "irregular", "ill-defined"],
    "hilum": ["present", "narrowed", "absent"],
    "internal_echo": ["hypoechoic", "isoechoic", "heterogeneous"],
    "cdfi_pattern": ["avascular", "hilar", "central", "peripheral", "mixed"],
    "hospital": ["Hospital A", "Hospital B", "Hospital C"],
}


def _group_sizes(n: int) -> dict:
    met = int(round(n * GROUP_SHARES["metastatic"]))
    lym = int(round(n * GROUP_SHARES["lymphoma"]))
    return {"metastatic": met, "lymphoma": lym, "benign": n - met - lym}


def simulate_cohort(n: int = 586, seed: int = 0) -> pd.DataFrame:
    """Simulate the demo cohort table.

    Parameters
    ----------
    n : int, default 586
        Number of patients (one node each); groups are split 246:128:212 (rounded).
        At least 3 (one patient per group).
    seed : int, default 0
        Seed of ``numpy.random.default_rng``; the same ``(n, seed)`` gives the same frame.

    Returns
    -------
    DataFrame
        RangeIndex; columns ``patient_id`` (``P0001``...), ``group``, ``hospital``, the 16
        schema variables (continuous as float, ordinal as nullable ``Int64``, the rest as
        text; missing values NaN/<NA> in ``age``, ``internal_echo``, ``calcification``,
        ``adler_grade``, ``elasticity_score``), and ``image_2d``, ``image_cdfi``,
        ``image_elastography`` (paths relative to the cohort file; ``image_elastography``
        is empty where elastography was not done, i.e. ``elasticity_score`` is missing).
        ``ls_ratio`` equals ``long_axis_mm / short_axis_mm`` rounded to 2 decimals.

    Examples
    --------
    >>> df = simulate_cohort(n=586, seed=0)
    >>> df["group"].value_counts().to_dict()
    {'metastatic': 246, 'benign': 212, 'lymphoma': 128}
    """
    if n < 3:
        raise ValueError(f"n must be at least 3 (one patient per group), got {n}")
    rng = np.random.default_rng(seed)
    sizes = _group_sizes(n)
    groups = np.array([g for g, k in sizes.items() for _ in range(k)], dtype=object)
    groups = groups[rng.permutation(n)]

    def pick(levels, probs_by_group):
        out = np.empty(n, dtype=object)
        for g in sizes:
            mask = groups == g
            out[mask] = rng.choice(levels, size=mask.sum(), p=probs_by_group[g])
        return out

    def bernoulli(p_by_group, no, yes):
        p = np.array([p_by_group[g] for g in groups])
        return np.where(rng.random(n) < p, yes, no).astype(object)

    age = np.array([rng.normal(*_AGE[g]) for g in groups]).clip(14, 92).round()
    sex = bernoulli(_P["sex_male"], "female", "male")
    side = np.where(rng.random(n) < 0.5, "left", "right").astype(object)
    location = pick(LEVELS["location"], _P["location"])
    shape = pick(LEVELS["shape"], _P["shape"])
    short = np.array([rng.lognormal(np.log(_SHORT[g][0]), _SHORT[g][1]) for g in groups])
    short = short.clip(2.5, 45).round(1)
    ratio = np.array([1 + rng.lognormal(np.log(_RATIO[s][0]), _RATIO[s][1]) for s in shape]).clip(1.0, 5.5)
    long = (short * ratio).clip(3.0, 80.0).round(1)
    ls_ratio = (long / short).round(2)
    margin = pick(LEVELS["margin"], _P["margin"])
    hilum = pick(LEVELS["hilum"], _P["hilum"])
    echo = pick(LEVELS["internal_echo"], _P["internal_echo"])
    calc = bernoulli(_P["calcification"], "absent", "present")
    necrosis = bernoulli(_P["necrosis"], "absent", "present")
    cdfi = pick(LEVELS["cdfi_pattern"], _P["cdfi_pattern"])
    flow_grade = pick([1, 2, 3], _P["adler_grade"]).astype(int)
    # avascular nodes are Adler 0 (occasionally a single vessel is seen: grade 1)
    adler = np.where(cdfi == "avascular", np.where(rng.random(n) < 0.9, 0, 1), flow_grade)
    elastic = pick([1, 2, 3, 4, 5], _P["elasticity_score"]).astype(int)
    hospital = pick(LEVELS["hospital"], _P["hospital"])

    width = max(4, len(str(n)))
    ids = [f"P{i + 1:0{width}d}" for i in range(n)]
    df = pd.DataFrame({
        "patient_id": ids, "group": groups, "hospital": hospital,
        "age": age, "sex": sex, "side": side, "location": location,
        "long_axis_mm": long, "short_axis_mm": short, "ls_ratio": ls_ratio,
        "shape": shape, "margin": margin, "hilum": hilum, "internal_echo": echo,
        "calcification": calc, "necrosis": necrosis, "cdfi_pattern": cdfi,
        "adler_grade": pd.array(adler, dtype="Int64"),
        "elasticity_score": pd.array(elastic, dtype="Int64"),
    })
    for col, share in _MISSING.items():
        mask = rng.random(n) < share
        if df[col].dtype == "Int64" or df[col].dtype.kind == "f":
            df.loc[mask, col] = pd.NA if df[col].dtype == "Int64" else np.nan
        else:
            df[col] = df[col].astype(object)
            df.loc[mask, col] = np.nan
    for col in ("group", "hospital", "sex", "side", "location", "shape", "margin", "hilum",
                "internal_echo", "calcification", "necrosis", "cdfi_pattern", "patient_id"):
        df[col] = df[col].astype(object)
    df["image_2d"] = [f"images/2d/{pid}.png" for pid in ids]
    df["image_cdfi"] = [f"images/cdfi/{pid}.png" for pid in ids]
    df["image_elastography"] = pd.Series(
        [np.nan if pd.isna(e) else f"images/elastography/{pid}.png"
         for pid, e in zip(ids, df["elasticity_score"])], dtype=object)
    return df


def _cell(value):
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def write_cohort(df: pd.DataFrame, path) -> Path:
    """Write a cohort frame to ``.xlsx`` or ``.csv`` with byte-identical output for equal input.

    For Excel, the workbook's created/modified dates and the zip entries' timestamps are set
    to 2024-01-01 so that two runs give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        df.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        return path
    if path.suffix.lower() != ".xlsx":
        raise ValueError(f"unsupported output type '{path.suffix}' (expected .xlsx or .csv)")
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "cohort"
    ws.append([str(c) for c in df.columns])
    for record in df.itertuples(index=False, name=None):
        ws.append([_cell(v) for v in record])
    ws.freeze_panes = "A2"
    wb.properties.creator = "analysis.simulate"
    wb.properties.created = _FIXED_TIME
    from .export import save_deterministic_xlsx

    return save_deterministic_xlsx(wb, path, when=_FIXED_TIME.timetuple()[:6])


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Argument parser of ``python -m analysis.simulate``."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.simulate", add_help=add_help,
        description="Write the deterministic demo cohort (cervical lymph nodes) and its schema.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m analysis.simulate --out demo_data\n"
               "  python -m analysis.simulate --out /tmp/small --n 60 --seed 1 --format csv\n")
    parser.add_argument("--out", default="demo_data", help="output folder (default: demo_data)")
    parser.add_argument("--n", type=int, default=586, help="number of patients (default: 586)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--format", choices=("xlsx", "csv"), default="xlsx",
                        help="table format (default: xlsx)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a cohort file or schema in --out that differs from what would be written "
                             "(default: refuse; identical files are left as they are)")
    return parser


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    if args.n < 3:
        print(f"error: --n must be at least 3, got {args.n}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file, not a folder", file=sys.stderr)
        return 2
    table, schema = out / f"cohort.{args.format}", out / "cohort_schema.yaml"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = write_cohort(simulate_cohort(n=args.n, seed=args.seed), Path(tmp) / table.name)
            plan = [(fresh, table), (default_schema_path(), schema)]
            changed = [dst for src, dst in plan if dst.exists() and not filecmp.cmp(src, dst, shallow=False)]
            if changed and not args.overwrite:
                print(f"error: {changed[0]} already exists and differs from the simulated "
                      f"{'cohort' if changed[0] == table else 'schema'}; use another --out or pass --overwrite",
                      file=sys.stderr)
                return 2
            out.mkdir(parents=True, exist_ok=True)
            for src, dst in plan:
                shutil.copyfile(src, dst)
    except OSError as exc:
        print(f"error: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {table} {schema}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
