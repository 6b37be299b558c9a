"""Write a :class:`analysis.table1.Table1Result` as xlsx, LaTeX, Markdown and csv.

Nothing here computes or rounds: the human tables are ``result.display`` and
``result.odds_display`` (already formatted by :mod:`analysis.formatting`), the csv files
are the tidy frames at full precision.  Every writer returns the :class:`pathlib.Path`
it wrote and creates missing parent folders.

* :func:`write_xlsx` -- sheets 'Table 1' (bold header with group sizes, indented level
  rows, per-variable cells merged over the level rows, superscript test markers,
  footnotes, frozen header), 'Odds ratios', 'Statistics', 'Post hoc', 'Methods'.
* :func:`write_latex` -- booktabs tables (Table 1 and odds ratios), special characters
  escaped; ``standalone=True`` gives a document that compiles with ``pdflatex``.
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
    "write_all",
    "latex_escape",
    "OUTPUT_FILES",
]

#: File names written by :func:`write_all`, in order.
OUTPUT_FILES = ("table1.xlsx", "table1.tex", "table1.md", "table1_stats.csv",
                "odds_ratios.csv", "posthoc.csv", "methods.md")

#: How post hoc tests are named in the human tables.
_POSTHOC_NAMES = {"dunn": "Dunn", "welch_t": "Welch t", "mann_whitney": "Mann\u2013Whitney",
                  "chi_square": "\u03c7\u00b2", "fisher_exact": "Fisher exact"}



def _path(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _title(result) -> str:
    groups = ", ".join(str(g) for g in result.group_levels)
    return (f"Table 1. Characteristics of {result.n_total} patients by "
            f"{str(result.group_label).lower()} ({groups})")


def _odds_title(result) -> str:
    ref = result.reference_group
    kind = "Logistic regression" if len(result.group_levels) == 2 else "Multinomial logistic regression"
    return f"Table 2. {kind}: odds ratios (95% CI) against {ref}"


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


def write_markdown(result, path) -> Path:
    """Write Table 1 (and the odds-ratio table) as GitHub-flavoured Markdown.

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
    path = _path(path)
    path.write_bytes(("\n".join(lines)).encode("utf-8"))
    return path


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


def latex_escape(text) -> str:
    """Escape ``text`` for LaTeX (T1/utf8 document): ``% & _ # $ { } ~ ^ \\ < > |``, ``±``,
    dashes and Greek letters used in test names; other non-Latin-1 characters become ``?``.

    Examples
    --------
    >>> latex_escape("54.2 ± 3.1 & 10% <0.001")
    '54.2 $\\\\pm$ 3.1 \\\\& 10\\\\% \\\\textless{}0.001'
    """
    out = []
    for ch in "" if text is None else str(text):
        if ch in _LATEX_MAP:
            out.append(_LATEX_MAP[ch])
        elif ord(ch) < 128 or 160 <= ord(ch) < 256:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _latex_table(frame: pd.DataFrame, caption: str, *, row_styles=None, p_markers=None,
                 notes=(), label: str = "") -> list:
    cols = list(frame.columns)
    spec = r">{\raggedright\arraybackslash}p{4.6cm}" + "c" * (len(cols) - 1)
    lines = [r"\begin{table}[htbp]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
             rf"\caption{{{latex_escape(caption)}}}"]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
              rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(rf"\textbf{{{latex_escape(c)}}}" for c in cols) + r" \\", r"\midrule"]
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = [latex_escape(v) for v in row.tolist()]
        if row_styles is not None:
            cells[0] = row_styles[i](cells[0])
        if p_markers is not None and p_markers[i] and "p" in cols:
            j = cols.index("p")
            cells[j] = cells[j] + rf"\textsuperscript{{{latex_escape(p_markers[i])}}}"
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if notes:
        lines.append(r"\par\smallskip\parbox{\linewidth}{\footnotesize")
        for marker, text in notes:
            sup = rf"\textsuperscript{{{latex_escape(marker)}}}" if marker else ""
            lines.append(rf"{sup}{latex_escape(text)}\\")
        lines.append("}")
    lines.append(r"\end{table}")
    return lines


def write_latex(result, path, *, standalone: bool = True) -> Path:
    """Write Table 1 and the odds-ratio table as booktabs LaTeX.

    Parameters
    ----------
    result : Table1Result
    path : str or Path
    standalone : bool, default True
        Wrap the tables in a complete ``article`` document (landscape A4, ``booktabs``,
        ``geometry``, T1 fonts) that compiles with ``pdflatex``; ``False`` writes only
        the ``table`` environments for ``\\input`` into a manuscript (which then needs
        ``\\usepackage{booktabs,array,graphicx}``).
    """
    info = result.row_info.reset_index(drop=True)
    markers = _marker_of_rows(result)
    styles = [(lambda s: rf"\textbf{{{s}}}") if k == "variable" and n > 1 else
              (lambda s: rf"\quad {s}") if k == "level" else (lambda s: s)
              for k, n in zip(info["kind"], _block_sizes(info))]
    p_markers = [m if k == "variable" else "" for m, k in zip(markers, info["kind"])]
    body = _latex_table(result.display, _title(result), row_styles=styles, p_markers=p_markers,
                        notes=_notes(result), label="tab:table1")
    body.append("")
    posthoc = _posthoc_display(result)
    if len(posthoc):
        body += _latex_table(posthoc, _posthoc_title(result), label="tab:posthoc")
        body.append("")
    if result.odds_display is not None and len(result.odds_display):
        parts = _split_odds(result.odds_display)
        for k, (model, frame) in enumerate(parts):
            notes = [("", result.regression_note)] if result.regression_note and k == len(parts) - 1 else ()
            body += _latex_table(frame, f"{_odds_title(result)}: {_model_heading(result, model)}",
                                 label=f"tab:odds_{model.lower()}", notes=notes)
            body.append("")
    else:
        body.append(latex_escape(f"Odds ratios not computed: {result.regression_note or 'no model fitted'}.")
                    + r"\par")
    if standalone:
        head = [r"\documentclass[10pt]{article}", r"\usepackage[T1]{fontenc}",
                r"\usepackage[utf8]{inputenc}", r"\usepackage{booktabs}", r"\usepackage{array}",
                r"\usepackage{graphicx}",
                r"\usepackage[a4paper,landscape,margin=1.5cm]{geometry}",
                r"\pagestyle{empty}", r"\begin{document}"]
        body = head + body + [r"\end{document}"]
    path = _path(path)
    path.write_bytes(("\n".join(body) + "\n").encode("utf-8"))
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
    versions).
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

    wb.properties.creator = "analysis.table1"
    return save_deterministic_xlsx(wb, _path(path))


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


# --------------------------------------------------------------------------- all
def write_all(result, out) -> list:
    """Write every output of :data:`OUTPUT_FILES` into folder ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_xlsx(result, out / "table1.xlsx"),
        write_latex(result, out / "table1.tex"),
        write_markdown(result, out / "table1.md"),
        write_stats_csv(result, out / "table1_stats.csv"),
        write_odds_ratios_csv(result, out / "odds_ratios.csv"),
        write_posthoc_csv(result, out / "posthoc.csv"),
        write_methods(result, out / "methods.md"),
    ]
