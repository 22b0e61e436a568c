"""Reading raw PhysioNet tables: named errors, streamed chunks, counted quarantine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd


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
