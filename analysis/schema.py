"""Cohort schema: which columns a cohort table has and what each may contain.

A schema is written by the researcher as YAML (see ``cohort_schema.yaml`` at the repository
root, which documents every field) and loaded with :func:`load_schema` into a frozen
:class:`Schema`.  Loading is strict: an unknown key, a value of the wrong type, a categorical
variable without levels, a binary variable with three levels or ``min > max`` raises
:class:`~analysis.errors.SchemaError` whose one-line message names the YAML file, the key path
and the YAML line, with a did-you-mean suggestion where one exists, e.g.::

    cohort_schema.yaml: variables[3] 'margin': unknown key 'levls' (line 61); did you mean 'levels'?

:func:`infer_schema` builds a schema from a table when none has been written, and
:meth:`Schema.to_yaml` writes any schema back to YAML that :func:`load_schema` reads again.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import yaml

from analysis.errors import SchemaError, did_you_mean

__all__ = [
    "Variable",
    "Schema",
    "VARIABLE_TYPES",
    "TESTS",
    "SUMMARIES",
    "DEFAULT_MISSING_CODES",
    "default_schema_path",
    "load_schema",
    "infer_schema",
    "with_columns",
    "image_column_map",
    "normalize_value",
]

VARIABLE_TYPES = ("continuous", "categorical", "ordinal", "binary")
TESTS = ("auto", "anova", "welch", "kruskal", "chi_square", "fisher", "trend")
SUMMARIES = ("auto", "mean_sd", "median_iqr")

#: Which explicit tests make sense for which variable type.
_TESTS_FOR_TYPE = {
    "continuous": {"auto", "anova", "welch", "kruskal"},
    "ordinal": {"auto", "kruskal", "chi_square", "fisher", "trend"},
    "categorical": {"auto", "chi_square", "fisher"},
    "binary": {"auto", "chi_square", "fisher"},
}

#: Cell values read as "missing" in every column unless the schema says otherwise.
#: ``none`` is deliberately not one: it is a real level of many findings ("none / mild / severe").
DEFAULT_MISSING_CODES: tuple = ("", "NA", "N/A", "n.a.", "NaN", "null", "missing", "unknown", "not known",
                                "not available", "not applicable", "not recorded", "not done", ".", "-",
                                "?", -99, -999)


def normalize_value(value) -> str | None:
    """Canonical text used to compare a cell with a level or a missing code.

    Whitespace is stripped and case folded; numbers compare by value, so ``1``, ``1.0``,
    ``"1"`` and ``" 1.0 "`` all give ``"1"``.  ``None``/NaN give ``None``.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).casefold()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = " ".join(str(value).split()).casefold()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isnan(number) or math.isinf(number):
        return text
    return str(int(number)) if number.is_integer() else repr(number)


@dataclass(frozen=True)
class Variable:
    """One analysed column of the cohort table.

    Attributes
    ----------
    name : str
        Column name in the table (exact, after header whitespace is stripped).
    label : str
        Row label in Table 1 (default: ``name``).
    type : {'continuous', 'categorical', 'ordinal', 'binary'}
        Measurement scale.
    levels : tuple or None
        Allowed values in display order (required for categorical / ordinal / binary;
        exactly two for binary, the second being the "positive" level); ``None`` for
        continuous variables.
    missing_codes : tuple
        Extra cell values meaning "missing" for this column, added to
        :attr:`Schema.missing_codes`.
    unit : str or None
        Unit shown in Table 1 (e.g. ``'mm'``).
    min, max : float or None
        Plausible range of a continuous variable; values outside are errors.
    test : str
        ``'auto'`` (chosen from the data) or one of ``anova, welch, kruskal, chi_square,
        fisher, trend``.
    summary : {'auto', 'mean_sd', 'median_iqr'}
        How a continuous (or ordinal) variable is summarised.
    multivariable : bool
        Whether the default multivariable odds-ratio model includes it (default True); set
        False for a variable derived from others (e.g. a ratio of two measured ones), which
        would make the model collinear.  Its univariable model is fitted either way.
    or_per : str, float or None
        Continuous variables: what the odds ratio is per (``'sd'``, ``'iqr'``, ``'unit'`` or
        a positive number of units, e.g. ``10`` for "per 10 years"); ``None``: the table's
        default (per SD).  See :func:`analysis.regression.or_increment`.
    recode : tuple of (spelling, level) pairs
        Other spellings of a level (e.g. ``('Y', 'yes'), ('1', 'yes')``), read as that level;
        written in YAML as ``recode: {Y: yes, '1': yes}``.
    """

    name: str
    label: str = ""
    type: str = "continuous"
    levels: tuple | None = None
    missing_codes: tuple = ()
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    test: str = "auto"
    summary: str = "auto"
    multivariable: bool = True
    or_per: str | float | None = None
    recode: tuple = ()

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)
        if isinstance(self.recode, Mapping):
            object.__setattr__(self, "recode", tuple(self.recode.items()))
        elif not isinstance(self.recode, tuple):
            object.__setattr__(self, "recode", tuple(tuple(p) for p in self.recode))
        if self.levels is not None and not isinstance(self.levels, tuple):
            object.__setattr__(self, "levels", tuple(self.levels))
        if not isinstance(self.missing_codes, tuple):
            object.__setattr__(self, "missing_codes", tuple(self.missing_codes))

    @property
    def is_categorical(self) -> bool:
        """True for categorical, ordinal and binary variables (those with levels)."""
        return self.type != "continuous"

    def to_dict(self) -> dict:
        """Plain dict in the YAML layout (fields left at their defaults are omitted)."""
        out: dict[str, Any] = {"name": self.name}
        if self.label != self.name:
            out["label"] = self.label
        out["type"] = self.type
        if self.levels is not None:
            out["levels"] = list(self.levels)
        if self.unit is not None:
            out["unit"] = self.unit
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.missing_codes:
            out["missing_codes"] = list(self.missing_codes)
        if self.test != "auto":
            out["test"] = self.test
        if self.summary != "auto":
            out["summary"] = self.summary
        if not self.multivariable:
            out["multivariable"] = False
        if self.or_per is not None:
            out["or_per"] = self.or_per
        if self.recode:
            out["recode"] = {str(k): v for k, v in self.recode}
        return out


@dataclass(frozen=True)
class Schema:
    """What a cohort table contains: identifier, group, hospital, images and variables.

    Attributes
    ----------
    id_column : str or None
        Patient identifier column (unique per row); ``None`` if the table has none.
    group_column : str
        Column holding the diagnosis group compared in Table 1.
    group_levels : tuple of str
        Group levels in display order.
    group_label : str
        Name of the grouping shown in table headers.
    hospital_column : str or None
        Column naming the recruiting hospital, if any.
    image_columns : dict
        Modality -> column holding that image's path (relative to the cohort file's folder).
    variables : tuple of Variable
        Analysed variables in Table 1 order.
    reference_group : str or None
        Reference level for odds ratios (default: the last group level).
    missing_codes : tuple
        Cell values read as missing in every column.
    group_ordered : bool
        Whether the group levels are ordered (e.g. stages); only then is a trend test
        (``test: trend``, linear-by-linear association) meaningful.
    excluded : tuple of (column, reason) pairs
        Columns of the table deliberately left out of the analysis, with the reason
        (``identifier-like``, ``free text``, ``date``, ``all missing``, ``one level``,
        ``unparseable ...``); written in YAML as ``excluded:`` so the user can review them.
    notes : tuple of str
        What :func:`infer_schema` decided that a reader should check (written as comments by
        :meth:`to_yaml`; not compared between schemas).
    """

    id_column: str | None
    group_column: str
    group_levels: tuple
    variables: tuple
    group_label: str = ""
    hospital_column: str | None = None
    image_columns: Mapping[str, str] = field(default_factory=dict)
    reference_group: str | None = None
    missing_codes: tuple = DEFAULT_MISSING_CODES
    group_ordered: bool = False
    excluded: tuple = ()
    notes: tuple = field(default=(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "excluded", tuple(tuple(p) for p in (
            self.excluded.items() if isinstance(self.excluded, Mapping) else self.excluded)))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "group_levels", tuple(self.group_levels))
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "missing_codes", tuple(self.missing_codes))
        object.__setattr__(self, "image_columns", dict(self.image_columns))
        if not self.group_label:
            object.__setattr__(self, "group_label", self.group_column)
        if self.reference_group is None and self.group_levels:
            object.__setattr__(self, "reference_group", self.group_levels[-1])

    __hash__ = None  # image_columns is a dict

    @property
    def variable_names(self) -> tuple:
        """Names of the analysed variables, in schema order."""
        return tuple(v.name for v in self.variables)

    @property
    def required_columns(self) -> tuple:
        """Every column the table must have: id, group, hospital, variables, images."""
        cols = [c for c in (self.id_column, self.group_column, self.hospital_column) if c]
        cols += list(self.variable_names)
        cols += [c for c in self.image_columns.values() if c not in cols]
        return tuple(cols)

    def variable(self, name: str) -> Variable:
        """The :class:`Variable` called ``name``.

        Raises
        ------
        SchemaError
            If no variable has that name (with a did-you-mean suggestion).
        """
        for var in self.variables:
            if var.name == name:
                return var
        raise SchemaError(f"no variable '{name}' in the schema (variables: "
                          f"{', '.join(self.variable_names)}){did_you_mean(name, self.variable_names)}")

    def missing_codes_for(self, name: str) -> tuple:
        """Schema-wide missing codes plus those of variable ``name`` (if it is one)."""
        extra = ()
        for var in self.variables:
            if var.name == name:
                extra = var.missing_codes
        return tuple(self.missing_codes) + tuple(extra)

    def to_dict(self) -> dict:
        """Plain dict in the layout read by :func:`load_schema`."""
        out: dict[str, Any] = {"id_column": self.id_column}
        out["group"] = {"column": self.group_column, "label": self.group_label,
                        "levels": list(self.group_levels), "reference": self.reference_group}
        if self.group_ordered:
            out["group"]["ordered"] = True
        if self.hospital_column is not None:
            out["hospital_column"] = self.hospital_column
        if self.image_columns:
            out["images"] = dict(self.image_columns)
        out["missing_codes"] = list(self.missing_codes)
        out["variables"] = [v.to_dict() for v in self.variables]
        if self.excluded:
            out["excluded"] = [{"column": c, "reason": r} for c, r in self.excluded]
        return out

    def to_yaml(self, path) -> Path:
        """Write the schema as YAML that :func:`load_schema` reads back to an equal Schema."""
        path = Path(path)
        text = ("# Cohort schema written by analysis.schema.Schema.to_yaml.\n"
                "# Field meanings: see cohort_schema.yaml in the lymphnode-toolkit repository.\n")
        if self.excluded:
            text += ("# Columns under 'excluded:' (at the end) are left out of Table 1, each with the reason;\n"
                     "# to analyse one, delete it there and add it under 'variables:'.\n")
        if any(v.or_per is not None for v in self.variables):
            text += ("# or_per: what a continuous variable's odds ratio is per (sd, iqr, unit, or a number of its\n"
                     "# units, e.g. 10 for 'per 10 years'); it overrides --or-per for that variable.\n")
        for note in self.notes:
            text += "# check: " + " ".join(str(note).split()) + "\n"
        text += yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                          default_flow_style=False, width=100)
        path.write_text(text, encoding="utf-8")
        return path


# --------------------------------------------------------------------------- YAML loading

class _Dumper(yaml.SafeDumper):
    """Block mappings, one-line lists (``levels: [absent, present]``)."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence(
    "tag:yaml.org,2002:seq", v, flow_style=not any(isinstance(x, (dict, list)) for x in v)))


class _LineDict(dict):
    """A mapping that remembers the YAML line of each key (1-based)."""

    lines: dict
    start_line: int = 0


class _Loader(yaml.SafeLoader):
    """Safe loader that keeps key line numbers and reads only true/false as booleans.

    YAML 1.1 would turn ``no``, ``yes``, ``on`` and ``off`` into booleans, which silently
    breaks levels such as ``[no, yes]``; here they stay text.
    """


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    out = _LineDict()
    out.lines = {}
    out.start_line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            raise SchemaError(f"a key must be plain text (line {key_node.start_mark.line + 1})")
        if key in out:
            raise SchemaError(f"key '{key}' appears twice (line {key_node.start_mark.line + 1})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_TOP_KEYS = ("id_column", "group", "hospital_column", "images", "missing_codes", "variables",
             "schema_version", "title", "excluded")
_GROUP_KEYS = ("column", "label", "levels", "reference", "ordered")
_VARIABLE_KEYS = ("name", "label", "type", "levels", "missing_codes", "unit", "min", "max", "multivariable",
                  "test", "summary", "description", "or_per", "recode")


def default_schema_path() -> Path:
    """Path of the schema shipped with the package (the demo cohort's schema)."""
    return Path(str(resources.files("analysis") / "data" / "cohort_schema.yaml"))


class _Checker:
    """Helpers that raise SchemaError naming the file, the key path and the line."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, where: str, message: str, line: int | None = None, hint: str = ""):
        at = f" (line {line})" if line else ""
        prefix = f"{where}: " if where else ""
        raise SchemaError(f"{prefix}{message}{at}{hint}", file=self.file)

    def mapping(self, value, where: str, line=None) -> _LineDict:
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping of 'key: value' lines, got {_describe(value)}", line)
        return value

    def keys(self, mapping: _LineDict, allowed, where: str):
        for key in mapping:
            if key not in allowed:
                self.fail(where, f"unknown key '{key}'", _line(mapping, key),
                          did_you_mean(key, allowed) or f"; allowed keys: {', '.join(allowed)}")

    def required(self, mapping: _LineDict, key: str, where: str):
        if key not in mapping or mapping[key] is None:
            self.fail(where, f"required key '{key}' is missing", getattr(mapping, "start_line", None))
        return mapping[key]

    def text(self, mapping, key, where, optional=True):
        value = mapping.get(key)
        if value is None:
            if optional:
                return None
            self.required(mapping, key, where)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.fail(where, f"'{key}' must be text, got {_describe(value)}", _line(mapping, key))
        return str(value)

    def flag(self, mapping, key, where, default=False) -> bool:
        value = mapping.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(where, f"'{key}' must be true or false, got {_describe(value)}", _line(mapping, key))
        return value

    def number(self, mapping, key, where):
        value = mapping.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, f"'{key}' must be a number, got {_describe(value)}", _line(mapping, key))
        return float(value)

    def choice(self, mapping, key, allowed, default, where):
        value = mapping.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, str) or value not in allowed:
            self.fail(where, f"'{key}' must be one of {', '.join(allowed)}, got {_describe(value)}",
                      _line(mapping, key), did_you_mean(value, allowed))
        return value

    def levels(self, mapping, key, where) -> tuple | None:
        value = mapping.get(key)
        if value is None:
            return None
        line = _line(mapping, key)
        if not isinstance(value, list):
            self.fail(where, f"'{key}' must be a list such as [absent, present], got {_describe(value)}", line)
        seen = {}
        for i, level in enumerate(value):
            if isinstance(level, bool) or not isinstance(level, (str, int, float)):
                self.fail(where, f"{key}[{i}] must be text or a number, got {_describe(level)}", line,
                          "; put it in quotes")
            if isinstance(level, float) and level.is_integer():
                level = int(level)
                value[i] = level
            norm = normalize_value(level)
            if norm in seen:
                self.fail(where, f"level {level!r} is listed twice in '{key}' "
                                 f"(levels are compared ignoring case and spaces)", line)
            seen[norm] = level
        return tuple(value)

    def codes(self, mapping, key, where) -> tuple:
        value = mapping.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(where, f"'{key}' must be a list such as ['', NA, -99], got {_describe(value)}",
                      _line(mapping, key))
        for i, code in enumerate(value):
            if isinstance(code, bool) or not isinstance(code, (str, int, float)):
                self.fail(where, f"{key}[{i}] must be text or a number, got {_describe(code)}",
                          _line(mapping, key))
        return tuple(value)

    def recode(self, mapping, key, levels, where) -> tuple:
        """``recode: {spelling: level}`` -> ((spelling, level), ...); every target must be a level."""
        value = mapping.get(key)
        if value is None:
            return ()
        line = _line(mapping, key)
        if not isinstance(value, dict):
            self.fail(where, f"'{key}' must be a mapping such as {{Y: yes, N: no}}, got {_describe(value)}", line)
        if not levels:
            self.fail(where, f"'{key}' applies to variables with levels only", line)
        by_key = {normalize_value(lv): lv for lv in levels}
        pairs = []
        for spelling, target in value.items():
            level = by_key.get(normalize_value(target))
            if level is None:
                self.fail(where, f"{key} '{spelling}': '{target}' is not one of the levels "
                                 f"({', '.join(map(str, levels))})", line,
                          did_you_mean(str(target), [str(lv) for lv in levels]))
            pairs.append((spelling if isinstance(spelling, str) else normalize_value(spelling), level))
        return tuple(pairs)

    def excluded(self, raw) -> tuple:
        """``excluded: [{column: x, reason: y}, ...]`` (or plain column names) -> ((x, y), ...)."""
        value = raw.get("excluded")
        if value is None:
            return ()
        line = _line(raw, "excluded")
        if not isinstance(value, list):
            self.fail("excluded", f"expected a list of '- column: NAME' entries, got {_describe(value)}", line)
        out = []
        for i, item in enumerate(value):
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                out.append((str(item), "left out in the schema"))
                continue
            item = self.mapping(item, f"excluded[{i}]", line)
            self.keys(item, ("column", "reason"), f"excluded[{i}]")
            column = self.text(item, "column", f"excluded[{i}]", optional=False)
            out.append((column, self.text(item, "reason", f"excluded[{i}]") or "left out in the schema"))
        return tuple(out)


def _line(mapping, key):
    return getattr(mapping, "lines", {}).get(key)


def _describe(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list {value!r}"
    return f"{type(value).__name__} {value!r}"


def load_schema(path=None) -> Schema:
    """Read and validate a cohort schema YAML file.

    Parameters
    ----------
    path : str or Path, optional
        YAML file; default: the schema shipped with the package
        (``analysis/data/cohort_schema.yaml``, identical to the repository's
        ``cohort_schema.yaml``), which describes the demo cohort.

    Returns
    -------
    Schema

    Raises
    ------
    SchemaError
        Missing or unreadable file, YAML syntax error (with line number), unknown key
        (did-you-mean), value of the wrong type, unknown variable type, duplicate variable
        names, categorical/ordinal/binary variable without levels, binary variable without
        exactly two levels, ``min > max``, a test that does not fit the variable type, a
        reference group that is not a group level.

    Examples
    --------
    >>> schema = load_schema()
    >>> schema.group_levels
    ('metastatic', 'lymphoma', 'benign')
    >>> schema.variable('margin').levels
    ('smooth', 'irregular', 'ill-defined')
    """
    path = default_schema_path() if path is None else Path(path)
    file = str(path)
    if not path.exists():
        siblings = [p.name for p in path.parent.glob("*.y*ml")] if path.parent.is_dir() else []
        raise SchemaError(f"schema file not found{did_you_mean(path.name, siblings)}", file=file)
    if path.is_dir():
        raise SchemaError("expected a YAML file, got a folder", file=file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"not UTF-8 text (byte offset {exc.start}); re-save the file as UTF-8",
                          file=file) from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except SchemaError as exc:
        raise SchemaError(exc.message, file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        detail = f"{context}, {problem}" if context else problem
        raise SchemaError(f"YAML syntax error{where}: {detail}; check indentation and that "
                          f"values containing ':' or '#' are quoted", file=file) from None
    return _schema_from_mapping(raw, file)


def _schema_from_mapping(raw, file: str) -> Schema:
    ck = _Checker(file)
    if raw is None:
        ck.fail("", "the schema file is empty")
    raw = ck.mapping(raw, "top level")
    ck.keys(raw, _TOP_KEYS, "top level")

    id_column = ck.text(raw, "id_column", "id_column")
    group = ck.mapping(ck.required(raw, "group", "top level"), "group", _line(raw, "group"))
    ck.keys(group, _GROUP_KEYS, "group")
    group_column = ck.text(group, "column", "group", optional=False)
    group_levels = ck.levels(group, "levels", "group")
    if not group_levels or len(group_levels) < 2:
        ck.fail("group", "'levels' must list at least two groups, e.g. [metastatic, lymphoma, benign]",
                _line(group, "levels") or group.start_line)
    group_levels = tuple(str(g) if not isinstance(g, str) else g for g in group_levels)
    reference = ck.text(group, "reference", "group")
    if reference is not None and reference not in group_levels:
        ck.fail("group", f"reference '{reference}' is not one of the levels ({', '.join(group_levels)})",
                _line(group, "reference"), did_you_mean(reference, group_levels))
    group_label = ck.text(group, "label", "group") or group_column
    group_ordered = ck.flag(group, "ordered", "group")

    hospital_column = ck.text(raw, "hospital_column", "hospital_column")
    images = raw.get("images") or {}
    images = ck.mapping(images, "images", _line(raw, "images"))
    image_columns = {}
    for modality, column in images.items():
        image_columns[str(modality)] = ck.text(images, modality, f"images '{modality}'", optional=False)

    missing_codes = DEFAULT_MISSING_CODES
    if "missing_codes" in raw:
        missing_codes = ck.codes(raw, "missing_codes", "top level")

    raw_vars = ck.required(raw, "variables", "top level")
    # An image-only set (e.g. BUSI) may declare no clinical variables: `variables: []`.
    if not isinstance(raw_vars, list) or (not raw_vars and not image_columns):
        ck.fail("variables", "expected a list of variables, each starting with '- name: ...' "
                             "(an empty list is allowed only when 'images' names image columns)",
                _line(raw, "variables"))
    variables = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw_vars):
        where = f"variables[{i}]"
        item = ck.mapping(item, where, _line(raw, "variables"))
        name = ck.text(item, "name", where, optional=False)
        where = f"variables[{i}] '{name}'"
        ck.keys(item, _VARIABLE_KEYS, where)
        if name in seen:
            ck.fail(where, f"variable name '{name}' is used twice (also variables[{seen[name]}])",
                    _line(item, "name"))
        seen[name] = i
        vtype = ck.choice(item, "type", VARIABLE_TYPES, None, where) if "type" in item else \
            ck.fail(where, "required key 'type' is missing (continuous, categorical, ordinal or binary)",
                    item.start_line)
        levels = ck.levels(item, "levels", where)
        if vtype == "continuous":
            if levels is not None:
                ck.fail(where, "a continuous variable has no 'levels'; use type ordinal or categorical "
                               "for a fixed set of values", _line(item, "levels"))
        else:
            if not levels:
                ck.fail(where, f"a {vtype} variable needs 'levels', e.g. levels: [absent, present]",
                        item.start_line)
            if vtype == "binary" and len(levels) != 2:
                ck.fail(where, f"a binary variable needs exactly 2 levels, got {len(levels)} "
                               f"({', '.join(map(str, levels))}); use type categorical for more",
                        _line(item, "levels"))
            if len(levels) < 2:
                ck.fail(where, f"a {vtype} variable needs at least 2 levels", _line(item, "levels"))
        vmin = ck.number(item, "min", where)
        vmax = ck.number(item, "max", where)
        if (vmin is not None or vmax is not None) and vtype != "continuous":
            key = "min" if vmin is not None else "max"
            ck.fail(where, f"'{key}' applies to continuous variables only", _line(item, key))
        if vmin is not None and vmax is not None and vmin > vmax:
            ck.fail(where, f"min ({vmin:g}) is greater than max ({vmax:g})", _line(item, "min"))
        test = ck.choice(item, "test", TESTS, "auto", where)
        if test not in _TESTS_FOR_TYPE[vtype]:
            ck.fail(where, f"test '{test}' does not apply to a {vtype} variable (allowed: "
                           f"{', '.join(sorted(_TESTS_FOR_TYPE[vtype]))})", _line(item, "test"))
        if test == "trend" and not group_ordered:
            ck.fail(where, "test 'trend' (linear-by-linear association) scores the groups "
                           f"{' < '.join(group_levels)} as ordered, and they are not declared ordered: "
                           "use 'kruskal' (or 'auto'), or add 'ordered: true' under 'group:' if that order "
                           "is real (e.g. disease stages)", _line(item, "test"))
        summary = ck.choice(item, "summary", SUMMARIES, "auto", where)
        if summary != "auto" and vtype not in ("continuous", "ordinal"):
            ck.fail(where, f"summary '{summary}' applies to continuous or ordinal variables only",
                    _line(item, "summary"))
        or_per = item.get("or_per")
        if or_per is not None:
            ok = (isinstance(or_per, str) and or_per.strip().lower() in ("sd", "iqr", "unit")) or (
                isinstance(or_per, (int, float)) and not isinstance(or_per, bool) and or_per > 0)
            if not ok or vtype != "continuous":
                ck.fail(where, ("'or_per' applies to continuous variables only" if ok else
                                f"'or_per' must be sd, iqr, unit or a positive number, got {_describe(or_per)}"),
                        _line(item, "or_per"))
            or_per = or_per.strip().lower() if isinstance(or_per, str) else float(or_per)
        variables.append(Variable(
            name=name, label=ck.text(item, "label", where) or name, type=vtype, levels=levels,
            missing_codes=ck.codes(item, "missing_codes", where), unit=ck.text(item, "unit", where),
            min=vmin, max=vmax, test=test, summary=summary,
            multivariable=ck.flag(item, "multivariable", where, default=True),
            recode=ck.recode(item, "recode", levels, where), or_per=or_per))

    excluded = ck.excluded(raw)
    taken = {c: "id_column" for c in [id_column] if c}
    for key, col in (("group column", group_column), ("hospital_column", hospital_column)):
        if col and col in taken:
            ck.fail(key, f"column '{col}' is also used as {taken[col]}")
        if col:
            taken[col] = key
    for var in variables:
        if var.name in taken:
            ck.fail(f"variables '{var.name}'", f"column '{var.name}' is also used as {taken[var.name]}")
        taken[var.name] = f"variable '{var.name}'"
    for col, _ in excluded:
        if col in taken:
            ck.fail("excluded", f"column '{col}' is listed under 'excluded' but is also used as {taken[col]}",
                    _line(raw, "excluded"))
    return Schema(id_column=id_column, group_column=group_column, group_levels=group_levels,
                  group_label=group_label, hospital_column=hospital_column,
                  image_columns=image_columns, variables=tuple(variables),
                  reference_group=reference or group_levels[-1], missing_codes=missing_codes,
                  group_ordered=group_ordered, excluded=excluded)


# --------------------------------------------------------------------------- inference

_ID_NAMES = ("patient_id", "id", "subject_id", "case_id", "patient", "subject", "record_id")
#: Column names read as the recruiting hospital.  ``site`` is not one: it is as often an
#: anatomical site (neck, axilla, groin), so it stays a variable and a note says so.
_HOSPITAL_NAMES = ("hospital", "centre", "center", "institution", "hospital_name", "recruiting_hospital",
                   "recruiting_centre", "recruiting_center", "study_centre", "study_center")
_AMBIGUOUS_HOSPITAL_NAMES = ("site", "study_site", "clinic")
_CONTROL_NAMES = ("benign", "control", "controls", "normal", "healthy", "negative", "reactive")

#: Spellings of one binary answer merged into one level by :func:`infer_schema` (a column
#: whose values all fall in one family, e.g. ``Yes / yes / Y / 1`` and ``No / no / N / 0``).
_SPELLING_FAMILIES = (
    (("yes", "y", "true", "t", "1", "ja", "si", "oui"), ("no", "n", "false", "0", "nein", "non")),
    (("male", "m", "man", "males"), ("female", "f", "woman", "w", "females")),
    (("positive", "pos", "+", "pos."), ("negative", "neg", "-", "neg.")),
    (("present", "presence", "p"), ("absent", "absence", "a")),
)
#: Word scales read as ordinal, in this order, when a column's values all belong to one.
_ORDERED_SCALES = (
    ("none", "mild", "moderate", "severe"),
    ("none", "minimal", "mild", "moderate", "marked", "severe"),
    ("absent", "mild", "moderate", "severe"),
    ("low", "intermediate", "high"),
    ("low", "medium", "high"),
    ("never", "former", "current"),
    ("never", "rarely", "sometimes", "often", "always"),
)
#: Values that name an image file (a column of them is image paths, not a variable).
_IMAGE_FILE = re.compile(r"\.(png|jpe?g|bmp|tiff?|dcm|gif)$", re.IGNORECASE)
#: A text column with more distinct values than this (or most values unique) is free text.
_MAX_LEVELS = 15
_DATE_TEXT = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
                        r"([ T]\d{1,2}:\d{2}(:\d{2})?)?\s*$")
#: A column whose values are all number-like labels (none a plain number) with at most this many
#: distinct values is categorical ('<6m' / '>6m'); more is a column of unreadable numbers.
_MAX_LABEL_LEVELS = 6
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
#: Text that is a number in disguise: decimal comma, ``<5``, ``>100``, ``45%``, ``12 mm``.
_NUMBER_LIKE = re.compile(r"^\s*([<>\u2264\u2265]=?\s*)?[-+]?\d+([.,]\d+)?\s*(%|[a-zA-Z/]{1,6})?\s*$")
#: Graded codes read as ordinal: BI-RADS ``4a``, HER2 ``2+``.
_ORDINAL_CODE = re.compile(r"^\d{1,2}(?:[a-z]|\+{1,3})?$")
_MULTI_SEPARATOR = re.compile(r"\s*[;|+]\s*|\s*,\s+|\s+and\s+|\s*/\s*")


_NORM_CACHE: dict = {}


def _norm(value):
    """:func:`normalize_value`, memoised per (type, value): inference looks at every cell
    several times and most columns repeat a few values."""
    try:
        key = (type(value), value)
        hit = _NORM_CACHE.get(key, _NORM_CACHE)
    except TypeError:  # unhashable
        return normalize_value(value)
    if hit is _NORM_CACHE:
        if len(_NORM_CACHE) > 200_000:
            _NORM_CACHE.clear()
        hit = _NORM_CACHE[key] = normalize_value(value)
    return hit


def _natural_key(value):
    """Sort key: numbers by value, text in natural order (``4a`` between 4 and 5; ``grade 2``
    before ``grade 10``); numbers and number-led text compare by their number."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return ((0, float(value), ""),)
    key = []
    for part in re.split(r"(\d+(?:\.\d+)?)", str(value).casefold()):
        if part == "":
            continue
        try:
            key.append((0, float(part), ""))
        except ValueError:
            key.append((1, 0.0, part))
    return tuple(key)


def _as_number(value):
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


_IDENTIFIER_NAMES = {"id", "case", "case_id", "caseid", "case_no", "case_number", "patient", "patient_id",
                     "patientid", "subject", "subject_id", "mrn", "record", "record_id", "study_id",
                     "image_id", "accession", "study_no", "study_nr", "study_number", "no", "nr", "number",
                     "serial", "serial_no", "pid", "uid", "name", "patient_name", "initials",
                     "hospital_number", "hospital_no", "lab_no", "lab_number", "accession_number"}


#: Identifier names that are also ordinary words for a count ("number of polyps"): such a column is
#: an identifier only when its values are unique.
_GENERIC_NUMBER_NAMES = {"number", "no", "nr"}


def _name_key(name) -> str:
    """``'Study No.'`` -> ``'study_no'`` (lower case, runs of other characters -> ``_``)."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).casefold()).strip("_")


def _looks_like_identifier(name: str) -> bool:
    """Column names that hold identifiers, never variables (``Case``, ``MRN``, ``Study No.``, ``*_id``)."""
    key = _name_key(name)
    return (key in _IDENTIFIER_NAMES or key.endswith("_id") or key.endswith("_no") or key.endswith("_nr")
            or key.endswith("_number") or str(name).strip() == "#")


def _is_date(value) -> bool:
    import datetime as _dt

    if isinstance(value, (_dt.date, _dt.datetime, _dt.time, pd.Timestamp, np.datetime64)):
        return True
    return isinstance(value, str) and bool(_DATE_TEXT.match(value))


def _cell(value) -> str:
    """A cell as quoted in a note: ``'12,5'``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value) if isinstance(value, str) else repr(str(value))


def _spelling_family(keys: set):
    """(family index, {key: side}) when every key belongs to one family and both sides occur."""
    for i, (pos, neg) in enumerate(_SPELLING_FAMILIES):
        if keys <= set(pos) | set(neg) and keys & set(pos) and keys & set(neg):
            return i
    return None


def _merge_spellings(values: list, family: int):
    """Levels and recode pairs for a column whose values are spellings of two answers."""
    pos, neg = _SPELLING_FAMILIES[family]
    sides = {}
    for v in values:
        key = _norm(v)
        side = 1 if key in pos else 0
        text = " ".join(str(int(v) if isinstance(v, float) and v.is_integer() else v).split())
        sides.setdefault(side, {}).setdefault(key, {}).setdefault(text, 0)
        sides[side][key][text] += 1
    levels, recode = [], []
    for side in (0, 1):
        spellings = sides[side]
        # the level is the most frequent word spelling (not a letter or a digit), else the family word
        words = [(n, t) for key, texts in spellings.items() for t, n in texts.items() if len(key) > 1
                 and not key.isdigit()]
        level = max(words, key=lambda nt: (nt[0], nt[1]))[1] if words else (pos if side else neg)[0]
        levels.append(level)
        others = [max(texts.items(), key=lambda kv: kv[1])[0] for key, texts in spellings.items()
                  if key != _norm(level)]
        recode += [(o, level) for o in others]
    if len({lv[:1].isupper() for lv in levels}) > 1:  # 'no' and 'Yes' -> 'no' and 'yes'
        recode += [(lv, lv.casefold()) for lv in levels]
        levels = [lv.casefold() for lv in levels]
        recode = [(k, v.casefold()) for k, v in recode if normalize_value(k) != normalize_value(v)]
    if family != 0:  # no before yes (as 0 before 1); others in natural order
        levels = sorted(levels, key=_natural_key)
    return tuple(levels), tuple(recode)


def infer_schema(df: pd.DataFrame, group: str, id_column: str | None = None, or_per=None) -> Schema:
    """Guess a schema from a table, for cohorts that have no YAML schema yet.

    Every column ends in exactly one role: patient id, group, hospital, image path, an
    analysed variable, or left out with a reason (``Schema.excluded``); decisions a reader
    should check are in ``Schema.notes``.

    Parameters
    ----------
    df : DataFrame
        The cohort table (e.g. from :func:`analysis.readers.read_table`, whose index holds
        the spreadsheet rows named in the reasons); not modified.
    group : str
        Column holding the groups to compare.
    id_column : str, optional
        Patient identifier column; default: the first column named like ``patient_id``/``id``
        (even when its values repeat: :func:`analysis.cohort.validate_cohort` then names the
        duplicate rows), else the first identifier-like column (``MRN``, ``Study No.``,
        ``*_id``) whose values are unique, else none.
    or_per : {'sd', 'iqr', 'unit'}, positive float or None
        Written as ``or_per`` of every continuous variable (what its odds ratio is per), so
        that a schema saved with :meth:`Schema.to_yaml` records the unit of the odds ratios
        and the user can edit it per variable (e.g. ``10`` for "per 10 years"); ``None``
        (default): left to :func:`analysis.table1.build_table1`'s ``or_per``.

    Returns
    -------
    Schema
        Missing codes (:data:`DEFAULT_MISSING_CODES`) are removed first.  Types: two distinct
        values -> binary; whole numbers with 3-7 values between 0 and 10, codes such as
        BI-RADS ``1, 2, 3, 4a, 4b, 4c, 5`` or HER2 ``0, 1+, 2+, 3+`` and word scales (``none / mild / moderate /
        severe``) -> ordinal; other numbers -> continuous; text -> categorical.  Levels are
        sorted naturally; case and spacing variants of a level are merged, and so are
        spellings of one answer (``Yes / yes / Y / 1``, ``M / m / male``: ``recode`` plus a
        note).  Left out with a reason: identifier-like columns (by name, or unique
        consecutive whole numbers such as a study number), dates, free text and multi-select
        answers (more than 15 distinct values, or most values unique), columns with every
        value missing or a single value, and columns of numbers that could not be read
        (decimal commas in a comma-separated file, ``<5``), naming the first such cell; a
        column of at most six such labels and no plain number (``<6m`` / ``>6m``, ``<=2 cm`` /
        ``>2 cm``) is categorical, with a note.  A column named ``number``/``no``/``nr`` is an
        identifier only if its values are unique (else a count, analysed, with a note).  A
        column named ``hospital``/``centre``/``center`` becomes the hospital column; one
        named ``site`` stays a variable (an anatomical site is as likely) with a note; columns
        named ``image_<modality>`` are the image columns.  A numeric local missing code (99,
        999, 9999, -1, -9) far outside the other values of a column is added to that
        variable's ``missing_codes`` with a note.  The reference group is a level named like
        ``benign``/``control``/``normal`` if there is one, else the first level.  Write the
        result with :meth:`Schema.to_yaml`, check it, and load it with :func:`load_schema`
        next time.

    Raises
    ------
    SchemaError
        If ``group`` or ``id_column`` is not a column (did-you-mean), or the group column
        has fewer than two levels.
    """
    source = df.attrs.get("source")
    columns = [str(c) for c in df.columns]
    if group not in columns:
        raise SchemaError(f"group column '{group}' not found (columns: {', '.join(columns)})"
                          f"{did_you_mean(group, columns)}", file=source, column=group)
    by_name = {str(c): c for c in df.columns}

    def column(name):  # columns are named by their text (a DataFrame may have numbers as names)
        return df[by_name[name]]

    codes = {_norm(c) for c in DEFAULT_MISSING_CODES}
    if df.index.name == "row" and pd.api.types.is_integer_dtype(df.index):
        row_numbers = [int(i) for i in df.index]
    else:
        row_numbers = list(range(2, len(df) + 2))

    def present(series, keep=()):
        keep = set(keep)
        return [v for v in series.tolist() if _norm(v) is not None
                and (_norm(v) not in codes or _norm(v) in keep)]

    if id_column is not None and id_column not in columns:
        raise SchemaError(f"id column '{id_column}' not found{did_you_mean(id_column, columns)}",
                          file=source, column=id_column)
    if id_column is None:
        id_column = next((c for c in columns if _name_key(c) in _ID_NAMES and c != group), None)
    if id_column is None:
        for name in columns:
            if name != group and _looks_like_identifier(name):
                values = present(column(name))
                if values and len({_norm(v) for v in values}) == len(values):
                    id_column = name
                    break

    group_levels = _levels(present(column(group)))
    if len(group_levels) < 2:
        raise SchemaError(f"group column '{group}' has {len(group_levels)} distinct value(s); "
                          f"at least two groups are needed", file=source, column=group)
    group_levels = tuple(str(g) for g in group_levels)
    reference = next((g for g in group_levels if g.casefold() in _CONTROL_NAMES), group_levels[0])

    hospital = next((c for c in columns if _name_key(c) in _HOSPITAL_NAMES and c not in (group, id_column)),
                    None)
    images = {c[len("image_"):]: c for c in columns if c.casefold().startswith("image_")
              and c not in (group, id_column) and not _looks_like_identifier(c)}
    taken = {group, id_column, hospital, *images.values()}

    variables, excluded, notes = [], [], []
    for name in columns:
        if name in taken:
            continue
        raw = column(name)
        if _looks_like_identifier(name):
            vals = present(raw)
            if _name_key(name) in _GENERIC_NUMBER_NAMES and len({_norm(v) for v in vals}) < len(vals):
                notes.append(f"'{name}' is named like an identifier but its values repeat: analysed as a variable "
                             f"(a count, e.g. 'number of nodes'); if it identifies patients, set 'id_column: {name}'")
            else:
                excluded.append((name, "identifier-like (by its name)"))
                continue
        dash_level = any(_norm(v) == "+" for v in raw.tolist())
        values = present(raw, keep={"-"} if dash_level else ())
        if not values:
            excluded.append((name, "all missing"))
            continue
        if all(_is_date(v) for v in values):
            excluded.append((name, "date"))
            continue
        numbers = [_as_number(v) for v in values]
        n_numeric = sum(x is not None for x in numbers)
        levels = _levels(values)
        if len(levels) == 1:
            excluded.append((name, f"one level ({_cell(levels[0])} in all {len(values)} recorded rows)"))
            continue
        keys = {_norm(v) for v in values}
        family = _spelling_family(keys)
        if family is not None and len(keys) > 2 and n_numeric < len(values):
            lv, recode = _merge_spellings(values, family)
            variables.append(Variable(name=name, type="binary", levels=lv, recode=recode))
            continue  # validate_cohort notes the spellings read through 'recode', with counts
        if n_numeric == len(values):
            ident = _numeric_identifier(raw, numbers)
            if ident:
                excluded.append((name, ident))
                continue
            local, note = _local_missing_code(name, numbers)
            if local:
                notes.append(note)
                numbers = [x for x in numbers if x not in local]
            nums = sorted({x for x in numbers})
            whole = all(float(x).is_integer() for x in nums)
            if len(nums) == 2:
                lv = tuple(int(x) if whole else x for x in nums)
                variables.append(Variable(name=name, type="binary", levels=lv, missing_codes=local))
            elif whole and 3 <= len(nums) <= 7 and nums[0] >= 0 and nums[-1] <= 10:
                variables.append(Variable(name=name, type="ordinal", levels=tuple(int(x) for x in nums),
                                          missing_codes=local))
            else:
                variables.append(Variable(name=name, type="continuous", missing_codes=local))
            continue
        texts = [str(lv) for lv in levels]
        if len(levels) >= 3 and all(_ORDINAL_CODE.match(t.casefold()) for t in texts) and \
                max(int(re.match(r"\d+", t).group()) for t in texts) <= 10:
            variables.append(Variable(name=name, type="ordinal", levels=tuple(levels)))
            continue
        scale = next((sc for sc in _ORDERED_SCALES if {t.casefold() for t in texts} <= set(sc)), None)
        if scale is not None and len(levels) >= 3:
            ordered = sorted(levels, key=lambda lv: scale.index(str(lv).casefold()))
            variables.append(Variable(name=name, type="ordinal", levels=tuple(str(x) for x in ordered)))
            continue
        numeric_like = sum(x is not None or bool(_NUMBER_LIKE.match(str(v))) for v, x in zip(values, numbers))
        # a few labels such as '<6m' / '>6m' or '<=2 cm' / '>2 cm', none a plain number: categories
        labels_only = (n_numeric == 0 and len(levels) <= _MAX_LABEL_LEVELS
                       and not any(_DECIMAL_COMMA.match(str(lv)) for lv in levels))
        if labels_only and numeric_like:
            notes.append(f"'{name}': values such as {_cell(levels[0])} (none a plain number) read as categories")
        if numeric_like >= 0.5 * len(values) and not labels_only:
            bad = next(((r, v) for r, v in zip(row_numbers, raw.tolist()) if _norm(v) is not None
                        and _norm(v) not in codes and _as_number(v) is None), None)
            if n_numeric >= 0.9 * len(values):  # a few bad cells: validate_cohort names each one
                variables.append(Variable(name=name, type="continuous"))
                continue
            n_bad = len(values) - n_numeric
            why = ("a number with a decimal comma in a comma-separated file: use decimal points, or ';' "
                   "as the separator" if _DECIMAL_COMMA.match(str(bad[1])) else "not a number")
            excluded.append((name, f"unparseable: {n_bad} of {len(values)} values are not plain numbers, first on "
                                   f"row {bad[0]} ({_cell(bad[1])}: {why})"))
            continue
        n_images = sum(bool(_IMAGE_FILE.search(str(v).strip())) for v in values)
        if n_images >= 0.9 * len(values):
            excluded.append((name, f"image file paths ({n_images} of {len(values)} values): not tested; name it as "
                                   "an image column (schema 'images:' or fusion.train --image-column)"))
            continue
        if len(levels) > _MAX_LEVELS or (len(levels) >= 6 and len(levels) > 0.5 * len(values)):
            split = [[p for p in _MULTI_SEPARATOR.split(str(v).strip().casefold()) if p] for v in values]
            pieces = {p for parts in split for p in parts}
            multi = sum(len(parts) > 1 for parts in split)
            kind = ("multi-select answers" if multi >= 0.2 * len(values) and len(pieces) <= 0.5 * len(levels)
                    else "free text")
            excluded.append((name, f"{kind}: {len(levels)} distinct values in {len(values)} recorded rows"))
            continue
        if len(levels) == 2:
            variables.append(Variable(name=name, type="binary", levels=tuple(str(x) for x in levels)))
        else:
            variables.append(Variable(name=name, type="categorical", levels=tuple(str(x) for x in levels)))
        similar = _similar_levels([str(x) for x in levels])
        if similar:
            notes.append(f"'{name}': levels that may be spellings of one level: "
                         + "; ".join(f"{_cell(a)} / {_cell(b)}" for a, b in similar)
                         + f"; if so, merge them with 'recode' in the schema (e.g. recode: {{{_cell(similar[0][0])}: "
                           f"{_cell(similar[0][1])}}})")
        if _name_key(name) in _AMBIGUOUS_HOSPITAL_NAMES and hospital is None:
            notes.append(f"'{name}' is analysed as a variable, not as the hospital column (it may be an "
                         f"anatomical site); if it names the recruiting hospital, set 'hospital_column: {name}' "
                         f"in the schema")
    for name in columns:  # a 'site' column that was not kept as a variable still gets its note
        if _name_key(name) in _AMBIGUOUS_HOSPITAL_NAMES and hospital is None and \
                name not in {v.name for v in variables} and name not in taken:
            notes.append(f"'{name}' is not used as the hospital column; if it names the recruiting hospital, "
                         f"set 'hospital_column: {name}' in the schema")
    if or_per is not None:
        if isinstance(or_per, str) and or_per.strip().lower() in ("sd", "iqr", "unit"):
            or_per = or_per.strip().lower()
        elif isinstance(or_per, (int, float)) and not isinstance(or_per, bool) and math.isfinite(or_per) \
                and or_per > 0:
            or_per = float(or_per)
        else:
            raise SchemaError(f"or_per must be sd, iqr, unit or a positive number, got {or_per!r}", file=source)
        variables = [replace(v, or_per=or_per) if v.type == "continuous" else v for v in variables]
    return Schema(id_column=id_column, group_column=group, group_levels=group_levels,
                  group_label=group, hospital_column=hospital, image_columns=images,
                  variables=tuple(variables), reference_group=reference, excluded=tuple(excluded),
                  notes=tuple(notes))


def _similar_levels(levels: list) -> list:
    """Pairs of levels that look like spellings of one level: an abbreviation (``irreg.`` /
    ``irregular``) or one typing slip (``smoth`` / ``smooth``, words of 5+ letters).  The
    rarer-looking (shorter) spelling comes first."""
    def bare(text):
        return re.sub(r"[^0-9a-z]+", "", text.casefold())

    def one_edit(a, b):
        if abs(len(a) - len(b)) > 1:
            return False
        if len(a) == len(b):
            diff = [i for i in range(len(a)) if a[i] != b[i]]
            return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                      and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
        short, long_ = sorted((a, b), key=len)
        return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))

    pairs = []
    for i, a in enumerate(levels):
        for b in levels[i + 1:]:
            x, y = sorted((bare(a), bare(b)), key=len)
            if not x or any(ch.isdigit() for ch in x + y):
                continue  # 'grade 1' / 'grade 10' are different levels
            if (len(x) >= 3 and y.startswith(x) and len(y) > len(x)) or (len(x) >= 5 and one_edit(x, y)):
                pairs.append((a, b) if len(bare(a)) <= len(bare(b)) else (b, a))
    return pairs


def _numeric_identifier(raw: pd.Series, numbers: list) -> str:
    """Reason text when a numeric column looks like a study number, else ''.

    Unique whole numbers, at least 10, that form a (nearly) consecutive run or increase down
    the rows: a measured quantity almost never does either.
    """
    n = len(numbers)
    if n < 10 or len(set(numbers)) != n or not all(float(x).is_integer() for x in numbers):
        return ""
    low, high = min(numbers), max(numbers)
    consecutive = high - low + 1 <= 1.1 * n + 1
    increasing = all(a < b for a, b in zip(numbers, numbers[1:]))
    if consecutive or increasing:
        return (f"identifier-like: {n} unique whole numbers {int(low)}..{int(high)}"
                f"{', increasing down the rows' if increasing else ''} (a study number?)")
    return ""


#: Numeric codes read as missing when far outside a column's other values (99, 999 ...: ten
#: times the largest other value; -9, -99 ...: the other values are all >= 0).  Not -1 or 0,
#: which are real values of many scores.
_LOCAL_CODES = (99.0, 999.0, 9999.0, 99999.0, -9.0, -99.0, -999.0, -9999.0)


def _local_missing_code(name: str, numbers: list):
    """(codes, note): sentinel values such as 999 far outside the other values of a column."""
    found = []
    for code in _LOCAL_CODES:
        hits = sum(x == code for x in numbers)
        others = [abs(x) for x in numbers if x not in _LOCAL_CODES]
        if not hits or len(others) < 5:
            continue
        if code > 0 and max(others) * 10 <= code or code < 0 and min(x for x in numbers
                                                                      if x not in _LOCAL_CODES) >= 0:
            found.append((int(code), hits))
    if not found:
        return (), ""
    listed = ", ".join(f"{c} ({n} cell{'s' if n > 1 else ''})" for c, n in found)
    return (tuple(c for c, _ in found),
            f"'{name}': {listed} read as a local missing code (far outside the other values); remove it "
            f"from the variable's missing_codes in the schema if it is a real value")


def _levels(values) -> list:
    """Distinct values (case/space variants merged, most frequent spelling kept), sorted."""
    spellings: dict[str, dict] = {}
    for v in values:
        key = _norm(v)
        if isinstance(v, str):
            v = " ".join(v.split())
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        elif isinstance(v, np.integer):
            v = int(v)
        spellings.setdefault(key, {}).setdefault(v, 0)
        spellings[key][v] += 1
    chosen = [max(c.items(), key=lambda kv: (kv[1], str(kv[0])))[0] for c in spellings.values()]
    return sorted(chosen, key=_natural_key)


# --------------------------------------------------------------------------- column roles by name

_MODALITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def image_column_map(value) -> dict:
    """Modality -> image column from ``'MODALITY=COLUMN'`` strings, pairs or a mapping.

    Parameters
    ----------
    value : None, mapping, or sequence of str / (modality, column) pairs
        E.g. ``["bmode=Bmode_file", "cdfi=Doppler_file"]`` (what ``--image-column`` collects)
        or ``{"bmode": "Bmode_file"}`` (a YAML run config).

    Returns
    -------
    dict
        ``{}`` for None. Whitespace around names is removed; the order is kept.

    Raises
    ------
    ConfigError
        An item without ``=``, an empty name, a modality name that is not a plain word
        (letters, digits, ``_ . -``: it names output folders), or one modality given twice.
    """
    from analysis.errors import ConfigError

    if value is None:
        return {}
    items = list(value.items()) if isinstance(value, Mapping) else list(value)
    out: dict = {}
    for item in items:
        if isinstance(item, str):
            modality, sep, column = item.partition("=")
            if not sep:
                raise ConfigError(f"--image-column {item!r}: expected MODALITY=COLUMN, e.g. bmode=Bmode_file")
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            modality, column = item
        else:
            raise ConfigError(f"--image-column {item!r}: expected MODALITY=COLUMN, e.g. bmode=Bmode_file")
        modality, column = str(modality).strip(), str(column).strip()
        if not modality or not column:
            raise ConfigError(f"--image-column {modality}={column}: both the modality and the column must be named")
        if not _MODALITY_NAME.match(modality):
            raise ConfigError(f"--image-column {modality}={column}: modality names are letters, digits, '_', '.' "
                              f"or '-' (they name output folders), got {modality!r}")
        if modality in out:
            raise ConfigError(f"--image-column: modality {modality!r} given twice ({out[modality]!r} and {column!r})")
        out[modality] = column
    return out


def with_columns(schema: Schema, *, id_column: str | None = None, group_column: str | None = None,
                 hospital_column: str | None = None, image_columns=None, columns=None, source=None) -> Schema:
    """The schema with its id, hospital and image columns named by the caller.

    For cohort tables whose columns are named freely (``PatientID``, ``Bmode_file`` ...):
    what is given overrides (id, hospital) or completes (images) the schema; a column that
    becomes one of these roles stops being an analysed variable.

    Parameters
    ----------
    schema : Schema
        Loaded (:func:`load_schema`) or inferred (:func:`infer_schema`).
    id_column, hospital_column : str, optional
        Patient-id and hospital columns (default: the schema's).
    group_column : str, optional
        Checked only: it must be the schema's group column, since the group levels are the
        schema's (infer a schema with this group column instead).
    image_columns : mapping or sequence, optional
        Modality -> column, in any form :func:`image_column_map` reads; added to the
        schema's image columns, replacing a modality of the same name.
    columns : sequence of str, optional
        The table's columns: when given, every named column must be one of them.
    source : str or Path, optional
        The table's file, named in errors.

    Returns
    -------
    Schema
        A new schema; ``schema`` is not modified.

    Raises
    ------
    CohortError
        A named column that the table does not have (file, column, did-you-mean).
    ConfigError
        A group column other than the schema's; one column given two roles; see
        :func:`image_column_map`.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"PatientID": ["a", "b", "c", "d"], "Diagnosis": ["x", "y", "x", "y"],
    ...                    "Age": [50, 61, 42, 70], "Bmode_file": ["a.png", "b.png", "c.png", "d.png"]})
    >>> schema = with_columns(infer_schema(df, "Diagnosis"), image_columns=["bmode=Bmode_file"], columns=df.columns)
    >>> schema.id_column, schema.image_columns, schema.variable_names
    ('PatientID', {'bmode': 'Bmode_file'}, ('Age',))
    """
    from dataclasses import replace

    from analysis.errors import CohortError, ConfigError

    file = None if source is None else str(source)
    images = image_column_map(image_columns)
    if group_column is not None and group_column != schema.group_column:
        raise ConfigError(f"group column '{group_column}' differs from the schema's group column "
                          f"'{schema.group_column}' (the group levels are the schema's); edit the schema, or "
                          "infer one from the table with this group column", file=file)
    named = [("id column", id_column), ("hospital column", hospital_column)]
    named += [(f"image column of modality '{m}'", c) for m, c in images.items()]
    if columns is not None:
        present = [str(c) for c in columns]
        for role, col in named:
            if col is not None and col not in present:
                raise CohortError(f"{role} '{col}' not found (columns: {', '.join(present)})"
                                  f"{did_you_mean(col, present)}", file=file, column=col)
    id_col = schema.id_column if id_column is None else id_column
    hospital = schema.hospital_column if hospital_column is None else hospital_column
    merged = {m: c for m, c in schema.image_columns.items() if m not in images}
    merged.update(images)
    roles: dict = {}
    for role, col in [("group column", schema.group_column), ("id column", id_col), ("hospital column", hospital)]:
        if col is not None:
            roles.setdefault(col, []).append(role)
    for m, col in merged.items():
        roles.setdefault(col, []).append(f"image column of modality '{m}'")
    for col, given in roles.items():
        if len(given) > 1:
            raise ConfigError(f"column '{col}' cannot be both the {' and the '.join(given)}", file=file, column=col)
    taken = set(roles)
    variables = tuple(v for v in schema.variables if v.name not in taken)
    excluded = [(c, r) for c, r in schema.excluded if c not in taken]
    for role, old, new in (("id", schema.id_column, id_col), ("hospital", schema.hospital_column, hospital)):
        if old is not None and old != new and old not in taken:  # the former column stays accounted for
            excluded.append((old, f"was the schema's {role} column; '{new}' was named instead"))
    return replace(schema, id_column=id_col, hospital_column=hospital, image_columns=merged, variables=variables,
                   excluded=tuple(excluded))
