"""Reading raw PhysioNet tables: named errors, streamed chunks (pandas; pyarrow with a
read-ahead thread for the large ones), raw text to values, counted quarantine."""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


class RawDataError(ValueError):
    """A raw file or column the pipeline needs is missing or unreadable."""


def table_path(raw: Path, relative: str) -> Path:
    path = Path(raw) / relative
    if not path.is_file():
        raise RawDataError(f"missing raw file: {path}")
    return path


def check_columns(path: Path, required: list[str]) -> None:
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in required if c not in header]
    if missing:
        raise RawDataError(f"{path}: missing column {missing[0]!r} (required: {', '.join(required)})")


def read_table(raw: Path, relative: str, columns: list[str], dtype: dict | None = None) -> pd.DataFrame:
    """The named columns of a whole (small) raw table, after checking they exist."""
    path = table_path(raw, relative)
    check_columns(path, columns)
    return pd.read_csv(path, usecols=columns, dtype=dtype, keep_default_na=False, na_values=[""])


def stream_table(raw: Path, relative: str, columns: list[str], dtype: dict | None = None,
                 chunk_rows: int = 1_000_000) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row index, chunk) pairs over a large raw table, never holding it whole."""
    path = table_path(raw, relative)
    check_columns(path, columns)
    start = 0
    reader = pd.read_csv(path, usecols=columns, dtype=dtype, keep_default_na=False,
                         na_values=[""], chunksize=chunk_rows)
    for chunk in reader:
        yield start, chunk
        start += len(chunk)


# --- large tables: pyarrow, streamed ahead of the caller --------------------------------

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
        batches = ReadAhead(prepared(reader), depth=2)
        try:
            while (item := _next_batch(batches, path)) is not None:
                yield item
        finally:
            batches.close()  # the thread stops reading before the reader closes
    pa.default_memory_pool().release_unused()  # the blocks' memory back to the system


def _next_batch(batches: ReadAhead, path: Path):
    """The next prepared batch, or None at the end. A broken file is a RawDataError that,
    unlike pyarrow's, does not quote the offending line (ids, dates)."""
    try:
        return batches.get()
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> RawDataError:
    return RawDataError(f"{path}: unreadable CSV ({type(error).__name__})")


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


# --- quarantine -------------------------------------------------------------------------


@dataclass
class Quarantine:
    """Rows set aside, by table and reason; rows are pointed to by index, never by content."""

    _rows: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)

    def add(self, table: str, reason: str, row_index) -> None:
        indices = np.asarray(row_index, dtype=np.int64)
        if len(indices):
            self._rows.setdefault((table, reason), []).append(indices)

    def count(self, table: str, reason: str) -> int:
        return int(sum(len(a) for a in self._rows.get((table, reason), [])))

    def frame(self) -> pd.DataFrame:
        parts = [pd.DataFrame({"table": table, "reason": reason, "row": np.concatenate(arrays)})
                 for (table, reason), arrays in sorted(self._rows.items())]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"table": [], "reason": [], "row": []})
        return frame.astype({"table": "string", "reason": "string", "row": "int64"})

    def summary(self) -> list[dict]:
        return [{"table": t, "reason": r, "rows": self.count(t, r)} for (t, r) in sorted(self._rows)]
