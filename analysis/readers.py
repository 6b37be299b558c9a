"""Read a cohort spreadsheet (.xlsx or .csv/.tsv) into a DataFrame indexed by spreadsheet row.

The index of the returned frame is the row number Excel shows (header = row 1, first data
row = 2), so every later error message can point at the cell the user has to fix.  Nothing
is interpreted here beyond what the file format says: Excel cells keep their type, CSV
columns whose filled cells are all numbers become numeric and the rest stay text; missing
codes, levels and ranges are checked by :func:`analysis.cohort.validate_cohort`.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import CohortError, did_you_mean

__all__ = ["read_table", "column_letter", "SUPPORTED_EXTENSIONS"]

SUPPORTED_EXTENSIONS = (".xlsx", ".xlsm", ".csv", ".tsv", ".txt")
_UNNAMED = re.compile(r"^Unnamed: \d+(_level_\d+)?$")


def column_letter(position: int) -> str:
    """Excel column letter of a 0-based column position (0 -> 'A', 26 -> 'AA')."""
    letters = ""
    position += 1
    while position:
        position, rem = divmod(position - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def read_table(path, sheet=None) -> pd.DataFrame:
    """Read a cohort table from Excel or CSV.

    Parameters
    ----------
    path : str or Path
        ``.xlsx``/``.xlsm`` (read with openpyxl; formulas give their last saved value),
        ``.csv`` (comma, or semicolon as written by Excel in many European locales, in which
        case a decimal comma is accepted in numeric columns), ``.tsv``/``.txt``
        (tab-separated).  Text files must be UTF-8 (with or without BOM).
    sheet : str or int, optional
        Excel sheet name or 0-based position; default: the first sheet.

    Returns
    -------
    DataFrame
        One column per named header cell (whitespace stripped), one row per non-empty data
        row; index named ``row`` = spreadsheet row number (header = 1); empty cells are
        NaN.  ``df.attrs["source"]`` is ``str(path)`` (for Excel also ``df.attrs["sheet"]``, the sheet
        read, and ``df.attrs["sheets"]``, the names of all sheets).

    Raises
    ------
    CohortError
        One line naming the file (and row/column where they apply) for: a missing file,
        an empty file, an unsupported extension (``.xls``: re-save as ``.xlsx``), an
        unreadable/corrupt workbook, an unknown sheet (did-you-mean), a file that is not
        UTF-8 (byte offset, row and column of the first bad byte), a title row or merged
        cells above/in the header (the table must have exactly one header row, in row 1),
        a column with data but no name, duplicate column names, a CSV row with more fields
        than the header, and a header with no data rows below it.

    Examples
    --------
    >>> df = read_table("demo_data/cohort.xlsx")  # doctest: +SKIP
    >>> df.index[0]  # doctest: +SKIP
    2
    """
    path = Path(path)
    file = str(path)
    if not path.exists():
        siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
        raise CohortError(f"file not found{did_you_mean(path.name, siblings)}", file=file)
    if path.is_dir():
        raise CohortError("expected a spreadsheet file (.xlsx or .csv), got a folder", file=file)
    ext = path.suffix.lower()
    if ext == ".xls":
        raise CohortError("old Excel 97-2003 .xls files are not supported; open the file in Excel "
                          "and save it as .xlsx (Excel Workbook) or CSV UTF-8", file=file)
    if ext not in SUPPORTED_EXTENSIONS:
        raise CohortError(f"unsupported file type '{path.suffix or '(none)'}'; expected one of "
                          f"{', '.join(SUPPORTED_EXTENSIONS)}", file=file)
    if path.stat().st_size == 0:
        raise CohortError("the file is empty (0 bytes)", file=file)
    if ext in (".xlsx", ".xlsm"):
        rows, merged, sheet_name = _read_excel_rows(path, sheet)
    else:
        rows, merged, sheet_name = _read_text_rows(path, "\t" if ext in (".tsv", ".txt") else None), [], None
    df = _frame_from_rows(rows, merged, file)
    df.attrs["source"] = file
    if sheet_name is not None:
        df.attrs["sheet"], df.attrs["sheets"] = sheet_name
    return df


# --------------------------------------------------------------------------- Excel

def _without_dangling_relationships(path: Path):
    """An in-memory copy of the workbook without relationships to parts it does not contain.

    R's openxlsx 4.2 (Debian's r-cran-openxlsx) writes ``xl/worksheets/_rels/sheet1.xml.rels``
    pointing at ``../drawings/drawing1.xml`` without writing that part; Excel and LibreOffice
    ignore the dangling link, openpyxl raises ``KeyError``.  Dropping such relationships (and
    nothing else) gives the workbook Excel shows.
    """
    import io
    import posixpath
    import re

    buf = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        names = set(zin.namelist())
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(".rels"):
                base = posixpath.dirname(posixpath.dirname(item.filename))  # folder of the owning part

                def keep(match, base=base):
                    tag = match.group(0)
                    target = re.search(r'Target="([^"]*)"', tag)
                    if target is None or 'TargetMode="External"' in tag:
                        return tag
                    ref = target.group(1)
                    full = ref.lstrip("/") if ref.startswith("/") else posixpath.normpath(posixpath.join(base, ref))
                    return tag if full in names else ""

                data = re.sub(r"<Relationship\b[^>]*?/>", keep, data.decode("utf-8")).encode("utf-8")
            zout.writestr(item, data)
    buf.seek(0)
    return buf


def _read_excel_rows(path: Path, sheet):
    import openpyxl  # imported lazily: only needed for Excel files

    file = str(path)
    try:
        try:
            wb = openpyxl.load_workbook(path, data_only=True)
        except KeyError:  # a relationship to a part the archive lacks (R openxlsx 4.2 writes these)
            wb = openpyxl.load_workbook(_without_dangling_relationships(path), data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise CohortError(f"not a readable Excel workbook ({type(exc).__name__}); open it in Excel "
                          f"and save it again as .xlsx", file=file) from None
    names = wb.sheetnames
    if sheet is None:
        ws = wb.worksheets[0]
    elif isinstance(sheet, int):
        if not 0 <= sheet < len(names):
            raise CohortError(f"sheet position {sheet} does not exist (sheets: {', '.join(names)})", file=file)
        ws = wb.worksheets[sheet]
    else:
        if sheet not in names:
            raise CohortError(f"no sheet named '{sheet}' (sheets: {', '.join(names)})"
                              f"{did_you_mean(sheet, names)}", file=file)
        ws = wb[sheet]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    merged = [(str(rng), rng.min_row, rng.max_row) for rng in ws.merged_cells.ranges]
    wb.close()
    return rows, merged, (ws.title, tuple(names))


# --------------------------------------------------------------------------- CSV / TSV

def _read_text_rows(path: Path, delimiter):
    file = str(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start
        before = data[:offset]
        row = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
        delim = delimiter or _sniff_delimiter(header)
        field = data[line_start:offset].count(delim.encode())
        names = [h.strip().strip('"') for h in header.split(delim)]
        column = names[field] if field < len(names) else None
        raise CohortError(f"the file is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}, "
                          f"probably Windows/Latin-1 encoding); in Excel use 'Save As' > "
                          f"'CSV UTF-8 (Comma delimited)'", file=file, row=row, column=column) from None
    if not text.strip():
        raise CohortError("the file contains no table (only blank lines)", file=file)
    first_line = text.split("\n", 1)[0]
    delimiter = delimiter or _sniff_delimiter(first_line)
    try:
        rows = [list(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)]
    except csv.Error as exc:
        raise CohortError(f"cannot parse the CSV ({exc}); check for an unclosed quote", file=file) from None
    rows = [[None if c.strip() == "" else c for c in r] for r in rows]
    width = len(rows[0]) if rows else 0
    for i, r in enumerate(rows[1:], start=2):
        if len(r) > width and any(c is not None for c in r[width:]):
            raise CohortError(f"this row has {len(r)} fields but the header has {width}; a value "
                              f"probably contains an unquoted '{delimiter}'", file=file, row=i,
                              column=column_letter(width))
    return _numeric_columns(rows, width, decimal_comma=delimiter == ";")


def _sniff_delimiter(header: str) -> str:
    return ";" if header.count(";") > header.count(",") else ","


def _numeric_columns(rows, width, decimal_comma):
    """Convert each column whose filled cells are all numbers; others stay text."""
    rows = [r[:width] + [None] * (width - len(r)) for r in rows]
    for j in range(width):
        cells = [r[j] for r in rows[1:] if r[j] is not None]
        converted = []
        for c in cells:
            text = c.strip()
            if decimal_comma and re.fullmatch(r"[-+]?\d+,\d+", text):
                text = text.replace(",", ".")
            try:
                value = float(text)
            except ValueError:
                break
            if not np.isfinite(value):
                break
            converted.append(int(value) if re.fullmatch(r"[-+]?\d+", text) else value)
        else:
            it = iter(converted)
            for r in rows[1:]:
                if r[j] is not None:
                    r[j] = next(it)
    return rows


# --------------------------------------------------------------------------- common

def _is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or (
        isinstance(value, float) and np.isnan(value))


def _frame_from_rows(rows, merged, file: str) -> pd.DataFrame:
    # drop trailing blank rows and columns (Excel's used range is often too large)
    while rows and all(_is_blank(c) for c in rows[-1]):
        rows.pop()
    if not rows:
        raise CohortError("the file contains no table (no filled cells)", file=file)
    width = max(len(r) for r in rows)
    rows = [list(r) + [None] * (width - len(r)) for r in rows]
    while width and all(_is_blank(r[width - 1]) for r in rows):
        width -= 1
        rows = [r[:width] for r in rows]

    header = rows[0]
    filled = [j for j, c in enumerate(header) if not _is_blank(c)]
    for rng, min_row, max_row in merged:
        if min_row <= 2:
            raise CohortError(f"merged cells {rng} in the header area; the table needs exactly one "
                              f"header row (row 1) with one name per column, so unmerge the cells and "
                              f"delete any title row", file=file, row=min_row)
    if len(rows) > 1:
        second = rows[1]
        second_filled = [j for j, c in enumerate(second) if not _is_blank(c)]
        looks_like_header = second_filled and all(isinstance(second[j], str) for j in second_filled)
        if len(filled) <= max(1, width // 2) and len(second_filled) > len(filled) and looks_like_header:
            title = str(header[filled[0]]) if filled else ""
            raise CohortError(f"this row looks like a title ({title!r}) above the header row; the column "
                              f"names must be in row 1, so delete the title row(s)", file=file, row=1)
        names = {_clean_name(c) for c in header if not _is_blank(c)}
        repeated = [j for j in second_filled if isinstance(second[j], str) and _clean_name(second[j]) in names
                    and _clean_name(second[j]) == _clean_name(header[j])]
        if len(second_filled) and len(repeated) == len(second_filled):
            raise CohortError("row 2 repeats the header; the table needs exactly one header row",
                              file=file, row=2)

    names = []
    first_seen: dict[str, int] = {}
    keep = []
    for j, cell in enumerate(header):
        name = None if _is_blank(cell) else _clean_name(cell)
        has_data = any(not _is_blank(r[j]) for r in rows[1:])
        if name is None or _UNNAMED.match(name):
            if has_data or name is not None:
                shown = f" ('{name}', as written by pandas for an index)" if name else ""
                raise CohortError(f"column {column_letter(j)} holds data but has no name in row 1{shown}; "
                                  f"give it a header or delete the column", file=file, row=1,
                                  column=column_letter(j))
            continue
        if name in first_seen:
            raise CohortError(f"column name appears twice (columns {column_letter(first_seen[name])} and "
                              f"{column_letter(j)}); rename or delete one", file=file, row=1, column=name)
        first_seen[name] = j
        names.append(name)
        keep.append(j)

    body = [(i, r) for i, r in enumerate(rows[1:], start=2) if not all(_is_blank(c) for c in r)]
    if not body:
        raise CohortError("the header is there but no data rows follow it", file=file, row=2)
    data = {name: [r[j] if not _is_blank(r[j]) else np.nan for _, r in body] for name, j in zip(names, keep)}
    index = pd.Index([i for i, _ in body], name="row")
    df = pd.DataFrame(data, index=index, columns=names)
    for name in names:  # numeric columns as numbers, everything else as object
        values = df[name]
        if values.map(lambda v: isinstance(v, (int, float, np.integer, np.floating))
                      and not isinstance(v, bool)).all():
            df[name] = pd.to_numeric(values)
    return df


def _clean_name(cell) -> str:
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    return " ".join(str(cell).replace("\u00a0", " ").split())
