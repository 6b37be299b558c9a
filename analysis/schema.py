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
from dataclasses import dataclass, field
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
DEFAULT_MISSING_CODES: tuple = ("", "NA", "N/A", "NaN", "null", "none", "missing", "unknown",
                                "not done", ".", "-", "?", -99, -999)


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

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)
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

    def __post_init__(self):
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
        return out

    def to_yaml(self, path) -> Path:
        """Write the schema as YAML that :func:`load_schema` reads back to an equal Schema."""
        path = Path(path)
        text = ("# Cohort schema written by analysis.schema.Schema.to_yaml.\n"
                "# Field meanings: see cohort_schema.yaml in the lymphnode-toolkit repository.\n")
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
             "schema_version", "title")
_GROUP_KEYS = ("column", "label", "levels", "reference", "ordered")
_VARIABLE_KEYS = ("name", "label", "type", "levels", "missing_codes", "unit", "min", "max", "multivariable",
                  "test", "summary", "description", "or_per")


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
            multivariable=ck.flag(item, "multivariable", where, default=True), or_per=or_per))

    taken = {c: "id_column" for c in [id_column] if c}
    for key, col in (("group column", group_column), ("hospital_column", hospital_column)):
        if col and col in taken:
            ck.fail(key, f"column '{col}' is also used as {taken[col]}")
        if col:
            taken[col] = key
    for var in variables:
        if var.name in taken:
            ck.fail(f"variables '{var.name}'", f"column '{var.name}' is also used as {taken[var.name]}")
    return Schema(id_column=id_column, group_column=group_column, group_levels=group_levels,
                  group_label=group_label, hospital_column=hospital_column,
                  image_columns=image_columns, variables=tuple(variables),
                  reference_group=reference or group_levels[-1], missing_codes=missing_codes,
                  group_ordered=group_ordered)


# --------------------------------------------------------------------------- inference

_ID_NAMES = ("patient_id", "id", "subject_id", "case_id", "patient", "subject", "record_id")
_HOSPITAL_NAMES = ("hospital", "centre", "center", "site", "institution")
_CONTROL_NAMES = ("benign", "control", "controls", "normal", "healthy", "negative", "reactive")


def _natural_key(value):
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    parts = re.split(r"(\d+)", str(value).casefold())
    return (1, 0.0, tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts))


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
                     "image_id", "accession"}


def _looks_like_identifier(name: str) -> bool:
    """Column names that hold identifiers, never variables (``Case``, ``MRN``, ``study_id``...)."""
    key = "_".join(str(name).casefold().split())
    return key in _IDENTIFIER_NAMES or key.endswith("_id")


def infer_schema(df: pd.DataFrame, group: str, id_column: str | None = None) -> Schema:
    """Guess a schema from a table, for cohorts that have no YAML schema yet.

    Parameters
    ----------
    df : DataFrame
        The cohort table (e.g. from :func:`analysis.readers.read_table`); not modified.
    group : str
        Column holding the groups to compare.
    id_column : str, optional
        Patient identifier column; default: a column named like ``patient_id``/``id``
        whose values are unique, else none.

    Returns
    -------
    Schema
        Types are guessed per column after removing missing codes: two distinct values ->
        binary; numbers that are all whole and take 3-7 values between 0 and 10 ->
        ordinal; other numbers (or columns at least 90 % numeric) -> continuous; text ->
        categorical.  Levels are sorted naturally (numbers by value, ``'grade 2'`` before
        ``'grade 10'``); case and spacing variants of one level are merged.  A column
        named ``hospital``/``centre``/``site`` becomes the hospital column and columns
        named ``image_<modality>`` the image columns.  Text columns with more than 20
        values, most of them unique (free text, second identifiers), columns named like
        identifiers (``Case``, ``MRN``, ``patient``, ``*_id``) and constant text
        columns are not made variables; :func:`analysis.cohort.validate_cohort` lists them in ``Cohort.notes``.
        The reference group is a level named like ``benign``/``control``/``normal`` if
        there is one, else the first level.  Write the result with :meth:`Schema.to_yaml`,
        check it, and load it with :func:`load_schema` next time.

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
    codes = {normalize_value(c) for c in DEFAULT_MISSING_CODES}

    def present(series):
        return [v for v in series.tolist() if normalize_value(v) not in codes and normalize_value(v) is not None]

    if id_column is not None and id_column not in columns:
        raise SchemaError(f"id column '{id_column}' not found{did_you_mean(id_column, columns)}",
                          file=source, column=id_column)
    if id_column is None:
        for name in columns:
            if name.casefold() in _ID_NAMES and name != group:
                values = present(df[name])
                if values and len({normalize_value(v) for v in values}) == len(values):
                    id_column = name
                    break

    group_levels = _levels(present(df[group]))
    if len(group_levels) < 2:
        raise SchemaError(f"group column '{group}' has {len(group_levels)} distinct value(s); "
                          f"at least two groups are needed", file=source, column=group)
    group_levels = tuple(str(g) for g in group_levels)
    reference = next((g for g in group_levels if g.casefold() in _CONTROL_NAMES), group_levels[0])

    hospital = next((c for c in columns if c.casefold() in _HOSPITAL_NAMES and c not in (group, id_column)), None)
    images = {c[len("image_"):]: c for c in columns if c.casefold().startswith("image_")}
    taken = {group, id_column, hospital, *images.values()}

    variables = []
    for name in columns:
        if name in taken or _looks_like_identifier(name):
            continue  # identifiers (a second id, a case number) are not compared between groups
        values = present(df[name])
        numbers = [_as_number(v) for v in values]
        n_numeric = sum(x is not None for x in numbers)
        levels = _levels(values)
        if values and n_numeric == len(values):
            nums = sorted({x for x in numbers})
            whole = all(float(x).is_integer() for x in nums)
            if len(nums) == 2:
                lv = tuple(int(x) if whole else x for x in nums)
                variables.append(Variable(name=name, type="binary", levels=lv))
            elif whole and 3 <= len(nums) <= 7 and nums[0] >= 0 and nums[-1] <= 10:
                variables.append(Variable(name=name, type="ordinal", levels=tuple(int(x) for x in nums)))
            else:
                variables.append(Variable(name=name, type="continuous"))
        elif not values or n_numeric >= 0.9 * len(values):
            variables.append(Variable(name=name, type="continuous"))
        elif len(levels) > 20 and len(levels) > 0.5 * len(values):
            continue  # free text or an identifier: not a variable
        elif len(levels) == 2:
            variables.append(Variable(name=name, type="binary", levels=tuple(str(x) for x in levels)))
        elif len(levels) == 1:
            continue  # a constant text column cannot be compared between groups
        else:
            variables.append(Variable(name=name, type="categorical", levels=tuple(str(x) for x in levels)))
    return Schema(id_column=id_column, group_column=group, group_levels=group_levels,
                  group_label=group, hospital_column=hospital, image_columns=images,
                  variables=tuple(variables), reference_group=reference)


def _levels(values) -> list:
    """Distinct values (case/space variants merged, most frequent spelling kept), sorted."""
    spellings: dict[str, dict] = {}
    for v in values:
        key = normalize_value(v)
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
