"""Missingness-aware, patient-level train/validation/test splits (paper §3.1.1).

The stratum of a stay is its modality-presence combination. A patient is
split as one unit, stratified by the combination of their first stay; stays
without a patient id ("orphans") are units of their own. Strata with too few
units to give every split a share are pooled together, and counted.

A reader may bring the dataset's own split instead (column `GIVEN_SPLIT`: a MEDS dataset's
subject_splits): pretraining then takes it as it is (`given_split`), and a task cohort keeps its
test stays as its test split and splits the others into train and validation the usual way
(`split_around_test`), so no stay the dataset holds out ever trains anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
GIVEN_SPLIT = "given_split"  # a reader's own "train" | "val" | "test" per stay


@dataclass(frozen=True)
class SplitReport:
    strata: int
    pooled_strata: int
    units: dict[str, int]  # patients + orphan stays per split
    stays: dict[str, int]


def presence_combination(stays: pd.DataFrame, presence_columns: list[str]) -> pd.Series:
    """'10110'-style code of which modalities a stay has, in `presence_columns` order (a column at a
    time: a row-wise join is a Python call per stay, 1.5 s per 20,000 stays)."""
    code = pd.Series("", index=stays.index, dtype=str)
    for column in presence_columns:
        code = code + np.where(stays[column].astype(bool).to_numpy(), "1", "0")
    return code


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


def _report(stays: pd.DataFrame, split: pd.Series, patient_column: str, strata: int, pooled: int) -> SplitReport:
    unit = stays[patient_column].astype("string").fillna("stay:" + stays["stay_id"].astype(str))
    return SplitReport(strata=strata, pooled_strata=pooled,
                       units={s: int(unit[split == s].nunique()) for s in SPLITS},
                       stays={s: int((split == s).sum()) for s in SPLITS})


def given_split(stays: pd.DataFrame, presence_columns: list[str],
                patient_column: str = "patient_id") -> tuple[pd.Series, SplitReport]:
    """The reader's own split (`GIVEN_SPLIT`) as it is, with the report `split_stays` gives."""
    split = stays[GIVEN_SPLIT].astype(str)
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise ValueError(f"{GIVEN_SPLIT} holds {unknown}; expected {list(SPLITS)}")
    strata = int(presence_combination(stays, presence_columns).nunique())
    return split, _report(stays, split, patient_column, strata, 0)


def split_around_test(stays: pd.DataFrame, presence_columns: list[str], test: pd.Series,
                      fractions: tuple[float, float, float] = (0.70, 0.15, 0.15), seed: int = 0,
                      min_units_per_stratum: int = 10,
                      patient_column: str = "patient_id") -> tuple[pd.Series, SplitReport]:
    """`test` stays are the test split; the others are split into train and val by `split_stays`
    (their shares of `fractions` renormalised)."""
    train, val = fractions[0] / (fractions[0] + fractions[1]), fractions[1] / (fractions[0] + fractions[1])
    rest = stays[~test]
    split = pd.Series("test", index=stays.index)
    if len(rest):
        rest_split, report = split_stays(rest, presence_columns, patient_column, fractions=(train, val, 0.0),
                                         seed=seed, min_units_per_stratum=min_units_per_stratum)
        split[~test] = rest_split.replace("test", "val")  # a zero test share can still round one unit to test
    else:
        report = SplitReport(0, 0, {}, {})
    return split, _report(stays, split, patient_column, report.strata, report.pooled_strata)
