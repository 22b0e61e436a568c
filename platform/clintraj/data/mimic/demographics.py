"""The demographics modality.

demographics: admission type and location, insurance, language, marital
status, race (admissions), gender, age group (patients), raw strings, plus the
numeric age (`MimicConfig.numeric_age`), known at admission (an event at 0);
imputation / one-hot / z-score are fitted later on the training split
(`clintraj.data.features`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.config import MimicConfig
from clintraj.data.rawio import Quarantine, parse_datetime, read_table

DEMOGRAPHIC_COLUMNS = (
    "admission_type", "admission_location", "insurance", "language", "marital_status", "race", "gender", "age_group",
)


def age_groups(age: pd.Series, edges: tuple[int, ...]) -> pd.Series:
    """Years -> '18-29', ..., '80+' (and '<18' below the first edge)."""
    labels = [f"<{edges[0]}"] + [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    groups = pd.cut(age.astype("float64"), [-math.inf, *edges, math.inf], right=False, labels=labels)
    return groups.astype("string")


def read_patients(raw: Path, quarantine: Quarantine) -> pd.DataFrame:
    """patients rows indexed by subject_id: gender, anchor_age, anchor_year (NaN where not a number)
    and `row` (the file's data row). A row whose subject_id is missing or repeats an earlier row's
    is quarantined."""
    patients = read_table(raw, mt.PATIENTS.path, ["subject_id", "gender", "anchor_age", "anchor_year"])
    quarantine.count_read(mt.PATIENTS.path, len(patients))
    subject = pd.to_numeric(patients["subject_id"], errors="coerce")
    bad = subject.isna() | subject.duplicated(keep="first")
    quarantine.add(mt.PATIENTS.path, "subject_id missing, not a number or repeated", patients.index[bad])
    kept = pd.DataFrame({"gender": patients["gender"], "row": patients.index,
                         **{c: pd.to_numeric(patients[c], errors="coerce") for c in ("anchor_age", "anchor_year")}},
                        index=patients.index)[~bad]
    return kept.set_axis(subject[~bad].astype("int64"))


def demographics_table(stays: pd.DataFrame, admissions: pd.DataFrame, patients: pd.DataFrame,
                       config: MimicConfig) -> pd.DataFrame:
    """stay_id + the eight raw static features (+ age in years), for stays where any is known.
    Age = anchor_age + (admission year - anchor_year)."""
    admission = admissions.reindex(stays["hadm_id"].fillna(-1).astype("int64"))
    patient = patients.reindex(stays["subject_id"])
    year = parse_datetime(admission["admittime"]).dt.year.to_numpy()
    year = np.where(np.isnan(year), stays["intime"].dt.year.to_numpy(), year)
    age = pd.Series(patient["anchor_age"].to_numpy() + year - patient["anchor_year"].to_numpy(), index=stays.index)
    table = pd.DataFrame({"stay_id": stays["stay_id"]})
    for column in DEMOGRAPHIC_COLUMNS[:6]:
        table[column] = admission[column].to_numpy()
    table["gender"] = patient["gender"].to_numpy()
    table = table.astype({c: "string" for c in DEMOGRAPHIC_COLUMNS[:7]})
    table["age_group"] = age_groups(age, config.age_edges)
    if config.numeric_age:
        table["age"] = age.astype("float64")
    features = [c for c in table.columns if c != "stay_id"]
    return table[table[features].notna().any(axis=1)].reset_index(drop=True)
