"""Generated 'Statistical methods' paragraph for a Table 1.

:func:`methods_text` reads only what a :class:`analysis.table1.Table1Result` holds (the
tests actually used, effect sizes and their CI methods, q-values, post hoc and regression
settings, exclusions and software versions), so the same result in the same environment
gives byte-identical text.  Numbers in the text are formatted by :mod:`analysis.formatting`.
"""
from __future__ import annotations

import re

import pandas as pd


__all__ = ["methods_text", "SOFTWARE_PACKAGES"]

#: Packages whose versions the paragraph names (python first): the ones every Table 1 uses
#: (pingouin is added when Welch's ANOVA was used: it computes that test).
SOFTWARE_PACKAGES = ("python", "numpy", "scipy", "pandas", "statsmodels")

#: How each post hoc test (``Table1Result.posthoc['test']``) is named in the paragraph.
_POSTHOC_PHRASES = {
    "dunn": "Dunn's test on the pooled ranks (after Kruskal\u2013Wallis)",
    "welch_t": "Welch's t-test (after ANOVA or Welch's ANOVA)",
    "mann_whitney": "the Mann\u2013Whitney U test",
    "chi_square": "Pearson's \u03c7\u00b2 test",
    "fisher_exact": "Fisher's exact test",
}

_TEST_PHRASES = {
    "chi_square": "Pearson's \u03c7\u00b2 test without continuity correction",
    "fisher_exact": "the Fisher\u2013Freeman\u2013Halton exact test",
    "fisher_monte_carlo": "the Fisher\u2013Freeman\u2013Halton test (Monte Carlo estimate)",
    "anova": "one-way ANOVA",
    "welch_anova": "Welch's ANOVA",
    "kruskal_wallis": "the Kruskal\u2013Wallis test",
    "linear_by_linear": "the linear-by-linear association test",
    "t_test": "Student's t-test",
    "welch_t_test": "Welch's t-test",
    "mann_whitney": "the Mann\u2013Whitney U test (normal approximation, no continuity correction)",
}


def epv_phrase(epv) -> str:
    """'114 lymphoma patients for 26 parameters per equation (4.4 events per parameter, fewer than 10)'."""
    return (f"{epv['n']} {epv['group']} patients for {epv['parameters']} parameters per equation "
            f"({epv['n'] / epv['parameters']:.1f} events per parameter, fewer than 10)")


def or_unit_sentence(result) -> str:
    """What the odds ratios of continuous variables are per (from ``regression['per']``)."""
    reg = result.regression
    if reg is None or not len(reg) or "per" not in reg:
        return ""
    per = reg.dropna(subset=["increment"]).drop_duplicates("variable")
    if not len(per):
        return ""
    seen = set(per["per"].astype(str))
    kinds = [k for k in ("SD", "IQR", "unit", "given") if k in seen] + sorted(
        seen - {"SD", "IQR", "unit", "given"})
    words = {"SD": "one standard deviation", "IQR": "one interquartile range (Q3 \u2212 Q1)",
             "unit": "one unit of the variable", "given": "the increment given in the schema"}
    text = ("Odds ratios of continuous variables are per " + _join(words.get(k, k) for k in kinds)
            + " (computed on the analysed patients and stated in the odds-ratio table)")
    if "SD" in kinds or "IQR" in kinds:
        text += ", so that they do not depend on the unit of measurement"
    if (reg["per"].astype(str) == "level").any():
        text += "; ordinal variables enter as level scores (odds ratio per level)"
    return text + "."


def _join(items) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _columns_sentences(result) -> list:
    """What happened to every column of the table, the missing codes read and groups not tested."""
    out = []
    account = getattr(result, "variables", None)
    if account is not None and len(account) and "role" in account:
        role = account["role"].astype(str)
        used = []
        for name, what in (("id", "identified the patients"), ("hospital", "named the recruiting hospital")):
            cols = account.loc[role == name, "column"].astype(str).tolist()
            if cols:
                used.append(f"{_join(cols)} {what}")
        n_img = int((role == "image").sum())
        if n_img:
            used.append(f"{_plural(n_img, 'column')} held image paths")
        left = account[role == "excluded"]
        text = (f"Of the {len(account)} columns of the table, {int((role == 'variable').sum())} were analysed"
                + (f"; {'; '.join(used)}" if used else ""))
        if len(left):
            text += (f"; {len(left)} {'was' if len(left) == 1 else 'were'} left out: "
                     + _join(f"{c} ({re.split(r'[:(]', str(r))[0].strip()})"
                                 for c, r in zip(left["column"], left["reason"])))
        out.append(text + ".")
    notes = list(getattr(result, "notes", ()) or ())
    coded = [n for n in notes if n.startswith("cells read as missing by a missing code: ")]
    if coded:
        out.append("Cells coded as missing (" + coded[0].split(": ", 1)[1] + ") were counted as missing values.")
    merged = [n for n in notes if ": other spellings read as a level: " in n]
    if merged:
        out.append("Other spellings of a level were read as that level ("
                   + "; ".join(n.replace(": other spellings read as a level: ", ": ") for n in merged) + ").")
    small = dict(result.settings).get("groups_not_tested") or {}
    if small:
        out.append(f"{_join(f'{g} (n={n})' for g, n in small.items())} had fewer than "
                   f"{dict(result.settings).get('min_group_size', 3)} patients and {'was' if len(small) == 1 else 'were'} "
                   "described but left out of the tests, effect sizes, post hoc comparisons and odds ratios.")
    return out


def methods_text(result) -> str:
    """A short methods paragraph describing how ``result`` was obtained.

    Parameters
    ----------
    result : analysis.table1.Table1Result

    Returns
    -------
    str
        One paragraph (no trailing newline) naming: the summaries shown, how missing
        values and exclusions were handled, each test used (with the number of variables),
        the selection rules that applied, effect sizes and how their 95% CIs were obtained,
        the Monte Carlo details of any Fisher fallback, the Benjamini–Hochberg q-values,
        Holm-adjusted post hoc comparisons, the multinomial regression and its reference
        group, the significance level and seed, and the software versions
        (:data:`SOFTWARE_PACKAGES`).
    """
    stats = result.stats
    settings = dict(result.settings)
    alpha = settings.get("alpha", 0.05)
    groups = list(result.group_levels)
    not_tested = settings.get("groups_not_tested") or {}
    compared = [g for g in groups if g not in not_tested]  # the groups tests and odds ratios compared
    tested = stats[stats["p_value"].notna()] if len(stats) else stats
    parts = []

    shown = []
    if len(stats) and (stats["type"] != "continuous").any():
        shown.append("categorical variables as n (%)")
    if len(stats) and (stats["summary"] == "mean_sd").any():
        shown.append("approximately normal continuous variables as mean \u00b1 SD")
    if len(stats) and (stats["summary"] == "median_iqr").any():
        shown.append("other continuous variables as median [first quartile, third quartile]")
    if shown:
        parts.append(f"Patients were described by {str(result.group_label).lower()} "
                     f"({_join(groups)}); {_join(shown)}.")
    excl = result.exclusions
    n_ex = int(len(excl)) if excl is not None else 0
    if n_ex:
        reasons = _join(f"{n} for {r}" for r, n in
                        excl["reason"].astype(str).value_counts(sort=False).items())
        parts.append(f"Of {result.n_input} rows, {n_ex} were excluded ({reasons}), leaving "
                     f"{result.n_total} patients.")
    else:
        parts.append(f"All {result.n_total} patients were analysed (no rows excluded).")
    parts.append("Missing values were counted and reported for each variable but neither imputed "
                 "nor tested; each test used the patients with a recorded value.")
    parts += _columns_sentences(result)

    used = list(dict.fromkeys(tested["test"])) if len(tested) else []
    if used:
        counts = tested["test"].value_counts()
        phrases = [f"{_TEST_PHRASES.get(t, t)} ({_plural(int(counts[t]), 'variable')})" for t in used]
        parts.append(f"Groups were compared with {_join(phrases)}.")
        rules = []
        if {"chi_square", "fisher_exact", "fisher_monte_carlo"} & set(used):
            rules.append("categorical variables were tested with Pearson's \u03c7\u00b2 test when "
                         "every expected count was at least 5 and otherwise with the exact "
                         "Fisher\u2013Freeman\u2013Halton test")
        if {"anova", "welch_anova"} & set(used) or (
                "kruskal_wallis" in used and (tested["type"] == "continuous").any()):
            rules.append("for continuous variables the Shapiro\u2013Wilk test in each group and the "
                         "Brown\u2013Forsythe test of equal variances chose between one-way ANOVA, "
                         "Welch's ANOVA and the Kruskal\u2013Wallis test")
        if {"t_test", "welch_t_test", "mann_whitney"} & set(used):
            rules.append("for continuous variables the Shapiro\u2013Wilk test in each group and the "
                         "Brown\u2013Forsythe test of equal variances chose between Student's t-test, "
                         "Welch's t-test and the Mann\u2013Whitney U test")
        if (tested["type"] == "ordinal").any():
            rules.append("ordinal variables were compared on their level scores")
        if rules:
            parts.append("The test for each variable was chosen from the data: " + "; ".join(rules) + ".")
    mc = tested[tested["test"] == "fisher_monte_carlo"] if len(tested) else tested
    if len(mc):
        from .table1 import monte_carlo_text

        labels = dict(zip(stats["variable"], stats["label"])) if "label" in stats else {}
        detail = monte_carlo_text(
            (labels.get(r["variable"], r["variable"]),
             {"fallback_reason": r.get("fallback_reason", ""), "mc_draws": r.get("mc_draws"),
              "mc_seed": int(r["mc_seed"]) if not pd.isna(r.get("mc_seed")) else "?",
              "mc_se": r.get("mc_se"), "p_upper_bound": bool(r.get("p_value_upper_bound"))})
            for _, r in mc.iterrows())
        parts.append("Where the exact Fisher\u2013Freeman\u2013Halton computation could not be completed "
                     "within its deterministic work budget or memory cap, a seeded Monte Carlo estimate of "
                     f"the exact p-value was used (Hope 1968): {detail}.")
    names = {("cramers_v" if str(n).startswith("cramers_v") else str(n))
             for n in stats["effect_size_name"]} if len(stats) else set()
    eff = []
    if "cramers_v" in names:
        eff.append("the bias-corrected Cram\u00e9r's V (Bergsma 2013) for categorical variables, "
                   "with a CI from the noncentral \u03c7\u00b2 distribution")
    if "epsilon_squared" in names:
        eff.append("\u03b5\u00b2 for rank-based comparisons, with a seeded percentile bootstrap CI "
                   f"({settings.get('n_boot', 2000)} resamples within groups)")
    if "eta_squared" in names:
        two = len(compared) == 2
        eff.append(f"\u03b7\u00b2 for {'t-tests' if two else 'ANOVA'}, with a CI from the noncentral F "
                   f"distribution (bootstrap for Welch's {'t-test' if two else 'ANOVA'})")
    if eff:
        parts.append(f"Effect sizes were {'; '.join(eff)}; all intervals are 95% confidence intervals.")
        if names & {"epsilon_squared", "eta_squared"}:
            parts.append("Effect-size intervals describe the size of the difference and are not tests: a "
                         "bootstrap interval of \u03b5\u00b2 or \u03b7\u00b2 cannot reach 0, so it can "
                         "exclude 0 when the test is not significant.")
    if len(tested):
        parts.append(f"To control the false discovery rate across the {len(tested)} variables, "
                     "p-values were adjusted with the Benjamini\u2013Hochberg procedure (q-values); "
                     "unadjusted p-values are reported beside them.")
    if settings.get("posthoc", True):
        n_ph = int(stats["posthoc"].sum()) if "posthoc" in stats else 0
        ph = result.posthoc
        kinds = [t for t in dict.fromkeys(ph["test"].astype(str)) if t] if ph is not None and len(ph) \
            and "test" in ph else []
        how = _join(_POSTHOC_PHRASES.get(t, t) for t in kinds) if kinds else "the matching two-group test"
        contingency_rule = (" (\u03c7\u00b2 or Fisher's exact test chosen per pair by the expected counts)"
                            if {"chi_square", "fisher_exact"} & set(kinds) else "")
        parts.append(f"When the omnibus p-value was below {alpha:g}, the groups were compared "
                     f"pairwise with {how}{contingency_rule}, with Holm's adjustment within the "
                     f"variable ({_plural(n_ph, 'variable')}).")
    if result.regression is not None and len(result.regression):
        if len(compared) == 2:
            other = next((g for g in compared if str(g) != str(result.reference_group)), compared[-1])
            parts.append("Univariable and multivariable binary logistic regression (statsmodels; the "
                         "two-outcome case of MNLogit) estimated odds ratios of being "
                         f"{other} rather than {result.reference_group}, with 95% Wald confidence "
                         "intervals.")
        else:
            parts.append("Univariable and multivariable multinomial logistic regression (statsmodels "
                         f"MNLogit) estimated odds ratios with 95% Wald confidence intervals for each "
                         f"group against {result.reference_group}.")
        if or_unit_sentence(result):
            parts.append(or_unit_sentence(result))
        chosen = settings.get("predictors")
        if chosen:
            labels = dict(zip(stats["variable"], stats["label"])) if "label" in stats else {}
            parts.append("The multivariable model included " + _join([labels.get(v, v) for v in chosen])
                         + "; every variable had its own univariable model.")
        else:
            left_out = [v for v in stats["variable"] if v not in set(result.regression.loc[
                result.regression["model"].astype(str) == "multivariable", "variable"])] if len(stats) else []
            labels = dict(zip(stats["variable"], stats["label"])) if "label" in stats else {}
            if left_out and (result.regression["model"].astype(str) == "multivariable").any():
                parts.append("The multivariable model included every variable of the table except "
                             + _join([labels.get(v, v) for v in left_out])
                             + " (marked in the schema as not for the multivariable model, e.g. derived from "
                             "other variables).")
            else:
                parts.append("The multivariable model included every variable of the table.")
        reg = result.regression
        multi = reg[reg["model"].astype(str) == "multivariable"] if "model" in reg else reg.iloc[:0]
        if len(multi) and "n_used" in multi and multi["n_used"].notna().any():
            n_cc = int(multi["n_used"].max())
            parts.append(f"It was fitted to the {n_cc} of {result.n_total} patients with no missing value in "
                         "any of its variables (complete-case analysis); each univariable model used the "
                         "patients with a recorded value of its variable.")
        fits = reg["fit"].astype(str) if "fit" in reg else pd.Series(dtype=str)
        if (fits == "firth").any():
            models = _join(sorted(set(reg.loc[fits == "firth", "model"].astype(str))))
            parts.append(f"Where a model showed separation or did not converge ({models}), Firth's "
                         "bias-reduced estimates (Jeffreys-penalized likelihood; Firth 1993) with Wald "
                         "confidence intervals are reported instead (as R brglm2 reports them); for the "
                         "separated terms these intervals are approximate, and profile penalized-likelihood "
                         "intervals (Heinze and Schemper 2002) were not computed.")
        if (fits == "l2_penalized").any():
            ridge = reg[fits == "l2_penalized"]
            models = _join(sorted(set(ridge["model"].astype(str))))
            reasons = ridge["reason"].astype(str) if "reason" in ridge else pd.Series(dtype=str)
            why = [w for w, hit in (("Firth's fit did not converge", reasons.str.contains("did not converge")),
                                    ("collinear terms", reasons.str.contains("rank-deficient")))
                   if hit.any()]
            parts.append(f"Where Firth's fit was not usable ({_join(why) or 'see the table notes'}; "
                         f"{models} model), L2-penalized (ridge) point estimates are shown without "
                         "confidence intervals or p-values, because the penalty shrinks them towards an "
                         "odds ratio of 1.")
        if (fits == "not_converged").any():
            models = _join(sorted(set(reg.loc[fits == "not_converged", "model"].astype(str))))
            parts.append(f"Where neither Firth's nor the L2-penalized fit converged ({models} model), no "
                         "odds ratio is reported.")
        epv = settings.get("multivariable_epv")
        if epv:
            parts.append(f"The multivariable model had {epv_phrase(epv)}, so its estimates may be unstable "
                         "and over-fitted.")
    elif settings.get("regression", True) and result.regression_note:
        kind = "Logistic regression" if len(compared) == 2 else "Multinomial logistic regression"
        parts.append(f"{kind} was not reported: {result.regression_note}.")
    parts.append(f"Two-sided p < {alpha:g} was considered significant; random procedures used "
                 f"seed {settings.get('seed', 0)}.")
    sw = result.software or {}
    packages = list(SOFTWARE_PACKAGES)
    if len(tested) and (tested["test"] == "welch_anova").any():
        packages.append("pingouin")  # analysis.location.welch_anova
    names_sw = [f"{'Python' if k == 'python' else k} {sw[k]}" for k in packages if k in sw]
    if names_sw:
        parts.append(f"Analyses used {_join(names_sw)}.")
    return " ".join(parts)
