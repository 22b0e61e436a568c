"""The reader's events as the platform's modality tables (`data.modalities` kinds):

    terms   stay_id, time_hours, name (the code), value 1.0
    values  stay_id, time_hours, name (the code), value: the numeric_value of a numeric code (one
            with a numeric_value anywhere in the data; its rows without one are quarantined),
            1.0 for a code that never has one (the per-stay sum then counts it)
    text    stay_id, time_hours, note_index, text (the row's text_value, cleaned)
    static  one row per stay (stay_id, age and the subject's static codes known at its ICU
            admission: categorical `A//B` as column A = "B", a code without '//' as a 0/1
            column, a number under its code; the latest wins), one event per stay at time 0
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from clintraj.data.meds.codes import MODALITY, CodeRouter
from clintraj.data.meds.events import ATTACHED, Attached, Reading
from clintraj.data.meds.stays import HOUR_US
from clintraj.data.mimic.notes import clean_note_text
from clintraj.data.modalities import Modality
from clintraj.data.rawio import Quarantine

YEAR_US = 365.25 * 24 * HOUR_US
STATIC_ROWS = pd.DataFrame({"subject_id": pd.Series(dtype="int64"), "time": pd.Series(dtype="int64"),
                            "code_id": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64")})
QUARANTINED = "quarantined: numeric code without a numeric_value"


def _sorted(attached: Attached, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named columns of `attached`, ordered by stay, then time, then file order (`order`: the
    permutation, for the note texts)."""
    dtypes = {"stay_id": np.int64, "hours": float, "code_id": np.int64, "value": float, "file": np.int32,
              "row": np.int64}
    columns = {name: attached.take(name, dtypes[name]) for name in ("stay_id", "hours", "file", "row", *names)}
    order = np.lexsort((columns["row"], columns["file"], columns["hours"], columns["stay_id"]))
    for name in list(columns):  # one column at a time: the unsorted one is freed before the next is copied
        columns[name] = columns[name][order]
    return {"order": order, **columns}


def _names(router: CodeRouter, code_id: np.ndarray) -> pd.arrays.ArrowStringArray:
    """The codes of `code_id`, as Arrow strings (no Python object per row)."""
    return pd.arrays.ArrowStringArray(pa.array(router.codes, pa.string()).take(pa.array(code_id, pa.int64())))


def coded_events(kind: str, attached: Attached, router: CodeRouter, reading: Reading, quarantine: Quarantine,
                 files: list[str]) -> pd.DataFrame:
    """A terms or values modality's events."""
    columns = _sorted(attached, ("code_id", "value"))
    code_id, value = columns["code_id"], columns["value"]
    keep = np.ones(len(code_id), bool)
    if kind == "values":
        numeric = np.zeros(len(router.codes), bool)
        numeric[: len(reading.numeric_rows)] = reading.numeric_rows > 0
        missing = numeric[code_id] & np.isnan(value)
        unique = pd.DataFrame({"file": columns["file"][missing], "row": columns["row"][missing]}).drop_duplicates()
        for index, group in unique.groupby("file"):
            quarantine.add(files[index], "numeric code without a numeric_value", group["row"].to_numpy())
        reading.fates[ATTACHED] -= len(unique)
        reading.fates[QUARANTINED] += len(unique)
        value, keep = np.where(numeric[code_id], value, 1.0), ~missing
    else:
        value = np.ones(len(code_id))
    return pd.DataFrame({"stay_id": columns["stay_id"][keep], "time_hours": columns["hours"][keep],
                         "name": _names(router, code_id[keep]), "value": value[keep]})


def note_events(attached: Attached, clean: bool) -> pd.DataFrame:
    """A text modality's events: one note per row, numbered in time order within its stay."""
    columns = _sorted(attached, ())
    texts = pa.concat_arrays([a.cast(pa.large_string()) for a in attached.text]) if attached.text else pa.array(
        [], pa.large_string())
    text = pd.Series(texts.take(pa.array(columns["order"], pa.int64())).to_pylist(), dtype=object)
    if clean:
        text = text.map(clean_note_text)
    stay = columns["stay_id"]
    return pd.DataFrame({"stay_id": stay, "time_hours": columns["hours"],
                         "note_index": pd.Series(stay).groupby(stay).cumcount().to_numpy(np.int64),
                         "text": text.astype("string")})


def static_table(rows: pd.DataFrame, stays: pd.DataFrame, router: CodeRouter) -> tuple[pd.DataFrame, dict]:
    """One row per stay with an age or a static code known at its ICU admission; and the counts of
    static rows used and not (recorded after every stay's admission)."""
    rows = rows.reset_index(drop=True).assign(row=lambda f: np.arange(len(f)))
    pairs = rows.merge(stays[["subject_id", "stay_id", "start"]], on="subject_id")
    pairs = pairs[pairs["time"] <= pairs["start"]]  # a timeless row (time: int64 min) is known at every admission
    used = int(pairs["row"].nunique())
    code = pd.Series(np.asarray(router.codes, dtype=object)[pairs["code_id"].to_numpy()], index=pairs.index)
    numeric = pairs["value"].notna()
    split = code.str.split("//", n=1)
    categorical = ~numeric & split.str.len().eq(2)
    pairs = pairs.assign(column=np.where(categorical, split.str[0], code),
                         level=np.where(categorical, split.str[-1], None))
    pairs = pairs.sort_values(["stay_id", "time", "row"], kind="stable").drop_duplicates(["stay_id", "column"],
                                                                                          keep="last")
    table = stays.loc[stays["birth"].notna() | stays["stay_id"].isin(pairs["stay_id"]), ["stay_id"]]
    table = table.assign(age=((stays["start"] - stays["birth"]) / YEAR_US).reindex(table.index))
    for column, part in pairs.groupby("column", sort=True):
        kinds = (numeric[part.index].all(), categorical[part.index].all())
        if kinds[0]:
            values = part.set_index("stay_id")["value"]
        elif kinds[1]:
            values = part.set_index("stay_id")["level"].astype("string")
        else:  # a code without '//' and no value: present (1.0) or not (0.0)
            values = pd.Series(1.0, index=part["stay_id"].to_numpy())
        mapped = table["stay_id"].map(values)
        table[column] = mapped.fillna(0.0) if not any(kinds) else mapped
    counts = {"static rows known at a stay's ICU admission": used, "static rows after every stay's admission":
              int(len(rows) - used)}
    return table.reset_index(drop=True), counts


def modality_tables(modalities: tuple[Modality, ...], reading: Reading, stays: pd.DataFrame, router: CodeRouter,
                    quarantine: Quarantine, files: list[str], clean_notes: bool) -> tuple[dict, dict, dict]:
    """(events per modality, static table per static modality, static row counts)."""
    events, static, counts = {}, {}, {}
    for offset, modality in enumerate(modalities):
        attached = reading.attached[MODALITY + offset]
        if modality.kind == "static":
            rows = pd.concat([STATIC_ROWS, *reading.static], ignore_index=True)
            static[modality.name], counts = static_table(rows, stays, router)
            events[modality.name] = pd.DataFrame({"stay_id": static[modality.name]["stay_id"], "time_hours": 0.0})
        elif modality.kind == "text":
            events[modality.name] = note_events(attached, clean_notes)
        else:
            events[modality.name] = coded_events(modality.kind, attached, router, reading, quarantine, files)
    return events, static, counts
