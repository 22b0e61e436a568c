"""eICU-CRD v2.0 raw files to the cohort, labels and six modalities as events (paper appendix
A.1.1, A.2.1).

Modalities: demographics (patient; known at unit admission), diagnosis, treatment and medication
(one event per row, the term at its offset), lab (one event per result of a frequent lab name)
and APS (apacheApsVar: the worst values of the first 24 h of the unit stay, so known at 24 h;
`aps_available_hours`). Times are hours from unit admission: negative before it, beyond
`unit_hours` after unit discharge. Which events a task sees is decided later, by its window
(`data.windows`); the per-stay tables are aggregations of the events (`data.modalities`).

Memory: the four event tables (39 M lab rows at full eICU) go to disk as they are read, by key
(to find repeated keys a part at a time) then by stay range, sorted (`data.event_parts`), and
`data.prepare` reads them back a range of stays at a time; what stays in memory is per stay.

Cohort: adults 18-89 with parseable age, hospital LoS from the admission and discharge offsets
within [12 h, 720 h], anchored on stays with results of a frequent lab.

Every raw row is accounted for (`rawio.Quarantine`): quarantined when malformed (its own id,
the table's key, or its stay id missing or not a number; its stay unknown to patient.csv.gz;
its key repeated, `rawio.drop_repeated`; its offset missing or not a number; its term or lab
name blank, its lab result not a number; a patient without uniquepid, age or offsets), filtered
when it is not the cohort's (another stay, a rare lab name, the inclusion rules), used
otherwise. apacheApsVar's -1 means "not recorded" and is read as missing; an APS value, height
or weight that is not a number is missing too, counted as a field-level entry.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from clintraj.data import eicu_tables as et
from clintraj.data import rawio
from clintraj.data.cohort import CohortTables
from clintraj.data.event_parts import PartWriter, Parts, key_parts, parts_for, stay_parts
from clintraj.data.modalities import Modality, TermRule, event_frames
from clintraj.data.rawio import (Quarantine, TextCodes, csv_batches, drop_repeated, read_table, to_floats,
                                 to_integers)

MODALITIES = (
    Modality("demographics", "static"), Modality("diagnosis", "terms"), Modality("treatment", "terms"),
    Modality("medication", "terms"), Modality("lab", "values"), Modality("aps", "static"),
)

PATIENT_COLUMNS = [
    "patientunitstayid", "gender", "age", "ethnicity", "hospitaladmitoffset", "hospitaldischargeoffset",
    "hospitaldischargestatus", "unitdischargeoffset", "unittype", "unitadmitsource", "admissionheight", "admissionweight", "uniquepid",
]
_OFFSETS = ["hospitaladmitoffset", "hospitaldischargeoffset", "unitdischargeoffset"]
# The paper's eICU demographics (appendix A.1.2); "extended" adds what the patient table also knows.
DEMOGRAPHICS = {
    "paper": (["gender", "ethnicity"], ["age"]),
    "extended": (["gender", "ethnicity", "unittype", "unitadmitsource"], ["age", "admissionheight", "admissionweight"]),
}
APS_COLUMNS = list(et.APACHE_APS_VARIABLES)
# (table, column holding the event's name, its time offset) of the three term modalities.
TERM_TABLES = {
    "diagnosis": (et.DIAGNOSIS, "diagnosisstring", "diagnosisoffset"),
    "treatment": (et.TREATMENT, "treatmentstring", "treatmentoffset"),
    "medication": (et.MEDICATION, "drugname", "drugstartoffset"),
}
OTHER_STAY = "stay not in the cohort"


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


def _ids(text: pd.Series) -> np.ndarray:
    """int64 of an id column; -1 where blank or not a whole number."""
    return to_integers(pa.array(text, type=pa.string()))


def _floats(text: pd.Series) -> np.ndarray:
    """float64 of a text column; NaN where blank or not a finite number."""
    return to_floats(pa.array(text, type=pa.string()))


def _blank(text: pd.Series) -> np.ndarray:
    """Per row: missing, or only whitespace."""
    if isinstance(text.dtype, pd.CategoricalDtype):  # checked once per category
        blank = np.append(_blank(pd.Series(text.cat.categories)), True)
        return blank[text.cat.codes.to_numpy()]
    trimmed = pc.utf8_trim_whitespace(pa.array(text, type=pa.string()))
    return pc.fill_null(pc.equal(trimmed, ""), True).to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class StayIds:
    known: np.ndarray  # every stay id of a well-formed patient.csv.gz row
    cohort: np.ndarray  # the stays passing the inclusion rules (before the lab anchor)


@dataclass
class FieldFlags:
    """Fields read as missing (a label, a value), by row: entered in the quarantine (field-level)
    for the rows the final cohort uses."""

    parts: list[pd.DataFrame] = field(default_factory=list)

    def add(self, reason: str, stay_id, row, bad) -> None:
        bad = np.asarray(bad, dtype=bool)
        self.parts.append(pd.DataFrame({"reason": reason, "stay_id": np.asarray(stay_id)[bad],
                                        "row": np.asarray(row)[bad]}))

    def enter(self, file: str, cohort: pd.Series, quarantine: Quarantine) -> None:
        for part in self.parts:
            used = part[part["stay_id"].isin(cohort)]
            if len(used):
                quarantine.add(file, used["reason"].iloc[0], used["row"], field_only=True)


def load_cohort(raw: Path, config: EicuConfig, quarantine: Quarantine
                ) -> tuple[pd.DataFrame, list[dict], pd.DataFrame, np.ndarray, FieldFlags]:
    """Stays passing the inclusion rules (before the lab anchor) with labels, the funnel so far, the
    demographics table, the stay ids patient.csv.gz knows and its fields read as missing."""
    file = et.PATIENT.file
    patients = read_table(raw, file, PATIENT_COLUMNS)
    quarantine.count_read(file, len(patients))
    funnel = [{"step": f"stays in {file}", "removed": 0, "remaining": len(patients)}]

    def keep(mask, step: str, quarantined: bool) -> None:
        nonlocal patients
        mask = np.asarray(mask, dtype=bool)
        if quarantined:
            quarantine.add(file, step, patients.index[~mask])
        else:
            quarantine.count_filtered(file, step, (~mask).sum())
        funnel.append({"step": f"{step}{' (quarantined)' if quarantined else ''}", "removed": int((~mask).sum()),
                       "remaining": int(mask.sum())})
        patients = patients[mask]

    patients = patients.assign(stay_id=_ids(patients["patientunitstayid"]))
    keep(patients["stay_id"] >= 0, "patientunitstayid missing or not a whole number", True)
    known = np.unique(patients["stay_id"].to_numpy())
    unique = drop_repeated(patients.assign(row=patients.index), "stay_id", PATIENT_COLUMNS, file, quarantine)
    funnel.append({"step": "patientunitstayid repeated (quarantined)", "removed": len(patients) - len(unique),
                   "remaining": len(unique)})
    patients = patients.loc[unique.index]
    keep(~_blank(patients["uniquepid"]), "uniquepid blank (the patient is unknown)", True)
    patients = patients.assign(**{c: _floats(patients[c]) for c in _OFFSETS})
    keep(patients[_OFFSETS].notna().all(axis=1), "hospitaladmitoffset, hospitaldischargeoffset or "
         "unitdischargeoffset missing or not a number", True)
    keep(parse_age(patients["age"]).notna(), "age missing or not a number", True)
    age = parse_age(patients["age"])
    keep(((age >= config.min_age) & (age <= config.max_age)).to_numpy(),
         f"age outside {config.min_age}-{config.max_age}", False)
    los_hours = (patients["hospitaldischargeoffset"] - patients["hospitaladmitoffset"]) / 60.0
    keep(los_hours.between(config.min_los_hours, config.max_los_hours).to_numpy(),
         f"length of stay outside {config.min_los_hours:g}-{config.max_los_hours:g} h", False)

    flags = FieldFlags()
    status = patients["hospitaldischargestatus"]
    flags.add("hospitaldischargestatus not Alive/Expired (mortality label unknown)", patients["stay_id"],
              patients.index, ~status.isin(["Alive", "Expired"]))
    stays = pd.DataFrame({
        "stay_id": patients["stay_id"].astype("int64"),
        "patient_id": patients["uniquepid"].str.strip().astype("string"),
        "died": status.map({"Alive": 0.0, "Expired": 1.0}).astype("Float64"),
        "los_hours": ((patients["hospitaldischargeoffset"] - patients["hospitaladmitoffset"]) / 60.0).astype(float),
        "unit_hours": patients["unitdischargeoffset"].astype(float) / 60.0,
    })
    categories, numbers = DEMOGRAPHICS[config.demographics]
    demographics = patients[["stay_id", *categories]].copy()
    demographics["age"] = parse_age(patients["age"]).astype(float)
    for column in [c for c in numbers if c != "age"]:  # heights, weights: not a number -> missing, counted
        value = _floats(patients[column])
        flags.add(f"{column} not a number", patients["stay_id"], patients.index,
                  patients[column].notna().to_numpy() & np.isnan(value))
        demographics[column] = value
    return stays.reset_index(drop=True), funnel, demographics.reset_index(drop=True), known, flags


def _cohort_chunks(raw: Path, table: et.Table, columns: list[str], ids: StayIds, config: EicuConfig,
                   quarantine: Quarantine, numbers: tuple[str, ...], codes: dict[str, TextCodes],
                   progress: bool = False) -> Iterator[dict[str, np.ndarray | pa.Array]]:
    """Each chunk of an event table cut to its cohort rows, column -> array: the key, `columns`
    (text; `numbers` of them as float64, NaN where blank or not a number; those in `codes` as
    their `rawio.TextCodes` codes), stay_id and row, its data row. Every other row is counted:
    quarantined when its key or stay id is missing or not a number or its stay unknown to
    patient.csv.gz; filtered when its stay is not in the cohort. The cutting runs in the
    read-ahead thread: at full eICU the lab table is 39 M rows, and only the cohort's numbers and
    codes go on."""
    file, key = table.file, table.key

    def compact(start: int, batch: pa.RecordBatch) -> tuple[int, np.ndarray, np.ndarray, int, dict]:
        own, stay = to_integers(batch.column(key)), to_integers(batch.column("patientunitstayid"))
        row = np.arange(start, start + batch.num_rows, dtype=np.int64)
        malformed = (own < 0) | (stay < 0)
        orphan = ~malformed & ~np.isin(stay, ids.known)
        valid = ~malformed & ~orphan
        cohort = valid & np.isin(stay, ids.cohort)

        def values(column: str):
            text = batch.column(column)
            if column in numbers:
                return to_floats(text)[cohort]
            if column in codes:
                return codes[column].encode(text)[cohort]
            return text.filter(pa.array(cohort))

        arrays = {key: own[cohort], **{c: values(c) for c in columns}, "stay_id": stay[cohort], "row": row[cohort]}
        return batch.num_rows, row[malformed], row[orphan], int((valid & ~cohort).sum()), arrays

    chunks = csv_batches(raw, file, [key, "patientunitstayid", *columns], config.chunk_rows, compact)
    for read, malformed, orphan, other, arrays in tqdm(chunks, desc=f"eICU {table.name}", unit="chunk",
                                                       disable=not progress):
        quarantine.count_read(file, read)
        quarantine.add(file, f"{key} or patientunitstayid missing or not a whole number", malformed)
        quarantine.add(file, f"patientunitstayid not in {et.PATIENT.file}", orphan)
        quarantine.count_filtered(file, OTHER_STAY, other)
        yield arrays


def cohort_rows(raw: Path, table: et.Table, columns: list[str], ids: StayIds, config: EicuConfig,
                quarantine: Quarantine) -> pd.DataFrame:
    """The rows of a table whose stay is in the cohort, once per key (`_cohort_chunks`; a
    repeated key quarantined, `rawio.drop_repeated`), in memory: stay_id, `columns` (text) and
    row. For a table of one row per stay (apacheApsVar)."""
    parts: dict[str, list] = {}
    for arrays in _cohort_chunks(raw, table, columns, ids, config, quarantine, (), {}):
        for column, array in arrays.items():
            parts.setdefault(column, []).append(array)
    rows = pd.DataFrame({column: pa.concat_arrays(pieces).to_pandas().array if isinstance(pieces[0], pa.Array)
                         else np.concatenate(pieces) for column, pieces in parts.items()}, copy=False)
    return drop_repeated(rows, table.key, ["stay_id", *columns], table.file, quarantine).drop(columns=table.key)


def cohort_rows_by_key(raw: Path, table: et.Table, columns: list[str], ids: StayIds, config: EicuConfig,
                       quarantine: Quarantine, scratch: Path, numbers: tuple[str, ...] = (),
                       names: tuple[str, ...] = (), progress: bool = False) -> Iterator[pd.DataFrame]:
    """The cohort rows of an event table (`_cohort_chunks`), a part of its keys at a time, once
    per key (a repeated key quarantined, `rawio.drop_repeated`): stay_id, `columns` (`numbers` as
    float64, `names` as categories) and row. The chunks go to disk by key as they are read
    (`event_parts`), so memory holds one part, not the table."""
    codes = {column: TextCodes() for column in names}
    parts = parts_for(ids.cohort)
    writer, part_of = PartWriter(scratch, parts), key_parts(parts)
    for arrays in _cohort_chunks(raw, table, columns, ids, config, quarantine, numbers, codes, progress):
        writer.append(arrays, part_of(arrays[table.key]))
    by_key = writer.close()
    try:
        for rows in by_key.frames():
            for column in names:
                rows[column] = codes[column].categorical(rows[column].to_numpy())
            yield drop_repeated(rows, table.key, ["stay_id", *columns], table.file, quarantine).drop(columns=table.key)
    finally:
        by_key.remove()


def _set_aside(rows: pd.DataFrame, checks: list[tuple[str, np.ndarray]], file: str,
               quarantine: Quarantine) -> np.ndarray:
    """Which of `rows` pass every check (a mask); each failing row is quarantined under the first
    (reason, bad mask) it fails."""
    excluded = np.zeros(len(rows), dtype=bool)
    for reason, bad in checks:
        bad = np.asarray(bad, dtype=bool) & ~excluded
        quarantine.add(file, reason, rows.loc[bad, "row"])
        excluded |= bad
    return ~excluded


def _where(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """`frame[keep]`, without copying `frame` when every row is kept (the usual case)."""
    return frame if keep.all() else frame[keep]


def lab_events(raw: Path, ids: StayIds, config: EicuConfig, scratch: Path, quarantine: Quarantine) -> Parts:
    """One event per numeric result of a lab name with at least `lab_min_count` results across the
    cohort (streamed in chunks; on disk under `scratch`, by stay range, sorted: `event_parts`)."""
    file, counts = et.LAB.file, pd.Series(dtype="int64")  # results per lab name, added up as chunks pass

    def valid_events():
        nonlocal counts
        for rows in cohort_rows_by_key(raw, et.LAB, ["labresultoffset", "labname", "labresult"], ids, config,
                                       quarantine, scratch / "lab-by-key", numbers=("labresultoffset", "labresult"),
                                       names=("labname",), progress=True):
            valid = _set_aside(rows, [("labresultoffset missing or not a number", rows["labresultoffset"].isna()),
                                      ("labname blank", _blank(rows["labname"])),
                                      ("labresult missing or not a finite number", rows["labresult"].isna())],
                               file, quarantine)
            counts = counts.add(rows["labname"][valid].value_counts(), fill_value=0)
            yield _events(rows, valid, "labresultoffset", "labname", "labresult")

    events = _by_stay(valid_events(), ids, scratch / "lab-unsorted")
    frequent = counts.index[counts >= config.lab_min_count]
    quarantine.count_filtered(file, f"lab name with fewer than {config.lab_min_count} results in the cohort",
                              counts[counts < config.lab_min_count].sum())
    return events.rewrite(lambda part: _sorted(_where(part, part["name"].isin(frequent).to_numpy())), scratch / "lab")


def term_events(raw: Path, modality: str, ids: StayIds, config: EicuConfig, scratch: Path,
                quarantine: Quarantine) -> Parts:
    """One event per row of the table naming a term (on disk under `scratch`, by stay range,
    sorted: `event_parts`)."""
    table, column, offset = TERM_TABLES[modality]

    def valid_events():
        for rows in cohort_rows_by_key(raw, table, [offset, column], ids, config, quarantine,
                                       scratch / f"{modality}-by-key", numbers=(offset,), names=(column,)):
            valid = _set_aside(rows, [(f"{offset} missing or not a number", rows[offset].isna()),
                                      (f"{column} blank", _blank(rows[column]))], table.file, quarantine)
            yield _events(rows, valid, offset, column, None)

    return _by_stay(valid_events(), ids, scratch / f"{modality}-unsorted").rewrite(_sorted, scratch / modality)


def _by_stay(events: Iterator[pd.DataFrame], ids: StayIds, folder: Path) -> Parts:
    """`events` as they come, to disk by stay range (`event_parts.stay_parts`)."""
    writer, part_of = PartWriter(folder, parts_for(ids.cohort)), stay_parts(ids.cohort)
    for part in events:
        writer.append(part, part_of(part["stay_id"].to_numpy()))
    return writer.close()


def _events(rows: pd.DataFrame, keep: np.ndarray, offset: str, name: str, value: str | None) -> pd.DataFrame:
    """Timeline rows of the `keep` rows, column by column (no copy of `rows` first): stay_id,
    time_hours (from unit admission), name (categories), value, raw row index."""
    return pd.DataFrame({
        "stay_id": rows["stay_id"].to_numpy("int64")[keep],
        "time_hours": rows[offset].to_numpy(float)[keep] / 60.0,
        "name": rows[name].array[keep],
        "value": rows[value].to_numpy(float)[keep] if value else np.ones(int(keep.sum())),
        "row": rows["row"].to_numpy("int64")[keep],
    }, copy=False)


def aps_table(raw: Path, ids: StayIds, config: EicuConfig,
              quarantine: Quarantine) -> tuple[pd.DataFrame, FieldFlags]:
    """One row per cohort stay: `aps:<variable>`, NaN where not recorded (-1) or not a number (a
    field flag)."""
    file = et.APACHE_APS_VAR.file
    rows = cohort_rows(raw, et.APACHE_APS_VAR, APS_COLUMNS, ids, config, quarantine)
    rows = _where(rows, _set_aside(rows, [("second row for a stay", rows.duplicated("stay_id", keep="first"))],
                                   file, quarantine))
    table, flags = {"stay_id": rows["stay_id"].astype("int64")}, FieldFlags()
    for column in APS_COLUMNS:
        value = _floats(rows[column])
        flags.add(f"{column} not a number (read as not recorded)", rows["stay_id"], rows["row"],
                  rows[column].notna().to_numpy() & np.isnan(value))
        table[f"aps:{column}"] = np.where(value == et.APS_UNRECORDED, np.nan, value)
    return pd.DataFrame(table).assign(row=rows["row"]).reset_index(drop=True), flags


def build(raw: Path, config: EicuConfig | None = None, scratch: Path | None = None) -> CohortTables:
    """Cohort, labels and the events of every modality of one raw eICU folder. The event tables
    stay on disk under `scratch` when given (an empty folder every reader can reach: `event_parts`;
    `data.prepare`'s way at full size), else they come back in memory, as DataFrames."""
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="clintraj-eicu-") as folder:
            tables = build(raw, config, Path(folder))
            tables.events = {name: pd.concat(list(event_frames(events)), ignore_index=True)
                             for name, events in tables.events.items()}
            return tables
    config = config or EicuConfig()
    quarantine = Quarantine()
    raw, scratch = Path(raw), Path(scratch)
    stays, funnel, demographics, known, patient_flags = load_cohort(raw, config, quarantine)
    ids = StayIds(known, stays["stay_id"].to_numpy())
    readers = [partial(lab_events, raw, ids, config, scratch),
               *(partial(term_events, raw, name, ids, config, scratch) for name in TERM_TABLES),
               partial(aps_table, raw, ids, config)]
    lab, *terms, (aps, aps_flags) = rawio.read_apart(readers, quarantine)  # on a Ray cluster: over its nodes
    events = {"lab": lab, **dict(zip(TERM_TABLES, terms))}
    static = {"demographics": demographics, "aps": aps}

    with_lab = stays["stay_id"].isin(lab.stays())
    step = "no lab results (cohort anchored on lab)"
    funnel.append({"step": step, "removed": int((~with_lab).sum()), "remaining": int(with_lab.sum())})
    quarantine.count_filtered(et.PATIENT.file, step, (~with_lab).sum())
    stays = stays[with_lab].sort_values("stay_id", kind="stable").reset_index(drop=True)
    quarantine.count_used(et.PATIENT.file, len(stays))
    cohort = stays["stay_id"]
    files = {"lab": et.LAB.file, "aps": et.APACHE_APS_VAR.file, **{m: t.file for m, (t, _, _) in TERM_TABLES.items()}}
    for name in ("lab", *TERM_TABLES):
        events[name] = _used_parts(events[name], cohort, files[name], quarantine, scratch / f"{name}-used")
    static["aps"] = _used(static["aps"], cohort, files["aps"], quarantine).drop(columns="row")
    patient_flags.enter(et.PATIENT.file, cohort, quarantine)
    aps_flags.enter(files["aps"], cohort, quarantine)
    static = {name: table[table["stay_id"].isin(cohort)].sort_values("stay_id", kind="stable").reset_index(drop=True)
              for name, table in static.items()}
    known_at = {"demographics": 0.0, "aps": config.aps_available_hours or 0.0}
    for name, table in static.items():  # one event each, when the values become known
        events[name] = pd.DataFrame({"stay_id": table["stay_id"], "time_hours": known_at[name]})
    return CohortTables(MODALITIES, stays, events, static, funnel, quarantine, label_columns=("died", "los_hours"))


def _used(rows: pd.DataFrame, cohort: pd.Series, file: str, quarantine: Quarantine) -> pd.DataFrame:
    """The rows of the final cohort's stays, counted as used; the others as filtered."""
    inside = rows["stay_id"].isin(cohort).to_numpy()
    quarantine.count_filtered(file, OTHER_STAY, (~inside).sum())
    quarantine.count_used(file, inside.sum())
    return _where(rows, inside)


def _used_parts(events: Parts, cohort: pd.Series, file: str, quarantine: Quarantine, folder: Path) -> Parts:
    """`_used` of events on disk: rewritten only when some are not the final cohort's."""
    outside = sum(int((~np.isin(stay, cohort)).sum()) for stay in events.column_by_part("stay_id"))
    quarantine.count_filtered(file, OTHER_STAY, outside)
    quarantine.count_used(file, len(events) - outside)
    if not outside:
        return events
    return events.rewrite(lambda part: _where(part, part["stay_id"].isin(cohort).to_numpy()), folder)


def _sorted(events: pd.DataFrame) -> pd.DataFrame:
    """By stay, time and raw row (`CohortTables`' order)."""
    return events.sort_values(["stay_id", "time_hours", "row"], kind="stable").reset_index(drop=True)
