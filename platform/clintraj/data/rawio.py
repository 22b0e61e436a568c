"""Reading raw PhysioNet tables: named errors, streamed chunks (pyarrow, with a read-ahead
thread), raw text to values, and the ledger of where every raw row went.

Every column is read as text (blank -> missing); the readers turn text into values and count
what does not convert. A file that cannot be read is a `RawDataError` naming the file, and the
column where one is to blame, never quoting a cell: a missing file or column, an empty file, a
header without rows, a cut-off or corrupt gzip, text that is not UTF-8, a row with the wrong
number of fields.
"""

from __future__ import annotations

import contextlib
import csv
import io
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clintraj.runtime import run_each


class RawDataError(ValueError):
    """A raw file or column the pipeline needs is missing or unreadable."""


def table_path(raw: Path, relative: str) -> Path:
    path = Path(raw) / relative
    if not path.is_file():
        raise RawDataError(f"missing raw file: {path}")
    return path


def read_header(path: Path) -> list[str]:
    """The column names of a raw file: its first CSV row (a path ending in .gz is decompressed)."""
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            header = next(csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline="")), None)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, pa.ArrowException) as error:
        raise unreadable(path, error) from None
    if not header:
        raise RawDataError(f"{path}: empty file (no header row)")
    return header


def check_columns(path: Path, required: list[str]) -> list[str]:
    """The file's header, after checking it names every required column."""
    header = read_header(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise RawDataError(f"{path}: missing column {missing[0]!r} (required: {', '.join(required)})")
    return header


def unreadable(path: Path, error: BaseException, header: list[str] | None = None,
               from_row: int | None = None) -> RawDataError:
    """A RawDataError for a file the CSV reader or gzip gave up on. Unlike their messages, it
    never quotes the offending line (ids, dates, text): it says what is wrong, in which column
    where that is known, and from which data row on."""
    text = str(error)
    expected = re.search(r"Expected (\d+) columns, got (\d+)", text)
    if isinstance(error, UnicodeDecodeError) or "invalid UTF8" in text:
        what = "not valid UTF-8 text"
    elif "Empty CSV file" in text:
        what = "empty file (no header row)"
    elif expected:
        what = f"a row has {expected.group(2)} fields where the header has {expected.group(1)}"
    elif isinstance(error, (OSError, EOFError)):  # pyarrow / gzip: "Truncated compressed stream", "zlib inflate failed"
        what = "not a complete compressed file (cut off or corrupt)"
    else:
        what = f"unreadable CSV ({type(error).__name__})"
    column = re.search(r"In CSV column #(\d+)", text)
    index = int(column.group(1)) if column else -1
    where = f" in column {header[index]!r}" if header and 0 <= index < len(header) else ""
    rows = f" (at or after data row {from_row})" if from_row else ""
    return RawDataError(f"{path}: {what}{where}{rows}")


# --- streamed tables: pyarrow, read ahead of the caller --------------------------------

_BYTES_PER_ROW = 64  # pyarrow reads blocks of about chunk_rows rows (a chartevents row is ~95 bytes) ...
_MAX_BLOCK_BYTES = 4 << 20  # ... of at most 4 MiB


class ReadAhead:
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


def csv_batches(raw: Path, relative: str, columns: list[str], chunk_rows: int,
                prepare: Callable[[int, pa.RecordBatch], object]) -> Iterator:
    """`prepare(first data row, record batch)` over the batches of a raw table, streamed ahead
    of the caller by one thread: pyarrow decompresses and parses blocks of about `chunk_rows`
    rows (4 MiB at most), converting only `columns` (as text, blank -> null), and `prepare`
    runs there too. Memory: a few blocks, whatever the table's size. A file without data rows
    is an error."""
    path = table_path(raw, relative)
    header = check_columns(path, columns)
    read = pacsv.ReadOptions(block_size=int(np.clip(chunk_rows * _BYTES_PER_ROW, 1 << 16, _MAX_BLOCK_BYTES)))
    convert = pacsv.ConvertOptions(include_columns=columns, column_types=dict.fromkeys(columns, pa.string()),
                                   null_values=[""], strings_can_be_null=True)
    parse = pacsv.ParseOptions(newlines_in_values=True)

    def prepared(reader: pacsv.CSVStreamingReader) -> Iterator:
        start, batches = 0, iter(reader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as error:
                raise unreadable(path, error, header, start) from None
            yield prepare(start, batch)
            start += batch.num_rows
        if not start:
            raise RawDataError(f"{path}: a header but no data rows")

    try:  # a path ending in .gz is decompressed by pyarrow
        reader = pacsv.open_csv(str(path), read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowException, OSError) as error:
        raise unreadable(path, error, header) from None
    with reader:
        batches = ReadAhead(prepared(reader), depth=2)
        try:
            while (item := batches.get()) is not None:
                yield item
        finally:
            batches.close()  # the thread stops reading before the reader closes
    pa.default_memory_pool().release_unused()  # the blocks' memory back to the system


def stream_table(raw: Path, relative: str, columns: list[str],
                 chunk_rows: int = 1_000_000) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first data row, chunk) pairs over a raw table, never holding it whole: `columns` as
    text (missing where blank), indexed by the row's data row in the file."""

    def frame(start: int, batch: pa.RecordBatch) -> tuple[int, pd.DataFrame]:
        return start, batch.to_pandas().set_axis(pd.RangeIndex(start, start + batch.num_rows))

    yield from csv_batches(raw, relative, columns, chunk_rows, frame)


def read_table(raw: Path, relative: str, columns: list[str]) -> pd.DataFrame:
    """The named columns of a whole (small) raw table as text, indexed by data row."""
    return pd.concat([chunk for _, chunk in stream_table(raw, relative, columns)])


class TextCodes:
    """One integer code per distinct text of a column read in chunks, the same in every chunk
    (null: -1), so a long table's names (lab names, diagnosis strings) are held as codes, not as
    one string per row. `categorical` makes the codes a pandas Categorical, its texts sorted."""

    def __init__(self):
        self._codes: dict[str, int] = {}

    def encode(self, text: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(text)
        known = [self._codes.setdefault(t, len(self._codes)) for t in encoded.dictionary.to_pylist()]
        local = pc.fill_null(encoded.indices, -1).to_numpy()
        return np.asarray([*known, -1], dtype=np.int32)[local]

    def categorical(self, codes: np.ndarray) -> pd.Categorical:
        texts = np.asarray(list(self._codes), dtype=object)
        order = np.argsort(texts, kind="stable")
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        return pd.Categorical.from_codes(np.append(rank, np.int32(-1))[codes],
                                         categories=pd.Index(texts[order], dtype="string"))


# --- raw text to values ----------------------------------------------------------------


def parse_datetime(text: pd.Series) -> pd.Series:
    """'YYYY-MM-DD[ HH:MM:SS]' -> datetime64; anything else -> NaT."""
    return pd.to_datetime(text.astype("string"), format="ISO8601", errors="coerce")


# Raw text -> numbers, column by column. pyarrow's casts are the fast path; a chunk they
# refuse (a stray 'n/a', a padded number, an odd date) goes through pandas as before.


def to_integers(text: pa.Array) -> np.ndarray:
    """int64 per row of a text column; -1 where blank or not a whole number."""
    try:
        return pc.fill_null(pc.cast(text, pa.int64()), -1).to_numpy()
    except pa.ArrowInvalid:
        number = to_floats(text)
        whole = np.isfinite(number) & (number == np.floor(number))
        return np.where(whole, number, -1).astype("int64")


def to_floats(text: pa.Array) -> np.ndarray:
    """float64 per row of a text column; NaN where blank, not a number or not finite."""
    try:
        number = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        number = pd.to_numeric(text.to_pandas(), errors="coerce").astype("float64").to_numpy()
    return np.where(np.isfinite(number), number, np.nan)


def to_datetimes(text: pa.Array) -> np.ndarray:
    """datetime64[us] per row of a 'YYYY-MM-DD[ HH:MM:SS]' text column; NaT where blank or
    unparseable (`parse_datetime`'s rules)."""
    try:
        return pc.cast(text, pa.timestamp("us")).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return parse_datetime(text.to_pandas()).to_numpy().astype("datetime64[us]")


# --- where every row went -----------------------------------------------------------------


@dataclass
class Quarantine:
    """The ledger of a reader's raw tables: every data row of a table is counted once, as
    quarantined (malformed or contradictory: set aside, by reason, pointed to by its data row,
    never by content), filtered (not the cohort's data: counted by reason) or used. A
    field-level entry (`field_only`) names a used row with one field treated as missing (a
    label, a value); it is listed with the quarantine but is no set-aside row."""

    _rows: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    _field_only: set[tuple[str, str]] = field(default_factory=set)
    _read: Counter = field(default_factory=Counter)
    _filtered: Counter = field(default_factory=Counter)
    _used: Counter = field(default_factory=Counter)

    def add(self, table: str, reason: str, row_index, field_only: bool = False) -> None:
        indices = np.asarray(row_index, dtype=np.int64)
        if len(indices):
            self._rows.setdefault((table, reason), []).append(indices)
            if field_only:
                self._field_only.add((table, reason))

    def count(self, table: str, reason: str) -> int:
        return int(sum(len(a) for a in self._rows.get((table, reason), [])))

    def count_read(self, table: str, rows: int) -> None:
        """Data rows of the raw table (every one must end up quarantined, filtered or used)."""
        self._read[table] += int(rows)

    def count_filtered(self, table: str, reason: str, rows) -> None:
        """Rows left out by a rule (another stay, another item), not for being malformed."""
        self._filtered[table, reason] += int(rows)

    def count_used(self, table: str, rows: int) -> None:
        self._used[table] += int(rows)

    def merge(self, other: Quarantine) -> None:
        """Add the entries and counts of `other`, a ledger kept apart (`read_apart`), after this
        one's: merging in the order the readers would have run gives the ledger they would have
        written to this one."""
        for key, arrays in other._rows.items():
            self._rows.setdefault(key, []).extend(arrays)
        self._field_only |= other._field_only
        self._read.update(other._read)
        self._filtered.update(other._filtered)
        self._used.update(other._used)

    def frame(self) -> pd.DataFrame:
        """(table, reason, row, field_only) per entry, by table and reason, rows in row order
        (whatever order a reader found them in: by chunk, by key part)."""
        parts = [pd.DataFrame({"table": table, "reason": reason, "row": np.sort(np.concatenate(arrays)),
                               "field_only": (table, reason) in self._field_only})
                 for (table, reason), arrays in sorted(self._rows.items())]
        empty = pd.DataFrame({"table": [], "reason": [], "row": [], "field_only": []})
        frame = pd.concat(parts, ignore_index=True) if parts else empty
        return frame.astype({"table": "string", "reason": "string", "row": "int64", "field_only": "bool"})

    def summary(self) -> list[dict]:
        return [{"table": t, "reason": r, "rows": self.count(t, r), "field_only": (t, r) in self._field_only}
                for (t, r) in sorted(self._rows)]

    def accounts(self) -> list[dict]:
        """Per raw table: its data rows, and where they went (used, filtered and quarantined by
        reason); `unaccounted` = rows - used - filtered - quarantined, 0 when every row is counted
        once. Field-level entries are listed apart: their rows are among the used ones."""
        tables = sorted({*self._read, *self._used, *(t for t, _ in self._filtered), *(t for t, _ in self._rows)})
        accounts = []
        for table in tables:
            filtered = {r: n for (t, r), n in sorted(self._filtered.items()) if t == table and n}
            quarantined = {r: self.count(t, r) for (t, r) in sorted(self._rows)
                           if t == table and (t, r) not in self._field_only}
            fields = {r: self.count(t, r) for (t, r) in sorted(self._field_only) if t == table}
            rows, used = self._read[table], self._used[table]
            accounts.append({"table": table, "rows": rows, "used": used, "filtered": filtered,
                             "quarantined": quarantined, "used_with_a_field_missing": fields,
                             "unaccounted": rows - used - sum(filtered.values()) - sum(quarantined.values())})
        return accounts


def read_apart(readers: Sequence[Callable[[Quarantine], object]], quarantine: Quarantine) -> list:
    """What each reader (`reader(quarantine)`, independent of the others: one raw file each)
    returns, read with a ledger of its own, merged into `quarantine` in the readers' order: the
    same results and ledger as reading one after the other. On a Ray cluster (`runtime.run_each`)
    the readers run as tasks spread over its nodes."""
    done = run_each([partial(_with_own_ledger, reader) for reader in readers], what="raw tables")
    for _, ledger in done:
        quarantine.merge(ledger)
    return [result for result, _ in done]


def _with_own_ledger(reader: Callable[[Quarantine], object]) -> tuple[object, Quarantine]:
    ledger = Quarantine()
    return reader(ledger), ledger


def drop_repeated(frame: pd.DataFrame, key: str, columns: list[str], table: str,
                  quarantine: Quarantine) -> pd.DataFrame:
    """`frame` (with `row`, the data row) without the rows whose `key`, the table's own row id,
    repeats: a repeat identical to the first row of its key (in `columns`) is quarantined and
    the first kept; every row of a key whose rows disagree is quarantined (which one is right
    is unknown)."""
    keys = frame[key].to_numpy()
    if keys.dtype.kind in "iu":  # no repeat: found without a hash table of every key (a gigabyte at
        ordered = keys if (keys[1:] > keys[:-1]).all() else np.sort(keys)  # full eICU's lab table)
        if not (ordered[1:] == ordered[:-1]).any():
            return frame
    repeated = frame.duplicated(key, keep=False).to_numpy()
    if not repeated.any():  # the usual case: one key, one row
        return frame
    shared = frame[repeated]
    exact = shared.duplicated([key, *columns], keep="first")
    quarantine.add(table, f"duplicate row ({key} repeated)", shared.loc[exact, "row"])
    conflicting = shared[~exact].duplicated(key, keep=False)
    quarantine.add(table, f"{key} repeated with different content", shared[~exact].loc[conflicting, "row"])
    drop = shared.index[exact].union(shared[~exact].index[conflicting])
    return frame.drop(index=drop)
