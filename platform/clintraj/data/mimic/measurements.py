"""The time_series modality: measurements of `icu/chartevents` and `hosp/labevents`, cleaned
and binned into hourly events.

time_series: the 17 mimic3-benchmarks variables from `icu/chartevents` (and
glucose / O2 saturation / pH from `hosp/labevents`), charted inside
[intime, outtime], in 1-hour bins from intime. A bin's value is the mean of its
measurements (categorical variables: the last one). Carry-forward within the
stay; a variable not yet measured (before its first value, or never) takes its
mimic3-benchmarks normal value (`tables.NORMAL_VALUES`). Units: F -> C,
lb -> kg, in -> cm; FiO2 in percent -> fraction and O2 saturation as a
fraction -> percent, as mimic3-benchmarks' preprocessing does; then its bounds
(`ranges`, `MimicConfig.valid_ranges`): a value beyond a variable's outlier bounds is
quarantined, one beyond its valid range clipped to it (counted). GCS: MIMIC-IV
keeps the score in valuenum (used first; the text answer through
`GCS_TEXT_TO_NUMERIC` when valuenum is blank); the total is the sum of eye,
verbal and motor when the three are charted at the same time. Both event tables
are streamed (pyarrow, a read-ahead thread): memory grows with the cohort's
measurements, not with the tables (`bench/etl.py`). A bin is an event at the time
it closes (its end, or the stay's end for the last one): only then are its
measurements all known.

The demo's `icu/chartevents` is replaced by a stand-in with other columns
(PROVENANCE.md, `_derived/`); it is read only when `chartevents_stand_in=True`,
and its rows without a stay are placed by (subject, charttime) or quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.config import Counts, MimicConfig
from clintraj.data.mimic.ranges import within_ranges
from clintraj.data.rawio import Quarantine, csv_batches, to_datetimes, to_floats, to_integers

STAND_IN_COLUMNS = {"stay_id_inferred": "stay_id"}  # the _derived chartevents stand-in -> chartevents names
_CHART = "icu/chartevents.csv.gz"
_LAB = "hosp/labevents.csv.gz"

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


def _answers(text: pa.Array, mapping) -> np.ndarray:
    """float64 code of each text answer (`mapping`), NaN for any other text or a blank."""
    index = pc.index_in(text, value_set=pa.array(list(mapping), pa.string())).to_numpy(zero_copy_only=False)
    codes = np.array([float(v) for v in mapping.values()] + [np.nan])
    return codes[np.where(np.isnan(index), len(mapping), index).astype("int64")]


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
        value[need] = to_floats(text(need))
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
    other_stays: int = 0  # rows dropped: of a stay (with a parseable charttime) or a subject outside the cohort


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
    t = to_datetimes(batch.column("charttime"))
    keep, other_stays, extra = None, 0, {}
    if stays is not None:
        stay_column, ids = stays
        extra["stay"] = to_integers(batch.column(stay_column)).copy()
        extra["blank"] = batch.column(stay_column).is_null().to_numpy(zero_copy_only=False)
        extra["pos"] = _positions(ids, extra["stay"])
        other = ~np.isnat(t) & ~extra["blank"] & (extra["stay"] >= 0) & (extra["pos"] < 0)
        keep, other_stays = ~other, int(other.sum())
    if subjects is not None:
        extra["subject"] = to_integers(batch.column("subject_id"))
        keep = np.isin(extra["subject"], subjects)
        other_stays = int((~keep).sum())
    if keep is not None and not keep.all():
        batch, item, t, positions = batch.filter(keep), item.filter(keep), t[keep], positions[keep]
        extra = {name: column[keep] for name, column in extra.items()}
    itemid = to_integers(item)
    code = _ITEM_CODE[np.searchsorted(_ITEMS, itemid)]
    columns = _Columns(row=start + positions, at=np.arange(batch.num_rows), itemid=itemid, code=code, t=t, **extra)
    texts = batch.column("value") if "value" in batch.schema.names else None

    def text(rows: np.ndarray) -> pa.Array:
        if texts is None:
            return pa.nulls(int(rows.sum()), pa.string())
        return pc.utf8_trim_whitespace(texts.take(columns["at"][rows]))

    columns["value"], reasons = resolve_values(code, to_floats(batch.column("valuenum")), text)
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
    batches = csv_batches(raw, _CHART, _chart_columns(config), config.chunk_rows,
                          lambda start, batch: _item_rows(start, batch, itemids, stays=stays))
    for rows in tqdm(batches, desc="MIMIC chartevents", unit="chunk", disable=not config.progress):
        chunk = rows.columns
        detail["chartevents rows read"] += rows.read
        detail["chartevents rows of the variables' items"] += len(chunk["row"]) + rows.other_stays
        detail["chartevents rows of stays outside the cohort"] += rows.other_stays
        _count_read(rows, _CHART, "stay not in the cohort", quarantine)
        # each check on the rows that passed the ones before
        row, t, stay, pos = chunk["row"], chunk["t"], chunk["stay"], chunk["pos"]
        parsed = ~np.isnat(t)
        quarantine.add(_CHART, "charttime missing or unparseable", row[~parsed])
        blank = chunk["blank"] & parsed
        if blank.any():
            subject = to_integers(rows.batch.column("subject_id").take(chunk["at"][blank]))
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
    batches = csv_batches(raw, _LAB, columns, config.chunk_rows,
                          lambda start, batch: _item_rows(start, batch, itemids, subjects=subjects))
    for rows in tqdm(batches, desc="MIMIC labevents", unit="chunk", disable=not config.progress):
        chunk = rows.columns
        row, t = chunk["row"], chunk["t"]
        detail["labevents rows of the variables' items for cohort subjects"] += len(row)
        _count_read(rows, _LAB, "subject not in the cohort", quarantine)
        parsed = ~np.isnat(t)
        quarantine.add(_LAB, "charttime missing or unparseable", row[~parsed])
        stay, count = np.full(len(t), -1), np.zeros(len(t), dtype="int64")
        stay[parsed], count[parsed] = assign_stays(chunk["subject"][parsed], t[parsed], windows)
        outside = int((parsed & (count == 0)).sum())
        detail["labevents rows outside every ICU stay (not ICU data)"] += outside
        quarantine.count_filtered(_LAB, "charttime in no ICU stay of the subject (not ICU data)", outside)
        quarantine.add(_LAB, "charttime in several ICU stays of the subject", row[count > 1])
        pos = _positions(ids, stay)
        parts.append(_measurements(rows, pos, count == 1, intime, 1, _LAB, quarantine))
    return parts


def _count_read(rows: _ItemRows, table: str, other: str, quarantine: Quarantine) -> None:
    """A batch's rows in the ledger: read; filtered when of another item, or (`other`) of
    another stay or subject."""
    quarantine.count_read(table, rows.read)
    quarantine.count_filtered(table, "itemid not one of the 17 variables' items",
                              rows.read - len(rows.columns["row"]) - rows.other_stays)
    quarantine.count_filtered(table, other, rows.other_stays)


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
    """Metric units for every item (`tables`' F / lb / in items), FiO2 as a fraction and
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
    detail = Counts()
    parts = chart_measurements(raw, windows, config, quarantine, detail)
    if config.use_labevents:
        parts += lab_measurements(raw, windows, config, quarantine, detail)
    rows = _Columns.concat([_no_rows(), *parts])
    del parts  # (each step below lets go of the rows before it)
    rows = rows.where(_time_order(rows))
    rows = _drop_duplicates(rows, quarantine)
    rows["value"] = convert_units(rows["itemid"], rows["code"], rows["value"], config)
    if config.valid_ranges:
        keep, rows["value"] = within_ranges(rows["code"], rows["value"], rows["row"], rows["source"], (_CHART, _LAB),
                                            quarantine, detail)
        rows = rows if keep.all() else rows.where(keep)
    for source, table in ((0, _CHART), (1, _LAB)):
        quarantine.count_used(table, (rows["source"] == source).sum())
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
