"""fusion.evaluate: per model x modality x split metrics and pairwise AUC comparisons."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError
from analysis.metrics import classification_metrics
from analysis.roc import delong_test
from fusion.evaluate import (COMPARISON_COLUMNS, EVALUATION_COLUMNS, FOLD_EVALUATION_COLUMNS,
                             compare_models_delong, evaluate_by_fold, evaluate_predictions)

CLASSES = ["metastatic", "lymphoma", "benign"]


def _frame(n=90, signals=(("2d", 0.4), ("elastography", 2.0)), seed=0, split="test"):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    y[:3] = [0, 1, 2]
    parts = []
    for modality, s in signals:
        logits = rng.normal(size=(n, 3)) + s * np.eye(3)[y]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        d = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "fold": np.arange(n) % 5,
                          "split": split, "y_true": np.array(CLASSES)[y], "model": "resnet18",
                          "modality": modality})
        for j, c in enumerate(CLASSES):
            d[f"p_{c}"] = p[:, j]
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def test_columns_exactly_as_specified_and_one_block_per_group():
    df = pd.concat([_frame(), _frame(seed=1, split="external")], ignore_index=True)
    out = evaluate_predictions(df, CLASSES, n_boot=50)
    assert list(out.columns) == EVALUATION_COLUMNS == [
        "model", "modality", "split", "metric", "class", "estimate", "ci_low", "ci_high", "ci_level", "n",
        "n_patients", "n_boot_valid"]
    assert isinstance(out.index, pd.RangeIndex)
    groups = out[["model", "modality", "split"]].drop_duplicates().apply(tuple, axis=1).tolist()
    assert groups == [("resnet18", "2d", "test"), ("resnet18", "elastography", "test"),
                      ("resnet18", "2d", "external"), ("resnet18", "elastography", "external")]
    # discrimination: 4 + 3 per class; calibration: Brier and ECE overall + per class, intercept and slope per class
    assert len(out) == 4 * (4 + 3 * len(CLASSES) + 2 + 4 * len(CLASSES))


def test_each_group_equals_classification_metrics_on_that_group():
    df = _frame()
    out = evaluate_predictions(df, CLASSES, n_boot=100, seed=3)
    g = df[df.modality == "elastography"]
    ref = classification_metrics(g.y_true, g[[f"p_{c}" for c in CLASSES]].to_numpy(), CLASSES,
                                 g.patient_id.to_numpy(), n_boot=100, seed=3)
    got = out[out.modality == "elastography"].reset_index(drop=True)
    cols = ["metric", "class", "estimate", "ci_low", "ci_high", "n", "n_boot_valid"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])
    auc = out.set_index(["modality", "metric", "class"])["estimate"]
    assert auc[("elastography", "auc", "")] > auc[("2d", "auc", "")]


def test_several_rows_per_patient_are_resampled_together():
    df = _frame()
    once = evaluate_predictions(df, CLASSES, n_boot=200, seed=1)
    twice = evaluate_predictions(pd.concat([df, df], ignore_index=True), CLASSES, n_boot=200, seed=1)
    np.testing.assert_allclose(twice.ci_high - twice.ci_low, once.ci_high - once.ci_low, rtol=1e-12)
    assert (twice.n == 2 * once.n).all()


def test_input_frame_not_modified():
    df = _frame()
    before = df.copy()
    evaluate_predictions(df, CLASSES, n_boot=10)
    compare_models_delong(df, CLASSES, n_boot=10)
    pd.testing.assert_frame_equal(df, before)


def test_missing_probability_column_is_named_with_suggestion():
    df = _frame().rename(columns={"p_benign": "p_benigne"})
    with pytest.raises(CohortError, match=r"column 'p_benign': missing column.*did you mean 'p_benigne'"):
        evaluate_predictions(df, CLASSES)


def test_unknown_label_reports_csv_row_and_column():
    df = _frame()
    df.loc[4, "y_true"] = "Benign"
    with pytest.raises(CohortError, match=r"oof\.csv: row 6, column 'y_true': unknown class 'Benign'.*"
                                          r"did you mean 'benign'"):
        evaluate_predictions(df, CLASSES, source="oof.csv")
    df = _frame()
    df.loc[7, "p_lymphoma"] = np.nan
    with pytest.raises(CohortError, match=r"row 9, column 'p_lymphoma'"):
        evaluate_predictions(df, CLASSES, source="oof.csv")


def test_per_class_comparison_is_delong_on_the_shared_patients():
    df = _frame()
    out = compare_models_delong(df, CLASSES, n_boot=200)
    assert list(out.columns) == COMPARISON_COLUMNS
    assert len(out) == 1 + len(CLASSES)                     # one pair: macro + per class
    a, b = df[df.modality == "2d"], df[df.modality == "elastography"]
    for j, c in enumerate(CLASSES):
        row = out[out["class"] == c].iloc[0]
        t = delong_test(a.y_true == c, a[f"p_{c}"], b[f"p_{c}"])
        assert row.p_value == pytest.approx(t.p_value, rel=1e-12)
        assert row.auc_a == pytest.approx(t.details["auc_a"], rel=1e-12)
        assert row.n == len(a)
    macro = out[out["class"] == ""].iloc[0]
    assert macro.auc_b > macro.auc_a and macro.p_value < 0.01 and macro.reason == ""


def test_identical_models_give_p_one_and_only_common_patients_are_paired():
    df = _frame(signals=(("2d", 1.0),))
    twin = df.copy()
    twin["modality"] = "cdfi"
    twin = twin.iloc[10:]                                   # 10 patients lack cdfi
    out = compare_models_delong(pd.concat([df, twin], ignore_index=True), CLASSES, n_boot=100)
    assert (out.n == len(df) - 10).all()
    assert (out.p_value == 1.0).all()
    assert (out.difference == 0.0).all()


def test_evaluate_imports_without_torch():
    code = "import sys, fusion.evaluate; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _hospital_frame(n=120, seed=5):
    """Leave-one-hospital-out predictions: split 'external', fold = the held-out hospital (0, 1, 2)."""
    df = _frame(n=n, seed=seed, split="external")
    df["fold"] = df["patient_id"].str[1:].astype(int) % 3
    return df


def test_by_fold_rows_equal_the_metrics_of_each_held_out_hospital_alone():
    df = _hospital_frame()
    out = evaluate_by_fold(df, CLASSES, n_boot=60, seed=2)
    assert list(out.columns) == FOLD_EVALUATION_COLUMNS == [*EVALUATION_COLUMNS[:3], "fold",
                                                            *EVALUATION_COLUMNS[3:]]
    keys = out[["model", "modality", "split", "fold"]].drop_duplicates().apply(tuple, axis=1).tolist()
    assert keys == [("resnet18", m, "external", k) for m in ("2d", "elastography") for k in (0, 1, 2)]
    for (modality, fold), got in out.groupby(["modality", "fold"]):
        alone = evaluate_predictions(df[(df.modality == modality) & (df.fold == fold)], CLASSES, n_boot=60, seed=2)
        pd.testing.assert_frame_equal(got.drop(columns="fold").reset_index(drop=True), alone)
    # the pooled metrics (metrics.csv) are unchanged: one block per model x modality x split, fold ignored
    pooled = evaluate_predictions(df, CLASSES, n_boot=60, seed=2)
    pd.testing.assert_frame_equal(pooled, evaluate_predictions(df.assign(fold=0), CLASSES, n_boot=60, seed=2))
    assert (pooled.n_patients == 120).all() and (out.n_patients == 40).all()


def test_by_fold_is_empty_without_several_external_folds():
    cv = _frame()                                           # split 'test': out-of-fold CV, not per fold
    assert evaluate_by_fold(cv, CLASSES, n_boot=10).empty
    one = _frame(split="external").assign(fold=-1)          # one held-out hospital (fold-model ensemble)
    out = evaluate_by_fold(one, CLASSES, n_boot=10)
    assert out.empty and list(out.columns) == FOLD_EVALUATION_COLUMNS
    both = pd.concat([cv, _hospital_frame()], ignore_index=True)
    assert set(evaluate_by_fold(both, CLASSES, n_boot=0)["split"]) == {"external"}
    with pytest.raises(CohortError, match="column 'fold'"):
        evaluate_by_fold(cv.drop(columns="fold"), CLASSES)


def test_n_patients_counts_patients_not_prediction_rows():
    df = _frame(n=60)
    two_images = pd.concat([df, df.assign(**{f"p_{c}": df[f"p_{c}"] * 0.9 + 0.1 / 3 for c in CLASSES})],
                           ignore_index=True)
    out = evaluate_predictions(two_images, CLASSES, n_boot=20)
    assert (out.n == 120).all() and (out.n_patients == 60).all()
    part = two_images[~((two_images.modality == "elastography") & two_images.patient_id.isin(["P000", "P001"]))]
    got = evaluate_predictions(part, CLASSES, n_boot=0).groupby("modality")["n_patients"].first()
    assert got.to_dict() == {"2d": 60, "elastography": 58}


def test_p_holm_is_multipletests_holm_within_each_split_and_class():
    from statsmodels.stats.multitest import multipletests

    three = (("2d", 0.3), ("cdfi", 0.6), ("elastography", 2.0))
    df = pd.concat([_frame(signals=three), _frame(signals=three, seed=1, split="external")], ignore_index=True)
    out = compare_models_delong(df, CLASSES, n_boot=100)
    assert list(out.columns) == COMPARISON_COLUMNS
    assert COMPARISON_COLUMNS.index("p_holm") == COMPARISON_COLUMNS.index("p_value") + 1
    for (split, cls), fam in out.groupby(["split", "class"]):
        assert len(fam) == 3                                # three pairs per family
        np.testing.assert_allclose(fam.p_holm, multipletests(fam.p_value, method="holm")[1], rtol=1e-12)
    assert (out.p_holm >= out.p_value).all() and (out.p_holm > out.p_value).any()
    # only the pairs computed form the family
    one = compare_models_delong(df, CLASSES, n_boot=100, pairs=lambda a, b: {a[1], b[1]} == {"2d", "cdfi"})
    np.testing.assert_allclose(one.p_holm, one.p_value, rtol=1e-12)


def test_p_holm_keeps_nan_and_does_not_count_it():
    from statsmodels.stats.multitest import multipletests

    df = _frame(signals=(("2d", 0.3), ("cdfi", 0.6), ("elastography", 2.0), ("contrast", 1.0)))
    lymphoma = df[(df.modality == "2d") & (df.y_true == "lymphoma")].patient_id
    df = df[~((df.modality == "cdfi") & df.patient_id.isin(lymphoma.iloc[1:]))]   # cdfi: one lymphoma patient
    out = compare_models_delong(df, CLASSES, n_boot=50)
    fam = out[out["class"] == "lymphoma"]
    nan = fam.p_value.isna()
    assert len(fam) == 6 and nan.sum() == 3 and fam.p_holm[nan].isna().all()   # the three pairs with cdfi
    np.testing.assert_allclose(fam.p_holm[~nan], multipletests(fam.p_value[~nan], method="holm")[1], rtol=1e-12)
    assert not np.allclose(fam.p_holm[~nan], multipletests(fam.p_value.fillna(1.0), method="holm")[1][~nan])
