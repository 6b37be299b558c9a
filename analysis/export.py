"""Write a :class:`analysis.table1.Table1Result` as xlsx, LaTeX, Markdown and csv.

Nothing here computes or rounds: the human tables are ``result.display`` and
``result.odds_display`` (already formatted by :mod:`analysis.formatting`), the csv files
are the tidy frames at full precision.  Every writer returns the :class:`pathlib.Path`
it wrote and creates missing parent folders.

* :func:`write_xlsx` -- sheets 'Table 1' (bold header with group sizes, indented level
  rows, per-variable cells merged over the level rows, superscript test markers,
  footnotes, frozen header), 'Odds ratios', 'Statistics', 'Post hoc', 'Methods'.
* :func:`write_docx` -- Word (python-docx): three-line journal tables with title and
  footnotes, one table per page section (Table 1, post hoc, odds ratios).
* :func:`write_latex` -- booktabs ``longtable`` tables that break across pages (Table 1,
  post hoc, odds ratios), special characters escaped; ``standalone=True`` gives a UTF-8
  document that compiles with ``xelatex`` (any script: non-Latin text is set in Noto CJK)
  or, for Latin-only tables, ``pdflatex``; outline (Type 1 / OpenType) fonts either way.
* :func:`table1_html` -- the formatted Table 1 as HTML (what Jupyter shows).
* :func:`write_markdown` -- GitHub pipe tables with footnotes.
* :func:`write_stats_csv`, :func:`write_odds_ratios_csv` -- tidy, full precision,
  byte-identical for identical inputs.
* :func:`write_methods` -- the methods paragraph as Markdown.
* :func:`write_all` -- all of the above into one folder (what the CLI calls).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .table1 import STATS_COLUMNS

__all__ = [
    "write_xlsx",
    "write_latex",
    "write_markdown",
    "write_stats_csv",
    "write_odds_ratios_csv",
    "write_posthoc_csv",
    "write_methods",
    "write_docx",
    "write_all",
    "latex_text",
    "markdown_text",
    "table1_html",
    "latex_escape",
    "OUTPUT_FILES",
]

#: File names written by :func:`write_all`, in order.
OUTPUT_FILES = ("table1.xlsx", "table1.docx", "table1.tex", "table1.md", "table1_stats.csv",
                "odds_ratios.csv", "posthoc.csv", "methods.md")

#: How post hoc tests are named in the human tables.
_POSTHOC_NAMES = {"dunn": "Dunn", "welch_t": "Welch t", "mann_whitney": "Mann\u2013Whitney",
                  "chi_square": "\u03c7\u00b2", "fisher_exact": "Fisher exact"}



def _path(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _caption(result) -> str:
    """Table 1's caption without its number."""
    groups = ", ".join(str(g) for g in result.group_levels)
    return (f"Characteristics of {result.n_total} patients by "
            f"{str(result.group_label).lower()} ({groups})")


def _title(result) -> str:
    return f"Table 1. {_caption(result)}"


def _odds_caption(result) -> str:
    kind = "Logistic regression" if len(_tested_levels(result)) == 2 else "Multinomial logistic regression"
    return f"{kind}: odds ratios (95% CI) against {result.reference_group}"


def _tested_levels(result) -> tuple:
    """The groups the tests and odds ratios compared (groups too small to test left out)."""
    skipped = (getattr(result, "settings", None) or {}).get("groups_not_tested") or {}
    return tuple(g for g in result.group_levels if g not in skipped)


def _odds_title(result) -> str:
    return f"Table 2. {_odds_caption(result)}"


def _notes(result):
    """(marker, text) pairs: general notes first (marker ''), then test footnotes."""
    return list(result.footnotes)


def _marker_of_rows(result):
    info = result.row_info
    return [str(m) if isinstance(m, str) else "" for m in info["marker"]] if "marker" in info else [""] * len(result.display)


# --------------------------------------------------------------------------- csv
def _tidy_for_csv(frame: pd.DataFrame, first=()) -> pd.DataFrame:
    frame = frame.copy()
    cols = [c for c in first if c in frame.columns]
    cols += [c for c in frame.columns if c not in cols]
    frame = frame[cols].reset_index(drop=True)
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    return frame


def _write_csv(frame: pd.DataFrame, path) -> Path:
    path = _path(path)
    text = frame.to_csv(index=False, lineterminator="\n", na_rep="", float_format=None)
    path.write_bytes(text.encode("utf-8"))
    return path


def write_stats_csv(result, path) -> Path:
    """Write ``result.stats`` as csv: ``variable, test, statistic, df, p_value, q_value,
    effect_size, effect_size_name, n_used, n_missing`` first, then the extra columns.

    Floats are written at full precision (shortest repr that round-trips), missing as an
    empty field, ``\\n`` line endings, UTF-8: identical inputs give identical bytes.
    """
    return _write_csv(_tidy_for_csv(result.stats, STATS_COLUMNS), path)


def write_odds_ratios_csv(result, path) -> Path:
    """Write the tidy multinomial odds-ratio frame (``result.regression``) as csv.

    When no model was fitted the file holds one row with the reason.
    """
    frame = result.regression
    if frame is None or len(frame) == 0:
        frame = pd.DataFrame({"reason": [result.regression_note or "not computed"]})
    return _write_csv(_tidy_for_csv(frame, ("variable",)), path)


def write_posthoc_csv(result, path) -> Path:
    """Write the tidy post hoc frame (``result.posthoc``) as csv."""
    return _write_csv(_tidy_for_csv(result.posthoc, ("variable",)), path)


def _posthoc_title(result) -> str:
    return (f"Post hoc pairwise comparisons (variables with omnibus p < "
            f"{dict(result.settings).get('alpha', 0.05):g}; Holm-adjusted within each variable)")


def _posthoc_display(result) -> pd.DataFrame:
    """Human post hoc table: Variable, Comparison, Test, p, p (Holm); empty when there is none."""
    from . import formatting as fmt

    ph = result.posthoc
    if ph is None or not len(ph) or "group_a" not in ph:
        return pd.DataFrame()
    labels = dict(zip(result.stats["variable"], result.stats["label"])) if "label" in result.stats else {}
    rows, last = [], None
    for r in ph.itertuples(index=False):
        var = str(r.variable)
        test = str(getattr(r, "test", "") or "")
        rows.append({"Variable": labels.get(var, var) if var != last else "",
                     "Comparison": f"{r.group_a} vs {r.group_b}",
                     "Test": _POSTHOC_NAMES.get(test, test or fmt.MISSING),
                     "p": fmt.format_p(getattr(r, "p_value", math.nan)),
                     "p (Holm)": fmt.format_p(getattr(r, "p_adjusted", math.nan))})
        last = var
    return pd.DataFrame(rows)


def write_methods(result, path) -> Path:
    """Write the methods paragraph (``result.methods_text``) as a small Markdown file."""
    path = _path(path)
    text = "# Statistical methods\n\n" + result.methods_text.strip() + "\n"
    path.write_bytes(text.encode("utf-8"))
    return path


# ---------------------------------------------------------------------- markdown
def _md_cell(text) -> str:
    text = "" if text is None else str(text)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(frame: pd.DataFrame, first_col_rows=None) -> list:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |",
             "|" + "|".join([":---"] + [":---:"] * (len(cols) - 1)) + "|"]
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = [_md_cell(v) for v in row.tolist()]
        if first_col_rows is not None:
            cells[0] = first_col_rows[i](cells[0])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _md_sup(marker: str) -> str:
    return f"<sup>{marker}</sup>" if marker else ""


def markdown_text(result) -> str:
    """Table 1 (and the odds-ratio table) as GitHub-flavoured Markdown.

    Variable rows are bold, level rows indented; the p-value of each variable carries a
    superscript marker whose footnote names the test.
    """
    display = result.display.copy()
    info = result.row_info.reset_index(drop=True)
    markers = _marker_of_rows(result)
    if "p" in display.columns:
        display["p"] = [f"{p}{_md_sup(m)}" if k == "variable" else p
                        for p, m, k in zip(display["p"], markers, info["kind"])]
    styles = [(lambda s: f"**{s}**") if k == "variable" and n > 1 else
              (lambda s: f"&emsp;{s}") if k == "level" else (lambda s: s)
              for k, n in zip(info["kind"], _block_sizes(info))]
    lines = [f"## {_title(result)}", ""]
    lines += _md_table(display, styles)
    lines.append("")
    for marker, text in _notes(result):
        lines.append(f"{_md_sup(marker)}{' ' if marker else ''}{text}  ")
    lines.append("")
    posthoc = _posthoc_display(result)
    if len(posthoc):
        lines += [f"### {_posthoc_title(result)}", ""] + _md_table(posthoc) + [""]
    lines += [f"## {_odds_title(result)}", ""]
    if result.odds_display is not None and len(result.odds_display):
        for model, frame in _split_odds(result.odds_display):
            lines += [f"**{_model_heading(result, model)}**", ""] + _md_table(frame) + [""]
        if result.regression_note:
            lines.append(f"Note: {result.regression_note}.")
    else:
        lines.append(f"Not computed: {result.regression_note or 'no model fitted'}.")
    lines.append("")
    lines += _md_columns(result)
    return "\n".join(lines)


def write_markdown(result, path) -> Path:
    """Write :func:`markdown_text` to ``path`` (UTF-8)."""
    path = _path(path)
    path.write_bytes(markdown_text(result).encode("utf-8"))
    return path


def _md_columns(result) -> list:
    """'Columns of the table' section: every input column's role (and why one was left out),
    then the notes on reading the table that the Missing column does not already show."""
    account = getattr(result, "variables", None)
    if account is None or not len(account):
        return []
    from .cohort import reportable_notes

    frame = account.reindex(columns=["column", "role", "type", "test", "reason"]).fillna("").astype(str)
    frame.columns = ["Column", "Role", "Type", "Test", "Note"]
    lines = ["### Columns of the table", ""] + _md_table(frame) + [""]
    notes = reportable_notes(getattr(result, "notes", ()) or ())
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    return lines


def _model_heading(result, model: str) -> str:
    """'Multivariable model (n = 513 of 586 patients: complete cases)' / 'Univariable models (...)'."""
    reg = result.regression
    if model == "Multivariable" and reg is not None and "n_used" in reg:
        n = reg.loc[reg["model"].astype(str) == "multivariable", "n_used"].dropna()
        if len(n):
            return (f"Multivariable model (n = {int(n.max())} of {result.n_total} patients: complete cases, "
                    "no missing value in any of its variables)")
    if model == "Univariable":
        return "Univariable models (each on the patients with a recorded value of its variable)"
    return f"{model} models"


def _split_odds(frame: pd.DataFrame) -> list:
    """Split the wide odds-ratio display into one frame per model ('Univariable ...',
    'Multivariable ...' column prefixes); a frame without such prefixes stays whole."""
    first, rest = frame.columns[0], list(frame.columns[1:])
    models = list(dict.fromkeys(str(c).split(" ", 1)[0] for c in rest))
    if not rest or not set(models) <= {"Univariable", "Multivariable"}:
        return [("All", frame)]
    out = []
    for model in models:
        cols = [c for c in rest if str(c).split(" ", 1)[0] == model]
        sub = frame[[first] + cols].copy()
        sub.columns = [first] + [str(c).split(" ", 1)[1] for c in cols]
        out.append((model, sub))
    return out


def _block_sizes(info: pd.DataFrame) -> list:
    """For each row, the number of display rows of its variable (header + levels)."""
    counts = info.groupby("variable", sort=False)["kind"].transform("size")
    return counts.tolist()


# ------------------------------------------------------------------------- latex
_LATEX_MAP = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "\u00b1": r"$\pm$", "\u2013": "--", "\u2014": "---", "\u03c7": r"$\chi$",
    "\u00b2": r"\textsuperscript{2}", "\u03b5": r"$\varepsilon$", "\u03b7": r"$\eta$",
    "\u00d7": r"$\times$", "\u2264": r"$\leq$", "\u2265": r"$\geq$", "\u2003": r"\quad{}",
    "\u00a0": "~", "\u2212": "-", "\u03b1": r"$\alpha$", "\u2192": r"$\rightarrow$",
    "\u2018": "`", "\u2019": "'", "\u201c": "``", "\u201d": "''",
}
#: Characters from here on (Greek, Cyrillic, CJK, ...) are set with ``\othertext`` (see
#: :func:`write_latex`); below it (ASCII, Latin-1, Latin Extended) the main font has them.
_OTHER_SCRIPT_FROM = 0x0250


def latex_escape(text) -> str:
    """Escape ``text`` for LaTeX: ``% & _ # $ { } ~ ^ \\ < > |``, ``±``, dashes and the Greek
    letters used in test names; Latin characters stay as they are (UTF-8), and runs of other
    scripts (Chinese, Japanese, Korean, Cyrillic, ...) are wrapped in ``\\othertext{...}``,
    which the preamble of :func:`write_latex` sets in a font that has them.

    Examples
    --------
    >>> latex_escape("54.2 ± 3.1 & 10% <0.001")
    '54.2 $\\\\pm$ 3.1 \\\\& 10\\\\% \\\\textless{}0.001'
    >>> latex_escape("转移 (n=3)")
    '\\\\othertext{转移} (n=3)'
    """
    out, run = [], []
    text = "" if text is None else str(text)
    for i, ch in enumerate(text):
        if ch == "-" and text[i + 1:i + 2] == "-":  # '--predictors' must not become an en dash
            ch = "-{}"
        if ch not in _LATEX_MAP and len(ch) == 1 and ord(ch) >= _OTHER_SCRIPT_FROM:
            run.append(ch)
            continue
        if run:
            out.append(r"\othertext{" + "".join(run) + "}")
            run = []
        if ch in _LATEX_MAP:
            out.append(_LATEX_MAP[ch])
        elif ch in "\r\n\t":
            out.append(" ")
        else:
            out.append(ch)
    if run:
        out.append(r"\othertext{" + "".join(run) + "}")
    return "".join(out)


#: Preamble of the standalone document: xelatex (fontspec, Latin Modern, Noto CJK
#: for other scripts) or pdflatex (Latin Modern or Computer Modern Type 1 fonts; other scripts
#: stop with a message asking for xelatex).  Outline fonts either way (no Type 3 bitmaps).
_LATEX_PREAMBLE = r"""\documentclass[10pt]{article}
% Compile with xelatex; pdflatex works for tables in Latin script only.
\ifdefined\XeTeXversion\def\tableoneunicode{}\fi
\ifdefined\directlua\def\tableoneunicode{}\fi
\ifdefined\tableoneunicode
  \usepackage{fontspec}
  \IfFontExistsTF{Noto Sans CJK SC}{\newfontfamily\othertextfont{Noto Sans CJK SC}}{%
    \IfFontExistsTF{FandolSong-Regular}{\newfontfamily\othertextfont{FandolSong-Regular}}{%
      \let\othertextfont\relax}}
  \newcommand{\othertext}[1]{{\othertextfont #1}}
\else
  \usepackage[utf8]{inputenc}
  % T1 + Latin Modern (Type 1); without lmodern.sty the default OT1 Computer Modern (Type 1
  % too): T1 alone would fall back to Type 3 bitmaps where cm-super is not installed.
  \IfFileExists{lmodern.sty}{\usepackage[T1]{fontenc}\usepackage{lmodern}}{}
  \newcommand{\othertext}[1]{\PackageError{table1}{This table has text in a non-Latin script:
    compile it with xelatex}{}}
\fi
\usepackage{booktabs}
\usepackage{array}
\usepackage{longtable}
\usepackage[a4paper,landscape,margin=1.5cm]{geometry}
\setlength{\LTcapwidth}{\textwidth}
\pagestyle{empty}
\begin{document}"""


def _header_parts(name) -> list:
    """A header split at ' (n=', ': ' and ' (95% CI)': the lines of its stacked cell."""
    import re

    return [p for p in re.split(r": | (?=\(n=)| (?=\(95% CI\))", str(name)) if p]


def _latex_header(name) -> str:
    """A header cell, stacked on lines at ' (n=', ': ' or ' (95% CI)' to keep columns narrow."""
    parts = _header_parts(name)
    cells = [rf"\textbf{{{latex_escape(p)}}}" for p in parts]
    if len(cells) == 1:
        return cells[0]
    return r"\begin{tabular}[b]{@{}c@{}}" + r"\\".join(cells) + r"\end{tabular}"


#: Text width of the landscape A4 page (1.5 cm margins) in points, less 6 % for the error of the
#: width estimate, and the font sizes tried.
_LATEX_TEXT_WIDTH_PT = 0.94 * 26.7 / 2.54 * 72.27
_LATEX_SIZES = ((r"\footnotesize", 8.0), (r"\scriptsize", 7.0))
_LATEX_FIRST_COL_PT = 4.4 / 2.54 * 72.27
_LATEX_TEST_COL_PT = 2.2 / 2.54 * 72.27


def _latex_widths(frame: pd.DataFrame, size_pt: float) -> list:
    """Estimated width in points of each column: cell text at 0.5 em a character (Latin Modern
    digits are 0.5 em, most letters less), bold headers at 0.6 em, 8 pt padding; a spanning
    comparison header widens its pair's second column when it is wider than the pair."""
    pairs = _spanning_pairs(frame.columns)
    out = []
    for j, col in enumerate(frame.columns):
        if j == 0:
            width = _LATEX_FIRST_COL_PT
        elif col == "Test":
            width = _LATEX_TEST_COL_PT
        else:
            parts = _header_parts(col)[1:] if pairs is not None else _header_parts(col)
            width = max([len(p) * 0.6 for p in parts] + [len(str(v)) * 0.5 for v in frame[col]]) * size_pt
        out.append(width + 8.0)
    for name, (j, k) in pairs or ():
        span = len(name) * 0.6 * size_pt + 8.0
        if span > out[j] + out[k]:
            out[k] += span - out[j] - out[k]
    return out


def _latex_fit(frame: pd.DataFrame, keep_together: int = 1):
    """(font size command, list of column-index chunks): the largest size at which the table fits
    the page; when none does, the columns after the first are split into chunks that fit at the
    smallest size (``keep_together`` adjacent columns, e.g. an OR and its p, stay together)."""
    for size, pt in _LATEX_SIZES:
        if sum(_latex_widths(frame, pt)) <= _LATEX_TEXT_WIDTH_PT:
            return size, [list(range(len(frame.columns)))]
    size, pt = _LATEX_SIZES[-1]
    widths = _latex_widths(frame, pt)
    rest = list(range(1, len(frame.columns)))
    blocks = [rest[i:i + keep_together] for i in range(0, len(rest), keep_together)]
    chunks, current, used = [], [], widths[0]
    for block in blocks:
        need = sum(widths[j] for j in block)
        if current and used + need > _LATEX_TEXT_WIDTH_PT:
            chunks.append([0] + current)
            current, used = [], widths[0]
        current += block
        used += need
    chunks.append([0] + current)
    return size, chunks


def _latex_tables(frame: pd.DataFrame, caption: str, *, row_styles=None, p_markers=None, notes=(),
                  label: str = "", numbered: bool = True, keep_together: int = 1) -> list:
    """The ``longtable``\\ s of one table: one, or (too wide for the page) one per column chunk,
    the later ones captioned '(continued)' under the same number; notes after the last."""
    size, chunks = _latex_fit(frame, keep_together)
    lines = []
    for k, chunk in enumerate(chunks):
        sub = frame.iloc[:, chunk]
        if k and numbered:
            lines.append(r"\addtocounter{table}{-1}")
        lines += _latex_table(sub, caption + (" (continued)" if k else ""), size=size,
                              row_styles=row_styles, p_markers=p_markers,
                              notes=notes if k == len(chunks) - 1 else (),
                              label=label if not k else "", numbered=numbered)
    return lines


def _spanning_pairs(cols) -> list | None:
    """``[(prefix, [j, j + 1]), ...]`` when the columns after the first come in pairs sharing a
    prefix before ': ' (the odds-ratio tables: 'b vs a: OR (95% CI)', 'b vs a: p'), else None."""
    rest = [str(c) for c in cols[1:]]
    if not rest or len(rest) % 2 or not all(": " in c for c in rest):
        return None
    pairs = []
    for j in range(0, len(rest), 2):
        a, b = rest[j].split(": ", 1)[0], rest[j + 1].split(": ", 1)[0]
        if a != b:
            return None
        pairs.append((a, [j + 1, j + 2]))
    return pairs


def _latex_header_rows(cols) -> str:
    """The header: one row of stacked cells, or for paired columns a spanning row (the
    comparison, ruled underneath) over a row of 'OR (95% CI)' / 'p'."""
    pairs = _spanning_pairs(cols)
    if pairs is None:
        return " & ".join(_latex_header(c) for c in cols) + r" \\"
    top = " & ".join([""] + [rf"\multicolumn{{2}}{{c}}{{\textbf{{{latex_escape(name)}}}}}" for name, _ in pairs])
    rules = "".join(rf"\cmidrule(lr){{{j + 1}-{k + 1}}}" for _, (j, k) in pairs)
    bottom = " & ".join([_latex_header(cols[0])] + [_latex_header(str(c).split(": ", 1)[1]) for c in cols[1:]])
    return top + r" \\" + "\n" + rules + "\n" + bottom + r" \\"


def _latex_table(frame: pd.DataFrame, caption: str, *, row_styles=None, p_markers=None,
                 notes=(), label: str = "", numbered: bool = True, size: str = r"\footnotesize") -> list:
    """One ``longtable`` (breaks across pages, header repeated), notes below it."""
    cols = list(frame.columns)
    ncol = len(cols)
    spec = r">{\raggedright\arraybackslash}p{4.4cm}"
    for c in cols[1:]:
        spec += r">{\raggedright\arraybackslash}p{2.2cm}" if c == "Test" else "c"
    header = _latex_header_rows(cols)
    more = "" if caption.endswith("(continued)") else " (continued)"
    cap = rf"\caption{{{latex_escape(caption)}}}" if numbered else rf"\caption*{{{latex_escape(caption)}}}"
    cont = (r"\caption[]{" + latex_escape(caption + more) + "}" if numbered
            else r"\caption*{" + latex_escape(caption + more) + "}")
    lines = ["{" + size, r"\setlength{\tabcolsep}{4pt}", r"\setlength{\LTcapwidth}{\linewidth}",
             rf"\begin{{longtable}}{{{spec}}}",
             cap + (rf"\label{{{label}}}" if label else "") + r" \\",
             r"\toprule", header, r"\midrule", r"\endfirsthead",
             cont + r" \\", r"\toprule", header, r"\midrule", r"\endhead",
             r"\midrule", rf"\multicolumn{{{ncol}}}{{r}}{{\emph{{continued on the next page}}}} \\",
             r"\endfoot", r"\bottomrule", r"\endlastfoot"]
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = [latex_escape(v) for v in row.tolist()]
        if row_styles is not None:
            cells[0] = row_styles[i](cells[0])
        if p_markers is not None and p_markers[i] and "p" in cols:
            j = cols.index("p")
            cells[j] = cells[j] + rf"\textsuperscript{{{latex_escape(p_markers[i])}}}"
        lines.append(" & ".join(cells) + r" \\")
    lines.append(r"\end{longtable}")
    if not numbered:  # longtable steps the table counter for every table, captioned or not
        lines.append(r"\addtocounter{table}{-1}")
    for marker, text in notes:
        sup = rf"\textsuperscript{{{latex_escape(marker)}}}" if marker else ""
        lines.append(rf"\noindent{{}}{sup}{latex_escape(text)}\par")
    lines.append("}")
    return lines


def latex_text(result, *, standalone: bool = True) -> str:
    """The LaTeX of :func:`write_latex` as a string."""
    info = result.row_info.reset_index(drop=True)
    markers = _marker_of_rows(result)
    styles = [(lambda s: rf"\textbf{{{s}}}") if k == "variable" and n > 1 else
              (lambda s: rf"\quad {s}") if k == "level" else (lambda s: s)
              for k, n in zip(info["kind"], _block_sizes(info))]
    p_markers = [m if k == "variable" else "" for m, k in zip(markers, info["kind"])]
    body = _latex_tables(result.display, _caption(result), row_styles=styles, p_markers=p_markers,
                         notes=_notes(result), label="tab:table1")
    body.append("")
    posthoc = _posthoc_display(result)
    if len(posthoc):
        body += _latex_tables(posthoc, _posthoc_title(result), label="tab:posthoc", numbered=False)
        body.append("")
    if result.odds_display is not None and len(result.odds_display):
        parts = _split_odds(result.odds_display)
        for k, (model, frame) in enumerate(parts):
            notes = [("", f"Note: {result.regression_note}.")] if result.regression_note and k == len(parts) - 1 else ()
            heading = f"{_odds_caption(result)}. {_model_heading(result, model)}"
            if k:  # later models continue Table 2 (one number, as in the Markdown and Word files)
                body.append(r"\addtocounter{table}{-1}")
            pairs = 2 if len(frame.columns) % 2 == 1 else 1  # 'OR (95% CI)' and 'p' per comparison
            body += _latex_tables(frame, heading, label=f"tab:odds_{model.lower()}", notes=notes,
                                  keep_together=pairs)
            body.append("")
    else:
        body.append(latex_escape(f"Odds ratios not computed: {result.regression_note or 'no model fitted'}.")
                    + r"\par")
    if standalone:
        body = [_LATEX_PREAMBLE] + body + [r"\end{document}"]
    return "\n".join(body) + "\n"


def write_latex(result, path, *, standalone: bool = True) -> Path:
    """Write Table 1, the post hoc table and the odds-ratio tables as booktabs ``longtable``\\ s.

    Long tables break across pages with the header repeated ('continued'), so no row or
    footnote is cut off; captions are real LaTeX captions (``Table 1: Characteristics
    ...``, ``Table 2: Multinomial logistic regression ...``; the post hoc table is
    unnumbered, the multivariable model shares Table 2's number).

    Parameters
    ----------
    result : Table1Result
    path : str or Path
    standalone : bool, default True
        Wrap the tables in a complete UTF-8 ``article`` (landscape A4).  It compiles with
        ``xelatex`` (fontspec; Latin Modern, and Noto Sans CJK SC -- Debian
        ``fonts-noto-cjk`` -- for text in other scripts such as Chinese group names), and
        with ``pdflatex`` when all text is in Latin script (T1, Latin Modern); fonts are
        outline fonts either way.  ``False`` writes only the tables for ``\\input`` into a
        manuscript, which then needs ``\\usepackage{booktabs,array,longtable}`` and a
        ``\\newcommand{\\othertext}[1]{#1}`` (or a font switch) for non-Latin text.
    """
    path = _path(path)
    path.write_bytes(latex_text(result, standalone=standalone).encode("utf-8"))
    return path


# -------------------------------------------------------------------------- xlsx
def _frame_to_sheet(ws, frame: pd.DataFrame, *, note: str = ""):
    """Tidy frame -> sheet: bold header, frozen first row, full-precision numbers."""
    from openpyxl.styles import Font

    if frame is None or len(frame) == 0:
        ws.append(["note"])
        ws.append([note or "nothing to show"])
        ws["A1"].font = Font(bold=True)
        ws.column_dimensions["A"].width = max(10, min(100, len(note) + 2))
        return
    frame = frame.reset_index(drop=True)
    ws.append([str(c) for c in frame.columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in frame.itertuples(index=False):
        ws.append([_excel_value(v) for v in row])
    ws.freeze_panes = "B2"
    _autofit(ws)


def _excel_value(v):
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (int, str)):
        return v
    if pd.isna(v) if not isinstance(v, (list, tuple, dict)) else False:
        return None
    return str(v)


def _autofit(ws, min_width=6, max_width=60):
    from openpyxl.utils import get_column_letter

    widths = {}
    for row in ws.iter_rows():
        for cell in row:
            if cell.value is None or type(cell).__name__ == "MergedCell":
                continue
            text = str(cell.value)
            length = max(len(line) for line in text.split("\n")) if text else 0
            widths[cell.column] = max(widths.get(cell.column, 0), length)
    for col, width in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = max(min_width, min(max_width, width + 2))


def write_xlsx(result, path) -> Path:
    """Write the formatted Table 1 workbook.

    Sheets: 'Table 1' (title, bold header with group sizes, bold variable rows with
    indented level rows, per-variable cells (Missing, p, q, effect size, test) merged
    over the level rows, p-values with a superscript marker per test, footnotes below,
    frozen header pane, fitted column widths), 'Odds ratios' (formatted), 'Statistics'
    (tidy, full precision), 'Post hoc' (tidy), 'Methods' (methods paragraph and software
    versions), 'Variables' (every input column: analysed with its type and test, used as id /
    group / hospital / image path, or left out with the reason; then the notes on reading
    the table).
    """
    from openpyxl import Workbook
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont
    from openpyxl.styles import Alignment, Border, Font, Side

    wb = Workbook()
    ws = wb.active
    ws.title = "Table 1"
    display = result.display.reset_index(drop=True)
    info = result.row_info.reset_index(drop=True)
    markers = _marker_of_rows(result)
    cols = list(display.columns)
    ncol = len(cols)
    thin = Side(style="thin")
    sup = InlineFont(vertAlign="superscript")

    ws.cell(row=1, column=1, value=_title(result)).font = Font(bold=True, size=12)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncol)
    header_row = 2
    for j, name in enumerate(cols, start=1):
        cell = ws.cell(row=header_row, column=j, value=str(name))
        cell.font = Font(bold=True)
        cell.border = Border(top=thin, bottom=thin)
        cell.alignment = Alignment(horizontal="left" if j == 1 else "center", vertical="center",
                                   wrap_text=True)
    merge_cols = [cols.index(c) + 1 for c in ("Missing", "p", "q", "Effect size (95% CI)", "Test")
                  if c in cols]
    sizes = _block_sizes(info)
    r0 = header_row + 1
    for i, row in display.iterrows():
        r = r0 + i
        kind = info.loc[i, "kind"]
        for j, name in enumerate(cols, start=1):
            value = row[name]
            value = None if value is None or value == "" else str(value)
            if name == "p" and kind == "variable" and markers[i] and value is not None:
                cell = ws.cell(row=r, column=j)
                cell.value = CellRichText([value, TextBlock(sup, markers[i])])
            else:
                cell = ws.cell(row=r, column=j, value=value)
            if j == 1:
                if kind == "variable":
                    cell.font = Font(bold=sizes[i] > 1)
                    cell.alignment = Alignment(horizontal="left", vertical="top")
                else:
                    cell.alignment = Alignment(horizontal="left", indent=2)
            else:
                cell.alignment = Alignment(horizontal="center", vertical="center")
        if kind == "variable" and sizes[i] > 1:
            for j in merge_cols:
                ws.merge_cells(start_row=r, start_column=j, end_row=r + sizes[i] - 1, end_column=j)
    last = r0 + len(display) - 1
    for j in range(1, ncol + 1):
        ws.cell(row=last, column=j).border = Border(bottom=thin)
    r = last + 2
    for marker, text in _notes(result):
        cell = ws.cell(row=r, column=1)
        cell.value = CellRichText([TextBlock(sup, marker), " " + text]) if marker else text
        cell.alignment = Alignment(wrap_text=False, vertical="top")
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=ncol)
        r += 1
    ws.freeze_panes = ws.cell(row=header_row + 1, column=2)
    _autofit_table(ws, display)

    ws_or = wb.create_sheet("Odds ratios")
    if result.odds_display is not None and len(result.odds_display):
        ws_or.append([_odds_title(result)])
        ws_or["A1"].font = Font(bold=True, size=12)
        ws_or.append([str(c) for c in result.odds_display.columns])
        for cell in ws_or[2]:
            cell.font = Font(bold=True)
            cell.border = Border(top=thin, bottom=thin)
        for row in result.odds_display.itertuples(index=False):
            ws_or.append([None if v == "" else v for v in row])
        ws_or.append([])
        for model, _ in _split_odds(result.odds_display):
            if model != "All":
                ws_or.append([f"{_model_heading(result, model)}."])
        if result.regression_note:
            ws_or.append([f"Note: {result.regression_note}"])
        ws_or.freeze_panes = "B3"
        _autofit(ws_or)
        ws_or.column_dimensions["A"].width = max(ws_or.column_dimensions["A"].width or 10, 12)
    else:
        ws_or.append([f"Odds ratios not computed: {result.regression_note or 'no model fitted'}"])
    if result.regression is not None and len(result.regression):
        _frame_to_sheet(wb.create_sheet("Odds ratios (tidy)"), result.regression)

    _frame_to_sheet(wb.create_sheet("Statistics"), _tidy_for_csv(result.stats, STATS_COLUMNS))
    _frame_to_sheet(wb.create_sheet("Post hoc"), result.posthoc,
                    note="no omnibus test reached significance (or post hoc tests were not requested)")

    ws_m = wb.create_sheet("Methods")
    ws_m["A1"] = "Statistical methods"
    ws_m["A1"].font = Font(bold=True, size=12)
    ws_m["A2"] = result.methods_text
    ws_m["A2"].alignment = Alignment(wrap_text=True, vertical="top")
    ws_m.merge_cells("A2:B2")
    ws_m.row_dimensions[2].height = max(60, 15 * (len(result.methods_text) // 110 + 1))
    ws_m.column_dimensions["A"].width = 30
    ws_m.column_dimensions["B"].width = 90
    ws_m["A4"] = "Software"
    ws_m["A4"].font = Font(bold=True)
    r = 5
    for name, version in result.software.items():
        ws_m.cell(row=r, column=1, value=name)
        ws_m.cell(row=r, column=2, value=str(version))
        r += 1
    if len(result.exclusions):
        r += 1
        ws_m.cell(row=r, column=1, value="Excluded rows").font = Font(bold=True)
        ws_m.cell(row=r, column=2, value=len(result.exclusions))
        _frame_to_sheet(wb.create_sheet("Exclusions"), result.exclusions)

    _variables_sheet(wb.create_sheet("Variables"), result)

    wb.properties.creator = "analysis.table1"
    return save_deterministic_xlsx(wb, _path(path))


def _variables_sheet(ws, result):
    """Every input column (role, type, test, missing, reason), then the notes on reading the table."""
    from openpyxl.styles import Font

    account = getattr(result, "variables", None)
    _frame_to_sheet(ws, account if account is not None else pd.DataFrame(),
                    note="no column account (the cohort was not read by analysis.cohort)")
    notes = list(getattr(result, "notes", ()) or ())
    if notes:
        r = ws.max_row + 2
        ws.cell(row=r, column=1, value="Notes").font = Font(bold=True)
        for i, note in enumerate(notes, start=1):
            ws.cell(row=r + i, column=1, value=note)


def _autofit_table(ws, display: pd.DataFrame):
    from openpyxl.utils import get_column_letter

    for j, name in enumerate(display.columns, start=1):
        texts = [str(name)] + [str(v) for v in display[name].tolist()]
        width = max(len(t) for t in texts) + 3
        cap = 45 if j == 1 else 28
        ws.column_dimensions[get_column_letter(j)].width = max(8, min(cap, width))
    ws.row_dimensions[2].height = 30


def save_deterministic_xlsx(wb, path, when=(2000, 1, 1, 0, 0, 0)) -> Path:
    """Save an openpyxl workbook whose bytes do not depend on the wall clock.

    openpyxl stamps 'now' into the zip entries and into docProps/core.xml (created /
    modified); both are replaced by ``when`` (a ``(Y, M, D, h, m, s)`` tuple).
    """
    import io
    import re
    import zipfile

    path = Path(path)
    buffer = io.BytesIO()
    wb.save(buffer)
    stamp = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(*when).encode()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                                 lambda m: m.group(1) + stamp + m.group(2), content)
            entry = zipfile.ZipInfo(info.filename, date_time=tuple(when))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = info.external_attr
            dst.writestr(entry, content)
    return path


# -------------------------------------------------------------------------- html
def table1_html(result) -> str:
    """Table 1 as an HTML fragment (Jupyter's ``_repr_html_``): title above; bold variable rows;
    level rows indented; the test letter as a superscript on each p-value; footnotes below;
    three horizontal rules (inline styles, so notebook themes keep the layout)."""
    from html import escape

    display = result.display.reset_index(drop=True)
    info = result.row_info.reset_index(drop=True)
    markers = _marker_of_rows(result)
    sizes = _block_sizes(info)
    cols = list(display.columns)
    rule = "2px solid currentColor"
    out = ['<div class="analysis-table1">',
           '<table style="border-collapse:collapse;border:none">',
           f'<caption style="caption-side:top;text-align:left;font-weight:bold;padding-bottom:4px">'
           f'{escape(_title(result))}</caption>', "<thead><tr>"]
    for j, c in enumerate(cols):
        align = "left" if j == 0 else "center"
        out.append(f'<th style="text-align:{align};border-top:{rule};border-bottom:1px solid currentColor;'
                   f'padding:2px 8px">{escape(str(c))}</th>')
    out.append("</tr></thead><tbody>")
    for i, row in display.iterrows():
        kind = info.loc[i, "kind"]
        last = i == len(display) - 1
        bottom = f"border-bottom:{rule};" if last else ""
        cells = []
        for j, c in enumerate(cols):
            text = escape("" if row[c] is None else str(row[c]))
            if j == 0:
                style = ("font-weight:bold;" if kind == "variable" and sizes[i] > 1 else "")
                style += "padding-left:2em;" if kind == "level" else "padding-left:8px;"
                cells.append(f'<td style="text-align:left;{style}{bottom}padding-right:8px">{text}</td>')
                continue
            if c == "p" and kind == "variable" and markers[i] and text:
                text += f"<sup>{escape(markers[i])}</sup>"
            cells.append(f'<td style="text-align:center;{bottom}padding:2px 8px">{text}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody>")
    notes = "<br>".join((f"<sup>{escape(m)}</sup> " if m else "") + escape(t) for m, t in _notes(result))
    if notes:
        out.append(f'<tfoot><tr><td colspan="{len(cols)}" style="text-align:left;font-size:smaller;'
                   f'padding-top:4px">{notes}</td></tr></tfoot>')
    out.append("</table></div>")
    return "\n".join(out)


# -------------------------------------------------------------------------- docx
def _docx_borders(cell, **edges):
    """Set cell borders: ``top='12'`` etc. (eighths of a point, single line)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    tc_pr = cell._tc.get_or_add_tcPr()
    borders = tc_pr.find(qn("w:tcBorders"))
    if borders is None:
        borders = OxmlElement("w:tcBorders")
        tc_pr.append(borders)
    for edge, size in edges.items():
        el = OxmlElement(f"w:{edge}")
        el.set(qn("w:val"), "single")
        el.set(qn("w:sz"), str(size))
        el.set(qn("w:space"), "0")
        el.set(qn("w:color"), "000000")
        borders.append(el)


def _docx_text(paragraph, text, *, bold=False, size=None, superscript=None):
    from docx.shared import Pt

    run = paragraph.add_run(str(text))
    run.bold = bold or None
    if size:
        run.font.size = Pt(size)
    if superscript:
        sup = paragraph.add_run(str(superscript))
        sup.font.superscript = True
        if size:
            sup.font.size = Pt(size)
    return run


def _docx_table(doc, frame: pd.DataFrame, caption: str, *, kinds=None, sizes=None, p_markers=None,
                notes=(), font_size: float = 8):
    """Title paragraph, a three-line table (rules above and below the header, below the last
    row; no vertical lines), notes below."""
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    title = doc.add_paragraph()
    _docx_text(title, caption, bold=True, size=font_size + 2)
    title.paragraph_format.keep_with_next = True
    title.paragraph_format.space_after = Pt(6)
    frame = frame.reset_index(drop=True)
    cols = list(frame.columns)
    table = doc.add_table(rows=len(frame) + 1, cols=len(cols))
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    # table.cell(i, j) rebuilds the cell grid on every call (quadratic); take each row's cells once
    grid = [row.cells for row in table.rows]
    widths = _docx_widths(frame, font_size)
    table.autofit = False
    for j, width in enumerate(widths):
        table.columns[j].width = width
        for row_cells in grid:
            row_cells[j].width = width
    for j, name in enumerate(cols):
        cell = grid[0][j]
        par = cell.paragraphs[0]
        _docx_text(par, name, bold=True, size=font_size)
        par.alignment = WD_ALIGN_PARAGRAPH.LEFT if j == 0 else WD_ALIGN_PARAGRAPH.CENTER
        _docx_borders(cell, top=12, bottom=6)
    last = len(frame)
    for i, row in frame.iterrows():
        kind = kinds[i] if kinds is not None else "variable"
        for j, name in enumerate(cols):
            cell = grid[i + 1][j]
            par = cell.paragraphs[0]
            text = "" if row[name] is None else str(row[name])
            if j == 0:
                bold = kind == "variable" and sizes is not None and sizes[i] > 1
                _docx_text(par, text.lstrip("\u2003"), bold=bold, size=font_size)
                if kind == "level" or text.startswith("\u2003"):
                    par.paragraph_format.left_indent = Pt(10)
                par.alignment = WD_ALIGN_PARAGRAPH.LEFT
            else:
                marker = p_markers[i] if (p_markers is not None and name == "p" and text) else None
                _docx_text(par, text, size=font_size, superscript=marker or None)
                par.alignment = WD_ALIGN_PARAGRAPH.CENTER
            if i + 1 == last:
                _docx_borders(cell, bottom=12)
    for k, (marker, text) in enumerate(notes):
        par = doc.add_paragraph()
        if not k:
            par.paragraph_format.space_before = Pt(4)
        if marker:
            sup = par.add_run(marker)
            sup.font.superscript = True
            sup.font.size = Pt(font_size)
            _docx_text(par, " " + text, size=font_size)
        else:
            _docx_text(par, text, size=font_size)
    return table


#: Text width of a landscape A4 page with 1.5 cm margins, in EMU (26.7 cm).
_DOCX_TEXT_WIDTH = int(26.7 / 2.54 * 914400)


def _docx_widths(frame: pd.DataFrame, font_size: float) -> list:
    """Column widths (EMU) summing to the page's text width: each column gets what its longest
    text needs on one line (0.55 em a character plus Word's cell margins; the first column at most
    40 characters, it wraps), the rest of the page goes to the first column, then to all; a table
    wider than the page is scaled down (its cells wrap)."""
    emu_pt = 12700
    need = []
    for j, name in enumerate(frame.columns):
        chars = max([len(str(name))] + [len(str(v)) for v in frame[name]])
        chars = min(chars, 40) if j == 0 else chars + (name == "p")  # the test letter after p
        need.append((chars * 0.55 * font_size + 12) * emu_pt)
    total = sum(need)
    if total >= _DOCX_TEXT_WIDTH:
        return [int(w * _DOCX_TEXT_WIDTH / total) for w in need]
    extra = _DOCX_TEXT_WIDTH - total
    first_more = max(0.0, min(extra, 12 * font_size * emu_pt))  # a little air in the label column
    need[0] += first_more
    extra -= first_more
    out = [int(w + extra / len(need)) for w in need]
    out[0] += _DOCX_TEXT_WIDTH - sum(out)
    return out


def _docx_section(doc, first: bool):
    """A landscape A4 page section (a new page for every table after the first)."""
    from docx.enum.section import WD_ORIENT, WD_SECTION
    from docx.shared import Cm

    section = doc.sections[0] if first else doc.add_section(WD_SECTION.NEW_PAGE)
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = Cm(29.7), Cm(21.0)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(1.5))
    return section


def write_docx(result, path) -> Path:
    """Write the tables as a Word document (python-docx).

    Journal layout: each table in its own landscape page section (Table 1; the post hoc
    comparisons; Table 2, the odds ratios, one section per model) with its title above, three
    horizontal rules (above and below the header, below the last row) and no vertical lines;
    variable rows bold, level rows indented, the test letter as a superscript on each p-value,
    footnotes below the table.  Times New Roman 8 pt (tables); East Asian text falls back to
    the fonts Word has for it.  The bytes do not depend on the clock.
    """
    from docx import Document
    from docx.oxml.ns import qn
    from docx.shared import Pt

    doc = Document()
    normal = doc.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(9)
    normal.paragraph_format.space_before = Pt(0)
    normal.paragraph_format.space_after = Pt(0)
    normal.paragraph_format.line_spacing = 1.0
    fonts = normal.element.get_or_add_rPr().get_or_add_rFonts()
    fonts.set(qn("w:eastAsia"), "SimSun")
    props = doc.core_properties
    import datetime as _dt

    stamp = _dt.datetime(2000, 1, 1)
    props.created = props.modified = stamp
    props.last_printed = stamp
    props.author = props.last_modified_by = "analysis.table1"
    props.title = _title(result)
    props.revision = 1

    info = result.row_info.reset_index(drop=True)
    markers = _marker_of_rows(result)
    kinds = info["kind"].tolist()
    p_markers = [m if k == "variable" else "" for m, k in zip(markers, kinds)]
    _docx_section(doc, first=True)
    _docx_table(doc, result.display, _title(result), kinds=kinds, sizes=_block_sizes(info),
                p_markers=p_markers, notes=_notes(result))
    posthoc = _posthoc_display(result)
    if len(posthoc):
        _docx_section(doc, first=False)
        _docx_table(doc, posthoc, _posthoc_title(result))
    _docx_section(doc, first=False)
    if result.odds_display is not None and len(result.odds_display):
        parts = _split_odds(result.odds_display)
        for k, (model, frame) in enumerate(parts):
            if k:
                _docx_section(doc, first=False)
            notes = [("", f"Note: {result.regression_note}.")] if result.regression_note and k == len(parts) - 1 else ()
            _docx_table(doc, frame, f"{_odds_title(result)}. {_model_heading(result, model)}", notes=notes)
    else:
        doc.add_paragraph(f"{_odds_title(result)}: not computed ({result.regression_note or 'no model fitted'}).")
    import io

    buffer = io.BytesIO()
    doc.save(buffer)
    return _deterministic_zip(buffer, _path(path))


def _deterministic_zip(buffer, path, when=(2000, 1, 1, 0, 0, 0)) -> Path:
    """Rewrite the zip in ``buffer`` to ``path`` with fixed entry times (same bytes every run)."""
    import zipfile

    buffer.seek(0)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=tuple(when))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = info.external_attr
            dst.writestr(entry, src.read(info.filename))
    return path


# --------------------------------------------------------------------------- all
def write_all(result, out) -> list:
    """Write every output of :data:`OUTPUT_FILES` into folder ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_xlsx(result, out / "table1.xlsx"),
        write_docx(result, out / "table1.docx"),
        write_latex(result, out / "table1.tex"),
        write_markdown(result, out / "table1.md"),
        write_stats_csv(result, out / "table1_stats.csv"),
        write_odds_ratios_csv(result, out / "odds_ratios.csv"),
        write_posthoc_csv(result, out / "posthoc.csv"),
        write_methods(result, out / "methods.md"),
    ]
