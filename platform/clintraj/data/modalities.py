"""From events to per-stay modality tables: one aggregation per kind of modality.

A dataset reader (`data.eicu`, `data.mimic`) gives every modality as events, each at its own
time (hours from ICU admission): lab results, diagnoses, hourly time-series bins, images,
notes, and the static modalities (demographics, APACHE values) at the time they become known.
A modality's per-stay table (the static view: one row per stay that has the modality) is
always an aggregation of the events of a window, so a task's static inputs and its timeline
see exactly the same events (`data.windows`; METHOD.md §3):

    terms        names (diagnosis, treatment, medication strings) -> presence (or count) of each
                 vocabulary term: `<modality>:<term>`
    values       (name, value) pairs (lab results) -> the sum per name (paper A.1.3: duplicates
                 summed): `<modality>:<name>`
    time_series  hourly bins of imputed values and `mask:<v>` flags -> mean, min, max and last of
                 each variable and the share of bins it was measured in: `ts:<v>:<stat>`
    image        one row per image -> the most recent image (its path, study, time)
    text         one row per note -> the unique texts, in note order, joined by a blank line
    static       one row per stay, known from a time on (its one event) -> that row
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from clintraj.data.event_parts import Parts

Kind = Literal["terms", "values", "time_series", "image", "text", "static"]
NOTE_SEPARATOR = "\n\n"
IMAGE_COLUMNS = ("stay_id", "dicom_id", "study_id", "path", "study_time_hours")
# Stays aggregated at a time (`stay_tables`): at full eICU (39 M lab rows) aggregating every
# stay at once held about a gigabyte more of grouping transients than the events themselves.
STAYS_AT_A_TIME = 10_000


@dataclass(frozen=True)
class Modality:
    name: str
    kind: Kind
    # Known only after the stay (a discharge summary, written at hospital discharge): an input of
    # pretraining (the whole-stay view), of no task, whatever its window (`data.windows`).
    after_stay: bool = False


@dataclass(frozen=True)
class TermRule:
    """Which terms of a `terms` modality become features, fitted on the training split's stays.

    The paper (appendix A.1.4): one-hot presence, terms present in at least 5% of visits.
    """

    min_share: float = 0.05  # of training stays having the term at least once
    min_count: int = 0  # rows across the training stays
    max_terms: int | None = None  # the most frequent ones first; None: no cap
    encoding: Literal["presence", "count"] = "presence"


def fit_vocabulary(events: pd.DataFrame | Parts, train_ids, rule: TermRule) -> list[str]:
    """The terms of `events` (stay_id, name) kept by `rule` on the training stays, sorted."""
    rows, with_term = [], []
    for part in event_frames(events):  # a stay's events are in one part: its counts add up
        train = part[part["stay_id"].isin(train_ids)]
        rows.append(train.groupby("name", observed=True).size())
        with_term.append(train.drop_duplicates(["stay_id", "name"]).groupby("name", observed=True).size())
    rows, with_term = (pd.concat(counts).groupby(level=0, observed=True).sum() for counts in (rows, with_term))
    share = with_term / max(int(pd.Index(train_ids).nunique()), 1)
    frame = pd.DataFrame({"rows": rows, "share": share.reindex(rows.index).fillna(0.0)})
    frame = frame[(frame["share"] >= rule.min_share) & (frame["rows"] >= rule.min_count)]
    frame = frame.sort_values(["rows"], ascending=False, kind="stable")
    if rule.max_terms is not None:
        frame = frame.iloc[: rule.max_terms]
    return sorted(str(term) for term in frame.index)


def aggregate(modality: Modality, events: pd.DataFrame, static: pd.DataFrame | None = None,
              vocabulary: list[str] | None = None, rule: TermRule | None = None,
              by: tuple[str, ...] = ("stay_id",)) -> pd.DataFrame:
    """The per-stay table (`by` = stay_id) of `modality` from its events (already cut to a window).

    `by` = ("stay_id", "time_hours") gives one row per event time instead (the per-event inputs
    of the terms and values modalities). Stays without events get no row.
    """
    kind = modality.kind
    if kind in ("terms", "values"):
        return _pivot(modality, events, vocabulary, rule or TermRule(), list(by))
    if by != ("stay_id",):
        raise ValueError(f"{modality.name}: only terms and values modalities aggregate per event")
    if kind == "time_series":
        return summarise(events)
    if kind == "image":
        return latest_image(events)
    if kind == "text":
        return joined_text(events)
    if kind == "static":
        if static is None:
            raise ValueError(f"{modality.name}: a static modality needs its table")
        return static[static["stay_id"].isin(events["stay_id"])].reset_index(drop=True)
    raise ValueError(f"{modality.name}: unknown modality kind {kind!r}")


def stay_tables(modality: Modality, events: pd.DataFrame | Parts, keep=None, static: pd.DataFrame | None = None,
                vocabulary: list[str] | None = None, rule: TermRule | None = None,
                stays_at_a_time: int | None = None):
    """`aggregate` over `events` a slice of stays at a time (`stay_slices`), each slice's events cut
    by `keep(slice)` (a row mask; None: all of them) first: the per-stay table in slices, in stay
    order, with one slice's transients (masks, selections, the pivot's grouping) instead of the
    whole table's. The slices with rows; one empty table when none has (an empty slice's dtypes
    are not the table's)."""
    empty = None
    for part in stay_slices(events, stays_at_a_time):
        table = aggregate(modality, part if keep is None else part[keep(part)], static, vocabulary, rule)
        if len(table):
            empty = False
            yield table
        elif empty is None:
            empty = table
    if empty is not None and empty is not False:
        yield empty


def stay_slices(events: pd.DataFrame | Parts, stays: int | None = None):
    """`events` (sorted by stay: `CohortTables`' contract) in slices of `stays` stays each
    (default `STAYS_AT_A_TIME`), as views; events not sorted by stay come whole, as one slice.
    Events on disk come a part at a time, each part sliced so."""
    for part in event_frames(events):
        stay = part["stay_id"].to_numpy()
        if len(stay) < 2 or not (stay[1:] >= stay[:-1]).all():
            yield part
            continue
        starts = np.flatnonzero(np.r_[True, stay[1:] != stay[:-1]])[::stays or STAYS_AT_A_TIME]
        for begin, end in zip(starts, [*starts[1:], len(stay)]):
            yield part.iloc[begin:end]


def event_frames(events: pd.DataFrame | Parts):
    """A modality's events as DataFrames: held in memory, the one frame; on disk (the eICU
    reader's event tables, `event_parts`), a part at a time, in stay order."""
    if isinstance(events, Parts):
        yield from events.frames()
    else:
        yield events


def event_stays(events: pd.DataFrame | Parts) -> np.ndarray:
    """The stays with at least one event."""
    return events.stays() if isinstance(events, Parts) else events["stay_id"].unique()


def _pivot(modality: Modality, events: pd.DataFrame, vocabulary: list[str] | None, rule: TermRule,
           by: list[str]) -> pd.DataFrame:
    """One column per vocabulary name: the sum of values (values; a missing value adds nothing), or
    the presence / count (terms). Every key with an event gets a row, in key order, all zeros when
    none of its names is in the vocabulary (the modality was observed, none of its frequent names
    was). Summed into one array by cell index (`np.bincount`): pandas' pivot and per-column casts
    cost ~10 ms a call whatever the rows, which a prepare run in slices of stays paid per slice."""
    if vocabulary is None:
        raise ValueError(f"{modality.name}: a {modality.kind} modality needs its vocabulary")
    keys = events[by].drop_duplicates().sort_values(by, kind="stable").reset_index(drop=True)
    known = events["name"].isin(vocabulary).to_numpy()
    kept = events if known.all() else events[known]  # no copy of every lab row when all are kept
    if len(by) > 1:
        row = pd.MultiIndex.from_frame(keys).get_indexer(pd.MultiIndex.from_frame(kept[by]))
    else:
        row = pd.Index(keys[by[0]]).get_indexer(kept[by[0]])
    if modality.kind == "values":
        value = kept["value"].astype(float).to_numpy()
        value = np.where(np.isnan(value), 0.0, value)
    else:
        value = np.ones(len(kept))
    width = len(vocabulary)
    cell = row * width + pd.Index(vocabulary).get_indexer(kept["name"])
    wide = np.bincount(cell, weights=value, minlength=len(keys) * width).reshape(len(keys), width)
    if modality.kind == "terms" and rule.encoding == "presence":
        wide = (wide > 0).astype(float)
    keys["stay_id"] = keys["stay_id"].astype("int64")
    return pd.concat([keys, pd.DataFrame(wide, columns=[f"{modality.name}:{name}" for name in vocabulary])], axis=1)


def time_series_variables(events: pd.DataFrame) -> list[str]:
    return [c for c in events.columns if c not in ("stay_id", "time_hours") and not c.startswith("mask:")]


def summarise(events: pd.DataFrame) -> pd.DataFrame:
    """Per stay, over its bins (imputed values): mean, min, max and last of each variable, and the
    share of bins where it was measured."""
    if not events["stay_id"].is_monotonic_increasing:
        events = events.sort_values(["stay_id", "time_hours"], kind="stable")
    stay = events["stay_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, stay[1:] != stay[:-1]]) if len(stay) else np.zeros(0, dtype="int64")
    bins = np.diff(np.r_[starts, len(stay)])
    lasts = np.r_[starts[1:], len(stay)][:len(starts)] - 1  # none for no events
    table = {"stay_id": stay[starts].astype("int64")}
    for name in time_series_variables(events):
        value = events[name].to_numpy("float64")
        measured = events[f"mask:{name}"].to_numpy("float64")
        empty = not len(starts)
        table[f"ts:{name}:mean"] = value[:0] if empty else np.add.reduceat(value, starts) / bins
        table[f"ts:{name}:min"] = value[:0] if empty else np.minimum.reduceat(value, starts)
        table[f"ts:{name}:max"] = value[:0] if empty else np.maximum.reduceat(value, starts)
        table[f"ts:{name}:last"] = value[lasts]
        table[f"ts:{name}:measured_share"] = measured[:0] if empty else np.add.reduceat(measured, starts) / bins
    return pd.DataFrame(table, copy=False)


def latest_image(events: pd.DataFrame) -> pd.DataFrame:
    """The most recent image of each stay (the paper's choice, appendix A.1.1)."""
    chosen = events.sort_values(["stay_id", "time_hours", "dicom_id"], kind="stable").groupby("stay_id").tail(1)
    table = chosen.rename(columns={"time_hours": "study_time_hours"})[list(IMAGE_COLUMNS)]
    return table.sort_values("stay_id", kind="stable").reset_index(drop=True)


def joined_text(events: pd.DataFrame) -> pd.DataFrame:
    """Per stay, its notes' unique texts in note order (paper A.1.4: concatenated per stay)."""
    notes = events.sort_values(["stay_id", "note_index"], kind="stable").drop_duplicates(["stay_id", "text"])
    table = notes.groupby("stay_id", sort=True)["text"].agg(NOTE_SEPARATOR.join).reset_index()
    return table.astype({"stay_id": "int64", "text": "string"})
