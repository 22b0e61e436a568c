"""A long table's rows on disk, in parts, so a reader holds one part at a time, not the table.

At full eICU the lab table is 39 M rows: held whole, its events alone were 1.4 GB and grew with
the cohort; MIMIC-IV-Note's notes of the cohort's admissions are gigabytes of text. A reader
appends each chunk's rows to the part each row belongs to (`PartWriter`: one Arrow IPC stream
per part), then reads the parts back one at a time (`Parts.frames`), rewriting them where a
later step changes them (`Parts.rewrite`). Two ways of cutting:

- by key (`key_parts`): every row of one key in one part, so repeats of a key are found part
  by part (`rawio.drop_repeated`), or every note of one admission;
- by stay range (`stay_parts`): each part the events of a range of stays, so the per-stay
  aggregations and the dataset's event shards go a part at a time, in stay order
  (`modalities.stay_slices`).

Categorical columns are stored as their codes, their categories kept once (`Parts.coded`); every
other column comes back with the pandas dtype it was appended with (`Parts.dtypes`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

# Stays per part: about 2 M lab results at eICU's density (as `modalities.STAYS_AT_A_TIME`).
STAYS_PER_PART = 10_000


def parts_for(cohort: np.ndarray) -> int:
    """How many parts the events of `cohort`'s stays go to, `STAYS_PER_PART` stays each."""
    return max(1, -(-len(np.unique(cohort)) // STAYS_PER_PART))


def stay_parts(cohort: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Part of each stay id: the sorted `cohort` cut every `STAYS_PER_PART` stays (an id outside
    it goes to the part of the range it falls in), so the parts in order are in stay order."""
    starts = np.unique(cohort)[::STAYS_PER_PART][1:]
    return lambda stay: np.searchsorted(starts, stay, side="right")


def key_parts(parts: int) -> Callable[[np.ndarray], np.ndarray]:
    """Part of each (non-negative) key: its remainder by `parts`."""
    return lambda key: key % parts


@dataclass(frozen=True)
class Parts:
    """Rows in Arrow IPC files, read back a part at a time: `coded`, column -> its categories."""

    files: tuple[Path, ...]
    rows: int
    schema: pa.Schema
    coded: dict[str, pd.Index] = field(default_factory=dict)
    dtypes: dict[str, object] = field(default_factory=dict)  # the other columns' pandas dtypes, as appended

    def __len__(self) -> int:
        return self.rows

    def frames(self) -> Iterator[pd.DataFrame]:
        """Each part as a DataFrame, in part order (an empty one when no part holds a row);
        coded columns as Categoricals."""
        for file in self.files:
            yield self._frame(_read(file))
        if not self.files:
            yield self._frame(self.schema.empty_table())

    def column_by_part(self, name: str) -> Iterator[np.ndarray]:
        """A numeric column, a part at a time (only that column is read)."""
        for file in self.files:
            yield _read(file).column(name).to_numpy()

    def stays(self) -> np.ndarray:
        """The stay ids with a row, sorted (parts by stay range: `stay_parts`)."""
        per_part = [np.unique(stay) for stay in self.column_by_part("stay_id")]
        return np.unique(np.concatenate(per_part)) if per_part else np.zeros(0, dtype=np.int64)

    def rewrite(self, change: Callable[[pd.DataFrame], pd.DataFrame], folder: Path) -> Parts:
        """`change` applied to each part, written to `folder` as the same parts; these files are
        removed (this object is spent)."""
        writer = PartWriter(folder, max(len(self.files), 1))
        for number, frame in enumerate(self.frames()):
            writer.append(change(frame), number)
        self.remove()
        return writer.close()

    def remove(self) -> None:
        for folder in {file.parent for file in self.files}:
            shutil.rmtree(folder, ignore_errors=True)

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        frame = table.to_pandas()
        changed = {column: dtype for column, dtype in self.dtypes.items() if frame[column].dtype != dtype}
        frame = frame.astype(changed) if changed else frame  # e.g. text back to pandas' "string"
        for column, categories in self.coded.items():
            frame[column] = pd.Categorical.from_codes(frame[column].to_numpy(), categories=categories)
        return frame


def _read(file: Path) -> pa.Table:
    return pa.ipc.open_stream(pa.memory_map(str(file))).read_all()  # the table keeps the mapping open


class PartWriter:
    """Appends rows to `parts` parts under `folder` (created, empty): each row to the part
    `part` names, an array per row or one number for all of them. Every append has the same
    columns; a Categorical column the same categories each time."""

    def __init__(self, folder: Path, parts: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True)
        self.parts = parts
        self.rows = 0
        self._streams: dict[int, tuple] = {}
        self._schema: pa.Schema | None = None
        self._coded: dict[str, pd.Index] = {}
        self._dtypes: dict[str, object] = {}

    def append(self, frame: pd.DataFrame | dict, part: np.ndarray | int) -> None:
        table = self._table(pd.DataFrame(frame, copy=False) if isinstance(frame, dict) else frame)
        self.rows += table.num_rows
        if np.ndim(part) == 0:
            self._write(int(part), table)
            return
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        for number, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:])):
            if end > begin:
                self._write(number, table.take(pa.array(order[begin:end])))

    def close(self) -> Parts:
        for sink, writer in self._streams.values():
            writer.close()
            sink.close()
        if self._schema is None:
            raise ValueError(f"{self.folder}: no rows were appended, not even an empty batch")
        return Parts(tuple(self.folder / _name(n) for n in sorted(self._streams)), self.rows, self._schema,
                     dict(self._coded), dict(self._dtypes))

    def _table(self, frame: pd.DataFrame) -> pa.Table:
        columns = {}
        for name, values in frame.items():
            if isinstance(values.dtype, pd.CategoricalDtype):
                known = self._coded.setdefault(name, values.cat.categories)
                if not known.equals(values.cat.categories):
                    raise ValueError(f"{self.folder}: column {name} appended with other categories")
                values = values.cat.codes.astype(np.int32)
            else:
                self._dtypes.setdefault(name, values.dtype)
            columns[name] = pa.array(values, from_pandas=True)
        table = pa.table(columns)
        if self._schema is None:
            self._schema = table.schema
        return table.cast(self._schema)

    def _write(self, number: int, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if number not in self._streams:
            sink = pa.OSFile(str(self.folder / _name(number)), "wb")
            self._streams[number] = (sink, pa.ipc.new_stream(sink, self._schema))
        self._streams[number][1].write_table(table)


def _name(number: int) -> str:
    return f"part-{number:05d}.arrow"
