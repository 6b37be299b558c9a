"""Metrics of prediction files, per model x modality x split, through :mod:`analysis.metrics`.

This module lives in ``fusion`` because it knows the prediction-file format written by
``fusion.train`` (``oof_predictions.csv``), but it imports no torch: every number comes from
:func:`analysis.metrics.classification_metrics` and :mod:`analysis.roc`.

Prediction frame: one row per prediction, columns ``patient_id, fold, split, y_true, model,
modality, p_<class>...`` (``y_true`` holds class names; ``split`` e.g. ``'test'`` for
out-of-fold cross-validation predictions, ``'external'`` for a held-out hospital).

Outputs (written by ``fusion.train``):

* :func:`evaluate_predictions` -> ``metrics.csv``: one block of metrics per model x modality
  x split.  With leave-one-hospital-out splits the ``'external'`` block pools the predictions
  of every held-out hospital.
* :func:`evaluate_by_fold` -> ``metrics_by_fold.csv``: the same metrics for each held-out
  fold (hospital) of a split with more than one fold (default: ``'external'`` only).
* :func:`compare_models_delong` -> ``late_fusion_comparison.csv`` (through
  :func:`fusion.late_fusion.fusion_comparison`): paired AUC tests with raw and
  Holm-adjusted p-values.

Beyond the AUC (every number from :mod:`analysis`; see the README section "Beyond the AUC"):

* :func:`decision_curves` -> ``decision_curves.csv``: net benefit against treat-all / treat-none
  per one-vs-rest class and named binary question (:mod:`analysis.decision_curve`).
* :func:`conformal_predictions` -> ``conformal_sets.csv`` + ``conformal_coverage.csv``:
  class-conditional conformal prediction sets per patient (:mod:`analysis.conformal`).
* :func:`hospital_of`, :func:`evaluate_by_hospital` -> ``metrics_by_hospital.csv`` and
  :func:`hospital_meta_analysis` -> ``hospital_auc.csv`` + ``hospital_meta_analysis.csv``:
  centre effects for any run, k-fold included (:mod:`analysis.meta_analysis`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.bootstrap import cluster_bootstrap
from analysis.errors import CohortError, UndefinedMetricWarning, check_ci_level, require_columns
from analysis.metrics import _metric_vector, classification_metrics
from analysis.roc import _class_codes_and_proba, delong_test

__all__ = ["EVALUATION_COLUMNS", "FOLD_EVALUATION_COLUMNS", "COMPARISON_COLUMNS", "evaluate_predictions",
           "evaluate_by_fold", "compare_models_delong", "decision_curves", "default_binary_questions",
           "conformal_predictions", "ConformalTables", "hospital_of", "evaluate_by_hospital",
           "hospital_meta_analysis", "MetaTables", "write_utility_figures"]

EVALUATION_COLUMNS = ["model", "modality", "split", "metric", "class", "estimate", "ci_low", "ci_high",
                      "ci_level", "n", "n_patients", "n_boot_valid"]
#: Columns of :func:`evaluate_by_fold` (``metrics_by_fold.csv``): those of ``metrics.csv`` plus ``fold``.
FOLD_EVALUATION_COLUMNS = [*EVALUATION_COLUMNS[:3], "fold", *EVALUATION_COLUMNS[3:]]
COMPARISON_COLUMNS = ["split", "model_a", "modality_a", "model_b", "modality_b", "class", "auc_a", "auc_b",
                      "difference", "statistic", "p_value", "p_holm", "n", "method", "reason"]
_KEYS = ["model", "modality", "split"]


def _validate(predictions: pd.DataFrame, classes, source):
    """Check columns, labels and probabilities once, with rows numbered as in the CSV."""
    classes = [str(c) for c in classes]
    proba_cols = [f"p_{c}" for c in classes]
    require_columns(predictions, ["patient_id", "split", "y_true", "model", "modality", *proba_cols],
                    "predictions", file=source)
    if len(predictions) == 0:
        raise CohortError("no predictions (the file has no data rows)", file=source)
    frame = predictions.reset_index(drop=True)
    for col in ["patient_id", *_KEYS]:
        bad = frame[col].isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CohortError(f"missing value ({int(bad.sum())} such row(s))", file=source, row=i + 2, column=col)
    codes, proba = _class_codes_and_proba(frame["y_true"], frame[proba_cols].to_numpy(dtype=float, na_value=np.nan),
                                          classes, file=source, y_column="y_true", proba_columns=proba_cols)
    return frame, classes, codes, proba


def evaluate_predictions(predictions: pd.DataFrame, classes: list[str], n_boot: int = 2000, seed: int = 0,
                         ci: float = 0.95, stratify: bool = False, source: str = "predictions") -> pd.DataFrame:
    """Classification metrics with patient-level bootstrap CIs for every model x modality x split.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``patient_id, split, y_true, model, modality`` and ``p_<class>`` for every
        class (``fold`` and other columns are ignored).  Not modified.
    classes : list of str
        Class names; ``p_<class>`` columns are read in this order.
    n_boot, seed, ci, stratify
        Passed to :func:`analysis.metrics.classification_metrics` (same seed for every group).
    source : str, default 'predictions'
        Name used in error messages (e.g. the CSV path); rows are CSV rows (header = row 1).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, modality, split, metric, class, estimate, ci_low, ci_high, ci_level,
        n, n_patients, n_boot_valid``; groups in order of first appearance, metrics in the
        order of :func:`~analysis.metrics.classification_metrics` (``class == ''`` for
        macro/overall).  ``n`` = prediction rows used, ``n_patients`` = distinct
        ``patient_id`` of the group (the bootstrap's resampling unit).

    Raises
    ------
    CohortError
        Missing column (with did-you-mean), unknown class label, missing probability or id.

    Notes
    -----
    Several rows of one patient within a group (several images, or one prediction per
    fold model on an external set) are resampled together: the bootstrap is over
    ``patient_id``.  Metric definitions and the independent implementations they match
    are documented in :func:`analysis.metrics.classification_metrics`.

    ``fold`` is ignored: with leave-one-hospital-out splits the ``'external'`` group pools
    every held-out hospital; :func:`evaluate_by_fold` gives each hospital separately.
    Groups can differ in their patients (a patient without an image of a modality has no
    prediction for it), hence ``n_patients``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient_id": [1, 2, 3, 4], "fold": 0, "split": "test",
    ...                    "y_true": ["a", "b", "a", "b"], "model": "resnet18", "modality": "2d",
    ...                    "p_a": [.9, .2, .4, .3], "p_b": [.1, .8, .6, .7]})
    >>> out = evaluate_predictions(df, ["a", "b"], n_boot=0)
    >>> out.loc[0, "metric"], float(out.loc[0, "estimate"])
    ('auc', 1.0)
    """
    check_ci_level(ci)
    frame, classes, codes, proba = _validate(predictions, classes, source)
    out = [_group_metrics(frame, classes, codes, proba, idx, dict(zip(_KEYS, key)), n_boot, seed, ci, stratify)
           for key, idx in frame.groupby(_KEYS, sort=False).indices.items()]
    return pd.concat(out, ignore_index=True)[EVALUATION_COLUMNS]


def evaluate_by_fold(predictions: pd.DataFrame, classes: list[str], n_boot: int = 2000, seed: int = 0,
                     ci: float = 0.95, stratify: bool = False, source: str = "predictions",
                     splits=("external",)) -> pd.DataFrame:
    """Metrics of each held-out fold separately (per hospital of leave-one-hospital-out).

    With leave-one-hospital-out splits every ``'external'`` prediction has ``fold`` = the
    index of the hospital it was held out as; :func:`evaluate_predictions` pools them.  This
    function evaluates each ``model x modality x split x fold`` group of the chosen splits
    on its own, with the same metric function, bootstrap and seed as the pooled metrics.

    Parameters
    ----------
    predictions : pandas.DataFrame
        As for :func:`evaluate_predictions`, with a ``fold`` column.  Not modified.
    classes : list of str
        Class names; ``p_<class>`` columns are read in this order.
    n_boot, seed, ci, stratify, source
        As for :func:`evaluate_predictions`.
    splits : sequence of str, default ('external',)
        Splits evaluated per fold.  A model x modality x split with a single fold (e.g. the
        fold ``-1`` ensemble of one ``--holdout-hospital``) gives no rows: it is its pooled row.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FOLD_EVALUATION_COLUMNS` (those of :func:`evaluate_predictions` plus
        ``fold`` after ``split``), groups in order of first appearance, folds ascending; no
        rows (same columns) when no chosen split has more than one fold.  The rows of one
        fold equal ``evaluate_predictions`` of that fold's predictions alone.

    Raises
    ------
    CohortError
        As :func:`evaluate_predictions`; a missing ``fold`` column or value.

    Notes
    -----
    A fold's intervals are patient-level bootstraps within that fold (its hospital's
    patients only); with few patients per hospital they are wide, and a metric is NaN when
    a class is absent from the hospital (:class:`~analysis.errors.UndefinedMetricWarning`).
    Which hospital a fold is: ``run_manifest.json`` ``splits`` (``fold``, ``name``).
    """
    check_ci_level(ci)
    require_columns(predictions, ["fold"], "predictions", file=source)
    frame, classes, codes, proba = _validate(predictions, classes, source)
    bad = frame["fold"].isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CohortError(f"missing value ({int(bad.sum())} such row(s))", file=source, row=i + 2, column="fold")
    keep = frame["split"].isin(list(splits)).to_numpy()
    out = []
    for key, idx in frame[keep].groupby(_KEYS, sort=False).indices.items():
        idx = np.flatnonzero(keep)[idx]
        folds = frame["fold"].to_numpy()[idx]
        uniq = pd.unique(folds)
        if len(uniq) < 2:
            continue
        for fold in sorted(uniq):
            sub = idx[folds == fold]
            out.append(_group_metrics(frame, classes, codes, proba, sub, {**dict(zip(_KEYS, key)), "fold": fold},
                                      n_boot, seed, ci, stratify))
    if not out:
        return pd.DataFrame(columns=FOLD_EVALUATION_COLUMNS)
    return pd.concat(out, ignore_index=True)[FOLD_EVALUATION_COLUMNS]


def _group_metrics(frame, classes, codes, proba, idx, keys: dict, n_boot, seed, ci, stratify) -> pd.DataFrame:
    """:func:`~analysis.metrics.classification_metrics` of rows ``idx``, keys and ``n_patients`` added."""
    pid = frame["patient_id"].to_numpy()[idx]
    m = classification_metrics(np.asarray(classes)[codes[idx]], proba[idx], classes, patient_ids=pid,
                               n_boot=n_boot, ci=ci, seed=seed, stratify=stratify)
    for i, (name, value) in enumerate(keys.items()):
        m.insert(i, name, value)
    m["n_patients"] = int(pd.Series(pid, dtype=object).nunique())
    return m


def _per_patient(frame: pd.DataFrame, codes: np.ndarray, proba: np.ndarray, idx: np.ndarray, source):
    """Mean probabilities per patient in one group; the true class must agree across rows."""
    pid = frame["patient_id"].to_numpy()[idx]
    uniq, inv = np.unique(pid.astype(str), return_inverse=True)
    first = np.full(uniq.size, -1)
    first[inv[::-1]] = codes[idx][::-1]
    if np.any(first[inv] != codes[idx]):
        i = int(idx[np.flatnonzero(first[inv] != codes[idx])[0]])
        raise CohortError(f"patient '{frame['patient_id'].iloc[i]}' has different y_true values within "
                          f"one model/modality/split", file=source, row=i + 2, column="y_true")
    sums = np.zeros((uniq.size, proba.shape[1]))
    np.add.at(sums, inv, proba[idx])
    mean = sums / np.bincount(inv)[:, None]
    return pd.DataFrame(mean, index=pd.Index(uniq, name="patient_id")), pd.Series(first, index=uniq)


def compare_models_delong(predictions: pd.DataFrame, classes: list[str], n_boot: int = 2000, seed: int = 0,
                          ci: float = 0.95, source: str = "predictions", pairs=None) -> pd.DataFrame:
    """Pairwise AUC comparison of every two model/modality groups on the same patients.

    Parameters
    ----------
    predictions : pandas.DataFrame
        As for :func:`evaluate_predictions`.
    classes : list of str
        Class names (``p_<class>`` columns).
    n_boot, seed, ci
        Paired patient bootstrap for the macro AUC (``n_boot = 0``: macro p-value NaN).
    source : str
        Name used in error messages.
    pairs : callable, optional
        ``pairs((model_a, modality_a), (model_b, modality_b)) -> bool`` keeps only the pairs
        it accepts (the others are not computed); default: every pair.

    Returns
    -------
    pandas.DataFrame
        One row per split x pair x (macro, each class): ``split, model_a, modality_a, model_b,
        modality_b, class, auc_a, auc_b, difference, statistic, p_value, p_holm, n, method,
        reason``.  ``class == ''`` is the macro one-vs-rest AUC; ``n`` = patients in common;
        ``statistic`` = z; ``p_holm`` = Holm-adjusted ``p_value`` (see Notes); ``reason``
        explains a NaN p-value (else '').

    Notes
    -----
    Within each split, each group's predictions are first averaged per patient (one score
    per patient, so the tests' independence assumption holds), then pairs are matched on
    ``patient_id`` (patients in both groups only).

    * Per class (one vs rest): DeLong's paired test, :func:`analysis.roc.delong_test`
      (matches R pROC ``roc.test(method = "delong", paired = TRUE)``).
    * Macro AUC: the per-class AUCs share patients but use different labelings, so DeLong's
      covariance does not cover their mean.  Instead a paired bootstrap over patients
      resamples both models together: ``z = (AUC_a - AUC_b) / SD*(AUC_a - AUC_b)``,
      ``p = 2 Φ(-|z|)``, the approach of pROC's ``roc.test(method = "bootstrap")``
      (Hanley & McNeil 1983 form).  Resamples with a class missing are dropped.

    Multiplicity: ``p_holm`` is Holm's step-down adjustment (``statsmodels.stats.multitest.
    multipletests(method='holm')``) of ``p_value`` within one family = every row of the
    output with the same ``split`` and ``class`` (the macro AUC is one family, each class's
    one-vs-rest AUC another), i.e. all the pairs compared here (those ``pairs`` accepted) on
    that AUC.  NaN p-values stay NaN and are not counted in the family size.  ``p_value``
    itself is unadjusted.

    References
    ----------
    DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics. 1988;44(3):837-845. doi:10.2307/2531595
    Robin X, et al. pROC: an open-source package for R and S+ to analyze and compare ROC curves.
    BMC Bioinformatics. 2011;12:77. doi:10.1186/1471-2105-12-77
    """
    check_ci_level(ci)
    frame, classes, codes, proba = _validate(predictions, classes, source)
    rows = []
    for split, split_idx in frame.groupby("split", sort=False).indices.items():
        sub = frame.iloc[split_idx]
        groups = {}
        for key, gi in sub.groupby(["model", "modality"], sort=False).indices.items():
            groups[key] = _per_patient(frame, codes, proba, split_idx[gi], source)
        for (ka, (pa, ya)), (kb, (pb, yb)) in combinations(groups.items(), 2):
            if pairs is not None and not pairs(ka, kb):
                continue
            common = pa.index.intersection(pb.index)
            base = {"split": split, "model_a": ka[0], "modality_a": ka[1], "model_b": kb[0], "modality_b": kb[1]}
            if not ya.loc[common].equals(yb.loc[common]):
                raise CohortError(f"a patient has different y_true for {ka} and {kb} in split '{split}'",
                                  file=source, column="y_true")
            y = ya.loc[common].to_numpy(dtype=np.intp)
            sa, sb = pa.loc[common].to_numpy(), pb.loc[common].to_numpy()
            rows.append({**base, **_macro_comparison(y, sa, sb, n_boot, seed, ci)})
            for j, c in enumerate(classes):
                rows.append({**base, **_class_comparison(y == j, sa[:, j], sb[:, j], c)})
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out["p_holm"] = _holm_within(out, ["split", "class"])
    return out


def _holm_within(table: pd.DataFrame, family) -> np.ndarray:
    """Holm-adjusted ``p_value`` within each family (rows equal on ``family``); NaN stays NaN, uncounted."""
    adjusted = np.full(len(table), np.nan)
    p = table["p_value"].to_numpy(dtype=float)
    if len(table) == 0:
        return adjusted
    for idx in table.groupby(list(family), sort=False, dropna=False).indices.values():
        ok = idx[~np.isnan(p[idx])]
        if ok.size:
            adjusted[ok] = multipletests(p[ok], method="holm")[1]
    return adjusted


def _class_comparison(pos, sa, sb, cls) -> dict:
    n = int(pos.size)
    row = {"class": cls, "n": n, "method": "DeLong paired test (one vs rest)", "reason": ""}
    if n == 0:
        return {**row, "auc_a": math.nan, "auc_b": math.nan, "difference": math.nan, "statistic": math.nan,
                "p_value": math.nan, "reason": "no patients in common"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        t = delong_test(pos, sa, sb)
    row.update(auc_a=t.details["auc_a"], auc_b=t.details["auc_b"], difference=t.details["difference"],
               statistic=t.statistic, p_value=t.p_value)
    if math.isnan(t.p_value):
        row["reason"] = (f"undefined with {t.details['n_cases']} case(s) and "
                         f"{t.details['n_controls']} control(s) (need at least 2 of each)")
    return row


def _macro_auc_pair(y, sa, sb) -> np.ndarray:
    a = _metric_vector(y, sa)[0]
    b = _metric_vector(y, sb)[0]
    return np.array([a, b, a - b])


def _macro_comparison(y, sa, sb, n_boot, seed, ci) -> dict:
    n = int(y.size)
    row = {"class": "", "n": n, "method": f"paired patient bootstrap z-test ({n_boot} resamples, seed {seed})",
           "reason": ""}
    if n == 0:
        return {**row, "auc_a": math.nan, "auc_b": math.nan, "difference": math.nan, "statistic": math.nan,
                "p_value": math.nan, "reason": "no patients in common"}
    res = cluster_bootstrap(_macro_auc_pair, (y, sa, sb), n_boot=n_boot, ci=ci, seed=seed,
                            names=["auc_a", "auc_b", "difference"])
    auc_a, auc_b, d = (float(v) for v in res.estimate)
    row.update(auc_a=auc_a, auc_b=auc_b, difference=d, statistic=math.nan, p_value=math.nan)
    diffs = res.replicates[:, 2]
    diffs = diffs[np.isfinite(diffs)]
    if not np.isfinite(d):
        row["reason"] = "macro AUC undefined (a class has no patients)"
    elif diffs.size < 2:
        row["reason"] = f"fewer than 2 valid bootstrap resamples ({diffs.size} of {n_boot})"
    else:
        sd = float(np.std(diffs, ddof=1))
        z = 0.0 if sd == 0 and d == 0 else (d / sd if sd > 0 else math.copysign(math.inf, d))
        row.update(statistic=z, p_value=float(2 * stats.norm.sf(abs(z))))
    return row


# ----------------------------------------------------------------------------- beyond the AUC
def default_binary_questions(classes) -> dict:
    """``{'malignant': every class but benign}`` for a benign-vs-malignant-subtypes class set, else ``{}``.

    Applies when there are >= 3 classes, one named ``benign`` and none named ``malignant`` or
    ``normal`` (BUSI's ``benign, malignant, normal`` gets no default question).
    """
    classes = [str(c) for c in classes]
    lower = [c.lower() for c in classes]
    benign = [c for c in classes if c.lower() == "benign"]
    if not benign or len(classes) < 3 or "malignant" in lower or "normal" in lower:
        return {}
    return {"malignant": tuple(c for c in classes if c != benign[0])}


def decision_curves(predictions: pd.DataFrame, classes, binary=None, thresholds=None, n_boot: int = 2000,
                    seed: int = 0, ci: float = 0.95, source: str = "predictions") -> pd.DataFrame:
    """Decision curves of every model x modality x split (:func:`analysis.decision_curve.decision_curve`).

    Parameters
    ----------
    predictions : pandas.DataFrame
        As for :func:`evaluate_predictions`.  Not modified.
    classes : list of str
    binary : str, sequence or mapping, optional
        Named binary questions such as ``'malignant=metastatic,lymphoma'``
        (:func:`analysis.decision_curve.parse_binary_questions`), besides one question per class.
    thresholds, n_boot, seed, ci
        As for :func:`analysis.decision_curve.decision_curve` (patient bootstrap bands).
    source : str
        Name used in error messages.

    Returns
    -------
    pandas.DataFrame
        ``model, modality, split`` then :data:`analysis.decision_curve.DECISION_CURVE_COLUMNS`.
    """
    from analysis.decision_curve import decision_curve

    frame, classes, codes, proba = _validate(predictions, classes, source)
    out = []
    for key, idx in frame.groupby(_KEYS, sort=False).indices.items():
        d = decision_curve(np.asarray(classes)[codes[idx]], proba[idx], classes,
                           frame["patient_id"].to_numpy()[idx], binary=binary, thresholds=thresholds,
                           n_boot=n_boot, ci=ci, seed=seed)
        for i, (name, value) in enumerate(zip(_KEYS, key)):
            d.insert(i, name, value)
        out.append(d)
    return pd.concat(out, ignore_index=True)


@dataclass(frozen=True)
class ConformalTables:
    """``sets``: one row per model x modality x split x patient; ``coverage``: per class and overall."""

    sets: pd.DataFrame
    coverage: pd.DataFrame


def conformal_predictions(predictions: pd.DataFrame, classes, alpha: float = 0.1, calibration=None,
                          source: str = "predictions") -> ConformalTables:
    """Class-conditional conformal prediction sets for every model x modality x split.

    Parameters
    ----------
    predictions : pandas.DataFrame
        As for :func:`evaluate_predictions`, with a ``fold`` column (patient-grouped test folds).
    classes : list of str
    alpha : float, default 0.1
        Each class is covered with probability ``>= 1 - alpha``.
    calibration : pandas.DataFrame, optional
        Held-out predictions of each fold model (``validation_predictions.csv``: same columns,
        ``fold`` = the fold whose model made them).  A model x modality with such rows is
        calibrated fold by fold on them (split conformal); the others on the other folds'
        test patients (:func:`analysis.conformal.conformal_sets`).
    source : str

    Returns
    -------
    ConformalTables
        ``sets`` (``model, modality, split`` + :func:`analysis.conformal.conformal_sets`
        columns) and ``coverage`` (``model, modality, split`` +
        :func:`analysis.conformal.conformal_summary`).  A group with one fold and no
        calibration rows (e.g. one held-out ensemble) is skipped.
    """
    from analysis.conformal import conformal_sets, conformal_summary

    require_columns(predictions, ["fold"], "predictions", file=source)
    frame, classes, codes, proba = _validate(predictions, classes, source)
    cal = None
    if calibration is not None and len(calibration):
        require_columns(calibration, ["fold"], "calibration predictions")
        cal = _validate(calibration, classes, "calibration predictions")
    sets, cover = [], []
    names = np.asarray(classes)
    for key, idx in frame.groupby(_KEYS, sort=False).indices.items():
        args = None
        if cal is not None:
            cframe, _, ccodes, cproba = cal
            m = ((cframe["model"] == key[0]) & (cframe["modality"] == key[1])).to_numpy()
            if m.any() and set(frame["fold"].to_numpy()[idx]) <= set(cframe["fold"].to_numpy()[m]):
                args = (names[ccodes[m]], cproba[m], cframe["patient_id"].to_numpy()[m], cframe["fold"].to_numpy()[m])
        if args is None and pd.Series(frame["fold"].to_numpy()[idx]).nunique() < 2:
            continue
        s = conformal_sets(names[codes[idx]], proba[idx], classes, frame["patient_id"].to_numpy()[idx],
                           frame["fold"].to_numpy()[idx], alpha=alpha, calibration=args)
        c = conformal_summary(s, classes)
        for i, (name, value) in enumerate(zip(_KEYS, key)):
            s.insert(i, name, value)
            c.insert(i, name, value)
        sets.append(s)
        cover.append(c)
    if not sets:
        return ConformalTables(pd.DataFrame(), pd.DataFrame())
    return ConformalTables(pd.concat(sets, ignore_index=True), pd.concat(cover, ignore_index=True))


def hospital_of(predictions: pd.DataFrame, hospital_column: str | None = None, mapping=None,
                source: str = "predictions") -> np.ndarray:
    """The hospital of every prediction row, from a column of the file or a patient -> hospital mapping.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Needs ``patient_id``.
    hospital_column : str, optional
        A column of ``predictions`` naming the hospital (default ``'hospital'`` when present).
    mapping : pandas.DataFrame or mapping, optional
        ``patient_id`` -> hospital: a dict/Series, or a frame with columns ``patient_id`` and
        ``hospital_column`` (default ``hospital``), e.g. a run's ``patient_hospitals.csv`` or
        the cohort table.  Takes precedence over the column.

    Returns
    -------
    numpy.ndarray of object
        One hospital per row (as str).

    Raises
    ------
    CohortError
        No hospital source, a missing column, a patient absent from the mapping or without a
        hospital (naming the prediction file's row), a patient with two hospitals in the mapping.
    """
    pid = predictions["patient_id"].astype(str).to_numpy()
    if mapping is not None:
        col = hospital_column or "hospital"
        if isinstance(mapping, pd.DataFrame):
            msrc = mapping.attrs.get("source", "hospital mapping")
            require_columns(mapping, ["patient_id", col], "hospital mapping", file=msrc)
            m = mapping[["patient_id", col]].dropna().astype({"patient_id": str})
            twice = m.drop_duplicates().duplicated("patient_id", keep=False)
            if twice.any():
                raise CohortError(f"patient {m.loc[twice, 'patient_id'].iloc[0]!r} has two hospitals",
                                  file=msrc, column=col)
            lookup = dict(zip(m["patient_id"], m[col].astype(str)))
        else:
            lookup = {str(k): str(v) for k, v in dict(mapping).items() if not pd.isna(v)}
        out = np.array([lookup.get(p) for p in pid], dtype=object)
        missing = pd.isna(pd.Series(out)).to_numpy()
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise CohortError(f"patient {pid[i]!r} has no hospital in the mapping ({int(missing.sum())} such row(s))",
                              file=source, row=i + 2, column="patient_id")
        return out
    col = hospital_column or ("hospital" if "hospital" in predictions else None)
    if col is None:
        raise CohortError("no hospital: give a hospital column of the predictions or a patient -> hospital "
                          "mapping", file=source)
    require_columns(predictions, [col], "predictions", file=source)
    h = predictions[col].reset_index(drop=True)
    if h.isna().any():
        i = int(np.flatnonzero(h.isna().to_numpy())[0])
        raise CohortError(f"missing hospital ({int(h.isna().sum())} such row(s))", file=source, row=i + 2, column=col)
    return h.astype(str).to_numpy(dtype=object)


def evaluate_by_hospital(predictions: pd.DataFrame, classes, hospitals, n_boot: int = 2000, seed: int = 0,
                         ci: float = 0.95, source: str = "predictions") -> pd.DataFrame:
    """Metrics of every model x modality x split x hospital (the metrics of ``metrics.csv``).

    Works for any run: out-of-fold k-fold predictions are grouped by their patient's hospital
    (``hospitals``, e.g. from :func:`hospital_of`), so centre effects are visible without
    leave-one-hospital-out training.  Rows whose hospital is missing (None/NaN) are left out.

    Returns
    -------
    pandas.DataFrame
        ``model, modality, split, hospital`` then the columns of :func:`evaluate_predictions`
        after ``split``; hospitals sorted.
    """
    check_ci_level(ci)
    frame, classes, codes, proba = _validate(predictions, classes, source)
    h = np.asarray(hospitals, dtype=object)
    if h.size != len(frame):
        raise CohortError(f"{h.size} hospitals for {len(frame)} predictions", file=source)
    known = ~pd.isna(pd.Series(h)).to_numpy()
    out = []
    for key, idx in frame.groupby(_KEYS, sort=False).indices.items():
        idx = idx[known[idx]]
        for hosp in sorted(pd.unique(h[idx]).astype(str)):
            sub = idx[h[idx].astype(str) == hosp]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                out.append(_group_metrics(frame, classes, codes, proba, sub,
                                          {**dict(zip(_KEYS, key)), "hospital": hosp}, n_boot, seed, ci, False))
    cols = [*_KEYS, "hospital", *EVALUATION_COLUMNS[3:]]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


@dataclass(frozen=True)
class MetaTables:
    """``centres``: AUC per group x hospital x class; ``pooled``: the random-effects meta-analysis."""

    centres: pd.DataFrame
    pooled: pd.DataFrame


def hospital_meta_analysis(predictions: pd.DataFrame, classes, hospitals, method: str = "REML",
                           scale: str = "logit", n_boot: int = 2000, seed: int = 0, ci: float = 0.95,
                           source: str = "predictions") -> MetaTables:
    """Per-hospital AUCs and their random-effects meta-analysis, per model x modality x split.

    :func:`analysis.meta_analysis.centre_auc` (DeLong per class, patient bootstrap for the
    macro AUC, logit scale by default) and
    :func:`analysis.meta_analysis.meta_analysis_of_centres` (REML or DerSimonian-Laird; pooled
    AUC, I², τ², prediction interval; matches R metafor).
    """
    from analysis.meta_analysis import centre_auc, meta_analysis_of_centres

    frame, classes, codes, proba = _validate(predictions, classes, source)
    h = np.asarray(hospitals, dtype=object)
    known = ~pd.isna(pd.Series(h)).to_numpy()          # rows without a hospital are left out
    tables = []
    for key, idx in frame.groupby(_KEYS, sort=False).indices.items():
        idx = idx[known[idx]]
        if idx.size == 0:
            continue
        t = centre_auc(np.asarray(classes)[codes[idx]], proba[idx], classes, frame["patient_id"].to_numpy()[idx],
                       h[idx], scale=scale, n_boot=n_boot, ci=ci, seed=seed)
        for i, (name, value) in enumerate(zip(_KEYS, key)):
            t.insert(i, name, value)
        tables.append(t)
    centres = pd.concat(tables, ignore_index=True)
    return MetaTables(centres, meta_analysis_of_centres(centres, method=method, ci=ci))


def _slug(*parts) -> str:
    import re

    return "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", str(p)).strip("-") for p in parts)


def write_utility_figures(out, curves: pd.DataFrame | None = None, meta: MetaTables | None = None) -> list:
    """Decision-curve figures and per-hospital forest plots (macro AUC) of every model x modality x split.

    Files: ``out/figures/decision_curves_<model>_<modality>_<split>.png`` and
    ``out/figures/forest_hospitals_<model>_<modality>_<split>.png``; returns the paths.
    """
    from pathlib import Path

    from analysis.figures import centre_forest_plot, decision_curve_plot

    fig_dir = Path(out) / "figures"
    written = []
    if curves is not None and len(curves):
        for key, g in curves.groupby(_KEYS, sort=False):
            path = fig_dir / f"decision_curves_{_slug(*key)}.png"
            decision_curve_plot(g, path, title=" · ".join(str(k) for k in key))
            written.append(path)
    if meta is not None and len(meta.centres):
        macro = meta.centres[meta.centres["class"] == ""]
        pooled = meta.pooled[meta.pooled["class"] == ""]
        for key, g in macro.groupby(_KEYS, sort=False):
            row = pooled[(pooled[_KEYS] == pd.Series(key, index=_KEYS)).all(axis=1)]
            path = fig_dir / f"forest_hospitals_{_slug(*key)}.png"
            centre_forest_plot(g, row.iloc[0] if len(row) else None, path,
                               title=f"macro AUC by hospital · {' · '.join(str(k) for k in key)}")
            written.append(path)
    return written


# ----------------------------------------------------------------------------- command line
def build_parser():
    """Parser of ``python -m fusion.evaluate``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m fusion.evaluate",
        description="Metrics with patient-level bootstrap CIs (and optional paired AUC comparisons) for a "
                    "prediction file such as fusion.train's oof_predictions.csv.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m fusion.evaluate runs/demo/oof_predictions.csv --out runs/demo/re-evaluated\n"
               "  python -m fusion.evaluate preds.csv --n-boot 5000 --compare --out results\n"
               "  python -m fusion.evaluate runs/demo/oof_predictions.csv --binary malignant=metastatic,lymphoma \\\n"
               "      --conformal-alpha 0.1 --calibration-predictions runs/demo/validation_predictions.csv \\\n"
               "      --hospital-map runs/demo/patient_hospitals.csv --out runs/demo/beyond-auc\n\n"
               "The file needs columns patient_id, split, y_true, model, modality and one p_<class> column per\n"
               "class (their order is the class order); a 'fold' column enables per-fold metrics and conformal\n"
               "sets; a 'hospital' column (or --hospital-column / --hospital-map) per-hospital metrics and the\n"
               "random-effects meta-analysis across hospitals.")
    p.add_argument("predictions", help="prediction file (.csv)")
    p.add_argument("--out", default="evaluation", help="output folder (default: evaluation)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level (default: 0.95)")
    p.add_argument("--compare", action="store_true",
                   help="also compare every two model/modality groups on their common patients "
                        "(DeLong per class, paired bootstrap for the macro AUC, Holm-adjusted): comparisons.csv")
    g = p.add_argument_group("beyond the AUC")
    g.add_argument("--decision-curves", action="store_true",
                   help="net benefit vs treat-all/treat-none per one-vs-rest class, with patient-bootstrap bands: "
                        "decision_curves.csv + figures/decision_curves_*.png")
    g.add_argument("--binary", action="append", metavar="NAME=CLASS[,CLASS...]", default=None,
                   help="a binary question for the decision curves, e.g. malignant=metastatic,lymphoma "
                        "(repeatable; implies --decision-curves)")
    g.add_argument("--conformal-alpha", type=float, default=None, metavar="ALPHA",
                   help="class-conditional conformal prediction sets covering each class with probability "
                        ">= 1 - ALPHA: conformal_sets.csv + conformal_coverage.csv (needs a 'fold' column)")
    g.add_argument("--calibration-predictions", default=None, metavar="CSV",
                   help="held-out predictions of each fold model (validation_predictions.csv) to calibrate the "
                        "conformal sets on (default: the other folds' patients)")
    g.add_argument("--hospital-column", default=None, metavar="NAME",
                   help="column naming each prediction's hospital (default: 'hospital' if present); with "
                        "--hospital-map, the hospital column of the map")
    g.add_argument("--hospital-map", default=None, metavar="FILE",
                   help="csv/xlsx with patient_id and hospital columns (e.g. a run's patient_hospitals.csv or the "
                        "cohort table): per-hospital metrics, forest plot and meta-analysis")
    g.add_argument("--meta-method", choices=("REML", "DL"), default="REML",
                   help="tau^2 estimator of the meta-analysis across hospitals (default: REML)")
    return p


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    from analysis.errors import run_cli

    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args))


def _run(args) -> list:
    """What the CLI does after parsing: writes the tables, prints the macro AUCs, returns the files."""
    from pathlib import Path

    path = Path(args.predictions)
    if not path.is_file():
        raise CohortError("prediction file not found", file=path)
    if args.n_boot < 1:
        raise CohortError(f"--n-boot must be at least 1, got {args.n_boot}")
    frame = _read_predictions(path)
    classes = [c[2:] for c in frame.columns if str(c).startswith("p_")]
    if len(classes) < 2:
        raise CohortError("needs one p_<class> column per class (at least two)", file=path)
    common = dict(n_boot=args.n_boot, seed=args.seed, ci=args.ci, source=str(path))
    tables = {"metrics.csv": evaluate_predictions(frame, classes, **common)}
    if "fold" in frame:
        by_fold = evaluate_by_fold(frame, classes, **common)
        if len(by_fold):
            tables["metrics_by_fold.csv"] = by_fold
    if args.compare:
        tables["comparisons.csv"] = compare_models_delong(frame, classes, **common)
    curves = meta = None
    if args.decision_curves or args.binary:
        curves = decision_curves(frame, classes, binary=args.binary, **common)
        tables["decision_curves.csv"] = curves
    if args.conformal_alpha is not None:
        if not 0 < args.conformal_alpha < 1:
            raise CohortError(f"--conformal-alpha must lie in (0, 1), got {args.conformal_alpha}")
        cal = None
        if args.calibration_predictions:
            cal = _read_predictions(Path(args.calibration_predictions))
        conf = conformal_predictions(frame, classes, alpha=args.conformal_alpha, calibration=cal, source=str(path))
        if len(conf.sets):
            tables["conformal_sets.csv"] = conf.sets
            tables["conformal_coverage.csv"] = conf.coverage
    if args.hospital_map or args.hospital_column or "hospital" in frame:
        from analysis.readers import read_table

        mapping = read_table(args.hospital_map) if args.hospital_map else None
        if mapping is not None:
            mapping = mapping.reset_index(drop=True).assign(patient_id=lambda m: m["patient_id"].astype(str)) \
                if "patient_id" in mapping else mapping
            mapping.attrs["source"] = str(args.hospital_map)
        hosp = hospital_of(frame, args.hospital_column, mapping, source=str(path))
        tables["metrics_by_hospital.csv"] = evaluate_by_hospital(frame, classes, hosp, **common)
        meta = hospital_meta_analysis(frame, classes, hosp, method=args.meta_method, **common)
        tables["hospital_auc.csv"] = meta.centres
        tables["hospital_meta_analysis.csv"] = meta.pooled
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            table.to_csv(out / name, index=False)
        figures = write_utility_figures(out, curves, meta)
    except OSError as exc:
        raise CohortError(f"cannot write to {out}: {exc.strerror or exc}") from None
    metrics = tables["metrics.csv"]
    auc = metrics[(metrics["metric"] == "auc") & (metrics["class"] == "")]
    print(f"macro one-vs-rest AUC ({args.ci * 100:g} % CI, patient-level bootstrap) by model, modality and split:")
    for r in auc.itertuples(index=False):
        print(f"  {r.model:<12} {r.modality:<23} split={r.split:<9} {r.estimate:.3f} "
              f"({r.ci_low:.3f}-{r.ci_high:.3f})  n = {r.n_patients} patients")
    return [out / name for name in tables] + figures


def _read_predictions(path) -> pd.DataFrame:
    if not path.is_file():
        raise CohortError("prediction file not found", file=path)
    try:
        return pd.read_csv(path, dtype={"patient_id": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CohortError(f"not a readable prediction csv ({type(exc).__name__})", file=path) from None


if __name__ == "__main__":
    raise SystemExit(main())
