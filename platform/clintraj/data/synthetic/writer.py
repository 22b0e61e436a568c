"""Chunked gzip CSV writing, so memory stays flat however many stays are asked for."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv


class GzipCsvWriter:
    """Append DataFrame chunks to one `.csv.gz` with a fixed column order.

    The header is written once, at open, so a table with no rows still has
    the real file's header. Every chunk must carry exactly `columns`.
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = list(columns)
        # mtime=0 keeps the gzip header free of the wall clock: same seed, same bytes.
        self._raw = open(self.path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=4, mtime=0)
        self._gz.write((",".join(self.columns) + "\n").encode())
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if list(frame.columns) != self.columns:
            raise ValueError(f"{self.path.name}: chunk columns {list(frame.columns)} != {self.columns}")
        if len(frame):
            self._gz.write(frame.to_csv(index=False, header=False, lineterminator="\n").encode())
            self.rows += len(frame)

    def write_arrow(self, table: pa.Table) -> None:
        """Append an Arrow table, rendered by pyarrow's CSV writer (C++, many times faster than
        `DataFrame.to_csv` for millions of rows): numbers in shortest form, timestamps as
        'YYYY-MM-DD HH:MM:SS', nulls blank, no quoting (values must hold no comma or quote)."""
        if table.column_names != self.columns:
            raise ValueError(f"{self.path.name}: table columns {table.column_names} != {self.columns}")
        if table.num_rows:
            buffer = pa.BufferOutputStream()
            pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
            self._gz.write(buffer.getvalue())
            self.rows += table.num_rows

    def close(self) -> None:
        self._gz.close()
        self._raw.close()

    def __enter__(self) -> "GzipCsvWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
