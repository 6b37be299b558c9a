"""Centre effects: per-hospital AUCs and their random-effects meta-analysis.

:func:`random_effects_meta` pools study (hospital) estimates ``y_i`` with within-study
variances ``v_i`` under ``y_i ~ N(mu, v_i + tau^2)`` (DerSimonian-Laird or REML), with the
heterogeneity statistics Q, I^2, H^2, tau^2 and a prediction interval for a new hospital.
:func:`centre_auc` turns predictions with a hospital per patient into those ``y_i, v_i``:
one-vs-rest AUCs with DeLong variances and the macro AUC with a patient-bootstrap variance,
on the logit scale by default.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from .bootstrap import cluster_bootstrap
from .errors import CohortError, UndefinedMetricWarning, check_ci_level

__all__ = ["MetaResult", "META_METHODS", "random_effects_meta", "centre_auc", "meta_analysis_of_centres",
           "CENTRE_AUC_COLUMNS"]

#: Estimators of tau^2 accepted by :func:`random_effects_meta`.
META_METHODS = ("REML", "DL")
#: Columns of :func:`centre_auc`.
CENTRE_AUC_COLUMNS = ["hospital", "class", "auc", "se", "ci_low", "ci_high", "ci_level", "yi", "vi", "scale",
                      "n_patients", "n_cases", "n_controls", "method", "reason"]


@dataclass(frozen=True)
class MetaResult:
    """A random-effects meta-analysis (see :func:`random_effects_meta`); fields on the analysis scale."""

    method: str
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    tau2: float
    i2: float
    h2: float
    q: float
    q_df: int
    q_p_value: float
    pi_low: float
    pi_high: float
    ci_level: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(self)])


def _reml_tau2(y, v, tol=1e-14, max_iter=10_000):
    """REML tau^2 by Fisher scoring (Viechtbauer 2005), truncated at 0, as metafor ``rma.uni``."""
    tau2 = max(0.0, _dl_tau2(y, v))                      # metafor starts from a (Hedges-type) estimate
    for _ in range(max_iter):
        w = 1.0 / (v + tau2)
        sw = w.sum()
        mu = (w * y).sum() / sw
        r = y - mu
        # P = W - w w' / sum(w); Y'PPY = sum(w^2 r^2); tr(P) = sum(w) - sum(w^2)/sum(w);
        # tr(PP) = sum(w^2) - 2 sum(w^3)/sum(w) + (sum(w^2)/sum(w))^2
        ypp = np.sum(w * w * r * r)
        tr_p = sw - np.sum(w * w) / sw
        tr_pp = np.sum(w * w) - 2 * np.sum(w ** 3) / sw + (np.sum(w * w) / sw) ** 2
        step = (ypp - tr_p) / tr_pp
        new = tau2 + step
        while new < 0:                                   # step halving keeps tau^2 >= 0
            step /= 2
            new = tau2 + step
            if abs(step) < tol:
                new = 0.0
                break
        if abs(new - tau2) < tol * (1 + tau2):
            return new
        tau2 = new
    raise CohortError("REML estimate of tau^2 did not converge")


def _dl_tau2(y, v):
    w = 1.0 / v
    mu = (w * y).sum() / w.sum()
    q = (w * (y - mu) ** 2).sum()
    c = w.sum() - (w * w).sum() / w.sum()
    return max(0.0, (q - (y.size - 1)) / c)


def random_effects_meta(yi, vi, method: str = "REML", ci: float = 0.95) -> MetaResult:
    """Random-effects meta-analysis of study estimates with known within-study variances.

    Parameters
    ----------
    yi : array-like of float, shape (k,)
        Study (hospital) estimates, e.g. logit AUCs.
    vi : array-like of float > 0, shape (k,)
        Their sampling variances.
    method : {'REML', 'DL'}, default 'REML'
        Estimator of the between-study variance tau^2: restricted maximum likelihood
        (Fisher scoring, truncated at 0) or DerSimonian-Laird.
    ci : float, default 0.95

    Returns
    -------
    MetaResult
        ``estimate`` (pooled mu) with ``se``, Wald ``ci_low/ci_high``, ``z``, ``p_value``;
        ``tau2``; ``i2`` (percent) and ``h2``; Cochran's ``q`` with ``q_df = k - 1`` and its
        chi-square ``q_p_value``; the prediction interval ``pi_low/pi_high`` for the true
        effect in a new study.

    Raises
    ------
    CohortError
        Fewer than 2 studies, non-finite values, a variance <= 0, unknown method.

    Notes
    -----
    ``w_i = 1/(v_i + tau^2)``, ``mu = sum w_i y_i / sum w_i``, ``se = 1/sqrt(sum w_i)``.
    DL: ``tau^2 = max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))`` with fixed-effect weights
    ``w = 1/v``.  ``Q = sum (y_i - mu_FE)^2 / v_i``.  ``I^2 = 100 tau^2 / (tau^2 + s^2)`` and
    ``H^2 = (tau^2 + s^2) / s^2`` with the typical within-study variance
    ``s^2 = (k-1) sum w / ((sum w)^2 - sum w^2)`` (Higgins & Thompson 2002).  Prediction
    interval ``mu ± z sqrt(se^2 + tau^2)``.  Matches R metafor 3.8 ``rma(yi, vi, method=...)``
    and ``predict()`` (defaults, ``test = "z"``) to 1e-6
    (``tests/fixtures/r_reference/meta_analysis.R``), including metafor's ``dat.bcg``.

    References
    ----------
    DerSimonian R, Laird N. Meta-analysis in clinical trials. Control Clin Trials.
    1986;7(3):177-188. doi:10.1016/0197-2456(86)90046-2
    Viechtbauer W. Bias and efficiency of meta-analytic variance estimators in the
    random-effects model. J Educ Behav Stat. 2005;30(3):261-293. doi:10.3102/10769986030003261
    Higgins JPT, Thompson SG. Quantifying heterogeneity in a meta-analysis. Stat Med.
    2002;21(11):1539-1558. doi:10.1002/sim.1186
    Riley RD, Higgins JPT, Deeks JJ. Interpretation of random effects meta-analyses. BMJ.
    2011;342:d549. doi:10.1136/bmj.d549
    Viechtbauer W. Conducting meta-analyses in R with the metafor package. J Stat Softw.
    2010;36(3):1-48. doi:10.18637/jss.v036.i03

    Examples
    --------
    >>> r = random_effects_meta([0.1, 0.3, 0.35, 0.6], [0.01, 0.02, 0.015, 0.03], method="DL")
    >>> round(r.estimate, 4), r.k
    (0.3089, 4)
    """
    check_ci_level(ci)
    if method not in META_METHODS:
        raise CohortError(f"unknown meta-analysis method {method!r} (expected one of: {', '.join(META_METHODS)})")
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    if y.size != v.size:
        raise CohortError(f"yi has {y.size} values but vi has {v.size}")
    if y.size < 2:
        raise CohortError(f"a meta-analysis needs at least 2 studies, got {y.size}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))) or np.any(v <= 0):
        raise CohortError("yi must be finite and vi finite and > 0")
    k = y.size
    tau2 = _dl_tau2(y, v) if method == "DL" else _reml_tau2(y, v)
    w_fe = 1.0 / v
    mu_fe = (w_fe * y).sum() / w_fe.sum()
    q = float((w_fe * (y - mu_fe) ** 2).sum())
    w = 1.0 / (v + tau2)
    mu = float((w * y).sum() / w.sum())
    se = float(math.sqrt(1.0 / w.sum()))
    zc = float(stats.norm.ppf(0.5 + ci / 2))
    s2 = (k - 1) * w_fe.sum() / (w_fe.sum() ** 2 - (w_fe * w_fe).sum())
    pi_half = zc * math.sqrt(se ** 2 + tau2)
    return MetaResult(method=method, k=int(k), estimate=mu, se=se, ci_low=mu - zc * se, ci_high=mu + zc * se,
                      z=mu / se, p_value=float(2 * stats.norm.sf(abs(mu / se))), tau2=float(tau2),
                      i2=float(100 * tau2 / (tau2 + s2)), h2=float((tau2 + s2) / s2), q=q, q_df=int(k - 1),
                      q_p_value=float(stats.chi2.sf(q, k - 1)), pi_low=mu - pi_half, pi_high=mu + pi_half,
                      ci_level=float(ci))


def _logit(x):
    return math.log(x / (1 - x))


def centre_auc(y_true, proba, classes, patient_ids, hospitals, *, scale: str = "logit", n_boot: int = 2000,
               ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """AUC of each hospital (macro and one vs rest) with the variance a meta-analysis needs.

    Parameters
    ----------
    y_true : array-like of str, shape (n,)
    proba : array-like of float, shape (n, k)
    classes : sequence of str
    patient_ids : array-like, shape (n,)
        Predictions of one patient are averaged first (one score per patient).
    hospitals : array-like, shape (n,)
        Hospital of each prediction (constant within a patient).
    scale : {'logit', 'identity'}, default 'logit'
        Scale of ``yi``/``vi``: ``logit(AUC)`` with the delta-method variance
        ``var(AUC) / (AUC (1 - AUC))^2`` (closer to normal, stays in (0, 1) when pooled back),
        or the AUC itself.
    n_boot, ci, seed
        Patient bootstrap for the macro AUC's variance.

    Returns
    -------
    pandas.DataFrame
        :data:`CENTRE_AUC_COLUMNS`, one row per hospital x class (``class == ''`` macro):
        ``auc``, its ``se`` and Wald ``ci_low/ci_high`` (computed on ``scale`` and
        back-transformed), ``yi``/``vi`` on ``scale``; ``reason`` says why a row is NaN (a
        class absent from the hospital, AUC of 0 or 1 on the logit scale, < 2 cases).

    Notes
    -----
    One-vs-rest: Mann-Whitney AUC with DeLong's variance (:func:`analysis.roc.delong_ci`,
    matches pROC).  Macro: mean of the one-vs-rest AUCs with the variance of its patient
    bootstrap replicates (:func:`analysis.bootstrap.cluster_bootstrap`).  Logit scale for
    pooling AUCs: Qin & Hotilovac (2008), Snell et al. (2018).

    References
    ----------
    Qin G, Hotilovac L. Comparison of non-parametric confidence intervals for the area under
    the ROC curve of a continuous-scale diagnostic test. Stat Methods Med Res.
    2008;17(2):207-221. doi:10.1177/0962280207087173
    Snell KIE, Ensor J, Debray TPA, Moons KGM, Riley RD. Meta-analysis of prediction model
    performance across multiple studies: which scale helps ensure between-study normality for
    the C-statistic and calibration measures? Stat Methods Med Res. 2018;27(11):3505-3522.
    doi:10.1177/0962280217705678
    """
    from .metrics import _metric_vector
    from .roc import _class_codes_and_proba, delong_ci

    check_ci_level(ci)
    if scale not in ("logit", "identity"):
        raise CohortError(f"unknown scale {scale!r} (expected one of: logit, identity)")
    classes = [str(c) for c in classes]
    codes, p = _class_codes_and_proba(y_true, proba, classes)
    frame = pd.DataFrame({"patient_id": pd.Series(np.asarray(patient_ids, dtype=object)).astype(str),
                          "hospital": pd.Series(np.asarray(hospitals, dtype=object)), "code": codes})
    if frame["hospital"].isna().any():
        i = int(np.flatnonzero(frame["hospital"].isna().to_numpy())[0])
        raise CohortError(f"prediction at position {i} (patient {frame['patient_id'].iloc[i]!r}) has no hospital",
                          column="hospital")
    frame["hospital"] = frame["hospital"].astype(str)
    per = frame.groupby("patient_id", sort=False).agg(hospital=("hospital", "nunique"), code=("code", "nunique"))
    if (per["hospital"] > 1).any():
        raise CohortError(f"patient {per.index[per['hospital'] > 1][0]!r} has predictions from two hospitals",
                          column="hospital")
    if (per["code"] > 1).any():
        raise CohortError(f"patient {per.index[per['code'] > 1][0]!r} has two true classes", column="y_true")
    zc = float(stats.norm.ppf(0.5 + ci / 2))
    rows = []
    for hospital, idx in frame.groupby("hospital", sort=True).indices.items():
        sub = frame.iloc[idx]
        g = sub.groupby("patient_id", sort=False)
        ph = p[idx]
        pp = np.vstack([ph[g.indices[k]].mean(axis=0) for k in g.indices])
        cc = sub["code"].to_numpy()[[g.indices[k][0] for k in g.indices]]
        n_pat = int(cc.size)
        est = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            for j, c in enumerate(classes):
                r = delong_ci(cc == j, pp[:, j], ci=ci)
                est[c] = (r.estimate, r.variance, r.n_cases, r.n_controls, "DeLong (one vs rest)")
            if n_boot > 0:
                b = cluster_bootstrap(lambda a, q: _metric_vector(a, q)[0], (cc, pp), n_boot=n_boot, ci=ci,
                                      seed=seed)
                reps = b.replicates[:, 0]
                reps = reps[np.isfinite(reps)]
                var = float(np.var(reps, ddof=1)) if reps.size > 1 else math.nan
                macro = float(b.estimate)
            else:
                macro, var = float(_metric_vector(cc, pp)[0]), math.nan
        est = {"": (macro, var, n_pat, 0, f"patient bootstrap variance ({n_boot} resamples, seed {seed})"),
               **est}
        for c, (auc, var, n_cases, n_controls, method) in est.items():
            row = {"hospital": hospital, "class": c, "auc": auc, "ci_level": ci, "scale": scale,
                   "n_patients": n_pat, "n_cases": int(n_cases) if c else n_pat,
                   "n_controls": int(n_controls) if c else 0, "method": method, "reason": ""}
            yi = vi = se = lo = hi = math.nan
            if not np.isfinite(auc):
                row["reason"] = "AUC undefined (a class has no patients in this hospital)"
            elif not (np.isfinite(var) and var > 0):
                row["reason"] = "no variance (fewer than 2 cases or controls, or a degenerate bootstrap)"
            elif scale == "logit" and not 0 < auc < 1:
                row["reason"] = f"AUC = {auc:g}: logit undefined; hospital left out of the meta-analysis"
            else:
                if scale == "logit":
                    yi, vi = _logit(auc), var / (auc * (1 - auc)) ** 2
                    se = math.sqrt(vi)
                    lo, hi = float(expit(yi - zc * se)), float(expit(yi + zc * se))
                    se = math.sqrt(var)
                else:
                    yi, vi, se = auc, var, math.sqrt(var)
                    lo, hi = max(0.0, auc - zc * se), min(1.0, auc + zc * se)
            row.update(se=se, ci_low=lo, ci_high=hi, yi=yi, vi=vi)
            rows.append(row)
    return pd.DataFrame(rows, columns=CENTRE_AUC_COLUMNS)


def meta_analysis_of_centres(table: pd.DataFrame, method: str = "REML", ci: float = 0.95) -> pd.DataFrame:
    """Random-effects meta-analysis of each class of a :func:`centre_auc` table.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`centre_auc`; other identifying columns (``model``, ``modality``,
        ``split``) are kept as groups.
    method : {'REML', 'DL'}
    ci : float

    Returns
    -------
    pandas.DataFrame
        One row per group x class: identifying columns, ``class, method, scale, k,
        k_excluded, auc`` (pooled, back-transformed), ``ci_low, ci_high, pi_low, pi_high``
        (prediction interval for a new hospital, back-transformed), ``estimate, se`` (analysis
        scale), ``tau2, i2, h2, q, q_df, q_p_value, ci_level, reason`` (why not computed:
        fewer than 2 hospitals with a defined AUC).
    """
    keys = [c for c in table.columns if c not in CENTRE_AUC_COLUMNS] + ["class"]
    out = []
    for key, g in table.groupby(keys, sort=False, dropna=False):
        ok = g["vi"].notna() & g["yi"].notna()
        scale = str(g["scale"].iloc[0])
        back = (lambda x: float(expit(x))) if scale == "logit" else (lambda x: x)
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(method=method, scale=scale, k=int(ok.sum()), k_excluded=int((~ok).sum()), ci_level=ci)
        if ok.sum() < 2:
            row["reason"] = f"{int(ok.sum())} hospital(s) with a defined AUC; a meta-analysis needs 2"
            out.append(row)
            continue
        r = random_effects_meta(g.loc[ok, "yi"], g.loc[ok, "vi"], method=method, ci=ci)
        row.update(auc=back(r.estimate), ci_low=back(r.ci_low), ci_high=back(r.ci_high), pi_low=back(r.pi_low),
                   pi_high=back(r.pi_high), estimate=r.estimate, se=r.se, tau2=r.tau2, i2=r.i2, h2=r.h2, q=r.q,
                   q_df=r.q_df, q_p_value=r.q_p_value, reason="")
        out.append(row)
    cols = keys + ["method", "scale", "k", "k_excluded", "auc", "ci_low", "ci_high", "pi_low", "pi_high",
                   "estimate", "se", "tau2", "i2", "h2", "q", "q_df", "q_p_value", "ci_level", "reason"]
    return pd.DataFrame(out).reindex(columns=cols)
