"""MIMIC-IV v2.2 (+ MIMIC-CXR-JPG 2.0.0, MIMIC-IV-Note 2.2) raw files to the cohort,
labels and five modality tables (paper appendix A.1, A.2).

Layout: `raw` holds `hosp/` and `icu/`; `cxr` is the MIMIC-CXR-JPG root
(`mimic-cxr-2.0.0-metadata.csv.gz`, `files/`); `notes` is the MIMIC-IV-Note root
(`note/discharge.csv.gz`, `note/radiology.csv.gz`). `cxr` / `notes` may be None:
that modality is then absent for every stay, and the funnel says so.

Cohort: the ICU stays of `icu/icustays` with a valid stay_id and intime < outtime,
of subjects in the MIMIC-CXR metadata (the paper's inner join of the CXR metadata
and icustays on subject_id; `MimicConfig.require_cxr_subject`, applied when `cxr`
is given), kept when they have at least one modality. Everything per stay is
computed on those stays first; the last funnel step drops the stays with none.

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
  verbal and motor when the three are charted at the same time. Both event tables
  are streamed (pyarrow, a read-ahead thread): memory grows with the cohort's
  measurements, not with the tables (`bench/etl.py`). A bin is an event at the time
  it closes (its end, or the stay's end for the last one): only then are its
  measurements all known.
* cxr: the paper's join of the CXR metadata and icustays on subject_id; an image
  counts for a stay when StudyDate+StudyTime is strictly inside (intime, outtime)
  and ViewPosition is AP. Every such image is an event at its study time; the
  per-stay table takes the most recent one of a window (`data.modalities`).
* discharge_note / radiology_note: notes of the stay's admission (subject_id,
  hadm_id), cleaned (`clean_note_text`), one event per note at charttime - intime: it
  may be negative (charted before the ICU stay) or beyond outtime (discharge
  summaries are charted at discharge). Several ICU stays of one admission share its
  notes. Which notes a task sees is its window's business (`data.windows`).
* demographics: admission type and location, insurance, language, marital
  status, race (admissions), gender, age group (patients), raw strings, plus the
  numeric age (`MimicConfig.numeric_age`), known at admission (an event at 0);
  imputation / one-hot / z-score are fitted later on the training split
  (`clintraj.data.features`).

Labels: `died` (admissions.hospital_expire_flag) and the 25 phenotypes
`pheno:<name>` from the admission's ICD-9 / ICD-10 codes
(`resources/phenotypes.yaml`); NA when the admission has no row to read them from.

Outputs (sorted by stay_id): `stays` has stay_id, patient_id (subject_id as
text), hadm_id, intime (a date: for internal use only, never written or logged),
the labels and unit_hours. `events["time_series"]` holds one row per bin with a
measurement (time_hours = when the bin closes, the 17 imputed values,
`mask:<variable>`); the per-stay summaries are `data.modalities.summarise` of a
window's bins.

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

import contextlib
import logging
import math
import queue
import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import yaml
from tqdm.auto import tqdm

from clintraj.data import mimic_tables as mt
from clintraj.data.cohort import CohortTables
from clintraj.data.modalities import Modality
from clintraj.data.rawio import Quarantine, RawDataError, check_columns, read_table, stream_table, table_path
from clintraj.tasks import PHENOTYPE_PREFIX

log = logging.getLogger(__name__)

MODALITIES = (
    Modality("time_series", "time_series"), Modality("cxr", "image"),
    Modality("discharge_note", "text", after_stay=True),  # a summary written at hospital discharge
    Modality("radiology_note", "text"), Modality("demographics", "static"),
)
MODALITY_BY_NAME = {m.name: m for m in MODALITIES}
MODALITY_NAMES = tuple(m.name for m in MODALITIES)
DEMOGRAPHIC_COLUMNS = (
    "admission_type", "admission_location", "insurance", "language", "marital_status", "race", "gender", "age_group",
)
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
    fio2_percent_to_fraction: bool = True  # FiO2 > 1 is a percentage: divide by 100
    cxr_views: tuple[str, ...] = ("AP",)
    cxr_require_file: bool = True  # an image counts only when its JPEG exists below the cxr root
    require_cxr_subject: bool = True  # cohort: stays of subjects in the CXR metadata (ignored when cxr is None)
    age_edges: tuple[int, ...] = (18, 30, 40, 50, 60, 70, 80)  # groups 18-29, ..., 70-79, 80+
    numeric_age: bool = True  # also keep the age in years (a number) next to the age group
    chunk_rows: int = 1_000_000  # rows per streamed chunk (chartevents / labevents: about, in blocks <= 4 MiB)
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


def cxr_linked_stays(stays: pd.DataFrame, cxr: Path | None, config: MimicConfig,
                     funnel: list[dict]) -> pd.DataFrame:
    """The paper's cohort (appendix A.1): the stays of subjects with at least one row in the
    MIMIC-CXR metadata (inner join on subject_id), when `cxr` is given and
    `require_cxr_subject` is set; a funnel step either way."""
    step = "subject without a row in the MIMIC-CXR metadata (inner join on subject_id)"
    if cxr is None or not config.require_cxr_subject:
        why = "cxr=None" if cxr is None else "require_cxr_subject=False"
        funnel.append({"step": f"{step}: not applied ({why})", "removed": 0, "remaining": len(stays)})
        return stays
    subjects = list(_csv_batches(Path(cxr), _CXR_METADATA, ["subject_id"], config.chunk_rows,
                                 lambda _, batch: _integers(batch.column("subject_id"))))
    linked = stays["subject_id"].isin(np.unique(np.concatenate([np.zeros(0, dtype="int64"), *subjects])))
    funnel.append({"step": step, "removed": int((~linked).sum()), "remaining": int(linked.sum())})
    return stays[linked].reset_index(drop=True)


# --- labels ----------------------------------------------------------------------------


def read_admissions(raw: Path, quarantine: Quarantine) -> pd.DataFrame:
    """admissions rows indexed by hadm_id, with `row` (the file's data row). A row whose
    hadm_id is missing or repeats an earlier row's is quarantined."""
    columns = ["hadm_id", "admittime", "dischtime", *DEMOGRAPHIC_COLUMNS[:6], "hospital_expire_flag"]
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
_CODE = {name: k for k, name in enumerate(mt.VARIABLES)}  # a variable's code: its index in mt.VARIABLES
_IS_CATEGORICAL = np.array([name in mt.CATEGORICAL_VARIABLES for name in mt.VARIABLES])
_GCS_PART_CODES = np.array([_CODE[name] for name in _GCS_PARTS])  # ascending, in _GCS_PARTS order
_ITEMS = np.array(sorted(mt.ITEMID_TO_VARIABLE), dtype="int64")  # chartevents and labevents item ids
_ITEM_CODE = np.array([_CODE[mt.ITEMID_TO_VARIABLE[i]] for i in _ITEMS], dtype="int8")
_BYTES_PER_ROW = 64  # pyarrow reads blocks of about chunk_rows rows (a chartevents row is ~95 bytes) ...
_MAX_BLOCK_BYTES = 4 << 20  # ... of at most 4 MiB


def normal_values() -> dict[str, float]:
    """Each variable's normal value as a number (categorical labels mapped to their code)."""
    return dict(_NUMERIC_NORMAL)


def _stay_times(stays: pd.DataFrame) -> pd.DataFrame:
    """Per cohort stay (index stay_id, sorted): subject_id, intime, outtime."""
    return stays.set_index("stay_id")[["subject_id", "intime", "outtime"]].sort_index()


def _with_nat(times: pd.Series) -> np.ndarray:
    """The times as datetime64[us], and NaT at -1: the time of a row without a stay (pos -1)."""
    return np.append(times.to_numpy().astype("datetime64[us]"), np.datetime64("NaT", "us"))


def _positions(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in `sorted_ids`, -1 where it is not there."""
    if not len(sorted_ids):
        return np.full(len(values), -1, dtype="int64")
    at = np.searchsorted(sorted_ids, values).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[at] == values, at, -1)


def assign_stays(subject: np.ndarray, time: np.ndarray, windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(stay_id or -1, number of stays matched) per row: the subject's stays whose
    [intime, outtime] contains the time."""
    left = pd.DataFrame({"subject_id": np.asarray(subject, dtype="int64"), "t": np.asarray(time),
                         "pos": np.arange(len(subject))})
    right = windows.reset_index()[["subject_id", "stay_id", "intime", "outtime"]]
    pairs = left.merge(right, on="subject_id")
    pairs = pairs[(pairs["t"] >= pairs["intime"]) & (pairs["t"] <= pairs["outtime"])]
    count = np.bincount(pairs["pos"].to_numpy(), minlength=len(subject))
    stay = np.full(len(subject), -1, dtype="int64")
    unique = pairs[count[pairs["pos"].to_numpy()] == 1]
    stay[unique["pos"].to_numpy()] = unique["stay_id"].to_numpy()
    return stay, count


# Raw text -> numbers, column by column. pyarrow's casts are the fast path; a chunk they
# refuse (a stray 'n/a', a padded number, an odd date) goes through pandas as before.


def _integers(text: pa.Array) -> np.ndarray:
    """int64 per row of a text column; -1 where blank or not a whole number."""
    try:
        return pc.fill_null(pc.cast(text, pa.int64()), -1).to_numpy()
    except pa.ArrowInvalid:
        number = _floats(text)
        whole = np.isfinite(number) & (number == np.floor(number))
        return np.where(whole, number, -1).astype("int64")


def _floats(text: pa.Array) -> np.ndarray:
    """float64 per row of a text column; NaN where blank, not a number or not finite."""
    try:
        number = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        number = pd.to_numeric(text.to_pandas(), errors="coerce").astype("float64").to_numpy()
    return np.where(np.isfinite(number), number, np.nan)


def _datetimes(text: pa.Array) -> np.ndarray:
    """datetime64[us] per row of a 'YYYY-MM-DD[ HH:MM:SS]' text column; NaT where blank or
    unparseable (`parse_datetime`'s rules)."""
    try:
        return pc.cast(text, pa.timestamp("us")).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return parse_datetime(text.to_pandas()).to_numpy().astype("datetime64[us]")


def _answers(text: pa.Array, mapping) -> np.ndarray:
    """float64 code of each text answer (`mapping`), NaN for any other text or a blank."""
    index = pc.index_in(text, value_set=pa.array(list(mapping), pa.string())).to_numpy(zero_copy_only=False)
    codes = np.array([float(v) for v in mapping.values()] + [np.nan])
    return codes[np.where(np.isnan(index), len(mapping), index).astype("int64")]


class _ReadAhead:
    """The items of an iterator, produced by a daemon thread up to `depth` ahead: pyarrow
    (decompressing, parsing, computing) releases the GIL, so that work overlaps the
    consumer's. An error of the producer is raised by `get`; after `close`, `get` gives
    its default."""

    def __init__(self, items: Iterator, depth: int):
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), name="clintraj-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(entry, timeout=0.1)
                return True
        return False

    def _produce(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put((True, item)):
                    return
            self._put((False, None))
        except BaseException as error:  # handed to the consumer
            self._put((False, error))

    def get(self, default=None):
        while not self._stop.is_set():
            try:
                more, item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if more:
                return item
            self._stop.set()
            if item is not None:
                raise item
        return default

    def close(self) -> None:
        self._stop.set()
        self._thread.join()  # it stops at its next item


def _csv_batches(raw: Path, relative: str, columns: list[str], chunk_rows: int,
                 prepare: Callable[[int, pa.RecordBatch], object]) -> Iterator:
    """`prepare(first data row, record batch)` over the batches of a large raw table,
    streamed ahead of the caller by one thread: pyarrow decompresses and parses blocks of
    about `chunk_rows` rows (4 MiB at most), converting only `columns` (as text, blank ->
    null), and `prepare` runs there too. Memory: a few blocks, whatever the table's size."""
    path = table_path(raw, relative)
    check_columns(path, columns)
    read = pacsv.ReadOptions(block_size=int(np.clip(chunk_rows * _BYTES_PER_ROW, 1 << 16, _MAX_BLOCK_BYTES)))
    convert = pacsv.ConvertOptions(include_columns=columns, column_types=dict.fromkeys(columns, pa.string()),
                                   null_values=[""], strings_can_be_null=True)
    parse = pacsv.ParseOptions(newlines_in_values=True)

    def prepared(reader: pacsv.CSVStreamingReader) -> Iterator:
        start = 0
        for batch in reader:
            yield prepare(start, batch)
            start += batch.num_rows

    try:  # a path ending in .gz is decompressed by pyarrow
        reader = pacsv.open_csv(str(path), read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None
    with reader:
        batches = _ReadAhead(prepared(reader), depth=2)
        try:
            while (item := _next_batch(batches, path)) is not None:
                yield item
        finally:
            batches.close()  # the thread stops reading before the reader closes
    pa.default_memory_pool().release_unused()  # the blocks' memory back to the system


def _next_batch(batches: _ReadAhead, path: Path):
    """The next prepared batch, or None at the end. A broken file is a RawDataError that,
    unlike pyarrow's, does not quote the offending line (ids, dates)."""
    try:
        return batches.get()
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> RawDataError:
    return RawDataError(f"{path}: unreadable CSV ({type(error).__name__})")


def _item_set(items: dict[str, tuple[int, ...]]) -> pa.Array:
    return pa.array(sorted({str(i) for ids in items.values() for i in ids}), pa.string())


class _Columns(dict):
    """Equal-length numpy columns, filtered or reordered together (`rows`: a boolean mask
    or positions)."""

    def where(self, rows: np.ndarray) -> "_Columns":
        return _Columns({name: column[rows] for name, column in self.items()})

    @staticmethod
    def concat(parts: list["_Columns"]) -> "_Columns":
        return _Columns({name: np.concatenate([part[name] for part in parts]) for name in parts[0]})


def _no_rows() -> _Columns:
    """No measurement: pos (the stay's place in the windows), offset (microseconds from
    intime), itemid, code (the variable's), value, source (0 chartevents, 1 labevents) and
    row (the file's data row)."""
    dtypes = {"pos": "int64", "offset": "int64", "itemid": "int64", "code": "int8", "value": "float64",
              "source": "int8", "row": "int64"}
    return _Columns({name: np.zeros(0, dtype=dtype) for name, dtype in dtypes.items()})


def resolve_values(code: np.ndarray, number: np.ndarray,
                   text: Callable[[np.ndarray], pa.Array]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Numbers for raw rows of the 17 variables (`code`: index in mt.VARIABLES, `number`:
    valuenum, `text(rows)`: the stripped text value of those rows), NaN where there is none,
    and those rows by quarantine reason. Numeric variables: valuenum (else the text value
    if it is a number); GCS: the score in valuenum (else the text answer, mapped); capillary
    refill: the text answer (else valuenum 0/1)."""
    value = number.copy()
    numeric = ~_IS_CATEGORICAL[code]
    need = numeric & np.isnan(value)
    if need.any():
        value[need] = _floats(text(need))
    reasons = {"valuenum missing or not a finite number": numeric & np.isnan(value)}
    gcs = np.zeros(len(code), dtype=bool)
    for name in _GCS_PARTS:
        rows = code == _CODE[name]
        gcs |= rows
        need = rows & np.isnan(value)
        if need.any():
            value[need] = _answers(text(need), mt.GCS_TEXT_TO_NUMERIC[name])
    reasons["GCS valuenum missing and text not a known answer"] = gcs & np.isnan(value)
    rows = code == _CODE[_CAPILLARY_REFILL]
    if rows.any():
        answer = _answers(text(rows), mt.CAPILLARY_REFILL_TEXT_TO_NUMERIC)
        value[rows] = np.where(np.isnan(answer), np.where(np.isin(number[rows], [0.0, 1.0]), number[rows], np.nan),
                               answer)
    reasons["capillary refill text missing or not a known answer"] = rows & np.isnan(value)
    return value, reasons


@dataclass
class _ItemRows:
    """One raw batch's rows of the variables' items, as `_item_rows` prepares them."""

    read: int  # rows in the raw batch
    batch: pa.RecordBatch  # its rows of the items (of cohort stays or subjects)
    columns: _Columns  # row, at (the row in `batch`), itemid, code, t, value, and stay + blank + pos or subject
    reasons: dict[str, np.ndarray]  # the rows without a value, by quarantine reason
    other_stays: int = 0  # rows dropped: of a stay outside the cohort (with a parseable charttime)


def _item_rows(start: int, batch: pa.RecordBatch, itemids: pa.Array, stays: tuple[str, np.ndarray] | None = None,
               subjects: np.ndarray | None = None) -> _ItemRows:
    """(Run by the read-ahead thread.) The batch's rows whose itemid is one of `itemids`
    as numpy columns, their values resolved; `row` is the data row in the file. Given
    `stays` (the stay_id column, the cohort's sorted stay ids): `stay` / `blank` that
    column's number / blankness, `pos` the stay's place in the ids (-1: none), and the
    rows of other stays dropped (counted) unless their charttime is unparseable. Given
    `subjects`: `subject`, and the rows of other subjects dropped."""
    read = batch.num_rows
    item = pc.utf8_trim_whitespace(batch.column("itemid"))
    positions = np.flatnonzero(pc.is_in(item, value_set=itemids).to_numpy(zero_copy_only=False))
    if len(positions) < read:
        batch, item = batch.take(positions), item.take(positions)
    t = _datetimes(batch.column("charttime"))
    keep, other_stays, extra = None, 0, {}
    if stays is not None:
        stay_column, ids = stays
        extra["stay"] = _integers(batch.column(stay_column)).copy()
        extra["blank"] = batch.column(stay_column).is_null().to_numpy(zero_copy_only=False)
        extra["pos"] = _positions(ids, extra["stay"])
        other = ~np.isnat(t) & ~extra["blank"] & (extra["stay"] >= 0) & (extra["pos"] < 0)
        keep, other_stays = ~other, int(other.sum())
    if subjects is not None:
        extra["subject"] = _integers(batch.column("subject_id"))
        keep = np.isin(extra["subject"], subjects)
    if keep is not None and not keep.all():
        batch, item, t, positions = batch.filter(keep), item.filter(keep), t[keep], positions[keep]
        extra = {name: column[keep] for name, column in extra.items()}
    itemid = _integers(item)
    code = _ITEM_CODE[np.searchsorted(_ITEMS, itemid)]
    columns = _Columns(row=start + positions, at=np.arange(batch.num_rows), itemid=itemid, code=code, t=t, **extra)
    texts = batch.column("value") if "value" in batch.schema.names else None

    def text(rows: np.ndarray) -> pa.Array:
        if texts is None:
            return pa.nulls(int(rows.sum()), pa.string())
        return pc.utf8_trim_whitespace(texts.take(columns["at"][rows]))

    columns["value"], reasons = resolve_values(code, _floats(batch.column("valuenum")), text)
    return _ItemRows(read, batch, columns, reasons, other_stays)


def _measurements(rows: _ItemRows, pos: np.ndarray, keep: np.ndarray, intime: np.ndarray, source: int,
                  table: str, quarantine: Quarantine) -> _Columns:
    """The kept rows (`pos`: their stay's place in the windows) that have a value, as
    measurements (see `_no_rows`); the kept ones without a value quarantined."""
    for reason, bad in rows.reasons.items():
        quarantine.add(table, reason, rows.columns["row"][keep & bad])
    keep = keep & ~np.isnan(rows.columns["value"])
    kept = rows.columns.where(keep)
    at = pos[keep]
    return _Columns(pos=at, offset=(kept["t"] - intime[at]) // np.timedelta64(1, "us"), itemid=kept["itemid"],
                    code=kept["code"], value=kept["value"], source=np.full(len(at), source, dtype="int8"),
                    row=kept["row"])


def _chart_columns(config: MimicConfig) -> list[str]:
    if config.chartevents_stand_in:
        return ["subject_id", "stay_id_inferred", "charttime", "itemid", "valuenum"]
    return ["subject_id", "stay_id", "charttime", "itemid", "value", "valuenum"]


def chart_measurements(raw: Path, windows: pd.DataFrame, config: MimicConfig, quarantine: Quarantine,
                       detail: dict) -> list[_Columns]:
    """Rows of icu/chartevents for the 17 variables' items, inside their cohort stay.
    With the stand-in, a row without stay_id is placed by (subject, charttime)."""
    itemids = _item_set(mt.CHART_ITEMIDS)
    stays = ("stay_id_inferred" if config.chartevents_stand_in else "stay_id", windows.index.to_numpy())
    intime, outtime = (_with_nat(windows[c]) for c in ("intime", "outtime"))
    parts = []
    batches = _csv_batches(raw, _CHART, _chart_columns(config), config.chunk_rows,
                           lambda start, batch: _item_rows(start, batch, itemids, stays=stays))
    for rows in tqdm(batches, desc="MIMIC chartevents", unit="chunk", disable=not config.progress):
        chunk = rows.columns
        detail["chartevents rows read"] += rows.read
        detail["chartevents rows of the variables' items"] += len(chunk["row"]) + rows.other_stays
        detail["chartevents rows of stays outside the cohort"] += rows.other_stays
        # each check on the rows that passed the ones before
        row, t, stay, pos = chunk["row"], chunk["t"], chunk["stay"], chunk["pos"]
        parsed = ~np.isnat(t)
        quarantine.add(_CHART, "charttime missing or unparseable", row[~parsed])
        blank = chunk["blank"] & parsed
        if blank.any():
            subject = _integers(rows.batch.column("subject_id").take(chunk["at"][blank]))
            stay[blank], count = assign_stays(subject, t[blank], windows)
            pos[blank] = _positions(stays[1], stay[blank])
            quarantine.add(_CHART, "stay_id blank and charttime in no ICU stay of the subject", row[blank][count == 0])
            quarantine.add(_CHART, "stay_id blank and charttime in several ICU stays of the subject",
                           row[blank][count > 1])
            detail["chartevents rows placed in a stay by subject and charttime"] += int((count == 1).sum())
        quarantine.add(_CHART, "stay_id not a number", row[parsed & ~chunk["blank"] & (stay < 0)])
        placed = parsed & (pos >= 0)
        outside = placed & ((t < intime[pos]) | (t > outtime[pos]))
        quarantine.add(_CHART, "charttime outside the stay", row[outside])
        parts.append(_measurements(rows, pos, placed & ~outside, intime, 0, _CHART, quarantine))
    return parts


def lab_measurements(raw: Path, windows: pd.DataFrame, config: MimicConfig, quarantine: Quarantine,
                     detail: dict) -> list[_Columns]:
    """Rows of hosp/labevents for the lab items of the variables, placed in the cohort stay
    whose [intime, outtime] holds their charttime (labs carry no stay_id). Labs outside every
    ICU stay are ward or outpatient results: filtered and counted, not quarantined."""
    itemids = _item_set(mt.LAB_ITEMIDS)
    subjects = windows["subject_id"].unique()
    ids, intime = windows.index.to_numpy(), _with_nat(windows["intime"])
    parts = []
    columns = ["subject_id", "charttime", "itemid", "value", "valuenum"]
    batches = _csv_batches(raw, _LAB, columns, config.chunk_rows,
                           lambda start, batch: _item_rows(start, batch, itemids, subjects=subjects))
    for rows in tqdm(batches, desc="MIMIC labevents", unit="chunk", disable=not config.progress):
        chunk = rows.columns
        row, t = chunk["row"], chunk["t"]
        detail["labevents rows of the variables' items for cohort subjects"] += len(row)
        parsed = ~np.isnat(t)
        quarantine.add(_LAB, "charttime missing or unparseable", row[~parsed])
        stay, count = np.full(len(t), -1), np.zeros(len(t), dtype="int64")
        stay[parsed], count[parsed] = assign_stays(chunk["subject"][parsed], t[parsed], windows)
        detail["labevents rows outside every ICU stay (not ICU data)"] += int((parsed & (count == 0)).sum())
        quarantine.add(_LAB, "charttime in several ICU stays of the subject", row[count > 1])
        pos = _positions(ids, stay)
        parts.append(_measurements(rows, pos, count == 1, intime, 1, _LAB, quarantine))
    return parts


def _runs(*keys: np.ndarray) -> np.ndarray:
    """0-based run number of each row: a new run starts where any key changes."""
    if not len(keys[0]):
        return np.zeros(0, dtype="int64")
    change = np.zeros(len(keys[0]), dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.cumsum(change) - 1


def _time_order(rows: _Columns) -> np.ndarray:
    """Stable order of measurements by stay, then time: rows of one time keep their order
    (chartevents, as concatenated first, before labevents; each in file order)."""
    pos, offset = rows["pos"], rows["offset"]  # offset >= 0: every row is inside its stay
    span = int(offset.max()) + 1 if len(offset) else 1
    if not len(pos) or int(pos.max()) < (2**62) // span:  # one int64 key: a near-linear sort of nearly sorted rows
        return np.argsort(pos * span + offset, kind="stable")
    return np.lexsort((offset, pos))


def _drop_duplicates(rows: _Columns, quarantine: Quarantine) -> _Columns:
    """Quarantine repeats of (stay, charttime, item, value) within a table; keep the first.
    `rows` are in time order, so a repeat shares its (stay, charttime, source) run: only the
    rows whose (run, item) is not unique are compared by value."""
    run = _runs(rows["pos"], rows["offset"], rows["source"])
    key = run * len(_ITEMS) + np.searchsorted(_ITEMS, rows["itemid"])
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    shared = np.zeros(len(key), dtype=bool)
    shared[order[1:][same]] = True
    shared[order[:-1][same]] = True
    repeated = np.zeros(len(key), dtype=bool)
    if shared.any():
        pairs = pd.DataFrame({"key": key[shared], "value": rows["value"][shared]})
        repeated[shared] = pairs.duplicated(keep="first").to_numpy()
    for source, table in ((0, _CHART), (1, _LAB)):
        quarantine.add(table, "duplicate row (same stay, charttime, item and value)",
                       rows["row"][repeated & (rows["source"] == source)])
    return rows.where(~repeated) if repeated.any() else rows


def gcs_totals(rows: _Columns) -> _Columns:
    """GCS total rows: eye + motor + verbal where all three are charted at the same time
    (the last value of each part at that time). `rows` are in time order."""
    parts = rows.where(np.isin(rows["code"], _GCS_PART_CODES))
    if not len(parts["pos"]):
        return _no_rows()
    run = _runs(parts["pos"], parts["offset"])
    key = run * 3 + np.searchsorted(_GCS_PART_CODES, parts["code"])
    order = np.argsort(key, kind="stable")
    last = order[np.r_[key[order][1:] != key[order][:-1], True]]
    table = np.full((run[-1] + 1, 3), np.nan)
    table[key[last] // 3, key[last] % 3] = parts["value"][last]
    complete = ~np.isnan(table).any(axis=1)
    first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])[complete]
    n = len(first)
    return _Columns(pos=parts["pos"][first], offset=parts["offset"][first], itemid=np.full(n, -1),
                    code=np.full(n, _CODE[_GCS_TOTAL], dtype="int8"), value=table[complete].sum(axis=1),
                    source=np.zeros(n, dtype="int8"), row=np.full(n, -1))


def convert_units(itemid: np.ndarray, code: np.ndarray, value: np.ndarray, config: MimicConfig) -> np.ndarray:
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
        percent = (code == _CODE["Fraction inspired oxygen"]) & (value > 1.0)
        value[percent] = value[percent] / 100.0
    fraction = (code == _CODE["Oxygen saturation"]) & (value <= 1.0)
    value[fraction] = value[fraction] * 100.0
    return value


def load_measurements(raw: Path, stays: pd.DataFrame, config: MimicConfig,
                      quarantine: Quarantine) -> tuple[pd.DataFrame, dict]:
    """Clean measurements (stay_id, hours from intime, variable, value), in time order, and
    the counts of rows filtered on the way."""
    windows = _stay_times(stays)
    detail = _Counter()
    parts = chart_measurements(raw, windows, config, quarantine, detail)
    if config.use_labevents:
        parts += lab_measurements(raw, windows, config, quarantine, detail)
    rows = _Columns.concat([_no_rows(), *parts])
    del parts  # (each step below lets go of the rows before it)
    rows = rows.where(_time_order(rows))
    rows = _drop_duplicates(rows, quarantine)
    rows["value"] = convert_units(rows["itemid"], rows["code"], rows["value"], config)
    rows = _Columns.concat([gcs_totals(rows), rows])  # first: a total goes before the rows of its time
    rows = rows.where(_time_order(rows))
    hours = rows["offset"] / 3.6e9
    # a value charted exactly at the stay's end belongs to the last bin, not a new one
    length = (windows["outtime"] - windows["intime"]).to_numpy() / np.timedelta64(1, "h")
    last_bin = np.maximum(np.ceil(length / config.bin_hours) - 1, 0)
    hours = np.minimum(hours, last_bin[rows["pos"]] * config.bin_hours)
    measurements = pd.DataFrame({
        "stay_id": windows.index.to_numpy()[rows["pos"]], "hours": hours,
        "variable": pd.Categorical.from_codes(rows["code"], categories=list(mt.VARIABLES)), "value": rows["value"],
    })
    return measurements, dict(detail)


def discretize(measurements: pd.DataFrame, bin_hours: float = 1.0) -> pd.DataFrame:
    """Hourly events from measurements (stay_id, hours, variable, value; time-ordered within a
    stay): one row per bin with a measurement, time_hours = bin start. A bin holds the mean of
    its values (categorical variables: the last); then carry-forward within the stay, and the
    normal value where a variable has no earlier value in the stay. `mask:<variable>` says
    which were measured in the bin."""
    code = pd.Categorical(measurements["variable"], categories=list(mt.VARIABLES)).codes
    value = measurements["value"].to_numpy("float64")
    known = (code >= 0) & ~np.isnan(value)
    stay = measurements["stay_id"].to_numpy("int64")[known]
    bins = np.floor(measurements["hours"].to_numpy("float64")[known] / bin_hours).astype("int64")
    code, value = code[known], value[known]
    if ((stay[1:] < stay[:-1]) | ((stay[1:] == stay[:-1]) & (bins[1:] < bins[:-1]))).any():
        order = np.lexsort((bins, stay))  # stable: the time order within a bin stays
        stay, bins, code, value = stay[order], bins[order], code[order], value[order]
    event = _runs(stay, bins)  # one event per (stay, bin)
    first = np.flatnonzero(np.r_[True, event[1:] != event[:-1]]) if len(event) else np.zeros(0, dtype="int64")
    n_events = len(first)
    event_stay = stay[first]
    new_stay = np.r_[True, event_stay[1:] != event_stay[:-1]] if n_events else np.zeros(0, dtype=bool)
    stay_start = np.maximum.accumulate(np.where(new_stay, np.arange(n_events), 0)) if n_events else first
    columns = {"stay_id": event_stay, "time_hours": bins[first].astype("float64") * bin_hours}
    masks = {}
    by_variable = np.argsort(code, kind="stable")  # stable: each variable's rows stay in time order
    bounds = np.searchsorted(code[by_variable], np.arange(len(mt.VARIABLES) + 1))
    for k, name in enumerate(mt.VARIABLES):
        rows = by_variable[bounds[k]:bounds[k + 1]]
        e, v = event[rows], value[rows]
        starts = np.flatnonzero(np.r_[True, e[1:] != e[:-1]]) if len(e) else np.zeros(0, dtype="int64")
        if not len(v):
            binned = v
        elif name in mt.CATEGORICAL_VARIABLES:
            binned = v[np.r_[starts[1:] - 1, len(v) - 1]]  # the last value of the bin
        else:
            binned = np.add.reduceat(v, starts) / np.diff(np.r_[starts, len(v)])
        measured = np.zeros(n_events, dtype=bool)
        measured[e[starts]] = True
        own = np.full(n_events, np.nan)
        own[e[starts]] = binned
        latest = np.maximum.accumulate(np.where(measured, np.arange(n_events), -1)) if n_events else first
        columns[name] = np.where(latest >= stay_start, own[latest], _NUMERIC_NORMAL[name])
        masks[f"mask:{name}"] = measured
    return pd.DataFrame({**columns, **masks}, copy=False)


def time_series(raw: Path, stays: pd.DataFrame, config: MimicConfig,
                quarantine: Quarantine) -> tuple[pd.DataFrame, dict]:
    """(hourly events, filtering counts) of the 17 variables; each bin at the time it closes."""
    measurements, detail = load_measurements(raw, stays, config, quarantine)
    events = discretize(measurements, config.bin_hours)
    length = stays.set_index("stay_id")["unit_hours"].reindex(events["stay_id"]).to_numpy()
    events["time_hours"] = np.minimum(events["time_hours"].to_numpy() + config.bin_hours, length)
    return events, detail


# --- CXR -------------------------------------------------------------------------------

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
                 quarantine: Quarantine) -> tuple[pd.DataFrame, dict]:
    """The paper's CXR selection as events: metadata joined to the cohort stays on subject_id, images
    strictly inside (intime, outtime), views in `cxr_views`, each at its study time (a window's
    per-stay table takes its most recent one)."""
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
    chosen["time_hours"] = (chosen["t"] - chosen["intime"]) / _HOUR
    events = chosen.sort_values(["stay_id", "time_hours", "dicom_id"], kind="stable")[list(CXR_EVENT_COLUMNS)]
    return events.reset_index(drop=True), dict(detail)


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
                  quarantine: Quarantine) -> tuple[pd.DataFrame, dict]:
    """One event per note (stay_id, time_hours, note_index: its place in the admission's notes in
    charttime order, text) of each stay's admission (subject_id, hadm_id), and filtering counts."""
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
    base = stays[["stay_id", "subject_id", "hadm_id", "intime", "dischtime"]].dropna(subset=["hadm_id"])
    base = base.astype({"hadm_id": "int64"})
    events = base.merge(notes, on=["subject_id", "hadm_id"]).sort_values(["stay_id", "note_index"], kind="stable")
    if MODALITY_BY_NAME[name].after_stay:  # written at hospital discharge: known then, whatever its charttime
        events["t"] = events["t"].where(~(events["dischtime"] > events["t"]), events["dischtime"])
    events["time_hours"] = (events["t"] - events["intime"]) / _HOUR
    events = events[["stay_id", "time_hours", "note_index", "text"]].reset_index(drop=True)
    return events.astype({"text": "string"}), dict(detail)


# --- the cohort --------------------------------------------------------------------------


def _absent(name: str) -> pd.DataFrame:
    """The (empty) events of a modality whose source was not given."""
    if name == "cxr":
        return pd.DataFrame({"stay_id": pd.Series(dtype="int64"), "time_hours": pd.Series(dtype="float64"),
                             "dicom_id": pd.Series(dtype="string"), "study_id": pd.Series(dtype="int64"),
                             "path": pd.Series(dtype="string")})
    return pd.DataFrame({"stay_id": pd.Series(dtype="int64"), "time_hours": pd.Series(dtype="float64"),
                         "note_index": pd.Series(dtype="int64"), "text": pd.Series(dtype="string")})


_MODALITY_STEPS = {
    "time_series": "stays with a measurement of the 17 variables inside the stay",
    "cxr": "stays with an AP chest X-ray strictly inside the stay",
    "discharge_note": "stays whose admission has a discharge note",
    "radiology_note": "stays whose admission has a radiology report",
    "demographics": "stays with a known admission or patient field",
}


def build(raw: Path, cxr: Path | None, notes: Path | None, config: MimicConfig | None = None) -> CohortTables:
    """Cohort, labels and the events of every modality of one raw MIMIC-IV folder, with the
    MIMIC-CXR-JPG and MIMIC-IV-Note roots when given (None: that modality is absent)."""
    config = config or MimicConfig()
    raw = Path(raw)
    quarantine = Quarantine()
    stays, funnel = load_stays(raw, quarantine)
    stays = cxr_linked_stays(stays, cxr, config, funnel)
    stays["unit_hours"] = (stays["outtime"] - stays["intime"]) / _HOUR
    admissions = read_admissions(raw, quarantine)
    stays["dischtime"] = parse_datetime(admissions["dischtime"].reindex(stays["hadm_id"]).reset_index(drop=True)
                                        ).set_axis(stays.index)
    stays["died"] = mortality(stays, admissions, quarantine)
    stays = pd.concat([stays, phenotype_labels(raw, stays, config, quarantine)], axis=1)

    events, details = {}, {}
    events["time_series"], details["time_series"] = time_series(raw, stays, config, quarantine)
    if cxr is None:
        events["cxr"] = _absent("cxr")
    else:
        events["cxr"], details["cxr"] = cxr_modality(cxr, stays, config, quarantine)
    for name in ("discharge_note", "radiology_note"):
        if notes is None:
            events[name] = _absent(name)
        else:
            events[name], details[name] = note_modality(notes, name, stays, config, quarantine)
    static = {"demographics": demographics_table(raw, stays, admissions, config, quarantine)}
    events["demographics"] = pd.DataFrame({"stay_id": static["demographics"]["stay_id"], "time_hours": 0.0})

    missing_source = {"cxr": cxr is None, "discharge_note": notes is None, "radiology_note": notes is None}
    has = {}
    for name in MODALITY_NAMES:
        has[name] = stays["stay_id"].isin(events[name]["stay_id"])
        step = _MODALITY_STEPS[name]
        if missing_source.get(name, False):
            step = f"not provided ({'cxr' if name == 'cxr' else 'notes'}=None): absent for every stay"
        # a modality step removes no stay: it says how many have the modality (the last step removes)
        funnel.append({"step": f"{name}: {step}", "removed": 0, "remaining": len(stays),
                       "stays_with_modality": int(has[name].sum()), "detail": details.get(name, {})})
    present = pd.concat(has, axis=1).any(axis=1)
    funnel.append({"step": "no modality present", "removed": int((~present).sum()), "remaining": int(present.sum())})
    return _cohort_tables(stays[present], events, static, funnel, quarantine)


def _cohort_tables(stays: pd.DataFrame, events: dict, static: dict, funnel: list[dict],
                   quarantine: Quarantine) -> CohortTables:
    """The final CohortTables: everything restricted to the cohort and sorted by stay_id."""
    stays = stays.sort_values("stay_id", kind="stable").reset_index(drop=True)
    stays.insert(1, "patient_id", stays.pop("subject_id").astype("string"))
    labels = ["died", *[c for c in stays.columns if c.startswith(PHENOTYPE_PREFIX)]]
    stays = stays[["stay_id", "patient_id", "hadm_id", "intime", *labels, "unit_hours"]]
    ids = stays["stay_id"]

    def restrict(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
        frame = frame[frame["stay_id"].isin(ids)].sort_values(order, kind="stable").reset_index(drop=True)
        return frame.astype({"stay_id": "int64"})

    static = {m: restrict(table, ["stay_id"]) for m, table in static.items()}
    order = {"cxr": ["stay_id", "time_hours", "dicom_id"], "discharge_note": ["stay_id", "time_hours", "note_index"],
             "radiology_note": ["stay_id", "time_hours", "note_index"]}
    timelines = {m: restrict(events[m], order.get(m, ["stay_id", "time_hours"])) for m in MODALITY_NAMES}
    log.info("MIMIC-IV cohort: %d stays; %s", len(stays),
             ", ".join(f"{m} {timelines[m]['stay_id'].nunique()}" for m in MODALITY_NAMES))
    return CohortTables(MODALITIES, stays, timelines, static, funnel, quarantine, label_columns=tuple(labels))
