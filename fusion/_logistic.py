"""Second-level heads with their L2 strength chosen by an inner cross-validation (internal).

One place for the second-level / baseline classifier shared by :mod:`fusion.late_fusion`
(stacking over out-of-fold probabilities) and :mod:`fusion.texture` (hand-crafted texture
features): choose the inverse L2 strength ``C`` from :data:`C_GRID` by an inner stratified
k-fold over the *training* rows only (minimum mean log loss), refit on all training rows with
that ``C`` and predict the test rows.  The test rows are never looked at before the final
``predict_proba``.  :func:`fit_head` returns the fitted head (a :class:`HeadFit`, also a
one-hidden-layer MLP with ``kind='mlp'``) for callers that need the model itself
(:mod:`fusion.embedding`, Shapley contributions, saved bundles).

With ``groups`` (a patient id per row) the inner folds are patient-grouped
(:class:`sklearn.model_selection.StratifiedGroupKFold`), so that several images of one
patient never sit on both sides of an inner split; without it (one row per patient) they are
:class:`sklearn.model_selection.StratifiedKFold`.  With ``standardize=True`` a
:class:`sklearn.preprocessing.StandardScaler` is part of the model, so it is refitted on the
training part of every inner split and on all training rows for the final model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["C_GRID", "ALPHA_GRID", "HeadFit", "fit_head", "fit_predict_logistic", "full_proba"]

#: Inverse L2 strengths searched by the inner cross-validation.
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
#: Hidden-layer L2 strengths searched for the small MLP head (``kind='mlp'``).
ALPHA_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def _model(c: float, standardize: bool, max_iter: int, kind: str = "lr", seed: int = 0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    lr = (LogisticRegression(C=c, max_iter=max_iter) if kind == "lr" else
          MLPClassifier(hidden_layer_sizes=(32,), alpha=c, max_iter=max_iter, random_state=seed))
    if not standardize:
        return lr
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), lr)


def full_proba(model, X, n_classes: int) -> np.ndarray:
    """``predict_proba`` with a column for every class (0 for classes absent from training)."""
    out = np.zeros((len(X), n_classes))
    out[:, model.classes_] = model.predict_proba(X)
    return out


@dataclass(frozen=True)
class HeadFit:
    """A fitted head: ``predict_proba(X)`` with a column for every class."""

    model: object
    n_classes: int
    chosen: float
    inner_folds: int
    reason: str
    only_class: int | None = None

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if self.only_class is not None:
            out = np.zeros((len(X), self.n_classes))
            out[:, self.only_class] = 1.0
            return out
        return full_proba(self.model, X, self.n_classes)


def fit_predict_logistic(X_train, y_train, X_test, n_classes: int, seed: int, *, groups=None,
                         standardize: bool = False, max_iter: int = 2000, c_grid=C_GRID):
    """:func:`fit_head` (logistic regression), then predict ``X_test``: ``(proba, C, inner_folds, reason)``."""
    head = fit_head(X_train, y_train, n_classes, seed, groups=groups, standardize=standardize, max_iter=max_iter,
                    grid=c_grid)
    return head.predict_proba(X_test), head.chosen, head.inner_folds, head.reason


def fit_head(X_train, y_train, n_classes: int, seed: int, kind: str = "lr", *, groups=None,
             standardize: bool = False, max_iter: int = 2000, grid=None) -> HeadFit:
    """Choose the L2 strength by inner CV on the training rows and refit on all of them.

    Parameters
    ----------
    X_train : numpy.ndarray
        Feature matrix (rows x features).
    y_train : numpy.ndarray of int
        Class codes ``0..n_classes-1`` of the training rows.
    n_classes : int
        Number of classes (columns of the returned probabilities).
    seed : int
        ``random_state`` of the shuffled inner folds.
    groups : array-like, optional
        Patient id of each training row: inner folds are then patient-grouped and the number
        of inner folds is ``min(3, patients of the smallest class)``; else rows are the unit.
    standardize : bool, default False
        Standardise the features inside the model (fitted on the training part of each split).
    max_iter : int, default 2000
        lbfgs iterations.
    kind : {'lr', 'mlp'}
        Multinomial L2 logistic regression (``C`` from :data:`C_GRID`) or one hidden layer of
        32 ReLU units (scikit-learn ``MLPClassifier``, adam; ``alpha`` from :data:`ALPHA_GRID`).
    grid : sequence of float, optional
        The strengths searched (default by ``kind``).

    Returns
    -------
    HeadFit
        The fitted head, the chosen strength (NaN when nothing was fitted), the number of
        inner folds (0 = not tuned) and why it was not tuned ('' if it was).

    Notes
    -----
    scikit-learn ``LogisticRegression`` (lbfgs, multinomial for 3+ classes, L2 penalty);
    ties in the inner log loss go to the first (smallest) value of the grid.
    """
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    grid = tuple(grid) if grid is not None else (C_GRID if kind == "lr" else ALPHA_GRID)
    y_train = np.asarray(y_train, dtype=np.int64)
    present = np.unique(y_train)
    if len(present) < 2:
        return HeadFit(None, n_classes, math.nan, 0, "one class among the training patients: its prediction is that "
                       "class", only_class=int(present[0]))
    if groups is None:
        counts = np.bincount(y_train, minlength=n_classes)[present]
    else:
        groups = np.asarray(groups, dtype=object)
        counts = np.array([len(set(groups[y_train == k])) for k in present])
    n_inner = int(min(3, counts.min()))
    reason = ""
    chosen = 1.0 if kind == "lr" else 1e-2
    if n_inner >= 2:
        if groups is None:
            splits = StratifiedKFold(n_splits=n_inner, shuffle=True, random_state=seed).split(X_train, y_train)
        else:
            splits = StratifiedGroupKFold(n_splits=n_inner, shuffle=True, random_state=seed).split(
                X_train, y_train, groups)
        losses = np.zeros(len(grid))
        for tr, va in splits:
            for i, c in enumerate(grid):
                m = _model(c, standardize, max_iter, kind, seed).fit(X_train[tr], y_train[tr])
                p = full_proba(m, X_train[va], n_classes)
                losses[i] += log_loss(y_train[va], p, labels=list(range(n_classes)))
        chosen = float(grid[int(np.argmin(losses))])
    else:
        n_inner = 0
        name = "C" if kind == "lr" else "alpha"
        reason = f"a class has fewer than 2 training patients: {name} = {chosen:g} without tuning"
    model = _model(chosen, standardize, max_iter, kind, seed).fit(X_train, y_train)
    return HeadFit(model, n_classes, chosen, n_inner, reason)
