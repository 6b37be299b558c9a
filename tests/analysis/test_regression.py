"""Multinomial ORs against R nnet::multinom (tests/fixtures/r_reference/regression.R) and
the separation / singularity fallbacks (Firth against R brglm2: firth.R; L2 for collinearity)."""
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError, SeparationWarning
from analysis.regression import REGRESSION_COLUMNS, multinomial_or_table

REF_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference"
DATA = pd.read_csv(REF_DIR / "regression_data.csv")
REF = pd.read_csv(REF_DIR / "regression_results.csv")
PREDICTORS = ["age", "sex", "shape", "ls_ratio", "adler_grade"]
TYPES = {"age": "continuous", "sex": "binary", "shape": "categorical", "ls_ratio": "continuous",
         "adler_grade": "ordinal"}
LEVELS = {"sex": ["female", "male"], "shape": ["oval", "round", "irregular"], "adler_grade": [0, 1, 2, 3]}
GROUPS = ["metastatic", "lymphoma", "benign"]


def r_term(row):
    return row["variable"] if pd.isna(row["level"]) else f"{row['variable']}{row['level']}"


@pytest.fixture(scope="module")
def table():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        return multinomial_or_table(DATA, "group", PREDICTORS, "benign", TYPES, levels=LEVELS,
                                    outcome_levels=GROUPS)


def test_columns_and_row_layout(table):
    assert list(table.columns) == REGRESSION_COLUMNS and isinstance(table.index, pd.RangeIndex)
    assert set(table["model"]) == {"univariable", "multivariable"}
    assert set(table["outcome_level"]) == {"metastatic", "lymphoma"}
    assert (table["reference"] == "benign").all()
    refs = table[table["reason"] == "reference level"]
    assert set(zip(refs["variable"], refs["level"])) == {("sex", "female"), ("shape", "oval")}
    assert (refs["odds_ratio"] == 1.0).all() and refs["ci_low"].isna().all()


def test_matches_r_nnet_multinom(table):
    est = table[table["reason"] != "reference level"].copy()
    est["r_term"] = est.apply(r_term, axis=1)
    merged = est.merge(REF, on=["model", "outcome_level", "r_term"], suffixes=("", "_r"))
    assert len(merged) == len(REF) == len(est)
    for col in ("coef", "std_error", "odds_ratio", "ci_low", "ci_high"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_r"], rtol=1e-4, err_msg=col)
    # p-values: Wald z agrees to ~1e-6, which moves p < 1e-20 by up to ~1e-4 relative
    np.testing.assert_allclose(merged["p_value"], merged["p_value_r"], rtol=1e-3)
    assert (merged["n_used"] == merged["n_used_r"]).all()
    assert (merged["fit"] == "mle").all()


def test_univariable_uses_rows_complete_for_that_predictor_only(table):
    uni = table[table["model"] == "univariable"].groupby("variable")["n_used"].first()
    assert uni["age"] == DATA["age"].notna().sum()
    assert uni["sex"] == len(DATA)
    multi = table.loc[table["model"] == "multivariable", "n_used"].unique()
    assert multi.tolist() == [len(DATA.dropna(subset=PREDICTORS))]


def test_input_not_modified():
    before = DATA.copy()
    multinomial_or_table(DATA, "group", ["age"], "benign", TYPES, models=("univariable",))
    pd.testing.assert_frame_equal(DATA, before)


def separated_data():
    rng = np.random.default_rng(5)
    n = 150
    group = rng.choice(GROUPS, n)
    necrosis = np.where(group == "metastatic", rng.choice(["absent", "present"], n), "absent")
    age = rng.normal(50, 10, n)
    return pd.DataFrame({"group": group, "necrosis": necrosis, "age": age})


def test_separation_falls_back_to_firth_with_warning_and_reason():
    df = separated_data()
    types = {"necrosis": "binary", "age": "continuous"}
    with pytest.warns(SeparationWarning, match="necrosis"):
        out = multinomial_or_table(df, "group", ["necrosis", "age"], "benign", types,
                                   levels={"necrosis": ["absent", "present"]}, outcome_levels=GROUPS)
    nec = out[(out["variable"] == "necrosis") & (out["level"] == "present")]
    assert (nec["fit"] == "firth").all()
    assert nec["reason"].str.contains("Firth bias-reduced").all()
    assert np.isfinite(nec[["odds_ratio", "ci_low", "ci_high"]].to_numpy()).all()
    assert (nec["odds_ratio"] < np.exp(10)).all()
    # the univariable age model is unaffected and stays an ordinary MLE
    age_uni = out[(out["model"] == "univariable") & (out["variable"] == "age")]
    assert (age_uni["fit"] == "mle").all() and (age_uni["reason"] == "").all()


FIRTH_DATA = pd.read_csv(REF_DIR / "firth_data.csv")
FIRTH_REF = pd.read_csv(REF_DIR / "firth_results.csv")
FIRTH_TYPES = {"necrosis": "binary", "hilum": "categorical", "age": "continuous", "sex": "binary"}
FIRTH_LEVELS = {"necrosis": ["absent", "present"], "hilum": ["present", "narrow", "absent"],
                "sex": ["female", "male"]}


@pytest.mark.parametrize("predictors", [["necrosis"], ["hilum"], ["necrosis", "hilum", "age", "sex"]])
def test_firth_fallback_matches_r_brglm2(predictors):
    """Complete (necrosis) and quasi-separation (hilum 'absent' never benign): the fallback's
    estimates and standard errors equal R brglm2::brmultinom(type = 'AS_mean')."""
    formula = "group ~ " + " + ".join(predictors)
    ref = FIRTH_REF[FIRTH_REF["formula"] == formula]
    assert len(ref) > 0
    model = "univariable" if len(predictors) == 1 else "multivariable"
    with pytest.warns(SeparationWarning):
        out = multinomial_or_table(FIRTH_DATA, "group", predictors, "benign", FIRTH_TYPES,
                                   levels=FIRTH_LEVELS, outcome_levels=GROUPS, models=(model,))
    fitted = out[out["reason"] != "reference level"]
    assert (fitted["fit"] == "firth").all()
    got = fitted.assign(r_term=fitted.apply(r_term, axis=1)).set_index(["outcome_level", "r_term"])
    slopes = ref[ref["r_term"] != "(Intercept)"]
    assert len(slopes) == len(got)
    for _, row in slopes.iterrows():
        mine = got.loc[(row["outcome_level"], row["r_term"])]
        assert mine["coef"] == pytest.approx(row["coef"], rel=1e-6, abs=1e-9)
        assert mine["std_error"] == pytest.approx(row["std_error"], rel=1e-6)


def test_firth_without_separation_matches_r_brglm2():
    """Firth's estimator itself (not only as a fallback) on a well-behaved model."""
    from analysis.regression import _firth

    d = FIRTH_DATA
    codes = {"benign": 0, "metastatic": 1, "lymphoma": 2}
    y = d["group"].map(codes).to_numpy()
    X = np.column_stack([np.ones(len(d)), d["age"].to_numpy(float), (d["sex"] == "male").to_numpy(float)])
    params, bse, converged = _firth(y, X)
    assert converged
    ref = FIRTH_REF[FIRTH_REF["formula"] == "group ~ age + sex"]
    cols = {"(Intercept)": 0, "age": 1, "sexmale": 2}
    for _, row in ref.iterrows():
        j = 0 if row["outcome_level"] == "metastatic" else 1
        assert params[cols[row["r_term"]], j] == pytest.approx(row["coef"], rel=1e-6, abs=1e-9)
        assert bse[cols[row["r_term"]], j] == pytest.approx(row["std_error"], rel=1e-6)


def test_l2_fallback_is_the_penalized_optimum():
    """The last-resort L2 fit: at the returned estimates the penalized score is zero (checked by
    minimising the penalized log-likelihood written out independently here)."""
    from analysis.regression import _penalized

    df = separated_data()
    x = (df["necrosis"] == "present").to_numpy(float)
    y = df["group"].to_numpy()
    codes = np.select([y == "benign", y == "metastatic"], [0, 1], 2)
    params, _, ok = _penalized(codes, np.column_stack([np.ones_like(x), x]), 1.0)
    assert ok

    def neg_pen_loglik(b):  # b = [a_met, a_lym, b_met, b_lym]
        eta = np.column_stack([np.zeros_like(x), b[0] + b[2] * x, b[1] + b[3] * x])
        logp = eta - np.log(np.exp(eta).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(y)), codes].sum() + 0.5 * (b[2] ** 2 + b[3] ** 2)

    from scipy.optimize import minimize
    best = minimize(neg_pen_loglik, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    assert params[1, 0] == pytest.approx(best[2], abs=1e-4)
    assert params[1, 1] == pytest.approx(best[3], abs=1e-4)


def test_collinear_predictors_do_not_crash():
    df = DATA.assign(age_copy=DATA["age"] * 2.0)
    types = {**TYPES, "age_copy": "continuous"}
    with pytest.warns(SeparationWarning):
        out = multinomial_or_table(df, "group", ["age", "age_copy"], "benign", types,
                                   models=("multivariable",))
    assert (out["fit"] == "l2_penalized").all() and np.isfinite(out["odds_ratio"]).all()
    assert out["reason"].str.contains("rank-deficient design").all()
    # ridge estimates are shrunk: no Wald CI, SE or p-value is reported for them
    assert out[["ci_low", "ci_high", "p_value", "std_error"]].isna().all().all()
    assert out["reason"].str.contains("no CI or p-value").all()


def test_constant_predictor_and_unobserved_level_are_reported_not_fitted():
    df = DATA.assign(site=1.0, shape=DATA["shape"].replace({"irregular": "round"}))
    out = multinomial_or_table(df, "group", ["site", "shape"], "benign",
                               {"site": "continuous", "shape": "categorical"}, levels=LEVELS,
                               outcome_levels=GROUPS)
    site = out[out["variable"] == "site"]
    assert site["odds_ratio"].isna().all() and site["reason"].str.contains("constant").all()
    irr = out[(out["variable"] == "shape") & (out["level"] == "irregular")]
    assert len(irr) == 4 and irr["reason"].str.contains("not observed").all()
    rnd = out[(out["variable"] == "shape") & (out["level"] == "round")]
    assert (rnd["fit"] == "mle").all() and np.isfinite(rnd["odds_ratio"]).all()


def test_clear_errors():
    with pytest.raises(CohortError, match="did you mean 'benign'"):
        multinomial_or_table(DATA, "group", ["age"], "benign ", TYPES)
    with pytest.raises(CohortError, match="did you mean 'age'"):
        multinomial_or_table(DATA, "group", ["agee"], "benign", TYPES)
    with pytest.raises(CohortError, match="did you mean 'categorical'"):
        multinomial_or_table(DATA, "group", ["shape"], "benign", {"shape": "categoric"})


def test_ordinal_as_categorical_gives_one_row_per_level():
    out = multinomial_or_table(DATA, "group", ["adler_grade"], "benign", TYPES, levels=LEVELS,
                               outcome_levels=GROUPS, models=("univariable",), ordinal_as="categorical")
    met = out[out["outcome_level"] == "metastatic"]
    assert list(met["level"]) == ["0", "1", "2", "3"] and met["reason"].iloc[0] == "reference level"
    assert np.isfinite(met["odds_ratio"]).all()


def test_unobserved_outcome_level_is_reported_not_fitted():
    df = DATA[DATA["group"] != "lymphoma"]
    out = multinomial_or_table(df, "group", ["age"], "benign", TYPES, outcome_levels=GROUPS,
                               models=("univariable",))
    lym = out[out["outcome_level"] == "lymphoma"]
    assert lym["odds_ratio"].isna().all() and lym["reason"].str.contains("not observed").all()
    met = out[out["outcome_level"] == "metastatic"]
    assert (met["fit"] == "mle").all() and np.isfinite(met["odds_ratio"]).all()
