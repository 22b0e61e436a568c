"""eICU-CRD v2.0 raw files to the cohort, labels and six modalities as events (paper appendix
A.1.1, A.2.1).

Modalities: demographics (patient; known at unit admission), diagnosis, treatment and medication
(one event per row, the term at its offset), lab (one event per result of a frequent lab name)
and APS (apacheApsVar: the worst values of the first 24 h of the unit stay, so known at 24 h;
`aps_available_hours`). Times are hours from unit admission: negative before it, beyond
`unit_hours` after unit discharge. Which events a task sees is decided later, by its window
(`data.windows`); the per-stay tables are aggregations of the events (`data.modalities`).

Cohort: adults 18-89 with parseable age, hospital LoS from the admission and discharge offsets
within [12 h, 720 h], anchored on stays with results of a frequent lab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from clintraj.data.cohort import CohortTables
from clintraj.data.modalities import Modality, TermRule
from clintraj.data.rawio import Quarantine, read_table, stream_table

MODALITIES = (
    Modality("demographics", "static"), Modality("diagnosis", "terms"), Modality("treatment", "terms"),
    Modality("medication", "terms"), Modality("lab", "values"), Modality("aps", "static"),
)

PATIENT_COLUMNS = [
    "patientunitstayid", "gender", "age", "ethnicity", "hospitaladmitoffset", "hospitaldischargeoffset",
    "hospitaldischargestatus", "unitdischargeoffset", "unittype", "unitadmitsource", "admissionheight", "admissionweight", "uniquepid",
]
# The paper's eICU demographics (appendix A.1.2); "extended" adds what the patient table also knows.
DEMOGRAPHICS = {
    "paper": (["gender", "ethnicity"], ["age"]),
    "extended": (["gender", "ethnicity", "unittype", "unitadmitsource"], ["age", "admissionheight", "admissionweight"]),
}
APS_COLUMNS = [
    "intubated", "vent", "dialysis", "eyes", "motor", "verbal", "meds", "urine", "wbc", "temperature",
    "respiratoryrate", "sodium", "heartrate", "meanbp", "ph", "hematocrit", "creatinine", "albumin",
    "pao2", "pco2", "bun", "glucose", "bilirubin", "fio2",
]
# (file, column holding the event's name, its time offset) of the three term modalities.
TERM_TABLES = {
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
    lab_min_count: int = 10_000  # lab names with fewer results across the cohort are dropped (paper A.1.3)
    # diagnosis / treatment / medication terms: the paper's rule (A.1.4), fitted on the training split
    terms: TermRule = field(default_factory=TermRule)
    demographics: Literal["paper", "extended"] = "paper"
    aps_available_hours: float | None = 24.0  # APACHE APS values are known then; None: at admission (the paper's)
    chunk_rows: int = 1_000_000


def parse_age(age: pd.Series) -> pd.Series:
    """eICU ages are strings: '> 89' means 90 or more (read as 90), '' is unknown."""
    text = age.astype("string").str.strip()
    parsed = pd.to_numeric(text.mask(text.eq("> 89").fillna(False), "90"), errors="coerce")
    return parsed.astype("Float64")


def load_cohort(raw: Path, config: EicuConfig,
                quarantine: Quarantine) -> tuple[pd.DataFrame, list[dict], pd.DataFrame]:
    """Stays passing the inclusion rules (before the lab anchor) with labels, the funnel so far, and
    the demographics table."""
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
    categories, numbers = DEMOGRAPHICS[config.demographics]
    demographics = patients[["patientunitstayid", *categories, *numbers]].rename(
        columns={"patientunitstayid": "stay_id"})
    demographics["age"] = parse_age(demographics["age"]).astype(float)
    return stays.reset_index(drop=True), funnel, demographics.reset_index(drop=True)


def lab_events(raw: Path, stay_ids: np.ndarray, config: EicuConfig, quarantine: Quarantine) -> pd.DataFrame:
    """One event per numeric result of a lab name with at least `lab_min_count` results across the
    cohort (streamed in chunks)."""
    columns = ["patientunitstayid", "labresultoffset", "labname", "labresult"]
    counts, events = [], []
    chunks = stream_table(raw, "lab.csv.gz", columns, dtype={"labname": "string", "labresult": "string"},
                          chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="eICU lab", unit="chunk"):
        chunk = chunk[chunk["patientunitstayid"].isin(stay_ids)]
        value = pd.to_numeric(chunk["labresult"], errors="coerce")
        bad = value.isna() | ~np.isfinite(value.fillna(0.0)) | chunk["labname"].isna()
        quarantine.add("lab.csv.gz", "labresult missing or not a finite number", chunk.index[bad])
        chunk = chunk.assign(labresult=value)[~bad]
        counts.append(chunk.groupby("labname").size())
        events.append(chunk.assign(row=chunk.index))
    if not events:
        return _events(pd.DataFrame(columns=columns + ["row"]), "labresultoffset", "labname", "labresult")
    frequent = pd.concat(counts).groupby(level=0).sum()
    frequent = frequent[frequent >= config.lab_min_count].index
    events = pd.concat(events)
    return _events(events[events["labname"].isin(frequent)], "labresultoffset", "labname", "labresult")


def term_events(raw: Path, modality: str, stay_ids: np.ndarray, config: EicuConfig,
                quarantine: Quarantine) -> pd.DataFrame:
    """One event per row of the table naming a term; rows with a blank term are quarantined."""
    file, column, offset = TERM_TABLES[modality]
    events = []
    for _, chunk in stream_table(raw, file, ["patientunitstayid", offset, column], dtype={column: "string"},
                                 chunk_rows=config.chunk_rows):
        chunk = chunk[chunk["patientunitstayid"].isin(stay_ids)]
        blank = chunk[column].isna()
        quarantine.add(file, f"{column} blank", chunk.index[blank])
        chunk = chunk[~blank]
        events.append(chunk.assign(row=chunk.index))
    events = pd.concat(events) if events else pd.DataFrame(columns=["patientunitstayid", offset, column, "row"])
    return _events(events, offset, column, None)


def _events(frame: pd.DataFrame, offset: str, name: str, value: str | None) -> pd.DataFrame:
    """Timeline rows: stay_id, time_hours (from unit admission), name, value, raw row index."""
    return pd.DataFrame({
        "stay_id": frame["patientunitstayid"].astype("int64"),
        "time_hours": frame[offset].astype(float) / 60.0,
        "name": frame[name].astype("string"),
        "value": frame[value].astype(float) if value else 1.0,
        "row": frame["row"].astype("int64"),
    }).reset_index(drop=True)


def aps_table(raw: Path, stay_ids: np.ndarray, quarantine: Quarantine) -> pd.DataFrame:
    aps = read_table(raw, "apacheApsVar.csv.gz", ["patientunitstayid", *APS_COLUMNS])
    duplicated = aps.duplicated("patientunitstayid", keep="first")
    quarantine.add("apacheApsVar.csv.gz", "second row for a stay", aps.index[duplicated])
    aps = aps[~duplicated & aps["patientunitstayid"].isin(stay_ids)]
    aps = aps.rename(columns={"patientunitstayid": "stay_id", **{c: f"aps:{c}" for c in APS_COLUMNS}})
    return aps.astype({c: "float64" for c in aps.columns if c != "stay_id"}).reset_index(drop=True)


def build(raw: Path, config: EicuConfig | None = None) -> CohortTables:
    """Cohort, labels and the events of every modality of one raw eICU folder."""
    config = config or EicuConfig()
    quarantine = Quarantine()
    raw = Path(raw)
    stays, funnel, demographics = load_cohort(raw, config, quarantine)
    ids = stays["stay_id"].to_numpy()
    events = {"lab": lab_events(raw, ids, config, quarantine)}
    for name in TERM_TABLES:
        events[name] = term_events(raw, name, ids, config, quarantine)
    static = {"demographics": demographics, "aps": aps_table(raw, ids, quarantine)}

    with_lab = stays["stay_id"].isin(events["lab"]["stay_id"])
    funnel.append({"step": "no lab results (cohort anchored on lab)", "removed": int((~with_lab).sum()),
                   "remaining": int(with_lab.sum())})
    stays = stays[with_lab].sort_values("stay_id", kind="stable").reset_index(drop=True)
    cohort = stays["stay_id"]
    static = {name: table[table["stay_id"].isin(cohort)].sort_values("stay_id", kind="stable").reset_index(drop=True)
              for name, table in static.items()}
    known = {"demographics": 0.0, "aps": config.aps_available_hours or 0.0}
    for name, table in static.items():  # one event each, when the values become known
        events[name] = pd.DataFrame({"stay_id": table["stay_id"], "time_hours": known[name]})
    events = {name: _sorted(events[name], cohort) for name in events}
    return CohortTables(MODALITIES, stays, events, static, funnel, quarantine, label_columns=("died", "los_hours"))


def _sorted(events: pd.DataFrame, cohort: pd.Series) -> pd.DataFrame:
    events = events[events["stay_id"].isin(cohort)]
    order = ["stay_id", "time_hours", *(["row"] if "row" in events else [])]
    return events.sort_values(order, kind="stable").reset_index(drop=True)
