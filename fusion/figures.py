"""Figures of a training run: ROC curves, confusion matrices, calibration, metrics, learning curves.

Inputs are the frames ``fusion.train`` writes (no torch is imported here):

* predictions (``oof_predictions.csv``): ``patient_id, fold, split, y_true, model, modality,
  p_<class>...``;
* metrics (``metrics.csv``, :func:`fusion.evaluate.evaluate_predictions`): ``model, modality,
  split, metric, class, estimate, ci_low, ci_high, ci_level, n, n_boot_valid``;
* history: ``fold, epoch, train_loss, val_loss, modality, model`` (optionally ``best_epoch``).

Every number on a figure comes from :mod:`analysis` (:mod:`analysis.metrics` through
:mod:`fusion.evaluate`, :mod:`analysis.calibration`) and is rounded by
:mod:`analysis.formatting`; an AUC is never shown without its confidence interval.
Style, palette and reproducible saving are those of :mod:`analysis.figures`.
Figures that depend on the split (ROC, confusion, calibration) show one split each, named in
the title; :func:`save_report_figures` writes one file per split.
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.calibration import calibration_ovr, reliability_curve
from analysis.errors import CohortError, UndefinedMetricWarning, did_you_mean, require_columns
from analysis.figures import PALETTE, _finish, _pct, figure_style, new_figure
from analysis.formatting import MISSING, format_ci, format_number
from fusion.evaluate import _validate, evaluate_predictions

__all__ = ["roc_curves", "confusion_matrices", "calibration_plot", "metrics_plot", "learning_curves",
           "save_report_figures"]

_LINESTYLES = ("-", "--", ":", "-.")
_SPLIT_TITLES = {"test": "out-of-fold", "external": "held-out hospital", "holdout": "held-out patients"}
_METRIC_PANELS = (("auc", "Macro AUC (one vs rest)"), ("balanced_accuracy", "Balanced accuracy"),
                  ("f1", "Macro F1"))
HISTORY_COLUMNS = ("fold", "epoch", "train_loss", "val_loss", "modality", "model")


# --------------------------------------------------------------------------- helpers

def _split_frame(frame: pd.DataFrame, split, source: str):
    """The rows of one split; ``split=None`` is allowed only when there is one split."""
    splits = [str(s) for s in pd.unique(frame["split"].astype(str))]
    if split is None:
        if len(splits) > 1:
            raise CohortError(f"the predictions hold several splits ({', '.join(splits)}): pass split=... "
                              f"(one figure per split; save_report_figures writes them all)",
                              file=source, column="split")
        split = splits[0]
    split = str(split)
    if split not in splits:
        raise CohortError(f"no predictions for split '{split}' (present: {', '.join(splits)})"
                          f"{did_you_mean(split, splits)}", file=source, column="split")
    return split, (frame["split"].astype(str) == split).to_numpy()


def _split_title(split: str) -> str:
    return f"split: {split}" + (f" ({_SPLIT_TITLES[split]})" if split in _SPLIT_TITLES else "")


def _groups(frame: pd.DataFrame, mask: np.ndarray):
    """(model, modality) pairs of the masked rows in order of first appearance."""
    sub = frame.loc[mask, ["model", "modality"]].astype(str)
    return list(dict.fromkeys(zip(sub["model"], sub["modality"])))


def _group_names(groups) -> dict:
    """Short display names: drop the model or modality when it is the same for every group."""
    models = {m for m, _ in groups}
    modalities = {d for _, d in groups}
    names = {}
    for m, d in groups:
        if len(models) == 1 and len(modalities) > 1:
            names[(m, d)] = d
        elif len(modalities) == 1 and len(models) > 1:
            names[(m, d)] = m
        else:
            names[(m, d)] = f"{m} · {d}"
    return names


def _common_suffix(groups) -> str:
    models = sorted({m for m, _ in groups})
    modalities = sorted({d for _, d in groups})
    if len(groups) == 1:
        return f"{models[0]} · {modalities[0]}"
    if len(models) == 1:
        return models[0]
    if len(modalities) == 1:
        return modalities[0]
    return ""


def _style(i: int):
    """Colour and line style of the i-th group: 8 Okabe–Ito colours, then a new dash pattern."""
    return PALETTE[i % len(PALETTE)], _LINESTYLES[(i // len(PALETTE)) % len(_LINESTYLES)]


def _roc_points(y: np.ndarray, score: np.ndarray):
    """Empirical ROC curve (false- and true-positive rates at every distinct threshold).

    Starts at (0, 0), ends at (1, 1); tied scores move diagonally, so the trapezoidal area
    equals the Mann–Whitney AUC with ties counted 1/2 (:func:`analysis.roc.roc_auc`).
    """
    y = np.asarray(y, bool)
    score = np.asarray(score, float)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]     # last index of each distinct score
    tp = np.cumsum(yy)[last]
    fp = np.cumsum(~yy)[last]
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n], np.r_[0.0, tp / p]


def _metric_lookup(metrics: pd.DataFrame):
    frame = metrics.copy()
    for col in ("model", "modality", "split", "metric"):
        frame[col] = frame[col].astype(str)
    frame["class"] = frame["class"].fillna("").astype(str)
    cols = ["estimate", "ci_low", "ci_high", "ci_level"]
    keys = zip(frame["model"], frame["modality"], frame["split"], frame["metric"], frame["class"])
    return {key: r for key, r in zip(keys, frame[cols].itertuples(index=False))}


def _check_metrics(metrics, source="metrics"):
    require_columns(metrics, ("model", "modality", "split", "metric", "class", "estimate", "ci_low",
                              "ci_high", "ci_level"), "metrics", file=source)


def _panels_with_legends(k: int, n_entries: int, panel: float = 3.1):
    """A figure with ``k`` square plotting panels over ``k`` legend-only panels."""
    legend_h = 0.12 + 0.15 * (n_entries + 1)
    fig = new_figure(0.5 + panel * k, 0.75 + panel * 0.92 + legend_h)
    axes = fig.subplots(2, k, squeeze=False, height_ratios=[panel * 0.92, legend_h])
    for a in axes[1]:
        a.set_axis_off()
    return fig, axes[0], axes[1]


def _legend_in(ax, handles, title: str):
    ax.legend(handles=handles, loc="upper left", fontsize=6.8, title=title, title_fontsize=7,
              alignment="left", handlelength=2.0, borderaxespad=0.0, borderpad=0.0, labelspacing=0.3)


# --------------------------------------------------------------------------- ROC

def roc_curves(predictions: pd.DataFrame, classes, path=None, *, split: str | None = None,
               metrics: pd.DataFrame | None = None, n_boot: int = 2000, seed: int = 0,
               source: str = "predictions") -> Figure:
    """One-vs-rest ROC curves of every class, one line per model x modality.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Prediction frame (``patient_id, split, y_true, model, modality, p_<class>...``).
        Not modified.
    classes : list of str
        Class names (``p_<class>`` columns), one panel each.
    path : str or Path, optional
        Also write the figure there (png/svg/pdf).
    split : str, optional
        Which split to draw; required when the frame holds several.
    metrics : pandas.DataFrame, optional
        The matching :func:`fusion.evaluate.evaluate_predictions` frame (``metrics.csv``),
        source of each AUC and its confidence interval.  Default: computed here with
        ``n_boot`` patient-level bootstrap resamples and ``seed``.
    n_boot, seed : int
        Used only when ``metrics`` is not given.
    source : str
        Name of the predictions in error messages.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per class; each legend entry reads ``"<model · modality>: AUC 0.83
        (95% CI 0.78–0.88)"``.

    Notes
    -----
    Curves are the empirical ROC of ``p_<class>`` for ``y_true == class`` over all rows of
    the split (ties move diagonally, so the area under each drawn curve is the AUC in the
    legend).  The AUC, its percentile-bootstrap CI over patients and its definition are
    those of :func:`analysis.metrics.classification_metrics`.
    """
    frame, classes, codes, proba = _validate(predictions, classes, source)
    split, mask = _split_frame(frame, split, source)
    groups = _groups(frame, mask)
    names = _group_names(groups)
    if metrics is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            metrics = evaluate_predictions(frame.loc[mask], classes, n_boot=n_boot, seed=seed, source=source)
    _check_metrics(metrics)
    lookup = _metric_lookup(metrics)
    k = len(classes)
    with figure_style():
        fig, axes, legend_axes = _panels_with_legends(k, len(groups))
        for j, (a, cls) in enumerate(zip(axes, classes)):
            a.plot([0, 1], [0, 1], color=".7", lw=0.8, ls=(0, (4, 3)), zorder=0)
            handles = []
            for i, (model, modality) in enumerate(groups):
                rows = mask & (frame["model"].astype(str) == model).to_numpy() & \
                    (frame["modality"].astype(str) == modality).to_numpy()
                y = codes[rows] == j
                colour, ls = _style(i)
                key = (model, modality, split, "auc", cls)
                if key not in lookup:
                    raise CohortError(f"metrics have no AUC row for model '{model}', modality '{modality}', "
                                      f"split '{split}', class '{cls}' (were they computed from these "
                                      f"predictions?)", file="metrics")
                r = lookup[key]
                text = (f"{names[(model, modality)]}: AUC {format_number(r.estimate, 2)} "
                        f"({format_ci(r.ci_low, r.ci_high, 2)})")
                ci_title = f"AUC ({_pct(r.ci_level)}% CI)"
                if y.all() or not y.any():
                    handles.append(Line2D([], [], color=colour, ls=ls, label=f"{text}, undefined"))
                    continue
                fpr, tpr = _roc_points(y, proba[rows, j])
                (line,) = a.plot(fpr, tpr, color=colour, ls=ls, lw=1.4, label=text, drawstyle="default")
                handles.append(line)
            a.set_xlim(-0.01, 1.01)
            a.set_ylim(-0.01, 1.01)
            a.set_aspect("equal")
            a.set_xticks([0, 0.25, 0.5, 0.75, 1])
            a.set_yticks([0, 0.25, 0.5, 0.75, 1])
            a.set_xlabel("1 − specificity")
            a.set_xticklabels(["0", "0.25", "0.5", "0.75", "1"])
            a.set_yticklabels(["0", "0.25", "0.5", "0.75", "1"])
            if j == 0:
                a.set_ylabel("Sensitivity")
            a.set_title(f"{cls} vs rest")
            _legend_in(legend_axes[j], handles, ci_title)
        suffix = _common_suffix(groups)
        fig.suptitle(f"ROC curves, {_split_title(split)}" + (f" — {suffix}" if suffix else ""))
    return _finish(fig, path)


# --------------------------------------------------------------------------- confusion matrices

def confusion_matrices(predictions: pd.DataFrame, classes, path=None, *, split: str | None = None,
                       source: str = "predictions") -> Figure:
    """Row-normalised confusion matrix (with counts) of every model x modality.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Prediction frame; not modified.
    classes : list of str
        Class names, in row/column order.
    path : str or Path, optional
        Also write the figure there.
    split : str, optional
        Which split; required when the frame holds several.
    source : str
        Name of the predictions in error messages.

    Returns
    -------
    matplotlib.figure.Figure
        A grid of heatmaps, rows = modalities, columns = models (one shared colour bar).
        Each cell shows the share of the true class (row) predicted as the column class and,
        below it, the count.

    Notes
    -----
    Predicted class = ``argmax p_<class>`` (ties: first class), as in
    :func:`analysis.metrics.classification_metrics`; so the diagonal shares are the
    per-class sensitivities of ``metrics.csv``.  Every prediction row counts once.
    """
    frame, classes, codes, proba = _validate(predictions, classes, source)
    split, mask = _split_frame(frame, split, source)
    groups = _groups(frame, mask)
    models = list(dict.fromkeys(m for m, _ in groups))
    modalities = list(dict.fromkeys(d for _, d in groups))
    k = len(classes)
    pred = np.argmax(proba, axis=1)
    cell = 0.42 + 0.42 * k
    group_of = frame["model"].astype(str) + "\0" + frame["modality"].astype(str)
    sizes = set(group_of[mask].value_counts().tolist())
    same_n = len(sizes) == 1
    with figure_style():
        fig = new_figure(max(2.0 + (cell + 0.2) * len(models) + 0.9, 4.6),
                         1.3 + (cell + 0.25 + (0 if same_n else 0.2)) * len(modalities) + 0.6)
        axes = fig.subplots(len(modalities), len(models), squeeze=False)
        image = None
        for r_i, modality in enumerate(modalities):
            for c_i, model in enumerate(models):
                a = axes[r_i, c_i]
                rows = mask & (frame["model"].astype(str) == model).to_numpy() & \
                    (frame["modality"].astype(str) == modality).to_numpy()
                if not rows.any():
                    a.set_axis_off()
                    continue
                cm = np.bincount(codes[rows] * k + pred[rows], minlength=k * k).reshape(k, k)
                totals = cm.sum(axis=1, keepdims=True)
                with np.errstate(invalid="ignore", divide="ignore"):
                    share = np.where(totals > 0, cm / np.maximum(totals, 1), np.nan)
                image = a.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="equal")
                for t in range(k):
                    for p in range(k):
                        value = share[t, p]
                        colour = "white" if np.isfinite(value) and value > 0.6 else ".1"
                        a.text(p, t, f"{format_number(value, 2) if np.isfinite(value) else MISSING}\n"
                                     f"{cm[t, p]}", ha="center", va="center", fontsize=7, color=colour,
                               linespacing=1.15)
                a.set_xticks(range(k))
                a.set_yticks(range(k))
                a.set_xticklabels(classes if r_i == len(modalities) - 1 else [], rotation=30, ha="right",
                                  rotation_mode="anchor")
                a.set_yticklabels(classes if c_i == 0 else [])
                a.tick_params(length=0)
                for side in a.spines.values():
                    side.set_visible(False)
                n_text = f"n = {int(cm.sum())}"
                if r_i == 0:
                    a.set_title(f"{model}\n{n_text}" if not same_n else model, fontsize=9)
                elif not same_n:
                    a.set_title(n_text, fontsize=7.5, fontweight="normal")
                if c_i == 0:
                    a.set_ylabel(modality, fontweight="bold", fontsize=9.5, labelpad=6)
        if image is not None:
            bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7, aspect=25, pad=0.02)
            bar.set_label("Share of true class (row)")
            bar.outline.set_visible(False)
        fig.supylabel("True class", fontsize=9)
        fig.supxlabel("Predicted class", fontsize=9)
        fig.suptitle(f"Confusion matrices, {_split_title(split)}"
                     + (f"\n{min(sizes)} predictions per model" if same_n else ""))
    return _finish(fig, path)


# --------------------------------------------------------------------------- calibration

def calibration_plot(predictions: pd.DataFrame, classes, path=None, *, split: str | None = None,
                     n_bins: int = 10, strategy: str = "quantile", source: str = "predictions") -> Figure:
    """Reliability curves (one vs rest) of every class, one line per model x modality.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Prediction frame; not modified.  Probabilities must lie in [0, 1].
    classes : list of str
        Class names, one panel each.
    path : str or Path, optional
        Also write the figure there.
    split : str, optional
        Which split; required when the frame holds several.
    n_bins : int, default 10
        Probability bins of :func:`analysis.calibration.reliability_curve`.
    strategy : {'quantile', 'uniform'}, default 'quantile'
        Bins with equal numbers of predictions (each point equally precise), or
        equal-width bins.
    source : str
        Name of the predictions in error messages.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per class: observed fraction against mean predicted probability of each
        non-empty bin, the diagonal of perfect calibration, and legend entries with the
        Brier score and the calibration slope with its Wald CI
        (:func:`analysis.calibration.calibration_ovr`).
    """
    frame, classes, codes, proba = _validate(predictions, classes, source)
    split, mask = _split_frame(frame, split, source)
    groups = _groups(frame, mask)
    names = _group_names(groups)
    k = len(classes)
    with figure_style():
        fig, axes, legend_axes = _panels_with_legends(k, len(groups))
        handles = {j: [] for j in range(k)}
        ci_title = "Brier score; calibration slope"
        for a in axes:
            a.plot([0, 1], [0, 1], color=".7", lw=0.8, ls=(0, (4, 3)), zorder=0)
        for i, (model, modality) in enumerate(groups):
            rows = mask & (frame["model"].astype(str) == model).to_numpy() & \
                (frame["modality"].astype(str) == modality).to_numpy()
            y_names = np.asarray(classes, dtype=object)[codes[rows]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                summary = calibration_ovr(y_names, proba[rows], classes)
            colour, ls = _style(i)
            for j, cls in enumerate(classes):
                curve = reliability_curve(codes[rows] == j, proba[rows, j], n_bins=n_bins, strategy=strategy)
                curve = curve[curve["n"] > 0]
                s = summary.iloc[j]
                text = (f"{names[(model, modality)]}: {format_number(s['brier'], 3)}; "
                        f"{format_number(s['slope'], 2)} ({format_ci(s['slope_ci_low'], s['slope_ci_high'], 2)})")
                ci_title = f"Brier score; calibration slope ({_pct(s['ci_level'])}% CI)"
                (line,) = axes[j].plot(curve["mean_predicted"], curve["observed_fraction"], color=colour, ls=ls,
                                       marker="o", ms=3.2, lw=1.2, label=text)
                handles[j].append(line)
        for j, (a, cls) in enumerate(zip(axes, classes)):
            a.set_xlim(-0.02, 1.02)
            a.set_ylim(-0.02, 1.02)
            a.set_aspect("equal")
            a.set_xticks([0, 0.25, 0.5, 0.75, 1])
            a.set_yticks([0, 0.25, 0.5, 0.75, 1])
            a.set_xlabel(f"Predicted probability of {cls}")
            if j == 0:
                a.set_ylabel("Observed fraction")
            a.set_title(f"{cls} vs rest")
            _legend_in(legend_axes[j], handles[j], ci_title)
        suffix = _common_suffix(groups)
        fig.suptitle(f"Calibration ({n_bins} {strategy} bins), {_split_title(split)}"
                     + (f" — {suffix}" if suffix else ""))
    return _finish(fig, path)


# --------------------------------------------------------------------------- metrics

def metrics_plot(metrics: pd.DataFrame, path=None, *, source: str = "metrics") -> Figure:
    """Dot-and-whisker plot of macro AUC, balanced accuracy and macro F1 per model x modality.

    Parameters
    ----------
    metrics : pandas.DataFrame
        :func:`fusion.evaluate.evaluate_predictions` frame (``metrics.csv``); not modified.
    path : str or Path, optional
        Also write the figure there.
    source : str
        Name used in error messages.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels (macro AUC, balanced accuracy, macro F1) sharing one row per
        modality x model (grouped by modality); dot = estimate, whisker = CI; one colour per
        split when there are several.  Dotted lines mark chance (AUC 0.5, balanced accuracy
        1/k).  Rows without an estimate say "not computed".
    """
    _check_metrics(metrics, source)
    frame = metrics.copy()
    for col in ("model", "modality", "split", "metric"):
        frame[col] = frame[col].astype(str)
    frame["class"] = frame["class"].fillna("").astype(str)
    frame = frame[frame["class"] == ""]
    if frame.empty:
        raise CohortError("metrics have no macro/overall rows (class == '')", file=source, column="class")
    keys = list(dict.fromkeys(zip(frame["modality"], frame["model"])))
    modalities = list(dict.fromkeys(d for d, _ in keys))
    keys = [(d, m) for d in modalities for (dd, m) in keys if dd == d]
    splits = list(dict.fromkeys(frame["split"]))
    per_class = metrics[(metrics["metric"].astype(str) == "auc") & (metrics["class"].fillna("").astype(str) != "")]
    k = int(per_class["class"].nunique()) if len(per_class) else 0
    ci_level = float(frame["ci_level"].dropna().iloc[0]) if frame["ci_level"].notna().any() else 0.95
    # y positions, with a gap between modalities
    ys, y, labels = {}, 0.0, []
    for i, key in enumerate(keys):
        if i and key[0] != keys[i - 1][0]:
            y += 0.6
        ys[key] = y
        labels.append(f"{key[0]} · {key[1]}")
        y += 1.0
    offsets = {s: (0.0 if len(splits) == 1 else 0.28 * (2 * n / (len(splits) - 1) - 1)) for n, s in enumerate(splits)}
    with figure_style():
        fig = new_figure(1.6 + 2.5 * len(_METRIC_PANELS), 1.3 + 0.27 * (y + 1))
        axes = fig.subplots(1, len(_METRIC_PANELS), sharey=True, squeeze=False)[0]
        for a, (metric, title) in zip(axes, _METRIC_PANELS):
            sub = frame[frame["metric"] == metric]
            values = []
            for s_i, split in enumerate(splits):
                colour = PALETTE[s_i % len(PALETTE)] if len(splits) > 1 else ".15"
                for key in keys:
                    r = sub[(sub["modality"] == key[0]) & (sub["model"] == key[1]) & (sub["split"] == split)]
                    if r.empty:
                        continue
                    r = r.iloc[0]
                    yy = ys[key] + offsets[split]
                    est, lo, hi = float(r["estimate"]), float(r["ci_low"]), float(r["ci_high"])
                    if not np.isfinite(est):
                        a.annotate("not computed", xy=(0.02, yy), xycoords=("axes fraction", "data"), ha="left",
                                   va="center", fontsize=6.5, style="italic", color=colour)
                        continue
                    if np.isfinite(lo) and np.isfinite(hi):
                        a.plot([lo, hi], [yy, yy], color=colour, lw=1.4, solid_capstyle="butt")
                        values += [lo, hi]
                    a.plot([est], [yy], "o", color=colour, ms=4.5, zorder=3)
                    values.append(est)
            chance = 0.5 if metric == "auc" else (1.0 / k if metric == "balanced_accuracy" and k else None)
            if chance is not None:
                a.axvline(chance, color=".6", lw=0.8, ls=":", zorder=0)
                values.append(chance)
            if values:
                lo_v, hi_v = min(values), max(values)
                pad = max(0.03, 0.08 * (hi_v - lo_v))
                a.set_xlim(max(0.0, lo_v - pad), min(1.0, hi_v + pad) if hi_v + pad <= 1.0 else 1.005)
            a.set_title(title)
            a.set_xlabel(f"Estimate ({_pct(ci_level)}% CI)")
            a.xaxis.grid(True)
            a.tick_params(axis="y", length=0)
            a.spines["left"].set_visible(False)
        axes[0].set_yticks([ys[key] for key in keys])
        axes[0].set_yticklabels(labels)
        axes[0].set_ylim(y - 0.4, -0.6)                  # first row on top
        if len(splits) > 1:
            handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], marker="o", ms=4.5, lw=1.4, label=s)
                       for i, s in enumerate(splits)]
            fig.legend(handles=handles, loc="outside lower center", ncols=len(splits), title="split")
            fig.suptitle("Model × modality performance")
        else:
            fig.suptitle(f"Model × modality performance, {_split_title(splits[0])}")
    return _finish(fig, path)


# --------------------------------------------------------------------------- learning curves

def _selected_epoch(sub: pd.DataFrame):
    """The epoch early stopping keeps: ``best_epoch`` if given, else the first minimum of val_loss."""
    if "best_epoch" in sub and sub["best_epoch"].notna().any():
        return int(sub["best_epoch"].dropna().iloc[0])
    val = sub["val_loss"].to_numpy(float)
    if not np.isfinite(val).any():
        return None
    return int(sub["epoch"].to_numpy()[int(np.nanargmin(val))])


def learning_curves(history: pd.DataFrame, path=None, *, source: str = "history") -> Figure:
    """Training and validation loss per epoch for every fold, one panel per model x modality.

    Parameters
    ----------
    history : pandas.DataFrame
        Columns ``fold, epoch, train_loss, val_loss, modality, model`` (one row per epoch of
        each fold model), optionally ``best_epoch`` (the epoch whose weights were kept).
        Not modified.
    path : str or Path, optional
        Also write the figure there.
    source : str
        Name used in error messages.

    Returns
    -------
    matplotlib.figure.Figure
        Grid of panels (rows = modalities, columns = models); one colour per fold, validation
        loss solid, training loss dashed, a star on the selected epoch of each fold.

    Notes
    -----
    Without ``best_epoch`` the selected epoch is the first epoch with the lowest validation
    loss, which is the epoch :class:`fusion.engine.EarlyStopping` keeps with
    ``min_delta = 0``.
    """
    require_columns(history, HISTORY_COLUMNS, "history", file=source)
    if len(history) == 0:
        raise CohortError("history has no rows", file=source)
    frame = history.copy()
    frame["model"] = frame["model"].astype(str)
    frame["modality"] = frame["modality"].astype(str)
    models = list(dict.fromkeys(frame["model"]))
    modalities = list(dict.fromkeys(frame["modality"]))
    folds = sorted(pd.unique(frame["fold"]).tolist())
    panels = [(m, d) for d in modalities for m in models
              if ((frame["model"] == m) & (frame["modality"] == d)).any()]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with figure_style():
        fig = new_figure(max(0.6 + 3.0 * ncols, 5.0), 1.2 + 2.4 * nrows)
        grid = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
        for a in grid.ravel()[len(panels):]:
            a.set_visible(False)
        for p_i, (model, modality) in enumerate(panels):
            r_i, c_i = divmod(p_i, ncols)
            a = grid[r_i, c_i]
            panel = frame[(frame["model"] == model) & (frame["modality"] == modality)]
            for f_i, fold in enumerate(folds):
                sub = panel[panel["fold"] == fold].sort_values("epoch")
                if sub.empty:
                    continue
                colour = PALETTE[f_i % len(PALETTE)]
                a.plot(sub["epoch"], sub["train_loss"], color=colour, ls="--", lw=1.1, alpha=0.85)
                a.plot(sub["epoch"], sub["val_loss"], color=colour, ls="-", lw=1.4)
                best = _selected_epoch(sub)
                if best is not None and (sub["epoch"] == best).any():
                    a.plot([best], [float(sub.loc[sub["epoch"] == best, "val_loss"].iloc[0])], marker="*",
                           ms=9, color=colour, markeredgecolor="white", markeredgewidth=0.6, zorder=4,
                           linestyle="none")
            a.set_title(f"{model} · {modality}", fontsize=8.5)
            a.yaxis.grid(True)
            if c_i == 0:
                a.set_ylabel("Loss")
            if p_i + ncols >= len(panels):
                a.set_xlabel("Epoch")
                a.xaxis.set_tick_params(labelbottom=True)
            a.xaxis.get_major_locator().set_params(integer=True)
        handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], lw=1.4, label=f"fold {f}")
                   for i, f in enumerate(folds)]
        handles += [Line2D([], [], color=".3", ls="-", lw=1.4, label="validation"),
                    Line2D([], [], color=".3", ls="--", lw=1.1, label="training"),
                    Line2D([], [], color=".3", marker="*", ms=9, ls="none", label="selected epoch")]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4 if ncols == 1 else 9))
        fig.suptitle("Learning curves")
    return _finish(fig, path)


# --------------------------------------------------------------------------- all at once

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "split"


def save_report_figures(predictions: pd.DataFrame, metrics: pd.DataFrame, classes, out_dir,
                        history: pd.DataFrame | None = None) -> list[Path]:
    """Write every report figure as PNG (150 dpi) into ``out_dir/figures/``.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``oof_predictions.csv`` frame.
    metrics : pandas.DataFrame
        ``metrics.csv`` frame computed from those predictions (AUC CIs come from here).
    classes : list of str
        Class names.
    out_dir : str or Path
        Run folder; figures go to its ``figures/`` subfolder (created).
    history : pandas.DataFrame, optional
        Per-epoch losses (see :func:`learning_curves`); no learning-curve figure without it.

    Returns
    -------
    list of pathlib.Path
        Files written: ``roc_<split>.png``, ``confusion_<split>.png``,
        ``calibration_<split>.png`` for each split, ``metrics.png`` and
        ``learning_curves.png``.
    """
    folder = Path(out_dir) / "figures"
    splits = [str(s) for s in pd.unique(predictions["split"].astype(str))] if "split" in predictions else [None]
    written = []
    for split in splits:
        tag = _safe(split)
        fig = roc_curves(predictions, classes, folder / f"roc_{tag}.png", split=split, metrics=metrics)
        written.append(folder / f"roc_{tag}.png")
        del fig
        confusion_matrices(predictions, classes, folder / f"confusion_{tag}.png", split=split)
        written.append(folder / f"confusion_{tag}.png")
        calibration_plot(predictions, classes, folder / f"calibration_{tag}.png", split=split)
        written.append(folder / f"calibration_{tag}.png")
    metrics_plot(metrics, folder / "metrics.png")
    written.append(folder / "metrics.png")
    if history is not None:
        learning_curves(history, folder / "learning_curves.png")
        written.append(folder / "learning_curves.png")
    return written
