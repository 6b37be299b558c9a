"""table1.tex compiles: the 586-patient demo and a Chinese-labelled cohort, with xelatex.

Skipped when no TeX engine is installed, except in CI (CI=true), where .ci/run installs
texlive-xetex, fonts-noto-cjk and poppler-utils and a missing engine is a failure.
"""
import os
import re
import shutil
import subprocess
import warnings

import pytest

import analysis
from analysis.schema import default_schema_path
from analysis.simulate import simulate_cohort

CHINESE = {"metastatic": "\u8f6c\u79fb\u6027", "lymphoma": "\u6dcb\u5df4\u7624", "benign": "\u826f\u6027"}


def _tool(name):
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed; .ci/run must install it (texlive-xetex, poppler-utils)")
        pytest.skip(f"{name} not installed")
    return path


def _compile(tex_path):
    """xelatex until longtable's column widths settle (at most 4 runs, as latexmk would); the log."""
    xelatex = _tool("xelatex")
    for _ in range(4):
        proc = subprocess.run([xelatex, "-interaction=nonstopmode", "-halt-on-error", tex_path.name],
                              cwd=tex_path.parent, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:]
        log = tex_path.with_suffix(".log").read_text(encoding="utf-8", errors="replace")
        if "Column widths have changed" not in log and "Rerun" not in log:
            break
    return log


def _check_pdf(pdf, result):
    log = pdf.with_suffix(".log").read_text(encoding="utf-8", errors="replace")
    assert "Float too large" not in log
    assert not re.search(r"Overfull \\[hv]box", log), re.findall(r"Overfull .*", log)[:5]
    assert "Missing character" not in log
    assert "Column widths have changed" not in log  # settled
    fonts = subprocess.run([_tool("pdffonts"), pdf.name], cwd=pdf.parent, capture_output=True,
                           text=True).stdout
    assert "Type 3" not in fonts, fonts
    text = subprocess.run([_tool("pdftotext"), "-layout", pdf.name, "-"], cwd=pdf.parent,
                          capture_output=True, text=True).stdout
    flat = " ".join(text.split())
    assert "Table 1: Table 1" not in flat and "Table 1: Characteristics of" in flat
    for level in result.group_levels:
        assert level in flat
    # every row of Table 1 and the last footnote reached the page (nothing cut off)
    for label in result.display["Variable"]:
        words = " ".join(str(label).split()).split(" ")[0]
        assert words in flat, label
    def alnum(t):
        return re.sub(r"[^0-9A-Za-z]", "", t)

    last_note = alnum(result.footnotes[-1][1])[-40:]
    assert last_note in alnum(flat), result.footnotes[-1][1]
    return flat


@pytest.mark.slow
def test_demo_table_compiles_without_overflow(tmp_path):
    _tool("xelatex")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analysis.table1(simulate_cohort(n=586, seed=0), schema=default_schema_path(), n_boot=50)
    tex = res.to_latex(tmp_path / "table1.tex")
    _compile(tex)
    flat = _check_pdf(tex.with_suffix(".pdf"), res)
    assert "Table 2: Multinomial logistic regression" in flat
    assert "--predictors" in flat  # not turned into an en dash
    assert "Table 3" not in flat  # post hoc unnumbered, multivariable model continues Table 2


@pytest.mark.slow
def test_chinese_group_names_compile(tmp_path):
    _tool("xelatex")
    df = simulate_cohort(n=120, seed=0)
    df["group"] = df["group"].map(CHINESE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analysis.table1(df, group="group", n_boot=50, reference="\u826f\u6027")
    tex = res.to_latex(tmp_path / "table1.tex")
    source = tex.read_text(encoding="utf-8")
    assert "?" not in source
    assert all(name in source for name in CHINESE.values())
    _compile(tex)
    flat = _check_pdf(tex.with_suffix(".pdf"), res)
    assert "?" not in flat
    assert f"against {CHINESE['benign']}" in flat


@pytest.mark.slow
def test_six_groups_fit_the_page(tmp_path):
    """Many groups: Table 1 in a smaller font, the odds ratios (two columns per comparison under a
    spanning header) split into column chunks that fit, each 'continued' under Table 2."""
    _tool("xelatex")
    import numpy as np

    df = simulate_cohort(n=600, seed=0).drop(columns=["group"])
    names = [f"group {x}" for x in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")]
    df["grp"] = np.random.default_rng(0).choice(names, size=len(df))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analysis.table1(df, group="grp", n_boot=20)
    tex = res.to_latex(tmp_path / "table1.tex")
    source = tex.read_text(encoding="utf-8")
    assert r"\multicolumn{2}{c}{\textbf{group beta vs group alpha}}" in source
    assert r"\cmidrule(lr){2-3}" in source
    _compile(tex)
    flat = _check_pdf(tex.with_suffix(".pdf"), res)
    assert "Table 3" not in flat and "(continued) (continued)" not in flat
    for name in names[1:]:
        assert f"{name} vs group alpha" in flat
