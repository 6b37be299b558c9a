"""The statistics of issue 9 (two-group test names, binary variables on one row, odds ratios per SD,
Monte Carlo bound p < 1/(B+1), a ridge fit that did not converge) together with the inferred schema
(column account, spelling variants, groups too small to test) and every export (HTML, Word, LaTeX,
Markdown, methods)."""
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

import analysis
import analysis.regression as reg
from analysis.formatting import MISSING


def _frame():
    """Groups a (12) and b (12) tested, c (2) too small; 'node' spelled Yes/yes/Y and No/no/N;
    'pattern' separates a from b perfectly, one level rare (Fisher; Monte Carlo with no
    simulated table as extreme when forced); 'size_mm' on a 0.007 scale; 'size_um' the same in micrometres."""
    rng = np.random.default_rng(9)
    group = ["a"] * 12 + ["b"] * 12 + ["c"] * 2
    node = (["Yes", "yes", "Y", "No"] * 3 + ["No", "no", "N", "no", "No", "Yes"] * 2 + ["Y", "N"])
    size = np.r_[rng.normal(0.0070, 0.0004, 12), rng.normal(0.0075, 0.0004, 12), [0.0071, 0.0072]].round(6)
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(26)], "diagnosis": group, "node": node,
                         "pattern": ["p1"] * 10 + ["p3"] * 2 + ["p2"] * 12 + ["p1", "p2"], "size_mm": size,
                         "size_um": (size * 1000).round(3)})


@pytest.fixture(scope="module")
def result():
    real = reg._penalized

    def not_converged(y, X, penalty):
        params, bse, _ = real(y, X, penalty)
        return params, bse, False

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(reg, "_penalized", not_converged)  # size_mm and size_um are collinear -> ridge
        return analysis.table1(_frame(), group="diagnosis", reference="A", n_boot=50,
                               fisher_time_budget=0, predictors=["size_mm", "size_um"])


def test_small_group_left_out_and_two_group_names(result):
    assert result.settings["groups_not_tested"] == {"c": 2}
    stats = result.stats.set_index("variable")
    assert stats.loc["size_mm", "test"] in ("t_test", "welch_t_test", "mann_whitney")
    assert stats.loc["pattern", "test"] == "fisher_monte_carlo"
    account = result.variables.set_index("column")
    assert account.loc["size_mm", "test"] == stats.loc["size_mm", "test"]
    assert account.loc["patient_id", "role"] == "id"
    labels = result.display["Test"].tolist()
    assert not any(t in ("One-way ANOVA", "Welch ANOVA", "Kruskal\u2013Wallis") for t in labels)
    assert "binary logistic regression" in result.methods_text
    assert "c (n=2) had fewer than 3 patients" in result.methods_text


def test_binary_one_row_after_spelling_merge(result):
    rows = result.display["Variable"].tolist()
    assert "node, Yes: n (%)" in rows
    assert not any(r.strip() in ("no", "yes", "Y", "N") for r in rows)
    yes = result.display.loc[result.display["Variable"] == "node, Yes: n (%)"].iloc[0]
    assert yes[[c for c in result.display.columns if c.startswith("Overall")][0]].startswith("12 (")


def test_monte_carlo_bound_and_per_sd_and_not_converged_in_every_export(result, tmp_path):
    from docx import Document

    stats = result.stats.set_index("variable")
    assert bool(stats.loc["pattern", "p_value_upper_bound"])
    p_cell = result.display.loc[result.display["Variable"].str.startswith("pattern"), "p"].iloc[0]
    assert p_cell.startswith("<")
    odds = result.odds_display
    per_sd = [v for v in odds["Variable"] if v.startswith("size_mm, per SD (")]
    assert per_sd, odds["Variable"].tolist()
    assert (odds.astype(str) == f"{MISSING} (not converged)").to_numpy().any()

    html = result._repr_html_()
    assert "node, Yes: n (%)" in html and "&lt;0.0" in html and "p &lt; 1/(" in html
    assert "Table 1." in html

    result.to_docx(tmp_path / "t.docx")
    doc = Document(str(tmp_path / "t.docx"))
    cells = [c.text for t in doc.tables for r in t.rows for c in r.cells]
    text = "\n".join(p.text for p in doc.paragraphs) + "\n".join(cells)
    assert "node, Yes: n (%)" in cells and per_sd[0] in cells and p_cell in cells
    assert f"{MISSING} (not converged)" in cells
    assert "Table 2. Logistic regression" in text and "p < 1/(" in text

    tex = result.to_latex()
    assert "node, Yes: n (\\%)" in tex and "per SD (" in tex and "\\textless{}0.0" in tex
    assert "(not converged)" in tex and "Logistic regression: odds ratios" in tex

    md = result.to_markdown()
    assert "Table 2. Logistic regression" in md and "(not converged)" in md


def test_write_schema_records_or_per_for_continuous_variables(tmp_path):
    """--write-schema writes the OR unit of each continuous variable (the --or-per value), so the
    saved schema records the decision and the user can edit it per variable."""
    from analysis.table1 import main

    data = tmp_path / "cohort.csv"
    _frame().to_csv(data, index=False)
    for per, label in (("iqr", "per IQR ("), (None, "per SD (")):
        path = tmp_path / f"schema_{per}.yaml"
        argv = [str(data), "--group", "diagnosis", "--write-schema", str(path)] + (["--or-per", per] if per else [])
        assert main(argv) == 0
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        by_name = {v["name"]: v for v in raw["variables"]}
        assert by_name["size_mm"]["or_per"] == (per or "sd") and by_name["size_um"]["or_per"] == (per or "sd")
        assert "or_per" not in by_name["node"] and "or_per" not in by_name["pattern"]
        assert "# or_per:" in path.read_text(encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = analysis.table1(data, schema=path, n_boot=20, posthoc=False, or_per="unit")
        assert any(v.startswith(f"size_mm, {label}") for v in res.odds_display["Variable"])  # the schema wins
