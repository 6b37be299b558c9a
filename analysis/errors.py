"""Error and warning classes shared by ``analysis`` and ``fusion``.

Every problem with user input is raised as a :class:`CohortError` (a ``ValueError``)
whose message is one line that names the file, the spreadsheet row (1-based, header
counted, as Excel shows it) and the column, then what was expected.  CLIs catch
:class:`CohortError` and print ``error: <message>`` without a traceback.
"""
from __future__ import annotations

import difflib
import sys
import warnings
from typing import Iterable, Sequence

__all__ = [
    "CohortError",
    "SchemaError",
    "CohortValidationError",
    "ImageError",
    "ConfigError",
    "AnalysisWarning",
    "ExactTestFallbackWarning",
    "SeparationWarning",
    "UndefinedMetricWarning",
    "did_you_mean",
    "format_location",
    "require_columns",
    "check_ci_level",
    "plain_warnings",
    "run_cli",
]


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def plain_warnings() -> None:
    """Show warnings as one line, ``warning: <message>``, without the source file and line.

    For command-line entry points (called at the start of their ``main``): a clinician
    reading the terminal needs the message, not ``/path/to/module.py:316: AnalysisWarning``
    and the line of code that raised it.
    """
    warnings.formatwarning = _one_line_warning


def run_cli(work) -> int:
    """Run a command-line tool's ``work()`` the way every CLI of the toolkit reports.

    Warnings print as one line (:func:`plain_warnings`); a :class:`CohortError` prints
    ``error: <message>`` and gives exit status 2, never a traceback; the files ``work``
    returns (if any) are listed as ``wrote: a, b``; exit status 0.
    """
    plain_warnings()
    try:
        written = work()
    except CohortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if written:
        print("wrote: " + ", ".join(str(p) for p in written))
    return 0


def format_location(file=None, row=None, column=None) -> str:
    """``'cohort.xlsx: row 14, column 'margin''`` from whichever parts are known."""
    parts = []
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column '{column}'")
    where = ", ".join(parts)
    if file is not None:
        return f"{file}: {where}" if where else str(file)
    return where


def did_you_mean(value, choices: Iterable[str]) -> str:
    """``" (did you mean 'irregular'?)"`` when a close match exists, else ``""``."""
    choices = [str(c) for c in choices]
    match = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in choices}
        if str(value).lower().strip() in lowered:
            match = [lowered[str(value).lower().strip()]]
    return f"; did you mean '{match[0]}'?" if match else ""


def require_columns(frame, needed, what: str, *, file=None) -> None:
    """Raise one located :class:`CohortError` unless ``frame`` is a DataFrame with ``needed``.

    The message names the first missing column (``column=``), lists what is expected and
    suggests a close name; ``what`` names the table (e.g. ``'predictions'``).
    """
    if not hasattr(frame, "columns") or not hasattr(frame, "iloc"):
        raise CohortError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}", file=file)
    present = [str(c) for c in frame.columns]
    for col in needed:
        if col not in present:
            raise CohortError(f"missing column: {what} has no column '{col}' (expected: "
                              f"{', '.join(needed)}){did_you_mean(col, present)}", file=file, column=col)


def check_ci_level(ci) -> None:
    """Raise :class:`CohortError` unless ``ci`` is a confidence level strictly between 0 and 1."""
    if not (isinstance(ci, (int, float)) and 0 < ci < 1):
        raise CohortError(f"ci must be a confidence level strictly between 0 and 1, got {ci!r}")


class CohortError(ValueError):
    """A problem with user input, located by ``file``, ``row`` and ``column``.

    ``str(err)`` is one line: ``"<file>: row <row>, column '<column>': <message>"``.
    """

    def __init__(self, message: str, *, file=None, row=None, column=None):
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        where = format_location(self.file, row, column)
        super().__init__(f"{where}: {message}" if where else message)


class SchemaError(CohortError):
    """The schema YAML is malformed (unknown key, bad type, missing field)."""


class CohortValidationError(CohortError):
    """A cohort file breaks its schema; ``problems`` holds every :class:`CohortError` found.

    The message shows the first few problems (one per line) and the total count.
    """

    def __init__(self, problems: Sequence[CohortError], *, file=None, max_shown: int = 10):
        self.problems = list(problems)
        shown = [str(p) for p in self.problems[:max_shown]]
        more = len(self.problems) - len(shown)
        text = "; ".join(shown) if len(shown) == 1 else "\n  " + "\n  ".join(shown)
        summary = f"{len(self.problems)} problem(s) in cohort" + (f" ({more} more not shown)" if more > 0 else "")
        ValueError.__init__(self, f"{summary}: {text}")
        self.message = summary
        self.file = None if file is None else str(file)
        self.row = self.problems[0].row if self.problems else None
        self.column = self.problems[0].column if self.problems else None


class ImageError(CohortError):
    """An image is missing, unreadable or of an unsupported mode (names patient, modality, path)."""


class ConfigError(CohortError):
    """A run configuration or command-line combination is invalid."""


class AnalysisWarning(UserWarning):
    """Base class of the toolkit's warnings."""


class ExactTestFallbackWarning(AnalysisWarning):
    """An exact test exceeded its time budget and a seeded Monte Carlo estimate was used."""


class SeparationWarning(AnalysisWarning):
    """A regression model shows (quasi-)complete separation; estimates are unreliable."""


class UndefinedMetricWarning(AnalysisWarning):
    """A metric is undefined on this sample (e.g. AUC with one class); NaN is reported."""
