"""eICU-CRD v2.0 raw files to the cohort, labels and six modality tables (paper appendix A.1.1, A.2.1).

Modalities: demographics (patient), diagnosis, treatment, medication (counts
over each table's frequent vocabulary), lab (per lab name, values summed per
stay, absent labs 0) and APS (apacheApsVar, continuous). Cohort: adults 18-89
with parseable age, hospital LoS from the admission and discharge offsets
within [12 h, 720 h], anchored on stays with lab results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from clintraj.data.cohort import CohortTables
from clintraj.data.rawio import Quarantine, read_table, stream_table

MODALITIES = ("demographics", "diagnosis", "treatment", "medication", "lab", "aps")

PATIENT_COLUMNS = [
    "patientunitstayid", "gender", "age", "ethnicity", "hospitaladmitoffset", "hospitaldischargeoffset",
    "hospitaldischargestatus", "unitdischargeoffset", "unittype", "unitadmitsource", "admissionheight", "admissionweight", "uniquepid",
]
DEMOGRAPHIC_CATEGORIES = ["gender", "ethnicity", "unittype", "unitadmitsource"]
DEMOGRAPHIC_NUMBERS = ["age", "admissionheight", "admissionweight"]
APS_COLUMNS = [
    "intubated", "vent", "dialysis", "eyes", "motor", "verbal", "meds", "urine", "wbc", "temperature",
    "respiratoryrate", "sodium", "heartrate", "meanbp", "ph", "hematocrit", "creatinine", "albumin",
    "pao2", "pco2", "bun", "glucose", "bilirubin", "fio2",
]
# (file, column holding the event's name, its time offset) of the three vocabulary modalities.
VOCABULARY_TABLES = {
    "diagnosis": ("diagnosis.csv.gz", "diagnosisstring", "diagnosisoffset"),
    "treatment": ("treatment.csv.gz", "treatmentstring", "treatmentoffset"),
    "medication": ("medication.csv.gz", "drugname", "drugstartoffset"),
}


@dataclass
class EicuConfig:
    min_age: int = 18
    max_age: int = 89
    min_los_hours: float = 12.0
    max_los_hours: float = 720.0
    lab_min_count: int = 10_000  # lab names with fewer results across the cohort are dropped (paper A.1.1)
    vocabulary_min_count: int = 50  # diagnosis / treatment / medication terms rarer than this are dropped
    vocabulary_max_size: int = 256
    chunk_rows: int = 1_000_000


def parse_age(age: pd.Series) -> pd.Series:
    """eICU ages are strings: '> 89' means 90 or more (read as 90), '' is unknown."""
    text = age.astype("string").str.strip()
    parsed = pd.to_numeric(text.mask(text.eq("> 89").fillna(False), "90"), errors="coerce")
    return parsed.astype("Float64")


def load_cohort(raw: Path, config: EicuConfig, quarantine: Quarantine) -> tuple[pd.DataFrame, list[dict]]:
    """Stays passing the inclusion rules (before the lab anchor), with labels, and the funnel so far."""
    patients = read_table(raw, "patient.csv.gz", PATIENT_COLUMNS, dtype={"age": "string", "uniquepid": "string"})
    funnel = [{"step": "stays in patient.csv.gz", "removed": 0, "remaining": len(patients)}]

    def keep(mask: pd.Series, step: str) -> None:
        nonlocal patients
        funnel.append({"step": step, "removed": int((~mask).sum()), "remaining": int(mask.sum())})
        patients = patients[mask]

    duplicated = patients.duplicated("patientunitstayid")
    quarantine.add("patient.csv.gz", "duplicate patientunitstayid", patients.index[duplicated])
    keep(~duplicated, "duplicate stay rows (quarantined)")
    age = parse_age(patients["age"])
    quarantine.add("patient.csv.gz", "age missing or not a number", patients.index[age.isna()])
    keep(age.notna().to_numpy(), "age missing or unparseable (quarantined)")
    age = parse_age(patients["age"])
    keep(((age >= config.min_age) & (age <= config.max_age)).to_numpy(),
         f"age outside {config.min_age}-{config.max_age}")
    los_hours = (patients["hospitaldischargeoffset"] - patients["hospitaladmitoffset"]) / 60.0
    keep(los_hours.between(config.min_los_hours, config.max_los_hours).to_numpy(),
         f"length of stay outside {config.min_los_hours:g}-{config.max_los_hours:g} h")

    status = patients["hospitaldischargestatus"]
    unknown = ~status.isin(["Alive", "Expired"])
    quarantine.add("patient.csv.gz", "hospitaldischargestatus not Alive/Expired (mortality label unknown)",
                   patients.index[unknown])
    stays = pd.DataFrame({
        "stay_id": patients["patientunitstayid"].astype("int64"),
        "patient_id": patients["uniquepid"],
        "died": status.map({"Alive": 0.0, "Expired": 1.0}).astype("Float64"),
        "los_hours": ((patients["hospitaldischargeoffset"] - patients["hospitaladmitoffset"]) / 60.0).astype(float),
        "unit_hours": patients["unitdischargeoffset"].astype(float) / 60.0,
    })
    demographics = patients[["patientunitstayid", *DEMOGRAPHIC_CATEGORIES, *DEMOGRAPHIC_NUMBERS]].rename(
        columns={"patientunitstayid": "stay_id"})
    demographics["age"] = parse_age(demographics["age"]).astype(float)
    return stays.reset_index(drop=True), funnel, demographics.reset_index(drop=True)


def lab_table(raw: Path, stay_ids: np.ndarray, config: EicuConfig,
              quarantine: Quarantine) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per stay and lab name, the sum of results (paper: duplicates summed), and the lab events.

    Streamed in chunks. Lab names with fewer than `lab_min_count` results are dropped from both.
    """
    columns = ["patientunitstayid", "labresultoffset", "labname", "labresult"]
    sums, counts, events = [], [], []
    chunks = stream_table(raw, "lab.csv.gz", columns, dtype={"labname": "string", "labresult": "string"},
                          chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="eICU lab", unit="chunk"):
        chunk = chunk[chunk["patientunitstayid"].isin(stay_ids)]
        value = pd.to_numeric(chunk["labresult"], errors="coerce")
        bad = value.isna() | ~np.isfinite(value.fillna(0.0)) | chunk["labname"].isna()
        quarantine.add("lab.csv.gz", "labresult missing or not a finite number", chunk.index[bad])
        chunk = chunk.assign(labresult=value)[~bad]
        sums.append(chunk.groupby(["patientunitstayid", "labname"])["labresult"].sum())
        counts.append(chunk.groupby("labname").size())
        events.append(chunk.assign(row=chunk.index))
    if not sums:
        return pd.DataFrame({"stay_id": pd.Series(dtype="int64")}), _events(pd.DataFrame(columns=columns + ["row"]), "labresultoffset", "labname", "labresult")
    total = pd.concat(sums).groupby(level=[0, 1]).sum()
    frequent = pd.concat(counts).groupby(level=0).sum()
    frequent = sorted(frequent[frequent >= config.lab_min_count].index)
    wide = total.unstack("labname", fill_value=0.0).reindex(columns=frequent, fill_value=0.0)
    wide.columns = [f"lab:{name}" for name in wide.columns]
    events = pd.concat(events)
    events = events[events["labname"].isin(frequent)]
    return wide.rename_axis("stay_id").reset_index(), _events(events, "labresultoffset", "labname", "labresult")


def vocabulary_table(raw: Path, modality: str, stay_ids: np.ndarray,
                     config: EicuConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts per stay of the table's frequent terms (top `vocabulary_max_size` with >= min count),
    and one event per row of a frequent term."""
    file, column, offset = VOCABULARY_TABLES[modality]
    counts, events = [], []
    for _, chunk in stream_table(raw, file, ["patientunitstayid", offset, column], dtype={column: "string"},
                                 chunk_rows=config.chunk_rows):
        chunk = chunk[chunk["patientunitstayid"].isin(stay_ids) & chunk[column].notna()]
        counts.append(chunk.groupby(["patientunitstayid", column]).size())
        events.append(chunk.assign(row=chunk.index))
    per_stay = pd.concat(counts).groupby(level=[0, 1]).sum() if counts else pd.Series(
        dtype="int64", index=pd.MultiIndex.from_arrays([[], []], names=["patientunitstayid", column]))
    frequency = per_stay.groupby(level=1).sum().sort_values(ascending=False, kind="stable")
    terms = frequency[frequency >= config.vocabulary_min_count].index[: config.vocabulary_max_size]
    wide = per_stay.unstack(column, fill_value=0).reindex(columns=sorted(terms), fill_value=0)
    wide = wide[wide.sum(axis=1) > 0] if len(terms) else wide.iloc[:0, :0]
    wide.columns = [f"{modality}:{term}" for term in wide.columns]
    events = pd.concat(events) if events else pd.DataFrame(columns=["patientunitstayid", offset, column, "row"])
    events = events[events[column].isin(terms)]
    return wide.astype("float64").rename_axis("stay_id").reset_index(), _events(events, offset, column, None)


def _events(frame: pd.DataFrame, offset: str, name: str, value: str | None) -> pd.DataFrame:
    """Timeline rows: stay_id, time_hours (from unit admission), name, value, raw row index."""
    return pd.DataFrame({
        "stay_id": frame["patientunitstayid"].astype("int64"),
        "time_hours": frame[offset].astype(float) / 60.0,
        "name": frame[name].astype("string"),
        "value": frame[value].astype(float) if value else 1.0,
        "row": frame["row"].astype("int64"),
    }).reset_index(drop=True)


def timeline(events: pd.DataFrame, stays: pd.DataFrame, table: str, quarantine: Quarantine) -> pd.DataFrame:
    """Events of cohort stays inside the unit stay [0, unit discharge], time-sorted; others quarantined."""
    end = events["stay_id"].map(stays.set_index("stay_id")["unit_hours"])
    events = events[end.notna()]
    end = end[end.notna()]
    outside = (events["time_hours"] < 0) | (events["time_hours"] > end)
    quarantine.add(table, "event time outside the unit stay (timeline only)", events.loc[outside, "row"])
    events = events[~outside].sort_values(["stay_id", "time_hours", "row"], kind="stable")
    return events.drop(columns="row").reset_index(drop=True)


def aps_table(raw: Path, stay_ids: np.ndarray, quarantine: Quarantine) -> pd.DataFrame:
    aps = read_table(raw, "apacheApsVar.csv.gz", ["patientunitstayid", *APS_COLUMNS])
    duplicated = aps.duplicated("patientunitstayid", keep="first")
    quarantine.add("apacheApsVar.csv.gz", "second row for a stay", aps.index[duplicated])
    aps = aps[~duplicated & aps["patientunitstayid"].isin(stay_ids)]
    aps = aps.rename(columns={"patientunitstayid": "stay_id", **{c: f"aps:{c}" for c in APS_COLUMNS}})
    return aps.astype({c: "float64" for c in aps.columns if c != "stay_id"}).reset_index(drop=True)


def build(raw: Path, config: EicuConfig | None = None) -> CohortTables:
    """Cohort, labels, modality tables and event timelines of one raw eICU folder."""
    config = config or EicuConfig()
    quarantine = Quarantine()
    stays, funnel, demographics = load_cohort(Path(raw), config, quarantine)
    ids = stays["stay_id"].to_numpy()
    modalities, events = {}, {}
    modalities["lab"], events["lab"] = lab_table(raw, ids, config, quarantine)
    for name in VOCABULARY_TABLES:
        modalities[name], events[name] = vocabulary_table(raw, name, ids, config)
    modalities["aps"] = aps_table(raw, ids, quarantine)
    modalities["demographics"] = demographics

    with_lab = stays["stay_id"].isin(modalities["lab"]["stay_id"])
    funnel.append({"step": "no lab results (cohort anchored on lab)", "removed": int((~with_lab).sum()),
                   "remaining": int(with_lab.sum())})
    stays = stays[with_lab].sort_values("stay_id", kind="stable").reset_index(drop=True)
    modalities = {name: modalities[name][modalities[name]["stay_id"].isin(stays["stay_id"])]
                  .sort_values("stay_id", kind="stable").reset_index(drop=True) for name in MODALITIES}
    for name, table in modalities.items():
        stays[f"has_{name}"] = stays["stay_id"].isin(table["stay_id"])
    files = {"lab": "lab.csv.gz", **{name: spec[0] for name, spec in VOCABULARY_TABLES.items()}}
    events = {name: timeline(events[name], stays, files[name], quarantine) for name in events}
    for name in ("demographics", "aps"):  # static at admission: offset 0 (paper §3.3.2)
        present = modalities[name]["stay_id"]
        events[name] = pd.DataFrame({"stay_id": present, "time_hours": 0.0, "name": name, "value": 1.0})
    return CohortTables(MODALITIES, stays, modalities, funnel, quarantine,
                        events={name: events[name] for name in MODALITIES}, label_columns=("died", "los_hours"))
