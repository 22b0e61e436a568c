"""mimic3-benchmarks' outlier and valid bounds of the 17 variables
(`resources/variable_ranges.yaml`, copied from the benchmark's `variable_ranges.csv`).

The benchmark's rule (`remove_outliers_for_variable`): a value below its variable's outlier_low
or above its outlier_high is removed; a value between an outlier bound and the valid bound next
to it is clipped to that valid bound. The benchmark defines the rule (and its extraction script
reads the ranges file) without calling it; the MIMIC-IV reader applies it, after unit
conversion and before the GCS total is summed, to every measurement
(`measurements.load_measurements`, `MimicConfig.valid_ranges`): removed values are quarantined
by table and variable, clipped ones counted in the time series' funnel detail. One consequence
of following the benchmark's maps and bounds together: a GCS eye-opening text answer "None",
which its answer map reads as 0, is below the bound 1 and removed (MIMIC-IV charts the score in
valuenum, 1, which is read first).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
import yaml

from clintraj.data.mimic import tables as mt
from clintraj.data.rawio import Quarantine

BOUNDS = ("outlier_low", "valid_low", "valid_high", "outlier_high")


@cache
def load_ranges() -> np.ndarray:
    """(17, 4) array: each variable's outlier_low, valid_low, valid_high, outlier_high, in
    `tables.VARIABLES` order."""
    text = resources.files("clintraj").joinpath("resources/variable_ranges.yaml").read_text(encoding="utf-8")
    ranges = yaml.safe_load(text)
    if set(ranges) != set(mt.VARIABLES) or any(set(r) != set(BOUNDS) for r in ranges.values()):
        raise ValueError("resources/variable_ranges.yaml: expected the 17 variables, each with " + ", ".join(BOUNDS))
    table = np.array([[float(ranges[v][b]) for b in BOUNDS] for v in mt.VARIABLES])
    if not (np.diff(table, axis=1) >= 0).all():
        raise ValueError("resources/variable_ranges.yaml: bounds out of order")
    return table


def apply_ranges(code: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(outlier, value clipped to its valid range) per measurement (`code`: index in
    `tables.VARIABLES`)."""
    bounds = load_ranges()[code]
    outlier = (value < bounds[:, 0]) | (value > bounds[:, 3])
    return outlier, np.clip(value, bounds[:, 1], bounds[:, 2])


def within_ranges(code: np.ndarray, value: np.ndarray, row: np.ndarray, source: np.ndarray,
                  tables: tuple[str, ...], quarantine: Quarantine, detail: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, values clipped) of measurements (`row`: the data row in `tables[source]`):
    outliers quarantined by table and variable, clipped values counted in `detail` by variable."""
    outlier, clipped = apply_ranges(code, value)
    bounds = load_ranges()
    for k in np.unique(code[outlier]):
        reason = f"{mt.VARIABLES[k]} outside its outlier bounds [{bounds[k, 0]:g}, {bounds[k, 3]:g}]"
        for index, table in enumerate(tables):
            quarantine.add(table, reason, row[outlier & (code == k) & (source == index)])
    changed = ~outlier & (clipped != value)
    for k in np.unique(code[changed]):
        detail[f"{mt.VARIABLES[k]} values clipped to the valid range [{bounds[k, 1]:g}, {bounds[k, 2]:g}]"] += int(
            (changed & (code == k)).sum())
    return ~outlier, clipped
