"""Model × modality result tables (Markdown, LaTeX, Excel) from ``metrics.csv``.

One row per model × modality × split, one column per metric, each cell
``estimate (ci_low–ci_high)`` — never an estimate without its interval.  Rounding is done by
:mod:`analysis.formatting`, as everywhere in the toolkit; the full-precision numbers stay in
``metrics.csv``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import formatting as fmt
from analysis.errors import CohortError
from analysis.export import latex_escape

__all__ = ["DEFAULT_METRICS", "model_modality_table", "write_model_modality_tables"]

#: (metric, class) pairs shown by default, with their column titles; class '' = macro/overall.
DEFAULT_METRICS = (
    ("auc", "", "Macro AUC (OvR)"),
    ("balanced_accuracy", "", "Balanced accuracy"),
    ("f1", "", "Macro F1"),
    ("accuracy", "", "Accuracy"),
)
_SPLIT_NAMES = {"test": "out-of-fold (CV test folds)", "external": "external (held-out hospital)",
                "holdout": "held-out test set"}


def model_modality_table(metrics: pd.DataFrame, columns=DEFAULT_METRICS, digits: int = 3) -> pd.DataFrame:
    """Wide, formatted table: rows model × modality × split, one column per metric.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv`` of :func:`fusion.evaluate.evaluate_predictions` (columns ``model,
        modality, split, metric, class, estimate, ci_low, ci_high``).
    columns : sequence of (metric, class, title)
        Which metrics to show; ``class`` '' selects the macro / overall value.
    digits : int
        Decimals of estimates and limits (default 3).

    Returns
    -------
    pandas.DataFrame
        ``Model, Modality, Split, n`` then one text column per metric.
    """
    need = {"model", "modality", "split", "metric", "class", "estimate", "ci_low", "ci_high"}
    missing = sorted(need - set(metrics.columns))
    if missing:
        raise CohortError(f"metrics table lacks column(s) {', '.join(missing)}", column=missing[0])
    m = metrics.copy()
    m["class"] = m["class"].fillna("").astype(str)
    rows = []
    for (model, modality, split), g in m.groupby(["model", "modality", "split"], sort=False):
        row = {"Model": model, "Modality": modality, "Split": _SPLIT_NAMES.get(split, split)}
        if "n" in g:
            row["n"] = int(g["n"].max())
        for metric, cls, title in columns:
            hit = g[(g["metric"] == metric) & (g["class"] == cls)]
            row[title] = (fmt.format_effect_size(hit["estimate"].iloc[0], hit["ci_low"].iloc[0],
                                                 hit["ci_high"].iloc[0], digits=digits)
                          if len(hit) else "not computed")
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join([":---"] * 3 + [":---:"] * (len(cols) - 3)) + "|"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    return "\n".join(lines)


def _latex(table: pd.DataFrame, caption: str) -> str:
    cols = list(table.columns)
    spec = "lll" + "c" * (len(cols) - 3)
    body = [" & ".join(latex_escape(v) for v in r) + r" \\" for r in table.itertuples(index=False)]
    return "\n".join([
        r"\begin{table}[htbp]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
        " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule", *body, r"\bottomrule",
        r"\end{tabular}", r"\end{table}", ""])


def write_model_modality_tables(metrics: pd.DataFrame, out_dir, *, n_boot=None) -> list[Path]:
    """Write ``model_modality.md``, ``.tex`` and ``.xlsx`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = model_modality_table(metrics)
    boot = f"{n_boot} " if n_boot else ""
    caption = ("Performance by model and modality: estimate (95% CI); CIs from a patient-level "
               f"percentile bootstrap ({boot}resamples of patients).")
    md = out / "model_modality.md"
    md.write_text(f"{caption}\n\n{_markdown(table)}\n", encoding="utf-8")
    tex = out / "model_modality.tex"
    tex.write_text(_latex(table, caption), encoding="utf-8")
    xlsx = out / "model_modality.xlsx"
    with pd.ExcelWriter(xlsx, engine="openpyxl") as writer:
        table.to_excel(writer, sheet_name="Model x modality", index=False)
        metrics.to_excel(writer, sheet_name="All metrics (full precision)", index=False)
    return [md, tex, xlsx]
