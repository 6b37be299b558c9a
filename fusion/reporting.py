"""Model × modality result tables (Markdown, LaTeX, Excel) from ``metrics.csv``.

One row per model × modality × split, one column per metric, each cell
``estimate (ci_low–ci_high)`` — never an estimate without its interval.  Rounding is done by
:mod:`analysis.formatting`, as everywhere in the toolkit; the full-precision numbers stay in
``metrics.csv``.

Each row shows its number of patients (``n_patients`` of ``metrics.csv``, distinct patient
ids; several images of one patient count once): rows can cover different patients, since a
patient without an image of a modality has no prediction for it while the late-fusion rows
cover every patient.  The caption says so, and gives the confidence level of the intervals
(``ci_level``).  With leave-one-hospital-out splits the ``'external'`` rows pool every held-out
hospital; given the per-fold metrics (``metrics_by_fold.csv``,
:func:`fusion.evaluate.evaluate_by_fold`) the table labels them as pooled and the Excel file
gets them as a sheet.

Files written by :func:`write_model_modality_tables`: ``model_modality.md``,
``model_modality.tex``, ``model_modality.xlsx``.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis import formatting as fmt
from analysis.errors import CohortError
from analysis.export import latex_escape

__all__ = ["DEFAULT_METRICS", "model_modality_table", "table_caption", "write_model_modality_tables", "results_table",
           "write_results_table"]

#: (metric, class) pairs shown by default, with their column titles; class '' = macro/overall.
DEFAULT_METRICS = (
    ("auc", "", "Macro AUC (OvR)"),
    ("balanced_accuracy", "", "Balanced accuracy"),
    ("f1", "", "Macro F1"),
    ("accuracy", "", "Accuracy"),
)
_SPLIT_NAMES = {"test": "out-of-fold (CV test folds)", "external": "external (held-out hospital)",
                "holdout": "held-out test set"}
#: Split labels of rows that pool several held-out folds (``{k}`` = number of folds; other splits:
#: ``'<name> (pooled over {k} folds)'``).
_POOLED_NAMES = {"external": "external (pooled over {k} held-out hospitals)"}
_FUSION_MODEL = "late_fusion"   # fusion.late_fusion.FUSION_MODEL


def _pooled_folds(by_fold) -> dict:
    """(model, modality, split) -> number of folds, for groups of ``by_fold`` with several folds."""
    if by_fold is None or len(by_fold) == 0:
        return {}
    need = {"model", "modality", "split", "fold"}
    missing = sorted(need - set(by_fold.columns))
    if missing:
        raise CohortError(f"per-fold metrics table lacks column(s) {', '.join(missing)}", column=missing[0])
    k = by_fold.groupby(["model", "modality", "split"], sort=False)["fold"].nunique()
    return {key: int(v) for key, v in k.items() if v > 1}


def model_modality_table(metrics: pd.DataFrame, columns=DEFAULT_METRICS, digits: int = 3,
                         by_fold: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide, formatted table: rows model × modality × split, one column per metric.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv`` of :func:`fusion.evaluate.evaluate_predictions` (columns ``model,
        modality, split, metric, class, estimate, ci_low, ci_high``; ``n_patients`` is shown
        when present).
    columns : sequence of (metric, class, title)
        Which metrics to show; ``class`` '' selects the macro / overall value.
    digits : int
        Decimals of estimates and limits (default 3).
    by_fold : pandas.DataFrame, optional
        ``metrics_by_fold.csv`` (:func:`fusion.evaluate.evaluate_by_fold`).  A row whose
        model × modality × split has several folds there pools them and is labelled so
        (``'external (pooled over 3 held-out hospitals)'``).

    Returns
    -------
    pandas.DataFrame
        ``Model, Modality, Split, Patients`` then one text column per metric.  ``Patients``
        = distinct patients of the row (``n_patients``); a metrics frame without
        ``n_patients`` (older ``metrics.csv``) shows ``Predictions`` (rows, ``n``) instead,
        never as patients.
    """
    need = {"model", "modality", "split", "metric", "class", "estimate", "ci_low", "ci_high"}
    missing = sorted(need - set(metrics.columns))
    if missing:
        raise CohortError(f"metrics table lacks column(s) {', '.join(missing)}", column=missing[0])
    pooled = _pooled_folds(by_fold)
    m = metrics.copy()
    m["class"] = m["class"].fillna("").astype(str)
    rows = []
    for (model, modality, split), g in m.groupby(["model", "modality", "split"], sort=False):
        label = _SPLIT_NAMES.get(split, split)
        k = pooled.get((model, modality, split))
        if k:
            label = _POOLED_NAMES.get(split, "{name} (pooled over {k} folds)").format(name=label, k=k)
        row = {"Model": model, "Modality": modality, "Split": label}
        if "n_patients" in g:
            row["Patients"] = int(g["n_patients"].max())
        elif "n" in g:
            row["Predictions"] = int(g["n"].max())
        for metric, cls, title in columns:
            hit = g[(g["metric"] == metric) & (g["class"] == cls)]
            row[title] = (fmt.format_effect_size(hit["estimate"].iloc[0], hit["ci_low"].iloc[0],
                                                 hit["ci_high"].iloc[0], digits=digits)
                          if len(hit) else "not computed")
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame, left: int = 3) -> str:
    """A Markdown table: the first ``left`` columns left-aligned, the others centred."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join([":---"] * min(left, len(cols)) + [":---:"] * max(len(cols) - left, 0)) + "|"]
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


def _ci_level(metrics: pd.DataFrame, ci) -> float | None:
    """The CIs' level: ``ci_level`` of ``metrics`` (one value), else ``ci``; None when neither is known."""
    levels = (sorted(pd.to_numeric(metrics["ci_level"], errors="coerce").dropna().unique())
              if "ci_level" in metrics else [])
    if len(levels) > 1:
        raise CohortError(f"metrics table mixes confidence levels {', '.join(f'{v:g}' for v in levels)}; "
                          "one table needs one level", column="ci_level")
    if levels:
        if ci is not None and not math.isclose(float(ci), float(levels[0])):
            raise CohortError(f"ci = {ci:g} but the metrics' intervals are at level {levels[0]:g}",
                              column="ci_level")
        return float(levels[0])
    return None if ci is None else float(ci)


def table_caption(metrics: pd.DataFrame, *, n_boot=None, ci=None, by_fold: pd.DataFrame | None = None) -> str:
    """Caption of the model × modality table: CI level and method, patient counts, pooling.

    Parameters
    ----------
    metrics : pandas.DataFrame
        ``metrics.csv``; its ``ci_level`` gives the level (else ``ci``; unknown: no level).
    n_boot : int, optional
        Bootstrap resamples, named in the caption.
    ci : float, optional
        Confidence level, used when ``metrics`` has no ``ci_level``; must agree with it otherwise.
    by_fold : pandas.DataFrame, optional
        ``metrics_by_fold.csv``; rows pooling several held-out hospitals are then explained.
    """
    level = _ci_level(metrics, ci)
    ci_text = f"{100 * level:g}% CI" if level is not None else "CI"
    boot = f"{n_boot} " if n_boot else ""
    parts = [f"Performance by model and modality: estimate ({ci_text}); CIs from a patient-level "
             f"percentile bootstrap ({boot}resamples of patients)."]
    fusion = "model" in metrics and (metrics["model"] == _FUSION_MODEL).any()
    if "n_patients" in metrics:
        parts.append("Patients = distinct patients of each row; rows can differ in their patients (a patient "
                     "without an image of a modality has no prediction for it"
                     + (", while the late-fusion rows cover every patient), and the paired comparisons in "
                        "late_fusion_comparison.csv use only the patients common to both models."
                        if fusion else ")."))
    else:
        parts.append("Predictions = prediction rows of each row (several images of one patient count "
                     "separately); rows can differ in their patients"
                     + (", and the paired comparisons in late_fusion_comparison.csv use only the patients "
                        "common to both models." if fusion else "."))
    pooled = _pooled_folds(by_fold)
    if any(split == "external" for _, _, split in pooled):
        parts.append("External rows pool the predictions of every held-out hospital (leave-one-hospital-out); "
                     "each hospital separately: metrics_by_fold.csv.")
    elif pooled:
        parts.append("Rows marked 'pooled' pool the predictions of several held-out folds; each fold "
                     "separately: metrics_by_fold.csv.")
    return " ".join(parts)


def write_model_modality_tables(metrics: pd.DataFrame, out_dir, *, n_boot=None, ci=None,
                                by_fold: pd.DataFrame | None = None) -> list[Path]:
    """Write ``model_modality.md``, ``.tex`` and ``.xlsx`` into ``out_dir``; return the paths.

    ``n_boot``, ``ci`` and ``by_fold`` as for :func:`table_caption` (``by_fold`` also as for
    :func:`model_modality_table`); a non-empty ``by_fold`` becomes a third Excel sheet
    ``Per held-out fold``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = model_modality_table(metrics, by_fold=by_fold)
    caption = table_caption(metrics, n_boot=n_boot, ci=ci, by_fold=by_fold)
    md = out / "model_modality.md"
    md.write_text(f"{caption}\n\n{_markdown(table)}\n", encoding="utf-8")
    tex = out / "model_modality.tex"
    tex.write_text(_latex(table, caption), encoding="utf-8")
    xlsx = out / "model_modality.xlsx"
    with pd.ExcelWriter(xlsx, engine="openpyxl") as writer:
        table.to_excel(writer, sheet_name="Model x modality", index=False)
        metrics.to_excel(writer, sheet_name="All metrics (full precision)", index=False)
        if by_fold is not None and len(by_fold):
            by_fold.to_excel(writer, sheet_name="Per held-out fold", index=False)
    return [md, tex, xlsx]


#: Kind of each row of :func:`results_table`, by ``model``.
_KINDS = {"texture_lr": "texture baseline", "late_fusion": "late fusion", "embedding_lr": "embedding fusion",
          "embedding_mlp": "embedding fusion", "joint_concat": "joint fusion", "joint_gated": "joint fusion"}


def _kind(model: str, modality: str, single: set) -> str:
    if modality == "clinical_only":
        return "clinical only"
    if (model, modality) in single and model not in _KINDS:
        return "CNN, one modality"
    return _KINDS.get(model, "other")


def results_table(metrics: pd.DataFrame, by_fold: pd.DataFrame | None, comparison: pd.DataFrame | None,
                  best, *, single=None, metric: str = "auc", digits: int = 3) -> pd.DataFrame:
    """The one results table: every model x modality with its pooled and per-fold macro AUC and CI,
    and its paired test against the best single modality.

    Parameters
    ----------
    metrics, by_fold : pandas.DataFrame
        ``metrics.csv`` and ``metrics_by_fold.csv`` (:func:`fusion.evaluate.evaluate_predictions`,
        :func:`fusion.evaluate.evaluate_by_fold`).
    comparison : pandas.DataFrame or None
        :func:`fusion.evaluate.compare_models_delong` rows with the best single modality on one
        side (macro rows: ``class == ''``).
    best : (model, modality) or None
        The best single modality (highest pooled macro AUC; it is the comparator, not a model
        choice: every row is reported).
    single : pandas.DataFrame, optional
        ``model, modality`` pairs that use one modality.
    metric : str
        Metric shown (macro one-vs-rest AUC by default).

    Returns
    -------
    pandas.DataFrame
        ``Kind, Model, Modality, Split, Patients, Pooled <metric> (CI)``, one ``Fold k`` column
        per fold (estimate and CI within that fold), ``Difference vs best single``, ``p``,
        ``p (Holm)``; ordered by kind, then pooled estimate (descending). Where some model has
        several predictions per patient (several images), an ``Images`` column after
        ``Patients`` gives each row's predictions: such a row's pooled and per-fold AUCs are
        over images (resampled by patient), while its difference and p compare per-patient mean
        probabilities, the unit of the fusion rows (:func:`fusion.evaluate.compare_models_delong`).
    """
    single_set = set() if single is None else set(map(tuple, single[["model", "modality"]].to_numpy()))
    m = metrics[(metrics["metric"] == metric) & (metrics["class"].fillna("").astype(str) == "")]
    several = bool((m["n"] > m["n_patients"]).any()) if "n" in m.columns else False
    f = pd.DataFrame() if by_fold is None or not len(by_fold) else by_fold[
        (by_fold["metric"] == metric) & (by_fold["class"].fillna("").astype(str) == "")]
    comp = pd.DataFrame() if comparison is None or not len(comparison) else comparison[
        comparison["class"].fillna("").astype(str) == ""]
    folds = sorted(pd.unique(f["fold"])) if len(f) else []
    title = {"auc": "macro AUC"}.get(metric, metric)
    rows = []
    for r in m.itertuples(index=False):
        key = (r.model, r.modality)
        row = {"Kind": _kind(r.model, r.modality, single_set), "Model": r.model, "Modality": r.modality,
               "Split": _SPLIT_NAMES.get(r.split, r.split), "Patients": int(r.n_patients),
               **({"Images": int(r.n)} if several else {}),
               f"Pooled {title} (95% CI)": fmt.format_effect_size(r.estimate, r.ci_low, r.ci_high, digits=digits),
               "_estimate": float(r.estimate)}
        for k in folds:
            hit = f[(f["model"] == r.model) & (f["modality"] == r.modality) & (f["split"] == r.split) &
                    (f["fold"] == k)]
            row[f"Fold {k}"] = (fmt.format_effect_size(hit["estimate"].iloc[0], hit["ci_low"].iloc[0],
                                                       hit["ci_high"].iloc[0], digits=digits) if len(hit) else "")
        diff = p = ph = ""
        if best is not None and key == tuple(best):
            diff = "best single modality (reference)"
        elif best is not None and len(comp):
            a = comp[(comp["split"] == r.split) & (comp["model_a"] == r.model) & (comp["modality_a"] == r.modality)]
            b = comp[(comp["split"] == r.split) & (comp["model_b"] == r.model) & (comp["modality_b"] == r.modality)]
            sign, hit = (1.0, a) if len(a) else (-1.0, b)
            if len(hit):
                d = sign * float(hit["difference"].iloc[0])
                diff = fmt.format_number(d, digits)
                p = fmt.format_p(hit["p_value"].iloc[0])
                ph = fmt.format_p(hit["p_holm"].iloc[0])
        row.update({"Difference vs best single": diff, "p": p, "p (Holm)": ph})
        rows.append(row)
    order = ["CNN, one modality", "texture baseline", "clinical only", "late fusion", "embedding fusion",
             "joint fusion", "other"]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_k"] = table["Kind"].map({k: i for i, k in enumerate(order)})
    table = table.sort_values(["Split", "_k", "_estimate"], ascending=[True, True, False], kind="stable")
    return table.drop(columns=["_k", "_estimate"]).reset_index(drop=True)


def write_results_table(table: pd.DataFrame, out_dir, *, n_boot=None) -> list[Path]:
    """Write ``results.md``, ``results.tex`` and ``results.xlsx`` (the table of :func:`results_table`)."""
    if table is None or table.empty:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    boot = f" from {int(n_boot)} patient-level bootstrap resamples" if n_boot else " (patient-level bootstrap)"
    caption = ("Macro one-vs-rest AUC of every model, pooled over the out-of-fold predictions and within each "
               f"test fold, with 95% confidence intervals{boot}. Each row is compared with the best single "
               "modality on the patients both have (paired patient bootstrap of the macro AUC); p (Holm) is "
               "adjusted over all comparisons of the split. Rows can cover different patients (a patient without "
               "an image of a modality has no prediction for it). The best single modality is the comparator, "
               "chosen after the fact; it is not a selected model.")
    if "Images" in table.columns:
        caption += (" Rows with more images than patients have their pooled and per-fold AUCs over images (resampled "
                    "by patient); their difference and p compare per-patient mean probabilities, the unit of the "
                    "fusion rows, so they can differ from the difference of the pooled AUCs shown.")
    md = out / "results.md"
    md.write_text(caption + "\n\n" + _markdown(table, left=4) + "\n", encoding="utf-8")
    tex = out / "results.tex"
    cols = list(table.columns)
    spec = "llll" + "c" * (len(cols) - 4)
    body = [" & ".join(latex_escape(v) for v in r) + r" \\" for r in table.itertuples(index=False)]
    tex.write_text("\n".join([r"\begin{table}[htbp]", r"\centering", r"\scriptsize",
                              rf"\caption{{{latex_escape(caption)}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                              " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule", *body,
                              r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]), encoding="utf-8")
    xlsx = out / "results.xlsx"
    with pd.ExcelWriter(xlsx, engine="openpyxl") as writer:
        table.to_excel(writer, sheet_name="Results", index=False)
    return [md, tex, xlsx]
