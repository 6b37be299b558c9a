"""How much each source (modality, clinical block) moved each patient's fused prediction.

Exact Shapley values (Shapley 1953) over at most a handful of sources: with ``n`` sources
every one of the ``2**n`` coalitions is evaluated, so the values are exact, not sampled.
The value of a coalition ``S`` for a patient is the fused model's predicted probability of
each class when the sources outside ``S`` are replaced by a reference input (the mean
feature vector of the patients the fusion head was trained on: "interventional" Shapley
values, as in SHAP's KernelExplainer with a mean background; Lundberg & Lee 2017).  By the
efficiency property the contributions of one patient and class add up to its prediction
minus the reference prediction (``p_full - p_reference``).

References
----------
Shapley LS. A value for n-person games. In: Kuhn HW, Tucker AW (eds). Contributions to the
Theory of Games II. Princeton University Press; 1953:307-317. doi:10.1515/9781400881970-018
Lundberg SM, Lee S-I. A unified approach to interpreting model predictions. NeurIPS 2017.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["shapley_values", "feature_block_contributions", "CONTRIBUTION_COLUMNS"]

#: Columns of the tidy contribution frames.
CONTRIBUTION_COLUMNS = ["patient_id", "fold", "split", "model", "modality", "source", "class", "contribution",
                        "reference", "prediction"]
_MAX_SOURCES = 10


def shapley_values(value: Callable[[frozenset], np.ndarray], sources: Sequence[str]) -> dict:
    """Exact Shapley values of every source for a set function ``value``.

    Parameters
    ----------
    value : callable
        ``value(coalition: frozenset of source names) -> ndarray`` (any shape, the same for
        every coalition, e.g. ``(n_patients, n_classes)``); ``value(frozenset())`` is the
        reference.
    sources : sequence of str
        The players (at most 10: ``2**n`` evaluations).

    Returns
    -------
    dict
        ``source -> ndarray`` of the value's shape; the values add up to
        ``value(all) - value(empty)``.
    """
    sources = list(sources)
    n = len(sources)
    if n > _MAX_SOURCES:
        raise ValueError(f"exact Shapley values over {n} sources would need 2**{n} evaluations (at most "
                         f"{_MAX_SOURCES} sources)")
    cache = {}
    for r in range(n + 1):
        for combo in itertools.combinations(sources, r):
            cache[frozenset(combo)] = np.asarray(value(frozenset(combo)), dtype=float)
    out = {}
    for src in sources:
        others = [s for s in sources if s != src]
        total = np.zeros_like(cache[frozenset()])
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for combo in itertools.combinations(others, r):
                s = frozenset(combo)
                total = total + weight * (cache[s | {src}] - cache[s])
        out[src] = total
    return out


def feature_block_contributions(predict_proba: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                                reference: np.ndarray, blocks: Mapping[str, Sequence[int]], classes,
                                keys: pd.DataFrame) -> pd.DataFrame:
    """Shapley contributions of column blocks of a fitted model's design matrix, per row and class.

    Parameters
    ----------
    predict_proba : callable
        ``X -> (n, n_classes)`` probabilities of the fitted fusion head.
    X : ndarray, (n, p)
        Design matrix of the patients to explain.
    reference : ndarray, (p,)
        The input a source is replaced by when it is "absent" (the training mean).
    blocks : mapping
        ``source -> column indices of X``; columns in no block always keep their values.
    classes : sequence of str
    keys : pandas.DataFrame
        ``patient_id, fold, split, model, modality`` of each row of ``X`` (n rows).

    Returns
    -------
    pandas.DataFrame
        :data:`CONTRIBUTION_COLUMNS`: one row per patient x source x class; ``reference`` is
        the prediction with every block at the reference, ``prediction`` the full prediction.
    """
    X = np.asarray(X, dtype=float)
    reference = np.asarray(reference, dtype=float)
    names = list(blocks)

    def value(coalition):
        Z = np.broadcast_to(reference, X.shape).copy()
        covered = np.zeros(X.shape[1], bool)
        for b in names:
            covered[list(blocks[b])] = True
        Z[:, ~covered] = X[:, ~covered]
        for b in coalition:
            cols = list(blocks[b])
            Z[:, cols] = X[:, cols]
        return predict_proba(Z)

    phi = shapley_values(value, names)
    full = np.asarray(predict_proba(X), dtype=float)
    base = value(frozenset())
    frames = []
    keys = keys.reset_index(drop=True)
    for b in names:
        for k, c in enumerate(classes):
            f = keys.copy()
            f["source"] = b
            f["class"] = str(c)
            f["contribution"] = phi[b][:, k]
            f["reference"] = base[:, k]
            f["prediction"] = full[:, k]
            frames.append(f)
    if not frames:
        return pd.DataFrame(columns=CONTRIBUTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CONTRIBUTION_COLUMNS]
