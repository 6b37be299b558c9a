"""analysis.export: xlsx / LaTeX / Markdown / csv writers on a small hand-made Table1Result."""
import math
import shutil
import subprocess

import pandas as pd
import pytest

from analysis import export
from analysis.table1 import STATS_COLUMNS, Table1Result


def small_result(**changes) -> Table1Result:
    """Two variables (one continuous, one categorical with 2 levels), two tests."""
    cols = ["Variable", "Overall (n=10)", "a_b (n=6)", "c&d (n=4)", "Missing", "p", "q",
            "Effect size (95% CI)", "Test"]
    display = pd.DataFrame([
        ["Age (years), mean \u00b1 SD", "50.0 \u00b1 10.0", "52.0 \u00b1 9.0", "47.0 \u00b1 11.0",
         "1 (10.0)", "0.043", "0.086", "0.12 (0.00\u20130.40)", "Welch ANOVA"],
        ["Margin 100%, n (%)", "", "", "", "0 (0.0)", "<0.001", "<0.001",
         "0.55 (0.20\u20130.80)", "Fisher\u2013Freeman\u2013Halton exact"],
        ["smooth_ish", "6 (60.0)", "5 (83.3)", "1 (25.0)", "", "", "", "", ""],
        ["ill-defined {x}", "4 (40.0)", "1 (16.7)", "3 (75.0)", "", "", "", "", ""],
    ], columns=cols)
    row_info = pd.DataFrame({"variable": ["age", "margin", "margin", "margin"],
                             "level": [None, None, "smooth_ish", "ill-defined {x}"],
                             "kind": ["variable", "variable", "level", "level"],
                             "marker": ["a", "b", "", ""]})
    stats = pd.DataFrame({
        "variable": ["age", "margin"], "test": ["welch_anova", "fisher_exact"],
        "statistic": [4.2, math.nan], "df": [1.0, math.nan], "p_value": [0.0431234567891234, 0.000123],
        "q_value": [0.0862469135782468, 0.000246], "effect_size": [0.1234567, 0.55],
        "effect_size_name": ["eta_squared", "cramers_v"], "n_used": [9, 10], "n_missing": [1, 0],
        "ci_low": [0.0, 0.2], "ci_high": [0.4, 0.8], "df2": [7.123456789, math.nan],
        "method": ["Welch's ANOVA", "Fisher\u2013Freeman\u2013Halton exact test"], "reason": ["x", "y"],
    })
    stats = stats[["reason"] + [c for c in stats.columns if c != "reason"]]  # scrambled on purpose
    posthoc = pd.DataFrame({"variable": ["margin"], "group_a": ["a_b"], "group_b": ["c&d"],
                            "test": ["fisher_exact"], "p_value": [0.01], "p_adjusted": [0.01]})
    regression = pd.DataFrame({"variable": ["age"], "term": ["age"], "group": ["a_b"],
                               "reference": ["c&d"], "model": ["univariable"],
                               "odds_ratio": [1.05], "ci_low": [0.9], "ci_high": [1.2],
                               "p_value": [0.3]})
    odds_display = pd.DataFrame({"Variable": ["Age (per year)"], "a_b vs c&d: OR (95% CI)":
                                 ["1.05 (0.90\u20131.20)"], "p": ["0.30"]})
    footnotes = (("", "Data are n (%) or mean \u00b1 SD; 100% of rows used."),
                 ("a", "Welch's ANOVA (unequal variances)."),
                 ("b", "Fisher\u2013Freeman\u2013Halton exact test; \u03c7\u00b2 not valid (expected < 5)."))
    kwargs = dict(display=display, stats=stats, decisions={}, posthoc=posthoc,
                  regression=regression, exclusions=pd.DataFrame(columns=["row", "patient_id", "column", "reason"]),
                  methods_text="Groups were compared with Welch's ANOVA & Fisher's test.",
                  footnotes=footnotes, row_info=row_info, odds_display=odds_display,
                  group_column="grp", group_label="Group", group_levels=("a_b", "c&d"),
                  group_counts={"a_b": 6, "c&d": 4}, n_total=10, n_input=11, reference_group="c&d",
                  software={"python": "3.11", "pandas": pd.__version__})
    kwargs.update(changes)
    return Table1Result(**kwargs)


def test_stats_csv_has_contract_columns_first_and_full_precision(tmp_path):
    res = small_result()
    path = export.write_stats_csv(res, tmp_path / "s.csv")
    back = pd.read_csv(path)
    assert tuple(back.columns[:len(STATS_COLUMNS)]) == STATS_COLUMNS
    assert "reason" in back.columns and "df2" in back.columns
    assert back.loc[0, "p_value"] == 0.0431234567891234      # exact round trip
    assert back.loc[0, "df2"] == 7.123456789
    assert math.isnan(back.loc[1, "statistic"])
    assert b"\r\n" not in path.read_bytes()


def test_stats_csv_is_byte_identical_on_rewrite(tmp_path):
    a = export.write_stats_csv(small_result(), tmp_path / "a.csv").read_bytes()
    b = export.write_stats_csv(small_result(), tmp_path / "b.csv").read_bytes()
    assert a == b


def test_writers_do_not_modify_result(tmp_path):
    res = small_result()
    before = {k: getattr(res, k).copy() for k in ("display", "stats", "row_info", "posthoc", "regression")}
    export.write_all(res, tmp_path / "out")
    for k, frame in before.items():
        pd.testing.assert_frame_equal(getattr(res, k), frame)


def test_write_all_writes_every_file(tmp_path):
    paths = export.write_all(small_result(), tmp_path / "new" / "dir")
    assert [p.name for p in paths] == list(export.OUTPUT_FILES)
    assert all(p.stat().st_size > 0 for p in paths)
    posthoc = pd.read_csv(tmp_path / "new" / "dir" / "posthoc.csv")
    assert posthoc.loc[0, "test"] == "fisher_exact" and posthoc.loc[0, "p_adjusted"] == 0.01
    tex = (tmp_path / "new" / "dir" / "table1.tex").read_text()
    assert "Post hoc pairwise comparisons" in tex and "Fisher exact" in tex


def test_xlsx_layout(tmp_path):
    from openpyxl import load_workbook

    path = export.write_xlsx(small_result(), tmp_path / "t.xlsx")
    wb = load_workbook(path, rich_text=True)
    assert wb.sheetnames[:5] == ["Table 1", "Odds ratios", "Odds ratios (tidy)", "Statistics", "Post hoc"]
    assert "Methods" in wb.sheetnames
    ws = wb["Table 1"]
    header = [c.value for c in ws[2]]
    assert header[:4] == ["Variable", "Overall (n=10)", "a_b (n=6)", "c&d (n=4)"]
    assert all(c.font.b for c in ws[2])
    assert ws.freeze_panes == "B3"
    # level rows indented, variable header of a multi-row block bold
    assert ws["A4"].font.b and ws["A5"].alignment.indent == 2
    # p cell carries the marker as a superscript run
    p_col = header.index("p") + 1
    rich = ws.cell(row=3, column=p_col).value
    assert str(rich) == "0.043a"
    assert rich[1].font.vertAlign == "superscript"
    # categorical p merged over its level rows
    assert any(str(r) == f"{ws.cell(row=4, column=p_col).coordinate}:{ws.cell(row=6, column=p_col).coordinate}"
               for r in ws.merged_cells.ranges)
    # footnotes below the table name each test
    texts = [str(ws.cell(row=r, column=1).value) for r in range(7, ws.max_row + 1)]
    assert any("Welch" in t for t in texts) and any("Fisher" in t for t in texts)
    assert ws.column_dimensions["A"].width >= 20
    stats = wb["Statistics"]
    assert [c.value for c in stats[1]][:len(STATS_COLUMNS)] == list(STATS_COLUMNS)
    assert stats.cell(row=2, column=5).value == 0.0431234567891234
    methods = wb["Methods"]
    assert "Welch" in methods["A2"].value
    assert {methods.cell(row=r, column=1).value for r in range(5, 7)} == {"python", "pandas"}


def test_xlsx_bytes_do_not_depend_on_the_clock(tmp_path):
    a = export.write_xlsx(small_result(), tmp_path / "a.xlsx").read_bytes()
    b = export.write_xlsx(small_result(), tmp_path / "b.xlsx").read_bytes()
    assert a == b


def test_latex_escapes_special_characters(tmp_path):
    text = export.write_latex(small_result(), tmp_path / "t.tex", standalone=False).read_text()
    assert r"\begin{longtable}" in text and r"\toprule" in text and r"\bottomrule" in text
    assert r"\documentclass" not in text
    assert r"\textbf{c\&d}\\\textbf{(n=4)}" in text  # header stacked: name over (n=)
    assert r"Margin 100\%" in text and r"smooth\_ish" in text
    assert r"$\pm$" in text and "\u00b1" not in text
    assert r"\textless{}0.001\textsuperscript{b}" in text
    assert r"ill-defined \{x\}" in text
    assert "0.12 (0.00--0.40)" in text
    assert not any(ord(ch) > 255 for ch in text)


@pytest.mark.parametrize("raw, expected", [
    ("a_b", r"a\_b"), ("50%", r"50\%"), ("x & y", r"x \& y"), ("<0.001", r"\textless{}0.001"),
    ("#1 $", r"\#1 \$"), ("~^", r"\textasciitilde{}\textasciicircum{}"), ("a\\b", r"a\textbackslash{}b"),
    ("\u03c7\u00b2", r"$\chi$\textsuperscript{2}"), ("Cram\u00e9r", "Cram\u00e9r"),
    ("\u8f6c\u79fb (n=3)", "\\othertext{\u8f6c\u79fb} (n=3)"),
    ("\u0421\u0430\u0448\u0430 & \u826f\u6027", "\\othertext{\u0421\u0430\u0448\u0430} \\& \\othertext{\u826f\u6027}"),
    ("\u0142\u00fc", "\u0142\u00fc"), ("a\nb", "a b"), ("--predictors", "-{}-predictors"),
])
def test_latex_escape(raw, expected):
    assert export.latex_escape(raw) == expected


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_standalone_latex_compiles_with_pdflatex(tmp_path):
    """A Latin-only table still compiles with pdflatex (the xelatex checks: test_latex_compile.py)."""
    path = export.write_latex(small_result(), tmp_path / "t.tex", standalone=True)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", path.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000
    if shutil.which("pdffonts"):
        fonts = subprocess.run(["pdffonts", "t.pdf"], cwd=tmp_path, capture_output=True, text=True).stdout
        assert "Type 3" not in fonts, fonts


def test_latex_captions_are_not_doubled_and_tables_are_longtables(tmp_path):
    text = export.latex_text(small_result())
    assert "Table 1." not in text and "Table 2." not in text  # LaTeX numbers the captions itself
    assert r"\caption{Characteristics of 10 patients by group (a\_b, c\&d)}" in text
    assert r"\caption*{Post hoc pairwise comparisons" in text
    assert r"\begin{table}" not in text and r"\resizebox" not in text
    assert text.count(r"\begin{longtable}") == 3 and r"\endhead" in text and r"\endlastfoot" in text
    assert r"\usepackage{longtable}" in text and r"\usepackage{fontspec}" in text
    assert r"\IfFileExists{lmodern.sty}{\usepackage[T1]{fontenc}\usepackage{lmodern}}{}" in text  # no Type 3
    assert text == export.write_latex(small_result(), tmp_path / "t.tex").read_text(encoding="utf-8")
    assert small_result().to_latex() == text
    assert small_result().to_latex(standalone=False) == export.latex_text(small_result(), standalone=False)


def test_html_repr_is_a_formatted_table():
    res = small_result()
    html = res._repr_html_()
    assert html == res.to_html()
    assert html.startswith('<div class="analysis-table1">') and "<table" in html
    assert "<caption" in html and "Table 1. Characteristics of 10 patients" in html
    assert "c&amp;d (n=6)" not in html and "c&amp;d (n=4)" in html and "c&d" not in html  # escaped
    assert html.count("<tr>") == 1 + len(res.display) + 1  # header, rows, footnotes
    assert "padding-left:2em" in html and html.count("padding-left:2em") == 2  # the two level rows
    assert "font-weight:bold" in html  # the categorical variable's header row
    assert "&lt;0.001<sup>b</sup>" in html and "0.043<sup>a</sup>" in html
    assert "<tfoot>" in html and "<sup>a</sup> Welch&#x27;s ANOVA" in html


def _docx_rows(table):
    return [[cell.text for cell in row.cells] for row in table.rows]


def test_docx_holds_every_row_title_and_footnotes(tmp_path):
    docx = pytest.importorskip("docx")
    res = small_result()
    path = export.write_docx(res, tmp_path / "t.docx")
    assert path == tmp_path / "t.docx"
    doc = docx.Document(str(path))
    assert len(doc.tables) == 3  # Table 1, post hoc, odds ratios
    rows = _docx_rows(doc.tables[0])
    assert rows[0] == [str(c) for c in res.display.columns]
    markers = dict(zip(range(len(res.display)), res.row_info["marker"]))
    for i, expected in enumerate(res.display.astype(str).values.tolist()):
        if markers[i]:  # the p-value carries the test letter as a superscript run
            expected[expected.__len__() - 4] += markers[i]
        assert rows[i + 1] == expected
    paragraphs = [p.text for p in doc.paragraphs]
    assert "Table 1. Characteristics of 10 patients by group (a_b, c&d)" in paragraphs
    assert "a Welch's ANOVA (unequal variances)." in paragraphs
    assert any(p.startswith("Table 2. Logistic regression") for p in paragraphs)  # two groups: binary
    assert _docx_rows(doc.tables[1])[1] == ["margin", "a_b vs c&d", "Fisher exact", "0.01", "0.01"]
    assert ["Age (per year)", "1.05 (0.90\u20131.20)", "0.30"] in _docx_rows(doc.tables[2])
    # one table per page section, landscape
    assert len(doc.sections) == 3 and all(s.page_width > s.page_height for s in doc.sections)
    # three-line table: rules above and below the header and below the last row, nothing vertical
    xml = doc.tables[0]._tbl.xml
    assert xml.count("<w:top ") == len(res.display.columns)
    assert xml.count("<w:bottom ") == 2 * len(res.display.columns)
    assert "<w:left " not in xml and "<w:insideV" not in xml
    sup = [r for r in doc.tables[0].rows[1].cells[5].paragraphs[0].runs if r.font.superscript]
    assert [r.text for r in sup] == ["a"]
    level = doc.tables[0].rows[3].cells[0].paragraphs[0]
    assert level.paragraph_format.left_indent is not None and level.paragraph_format.left_indent > 0
    widths = [c.width for c in doc.tables[0].columns]  # the page's text width, by longest text
    assert abs(sum(widths) - docx.shared.Cm(26.7)) < docx.shared.Cm(0.01)
    assert widths[0] > 2 * widths[list(res.display.columns).index("p")]
    assert res.to_docx(tmp_path / "u.docx").read_bytes() == path.read_bytes()  # clock-independent


def test_result_writer_methods(tmp_path):
    res = small_result()
    assert res.to_markdown() == export.write_markdown(res, tmp_path / "t.md").read_text(encoding="utf-8")
    assert res.to_markdown(tmp_path / "m.md").read_text(encoding="utf-8") == res.to_markdown()
    assert res.to_excel(tmp_path / "t.xlsx").stat().st_size > 0
    assert res.to_latex(tmp_path / "t.tex").read_text(encoding="utf-8") == res.to_latex()
    written = res.write_all(tmp_path / "all")
    assert [p.name for p in written] == list(export.OUTPUT_FILES)
    assert "table1.docx" in export.OUTPUT_FILES


def test_markdown_pipe_table_with_footnotes(tmp_path):
    text = export.write_markdown(small_result(), tmp_path / "t.md").read_text()
    lines = text.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    ncols = len(small_result().display.columns)
    # header, separator, 4 body rows, then post hoc and odds tables (header, sep, 1 row each)
    assert len(table) == 4 + 2 + 3 + 3
    assert "### Post hoc pairwise comparisons (variables with omnibus p < 0.05; Holm-adjusted" in text
    assert "| margin | a_b vs c&d | Fisher exact | 0.01 | 0.01 |" in text
    assert all(ln.count(" | ") == ncols - 1 for ln in table[:6] if not ln.startswith("|:"))
    assert "**Margin 100%, n (%)**" in text
    assert "&emsp;smooth_ish" in text
    assert "<0.001<sup>b</sup>" in text and "0.043<sup>a</sup>" in text
    assert "<sup>a</sup> Welch's ANOVA" in text
    assert "a_b vs c&d" in text


def test_markdown_escapes_pipes(tmp_path):
    res = small_result()
    display = res.display.copy()
    display.loc[2, "Variable"] = "x|y"
    text = export.write_markdown(small_result(display=display), tmp_path / "t.md").read_text()
    assert "x\\|y" in text


def test_odds_ratios_csv_and_empty_regression(tmp_path):
    path = export.write_odds_ratios_csv(small_result(), tmp_path / "or.csv")
    assert pd.read_csv(path).loc[0, "odds_ratio"] == 1.05
    empty = small_result(regression=pd.DataFrame(), odds_display=pd.DataFrame(),
                         regression_note="perfect separation on margin")
    path = export.write_odds_ratios_csv(empty, tmp_path / "or2.csv")
    assert "perfect separation" in path.read_text()
    md = export.write_markdown(empty, tmp_path / "e.md").read_text()
    assert "Not computed: perfect separation on margin." in md
    export.write_xlsx(empty, tmp_path / "e.xlsx")
    export.write_latex(empty, tmp_path / "e.tex")


def test_latex_wide_odds_table_is_split_into_chunks_that_keep_or_and_p_together():
    comps = [f"group {i} vs reference group" for i in range(1, 9)]
    cols = ["Variable"] + [f"Univariable {c}: {w}" for c in comps for w in ("OR (95% CI)", "p")]
    odds = pd.DataFrame([["Age, per unit"] + ["12.14 (5.95\u201324.78)", "<0.001"] * 8], columns=cols)
    levels = tuple(f"group {i}" for i in range(1, 9)) + ("reference group",)
    res = small_result(odds_display=odds, group_levels=levels, reference_group="reference group")
    text = export.latex_text(res, standalone=False)
    odds_part = "\n\n".join(b for b in text.split("\n\n") if "Multinomial" in b)  # the odds tables
    n_tables = odds_part.count(r"\begin{longtable}")
    assert n_tables >= 2  # too wide for one page
    assert odds_part.count(r"\addtocounter{table}{-1}") == n_tables - 1  # all under Table 2
    for c in comps:  # every comparison in one chunk (first and repeated header), spanning OR and p
        assert odds_part.count(rf"\multicolumn{{2}}{{c}}{{\textbf{{{c}}}}}") == 2
    size, chunks = export._latex_fit(export._split_odds(odds)[0][1], keep_together=2)
    assert all(len(ch) % 2 == 1 and ch[0] == 0 for ch in chunks)  # Variable + (OR, p) pairs
    assert sorted(j for ch in chunks for j in ch[1:]) == list(range(1, 17))
