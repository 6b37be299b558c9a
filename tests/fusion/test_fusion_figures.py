"""fusion.figures: every figure shows the numbers of analysis/fusion.evaluate, and is reproducible.

(Named test_fusion_figures.py, not test_figures.py: tests/ has no __init__.py files, so two test
modules with one basename cannot both be collected in the default "prepend" import mode.)
"""
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis.errors import CohortError, UndefinedMetricWarning
from analysis.roc import roc_auc
from fusion.evaluate import evaluate_predictions
from fusion.figures import (_roc_points, calibration_plot, confusion_matrices, learning_curves, metrics_plot,
                            roc_curves, save_report_figures)

CLASSES = ["metastatic", "lymphoma", "benign"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_predictions(n=45, models=("resnet18", "densenet121"), modalities=("2d", "elastography"),
                     splits=("test",), seed=0):
    """Seeded synthetic prediction frame in the oof_predictions.csv layout."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    frames = []
    for split in splits:
        for mi, model in enumerate(models):
            for di, modality in enumerate(modalities):
                logits = rng.normal(size=(n, len(CLASSES)))
                logits[np.arange(n), y] += 0.7 + 0.8 * di + 0.3 * mi
                p = np.exp(logits)
                p /= p.sum(axis=1, keepdims=True)
                df = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)],
                                   "fold": np.arange(n) % 3 if split == "test" else -1, "split": split,
                                   "y_true": np.asarray(CLASSES)[y], "model": model, "modality": modality})
                for j, c in enumerate(CLASSES):
                    df[f"p_{c}"] = p[:, j]
                frames.append(df)
    return pd.concat(frames, ignore_index=True)


def make_history(models=("resnet18",), modalities=("2d", "cdfi"), folds=3, epochs=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for m in models:
        for d in modalities:
            for f in range(folds):
                e = np.arange(epochs)
                rows.append(pd.DataFrame({"fold": f, "epoch": e, "train_loss": np.exp(-e / 3) + rng.normal(0, .02, epochs),
                                          "val_loss": 0.8 * np.exp(-e / 3) + 0.02 * e + rng.normal(0, .03, epochs),
                                          "modality": d, "model": m}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def predictions():
    return make_predictions()


@pytest.fixture(scope="module")
def metrics(predictions):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return evaluate_predictions(predictions, CLASSES, n_boot=50, seed=0)


def _plot_axes(fig):
    return [ax for ax in fig.axes if ax.axison]


# --------------------------------------------------------------------------- ROC

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_points_match_sklearn_and_their_area_is_the_mann_whitney_auc(seed):
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40).astype(bool)
    score = np.round(rng.normal(size=40) + y, 1)              # rounded: ties
    fpr, tpr = _roc_points(y, score)
    ref_fpr, ref_tpr, _ = roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, score))


def test_roc_curves_one_panel_per_class_one_line_per_group_with_auc_and_ci(predictions, metrics):
    fig = roc_curves(predictions, CLASSES, metrics=metrics)
    assert isinstance(fig, Figure)
    axes = _plot_axes(fig)
    assert [ax.get_title() for ax in axes] == [f"{c} vs rest" for c in CLASSES]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == len(CLASSES)
    for ax, legend, cls in zip(axes, legends, CLASSES):
        assert len(ax.get_lines()) == 4 + 1                    # 2 models x 2 modalities + chance diagonal
        assert "95% CI" in legend.get_title().get_text()
        texts = [t.get_text() for t in legend.get_texts()]
        assert len(texts) == 4 and all("AUC" in t for t in texts)
        for text in texts:                                     # the numbers are those of metrics.csv
            name, rest = text.split(": AUC ")
            model, modality = name.split(" · ")
            row = metrics[(metrics.model == model) & (metrics.modality == modality) & (metrics.metric == "auc")
                          & (metrics["class"] == cls)].iloc[0]
            est, lo, hi = map(float, re.match(r"([\d.]+) \(([\d.]+)–([\d.]+)\)", rest).groups())
            assert est == pytest.approx(row.estimate, abs=0.005)
            assert (lo, hi) == pytest.approx((row.ci_low, row.ci_high), abs=0.005)
    assert "split: test" in fig._suptitle.get_text()


def test_roc_curve_area_equals_the_auc_in_the_legend(predictions, metrics):
    fig = roc_curves(predictions, CLASSES, metrics=metrics)
    ax = _plot_axes(fig)[0]
    line = ax.get_lines()[1]                                   # first group (after the diagonal)
    sub = predictions[(predictions.model == "resnet18") & (predictions.modality == "2d")]
    area = np.trapezoid(line.get_ydata(), line.get_xdata())
    assert area == pytest.approx(roc_auc(sub.y_true == CLASSES[0], sub[f"p_{CLASSES[0]}"]))


def test_roc_curves_computes_cis_itself_without_metrics(predictions):
    fig = roc_curves(predictions, CLASSES, n_boot=30)
    texts = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert all(re.search(r"AUC [\d.]+ \([\d.]+–[\d.]+\)", t) for t in texts)


def test_several_splits_need_a_split_argument_and_unknown_splits_are_named():
    preds = make_predictions(n=30, models=("resnet18",), modalities=("2d",), splits=("test", "external"))
    with pytest.raises(CohortError, match=r"several splits \(test, external\)"):
        confusion_matrices(preds, CLASSES)
    with pytest.raises(CohortError, match="did you mean 'external'"):
        confusion_matrices(preds, CLASSES, split="externl")
    fig = confusion_matrices(preds, CLASSES, split="external")
    assert "split: external" in fig._suptitle.get_text()


def test_metrics_without_the_needed_auc_row_is_a_clear_error(predictions, metrics):
    partial = metrics[metrics.model != "densenet121"]
    with pytest.raises(CohortError, match="no AUC row for model 'densenet121'"):
        roc_curves(predictions, CLASSES, metrics=partial)


# --------------------------------------------------------------------------- confusion, calibration

def test_confusion_matrices_cells_are_row_shares_and_counts(predictions):
    from sklearn.metrics import confusion_matrix

    fig = confusion_matrices(predictions, CLASSES)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 4
    ax = images[0]                                             # resnet18 x 2d (first row, first column)
    sub = predictions[(predictions.model == "resnet18") & (predictions.modality == "2d")]
    pred = np.asarray(CLASSES)[np.argmax(sub[[f"p_{c}" for c in CLASSES]].to_numpy(), axis=1)]
    cm = confusion_matrix(sub.y_true, pred, labels=CLASSES)
    cells = [t.get_text().split("\n") for t in ax.texts]
    counts = np.array([int(c[1]) for c in cells]).reshape(3, 3)
    shares = np.array([float(c[0]) for c in cells]).reshape(3, 3)
    np.testing.assert_array_equal(counts, cm)
    np.testing.assert_allclose(shares, cm / cm.sum(axis=1, keepdims=True), atol=0.005)
    np.testing.assert_allclose(ax.images[0].get_array(), cm / cm.sum(axis=1, keepdims=True))


def test_calibration_plot_points_are_the_reliability_curve(predictions):
    from sklearn.calibration import calibration_curve

    fig = calibration_plot(predictions, CLASSES, n_bins=5, strategy="uniform")
    axes = _plot_axes(fig)
    assert len(axes) == 3
    assert all(len(ax.get_lines()) == 4 + 1 for ax in axes)
    sub = predictions[(predictions.model == "resnet18") & (predictions.modality == "2d")]
    obs, mean_p = calibration_curve(sub.y_true == CLASSES[1], sub[f"p_{CLASSES[1]}"], n_bins=5)
    line = axes[1].get_lines()[1]
    np.testing.assert_allclose(line.get_xdata(), mean_p)
    np.testing.assert_allclose(line.get_ydata(), obs)
    legend = [ax.get_legend() for ax in fig.axes if ax.get_legend()][0]
    assert "calibration slope (95% CI)" in legend.get_title().get_text()


# --------------------------------------------------------------------------- metrics, learning curves

def test_metrics_plot_dots_are_the_estimates(metrics):
    fig = metrics_plot(metrics)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Macro AUC (one vs rest)", "Balanced accuracy", "Macro F1"]
    dots = sorted(float(line.get_xdata()[0]) for line in axes[1].get_lines() if line.get_marker() == "o")
    expected = metrics[(metrics.metric == "balanced_accuracy")].estimate
    assert dots == pytest.approx(sorted(expected))
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == ["2d · resnet18", "2d · densenet121", "elastography · resnet18", "elastography · densenet121"]


def test_metrics_plot_says_not_computed_for_nan_estimates(metrics):
    m = metrics.copy()
    m.loc[(m.metric == "f1") & (m.model == "resnet18") & (m.modality == "2d"), ["estimate", "ci_low", "ci_high"]] = np.nan
    fig = metrics_plot(m)
    assert [t.get_text() for t in fig.axes[2].texts] == ["not computed"]


def test_learning_curves_mark_the_selected_epoch():
    history = make_history()
    fig = learning_curves(history)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["resnet18 · 2d", "resnet18 · cdfi"]
    for ax, modality in zip(axes, ["2d", "cdfi"]):
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        assert len(stars) == 3                                 # one per fold
        assert len(ax.get_lines()) == 3 * 3                    # train, val, star per fold
        for fold, star in enumerate(stars):
            sub = history[(history.modality == modality) & (history.fold == fold)]
            assert star.get_xdata()[0] == sub.epoch.iloc[int(np.argmin(sub.val_loss))]
    given = history.assign(best_epoch=2)
    star = [line for line in learning_curves(given).axes[0].get_lines() if line.get_marker() == "*"][0]
    assert star.get_xdata()[0] == 2


def test_learning_curves_missing_column_is_named():
    with pytest.raises(CohortError, match="column 'val_loss'.*did you mean"):
        learning_curves(make_history().rename(columns={"val_loss": "val_los"}))


# --------------------------------------------------------------------------- report

def test_save_report_figures_writes_pngs_reproducibly_and_leaves_inputs_alone(tmp_path):
    preds = make_predictions(n=30, models=("resnet18",), modalities=("2d", "cdfi"), splits=("test", "external"))
    history = make_history()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        metrics = evaluate_predictions(preds, CLASSES, n_boot=20)
    copies = preds.copy(), metrics.copy(), history.copy()
    paths = save_report_figures(preds, metrics, CLASSES, tmp_path / "a", history=history)
    assert [p.name for p in paths] == ["roc_test.png", "confusion_test.png", "calibration_test.png",
                                       "roc_external.png", "confusion_external.png", "calibration_external.png",
                                       "metrics.png", "learning_curves.png"]
    assert all(p.parent == tmp_path / "a" / "figures" for p in paths)
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    again = save_report_figures(preds, metrics, CLASSES, tmp_path / "b", history=history)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    for before, after in zip(copies, (preds, metrics, history)):
        pd.testing.assert_frame_equal(before, after)
    assert len(save_report_figures(preds, metrics, CLASSES, tmp_path / "c")) == 7
