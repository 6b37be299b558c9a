"""analysis.figures: forest plot and group distributions draw what the tables say, reproducibly."""
import math
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis.errors import CohortError, SeparationWarning
from analysis.figures import PALETTE, forest_plot, group_distribution_plot, new_figure, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _or_table():
    """A hand-made table in the layout of multinomial_or_table, one OR not estimable."""
    nan = math.nan
    rows = []
    for model in ("univariable", "multivariable"):
        for outcome, shift in (("metastatic", 1.0), ("lymphoma", 0.5)):
            base = {"model": model, "outcome_level": outcome, "reference": "benign", "n_used": 60,
                    "p_value": 0.01, "coef": 0.0, "std_error": 0.1}
            rows.append({**base, "variable": "age", "level": nan, "reference_level": nan,
                         "odds_ratio": 1.05 + 0.01 * shift, "ci_low": 1.01, "ci_high": 1.1, "fit": "mle",
                         "reason": ""})
            rows.append({**base, "variable": "margin", "level": "smooth", "reference_level": "smooth",
                         "odds_ratio": 1.0, "ci_low": nan, "ci_high": nan, "fit": "", "reason": "reference level"})
            rows.append({**base, "variable": "margin", "level": "irregular", "reference_level": "smooth",
                         "odds_ratio": 3.0 * shift, "ci_low": 1.5 * shift, "ci_high": 6.0 * shift, "fit": "mle",
                         "reason": ""})
            not_estimable = model == "multivariable" and outcome == "lymphoma"
            rows.append({**base, "variable": "margin", "level": "ill-defined", "reference_level": "smooth",
                         "odds_ratio": nan if not_estimable else 8.0, "ci_low": nan if not_estimable else 2.0,
                         "ci_high": nan if not_estimable else 30.0, "fit": "" if not_estimable else "l2_penalized",
                         "reason": "level not observed in the rows used" if not_estimable else "separation"})
            rows.append({**base, "variable": "necrosis", "level": "absent", "reference_level": "absent",
                         "odds_ratio": 1.0, "ci_low": nan, "ci_high": nan, "fit": "", "reason": "reference level"})
            rows.append({**base, "variable": "necrosis", "level": "present", "reference_level": "absent",
                         "odds_ratio": 0.4, "ci_low": 0.2, "ci_high": 0.8, "fit": "mle", "reason": ""})
    return pd.DataFrame(rows)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_forest_plot_has_one_panel_per_outcome_level_and_a_reference_line_at_one():
    fig = forest_plot(_or_table())
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["metastatic vs benign", "lymphoma vs benign"]
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        assert any(np.allclose(line.get_xdata(), [1, 1]) for line in ax.get_lines())


def test_forest_plot_rows_follow_the_table_with_reference_levels_in_headers():
    fig = forest_plot(_or_table(), labels={"margin": "Margin", "age": "Age"})
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["Age", "Margin (vs smooth)", "irregular", "ill-defined", "necrosis: present vs absent"]


def test_forest_plot_states_what_a_continuous_odds_ratio_is_per():
    """Odds ratios of continuous variables are per SD by default (issue 9): the row says so."""
    table = _or_table()
    table["per"] = np.where(table["variable"] == "age", "SD", None)
    table["increment"] = np.where(table["variable"] == "age", 15.4321, np.nan)
    fig = forest_plot(table, labels={"age": "Age (years)"})
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0] == "Age (years), per SD (15.4)"
    table["per"] = np.where(table["variable"] == "age", "given", None)
    table["increment"] = np.where(table["variable"] == "age", 10.0, np.nan)
    assert [t.get_text() for t in forest_plot(table).axes[0].get_yticklabels()][0] == "age, per 10"


def test_forest_plot_markers_sit_at_the_odds_ratios():
    table = _or_table()
    fig = forest_plot(table)
    ax = fig.axes[0]                                          # metastatic vs benign
    marker_x = sorted(float(line.get_xdata()[0]) for line in ax.get_lines()
                      if line.get_marker() in ("o", "s") and len(line.get_xdata()) == 1)
    expected = table[(table.outcome_level == "metastatic") & (table.reason != "reference level")]
    assert marker_x == pytest.approx(sorted(expected.odds_ratio))


def test_forest_plot_shows_nan_odds_ratio_as_text_and_keeps_the_row():
    fig = forest_plot(_or_table())
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert texts == ["not estimable"]
    assert [t.get_text() for t in fig.axes[0].texts] == []
    assert "ill-defined" in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Univariable", "Multivariable", "penalized fit (separation)"]


def test_forest_plot_does_not_modify_its_input_and_writes_identical_png_twice(tmp_path):
    table = _or_table()
    before = table.copy()
    forest_plot(table, tmp_path / "a.png")
    forest_plot(table, tmp_path / "b.png")
    pd.testing.assert_frame_equal(table, before)
    a, b = (tmp_path / "a.png").read_bytes(), (tmp_path / "b.png").read_bytes()
    assert a.startswith(PNG_MAGIC) and len(a) > 5000
    assert a == b


def test_forest_plot_draws_into_given_axes_and_checks_their_number():
    fig = new_figure(6, 3)
    axes = fig.subplots(1, 2)
    assert forest_plot(_or_table(), ax=axes) is fig
    with pytest.raises(CohortError, match="needs 2 Axes"):
        forest_plot(_or_table(), ax=new_figure(3, 3).subplots())


def test_forest_plot_missing_column_is_one_clear_error():
    with pytest.raises(CohortError, match="no column 'odds_ratio'.*did you mean"):
        forest_plot(_or_table().rename(columns={"odds_ratio": "odds_ratios"}))


def test_forest_plot_of_a_real_regression_table(demo_cohort):
    from analysis.regression import multinomial_or_table

    schema = demo_cohort.schema
    names = ["age", "sex", "margin"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeparationWarning)
        table = multinomial_or_table(demo_cohort.data, schema.group_column, names, schema.reference_group,
                                     {n: schema.variable(n).type for n in names},
                                     levels={n: schema.variable(n).levels for n in names if schema.variable(n).levels},
                                     outcome_levels=schema.group_levels)
    fig = forest_plot(table, labels={v.name: v.label for v in schema.variables})
    assert len(fig.axes) == len(schema.group_levels) - 1
    n_nan = int((table.odds_ratio.isna()).sum())
    assert _texts(fig).count("not estimable") == n_nan


def test_group_distribution_plot_bars_are_the_level_percentages_in_schema_order(demo_cohort):
    data_before = demo_cohort.data.copy()
    fig = group_distribution_plot(demo_cohort, ["age", "margin", "adler_grade"])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [demo_cohort.schema.variable(n).label for n in
                                                  ("age", "margin", "adler_grade")]
    groups = list(demo_cohort.schema.group_levels)
    ticks = [t.get_text().split("\n")[0] for t in visible[1].get_xticklabels()]
    assert ticks == groups
    data = demo_cohort.data
    expected = pd.crosstab(data[demo_cohort.schema.group_column], data["margin"], normalize="index") * 100
    heights = np.array([p.get_height() for p in visible[1].patches]).reshape(-1, len(groups))  # level x group
    np.testing.assert_allclose(heights.T, expected.loc[groups, list(demo_cohort.schema.variable("margin").levels)])
    n_age = [int(t.get_text().split("n=")[1].rstrip(")")) for t in visible[0].get_xticklabels()]
    assert n_age == [int(data.loc[data[demo_cohort.schema.group_column] == g, "age"].notna().sum()) for g in groups]
    pd.testing.assert_frame_equal(demo_cohort.data, data_before)


def test_group_distribution_plot_unknown_variable_suggests_a_name(demo_cohort):
    with pytest.raises(CohortError, match="'magin' is not a variable.*did you mean 'margin'"):
        group_distribution_plot(demo_cohort, ["age", "magin"])


def test_group_distribution_plot_is_deterministic(demo_cohort, tmp_path):
    group_distribution_plot(demo_cohort, ["age", "sex"], tmp_path / "a.png")
    group_distribution_plot(demo_cohort, ["age", "sex"], tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize("suffix", [".svg", ".pdf"])
def test_save_figure_vector_formats_are_byte_identical(tmp_path, suffix):
    def draw():
        fig = new_figure(2, 2)
        fig.subplots().plot([0, 1], [1, 0], color=PALETTE[0])
        return fig

    a = save_figure(draw(), tmp_path / f"a{suffix}").read_bytes()
    b = save_figure(draw(), tmp_path / f"b{suffix}").read_bytes()
    assert a == b and len(a) > 500


def test_figures_leave_the_global_style_alone():
    before = dict(matplotlib.rcParams)
    forest_plot(_or_table())
    assert dict(matplotlib.rcParams) == before
