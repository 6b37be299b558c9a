"""Internal helpers: turn user group samples into clean float arrays (missing dropped).

Convention for ``location``, ``effect_sizes`` (``epsilon_squared``, ``eta_squared``) and
``selection``: groups are given as a sequence of 1-D array-likes, one per group, in group
order (``[metastatic_values, lymphoma_values, benign_values]``).  A mapping
``{group_name: values}`` is accepted too and keeps its insertion order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from .errors import CohortError


@dataclass(frozen=True)
class CleanSamples:
    arrays: tuple          # float arrays, NaN removed, empty groups kept (length 0)
    names: tuple           # group names (str)
    missing: tuple         # values dropped as missing, per group

    @property
    def n_missing(self) -> int:
        """Values dropped as missing, all groups together."""
        return int(sum(self.missing))

    @property
    def sizes(self) -> np.ndarray:
        return np.array([a.size for a in self.arrays], dtype=int)

    @property
    def nonempty(self) -> tuple:
        return tuple(a for a in self.arrays if a.size > 0)

    @property
    def n_used(self) -> int:
        return int(self.sizes.sum())


def default_levels(values, full=None) -> list:
    """Level order when none is given: the categories of a categorical ``full`` (default:
    ``values``), else the distinct ``values`` sorted (first-seen order if they cannot be sorted).

    ``values`` holds the non-missing observations; ``full`` is the column they came from.
    """
    full = values if full is None else full
    if isinstance(getattr(full, "dtype", None), pd.CategoricalDtype):
        return list(full.categories if isinstance(full, pd.Categorical) else full.cat.categories)
    distinct = pd.unique(values)
    try:
        return sorted(distinct)
    except TypeError:
        return list(distinct)


def clean_samples(samples, names=None, variable=None) -> CleanSamples:
    """Validate ``samples`` and drop missing values (NaN/None/pd.NA), never mutating input."""
    if isinstance(samples, Mapping):
        names = list(samples.keys()) if names is None else names
        samples = list(samples.values())
    if isinstance(samples, (str, bytes, pd.DataFrame)) or not hasattr(samples, "__iter__"):
        raise CohortError(f"expected a list of 1-D arrays (one per group), got {type(samples).__name__}",
                          column=variable)
    samples = list(samples)
    if names is None:
        names = [str(i) for i in range(len(samples))]
    names = [str(n) for n in names]
    if len(names) != len(samples):
        raise CohortError(f"got {len(samples)} groups but {len(names)} group names", column=variable)
    arrays, missing = [], []
    for name, s in zip(names, samples):
        ser = pd.Series(s.to_numpy(dtype=object) if isinstance(s, pd.Series)
                        else np.asarray(s, dtype=object).reshape(-1))
        num = pd.to_numeric(ser, errors="coerce")
        bad = num.isna() & ser.notna()
        if bad.any():
            value = ser[bad].iloc[0]
            raise CohortError(f"group '{name}' holds a non-numeric value {value!r} (expected numbers)",
                              column=variable)
        arr = num.to_numpy(dtype=float)
        if np.isinf(arr).any():
            raise CohortError(f"group '{name}' holds an infinite value (expected finite numbers)",
                              column=variable)
        keep = ~np.isnan(arr)
        missing.append(int((~keep).sum()))
        arrays.append(arr[keep].copy())
    return CleanSamples(tuple(arrays), tuple(names), tuple(missing))
