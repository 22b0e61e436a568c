"""The events of the cohort's stays (the second of the reader's two passes): every data file
streamed in record batches of the columns the code map needs, row groups holding no cohort
subject skipped unread (their statistics say so), each batch checked against `meds.DataSchema`
and the MEDS order (a subject's rows contiguous in one file, sorted by time).

Each row has exactly one fate, counted (`Reading.fates`): its subject has no stay; its code is
structural (stays, outcomes, birth, death record: never an input) or maps to no modality
(counted by code prefix too); it belongs to a static modality (collected per subject, used at the
admissions it precedes); it has no time; or it is attached to every stay whose span
[admission - history_hours, discharge] holds its time, at its own time in hours from that
stay's ICU admission ("outside every stay's span" when none does). A task's window later decides
which of a stay's events it sees (`data.windows`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import meds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clintraj.data.meds.codes import MODALITY, STRUCTURAL, UNMAPPED, CodeRouter
from clintraj.data.meds.layout import READAHEAD, MedsFolder, MedsFormatError, check_values
from clintraj.data.meds.stays import HOUR_US

NO_STAY = "subject without a stay"
UNMAPPED_FATE = "code maps to no modality"
TIMELESS = "no time (a timed modality)"
OUTSIDE = "outside every stay's span"
ATTACHED = "in a stay"
STATIC = "static (collected)"
NO_TEXT = "note code without a text_value"


@dataclass
class Attached:
    """One modality's events, as parallel arrays (one entry per (row, stay) attachment)."""

    stay_id: list = field(default_factory=list)
    hours: list = field(default_factory=list)
    code_id: list = field(default_factory=list)
    value: list = field(default_factory=list)
    file: list = field(default_factory=list)
    row: list = field(default_factory=list)
    text: list = field(default_factory=list)

    def add(self, **arrays) -> None:
        for name, array in arrays.items():
            getattr(self, name).append(array)

    def take(self, name: str, dtype) -> np.ndarray:
        """One column, concatenated; its parts are released."""
        parts = getattr(self, name)
        column = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
        parts.clear()
        return column


@dataclass
class Reading:
    """What the second pass found: events per modality, static rows, counts."""

    attached: dict[int, Attached]
    static: list[pd.DataFrame] = field(default_factory=list)
    fates: Counter = field(default_factory=Counter)
    code_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows read, per code id
    unmapped_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # cohort rows, per code id
    numeric_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows with a numeric_value
    rows: int = 0

    def tally(self, name: str, ids: np.ndarray) -> None:
        """Add a bincount of code ids to the per-code counter `name`."""
        counts = np.bincount(ids, minlength=len(getattr(self, name)))
        current = getattr(self, name)
        counts[: len(current)] += current
        setattr(self, name, counts)
    files: list[str] = field(default_factory=list)


class Spans:
    """Each cohort subject's stays: span start (admission - history), discharge, admission, stay id."""

    def __init__(self, stays: pd.DataFrame, history_hours: float):
        ordered = stays.sort_values(["subject_id", "start"], kind="stable")
        self.subjects = np.unique(ordered["subject_id"].to_numpy())
        history = int(round(history_hours * HOUR_US))
        self._by_subject = {
            subject: (group["start"].to_numpy() - history, group["end"].to_numpy(), group["start"].to_numpy(),
                      group["stay_id"].to_numpy())
            for subject, group in ordered.groupby("subject_id", sort=False)}

    def attach(self, subject: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row position, stay_id, hours from that stay's admission) of every attachment of rows
        sorted by time within each subject's run."""
        positions, stay_ids, hours = [], [], []
        if not len(subject):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        runs = np.flatnonzero(np.r_[True, subject[1:] != subject[:-1], True])
        for a, b in zip(runs[:-1], runs[1:]):
            spans = self._by_subject.get(int(subject[a]))
            if spans is None:
                continue
            times = time[a:b]
            for lo, hi, admission, stay in zip(*spans):
                first, last = np.searchsorted(times, lo, "left"), np.searchsorted(times, hi, "right")
                if last > first:
                    positions.append(np.arange(a + first, a + last))
                    stay_ids.append(np.full(last - first, stay))
                    hours.append((times[first:last] - admission) / HOUR_US)
        if not positions:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(positions), np.concatenate(stay_ids), np.concatenate(hours)


class OrderCheck:
    """MEDS order within one file: a subject's rows contiguous (and in no other file), its timed rows
    sorted by time. `owners`: subject -> the file it was first seen in, shared across files."""

    def __init__(self, name: str, owners: dict):
        self.name, self.owners = name, owners
        self.subject = None  # the last row's subject
        self.timed = None  # the last timed row's (subject, time)

    def check(self, subject: np.ndarray, time: np.ndarray, timed: np.ndarray, first_row: int) -> None:
        starts = np.flatnonzero(np.r_[True, subject[1:] != subject[:-1]]) if len(subject) else []
        for start in starts:
            key = int(subject[start])
            if start == 0 and key == self.subject:
                continue  # the previous batch's last subject goes on
            if key in self.owners:
                where = "earlier in this file" if self.owners[key] == self.name else f"in {self.owners[key]}"
                raise MedsFormatError(f"{self.name}: the subject_id at row {first_row + start} appeared {where}: "
                                      "MEDS keeps each subject's rows together, in one file")
            self.owners[key] = self.name
        if len(subject):
            self.subject = subject[-1]
        rows = np.flatnonzero(timed)
        s, t = subject[rows], time[rows]
        if self.timed is not None:
            s, t, rows = np.r_[self.timed[0], s], np.r_[self.timed[1], t], np.r_[-1, rows]
        bad = np.flatnonzero((s[1:] == s[:-1]) & (t[1:] < t[:-1]))
        if len(bad):
            raise MedsFormatError(f"{self.name}: field time is not sorted within subject_id at row "
                                  f"{first_row + rows[bad[0] + 1]}: MEDS sorts each subject's rows by time")
        if len(s):
            self.timed = (s[-1], t[-1])


def read_events(folder: MedsFolder, router: CodeRouter, kinds: list[str], spans: Spans,
                batch_rows: int) -> Reading:
    """Stream every data file once; see the module docstring."""
    reading = Reading({MODALITY + i: Attached() for i in range(len(kinds))})
    columns = ["subject_id", "time", "code", "numeric_value", *(["text_value"] if "text" in kinds else [])]
    owners: dict = {}
    cohort = pc.field("subject_id").isin(pa.array(spans.subjects, pa.int64()))
    for index, path in enumerate(folder.data_files):
        name = folder.relative(path)
        reading.files.append(name)
        present = set(folder.fields(path))
        read = [c for c in columns if c in present]
        fragment = next(iter(folder.dataset([path]).get_fragments()))
        sizes = [fragment.metadata.row_group(i).num_rows for i in range(fragment.metadata.num_row_groups)]
        offsets = np.r_[0, np.cumsum(sizes)]
        kept = fragment.split_by_row_group(filter=cohort)
        skipped = int(offsets[-1]) - sum(sizes[piece.row_groups[0].id] for piece in kept)
        reading.fates[NO_STAY] += skipped
        reading.rows += int(offsets[-1])
        order = OrderCheck(name, owners)
        for piece in kept:
            start = int(offsets[piece.row_groups[0].id])
            for batch in piece.to_batches(columns=read, batch_size=batch_rows, batch_readahead=READAHEAD):
                check_values(pa.Table.from_batches([batch]), meds.DataSchema, name)
                _read_batch(batch, index, start, order, router, kinds, spans, reading)
                start += batch.num_rows
    return reading


def _read_batch(batch: pa.RecordBatch, file: int, first_row: int, order: OrderCheck, router: CodeRouter,
                kinds: list[str], spans: Spans, reading: Reading) -> None:
    subject = batch.column("subject_id").to_numpy()
    time_column = batch.column("time")
    timed = time_column.is_valid().to_numpy(zero_copy_only=False)
    time = pc.fill_null(time_column.cast(pa.int64()), 0).to_numpy()
    order.check(subject, time, timed, first_row)
    roles, ids = router.route(batch.column("code"))
    if "numeric_value" in batch.schema.names:
        numeric = batch.column("numeric_value")
        has_value = numeric.is_valid().to_numpy(zero_copy_only=False)
        value = pc.fill_null(numeric.cast(pa.float64()), np.nan).to_numpy()
    else:
        has_value, value = np.zeros(len(subject), bool), np.full(len(subject), np.nan)
    reading.tally("code_rows", ids)
    reading.tally("numeric_rows", ids[has_value])

    in_cohort = np.isin(subject, spans.subjects)
    reading.fates[NO_STAY] += int((~in_cohort).sum())
    for role, name in STRUCTURAL.items():
        reading.fates[f"structural: {name}"] += int((in_cohort & (roles == role)).sum())
    unmapped = in_cohort & (roles == UNMAPPED)
    reading.fates[UNMAPPED_FATE] += int(unmapped.sum())
    reading.tally("unmapped_rows", ids[unmapped])

    text = batch.column("text_value") if "text_value" in batch.schema.names else None
    for offset, kind in enumerate(kinds):
        rows = in_cohort & (roles == MODALITY + offset)
        if kind == "static":
            reading.fates[STATIC] += int(rows.sum())
            reading.static.append(pd.DataFrame({
                "subject_id": subject[rows], "time": np.where(timed[rows], time[rows], np.iinfo(np.int64).min),
                "code_id": ids[rows], "value": np.where(has_value[rows], value[rows], np.nan)}))
            continue
        reading.fates[TIMELESS] += int((rows & ~timed).sum())
        rows &= timed
        if kind == "text":
            texted = text.is_valid().to_numpy(zero_copy_only=False) if text is not None else np.zeros(len(rows), bool)
            reading.fates[NO_TEXT] += int((rows & ~texted).sum())
            rows &= texted
        candidates = np.flatnonzero(rows)
        position, stay_id, hours = spans.attach(subject[candidates], time[candidates])
        attached = candidates[position]
        reading.fates[ATTACHED] += len(np.unique(attached))
        reading.fates[OUTSIDE] += len(candidates) - len(np.unique(attached))
        target = reading.attached[MODALITY + offset]
        target.add(stay_id=stay_id, hours=hours, code_id=ids[attached], value=value[attached],
                   file=np.full(len(attached), file, np.int32), row=first_row + attached)
        if kind == "text" and text is not None:
            target.text.append(text.take(pa.array(attached, pa.int64())))
