"""Decision curve analysis: net benefit of acting on a model against treat-all and treat-none.

For a binary question ("is this patient positive?") and a threshold probability ``pt`` (the
risk at which a clinician would act, e.g. biopsy), the net benefit of acting on every
prediction with ``p >= pt`` is

    NB(pt) = TP / n - FP / n * pt / (1 - pt)

(true and false positives among the ``n`` predictions).  "Treat all" acts on everyone:
``NB_all(pt) = prevalence - (1 - prevalence) * pt / (1 - pt)``; "treat none" has ``NB = 0``.
A model is useful at ``pt`` when its curve lies above both.

Questions are one-vs-rest classes (``p = p_class``) and user-named groups of classes
(``malignant = metastatic + lymphoma``: ``p = p_metastatic + p_lymphoma``, positive when the
true class is in the group).
"""
from __future__ import annotations

import math
import re
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .bootstrap import cluster_bootstrap
from .errors import CohortError, UndefinedMetricWarning, check_ci_level, did_you_mean
from .roc import _class_codes_and_proba

__all__ = ["DECISION_CURVE_COLUMNS", "DEFAULT_THRESHOLDS", "net_benefit", "parse_binary_questions",
           "decision_curve", "useful_thresholds"]

#: Columns of :func:`decision_curve`.
DECISION_CURVE_COLUMNS = ["question", "positive", "threshold", "strategy", "net_benefit", "ci_low", "ci_high",
                          "ci_level", "n", "n_patients", "prevalence", "n_boot_valid", "method"]
#: Thresholds 0.01, 0.02, ..., 0.99 (as R ``dcurves::dca`` by default, without 0 and 1).
DEFAULT_THRESHOLDS = np.round(np.arange(1, 100) / 100.0, 2)
_STRATEGIES = ("model", "treat_all", "treat_none")


def _thresholds(thresholds) -> np.ndarray:
    t = np.atleast_1d(np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=float))
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any((t < 0) | (t >= 1)):
        raise CohortError(f"thresholds must be probabilities in [0, 1), got {t.tolist()!r}")
    return t


def net_benefit(y_true, proba, thresholds=None) -> np.ndarray:
    """Net benefit of treating every prediction with ``proba >= threshold``, per threshold.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        1 = the patient has the condition.
    proba : array-like of float in [0, 1], shape (n,)
        Predicted probability of the condition.
    thresholds : array-like of float in [0, 1), optional
        Threshold probabilities (default :data:`DEFAULT_THRESHOLDS`).

    Returns
    -------
    numpy.ndarray, shape (len(thresholds),)
        ``NB(pt) = TP(pt)/n - FP(pt)/n * pt/(1 - pt)`` where ``TP``/``FP`` count predictions
        with ``proba >= pt`` that are / are not cases.

    Notes
    -----
    The formula of Vickers & Elkin (2006), "treat if ``p >= pt``" as R ``dcurves::dca`` and
    its Python port ``dcurves`` (1.1.7), which it matches to 1e-12
    (``tests/fixtures/dca_reference/``; the generating script also recomputes every value
    with exact fractions).  Treat-all is ``net_benefit(y, ones)``.

    References
    ----------
    Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction
    models. Med Decis Making. 2006;26(6):565-574. doi:10.1177/0272989X06295361

    Examples
    --------
    >>> net_benefit([1, 0, 1, 0], [0.9, 0.6, 0.4, 0.1], [0.5])
    array([0.])
    """
    y = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(proba, dtype=float).ravel()
    if y.size != p.size:
        raise CohortError(f"y_true has {y.size} values but proba has {p.size}")
    if y.size == 0:
        raise CohortError("no predictions")
    return _nb(y, p, _thresholds(thresholds))


def _nb(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Net benefit for boolean ``y``, scores ``p``, thresholds ``t`` (no checks; bootstrap inner loop)."""
    n = y.size
    pos = np.sort(p[y])
    neg = np.sort(p[~y])
    tp = pos.size - np.searchsorted(pos, t, side="left")     # cases with p >= t
    fp = neg.size - np.searchsorted(neg, t, side="left")
    return tp / n - fp / n * (t / (1.0 - t))


def parse_binary_questions(specs, classes) -> dict:
    """``['malignant=metastatic,lymphoma']`` or ``{'malignant': [...]}`` -> ``{name: (class, ...)}``.

    Parameters
    ----------
    specs : str, sequence of str, or mapping name -> sequence of class names
        Each string ``NAME=CLASS[,CLASS...]`` (``+`` also separates classes).
    classes : sequence of str
        The model's classes.

    Returns
    -------
    dict
        Question name -> tuple of positive classes (in ``classes`` order).

    Raises
    ------
    CohortError
        Malformed spec, unknown class (with did-you-mean), a group that is empty or holds
        every class, or a name given twice.
    """
    classes = [str(c) for c in classes]
    if specs is None:
        return {}
    if isinstance(specs, str):
        specs = [specs]
    if isinstance(specs, Mapping):
        items = [(str(k), [str(c) for c in ([v] if isinstance(v, str) else v)]) for k, v in specs.items()]
    else:
        items = []
        for s in specs:
            name, sep, rest = str(s).partition("=")
            if not sep or not name.strip() or not rest.strip():
                raise CohortError(f"binary question {s!r}: expected NAME=CLASS[,CLASS...], "
                                  f"e.g. malignant={','.join(classes[:2])}")
            items.append((name.strip(), [c.strip() for c in re.split(r"[,+]", rest) if c.strip()]))
    out = {}
    for name, members in items:
        for c in members:
            if c not in classes:
                raise CohortError(f"binary question {name!r}: unknown class {c!r} (expected one of: "
                                  f"{', '.join(classes)}){did_you_mean(c, classes)}")
        group = tuple(c for c in classes if c in members)
        if not group or len(group) == len(classes):
            raise CohortError(f"binary question {name!r}: the positive group must hold some but not all "
                              f"classes, got {members!r}")
        if name in out:
            raise CohortError(f"binary question {name!r} given twice")
        out[name] = group
    return out


def decision_curve(y_true, proba, classes, patient_ids=None, *, binary=None, one_vs_rest: bool = True,
                   thresholds=None, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Decision curves (net benefit) with patient-level bootstrap bands.

    Parameters
    ----------
    y_true : array-like of str, shape (n,)
        True class of each prediction.
    proba : array-like of float, shape (n, k)
        Predicted class probabilities, column ``j`` for ``classes[j]`` (rows summing to 1, so
        that a group's probability is the sum of its classes').
    classes : sequence of str
    patient_ids : array-like, shape (n,), optional
        Several predictions of one patient are resampled together (cluster bootstrap);
        ``None``: each prediction is its own patient.
    binary : str, sequence of str or mapping, optional
        Named binary questions, see :func:`parse_binary_questions`
        (e.g. ``'malignant=metastatic,lymphoma'``).
    one_vs_rest : bool, default True
        Also one question per class (``question`` = the class name).
    thresholds : array-like, optional
        Default :data:`DEFAULT_THRESHOLDS` (0.01 ... 0.99).
    n_boot : int, default 2000
        Bootstrap resamples for the bands (0: none, NaN bands).
    ci : float, default 0.95
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DECISION_CURVE_COLUMNS`, one row per question x strategy x threshold:
        ``question`` (class or user name), ``positive`` (its classes joined by ``+``),
        ``strategy`` in ``model, treat_all, treat_none``, ``net_benefit`` with percentile
        bootstrap ``ci_low``/``ci_high`` (treat-none: 0, no band), ``n`` predictions,
        ``n_patients``, ``prevalence`` (share of predictions that are positive),
        ``n_boot_valid``, ``method``.

    Raises
    ------
    CohortError
        Unknown class label or question class, probabilities outside [0, 1].

    Notes
    -----
    ``NB(pt) = TP/n - FP/n * pt/(1 - pt)``, treat if ``p >= pt`` (:func:`net_benefit`),
    treat-all ``= prevalence - (1 - prevalence) pt/(1 - pt)``.  Matches Python ``dcurves``
    1.1.7 (the port of R ``dcurves::dca``) to 1e-12 and an exact-fraction recomputation
    (``tests/fixtures/dca_reference/make_reference.py``).  Bands: percentile bootstrap over
    patients (:func:`analysis.bootstrap.cluster_bootstrap`; model and treat-all curves from
    the same resamples, each threshold's band pointwise).

    References
    ----------
    Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction
    models. Med Decis Making. 2006;26(6):565-574. doi:10.1177/0272989X06295361
    Vickers AJ, van Calster B, Steyerberg EW. A simple, step-by-step guide to interpreting
    decision curve analysis. Diagn Progn Res. 2019;3:18. doi:10.1186/s41512-019-0064-7
    """
    check_ci_level(ci)
    classes = [str(c) for c in classes]
    codes, p = _class_codes_and_proba(y_true, proba, classes)
    if p.shape[0] == 0:
        raise CohortError("no predictions")
    if np.any((p < 0) | (p > 1)):
        raise CohortError("decision curves need probabilities in [0, 1] (got scores outside)")
    t = _thresholds(thresholds)
    questions = {c: (c,) for c in classes} if one_vs_rest else {}
    for name, group in parse_binary_questions(binary, classes).items():
        if name in questions and questions[name] != group:
            raise CohortError(f"binary question {name!r} has the name of a class; choose another name")
        questions[name] = group
    if patient_ids is None:
        cluster, n_patients = None, int(codes.size)
    else:
        cluster = pd.Series(np.asarray(patient_ids, dtype=object))
        if len(cluster) != codes.size or cluster.isna().any():
            raise CohortError("patient_ids must give one non-missing id per prediction", column="patient_id")
        n_patients = int(cluster.nunique())
        cluster = cluster.to_numpy()
    rows = []
    for name, group in questions.items():
        idx = [classes.index(c) for c in group]
        y = np.isin(codes, idx)
        score = np.clip(p[:, idx].sum(axis=1), 0.0, 1.0)

        def stat(yy, ss, t=t):
            return np.concatenate([_nb(yy, ss, t), _nb(yy, np.ones(yy.size), t)])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            res = cluster_bootstrap(stat, (y, score), cluster=cluster, n_boot=n_boot, ci=ci, seed=seed)
        est = np.asarray(res.estimate, float)
        lo, hi = np.asarray(res.ci_low, float), np.asarray(res.ci_high, float)
        valid = np.asarray(res.n_boot_valid, int)
        method = (f"percentile bootstrap over {n_patients} {'patients' if cluster is not None else 'predictions'} "
                  f"({n_boot} resamples, seed {seed})" if n_boot > 0 else "point estimate only (no bootstrap)")
        base = {"question": name, "positive": "+".join(group), "ci_level": float(ci), "n": int(codes.size),
                "n_patients": n_patients, "prevalence": float(y.mean())}
        T = t.size
        for s, strategy in enumerate(("model", "treat_all")):
            sl = slice(s * T, (s + 1) * T)
            rows.append(pd.DataFrame({**base, "threshold": t, "strategy": strategy, "net_benefit": est[sl],
                                      "ci_low": lo[sl], "ci_high": hi[sl], "n_boot_valid": valid[sl],
                                      "method": method}))
        rows.append(pd.DataFrame({**base, "threshold": t, "strategy": "treat_none", "net_benefit": 0.0,
                                  "ci_low": math.nan, "ci_high": math.nan, "n_boot_valid": 0,
                                  "method": "reference (no one treated)"}))
    return pd.concat(rows, ignore_index=True)[DECISION_CURVE_COLUMNS]


def useful_thresholds(curves: pd.DataFrame) -> pd.DataFrame:
    """Threshold ranges where the model's net benefit exceeds both treat-all and treat-none.

    Parameters
    ----------
    curves : pandas.DataFrame
        Output of :func:`decision_curve` (extra identifying columns such as ``model`` are kept
        as groups).

    Returns
    -------
    pandas.DataFrame
        One row per group x question: ``threshold_low, threshold_high`` (the smallest and
        largest threshold where the model beats both defaults; NaN when it never does) and
        ``n_thresholds_useful``.
    """
    keys = [c for c in curves.columns if c not in DECISION_CURVE_COLUMNS] + ["question", "positive"]
    out = []
    for key, g in curves.groupby(keys, sort=False):
        wide = g.pivot_table(index="threshold", columns="strategy", values="net_benefit", aggfunc="first")
        good = wide.index[(wide["model"] > wide["treat_all"]) & (wide["model"] > 0)]
        out.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                    "threshold_low": float(good.min()) if len(good) else math.nan,
                    "threshold_high": float(good.max()) if len(good) else math.nan,
                    "n_thresholds_useful": int(len(good))})
    return pd.DataFrame(out)
