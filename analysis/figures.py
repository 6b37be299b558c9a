"""Figures of the statistical analysis: forest plot of odds ratios, group distributions.

Also the shared figure machinery used by :mod:`fusion.figures`: one style
(:func:`figure_style`: seaborn "ticks" + "paper" context, DejaVu Sans, no top/right spines),
one colour-blind-safe palette (:data:`PALETTE`, Okabe & Ito 2008) and one way to write files
(:func:`save_figure`: fixed metadata, so the same figure gives the same bytes).

Figures are built on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``: no
global figure registry, nothing shown, nothing left open, safe under the Agg backend in
scripts, tests and worker processes.  Every function returns its ``Figure`` (and writes it
when ``path`` is given); callers may restyle it further.  Inputs are never modified.

Numbers printed on figures go through :mod:`analysis.formatting`, the only place that rounds.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib import rc_context
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .errors import CohortError, did_you_mean, require_columns
from .formatting import format_number, format_sig

__all__ = ["PALETTE", "figure_style", "save_figure", "new_figure", "forest_plot", "group_distribution_plot",
           "decision_curve_plot", "centre_forest_plot"]

#: Okabe–Ito colour-blind-safe palette, ordered so that the first colours contrast most on white
#: (yellow, weakest on white, last).  Okabe M, Ito K. Color Universal Design. 2008.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")

_RC = {
    # seaborn "ticks" style, "paper" context, made explicit so the look does not depend on
    # seaborn's global state or the installed fonts (DejaVu Sans ships with matplotlib)
    "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
    "axes.edgecolor": ".15", "axes.labelcolor": ".15", "text.color": ".15",
    "xtick.color": ".15", "ytick.color": ".15", "xtick.direction": "out", "ytick.direction": "out",
    "axes.spines.top": False, "axes.spines.right": False, "axes.axisbelow": True,
    "axes.grid": False, "grid.color": ".88", "grid.linewidth": 0.6,
    "axes.linewidth": 0.8, "xtick.major.width": 0.8, "ytick.major.width": 0.8,
    "xtick.major.size": 3.5, "ytick.major.size": 3.5, "xtick.minor.size": 2.0, "ytick.minor.size": 2.0,
    "lines.linewidth": 1.4, "lines.markersize": 5.0, "lines.solid_capstyle": "round",
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.0, "axes.titlesize": 9.5, "axes.titleweight": "bold", "axes.labelsize": 9.0,
    "xtick.labelsize": 8.0, "ytick.labelsize": 8.0, "legend.fontsize": 7.5, "legend.title_fontsize": 8.0,
    "legend.frameon": False, "figure.titlesize": 10.5, "figure.titleweight": "bold",
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "image.cmap": "viridis",
    # deterministic output
    "svg.hashsalt": "analysis.figures", "svg.fonttype": "none", "pdf.fonttype": 42, "ps.fonttype": 42,
    "savefig.dpi": 150, "figure.dpi": 100,
}

_METADATA = {
    ".png": {"Software": None},
    ".svg": {"Date": None, "Creator": None},
    ".pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}


def figure_style():
    """Context manager applying the toolkit's figure style (``matplotlib.rc_context``).

    Examples
    --------
    >>> with figure_style():
    ...     fig = new_figure(3, 2)
    """
    return rc_context(_RC)


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A pyplot-free :class:`~matplotlib.figure.Figure` of ``width`` x ``height`` inches.

    Call inside :func:`figure_style` so the style applies.
    """
    return Figure(figsize=(width, height), layout="constrained" if constrained else None)


def save_figure(fig: Figure, path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: png, svg, pdf) reproducibly.

    Timestamps and software versions are left out of the file's metadata and SVG ids are
    salted with a constant, so saving the same figure twice gives identical bytes.  Parent
    folders are created.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with figure_style():
        # bbox "tight": long legends (many model x modality rows) are never clipped
        fig.savefig(path, dpi=dpi, metadata=_METADATA.get(path.suffix.lower()), bbox_inches="tight",
                    pad_inches=0.05)
    return path


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------- forest plot

_OR_COLUMNS = ("model", "outcome_level", "variable", "level", "odds_ratio", "ci_low", "ci_high")
_MODEL_STYLE = {"univariable": (PALETTE[0], "o", "Univariable"),
                "multivariable": (PALETTE[1], "s", "Multivariable")}



def _is_nan(x) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return x is None or (isinstance(x, float) and math.isnan(x))


def _per_suffix(sub: pd.DataFrame) -> str:
    """', per SD (15.4)' / ', per IQR (0.00071)' / ', per 10': what a continuous term's OR is per
    (the ``per`` and ``increment`` columns of :func:`analysis.regression.multinomial_or_table`);
    '' for per unit, per level, or a table without those columns."""
    if "per" not in sub or not sub["per"].notna().any():
        return ""
    how = str(sub["per"].dropna().iloc[0])
    inc = sub["increment"].dropna() if "increment" in sub else pd.Series(dtype=float)
    if not len(inc):
        return ""
    if how in ("SD", "IQR"):
        return f", per {how} ({format_sig(float(inc.iloc[0]))})"
    if how == "given":
        return f", per {format_sig(float(inc.iloc[0]), trim=True)}"
    return ""


def _forest_rows(table: pd.DataFrame, labels):
    """Display rows: (kind, variable, level, text) with kind 'header' or 'term', top to bottom."""
    rows = []
    for var in pd.unique(table["variable"]):
        sub = table[table["variable"] == var]
        label = str(labels.get(var, var)) if labels else str(var)
        is_ref = sub.get("reason", pd.Series("", index=sub.index)).astype(str).eq("reference level")
        levels = [lv for lv in pd.unique(sub["level"]) if not _is_nan(lv)]
        if not levels:                                      # continuous / ordinal score: one row
            rows.append(("term", var, None, label + _per_suffix(sub)))
            continue
        refs = pd.unique(sub.loc[is_ref, "level"]) if is_ref.any() else pd.unique(
            sub.get("reference_level", pd.Series(dtype=object)).dropna())
        ref_text = f" (vs {refs[0]})" if len(refs) else ""
        ref_set = {str(r) for r in refs}
        others = [str(lv) for lv in levels if str(lv) not in ref_set]
        if len(others) == 1:                                # binary: one row, "Sex: male vs female"
            vs = f" vs {refs[0]}" if len(refs) else ""
            rows.append(("term", var, others[0], f"{label}: {others[0]}{vs}"))
            continue
        rows.append(("header", var, None, f"{label}{ref_text}"))
        for lv in others:
            rows.append(("level", var, lv, lv))
    return rows


def forest_plot(or_table: pd.DataFrame, path=None, ax=None, *, labels: dict | None = None,
                title: str | None = None) -> Figure:
    """Forest plot of multinomial odds ratios with their confidence intervals (log axis).

    Parameters
    ----------
    or_table : pandas.DataFrame
        The tidy table of :func:`analysis.regression.multinomial_or_table` (columns
        ``model, outcome_level, reference, variable, level, odds_ratio, ci_low, ci_high``
        used; ``reference``, ``reference_level``, ``fit``, ``reason``, ``ci_level`` if present).
        Not modified.
    path : str or Path, optional
        Also write the figure there (png/svg/pdf, see :func:`save_figure`).
    ax : matplotlib Axes or sequence of Axes, optional
        Draw into these: one Axes per outcome level (a single Axes if there is one level).
        Default: a new figure with one panel per outcome level side by side.
    labels : dict, optional
        Display label of each variable (e.g. ``{v.name: v.label for v in schema.variables}``).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    One panel per outcome level ("metastatic vs benign", ...), sharing the rows: continuous
    and score terms one row each, categorical variables a header row "Label (vs reference
    level)" followed by one row per non-reference level.  Univariable (circles) and
    multivariable (squares) estimates sit side by side within a row.  Open markers are
    penalized fallback estimates (``fit`` ``'firth'`` or ``'l2_penalized'``: separation).  Rows
    whose odds ratio is NaN are kept and say "not estimable" (the ``reason`` column of the
    table says why).  Whiskers beyond the axis limits end in an arrow.  The vertical line is
    OR = 1.
    """
    require_columns(or_table, _OR_COLUMNS, "or_table")
    if len(or_table) == 0:
        raise CohortError("or_table has no rows")
    table = or_table.copy()
    outcomes = [str(o) for o in pd.unique(table["outcome_level"].astype(str))]
    table["outcome_level"] = table["outcome_level"].astype(str)
    models = [m for m in pd.unique(table["model"].astype(str))]
    reference = str(table["reference"].iloc[0]) if "reference" in table else None
    ci_level = float(table["ci_level"].iloc[0]) if "ci_level" in table else 0.95
    rows = _forest_rows(table, labels)
    n_rows = len(rows)

    est = table[["odds_ratio", "ci_low", "ci_high"]].to_numpy(dtype=float)
    finite = est[np.isfinite(est) & (est > 0)]
    lo = float(finite.min()) if finite.size else 0.5
    hi = float(finite.max()) if finite.size else 2.0
    lo, hi = min(lo, 1.0), max(hi, 1.0)
    lo, hi = max(lo / 1.35, 1e-3), min(hi * 1.35, 1e3)

    with figure_style():
        if ax is None:
            width = 2.2 + 2.6 * len(outcomes)
            height = 1.3 + 0.26 * n_rows
            fig = new_figure(width, height)
            axes = list(fig.subplots(1, len(outcomes), sharey=True, squeeze=False)[0])
        else:
            axes = list(np.atleast_1d(np.asarray(ax, dtype=object)).ravel())
            if len(axes) != len(outcomes):
                raise CohortError(f"forest_plot needs {len(outcomes)} Axes (one per outcome level: "
                                  f"{', '.join(outcomes)}), got {len(axes)}")
            fig = axes[0].figure
        offsets = {m: (0.0 if len(models) == 1 else 0.17 * (1 - 2 * i / (len(models) - 1)))
                   for i, m in enumerate(models)}
        ys = {}
        for i, (kind, var, level, _) in enumerate(rows):
            ys[(var, level)] = n_rows - 1 - i
        penalized_seen = False
        for a, outcome in zip(axes, outcomes):
            a.set_xscale("log")
            a.axvline(1.0, color=".55", lw=0.8, zorder=0)
            for i in range(n_rows):
                if i % 2 == 0:
                    a.axhspan(n_rows - 1 - i - 0.5, n_rows - 1 - i + 0.5, color=".965", lw=0, zorder=-1)
            sub = table[table["outcome_level"] == outcome]
            for m in models:
                colour, marker, _ = _MODEL_STYLE.get(m, (PALETTE[2 + models.index(m) % 5], "D", m))
                for _, r in sub[sub["model"].astype(str) == m].iterrows():
                    level = None if _is_nan(r["level"]) else str(r["level"])
                    key = (r["variable"], level)
                    if key not in ys:                       # reference-level row: shown in the header
                        continue
                    y = ys[key] + offsets[m]
                    orv, cl, ch = float(r["odds_ratio"]), float(r["ci_low"]), float(r["ci_high"])
                    if not (np.isfinite(orv) and orv > 0):
                        a.annotate("not estimable", xy=(0.98, y), xycoords=("axes fraction", "data"),
                                   ha="right", va="center", fontsize=6.5, style="italic", color=colour)
                        continue
                    if np.isfinite(cl) and np.isfinite(ch):
                        a.plot([max(cl, lo), min(ch, hi)], [y, y], color=colour, lw=1.2, solid_capstyle="butt")
                        if cl < lo:
                            a.plot([lo], [y], marker="<", color=colour, ms=4, clip_on=False)
                        if ch > hi:
                            a.plot([hi], [y], marker=">", color=colour, ms=4, clip_on=False)
                    penalized = "fit" in r and str(r["fit"]) in ("firth", "l2_penalized")
                    penalized_seen |= penalized
                    a.plot([min(max(orv, lo), hi)], [y], marker=marker, ms=4.5, color=colour,
                           markerfacecolor="white" if penalized else colour, markeredgewidth=1.1,
                           linestyle="none", zorder=3)
            a.set_xlim(lo, hi)
            a.xaxis.set_major_formatter(FuncFormatter(_or_tick))
            a.xaxis.set_minor_formatter(NullFormatter())
            a.set_ylim(-0.6, n_rows - 0.4)
            a.set_title(f"{outcome} vs {reference}" if reference else outcome)
            a.set_xlabel(f"Odds ratio ({_pct(ci_level)}% CI, log scale)")
            a.tick_params(axis="y", length=0)
            a.spines["left"].set_visible(False)
        axes[0].set_yticks([n_rows - 1 - i for i in range(n_rows)])
        axes[0].set_yticklabels([text for _, _, _, text in rows])
        for tick, (kind, *_rest) in zip(axes[0].get_yticklabels(), rows):
            if kind == "header":
                tick.set_fontweight("bold")
            elif kind == "level":
                tick.set_color(".35")
        for a in axes[1:]:
            a.tick_params(axis="y", labelleft=False)
        from matplotlib.lines import Line2D

        handles = []
        for m in models:
            colour, marker, name = _MODEL_STYLE.get(m, (PALETTE[2 + models.index(m) % 5], "D", m))
            handles.append(Line2D([], [], color=colour, marker=marker, ms=4.5, lw=1.2, label=name))
        if penalized_seen:
            handles.append(Line2D([], [], color=".3", marker="o", ms=4.5, markerfacecolor="white", lw=0,
                                  label="penalized fit (separation)"))
        if ax is None:
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
            if title:
                fig.suptitle(title)
        else:
            axes[-1].legend(handles=handles, loc="best")
    return _finish(fig, path)


def _or_tick(x, _pos=None) -> str:
    """Log-axis tick label as a plain number: 0.01, 0.1, 1, 10, 100."""
    return f"{x:g}"


def _pct(level: float) -> str:
    """``0.95 -> '95'`` (a confidence level as a percentage, no trailing zeros)."""
    return f"{100 * float(level):g}"


# --------------------------------------------------------------------------- group distributions

def _level_colours(var_type: str, n: int):
    """Ordinal levels: a sequential ramp (viridis); other levels: Okabe–Ito."""
    if var_type == "ordinal":
        from matplotlib import colormaps

        cmap = colormaps["viridis"]
        return [cmap(0.15 + 0.75 * i / max(n - 1, 1)) for i in range(n)]
    return [PALETTE[(i + 2) % len(PALETTE)] if n > 2 else PALETTE[(5, 0)[i]] for i in range(n)]


def _text_colour(colour) -> str:
    r, g, b = to_rgb(colour)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def group_distribution_plot(cohort, variables: Sequence[str] | None = None, path=None, *,
                            ncols: int = 3, seed: int = 0) -> Figure:
    """Small multiples of each variable by group: box + points, or stacked 100 % bars.

    Parameters
    ----------
    cohort : analysis.cohort.Cohort
        Validated cohort (``.data`` and ``.schema``); not modified.
    variables : sequence of str, optional
        Variable names to show, in this order (default: every schema variable).
    path : str or Path, optional
        Also write the figure there.
    ncols : int, default 3
        Panels per row.
    seed : int, default 0
        Seed of the horizontal jitter of the points (the figure is deterministic).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    CohortError
        A name that is not a schema variable (with did-you-mean).

    Notes
    -----
    Groups in schema order (``schema.group_levels``), x labels with the number of patients
    with a value.  Continuous: box (median, quartiles, whiskers at 1.5 IQR) with every
    patient as a jittered point.  Categorical, binary and ordinal: percentage of patients
    with a value in each level (missing values excluded; levels in schema order, ordinal
    levels on a sequential colour ramp), segments of at least 12 % labelled.
    """
    schema, data = cohort.schema, cohort.data
    by_name = {v.name: v for v in schema.variables}
    names = [v.name for v in schema.variables] if variables is None else list(variables)
    if isinstance(variables, str):
        names = [variables]
    for name in names:
        if name not in by_name:
            raise CohortError(f"'{name}' is not a variable of the schema{did_you_mean(name, by_name)}",
                              file=cohort.source, column=name)
    if not names:
        raise CohortError("no variables to plot")
    groups = [str(g) for g in schema.group_levels]
    gcol = schema.group_column
    group_values = data[gcol].astype(object).astype(str).where(data[gcol].notna())
    rng = np.random.default_rng(seed)
    ncols = max(1, min(int(ncols), len(names)))
    nrows = math.ceil(len(names) / ncols)
    with figure_style():
        fig = new_figure(2.9 * ncols + 0.8, 2.6 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for a, name in zip(axes, names):
            var = by_name[name]
            title = var.label or var.name
            values = data[name]
            if var.type == "continuous":
                x = pd.to_numeric(values, errors="coerce")
                series = [x[(group_values == g).to_numpy()].dropna().to_numpy(float) for g in groups]
                pos = np.arange(len(groups))
                keep = [i for i, s in enumerate(series) if s.size]
                if keep:
                    box = a.boxplot([series[i] for i in keep], positions=pos[keep], widths=0.55,
                                    showfliers=False, patch_artist=True,
                                    medianprops={"color": ".1", "lw": 1.4},
                                    whiskerprops={"color": ".35"}, capprops={"color": ".35"})
                    for patch, i in zip(box["boxes"], keep):
                        patch.set(facecolor=".93", edgecolor=".25", lw=0.9)
                for i, s in enumerate(series):
                    jitter = rng.uniform(-0.17, 0.17, size=s.size)
                    a.scatter(i + jitter, s, s=5, color=PALETTE[0], alpha=0.45, lw=0, zorder=3)
                a.set_xticks(pos)
                a.set_xticklabels([f"{g}\n(n={s.size})" for g, s in zip(groups, series)])
                a.set_xlim(-0.6, len(groups) - 0.4)
                a.set_ylabel(f"{title} ({var.unit})" if var.unit else title)
                a.yaxis.grid(True)
            else:
                levels = [str(lv) for lv in (var.levels or pd.unique(values.dropna()))]
                lev_values = values.astype(object).astype(str).where(values.notna())
                cols = _level_colours(var.type, len(levels))
                counts = np.array([[int(((group_values == g) & (lev_values == lv)).sum()) for lv in levels]
                                   for g in groups], dtype=float)
                totals = counts.sum(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    share = np.where(totals[:, None] > 0, 100 * counts / totals[:, None], 0.0)
                bottom = np.zeros(len(groups))
                for j, lv in enumerate(levels):
                    a.bar(np.arange(len(groups)), share[:, j], bottom=bottom, width=0.68, color=cols[j],
                          edgecolor="white", lw=0.6, label=lv)
                    for i in range(len(groups)):
                        if share[i, j] >= 12:
                            a.text(i, bottom[i] + share[i, j] / 2, format_number(share[i, j], 0), ha="center",
                                   va="center", fontsize=6.5, color=_text_colour(cols[j]))
                    bottom += share[:, j]
                a.set_xticks(np.arange(len(groups)))
                a.set_xticklabels([f"{g}\n(n={int(t)})" for g, t in zip(groups, totals)])
                a.set_ylim(0, 100)
                a.set_yticks([0, 25, 50, 75, 100])
                a.set_ylabel("Patients (%)")
                a.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6.5, handlelength=1.0,
                         borderaxespad=0.2, reverse=True)
            a.set_title(title)
            a.tick_params(axis="x", length=0, labelsize=7)
        for a in axes[len(names):]:
            a.set_visible(False)
        if len(names) > 1:
            fig.suptitle(f"Variables by {(schema.group_label or gcol).lower()}")
    return _finish(fig, path)


# --------------------------------------------------------------------------- decision curves, centre forest plot

def decision_curve_plot(curves: pd.DataFrame, path=None, *, title: str | None = None,
                        questions: Sequence[str] | None = None) -> Figure:
    """Decision curves of :func:`analysis.decision_curve.decision_curve`, one panel per question.

    Parameters
    ----------
    curves : pandas.DataFrame
        Columns ``question, positive, threshold, strategy, net_benefit, ci_low, ci_high`` (one
        model's curves; filter a multi-model table first).  Not modified.
    path : str or Path, optional
        Also write the figure there.
    title : str, optional
    questions : sequence of str, optional
        Panels to draw, in this order (default: every question).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Model: solid line with its pointwise patient-bootstrap band (shaded); treat all: dashed;
    treat none: the horizontal line at 0.  The y axis runs from a little below 0 to a little
    above the prevalence (the most any strategy can gain), as Vickers et al. (2019) advise,
    so that treat-all's steep fall does not flatten the rest.
    """
    require_columns(curves, ("question", "positive", "threshold", "strategy", "net_benefit", "ci_low", "ci_high"),
                    "curves")
    if len(curves) == 0:
        raise CohortError("curves has no rows")
    names = list(dict.fromkeys(curves["question"].astype(str))) if questions is None else list(questions)
    for q in names:
        if q not in set(curves["question"].astype(str)):
            raise CohortError(f"no decision curve for question {q!r}{did_you_mean(q, curves['question'].astype(str))}")
    ncol = min(3, len(names))
    nrow = math.ceil(len(names) / ncol)
    with figure_style():
        fig = new_figure(0.6 + 2.9 * ncol, 0.8 + 2.5 * nrow)
        axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
        for a, q in zip(axes, names):
            sub = curves[curves["question"].astype(str) == q]
            model = sub[sub["strategy"] == "model"].sort_values("threshold")
            alln = sub[sub["strategy"] == "treat_all"].sort_values("threshold")
            t = model["threshold"].to_numpy(float)
            if model[["ci_low", "ci_high"]].notna().any().all():
                level = float(model["ci_level"].iloc[0]) if "ci_level" in model else 0.95
                a.fill_between(t, model["ci_low"].to_numpy(float), model["ci_high"].to_numpy(float),
                               color=PALETTE[0], alpha=0.18, lw=0, label=f"model ({_pct(level)}% band)")
            a.plot(t, model["net_benefit"].to_numpy(float), color=PALETTE[0], label="model")
            a.plot(alln["threshold"].to_numpy(float), alln["net_benefit"].to_numpy(float), color=PALETTE[1],
                   ls="--", label="treat all")
            a.axhline(0.0, color=".3", lw=0.9, label="treat none")
            prev = float(sub["prevalence"].iloc[0]) if "prevalence" in sub else float(model["net_benefit"].max())
            a.set_ylim(-0.05 * max(prev, 0.05) - 0.02, prev * 1.1 + 0.02)
            a.set_xlim(float(t.min()), float(t.max()))
            positive = str(sub["positive"].iloc[0])
            a.set_title(q if positive == q else f"{q} ({positive.replace('+', ' or ')})")
            a.set_xlabel("Threshold probability")
            a.set_ylabel("Net benefit")
        for a in axes[len(names):]:
            a.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles))
        if title:
            fig.suptitle(title)
    return _finish(fig, path)


def centre_forest_plot(centres: pd.DataFrame, meta: pd.Series | dict | None = None, path=None, *,
                       title: str | None = None, xlabel: str = "AUC") -> Figure:
    """Forest plot of per-hospital AUCs with the pooled random-effects estimate.

    Parameters
    ----------
    centres : pandas.DataFrame
        Rows of :func:`analysis.meta_analysis.centre_auc` for one class (columns
        ``hospital, auc, ci_low, ci_high, n_patients`` used; ``reason`` if present).
    meta : mapping, optional
        The matching row of :func:`analysis.meta_analysis.meta_analysis_of_centres`
        (``auc, ci_low, ci_high, pi_low, pi_high, i2, tau2, method``): drawn as a diamond
        (CI) on a line (prediction interval).
    path, title, xlabel
        As for :func:`forest_plot`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require_columns(centres, ("hospital", "auc", "ci_low", "ci_high", "n_patients"), "centres")
    if len(centres) == 0:
        raise CohortError("centres has no rows")
    rows = centres.reset_index(drop=True)
    n = len(rows)
    with figure_style():
        fig = new_figure(5.4, 1.2 + 0.32 * (n + 2))
        a = fig.subplots()
        for i, r in rows.iterrows():
            y = n + 1 - i
            if np.isfinite(r["auc"]) and np.isfinite(r["ci_low"]):
                a.plot([r["ci_low"], r["ci_high"]], [y, y], color=".25", lw=1.1, solid_capstyle="butt")
                a.plot([r["auc"]], [y], marker="s", ms=3 + 4 * math.sqrt(r["n_patients"] / rows["n_patients"].max()),
                       color=PALETTE[0], linestyle="none", zorder=3)
            else:
                a.annotate("not estimable", xy=(0.5, y), xycoords=("axes fraction", "data"), ha="center",
                           va="center", fontsize=6.5, style="italic", color=".4")
        labels = [f"{r['hospital']} (n = {int(r['n_patients'])})" for _, r in rows.iterrows()]
        ticks = [n + 1 - i for i in range(n)]
        if meta is not None and np.isfinite(meta.get("auc", np.nan)):
            a.plot([meta["pi_low"], meta["pi_high"]], [0, 0], color=PALETTE[1], lw=1.0)
            a.fill([meta["ci_low"], meta["auc"], meta["ci_high"], meta["auc"]], [0, 0.3, 0, -0.3],
                   color=PALETTE[1], zorder=3)
            labels.append(f"Pooled ({meta.get('method', '')}), I² = {format_number(meta['i2'], 1)}%")
            ticks.append(0)
        a.set_yticks(ticks)
        a.set_yticklabels(labels)
        a.axvline(0.5, color=".7", lw=0.8, ls=":", zorder=0)
        a.set_ylim(-0.8, n + 1.6)
        a.set_xlim(max(0.0, min(0.5, np.nanmin(rows["ci_low"].to_numpy(float), initial=1.0)) - 0.03), 1.0)
        level = float(rows["ci_level"].iloc[0]) if "ci_level" in rows else 0.95
        a.set_xlabel(f"{xlabel} ({_pct(level)}% CI; pooled: diamond = CI, line = prediction interval)")
        a.tick_params(axis="y", length=0)
        a.spines["left"].set_visible(False)
        if title:
            a.set_title(title)
    return _finish(fig, path)
