"""THE ONLY place where train / validation / test splits are made.

Every split is made over **patients**, never over images: a dataset has one row per image
(or per patient), ``patient_ids`` says whose it is, and all rows of one patient always land
on the same side. Each function returns :class:`Split` objects whose index arrays are row
positions (``0..n-1``) and every split passes :func:`check_disjoint` before it is returned.

Model selection (early stopping, best epoch) uses ``val_idx``, which is carved from the
training patients of the same fold only (:func:`inner_validation_split`); ``test_idx`` is
never looked at until the fold's model is final.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from analysis.errors import ConfigError, did_you_mean

__all__ = [
    "Split",
    "check_disjoint",
    "patient_folds",
    "inner_validation_split",
    "with_inner_validation",
    "hospital_splits",
    "holdout_split",
    "predefined_folds",
    "make_splits",
    "nested_splits",
]

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Split:
    """One fold: row positions for training, inner validation and test.

    Attributes
    ----------
    fold : int
        Fold number, 0-based.
    train_idx, val_idx, test_idx : numpy.ndarray of int64
        Row positions; ``val_idx`` is empty until :func:`with_inner_validation`.
    kind : str
        ``'cv'`` (patient-grouped stratified k-fold), ``'hospital'`` (leave one hospital
        out), ``'holdout'`` (one held-out test set) or ``'predefined'`` (a fold column).
    name : str
        Human-readable label, e.g. the held-out hospital's name.
    """

    fold: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    kind: str
    name: str = ""


def _suggest(value, choices) -> str:
    """did-you-mean, preferring a case-insensitive exact match."""
    lowered = {str(c).lower(): str(c) for c in choices}
    if str(value).lower() in lowered:
        return f"; did you mean '{lowered[str(value).lower()]}'?"
    return did_you_mean(value, choices)


def _as_ids(patient_ids) -> np.ndarray:
    ids = pd.Series(np.asarray(patient_ids, dtype=object)).astype(str).to_numpy()
    return ids


def _idx(a) -> np.ndarray:
    return np.sort(np.asarray(a, dtype=np.int64))


def check_disjoint(patient_ids, split: Split | None = None, **sides) -> None:
    """Raise when any patient has rows on two sides of a split.

    Parameters
    ----------
    patient_ids : array-like, one per row
    split : Split, optional
        Checks its ``train_idx``, ``val_idx`` and ``test_idx``.
    **sides : array-like of int
        Other named index arrays, e.g. ``check_disjoint(ids, train=a, test=b)``.

    Raises
    ------
    ConfigError
        Naming up to five offending patient ids and the two sides, or a row used twice.
    """
    ids = _as_ids(patient_ids)
    named = dict(sides)
    if split is not None:
        named = {"train": split.train_idx, "validation": split.val_idx, "test": split.test_idx, **named}
    names = list(named)
    seen_rows = {}
    for name in names:
        for r in np.asarray(named[name], dtype=np.int64):
            if r in seen_rows:
                raise ConfigError(f"split leak: row position {r} is in both '{seen_rows[r]}' and '{name}'")
            seen_rows[r] = name
    for i, a in enumerate(names):
        pa = set(ids[np.asarray(named[a], dtype=np.int64)])
        for b in names[i + 1:]:
            both = pa & set(ids[np.asarray(named[b], dtype=np.int64)])
            if both:
                shown = ", ".join(sorted(both)[:5])
                more = f" and {len(both) - 5} more" if len(both) > 5 else ""
                raise ConfigError(f"split leak: patient(s) {shown}{more} appear in both '{a}' and '{b}'")


def _patient_table(ids: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique patients, their (first-row) label, and each row's patient position."""
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return uniq, np.asarray(labels)[first], inverse


def patient_folds(patient_ids, labels, n_splits: int = 5, seed: int = 0, groups=None) -> list[Split]:
    """Patient-grouped, label-stratified k-fold cross-validation.

    Parameters
    ----------
    patient_ids : array-like, one per row (image)
        Rows of one patient always fall in the same fold.
    labels : array-like, one per row
        Class of each row; folds keep class proportions roughly (scikit-learn
        ``StratifiedGroupKFold(shuffle=True)``).
    n_splits : int, default 5
    seed : int, default 0
        Same seed -> same folds.
    groups : array-like, optional
        A coarser grouping than the patient (e.g. near-duplicate clusters); rows sharing
        a group are kept together. Patients are still checked to be disjoint.

    Returns
    -------
    list of Split
        ``kind='cv'``, ``val_idx`` empty (see :func:`with_inner_validation`).

    Raises
    ------
    ConfigError
        Fewer patients than folds, a class with fewer patients than folds, or n_splits < 2.
    """
    ids = _as_ids(patient_ids)
    labels = np.asarray(labels)
    if len(ids) != len(labels):
        raise ConfigError(f"patient_ids ({len(ids)}) and labels ({len(labels)}) differ in length")
    grouping = ids if groups is None else _as_ids(groups)
    n_groups = len(np.unique(grouping))
    if n_splits < 2:
        raise ConfigError(f"--folds must be at least 2, got {n_splits}")
    if n_groups < n_splits:
        raise ConfigError(f"--folds {n_splits}: only {n_groups} patients, need at least one per fold")
    per_class = pd.DataFrame({"g": grouping, "y": labels}).drop_duplicates().groupby("y")["g"].size()
    if per_class.min() < n_splits:
        raise ConfigError(f"--folds {n_splits}: class '{per_class.idxmin()}' has only {int(per_class.min())} "
                          f"patients, so some test folds would have none of it; use --folds "
                          f"{max(2, int(per_class.min()))} or fewer")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    out = []
    for k, (tr, te) in enumerate(cv.split(np.zeros(len(ids)), labels, grouping)):
        s = Split(k, _idx(tr), _EMPTY, _idx(te), "cv")
        check_disjoint(ids, s)
        out.append(s)
    return out


def inner_validation_split(train_idx, patient_ids, labels, fraction: float = 0.2,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation set out of the training rows, by patient, stratified by label.

    Only rows in ``train_idx`` are considered, so validation patients are training
    patients of the same fold and never test patients.

    Parameters
    ----------
    train_idx : array-like of int
        Row positions available for training.
    patient_ids, labels : array-like, one per row of the whole dataset
    fraction : float, default 0.2
        Share of training patients used for validation (0 < fraction < 1). Implemented as
        the first fold of ``StratifiedGroupKFold(round(1 / fraction))``; falls back to a
        ``GroupShuffleSplit`` when there are too few patients per class.
    seed : int, default 0

    Returns
    -------
    (fit_idx, val_idx) : tuple of numpy.ndarray
        Row positions, sorted, patient-disjoint, union = ``train_idx``.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"--inner-val must be between 0 and 1 (exclusive), got {fraction}")
    train_idx = _idx(train_idx)
    ids = _as_ids(patient_ids)
    sub_ids = ids[train_idx]
    sub_labels = np.asarray(labels)[train_idx]
    n_pat = len(np.unique(sub_ids))
    if n_pat < 2:
        raise ConfigError(f"inner validation needs at least 2 training patients, got {n_pat}")
    n_splits = max(2, int(round(1 / fraction)))
    _, pat_labels, _ = _patient_table(sub_ids, sub_labels)
    min_class = pd.Series(pat_labels).value_counts().min()
    if n_pat >= n_splits and min_class >= n_splits:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        fit, val = next(iter(cv.split(np.zeros(len(sub_ids)), sub_labels, sub_ids)))
    else:
        gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        fit, val = next(iter(gss.split(np.zeros(len(sub_ids)), sub_labels, sub_ids)))
    fit_idx, val_idx = _idx(train_idx[fit]), _idx(train_idx[val])
    check_disjoint(ids, fit=fit_idx, validation=val_idx)
    return fit_idx, val_idx


def with_inner_validation(splits, patient_ids, labels, fraction: float = 0.2, seed: int = 0) -> list[Split]:
    """Each split with ``val_idx`` carved from its training patients (seed + fold)."""
    out = []
    for s in splits:
        fit, val = inner_validation_split(s.train_idx, patient_ids, labels, fraction, seed + s.fold)
        new = replace(s, train_idx=fit, val_idx=val)
        check_disjoint(patient_ids, new)
        out.append(new)
    return out


def hospital_splits(hospital, patient_ids=None) -> list[Split]:
    """Leave-one-hospital-out: fold k tests on hospital k, trains on all others.

    Parameters
    ----------
    hospital : array-like, one per row
        Missing hospitals are an error (they could not be placed).
    patient_ids : array-like, optional
        When given, patients are checked not to appear in two hospitals' sides.

    Returns
    -------
    list of Split
        ``kind='hospital'``, ``name`` = the held-out hospital, in sorted order.
    """
    h = pd.Series(np.asarray(hospital, dtype=object))
    if h.isna().any():
        raise ConfigError(f"leave-one-hospital-out: {int(h.isna().sum())} row(s) have no hospital")
    h = h.astype(str).to_numpy()
    names = sorted(set(h))
    if len(names) < 2:
        raise ConfigError(f"leave-one-hospital-out needs at least 2 hospitals, found {names}")
    out = []
    for k, name in enumerate(names):
        te = np.flatnonzero(h == name)
        tr = np.flatnonzero(h != name)
        s = Split(k, _idx(tr), _EMPTY, _idx(te), "hospital", name)
        if patient_ids is not None:
            check_disjoint(patient_ids, s)
        out.append(s)
    return out


def holdout_split(patient_ids, labels, test_fraction: float | None = None, seed: int = 0,
                  hospital=None, holdout_hospital: str | None = None) -> Split:
    """One held-out test set: a named hospital, or a stratified random share of patients.

    Parameters
    ----------
    patient_ids, labels : array-like, one per row
    test_fraction : float, optional
        Share of patients held out (first fold of ``StratifiedGroupKFold(round(1/f))``).
    seed : int, default 0
    hospital : array-like, optional
        Needed with ``holdout_hospital``.
    holdout_hospital : str, optional
        Rows of this hospital form the test set (external validation).

    Returns
    -------
    Split
        ``fold=0``, ``train_idx`` = development rows (cross-validated later),
        ``test_idx`` = held-out rows, ``kind='holdout'`` and ``name`` = hospital or ``'random'``.
    """
    ids = _as_ids(patient_ids)
    if holdout_hospital is not None:
        if hospital is None:
            raise ConfigError("--holdout-hospital needs a hospital column in the schema")
        h = pd.Series(np.asarray(hospital, dtype=object)).astype(str).to_numpy()
        levels = sorted(set(h))
        if holdout_hospital not in levels:
            raise ConfigError(f"--holdout-hospital {holdout_hospital!r}: no such hospital "
                              f"(expected one of: {', '.join(levels)}){_suggest(holdout_hospital, levels)}")
        te = np.flatnonzero(h == holdout_hospital)
        tr = np.flatnonzero(h != holdout_hospital)
        s = Split(0, _idx(tr), _EMPTY, _idx(te), "holdout", holdout_hospital)
    else:
        if test_fraction is None or not 0 < test_fraction < 1:
            raise ConfigError(f"--test-fraction must be between 0 and 1 (exclusive), got {test_fraction}")
        n_splits = max(2, int(round(1 / test_fraction)))
        if len(np.unique(ids)) < n_splits:
            raise ConfigError(f"--test-fraction {test_fraction}: too few patients ({len(np.unique(ids))})")
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        tr, te = next(iter(cv.split(np.zeros(len(ids)), np.asarray(labels), ids)))
        s = Split(0, _idx(tr), _EMPTY, _idx(te), "holdout", "random")
    check_disjoint(ids, s)
    return s


def predefined_folds(fold_column, patient_ids=None, column: str = "fold", file=None) -> list[Split]:
    """Splits from a fold column (e.g. BUS-BRA's official ``kFold``): test = rows of fold k.

    Parameters
    ----------
    fold_column : array-like, one per row
        Fold labels (any sortable values; missing values are an error).
    patient_ids : array-like, optional
        When given, a patient found in two folds raises :class:`ConfigError`.
    column, file : str, optional
        Named in error messages.

    Returns
    -------
    list of Split
        ``kind='predefined'``, ``name`` = the fold label as text, in sorted label order.
    """
    f = pd.Series(np.asarray(fold_column, dtype=object))
    if f.isna().any():
        row = int(np.flatnonzero(f.isna().to_numpy())[0]) + 2
        raise ConfigError("missing fold number", file=file, row=row, column=column)
    values = sorted(set(f.tolist()))
    if len(values) < 2:
        raise ConfigError(f"only one fold ({values[0]!r}) in the fold column", file=file, column=column)
    arr = f.to_numpy()
    out = []
    for k, v in enumerate(values):
        te = np.flatnonzero(arr == v)
        tr = np.flatnonzero(arr != v)
        s = Split(k, _idx(tr), _EMPTY, _idx(te), "predefined", str(v))
        if patient_ids is not None:
            check_disjoint(patient_ids, s)
        out.append(s)
    return out


def make_splits(cfg, patient_ids, labels, hospital, fold_labels=None):
    """Cross-validation splits (with inner validation) and an optional held-out test split.

    ``cfg`` needs ``folds, inner_val, seed, external_hospital, holdout_hospital, test_fraction``
    (a :class:`fusion.config.TrainConfig`). With ``fold_labels`` (one per row, ``--fold-column``)
    the test folds are those labels (:func:`predefined_folds`, e.g. BUS-BRA's official folds) and
    ``cfg.folds`` is not used.

    Returns
    -------
    (splits, holdout) : (list of Split, Split or None)
        Positions index the whole dataset; with a held-out set, the folds cover only the
        development rows (``holdout.train_idx``).
    """
    sp = sys.modules[__name__]
    ids = np.asarray(patient_ids, dtype=object)
    y = np.asarray(labels)
    holdout = None
    if fold_labels is not None:
        folds = sp.predefined_folds(fold_labels, ids, column=getattr(cfg, "fold_column", None) or "fold")
    elif cfg.external_hospital:
        if hospital is None:
            raise ConfigError("--external-hospital needs a hospital column in the schema")
        folds = sp.hospital_splits(hospital, ids)
    else:
        dev = np.arange(len(ids))
        if cfg.holdout_hospital is not None or cfg.test_fraction is not None:
            holdout = sp.holdout_split(ids, y, cfg.test_fraction, cfg.seed, hospital, cfg.holdout_hospital)
            dev = holdout.train_idx
        local = sp.patient_folds(ids[dev], y[dev], cfg.folds, cfg.seed)
        folds = [replace(s, train_idx=dev[s.train_idx], test_idx=dev[s.test_idx]) for s in local]
    folds = sp.with_inner_validation(folds, ids, y, cfg.inner_val, cfg.seed)
    for s in folds:
        sp.check_disjoint(ids, s)
        if holdout is not None:
            sp.check_disjoint(ids, train=np.concatenate([s.train_idx, s.val_idx, s.test_idx]),
                              heldout=holdout.test_idx)
    return folds, holdout


def nested_splits(cfg, outer, patient_ids, labels, hospital, class_names=None):
    """Inner folds over one outer fold's training patients, for ``--nested-fusion``.

    The outer fold's training and validation patients are split again the way the outer
    folds were made: patient-grouped stratified ``cfg.folds``-fold (seeded by the outer fold)
    or, for leave-one-hospital-out, leaving out each of the other hospitals in turn; each
    inner fold gets its inner validation split.  Positions index the whole dataset; every
    inner split is checked patient-disjoint and free of the outer fold's test patients.
    """
    sp = sys.modules[__name__]
    ids = np.asarray(patient_ids, dtype=object)
    y = np.asarray(labels)
    dev = np.sort(np.concatenate([outer.train_idx, outer.val_idx]).astype(np.int64))
    if outer.kind == "hospital":
        others = np.asarray(hospital, dtype=object)[dev]
        if len(pd.unique(others)) < 2:
            raise ConfigError(f"--nested-fusion with --external-hospital needs at least 3 hospitals "
                              f"(fold {outer.fold} leaves only one for training)")
        local = sp.hospital_splits(others, ids[dev])
    else:
        per_class = pd.Series(ids[dev]).groupby(y[dev]).nunique()
        if per_class.min() < cfg.folds:
            code = per_class.idxmin()
            name = class_names[int(code)] if class_names is not None and str(code).isdigit() else code
            raise ConfigError(f"--nested-fusion: outer fold {outer.fold}'s training patients include only "
                              f"{int(per_class.min())} of class '{name}', too few for {cfg.folds} inner folds; "
                              f"use --folds {max(2, int(per_class.min()))} or fewer")
        local = sp.patient_folds(ids[dev], y[dev], cfg.folds, cfg.seed + 1 + outer.fold)
    inner = [replace(s, train_idx=dev[s.train_idx], test_idx=dev[s.test_idx]) for s in local]
    inner = sp.with_inner_validation(inner, ids, y, cfg.inner_val, cfg.seed + 1 + outer.fold)
    for s in inner:
        sp.check_disjoint(ids, s)
        sp.check_disjoint(ids, train=np.concatenate([s.train_idx, s.val_idx, s.test_idx]), test=outer.test_idx)
    return inner
