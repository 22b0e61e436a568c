"""Missingness-aware, patient-level train/validation/test splits (paper §3.1.1).

The stratum of a stay is its modality-presence combination. A patient is
split as one unit, stratified by the combination of their first stay; stays
without a patient id ("orphans") are units of their own. Strata with too few
units to give every split a share are pooled together, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitReport:
    strata: int
    pooled_strata: int
    units: dict[str, int]  # patients + orphan stays per split
    stays: dict[str, int]


def presence_combination(stays: pd.DataFrame, presence_columns: list[str]) -> pd.Series:
    """'10110'-style code of which modalities a stay has, in `presence_columns` order."""
    bits = stays[presence_columns].astype(bool).astype(int).astype(str)
    return bits.agg("".join, axis=1) if len(stays) else pd.Series([], dtype=str, index=stays.index)


def split_stays(
    stays: pd.DataFrame,
    presence_columns: list[str],
    patient_column: str = "patient_id",
    order_column: str = "stay_id",
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    seed: int = 0,
    min_units_per_stratum: int = 10,
) -> tuple[pd.Series, SplitReport]:
    """A 'train' | 'val' | 'test' label per stay (index aligned with `stays`) and a report."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    combination = presence_combination(stays, presence_columns)
    has_patient = stays[patient_column].notna()
    unit = pd.Series("stay:" + stays[order_column].astype(str), index=stays.index)
    unit[has_patient] = "patient:" + stays.loc[has_patient, patient_column].astype(str)

    ordered = stays.assign(_unit=unit, _combination=combination).sort_values([order_column], kind="stable")
    unit_stratum = ordered.groupby("_unit", sort=True)["_combination"].first()
    sizes = unit_stratum.value_counts()
    small = sizes[sizes < min_units_per_stratum].index
    unit_stratum = unit_stratum.where(~unit_stratum.isin(small), "pooled")

    rng = np.random.default_rng(seed)
    unit_split = {}
    for stratum in sorted(unit_stratum.unique()):
        units = unit_stratum.index[unit_stratum == stratum].to_numpy()
        units = units[rng.permutation(len(units))]
        n_train = int(round(fractions[0] * len(units)))
        n_val = int(round(fractions[1] * len(units)))
        for position, name in enumerate(units):
            unit_split[name] = "train" if position < n_train else "val" if position < n_train + n_val else "test"
    split = unit.map(unit_split)
    report = SplitReport(
        strata=int(len(sizes)),
        pooled_strata=int(len(small)),
        units={s: int(sum(v == s for v in unit_split.values())) for s in SPLITS},
        stays={s: int((split == s).sum()) for s in SPLITS},
    )
    return split, report
