"""Check a cohort table against its schema and return typed, analysis-ready data.

:func:`validate_cohort` looks at every cell and collects every problem before raising one
:class:`~analysis.errors.CohortValidationError` (first line: how many problems; then one
line per problem naming file, spreadsheet row and column).  What counts as a problem and
what is only a note:

Problems (the analysis stops):
    a required column is missing (id, group, hospital, image columns, schema variables; with
    did-you-mean against the columns present); an empty or duplicate patient id (both rows
    named); an unknown group or level (did-you-mean); text in a continuous column; a value
    outside the schema's min..max; a group level with no patients; a variable with no
    observed value at all; a variable with a single observed value (no between-group
    comparison is possible and it usually means a fill-down or export mistake; remove the
    variable from the schema if it is really constant).

Exclusions (rows dropped, each listed in ``Cohort.exclusions`` with its reason):
    a row whose group is missing (empty cell or a missing code).

Notes (analysis goes on, ``Cohort.notes`` lists them):
    columns left out of the analysis, each with its reason (``Schema.excluded``, else "not
    in the schema"; kept unchanged in ``data``); what schema inference decided
    (``Schema.notes``); schema levels never observed; variables with missing values (count
    per variable, and the missing codes read, e.g. ``'not available' 3``); other spellings
    of a level read through the variable's ``recode``.

Every input column is accounted for in ``Cohort.column_account`` (one row per column:
patient id, group, hospital, image path, analysed variable with its type, or left out with
the reason).

Matching is forgiving where it cannot be wrong: levels ignore case and surrounding or
repeated spaces, and numbers match whatever their spelling (``1``, ``1.0``, ``"1"``).
Missing codes (schema-wide plus per variable) become NaN; a value equal to a declared
level is never treated as a missing code.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import CohortError, CohortValidationError, SchemaError, did_you_mean
from analysis.readers import read_table
from analysis.schema import Schema, Variable, infer_schema, load_schema, normalize_value, with_columns

__all__ = ["Cohort", "validate_cohort", "load_cohort", "parse_variables", "account_lines", "reportable_notes",
           "ACCOUNT_COLUMNS"]

EXCLUSION_COLUMNS = ["row", "patient_id", "column", "reason"]
#: Columns of :attr:`Cohort.column_account` (and of ``Table1Result.variables``).
ACCOUNT_COLUMNS = ["column", "role", "type", "test", "n_missing", "reason"]


@dataclass(frozen=True, eq=False)
class Cohort:
    """A validated cohort.

    Attributes
    ----------
    data : DataFrame
        Index = spreadsheet row numbers (name ``row``).  Columns: id (text), group
        (Categorical in ``schema.group_levels`` order), hospital (Categorical), the schema
        variables in schema order (continuous as float; categorical, ordinal and binary as
        ordered Categorical in schema level order), image columns (text paths, NaN where
        empty), then any extra columns unchanged.  Missing values are NaN; excluded rows
        are absent.
    schema : Schema
    source : str or None
        File the table came from.
    exclusions : DataFrame
        Tidy frame ``row, patient_id, column, reason``, one row per excluded table row.
    n_input : int
        Data rows read (before exclusions).
    notes : tuple of str
        Facts worth reporting that did not stop the analysis (see module docstring).
    column_account : DataFrame
        One row per input column, in file order (:data:`ACCOUNT_COLUMNS`): ``role`` is
        ``id``, ``group``, ``hospital``, ``image``, ``variable`` (with its ``type``) or
        ``excluded`` (with the ``reason``); ``n_missing`` counts missing cells of analysed
        variables (after exclusions); ``test`` is filled in by Table 1.
    missing_codes_used : dict
        ``{code as written: cells}`` of the missing codes read in analysed variables.
    """

    data: pd.DataFrame
    schema: Schema
    source: str | None
    exclusions: pd.DataFrame
    n_input: int
    notes: tuple = field(default_factory=tuple)
    column_account: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ACCOUNT_COLUMNS))
    missing_codes_used: dict = field(default_factory=dict)

    @property
    def n_analysed(self) -> int:
        """Rows kept for analysis (``n_input`` minus exclusions)."""
        return len(self.data)

    def group_counts(self) -> pd.Series:
        """Patients per group, in group order (zeros included)."""
        return self.data[self.schema.group_column].value_counts(sort=False).reindex(
            list(self.schema.group_levels), fill_value=0)

    def summary(self) -> str:
        """A few lines of plain text: source, rows read / excluded / analysed, groups, notes."""
        counts = self.group_counts()
        groups = ", ".join(f"{g} {n}" for g, n in counts.items())
        lines = [f"{self.source or 'cohort'}: {self.n_input} rows read, {len(self.exclusions)} excluded, "
                 f"{self.n_analysed} analysed ({groups})"]
        if len(self.exclusions):
            for reason, rows in self.exclusions.groupby("reason", sort=False):
                shown = ", ".join(f"row {r}" + ("" if pd.isna(p) else f" ({p})")
                                  for r, p in zip(rows["row"].head(5), rows["patient_id"].head(5)))
                more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
                lines.append(f"  excluded: {len(rows)} x {reason}: {shown}{more}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def account_lines(self, width: int = 100) -> list:
        """Every input column in a few lines: what was analysed, what was used how, what was left out and why."""
        return account_lines(self.column_account, width=width)


def reportable_notes(notes) -> list:
    """The notes worth showing beside Table 1: all but the per-variable missing counts (Table 1's
    Missing column shows them) and the list of columns not analysed (the column account shows it)."""
    plain = re.compile(r"^'.*': \d+ missing value\(s\)$")
    return [n for n in notes if not plain.match(n) and not n.startswith("columns not analysed")]


def account_lines(account: pd.DataFrame, width: int = 100) -> list:
    """The column account (:attr:`Cohort.column_account`) as a few plain-text lines."""
    if account is None or not len(account):
        return []
    role = account["role"].astype(str)
    used = []
    for name, what in (("id", "id"), ("group", "group"), ("hospital", "hospital")):
        cols = account.loc[role == name, "column"].astype(str).tolist()
        used += [f"{what} '{c}'" for c in cols]
    n_img = int((role == "image").sum())
    if n_img:
        used.append(f"{n_img} image path column{'s' if n_img > 1 else ''}")
    analysed = account[role == "variable"]
    types = analysed["type"].astype(str).value_counts(sort=False)
    kinds = ", ".join(f"{n} {t}" for t, n in types.items())
    left = account[role == "excluded"]
    head = (f"columns: {len(account)} read; {len(analysed)} analysed ({kinds or 'none'}); "
            f"{'; '.join(used) or 'no id/group column'}; {len(left)} left out")
    lines = [head + (":" if len(left) else "")]
    for rec in left.itertuples(index=False):
        line = f"  left out '{rec.column}': {rec.reason}"
        lines.append(line if len(line) <= width + 40 else line[:width + 37] + "...")
    return lines


def load_cohort(path, schema=None, group: str | None = None, sheet=None, *, id_column: str | None = None,
                hospital_column: str | None = None, image_columns=None) -> Cohort:
    """Read a spreadsheet and validate it: :func:`read_table` + :func:`validate_cohort`.

    Parameters
    ----------
    path : str or Path
        ``.xlsx`` or ``.csv``/``.tsv`` cohort table.
    schema : Schema, str or Path, optional
        The schema or its YAML file.  Default: ``cohort_schema.yaml`` next to the table if
        it exists; otherwise, if ``group`` is given, a schema inferred with
        :func:`analysis.schema.infer_schema`.
    group : str, optional
        Group column: the schema is then inferred (even when a ``cohort_schema.yaml`` lies
        beside the table); with ``schema`` given it must be the schema's group column.
    sheet : str or int, optional
        Excel sheet (default: the first).
    id_column, hospital_column : str, optional
        Patient-id and hospital columns, overriding the schema's
        (:func:`analysis.schema.with_columns`).
    image_columns : mapping or sequence of 'MODALITY=COLUMN', optional
        Image columns added to the schema's (e.g. ``["bmode=Bmode_file"]``).

    Returns
    -------
    Cohort

    Raises
    ------
    CohortError
        From reading (:func:`analysis.readers.read_table`), from the schema
        (:class:`SchemaError`), or :class:`CohortValidationError` listing every problem.
    """
    df = read_table(path, sheet=sheet)
    if schema is None:
        beside = Path(path).with_name("cohort_schema.yaml")
        if beside.exists() and group is None:
            schema = load_schema(beside)
        elif group is not None:
            schema = infer_schema(df, group, id_column=id_column)
        else:
            raise SchemaError("no schema given and no cohort_schema.yaml next to the table; pass a schema "
                              "(--schema FILE), or the group column (--group COLUMN) to infer one", file=str(path))
    elif not isinstance(schema, Schema):
        schema = load_schema(schema)
    if any(v is not None for v in (group, id_column, hospital_column, image_columns)):
        schema = with_columns(schema, id_column=id_column, group_column=group, hospital_column=hospital_column,
                              image_columns=image_columns, columns=df.columns, source=path)
    _check_layout(df, schema, path, sheet)
    return validate_cohort(df, schema, source=str(path))


def _check_layout(df: pd.DataFrame, schema: Schema, path, sheet=None) -> None:
    """One clear line when the group column is missing because the wrong sheet or separator was read."""
    if schema.group_column in df.columns:
        return
    sheets = df.attrs.get("sheets") or ()
    for other in (s for s in sheets if s != df.attrs.get("sheet")):
        try:
            columns = read_table(path, sheet=other).columns
        except CohortError:
            continue
        if schema.group_column in columns:  # the data are on another sheet
            which = " (the first sheet)" if sheet is None else ""
            raise CohortError(f"group column '{schema.group_column}' not found on sheet '{df.attrs.get('sheet')}'"
                              f"{which} but on sheet '{other}': pass --sheet {other}", file=str(path))
    if len(df.columns) == 1 and Path(path).suffix.lower() in (".txt", ".tsv"):
        head = str(df.columns[0])
        sep = "," if "," in head else ";" if ";" in head else None
        if sep:
            raise CohortError(f"read as tab-separated ({Path(path).suffix}) it has one column, and the header "
                              f"looks '{sep}'-separated: rename the file to .csv", file=str(path))


def _row_numbers(df: pd.DataFrame) -> list:
    if df.index.name == "row" and pd.api.types.is_integer_dtype(df.index):
        return [int(i) for i in df.index]
    return list(range(2, len(df) + 2))  # position 0 is spreadsheet row 2 (header = row 1)


class _Normalizer:
    """``normalize_value`` memoised per distinct cell value (type and value), for speed on
    large tables whose columns repeat a few levels; unhashable values are not cached."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, value):
        try:
            key = (type(value), value)
            hit = self.cache.get(key, _MISS)
        except TypeError:
            return normalize_value(value)
        if hit is _MISS:
            hit = self.cache[key] = normalize_value(value)
        return hit


_MISS = object()


def _numeric_codes(codes: set) -> set:
    """The missing codes that are numbers (as floats), e.g. {-99.0} from '-99'."""
    out = set()
    for c in codes:
        try:
            out.add(float(c))
        except (TypeError, ValueError):
            pass
    return out


def _is_missing(value, codes: set, level_keys: set | None = None, norm=normalize_value) -> bool:
    key = norm(value)
    if key is None:
        return True
    if level_keys is not None and key in level_keys:
        return False
    return key in codes


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def validate_cohort(df: pd.DataFrame, schema: Schema, source=None) -> Cohort:
    """Check every cell of a cohort table against the schema and return typed data.

    Parameters
    ----------
    df : DataFrame
        The table, ideally from :func:`analysis.readers.read_table` (its index holds the
        spreadsheet row numbers; any other index is read as positions, first row = 2).
        Not modified.
    schema : Schema
        What the table should contain.
    source : str, optional
        File name used in messages; default ``df.attrs['source']``.

    Returns
    -------
    Cohort
        See :class:`Cohort`; problems, exclusions and notes follow the rules in this
        module's docstring.

    Raises
    ------
    CohortValidationError
        Listing every problem found (each a :class:`CohortError` with ``file``, ``row``,
        ``column``), column problems first, then cells in row order, then whole-column and
        group problems.

    Examples
    --------
    >>> from analysis.simulate import simulate_cohort
    >>> cohort = validate_cohort(simulate_cohort(n=60, seed=1), load_schema())
    >>> cohort.data["margin"].cat.categories.tolist()
    ['smooth', 'irregular', 'ill-defined']
    """
    source = source if source is not None else df.attrs.get("source")
    file = None if source is None else str(source)
    rows = _row_numbers(df)
    work = df.copy()
    work.columns = [" ".join(str(c).split()) for c in work.columns]
    work.index = pd.Index(rows, name="row")
    n_input = len(work)

    column_problems: list[CohortError] = []
    cell_problems: list[tuple[int, int, CohortError]] = []
    late_problems: list[CohortError] = []
    notes: list[str] = []
    codes_used: dict[str, int] = {}

    present = list(work.columns)
    required = list(schema.required_columns)
    missing_cols = [c for c in required if c not in present]
    extras = [c for c in present if c not in required]
    for col in missing_cols:
        role = _role(schema, col)
        column_problems.append(CohortError(
            f"required column is missing ({role}){did_you_mean(col, extras)}",
            file=file, row=1, column=col))
    why_excluded = {" ".join(str(c).split()): r for c, r in schema.excluded}
    if extras:
        notes.append("columns not analysed (kept in the data): " + "; ".join(
            f"{c} ({why_excluded.get(c, 'not in the schema')})" for c in extras))
    notes += list(schema.notes)
    if n_input == 0:
        column_problems.append(CohortError("the table has no data rows", file=file, row=2))
        raise CohortValidationError(column_problems, file=file)
    col_order = {c: i for i, c in enumerate(present)}

    def cell_problem(row, col, message):
        cell_problems.append((row, col_order.get(col, 0), CohortError(message, file=file, row=row, column=col)))

    out: dict[str, pd.Series] = {}

    # --- group: missing -> exclusion, unknown -> problem
    gcol = schema.group_column
    excluded_rows: list[tuple] = []
    if gcol in present:
        gkeys = {normalize_value(g): g for g in schema.group_levels}
        codes = {normalize_value(c) for c in schema.missing_codes_for(gcol)}
        groups = []
        norm, gset = _Normalizer(), set(gkeys)
        for row, value in work[gcol].items():
            if _is_missing(value, codes, gset, norm):
                groups.append(np.nan)
                excluded_rows.append((row, gcol, "missing group"))
                continue
            key = norm(value)
            if key in gkeys:
                groups.append(gkeys[key])
            else:
                groups.append(np.nan)
                cell_problem(row, gcol, f"unknown group {_fmt(value)} (expected: "
                                        f"{', '.join(schema.group_levels)}){did_you_mean(value, schema.group_levels)}")
        out[gcol] = pd.Series(pd.Categorical(groups, categories=list(schema.group_levels)), index=work.index)

    # --- patient id: present, unique
    idcol = schema.id_column
    if idcol and idcol in present:
        seen: dict[str, int] = {}
        ids = []
        codes = {normalize_value(c) for c in schema.missing_codes}
        for row, value in work[idcol].items():
            if _is_missing(value, codes):
                ids.append(np.nan)
                cell_problem(row, idcol, "patient id is empty; every row needs a unique id")
                continue
            text = _fmt(value).strip("'") if not isinstance(value, str) else " ".join(value.split())
            if text in seen:
                cell_problem(row, idcol, f"duplicate patient id '{text}' (also on row {seen[text]}); "
                                         f"each patient must appear on one row only")
            else:
                seen[text] = row
            ids.append(text)
        out[idcol] = pd.Series(pd.array(ids, dtype=object), index=work.index)

    # --- hospital: free text levels, kept as categorical (observed levels, natural order)
    hcol = schema.hospital_column
    if hcol and hcol in present:
        codes = {normalize_value(c) for c in schema.missing_codes}
        norm = _Normalizer()
        values = [np.nan if _is_missing(v, codes, None, norm) else " ".join(str(v).split()) for v in work[hcol]]
        levels = sorted({v for v in values if isinstance(v, str)})
        out[hcol] = pd.Series(pd.Categorical(values, categories=levels), index=work.index)
        if any(not isinstance(v, str) for v in values):
            notes.append(f"'{hcol}': {sum(not isinstance(v, str) for v in values)} row(s) without a hospital")

    # --- variables
    recoded: dict[str, dict] = {}
    for var in schema.variables:
        if var.name not in present:
            continue
        if var.type == "continuous":
            out[var.name] = _continuous(work[var.name], var, schema, cell_problem)
        else:
            out[var.name] = _categorical(work[var.name], var, schema, cell_problem,
                                         recoded.setdefault(var.name, {}))

    # --- image paths: text, missing codes -> NaN
    for modality, col in schema.image_columns.items():
        if col in present and col not in out:
            codes = {normalize_value(c) for c in schema.missing_codes}
            out[col] = pd.Series([np.nan if _is_missing(v, codes) else str(v).strip() for v in work[col]],
                                 index=work.index, dtype=object)

    excluded_set = {r for r, _, _ in excluded_rows}
    keep = [r for r in work.index if r not in excluded_set]

    # --- whole-table problems (on the rows kept)
    if gcol in out and not column_problems:
        kept_groups = out[gcol].loc[keep]
        counts = kept_groups.value_counts(sort=False)
        present_levels = [g for g in schema.group_levels if counts.get(g, 0) > 0]
        for g in schema.group_levels:
            if counts.get(g, 0) == 0:
                late_problems.append(CohortError(
                    f"no patients in group '{g}' (groups present: {', '.join(present_levels) or 'none'}); "
                    f"remove '{g}' from the schema's group levels if it is not part of this study",
                    file=file, column=gcol))
    for var in schema.variables:
        if var.name not in out:
            continue
        series = out[var.name].loc[keep]
        observed = series.dropna()
        if observed.empty:
            late_problems.append(CohortError(
                f"all {len(series)} values are missing; check the column, or remove '{var.name}' "
                f"from the schema", file=file, column=var.name))
            continue
        distinct = observed.unique()
        if len(distinct) == 1:
            value = distinct[0]
            late_problems.append(CohortError(
                f"only one value is observed ({_fmt(value)} in all {len(observed)} non-missing rows), so "
                f"groups cannot be compared; check the column, or remove '{var.name}' from the schema",
                file=file, column=var.name))
            continue
        n_missing = int(series.isna().sum())
        coded = _codes_read(work[var.name].loc[keep], series)
        for code, n in coded.items():
            codes_used[code] = codes_used.get(code, 0) + n
        if n_missing:
            listed = ", ".join(f"{c} {n}" for c, n in coded.items())
            notes.append(f"'{var.name}': {n_missing} missing value(s)" + (f" (missing codes: {listed})" if coded else ""))
        if recoded.get(var.name):
            listed = "; ".join(f"{_fmt(sp)} -> {_fmt(lv)} ({n})" for (sp, lv), n in recoded[var.name].items())
            notes.append(f"'{var.name}': other spellings read as a level: {listed}")
        if var.is_categorical:
            unseen = [lv for lv in var.levels if (observed == lv).sum() == 0]
            if unseen:
                notes.append(f"'{var.name}': level(s) never observed: {', '.join(map(str, unseen))}")

    problems = column_problems + [p for _, _, p in sorted(cell_problems, key=lambda t: (t[0], t[1]))]
    problems += late_problems
    if problems:
        raise CohortValidationError(problems, file=file)

    ordered = [c for c in (idcol, gcol, hcol) if c] + list(schema.variable_names)
    ordered += [c for c in schema.image_columns.values() if c not in ordered]
    data = pd.DataFrame({c: out[c] for c in ordered}, index=work.index)
    for c in extras:
        data[c] = work[c]
    data = data.loc[keep]

    id_values = out[idcol] if idcol and idcol in out else None
    exclusions = pd.DataFrame(
        [{"row": r, "patient_id": (id_values.loc[r] if id_values is not None else np.nan),
          "column": c, "reason": reason} for r, c, reason in excluded_rows],
        columns=EXCLUSION_COLUMNS)
    exclusions["row"] = exclusions["row"].astype("int64")
    if codes_used:
        notes.append("cells read as missing by a missing code: " + ", ".join(
            f"{c} ({n} cell{'s' if n > 1 else ''})" for c, n in codes_used.items()))
    account = _column_account(present, schema, data, why_excluded)
    return Cohort(data=data, schema=schema, source=file, exclusions=exclusions, n_input=n_input,
                  notes=tuple(notes), column_account=account, missing_codes_used=dict(codes_used))


def _codes_read(raw: pd.Series, parsed: pd.Series) -> dict:
    """``{code as first written: cells}`` for filled cells that became missing (missing codes)."""
    mask = parsed.isna().to_numpy() & raw.notna().to_numpy()
    if not mask.any():
        return {}
    seen: dict[str, str] = {}
    counts: dict[str, int] = {}
    for value in raw[mask].tolist():
        key = normalize_value(value)
        if key is None:
            continue
        shown = seen.setdefault(key, _fmt(value.strip() if isinstance(value, str) else value))
        counts[shown] = counts.get(shown, 0) + 1
    return counts


def _column_account(columns, schema: Schema, data: pd.DataFrame, why_excluded: dict) -> pd.DataFrame:
    """One row per input column: its role, type and (for left-out columns) the reason."""
    variables = {v.name: v for v in schema.variables}
    images = {c: m for m, c in schema.image_columns.items()}
    rows = []
    for col in columns:
        row = {"column": col, "role": "excluded", "type": "", "test": "", "n_missing": np.nan, "reason": ""}
        if col == schema.id_column:
            row["role"] = "id"
        elif col == schema.group_column:
            row["role"] = "group"
        elif col == schema.hospital_column:
            row["role"] = "hospital"
        elif col in variables:
            row["role"], row["type"] = "variable", variables[col].type
            row["n_missing"] = int(data[col].isna().sum()) if col in data else np.nan
        elif col in images:
            row["role"], row["reason"] = "image", f"image path ({images[col]})"
        else:
            row["reason"] = why_excluded.get(col, "not in the schema")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=ACCOUNT_COLUMNS)
    frame["n_missing"] = frame["n_missing"].astype("Int64")
    return frame


def _role(schema: Schema, col: str) -> str:
    if col == schema.id_column:
        return "patient id column"
    if col == schema.group_column:
        return "group column"
    if col == schema.hospital_column:
        return "hospital column"
    for modality, c in schema.image_columns.items():
        if c == col:
            return f"image column for modality '{modality}'"
    return f"schema variable '{col}'"


def parse_variables(df: pd.DataFrame, schema: Schema, source=None) -> tuple:
    """The schema variables of ``df``, typed cell by cell, and every cell problem, for new patients.

    The same parsing as :func:`validate_cohort` (missing codes, level spellings, number
    format, min..max) without the checks that concern a whole cohort (groups, a level with no
    patients, ...), so that a table of a few new patients without a diagnosis can be read,
    e.g. for prediction.  A variable absent from ``df`` is all missing.

    Returns
    -------
    (pandas.DataFrame, list of CohortError)
        Typed values (index = spreadsheet rows, as :func:`validate_cohort`; bad cells NaN) and
        one :class:`~analysis.errors.CohortError` per bad cell (file, row, column).
    """
    file = None if source is None else str(source)
    rows = _row_numbers(df)
    work = df.copy()
    work.columns = [" ".join(str(c).split()) for c in work.columns]
    work.index = pd.Index(rows, name="row")
    problems: list = []

    def problem(row, col, message):
        problems.append(CohortError(message, file=file, row=row, column=col))

    out = {}
    for var in schema.variables:
        values = work[var.name] if var.name in work.columns else pd.Series([np.nan] * len(work), index=work.index,
                                                                           dtype=object)
        out[var.name] = (_continuous(values, var, schema, problem) if var.type == "continuous"
                         else _categorical(values, var, schema, problem))
    problems.sort(key=lambda e: (e.row or 0))
    return pd.DataFrame(out, index=work.index), problems


def _continuous(values: pd.Series, var: Variable, schema: Schema, problem) -> pd.Series:
    codes = {normalize_value(c) for c in schema.missing_codes_for(var.name)}
    num_codes = _numeric_codes(codes)
    low = var.min if var.min is not None else -math.inf
    high = var.max if var.max is not None else math.inf
    unit = f" {var.unit}" if var.unit else ""
    result = []
    for row, value in values.items():
        if type(value) is float or type(value) is np.float64 or type(value) is int:
            # fast path (same outcome as the general one below): NaN and numeric missing
            # codes are missing, finite in-range numbers are kept
            if value != value or value in num_codes:
                result.append(np.nan)
                continue
            if low <= value <= high and math.isfinite(value):
                result.append(float(value))
                continue
        if _is_missing(value, codes):
            result.append(np.nan)
            continue
        number = None
        if isinstance(value, (bool, np.bool_)):
            number = None
        elif isinstance(value, (int, float, np.integer, np.floating)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            hint = "; use a decimal point, not a comma" if isinstance(value, str) and "," in value else ""
            problem(row, var.name, f"expected a number{f' ({var.unit})' if var.unit else ''}, got {_fmt(value)}{hint}")
            result.append(np.nan)
            continue
        if not low <= number <= high:
            rng = f"{_fmt(var.min) if var.min is not None else '-inf'}..{_fmt(var.max) if var.max is not None else 'inf'}"
            problem(row, var.name, f"value {_fmt(number)}{unit} is outside the allowed range {rng}{unit}")
            result.append(np.nan)
            continue
        result.append(number)
    return pd.Series(result, index=values.index, dtype="float64")


def _categorical(values: pd.Series, var: Variable, schema: Schema, problem, recoded=None) -> pd.Series:
    level_of = {normalize_value(lv): lv for lv in var.levels}
    spelling_of = {}
    for spelling, level in var.recode:
        key = normalize_value(spelling)
        if key not in level_of:  # a level's own spelling always wins
            spelling_of[key] = (spelling, level)
    codes = {normalize_value(c) for c in schema.missing_codes_for(var.name)}
    shown = ", ".join(map(str, var.levels))
    level_keys = set(level_of) | set(spelling_of)
    norm = _Normalizer()
    result = []
    for row, value in values.items():
        if _is_missing(value, codes, level_keys, norm):
            result.append(np.nan)
            continue
        key = norm(value)
        if key in level_of:
            result.append(level_of[key])
        elif key in spelling_of:
            spelling, level = spelling_of[key]
            result.append(level_of[normalize_value(level)])
            if recoded is not None:
                recoded[(spelling, level)] = recoded.get((spelling, level), 0) + 1
        else:
            problem(row, var.name, f"unknown level {_fmt(value)} (expected: {shown})"
                                   f"{did_you_mean(str(value).strip(), [str(lv) for lv in var.levels])}")
            result.append(np.nan)
    return pd.Series(pd.Categorical(result, categories=list(var.levels), ordered=True), index=values.index)
