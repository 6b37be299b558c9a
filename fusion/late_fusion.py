"""Late fusion: a stacked logistic regression over the single-modality predictions (+ clinical data).

The published study trained one CNN per modality and compared them; it never combined them.
This module combines them *after* training (late fusion, stacked generalization, Wolpert
1992): the out-of-fold class probabilities of each modality's CNN become the inputs of a
small second-level model, a multinomial L2 logistic regression.

Three second-level variants are fitted, each written in the prediction-file format of
:mod:`fusion.evaluate` with ``model = 'late_fusion'``:

``fusion_images``
    log-probabilities of every (backbone, modality) first-level model.
``fusion_images_clinical``
    the same plus the clinical variables of the schema.
``clinical_only``
    the clinical variables alone (the baseline a fusion has to beat).

"Clinical variables" are every variable of the schema.  In the lymph-node cohort most of them
(shape, margin, hilum, CDFI pattern, Adler grade, elasticity score, axes) are ultrasound
features read by radiologists from the same examinations, so ``clinical_only`` is a
*reading* baseline, and it is a fair one only if the readers did not know the final
diagnosis; a paper should say so.  To compare against demographic variables alone, train
with a schema that lists only those (age, sex, side, neck level).

What is fitted where
--------------------
The second level re-uses the **same patient-level folds** as the first level
(:class:`fusion.splits.Split` objects from :func:`fusion.train.make_splits`).  For outer fold
``k``:

1. Training patients = the fold's ``train_idx`` and ``val_idx`` patients; test patients =
   its ``test_idx`` patients.  Each patient's first-level features are its own out-of-fold
   probabilities (from the CNN of the fold in which it was a test patient).
2. Everything estimated from data is estimated on the training patients only: the class
   prior used to fill a missing modality, the mean / SD used to standardise continuous and
   ordinal clinical variables, the mean / mode used to impute missing clinical values, and
   the L2 strength ``C``.
3. ``C`` is chosen from :data:`C_GRID` by an inner stratified k-fold (``min(3, smallest
   class)`` folds, seeded) over those training patients, minimising the mean log loss; the
   model is then refitted on all training patients with that ``C`` and applied to the
   fold's test patients.

Features.  For every first-level model: ``log(max(p_c, 1e-6))`` for each class, and a 0/1
indicator "modality missing".  A patient without that modality's image gets the training
patients' class-prior log-probabilities plus indicator 1.  Clinical variables (schema types):
continuous and ordinal (level scores ``0..L-1``) are imputed with the training mean and
standardised with training mean / SD; categorical and binary are imputed with the training
mode and one-hot coded against the first schema level; every variable that has a missing
value anywhere in the table (a label-free fact) gets a missing indicator.

Why it does not leak
--------------------
A test patient's fusion prediction comes from a second-level model fitted without that
patient's label or features (steps 1-3 never touch ``test_idx``), and its inputs are
produced by a CNN that never saw it.

Shared folds (the default) leave one indirect dependence, inherent to stacking: the
out-of-fold probabilities of the *training* patients of fold ``k`` come from CNNs of other
folds, which were trained with fold ``k``'s test patients, so those patients' labels reach
fold ``k``'s second-level model through its training features.  **Nested** first-level
predictions remove it (``inner=`` here, ``fusion.train --late-fusion --nested-fusion``):
for every outer fold ``k`` the first level is re-run inside fold ``k``'s training patients
only (an inner patient-grouped k-fold, or leave-one-of-the-other-hospitals-out), and those
inner out-of-fold probabilities are the training features of fold ``k``'s second level; the
outer CNN of fold ``k`` (which never saw the test patients either) still supplies the test
patients' features.  Then nothing fitted for fold ``k``, at either level, has seen a test
patient of fold ``k``, at the cost of ``K x K`` more CNN fits per model and modality
(``H x (H - 1)`` with ``H`` hospitals).  ``late_fusion_models.csv`` records which was used
(column ``first_level``).  The tests in ``tests/fusion/test_late_fusion.py`` check both: a
patient's own label never reaches its fusion prediction, and with nested predictions the
test patients' first-level outputs never reach the training features of their fold.

Design for hospitals.  With leave-one-hospital-out splits (``Split.kind == 'hospital'``)
the same procedure runs with ``split = 'external'``: the second level for a hospital is
fitted on the other hospitals' patients.  A single held-out set (``'holdout'`` splits) is not
supported (:class:`~analysis.errors.ConfigError`).

References
----------
Wolpert DH. Stacked generalization. Neural Networks. 1992;5(2):241-259.
doi:10.1016/S0893-6080(05)80023-1
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import CohortError, ConfigError
from fusion._logistic import ALPHA_GRID, C_GRID, HeadFit, fit_head, fit_predict_logistic
from fusion.contributions import CONTRIBUTION_COLUMNS, feature_block_contributions

__all__ = ["FUSION_MODEL", "FUSION_VARIANTS", "C_GRID", "ALPHA_GRID", "INNER_SPLIT", "LateFusionResult", "HeadFit",
           "fit_head", "calibrate_first_level", "patient_index", "late_fusion_predictions", "late_fusion_heldout", "source_blocks",
           "fusion_comparison"]

#: ``model`` value of every fusion row.
FUSION_MODEL = "late_fusion"
#: ``modality`` values of the fusion rows, in output order.
FUSION_VARIANTS = ("fusion_images", "fusion_images_clinical", "clinical_only")
_EPS = 1e-6
MODEL_COLUMNS = ["fold", "split", "modality", "first_level", "c", "n_train", "n_test", "n_features", "inner_folds",
                 "reason"]
#: ``first_level`` values of ``late_fusion_models.csv``.
FIRST_LEVEL_SHARED, FIRST_LEVEL_NESTED = "shared folds", "nested"
#: ``split`` value of the nested (inner) first-level prediction rows.
INNER_SPLIT = "inner"



@dataclass(frozen=True)
class LateFusionResult:
    """Output of :func:`late_fusion_predictions`.

    Attributes
    ----------
    predictions : pandas.DataFrame
        Prediction rows ``patient_id, fold, split, y_true, model, modality, p_<class>...``
        (``model == 'late_fusion'``), one per test patient x variant.
    models : pandas.DataFrame
        One row per fold x variant: ``fold, split, modality``, ``first_level`` (``'nested'`` or
        ``'shared folds'``), ``c`` (the chosen ``C``), ``n_train, n_test, n_features,
        inner_folds, reason`` (why ``C`` was not tuned, else '').
    contributions : pandas.DataFrame or None
        Per test patient x source (modality or ``'clinical'``) x class: exact Shapley
        contributions to the fused probability (:mod:`fusion.contributions`).
    temperatures : pandas.DataFrame or None
        With ``calibration``: the temperature fitted for each first-level model and fold.
    """

    predictions: pd.DataFrame
    models: pd.DataFrame
    contributions: pd.DataFrame | None = None
    temperatures: pd.DataFrame | None = None


# ----------------------------------------------------------------------------- features
def _patient_probabilities(oof: pd.DataFrame, classes, split_name: str | None) -> dict:
    """(model, modality) -> DataFrame of mean p_<class> per patient (index patient_id).

    Rows of ``split_name`` only (every row when None); fusion rows are ignored.
    """
    pcols = [f"p_{c}" for c in classes]
    keep = oof["model"] != FUSION_MODEL
    if split_name is not None:
        keep &= oof["split"] == split_name
    sub = oof[keep]
    blocks = {}
    for key, g in sub.groupby(["model", "modality"], sort=True):
        blocks[key] = g.groupby(g["patient_id"].astype(str), sort=False)[pcols].mean()
    return blocks


def class_prior_log(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Log of the add-one-smoothed class frequencies of ``y``: a missing modality's features."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return np.log(np.maximum((counts + 1.0) / (counts.sum() + n_classes), _EPS))


def _image_features(blocks: dict, patients: np.ndarray, train_mask: np.ndarray, y: np.ndarray,
                    n_classes: int, order=None) -> np.ndarray:
    """Log-probabilities (missing: training class prior) + a missing indicator per block.

    ``blocks``: key -> per-patient probabilities (DataFrame indexed by patient id); the blocks
    are stacked in ``order`` (default: sorted keys).
    """
    prior = class_prior_log(y[train_mask], n_classes)
    cols = []
    for key in (sorted(blocks) if order is None else order):
        p = blocks[key].reindex(patients).to_numpy(dtype=float)
        missing = np.isnan(p).any(axis=1)
        logp = np.log(np.clip(np.where(np.isnan(p), 1.0, p), _EPS, None))
        logp[missing] = prior
        cols.extend([logp, missing[:, None].astype(float)])
    return np.hstack(cols) if cols else np.zeros((len(patients), 0))


class ClinicalEncoder:
    """Clinical design matrix with statistics from the training rows only (see module docs).

    ``fit(clinical, train_mask)`` learns, per variable of ``types`` (``name -> (type,
    levels)``), the training mean / SD (continuous, ordinal scores) or mode (categorical,
    binary), and which variables get a missing indicator (those with a missing value anywhere
    in ``clinical``: a label-free fact); ``transform`` applies them to any rows, e.g. a new
    patient's.  ``to_dict`` / ``from_dict`` store it as plain numbers and strings.
    """

    def __init__(self, types: dict):
        self.types = {str(k): (v[0], tuple(v[1]) if v[1] is not None else None) for k, v in types.items()}
        self.stats: dict = {}

    def fit(self, clinical: pd.DataFrame, train_mask) -> "ClinicalEncoder":
        train_mask = np.asarray(train_mask, dtype=bool)
        self.stats = {}
        for name, (kind, levels) in self.types.items():
            s = clinical[name]
            indicator = bool(s.isna().any())
            if kind in ("continuous", "ordinal"):
                x = self._numeric(s, kind, levels)
                tr = x[train_mask & ~np.isnan(x)]
                mean = float(tr.mean()) if tr.size else 0.0
                sd = float(tr.std()) if tr.size > 1 else 0.0
                self.stats[name] = {"mean": mean, "sd": sd, "indicator": indicator}
            else:
                miss = s.isna().to_numpy()
                tr = pd.Series(s.astype(object).to_numpy()[train_mask & ~miss])
                mode = tr.value_counts().index[0] if len(tr) else levels[0]
                self.stats[name] = {"mode": mode, "indicator": indicator}
        return self

    @staticmethod
    def _key(value) -> str:
        """A level as text, the same before and after :meth:`to_dict` (``2``, ``2.0`` and ``'2'`` -> ``'2'``)."""
        if isinstance(value, (bool, np.bool_)):
            return str(bool(value))
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return str(value)

    @classmethod
    def _keys(cls, s: pd.Series) -> np.ndarray:
        """Every value's :meth:`_key`, None where missing."""
        miss = s.isna().to_numpy()
        return np.array([None if m else cls._key(v) for v, m in zip(s.astype(object).to_numpy(), miss)], dtype=object)

    @classmethod
    def _numeric(cls, s: pd.Series, kind: str, levels) -> np.ndarray:
        if kind == "ordinal":
            order = {cls._key(lv): i for i, lv in enumerate(levels)}
            return np.array([np.nan if k is None else order.get(k, np.nan) for k in cls._keys(s)], dtype=float)
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)

    def transform(self, clinical: pd.DataFrame) -> np.ndarray:
        cols = []
        for name, (kind, levels) in self.types.items():
            st = self.stats[name]
            s = clinical[name] if name in clinical else pd.Series([np.nan] * len(clinical), dtype=object)
            if kind in ("continuous", "ordinal"):
                x = self._numeric(s, kind, levels)
                miss = np.isnan(x)
                x = np.where(miss, st["mean"], x)
                cols.append(((x - st["mean"]) / (st["sd"] if st["sd"] > 0 else 1.0))[:, None])
            else:
                keys = self._keys(s)
                miss = np.array([k is None for k in keys], dtype=bool)
                values = np.where(miss, self._key(st["mode"]), keys)
                for lv in levels[1:]:
                    cols.append((values == self._key(lv)).astype(float)[:, None])
            if st["indicator"]:
                cols.append(miss.astype(float)[:, None])
        return np.hstack(cols) if cols else np.zeros((len(clinical), 0))

    def to_dict(self) -> dict:
        return {"types": {k: [v[0], None if v[1] is None else [str(x) for x in v[1]]] for k, v in self.types.items()},
                "stats": {k: {kk: (self._key(vv) if kk == "mode" else vv) for kk, vv in v.items()}
                          for k, v in self.stats.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "ClinicalEncoder":
        enc = cls({k: (v[0], v[1]) for k, v in data["types"].items()})
        enc.stats = {k: dict(v) for k, v in data["stats"].items()}
        return enc


def _clinical_features(clinical: pd.DataFrame, types: dict, train_mask: np.ndarray) -> np.ndarray:
    """Clinical design matrix with statistics from the training rows only (see module docs)."""
    return ClinicalEncoder(types).fit(clinical, train_mask).transform(clinical)


def _variable_types(clinical: pd.DataFrame, schema) -> dict:
    """name -> (type, levels) from the schema, or inferred from the dtypes without one."""
    out = {}
    for name in clinical.columns:
        var = None
        if schema is not None:
            try:
                var = schema.variable(name)
            except (KeyError, CohortError, ValueError):
                var = None
        if var is not None:
            levels = tuple(var.levels) if var.levels else None
            kind = var.type
        elif pd.api.types.is_numeric_dtype(clinical[name]) and not isinstance(clinical[name].dtype,
                                                                              pd.CategoricalDtype):
            kind, levels = "continuous", None
        else:
            s = clinical[name]
            levels = (tuple(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype)
                      else tuple(sorted(s.dropna().astype(str).unique())))
            kind = "categorical"
        if kind != "continuous" and not levels:
            continue
        out[str(name)] = (kind, levels)
    return out


# ----------------------------------------------------------------------------- second-level model
# the inner-CV heads are shared with fusion.texture and fusion.embedding (fusion/_logistic.py)
_fit_predict = fit_predict_logistic


def _inner_blocks(inner: pd.DataFrame, classes, fold: int, train_p: np.ndarray, outer_keys) -> dict:
    """Nested first-level probabilities of outer fold ``fold`` (see module docs), checked.

    Every training patient of the fold must have exactly one inner prediction per first-level
    model that has an outer prediction for it, no test patient may have one, and the inner
    predictions must come from the same first-level models as the outer ones.
    """
    rows = inner[inner["fold"] == fold]
    blocks = _patient_probabilities(rows, classes, None)
    if set(blocks) != set(outer_keys):
        missing = sorted(set(outer_keys) - set(blocks)) or sorted(set(blocks) - set(outer_keys))
        raise ConfigError(f"nested first-level predictions of fold {fold} do not match the outer ones: "
                          f"first-level model {missing[0]} is in one and not the other")
    ids = rows["patient_id"].astype(str)
    outside = sorted(set(ids) - set(train_p))
    if outside:
        raise ConfigError(f"nested first-level predictions of fold {fold} include patient {outside[0]!r}, "
                          "who is not a training patient of that fold")
    if "inner_fold" in rows:
        per = rows.assign(patient_id=ids).groupby(["model", "modality", "patient_id"])["inner_fold"].nunique()
        if (per > 1).any():
            key = per[per > 1].index[0]
            raise ConfigError(f"patient {key[2]!r} is an inner test patient of two inner folds of fold {fold} "
                              f"({key[0]}/{key[1]})")
    return blocks


def calibrate_first_level(predictions: pd.DataFrame, validation: pd.DataFrame, classes) -> tuple:
    """Temperature-scale each first-level model of each fold on its own inner validation patients.

    Stacking pools the out-of-fold probabilities of *different* fold models: the second level
    of fold ``k`` is fitted on the outputs of the other folds' CNNs and applied to fold
    ``k``'s CNN.  Fold models that differ in confidence then shift the fused scores of whole
    folds against each other, and the pooled out-of-fold AUC drops below every per-fold AUC
    (cross-fold calibration drift).  Each fold model is therefore put on a common scale
    first: its temperature (:func:`analysis.calibration.fit_temperature`) is fitted on the
    predictions for its own inner validation patients (``validation``; patients it was never
    trained on, and never a test patient) and applied to all of its predictions.

    Parameters
    ----------
    predictions : pandas.DataFrame
        First-level prediction rows (``fold``, ``model``, ``modality``, optional ``inner_fold``).
    validation : pandas.DataFrame
        The same models' predictions for their inner validation patients
        (``validation_predictions.csv``), keyed alike.
    classes : list of str

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        The calibrated copy of ``predictions`` (fusion rows and rows without a fitted
        temperature unchanged) and ``temperatures`` (``model, modality, fold[, inner_fold],
        temperature, n_validation``).
    """
    from analysis.calibration import apply_temperature, fit_temperature

    pcols = [f"p_{c}" for c in classes]
    index = {c: i for i, c in enumerate(classes)}
    keys = ["model", "modality", "fold"]
    if "inner_fold" in validation.columns and "inner_fold" in predictions.columns:
        keys.append("inner_fold")
    out = predictions.copy()
    rows = []
    for key, g in validation.groupby(keys, sort=True):
        y = g["y_true"].astype(str).map(index).to_numpy()
        t = fit_temperature(g[pcols].to_numpy(dtype=float), y)
        rows.append({**dict(zip(keys, key)), "temperature": t, "n_validation": int(len(g))})
        match = np.logical_and.reduce([(out[k] == v).to_numpy() for k, v in zip(keys, key)])
        if match.any():
            out.loc[match, pcols] = apply_temperature(out.loc[match, pcols].to_numpy(dtype=float), t)
    return out, pd.DataFrame(rows, columns=[*keys, "temperature", "n_validation"])


def patient_index(patient_ids, labels, classes) -> tuple:
    """One entry per patient (its first row), in first-appearance order.

    Returns ``(ids, patients, first, pos, y)``: the patient id of every row as text, the
    distinct patients, the row of each one's first appearance, ``patient -> position`` and
    each patient's class code.  ``labels`` are class codes or names (an unknown name is a
    :class:`~analysis.errors.CohortError`).
    """
    ids = pd.Series(np.asarray(patient_ids, dtype=object)).astype(str).to_numpy()
    lab = np.asarray(labels)
    if lab.dtype.kind in "iu":
        codes_rows = lab.astype(int)
    else:
        index = {str(c): i for i, c in enumerate(classes)}
        bad = [v for v in lab.astype(str) if v not in index]
        if bad:
            raise CohortError(f"label {bad[0]!r} is not one of the classes ({', '.join(map(str, classes))})")
        codes_rows = np.array([index[v] for v in lab.astype(str)])
    patients, first = np.unique(ids, return_index=True)
    order = np.argsort(first)
    patients, first = patients[order], first[order]
    pos = {p: i for i, p in enumerate(patients)}
    return ids, patients, first, pos, codes_rows[first]


def late_fusion_predictions(oof: pd.DataFrame, classes, splits, patient_ids, labels, clinical=None,
                            schema=None, seed: int = 0, variants=FUSION_VARIANTS,
                            inner: pd.DataFrame | None = None, calibration: pd.DataFrame | None = None,
                            inner_calibration: pd.DataFrame | None = None,
                            contributions: bool = True) -> LateFusionResult:
    """Stacked (late) fusion predictions for every outer fold's test patients.

    Parameters
    ----------
    oof : pandas.DataFrame
        Out-of-fold first-level predictions (``fusion.train``'s ``oof_predictions.csv``):
        ``patient_id, split, model, modality, p_<class>...``.  Rows with split ``'test'``
        (k-fold) or ``'external'`` (hospital splits) are used; existing ``late_fusion`` rows
        are ignored.  Not modified.
    classes : list of str
        Class names, in ``p_<class>`` order.
    splits : list of fusion.splits.Split
        The first level's folds (positions into ``patient_ids``); the same folds are used here.
    patient_ids : array-like
        Patient id of each dataset row (positions of ``splits``).
    labels : array-like
        Class of each dataset row: an index into ``classes`` or a class name.
    clinical : pandas.DataFrame, optional
        One row per dataset row (``MultimodalDataset.clinical``); None (or no usable
        column): only ``fusion_images`` is produced.
    schema : analysis.schema.Schema, optional
        Variable types and level orders of ``clinical`` (inferred from dtypes without one).
    seed : int
        Seed of the inner cross-validation (fold ``k`` uses ``seed + k``).
    variants : sequence of str
        Subset of :data:`FUSION_VARIANTS`.
    inner : pandas.DataFrame, optional
        Nested first-level predictions (``fusion.train``'s ``nested_predictions.csv``):
        ``patient_id, fold, inner_fold, model, modality, p_<class>...``, where ``fold`` is the
        outer fold whose training patients the inner CNNs were trained and evaluated on.  When
        given, fold ``k``'s second level is trained on these (never on outer out-of-fold
        probabilities, which come from CNNs that saw fold ``k``'s test patients); see the
        module docs.
    calibration : pandas.DataFrame, optional
        The first-level models' predictions for their inner validation patients
        (``validation_predictions.csv``): each fold model is temperature-scaled on them
        before stacking (:func:`calibrate_first_level`), which removes the cross-fold
        calibration drift of stacked out-of-fold predictions.
    inner_calibration : pandas.DataFrame, optional
        Likewise for the nested first-level models of ``inner`` (keyed by ``fold`` and
        ``inner_fold``).
    contributions : bool, default True
        Also compute each test patient's exact Shapley contributions per source.

    Returns
    -------
    LateFusionResult
        ``predictions`` in the prediction-file format (``model = 'late_fusion'``,
        ``modality`` = variant) and ``models`` (chosen ``C`` per fold x variant).

    Raises
    ------
    ConfigError
        Unknown variant, ``'holdout'`` splits, a patient in the test set of two folds; nested
        predictions that miss a fold, include one of its test patients or come from other
        first-level models.
    CohortError
        A label that is not one of ``classes``.

    Notes
    -----
    Method, what is fitted on which patients and the remaining indirect dependence are
    described in the module docstring.  Reference: Wolpert DH. Stacked generalization.
    Neural Networks 1992;5:241-259. doi:10.1016/S0893-6080(05)80023-1.  The logistic
    regression is scikit-learn's ``LogisticRegression`` (lbfgs, multinomial, L2).
    """
    classes = [str(c) for c in classes]
    variants = tuple(variants)
    for v in variants:
        if v not in FUSION_VARIANTS:
            from analysis.errors import did_you_mean

            raise ConfigError(f"unknown late-fusion variant {v!r} (expected: {', '.join(FUSION_VARIANTS)})"
                              f"{did_you_mean(v, FUSION_VARIANTS)}")
    if clinical is None:
        variants = tuple(v for v in variants if v == "fusion_images")
    kinds = {s.kind for s in splits}
    if "holdout" in kinds:
        raise ConfigError("late fusion on a single held-out test set is not supported yet "
                          "(use k-fold cross-validation or --external-hospital)")
    split_name = "external" if kinds == {"hospital"} else "test"

    ids, patients, first, pos, y = patient_index(patient_ids, labels, classes)
    n_classes = len(classes)

    temperatures = None
    if calibration is not None and len(calibration):
        oof, temperatures = calibrate_first_level(oof, calibration, classes)
    if inner is not None and inner_calibration is not None and len(inner_calibration):
        inner, t_inner = calibrate_first_level(inner, inner_calibration, classes)
        temperatures = pd.concat([temperatures, t_inner], ignore_index=True) if temperatures is not None else t_inner
    blocks = _patient_probabilities(oof, classes, split_name)
    clin = None
    if clinical is not None and ("fusion_images_clinical" in variants or "clinical_only" in variants):
        frame = clinical.reset_index(drop=True).iloc[first].reset_index(drop=True)
        types = _variable_types(frame, schema)
        clin = (frame, types) if types else None
    if clin is None:
        variants = tuple(v for v in variants if v == "fusion_images")

    test_of = {}
    for s in splits:
        for p in np.unique(ids[s.test_idx]):
            if p in test_of:
                raise ConfigError(f"patient {p!r} is a test patient of folds {test_of[p]} and {s.fold}")
            test_of[p] = s.fold

    pred_rows, model_rows, contrib_rows = [], [], []
    for s in splits:
        train_p = np.unique(ids[np.concatenate([s.train_idx, s.val_idx]).astype(np.int64)])
        test_p = np.unique(ids[s.test_idx])
        train_mask = np.zeros(len(patients), bool)
        train_mask[[pos[p] for p in train_p]] = True
        test_pos = np.array([pos[p] for p in test_p], dtype=np.int64)
        img = _image_features(blocks, patients, train_mask, y, n_classes) if blocks else None
        if img is not None and inner is not None:
            if not (inner["fold"] == s.fold).any():
                raise ConfigError(f"no nested first-level predictions for fold {s.fold}")
            nested = _inner_blocks(inner, classes, s.fold, train_p, blocks)
            img_train = _image_features(nested, patients, train_mask, y, n_classes)
            img = np.where(train_mask[:, None], img_train, img)
        cx = _clinical_features(clin[0], clin[1], train_mask) if clin is not None else None
        for v in variants:
            parts = {"fusion_images": [img], "fusion_images_clinical": [img, cx], "clinical_only": [cx]}[v]
            if any(p is None for p in parts):
                continue
            X = np.hstack(parts)
            if len(test_pos) == 0:
                continue
            head = fit_head(X[train_mask], y[train_mask], n_classes, seed + s.fold, "lr")
            proba, c, n_inner, reason = head.predict_proba(X[test_pos]), head.chosen, head.inner_folds, head.reason
            out = pd.DataFrame({"patient_id": patients[test_pos], "fold": s.fold, "split": split_name,
                                "y_true": np.asarray(classes, dtype=object)[y[test_pos]], "model": FUSION_MODEL,
                                "modality": v})
            for k, cname in enumerate(classes):
                out[f"p_{cname}"] = proba[:, k]
            pred_rows.append(out)
            if contributions:
                blocks_of = source_blocks(sorted(blocks) if v != "clinical_only" else [], n_classes + 1,
                                          0 if cx is None or v == "fusion_images" else cx.shape[1])
                contrib_rows.append(feature_block_contributions(
                    head.predict_proba, X[test_pos], X[train_mask].mean(axis=0), blocks_of, classes,
                    out[["patient_id", "fold", "split", "model", "modality"]]))
            first_level = "" if v == "clinical_only" else (FIRST_LEVEL_SHARED if inner is None else FIRST_LEVEL_NESTED)
            model_rows.append({"fold": s.fold, "split": split_name, "modality": v, "first_level": first_level, "c": c,
                               "n_train": int(train_mask.sum()), "n_test": int(len(test_pos)),
                               "n_features": int(X.shape[1]), "inner_folds": n_inner, "reason": reason})
    cols = ["patient_id", "fold", "split", "y_true", "model", "modality", *[f"p_{c}" for c in classes]]
    preds = pd.concat(pred_rows, ignore_index=True) if pred_rows else pd.DataFrame(columns=cols)
    rank = {v: i for i, v in enumerate(FUSION_VARIANTS)}
    preds = preds.sort_values(["modality", "fold"], key=lambda s: s.map(rank) if s.name == "modality" else s,
                              kind="stable").reset_index(drop=True)[cols]
    contrib = (pd.concat(contrib_rows, ignore_index=True) if contrib_rows
               else pd.DataFrame(columns=CONTRIBUTION_COLUMNS)) if contributions else None
    return LateFusionResult(preds, pd.DataFrame(model_rows, columns=MODEL_COLUMNS), contrib, temperatures)


def source_blocks(block_keys, width: int, n_clinical: int, offset: int = 0) -> dict:
    """``source -> column indices`` of a fusion design matrix: each first-level block is ``width``
    columns (in ``block_keys`` order, ``(model, modality)`` keys grouped by modality), followed by
    ``n_clinical`` clinical columns (source ``'clinical'``)."""
    out: dict = {}
    for i, key in enumerate(block_keys):
        modality = key[1] if isinstance(key, tuple) else key
        out.setdefault(str(modality), []).extend(range(offset + i * width, offset + (i + 1) * width))
    start = offset + len(block_keys) * width
    if n_clinical:
        out["clinical"] = list(range(start, start + n_clinical))
    return out


def fusion_comparison(predictions: pd.DataFrame, classes, n_boot: int = 2000, seed: int = 0,
                      source: str = "predictions") -> pd.DataFrame:
    """Paired comparisons (:func:`fusion.evaluate.compare_models_delong`) of pairs involving a fusion row.

    Returns the rows of ``compare_models_delong(predictions, ...)`` where ``model_a`` or
    ``model_b`` is ``'late_fusion'`` (fusion variant vs each single modality, and the
    variants against each other); same columns, RangeIndex.  Each pair uses only the
    patients with predictions from both models (``n``).

    Multiplicity: ``p_holm`` is the Holm-adjusted ``p_value`` (``statsmodels``
    ``multipletests(method='holm')``) within one family = all comparisons in this output
    with the same ``split`` and ``class``: the macro-AUC tests of every fusion pair form one
    family, each class's one-vs-rest DeLong tests another.  Pairs without a fusion row are
    not computed, so they are not in the family; NaN p-values are not counted.
    """
    from fusion.evaluate import compare_models_delong

    return compare_models_delong(predictions, classes, n_boot=n_boot, seed=seed, source=source,
                                 pairs=lambda a, b: FUSION_MODEL in (a[0], b[0]))


def late_fusion_heldout(oof: pd.DataFrame, heldout: pd.DataFrame, classes, splits, patient_ids, labels,
                        clinical=None, schema=None, seed: int = 0, variants=FUSION_VARIANTS,
                        calibration: pd.DataFrame | None = None) -> pd.DataFrame:
    """Late fusion of a held-out test set (``--holdout-hospital`` / ``--test-fraction``).

    The second level is fitted once on every development patient (the patients of the
    folds): their features are their out-of-fold CNN probabilities (each fold CNN
    temperature-scaled on its own inner validation patients when ``calibration`` is given)
    and their clinical variables (statistics from the development patients).  It is then
    applied to the held-out patients, whose CNN features are the mean over the fold models
    (``heldout``: the ``'external'`` / ``'holdout'`` rows of :func:`fusion.train._heldout_ensemble`).
    No held-out patient's label or features reach any fitted step.

    Returns prediction rows (``fold = -1``, ``split`` of ``heldout``, ``model = 'late_fusion'``).
    """
    classes = [str(c) for c in classes]
    cols = ["patient_id", "fold", "split", "y_true", "model", "modality", *[f"p_{c}" for c in classes]]
    if heldout is None or heldout.empty:
        return pd.DataFrame(columns=cols)
    split_name = str(heldout["split"].iloc[0])
    if calibration is not None and len(calibration):
        oof, _ = calibrate_first_level(oof, calibration, classes)
    ids, patients, first, pos, y = patient_index(patient_ids, labels, classes)
    n_classes = len(classes)
    dev_p = np.unique(ids[np.concatenate([np.asarray(s.test_idx, dtype=np.int64) for s in splits])])
    held_p = np.unique(heldout["patient_id"].astype(str))
    if set(dev_p) & set(held_p):
        raise ConfigError(f"patient {sorted(set(dev_p) & set(held_p))[0]!r} is both a development and a held-out "
                          "patient")
    train_mask = np.zeros(len(patients), bool)
    train_mask[[pos[p] for p in dev_p]] = True
    test_pos = np.array([pos[p] for p in held_p], dtype=np.int64)
    dev_blocks = _patient_probabilities(oof, classes, "test")
    held_blocks = _patient_probabilities(heldout, classes, split_name)
    blocks = {k: pd.concat([dev_blocks[k], held_blocks.get(k, dev_blocks[k].iloc[:0])]) for k in dev_blocks}
    img = _image_features(blocks, patients, train_mask, y, n_classes) if blocks else None
    cx = None
    if clinical is not None:
        frame = clinical.reset_index(drop=True).iloc[first].reset_index(drop=True)
        types = _variable_types(frame, schema)
        cx = _clinical_features(frame, types, train_mask) if types else None
    rows = []
    for v in variants:
        parts = {"fusion_images": [img], "fusion_images_clinical": [img, cx], "clinical_only": [cx]}[v]
        if any(p is None for p in parts):
            continue
        X = np.hstack(parts)
        head = fit_head(X[train_mask], y[train_mask], n_classes, seed, "lr")
        proba = head.predict_proba(X[test_pos])
        out = pd.DataFrame({"patient_id": patients[test_pos], "fold": -1, "split": split_name,
                            "y_true": np.asarray(classes, dtype=object)[y[test_pos]], "model": FUSION_MODEL,
                            "modality": v})
        for k, c in enumerate(classes):
            out[f"p_{c}"] = proba[:, k]
        rows.append(out)
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)
