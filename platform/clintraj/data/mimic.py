"""MIMIC-IV v2.2 (+ MIMIC-CXR-JPG 2.0.0, MIMIC-IV-Note 2.2) raw files to the cohort,
labels and five modality tables (paper appendix A.1, A.2).

Layout: `raw` holds `hosp/` and `icu/`; `cxr` is the MIMIC-CXR-JPG root
(`mimic-cxr-2.0.0-metadata.csv.gz`, `files/`); `notes` is the MIMIC-IV-Note root
(`note/discharge.csv.gz`, `note/radiology.csv.gz`). `cxr` / `notes` may be None:
that modality is then absent for every stay, and the funnel says so.

Cohort: the ICU stays of `icu/icustays` with a valid stay_id and intime < outtime,
kept when they have at least one modality. Everything per stay is computed on
all stays first; the last funnel step drops the stays with none.

* time_series: the 17 mimic3-benchmarks variables from `icu/chartevents` (and
  glucose / O2 saturation / pH from `hosp/labevents`), charted inside
  [intime, outtime], in 1-hour bins from intime. A bin's value is the mean of its
  measurements (categorical variables: the last one). Carry-forward within the
  stay; a variable not yet measured (before its first value, or never) takes its
  mimic3-benchmarks normal value (`mimic_tables.NORMAL_VALUES`). Units: F -> C,
  lb -> kg, in -> cm; FiO2 in percent -> fraction and O2 saturation as a
  fraction -> percent, as mimic3-benchmarks' preprocessing does. GCS: MIMIC-IV
  keeps the score in valuenum (used first; the text answer through
  `GCS_TEXT_TO_NUMERIC` when valuenum is blank); the total is the sum of eye,
  verbal and motor when the three are charted at the same time.
* cxr: the paper's join of the CXR metadata and icustays on subject_id; an image
  counts for a stay when StudyDate+StudyTime is strictly inside (intime, outtime)
  and ViewPosition is AP; the most recent one is the stay's image.
* discharge_note / radiology_note: notes of the stay's admission (subject_id,
  hadm_id): cleaned (`clean_note_text`), unique texts concatenated in charttime
  order. Several ICU stays of one admission share its notes. A note's event time
  is charttime - intime: it may be negative (charted before the ICU stay) or
  beyond outtime (discharge summaries are charted at discharge); notes are not
  clipped to the stay.
* demographics: admission type and location, insurance, language, marital
  status, race (admissions), gender, age group (patients), raw strings, plus the
  numeric age (`MimicConfig.numeric_age`); imputation / one-hot / z-score are
  fitted later on the training split (`clintraj.data.features`).

Labels: `died` (admissions.hospital_expire_flag) and the 25 phenotypes
`pheno:<name>` from the admission's ICD-9 / ICD-10 codes
(`resources/phenotypes.yaml`); NA when the admission has no row to read them from.

Outputs (sorted by stay_id): `stays` has stay_id, patient_id (subject_id as
text), hadm_id, intime (a date: for internal use only, never logged), the labels
and has_<modality>. `modalities["time_series"]` holds `ts:<variable>:<stat>`
(mean, min, max, last, measured_share over the stay's event bins, after
imputation); `events["time_series"]` one row per bin with a measurement
(time_hours = bin start, the 17 imputed values, `mask:<variable>`). Summaries
over the whole stay see its end (and discharge notes state the outcome): set
`max_hours` for a prediction window.

The demo's `icu/chartevents` is replaced by a stand-in with other columns
(PROVENANCE.md, `_derived/`); it is read only when `chartevents_stand_in=True`,
and its rows without a stay are placed by (subject, charttime) or quarantined.

Quarantine vs filtering: rows that are malformed or contradict the stay they name
(a non-numeric value, NaN/inf, a chart time outside its stay, a duplicate row, an
unparseable date) are counted in the Quarantine by (table, reason) with their
0-based data row in the file. Rows that are simply not ICU data of the cohort
(other items, outpatient labs and notes, PA views, images outside the stay) are
filtered and counted in the funnel's `detail`. Nothing here logs or raises with
note text, ids or dates.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from clintraj.data import mimic_tables as mt
from clintraj.data.cohort import CohortTables
from clintraj.data.rawio import Quarantine, read_table, stream_table

log = logging.getLogger(__name__)

MODALITIES = ("time_series", "cxr", "discharge_note", "radiology_note", "demographics")
DEMOGRAPHIC_COLUMNS = (
    "admission_type", "admission_location", "insurance", "language", "marital_status", "race", "gender", "age_group",
)
PHENOTYPE_PREFIX = "pheno:"
STAND_IN_COLUMNS = {"stay_id_inferred": "stay_id"}  # the _derived chartevents stand-in -> chartevents names

_HOUR = pd.Timedelta(hours=1)
_CHART = "icu/chartevents.csv.gz"
_LAB = "hosp/labevents.csv.gz"
_CXR_METADATA = mt.CXR_METADATA.path.split("/", 1)[1]  # below the MIMIC-CXR-JPG root
_NOTE_FILES = {  # below the MIMIC-IV-Note root
    "discharge_note": mt.DISCHARGE.path.split("/", 1)[1],
    "radiology_note": mt.RADIOLOGY.path.split("/", 1)[1],
}


@dataclass
class MimicConfig:
    chartevents_stand_in: bool = False  # read the _derived stand-in's columns (stay_id_inferred, no `value`)
    use_labevents: bool = True  # glucose, O2 saturation and pH from hosp/labevents too (mimic3-benchmarks)
    bin_hours: float = 1.0  # discretisation step (paper: timestep = 1.0 h)
    max_hours: float | None = None  # keep only the first hours of each stay (None: the whole stay)
    fio2_percent_to_fraction: bool = True  # FiO2 > 1 is a percentage: divide by 100
    cxr_views: tuple[str, ...] = ("AP",)
    cxr_require_file: bool = True  # an image counts only when its JPEG exists below the cxr root
    age_edges: tuple[int, ...] = (18, 30, 40, 50, 60, 70, 80)  # groups 18-29, ..., 70-79, 80+
    numeric_age: bool = True  # also keep the age in years (a number) next to the age group
    note_separator: str = "\n\n"
    chunk_rows: int = 1_000_000
    progress: bool = True


class _Counter(dict):
    """A dict of counts that starts every key at 0."""

    def __missing__(self, key):
        return 0


# --- phenotypes ---------------------------------------------------------------------


def load_phenotypes() -> dict[str, dict[str, list[str]]]:
    """{phenotype: {"icd9": [...], "icd10": [...]}} of the 25 benchmark HCUP CCS groups,
    in `latent.PHENOTYPES` order, from the package's `resources/phenotypes.yaml`."""
    text = resources.files("clintraj").joinpath("resources/phenotypes.yaml").read_text(encoding="utf-8")
    groups = yaml.safe_load(text)
    if len(groups) != 25 or any(set(g) != {"icd9", "icd10"} for g in groups.values()):
        raise ValueError("resources/phenotypes.yaml: expected 25 groups with icd9 and icd10 lists")
    return {name: {"icd9": [str(c) for c in g["icd9"]], "icd10": [str(c) for c in g["icd10"]]}
            for name, g in groups.items()}


def normalise_icd(code: pd.Series) -> pd.Series:
    """ICD codes as MIMIC writes them: no dots or spaces, upper case."""
    return code.astype("string").str.strip().str.replace(".", "", regex=False).str.upper()


# --- stays ---------------------------------------------------------------------------


def parse_datetime(text: pd.Series) -> pd.Series:
    """'YYYY-MM-DD[ HH:MM:SS]' -> datetime64; anything else -> NaT."""
    return pd.to_datetime(text.astype("string"), format="ISO8601", errors="coerce")


def load_stays(raw: Path, quarantine: Quarantine) -> tuple[pd.DataFrame, list[dict]]:
    """Valid ICU stays (stay_id, subject_id, hadm_id, intime, outtime) and the funnel so far."""
    relative = mt.ICUSTAYS.path
    icu = read_table(raw, relative, ["subject_id", "hadm_id", "stay_id", "intime", "outtime"], dtype="string")
    stays = pd.DataFrame({
        "stay_id": pd.to_numeric(icu["stay_id"], errors="coerce").astype("Int64"),
        "subject_id": pd.to_numeric(icu["subject_id"], errors="coerce").astype("Int64"),
        "hadm_id": pd.to_numeric(icu["hadm_id"], errors="coerce").astype("Int64"),
        "intime": parse_datetime(icu["intime"]),
        "outtime": parse_datetime(icu["outtime"]),
    }, index=icu.index)
    funnel = [{"step": f"ICU stays in {relative}", "removed": 0, "remaining": len(stays)}]

    def drop(bad: pd.Series, step: str, reason: str) -> None:
        nonlocal stays
        quarantine.add(relative, reason, stays.index[bad])
        funnel.append({"step": f"{step} (quarantined)", "removed": int(bad.sum()), "remaining": int((~bad).sum())})
        stays = stays[~bad]

    drop(stays["stay_id"].isna() | stays["subject_id"].isna(), "stay_id or subject_id missing",
         "stay_id or subject_id missing or not a number")
    drop(stays["stay_id"].duplicated(keep="first"), "duplicate stay_id", "duplicate stay_id")
    drop(~(stays["outtime"] > stays["intime"]).fillna(False), "intime/outtime missing or outtime not after intime",
         "intime/outtime missing, unparseable or outtime not after intime")
    stays = stays.astype({"stay_id": "int64", "subject_id": "int64"})
    return stays.sort_values("stay_id", kind="stable").reset_index(drop=True), funnel


# --- labels ----------------------------------------------------------------------------


def read_admissions(raw: Path, quarantine: Quarantine) -> pd.DataFrame:
    """admissions rows indexed by hadm_id, with `row` (the file's data row). A row whose
    hadm_id is missing or repeats an earlier row's is quarantined."""
    columns = ["hadm_id", "admittime", *DEMOGRAPHIC_COLUMNS[:6], "hospital_expire_flag"]
    admissions = read_table(raw, mt.ADMISSIONS.path, columns, dtype="string")
    hadm = pd.to_numeric(admissions["hadm_id"], errors="coerce")
    bad = hadm.isna() | hadm.duplicated(keep="first")
    quarantine.add(mt.ADMISSIONS.path, "hadm_id missing, not a number or repeated", admissions.index[bad])
    kept = admissions[~bad].assign(hadm_id=hadm[~bad].astype("int64"), row=admissions.index[~bad])
    return kept.set_index("hadm_id")


def mortality(stays: pd.DataFrame, admissions: pd.DataFrame, quarantine: Quarantine) -> pd.Series:
    """hospital_expire_flag of each stay's admission as 0.0 / 1.0; NA when unknown."""
    flag = pd.to_numeric(admissions["hospital_expire_flag"], errors="coerce")
    bad = ~flag.isin([0, 1])
    quarantine.add(mt.ADMISSIONS.path, "hospital_expire_flag not 0/1", admissions.loc[bad, "row"])
    return stays["hadm_id"].map(flag.where(~bad)).astype("Float64")


def phenotype_labels(raw: Path, stays: pd.DataFrame, config: MimicConfig, quarantine: Quarantine) -> pd.DataFrame:
    """One `pheno:<name>` column per phenotype: 1.0 when a diagnosis of the stay's admission is
    in the group (its ICD-9 or ICD-10 list, by icd_version), 0.0 when none is, NA when the
    admission has no diagnoses rows (the label is unknown, not negative)."""
    phenotypes = load_phenotypes()
    definitions = pd.DataFrame(
        [(version, code, k) for k, name in enumerate(phenotypes)
         for version in (9, 10) for code in phenotypes[name][f"icd{version}"]],
        columns=["icd_version", "icd_code", "phenotype"],
    ).astype({"icd_code": "string"})
    hadms = stays["hadm_id"].dropna().astype("int64").unique()
    hits, coded = [], []
    chunks = stream_table(raw, mt.DIAGNOSES_ICD.path, ["hadm_id", "icd_code", "icd_version"], dtype="string",
                          chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="MIMIC diagnoses", unit="chunk", disable=not config.progress):
        hadm = pd.to_numeric(chunk["hadm_id"], errors="coerce")
        chunk = chunk[hadm.isin(hadms)]
        rows = pd.DataFrame({"hadm_id": hadm[chunk.index].astype("int64"),
                             "icd_version": pd.to_numeric(chunk["icd_version"], errors="coerce"),
                             "icd_code": normalise_icd(chunk["icd_code"])})
        bad = ~rows["icd_version"].isin([9, 10]) | rows["icd_code"].fillna("").eq("")
        quarantine.add(mt.DIAGNOSES_ICD.path, "icd_version not 9/10 or icd_code missing", rows.index[bad])
        rows = rows[~bad].astype({"icd_version": "int64"})
        coded.append(rows["hadm_id"].unique())
        hits.append(rows.merge(definitions, on=["icd_version", "icd_code"])[["hadm_id", "phenotype"]])
    coded_hadms = np.unique(np.concatenate(coded)) if coded else np.array([], dtype="int64")
    matrix = np.zeros((len(coded_hadms), len(phenotypes)))
    if hits:
        hit = pd.concat(hits)
        matrix[np.searchsorted(coded_hadms, hit["hadm_id"].to_numpy()), hit["phenotype"].to_numpy()] = 1.0
    wide = pd.DataFrame(matrix, index=coded_hadms, columns=[f"{PHENOTYPE_PREFIX}{n}" for n in phenotypes])
    position = pd.Index(coded_hadms).get_indexer(stays["hadm_id"].fillna(-1).astype("int64"))
    labels = wide.iloc[np.maximum(position, 0)].astype("Float64").set_axis(stays.index)
    labels[position < 0] = pd.NA
    return labels


# --- demographics ------------------------------------------------------------------------


def age_groups(age: pd.Series, edges: tuple[int, ...]) -> pd.Series:
    """Years -> '18-29', ..., '80+' (and '<18' below the first edge)."""
    labels = [f"<{edges[0]}"] + [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    groups = pd.cut(age.astype("float64"), [-math.inf, *edges, math.inf], right=False, labels=labels)
    return groups.astype("string")


def demographics_table(raw: Path, stays: pd.DataFrame, admissions: pd.DataFrame, config: MimicConfig,
                       quarantine: Quarantine) -> pd.DataFrame:
    """stay_id + the eight raw static features (+ age in years), for stays where any is known.
    Age = anchor_age + (admission year - anchor_year)."""
    patients = read_table(raw, mt.PATIENTS.path, ["subject_id", "gender", "anchor_age", "anchor_year"],
                          dtype="string")
    subject = pd.to_numeric(patients["subject_id"], errors="coerce")
    anchor_age = pd.to_numeric(patients["anchor_age"], errors="coerce")
    anchor_year = pd.to_numeric(patients["anchor_year"], errors="coerce")
    bad = subject.isna() | subject.duplicated(keep="first")
    quarantine.add(mt.PATIENTS.path, "subject_id missing, not a number or repeated", patients.index[bad])
    quarantine.add(mt.PATIENTS.path, "anchor_age or anchor_year missing or not a number",
                   patients.index[~bad & (anchor_age.isna() | anchor_year.isna())])
    patients = pd.DataFrame({"gender": patients["gender"], "anchor_age": anchor_age, "anchor_year": anchor_year},
                            index=patients.index)[~bad].set_axis(subject[~bad].astype("int64"))

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


# --- time series -------------------------------------------------------------------------

_NUMERIC_NORMAL = {
    v: float(mt.CATEGORICAL_TEXT_TO_NUMERIC[v][mt.NORMAL_VALUES[v]]) if v in mt.CATEGORICAL_VARIABLES
    else float(mt.NORMAL_VALUES[v])
    for v in mt.VARIABLES
}
_GCS_TOTAL = "Glascow coma scale total"
_GCS_PARTS = ("Glascow coma scale eye opening", "Glascow coma scale motor response",
              "Glascow coma scale verbal response")
_CAPILLARY_REFILL = "Capillary refill rate"


def normal_values() -> dict[str, float]:
    """Each variable's normal value as a number (categorical labels mapped to their code)."""
    return dict(_NUMERIC_NORMAL)


def _windows(stays: pd.DataFrame, config: MimicConfig) -> pd.DataFrame:
    """Per cohort stay (index stay_id): subject_id, intime, outtime, and `end`, the last time
    kept (outtime, or intime + max_hours when that is earlier)."""
    windows = stays.set_index("stay_id")[["subject_id", "intime", "outtime"]].copy()
    windows["end"] = windows["outtime"]
    if config.max_hours is not None:
        windows["end"] = windows["end"].clip(upper=windows["intime"] + config.max_hours * _HOUR)
    return windows


def assign_stays(subject: pd.Series, time: pd.Series, windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(stay_id or -1, number of stays matched) per row: the subject's stays whose
    [intime, outtime] contains the time."""
    left = pd.DataFrame({"subject_id": subject.fillna(-1).astype("int64").to_numpy(), "t": time.to_numpy(),
                         "pos": np.arange(len(subject))})
    right = windows.reset_index()[["subject_id", "stay_id", "intime", "outtime"]]
    pairs = left.merge(right, on="subject_id")
    pairs = pairs[(pairs["t"] >= pairs["intime"]) & (pairs["t"] <= pairs["outtime"])]
    count = np.bincount(pairs["pos"].to_numpy(), minlength=len(subject))
    stay = np.full(len(subject), -1, dtype="int64")
    unique = pairs[count[pairs["pos"].to_numpy()] == 1]
    stay[unique["pos"].to_numpy()] = unique["stay_id"].to_numpy()
    return stay, count


def resolve_values(variable: pd.Series, value: pd.Series, valuenum: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Numbers for raw rows of the 17 variables, and the quarantine reason of each row that
    has none (NA when fine). Numeric variables: valuenum (else the text value if it is a
    number); GCS: the score in valuenum (else the text answer, mapped); capillary refill:
    the text answer (else valuenum 0/1)."""
    index = variable.index
    number = pd.to_numeric(valuenum, errors="coerce").astype("float64")
    text = value.astype("string").str.strip()
    from_text = pd.to_numeric(text, errors="coerce").astype("float64")
    number = number.where(np.isfinite(number))
    from_text = from_text.where(np.isfinite(from_text))
    out = pd.Series(np.nan, index=index)
    reason = pd.Series(pd.NA, index=index, dtype="string")

    numeric = ~variable.isin(list(mt.CATEGORICAL_VARIABLES))
    out[numeric] = number[numeric].fillna(from_text[numeric])
    reason[numeric & out.isna()] = "valuenum missing or not a finite number"
    for name in _GCS_PARTS:
        rows = variable.eq(name)
        answers = text[rows].map(dict(mt.GCS_TEXT_TO_NUMERIC[name])).astype("float64")
        out[rows] = number[rows].fillna(answers)
        reason[rows & out.isna()] = "GCS valuenum missing and text not a known answer"
    rows = variable.eq(_CAPILLARY_REFILL)
    answers = text[rows].map(dict(mt.CAPILLARY_REFILL_TEXT_TO_NUMERIC)).astype("float64")
    out[rows] = answers.fillna(number[rows].where(number[rows].isin([0.0, 1.0])))
    reason[rows & out.isna()] = "capillary refill text missing or not a known answer"
    return out.to_numpy(), reason


def convert_units(itemid: np.ndarray, variable: pd.Series, value: np.ndarray, config: MimicConfig) -> np.ndarray:
    """Metric units for every item (mimic_tables' F / lb / in items), FiO2 as a fraction and
    O2 saturation in percent (mimic3-benchmarks `clean_fio2`, `clean_o2sat`)."""
    value = value.astype("float64").copy()
    fahrenheit = np.isin(itemid, list(mt.FAHRENHEIT_ITEMIDS))
    value[fahrenheit] = (value[fahrenheit] - 32.0) * 5.0 / 9.0
    pounds = np.isin(itemid, list(mt.POUND_ITEMIDS))
    value[pounds] = value[pounds] * 0.45359237
    inches = np.isin(itemid, list(mt.INCH_ITEMIDS))
    value[inches] = value[inches] * 2.54
    if config.fio2_percent_to_fraction:
        percent = variable.eq("Fraction inspired oxygen").to_numpy() & (value > 1.0)
        value[percent] = value[percent] / 100.0
    fraction = variable.eq("Oxygen saturation").to_numpy() & (value <= 1.0)
    value[fraction] = value[fraction] * 100.0
    return value


def _values_frame(chunk: pd.DataFrame, stay: np.ndarray, time: pd.Series, source: int, table: str,
                  quarantine: Quarantine) -> pd.DataFrame:
    """The chunk's rows as (stay_id, t, itemid, variable, value, source, row); rows without
    a usable number quarantined."""
    itemid = pd.to_numeric(chunk["itemid"]).astype("int64")
    variable = itemid.map(dict(mt.ITEMID_TO_VARIABLE))
    value_text = chunk["value"] if "value" in chunk else pd.Series(pd.NA, index=chunk.index, dtype="string")
    value, reason = resolve_values(variable, value_text, chunk["valuenum"])
    for why in reason.dropna().unique():
        quarantine.add(table, why, chunk.index[reason.eq(why).fillna(False).to_numpy()])
    ok = reason.isna().to_numpy()
    return pd.DataFrame({
        "stay_id": stay[ok], "t": time.to_numpy()[ok], "itemid": itemid.to_numpy()[ok],
        "variable": pd.Categorical(variable[ok], categories=mt.VARIABLES), "value": value[ok],
        "source": np.int8(source), "row": chunk.index.to_numpy()[ok],
    })


def _chart_columns(config: MimicConfig) -> list[str]:
    if config.chartevents_stand_in:
        return ["subject_id", "stay_id_inferred", "charttime", "itemid", "valuenum"]
    return ["subject_id", "stay_id", "charttime", "itemid", "value", "valuenum"]


def chart_measurements(raw: Path, windows: pd.DataFrame, config: MimicConfig, quarantine: Quarantine,
                       detail: dict) -> list[pd.DataFrame]:
    """Rows of icu/chartevents for the 17 variables' items, inside their cohort stay.
    With the stand-in, a row without stay_id is placed by (subject, charttime)."""
    itemids = {str(i) for ids in mt.CHART_ITEMIDS.values() for i in ids}
    frames = []
    chunks = stream_table(raw, _CHART, _chart_columns(config), dtype="string", chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="MIMIC chartevents", unit="chunk", disable=not config.progress):
        detail["chartevents rows read"] += len(chunk)
        chunk = chunk.rename(columns=STAND_IN_COLUMNS)
        chunk = chunk[chunk["itemid"].str.strip().isin(itemids)]
        detail["chartevents rows of the variables' items"] += len(chunk)
        time = parse_datetime(chunk["charttime"])
        quarantine.add(_CHART, "charttime missing or unparseable", chunk.index[time.isna()])
        chunk, time = chunk[time.notna()], time[time.notna()]
        stay = pd.to_numeric(chunk["stay_id"], errors="coerce").fillna(-1).astype("int64").to_numpy(copy=True)
        blank = chunk["stay_id"].isna().to_numpy()
        if blank.any():
            subject = pd.to_numeric(chunk.loc[blank, "subject_id"], errors="coerce")
            assigned, count = assign_stays(subject, time[blank], windows)
            stay[blank] = assigned
            quarantine.add(_CHART, "stay_id blank and charttime in no ICU stay of the subject",
                           chunk.index[blank][count == 0])
            quarantine.add(_CHART, "stay_id blank and charttime in several ICU stays of the subject",
                           chunk.index[blank][count > 1])
            detail["chartevents rows placed in a stay by subject and charttime"] += int((count == 1).sum())
        not_a_number = ~blank & (stay < 0)
        quarantine.add(_CHART, "stay_id not a number", chunk.index[not_a_number])
        row = windows.index.get_indexer(stay)
        detail["chartevents rows of stays outside the cohort"] += int((~blank & (stay >= 0) & (row < 0)).sum())
        keep = row >= 0
        chunk, time, stay, row = chunk[keep], time[keep], stay[keep], row[keep]
        intime, outtime, end = (windows[c].to_numpy()[row] for c in ("intime", "outtime", "end"))
        t = time.to_numpy()
        outside = (t < intime) | (t > outtime)
        quarantine.add(_CHART, "charttime outside the stay", chunk.index[outside])
        late = ~outside & (t > end)
        detail["chartevents rows after max_hours"] += int(late.sum())
        keep = ~outside & ~late
        frames.append(_values_frame(chunk[keep], stay[keep], time[keep], 0, _CHART, quarantine))
    return frames


def lab_measurements(raw: Path, windows: pd.DataFrame, config: MimicConfig, quarantine: Quarantine,
                     detail: dict) -> list[pd.DataFrame]:
    """Rows of hosp/labevents for the lab items of the variables, placed in the cohort stay
    whose [intime, outtime] holds their charttime (labs carry no stay_id). Labs outside every
    ICU stay are ward or outpatient results: filtered and counted, not quarantined."""
    itemids = {str(i) for ids in mt.LAB_ITEMIDS.values() for i in ids}
    subjects = windows["subject_id"].unique()
    frames = []
    columns = ["subject_id", "charttime", "itemid", "value", "valuenum"]
    chunks = stream_table(raw, _LAB, columns, dtype="string", chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="MIMIC labevents", unit="chunk", disable=not config.progress):
        chunk = chunk[chunk["itemid"].str.strip().isin(itemids)]
        subject = pd.to_numeric(chunk["subject_id"], errors="coerce")
        chunk, subject = chunk[subject.isin(subjects)], subject[subject.isin(subjects)]
        detail["labevents rows of the variables' items for cohort subjects"] += len(chunk)
        time = parse_datetime(chunk["charttime"])
        quarantine.add(_LAB, "charttime missing or unparseable", chunk.index[time.isna()])
        chunk, subject, time = chunk[time.notna()], subject[time.notna()], time[time.notna()]
        stay, count = assign_stays(subject, time, windows)
        detail["labevents rows outside every ICU stay (not ICU data)"] += int((count == 0).sum())
        quarantine.add(_LAB, "charttime in several ICU stays of the subject", chunk.index[count > 1])
        keep = count == 1
        end = windows["end"].to_numpy()[windows.index.get_indexer(stay)]
        late = keep & (time.to_numpy() > end)
        detail["labevents rows after max_hours"] += int(late.sum())
        keep &= ~late
        frames.append(_values_frame(chunk[keep], stay[keep], time[keep], 1, _LAB, quarantine))
    return frames


def _drop_duplicates(rows: pd.DataFrame, quarantine: Quarantine) -> pd.DataFrame:
    """Quarantine repeats of (stay, charttime, item, value) within a table; keep the first."""
    repeated = rows.duplicated(["source", "stay_id", "t", "itemid", "value"], keep="first")
    for source, table in ((0, _CHART), (1, _LAB)):
        quarantine.add(table, "duplicate row (same stay, charttime, item and value)",
                       rows.loc[repeated & rows["source"].eq(source), "row"])
    return rows[~repeated]


def gcs_totals(rows: pd.DataFrame) -> pd.DataFrame:
    """GCS total rows: eye + motor + verbal where all three are charted at the same time."""
    parts = rows[rows["variable"].isin(_GCS_PARTS)]
    last = parts.groupby(["stay_id", "t", "variable"], observed=True)["value"].last().unstack("variable")
    last = last.reindex(columns=list(_GCS_PARTS)).dropna()
    total = last.sum(axis=1).rename("value").reset_index()
    return total.assign(itemid=-1, variable=pd.Categorical([_GCS_TOTAL] * len(total), categories=mt.VARIABLES),
                        source=np.int8(0), row=-1)


def load_measurements(raw: Path, stays: pd.DataFrame, config: MimicConfig,
                      quarantine: Quarantine) -> tuple[pd.DataFrame, dict]:
    """Clean measurements (stay_id, hours from intime, variable, value), in time order, and
    the counts of rows filtered on the way."""
    windows = _windows(stays, config)
    detail = _Counter()
    frames = chart_measurements(raw, windows, config, quarantine, detail)
    if config.use_labevents:
        frames += lab_measurements(raw, windows, config, quarantine, detail)
    rows = pd.concat(frames, ignore_index=True)  # stream_table yields at least one chunk
    rows = _drop_duplicates(rows.sort_values(["stay_id", "t", "source", "row"], kind="stable"), quarantine)
    rows["value"] = convert_units(rows["itemid"].to_numpy(), rows["variable"], rows["value"].to_numpy(), config)
    rows = pd.concat([rows, gcs_totals(rows)], ignore_index=True)
    rows = rows.sort_values(["stay_id", "t", "source", "row"], kind="stable")
    position = windows.index.get_indexer(rows["stay_id"])
    intime, end = windows["intime"].to_numpy()[position], windows["end"].to_numpy()[position]
    hours = (rows["t"].to_numpy() - intime) / np.timedelta64(1, "h")
    # a value charted exactly at the window's end belongs to the last bin, not a new one
    last_bin = np.maximum(np.ceil((end - intime) / np.timedelta64(1, "h") / config.bin_hours) - 1, 0)
    hours = np.minimum(hours, last_bin * config.bin_hours)
    measurements = pd.DataFrame({"stay_id": rows["stay_id"].to_numpy(), "hours": hours,
                                 "variable": rows["variable"].to_numpy(), "value": rows["value"].to_numpy()})
    return measurements.reset_index(drop=True), dict(detail)


def discretize(measurements: pd.DataFrame, bin_hours: float = 1.0) -> pd.DataFrame:
    """Hourly events from measurements (stay_id, hours, variable, value; time-ordered within a
    stay): one row per bin with a measurement, time_hours = bin start. A bin holds the mean of
    its values (categorical variables: the last); then carry-forward within the stay, and the
    normal value where a variable has no earlier value in the stay. `mask:<variable>` says
    which were measured in the bin."""
    m = measurements.assign(bin=np.floor(measurements["hours"].to_numpy() / bin_hours).astype("int64"))
    m = m.sort_values(["stay_id", "bin"], kind="stable")  # stable: the time order within a bin stays
    variable = m["variable"].astype("string")
    categorical = variable.isin(list(mt.CATEGORICAL_VARIABLES))
    keys = ["stay_id", "bin", "variable"]
    means = m[~categorical].assign(variable=variable[~categorical]).groupby(keys)["value"].mean()
    lasts = m[categorical].assign(variable=variable[categorical]).groupby(keys)["value"].last()
    wide = pd.concat([means, lasts]).unstack("variable").reindex(columns=list(mt.VARIABLES))
    wide = wide.sort_index()
    measured = wide.notna()
    filled = wide.groupby(level="stay_id").ffill().fillna(_NUMERIC_NORMAL)
    events = filled.astype("float64").reset_index()
    events.insert(1, "time_hours", events.pop("bin").astype("float64") * bin_hours)
    for name in mt.VARIABLES:
        events[f"mask:{name}"] = measured[name].to_numpy()
    events.columns.name = None
    return events.astype({"stay_id": "int64"}).reset_index(drop=True)


def summarise(events: pd.DataFrame) -> pd.DataFrame:
    """Per stay, over its event bins (after imputation): mean, min, max and last of each
    variable, and the share of bins where it was measured."""
    grouped = events.groupby("stay_id", sort=True)
    parts = {}
    for name in mt.VARIABLES:
        column = grouped[name]
        parts[f"ts:{name}:mean"] = column.mean()
        parts[f"ts:{name}:min"] = column.min()
        parts[f"ts:{name}:max"] = column.max()
        parts[f"ts:{name}:last"] = column.last()
        parts[f"ts:{name}:measured_share"] = grouped[f"mask:{name}"].mean()
    table = pd.DataFrame(parts).astype("float64")
    return table.rename_axis("stay_id").reset_index()


def time_series(raw: Path, stays: pd.DataFrame, config: MimicConfig,
                quarantine: Quarantine) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(static summary table, hourly events, filtering counts) of the 17 variables."""
    measurements, detail = load_measurements(raw, stays, config, quarantine)
    events = discretize(measurements, config.bin_hours)
    return summarise(events), events, detail


# --- CXR -------------------------------------------------------------------------------

CXR_COLUMNS = ("stay_id", "dicom_id", "study_id", "path", "study_time_hours")
CXR_EVENT_COLUMNS = ("stay_id", "time_hours", "dicom_id", "study_id", "path")


def study_datetime(study_date: pd.Series, study_time: pd.Series) -> pd.Series:
    """StudyDate (yyyymmdd) + StudyTime (hhmmss.fff with its leading zeros lost: 80556.875
    is 08:05:56.875) -> datetime64; NaT when either is missing or not a valid date / time."""
    day = pd.to_datetime(study_date.astype("string").str.strip(), format="%Y%m%d", errors="coerce")
    hhmmss = pd.to_numeric(study_time, errors="coerce").astype("float64")
    hh = np.floor(hhmmss / 10_000)
    mm = np.floor(hhmmss / 100) % 100
    ss = hhmmss - hh * 10_000 - mm * 100
    valid = (hhmmss >= 0) & (hh < 24) & (mm < 60) & (ss < 60)
    millis = np.round((hh * 3600 + mm * 60 + ss) * 1000).where(valid)
    return (day + pd.to_timedelta(millis, unit="ms")).where(valid & day.notna())


def cxr_modality(root: Path, stays: pd.DataFrame, config: MimicConfig,
                 quarantine: Quarantine) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The paper's CXR selection: metadata joined to the cohort stays on subject_id, images
    strictly inside (intime, outtime), views in `cxr_views`, the most recent per stay."""
    root = Path(root)
    windows = stays.set_index("stay_id")[["subject_id", "intime", "outtime"]]
    columns = ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"]
    detail, pairs = _Counter(), []
    chunks = stream_table(root, _CXR_METADATA, columns, dtype="string", chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="MIMIC-CXR metadata", unit="chunk", disable=not config.progress):
        detail["images in the metadata"] += len(chunk)
        subject = pd.to_numeric(chunk["subject_id"], errors="coerce")
        chunk = chunk[subject.isin(windows["subject_id"])].assign(subject_id=subject)
        detail["images of cohort subjects (join on subject_id)"] += len(chunk)
        when = study_datetime(chunk["StudyDate"], chunk["StudyTime"])
        study = pd.to_numeric(chunk["study_id"], errors="coerce")
        bad = when.isna() | study.isna() | chunk["dicom_id"].isna()
        quarantine.add(_CXR_METADATA, "StudyDate/StudyTime invalid or dicom_id/study_id missing", chunk.index[bad])
        images = pd.DataFrame({"subject_id": chunk["subject_id"].astype("int64"), "t": when, "study_id": study,
                               "dicom_id": chunk["dicom_id"].str.strip(), "view": chunk["ViewPosition"].str.strip(),
                               "row": chunk.index})[~bad.to_numpy()]
        joined = images.merge(windows.reset_index(), on="subject_id")
        joined = joined[(joined["t"] > joined["intime"]) & (joined["t"] < joined["outtime"])]
        detail["(image, stay) pairs strictly inside the stay"] += len(joined)
        joined = joined[joined["view"].isin(config.cxr_views)]
        detail[f"of them with view {'/'.join(config.cxr_views)}"] += len(joined)
        pairs.append(joined)
    chosen = pd.concat(pairs, ignore_index=True).astype({"study_id": "int64"})
    chosen["path"] = [mt.cxr_image_path(s, st, d) for s, st, d in
                      zip(chosen["subject_id"], chosen["study_id"], chosen["dicom_id"])]
    if config.cxr_require_file:
        exists = np.array([(root / p).is_file() for p in chosen["path"]], dtype=bool)
        quarantine.add(_CXR_METADATA, "image file missing below the cxr root",
                       chosen.loc[~exists, "row"].drop_duplicates())
        detail["of them without their image file"] += int((~exists).sum())
        chosen = chosen[exists]
    chosen = chosen.sort_values(["stay_id", "t", "dicom_id"], kind="stable").groupby("stay_id").tail(1)
    chosen["study_time_hours"] = (chosen["t"] - chosen["intime"]) / _HOUR
    table = chosen[list(CXR_COLUMNS)].sort_values("stay_id").reset_index(drop=True)
    events = table.rename(columns={"study_time_hours": "time_hours"})[list(CXR_EVENT_COLUMNS)]
    return table, events, dict(detail)


# --- notes -------------------------------------------------------------------------------

_MOJIBAKE = re.compile(  # UTF-8 bytes read as cp1252 / latin-1: 'â€™', 'Ã©', 'Â°', ...
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]{1,3}")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")  # C0 (but tab, newline), DEL, C1 (\x95 ...), U+FFFD
_DEID_HEADER = re.compile(r"^[ \t]*(?:name|unit no|admission date|discharge date|date of birth)[ \t]*:.*$",
                          re.MULTILINE)
_PLACEHOLDER = re.compile(r"_{3,}")  # de-identified values ('___')
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _drop_mojibake(match: re.Match) -> str:
    """'' for a run that decodes as UTF-8 read as cp1252 / latin-1, else the run unchanged."""
    for encoding in ("cp1252", "latin-1"):
        try:
            match.group().encode(encoding).decode("utf-8")
            return ""
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return match.group()


def clean_note_text(text: str) -> str:
    """Lower case; de-identification header lines (name, unit no, admission / discharge date,
    date of birth) and '___' placeholders removed; broken unicode (mojibake, control
    characters such as \\x95, U+FFFD) removed; whitespace tidied. Punctuation and stop-words stay."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _MOJIBAKE.sub(_drop_mojibake, text)
    text = _CONTROL.sub(" ", text).lower()
    text = _DEID_HEADER.sub("", text)
    text = _PLACEHOLDER.sub(" ", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _note_path(root: Path, name: str) -> str:
    """The note file below the MIMIC-IV-Note root ('note/<file>'), or directly in it."""
    relative = _NOTE_FILES[name]
    flat = relative.split("/", 1)[1]
    return flat if not (Path(root) / relative).is_file() and (Path(root) / flat).is_file() else relative


def note_modality(root: Path, name: str, stays: pd.DataFrame, config: MimicConfig,
                  quarantine: Quarantine) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(stay_id, text) per stay, the admission's unique note texts in charttime order, and one
    event per note (stay_id, time_hours, note_index: its place in the admission's notes, text),
    from the notes of each stay's admission (subject_id, hadm_id)."""
    relative = _note_path(root, name)
    keys = stays[["subject_id", "hadm_id"]].dropna().drop_duplicates()
    admissions = pd.MultiIndex.from_arrays([keys["subject_id"].astype("int64"), keys["hadm_id"].astype("int64")])
    detail, notes = _Counter(), []
    chunks = stream_table(root, relative, ["subject_id", "hadm_id", "charttime", "text"], dtype="string",
                          chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc=f"MIMIC {name}", unit="chunk", disable=not config.progress):
        detail["notes read"] += len(chunk)
        detail["notes without hadm_id (not linked to an admission)"] += int(chunk["hadm_id"].isna().sum())
        subject = pd.to_numeric(chunk["subject_id"], errors="coerce").fillna(-1).astype("int64")
        hadm = pd.to_numeric(chunk["hadm_id"], errors="coerce").fillna(-1).astype("int64")
        linked = pd.MultiIndex.from_arrays([subject, hadm]).isin(admissions)
        chunk, subject, hadm = chunk[linked], subject[linked], hadm[linked]
        detail["notes of cohort admissions"] += len(chunk)
        time = parse_datetime(chunk["charttime"])
        text = chunk["text"].fillna("").map(clean_note_text)
        quarantine.add(relative, "charttime missing or unparseable", chunk.index[time.isna()])
        quarantine.add(relative, "text empty after cleaning", chunk.index[time.notna() & text.eq("")])
        ok = (time.notna() & text.ne("")).to_numpy()
        notes.append(pd.DataFrame({"subject_id": subject[ok], "hadm_id": hadm[ok], "t": time[ok],
                                   "row": chunk.index[ok], "text": text[ok].astype("string")}))
    notes = pd.concat(notes, ignore_index=True).sort_values(["subject_id", "hadm_id", "t", "row"], kind="stable")
    repeated = notes.duplicated(["subject_id", "hadm_id", "t", "text"], keep="first")
    quarantine.add(relative, "duplicate row (same admission, charttime and text)", notes.loc[repeated, "row"])
    notes = notes[~repeated]
    notes["note_index"] = notes.groupby(["subject_id", "hadm_id"]).cumcount()
    notes["repeat"] = notes.duplicated(["subject_id", "hadm_id", "text"], keep="first")
    detail["notes repeating an earlier text of their admission (an event, not repeated in the text)"] += int(
        notes["repeat"].sum())
    base = stays[["stay_id", "subject_id", "hadm_id", "intime"]].dropna(subset=["hadm_id"])
    base = base.astype({"hadm_id": "int64"})
    events = base.merge(notes, on=["subject_id", "hadm_id"]).sort_values(["stay_id", "note_index"], kind="stable")
    events["time_hours"] = (events["t"] - events["intime"]) / _HOUR
    table = events[~events["repeat"]].groupby("stay_id", sort=True)["text"].agg(config.note_separator.join)
    table = table.reset_index()
    events = events[["stay_id", "time_hours", "note_index", "text"]].reset_index(drop=True)
    return table.astype({"text": "string"}), events, dict(detail)


# --- the cohort --------------------------------------------------------------------------


def _absent(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Empty (table, events) of a modality whose source was not given."""
    if name == "cxr":
        return pd.DataFrame(columns=list(CXR_COLUMNS)), pd.DataFrame(columns=list(CXR_EVENT_COLUMNS))
    return (pd.DataFrame({"stay_id": pd.Series(dtype="int64"), "text": pd.Series(dtype="string")}),
            pd.DataFrame({"stay_id": pd.Series(dtype="int64"), "time_hours": pd.Series(dtype="float64"),
                          "note_index": pd.Series(dtype="int64"), "text": pd.Series(dtype="string")}))


_MODALITY_STEPS = {
    "time_series": "stays with a measurement of the 17 variables inside the stay",
    "cxr": "stays with an AP chest X-ray strictly inside the stay (most recent kept)",
    "discharge_note": "stays whose admission has a discharge note",
    "radiology_note": "stays whose admission has a radiology report",
    "demographics": "stays with a known admission or patient field",
}


def build(raw: Path, cxr: Path | None, notes: Path | None, config: MimicConfig | None = None) -> CohortTables:
    """Cohort, labels, modality tables and timeline events of one raw MIMIC-IV folder, with
    the MIMIC-CXR-JPG and MIMIC-IV-Note roots when given (None: that modality is absent)."""
    config = config or MimicConfig()
    raw = Path(raw)
    quarantine = Quarantine()
    stays, funnel = load_stays(raw, quarantine)
    admissions = read_admissions(raw, quarantine)
    stays["died"] = mortality(stays, admissions, quarantine)
    stays = pd.concat([stays, phenotype_labels(raw, stays, config, quarantine)], axis=1)

    tables, events, details = {}, {}, {}
    tables["time_series"], events["time_series"], details["time_series"] = time_series(raw, stays, config, quarantine)
    if cxr is None:
        tables["cxr"], events["cxr"] = _absent("cxr")
    else:
        tables["cxr"], events["cxr"], details["cxr"] = cxr_modality(cxr, stays, config, quarantine)
    for name in ("discharge_note", "radiology_note"):
        if notes is None:
            tables[name], events[name] = _absent(name)
        else:
            tables[name], events[name], details[name] = note_modality(notes, name, stays, config, quarantine)
    tables["demographics"] = demographics_table(raw, stays, admissions, config, quarantine)
    events["demographics"] = pd.DataFrame({"stay_id": tables["demographics"]["stay_id"], "time_hours": 0.0})

    missing_source = {"cxr": cxr is None, "discharge_note": notes is None, "radiology_note": notes is None}
    for name in MODALITIES:
        stays[f"has_{name}"] = stays["stay_id"].isin(tables[name]["stay_id"]).astype(bool)
        step = _MODALITY_STEPS[name]
        if missing_source.get(name, False):
            step = f"not provided ({'cxr' if name == 'cxr' else 'notes'}=None): absent for every stay"
        # a modality step removes no stay: it says how many have the modality (the last step removes)
        funnel.append({"step": f"{name}: {step}", "removed": 0, "remaining": len(stays),
                       "stays_with_modality": int(stays[f"has_{name}"].sum()), "detail": details.get(name, {})})
    present = stays[[f"has_{m}" for m in MODALITIES]].any(axis=1)
    funnel.append({"step": "no modality present", "removed": int((~present).sum()), "remaining": int(present.sum())})
    return _cohort_tables(stays[present], tables, events, funnel, quarantine)


def _cohort_tables(stays: pd.DataFrame, tables: dict, events: dict, funnel: list[dict],
                   quarantine: Quarantine) -> CohortTables:
    """The final CohortTables: everything restricted to the cohort and sorted by stay_id."""
    stays = stays.sort_values("stay_id", kind="stable").reset_index(drop=True)
    stays.insert(1, "patient_id", stays.pop("subject_id").astype("string"))
    labels = ["died", *[c for c in stays.columns if c.startswith(PHENOTYPE_PREFIX)]]
    stays = stays[["stay_id", "patient_id", "hadm_id", "intime", *labels, *[f"has_{m}" for m in MODALITIES]]]
    ids = stays["stay_id"]

    def restrict(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
        frame = frame[frame["stay_id"].isin(ids)].sort_values(order, kind="stable").reset_index(drop=True)
        return frame.astype({"stay_id": "int64"})

    modalities = {m: restrict(tables[m], ["stay_id"]) for m in MODALITIES}
    timelines = {m: restrict(events[m], ["stay_id", "time_hours"]) for m in MODALITIES}
    log.info("MIMIC-IV cohort: %d stays; %s", len(stays),
             ", ".join(f"{m} {int(stays[f'has_{m}'].sum())}" for m in MODALITIES))
    return CohortTables(MODALITIES, stays, modalities, funnel, quarantine, events=timelines,
                        label_columns=tuple(labels))
