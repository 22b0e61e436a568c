"""The prepared dataset folder, written by `data.prepare` and read by every later stage.

Layout (tables are sharded into part-NNNNN.parquet, which Ray Data reads in parallel):
    stays.parquet                 stay_id, patient_id, labels, unit_hours, has_<modality>, split
                                  (the pretraining split)
    modalities/<name>/            stay_id + the modality's per-stay features over the whole stay:
                                  the pretraining view
    events/<name>/                stay_id, time_hours + payload: every event of every stay, at its time
    tasks/<task>.parquet          the task's cohort: stay_id, split, prediction_hours (null: the
                                  whole stay), start_hours, end_hours (the stay's window)
    tasks/<task>/modalities/<name>/   the per-stay features over the task's window only
    quarantine.parquet            (table, reason, row, field_only) of every raw row set aside (and,
                                  field_only, of used rows with a field read as missing)
    report.json / report.md / missingness.png
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clintraj.storage import replaced_when_done
from clintraj.tasks import window_text

FORMAT = 2
# Characters of text (notes) per shard at most, besides `rows_per_shard`: a shard of 200,000
# discharge summaries would be 2 GB of text in memory at once.
TEXT_PER_SHARD = 256 * 2**20


def _text_per_row(frame: pd.DataFrame) -> np.ndarray:
    """Characters of text in each row (0 for a frame without text columns)."""
    weight = np.zeros(len(frame), dtype=np.int64)
    for column, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.StringDtype) or dtype == object:
            weight += frame[column].str.len().fillna(0).to_numpy("int64")
    return weight


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset folder (read side)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def exists(self) -> bool:
        """Whether the folder holds a finished dataset (its report is written last)."""
        return (self.path / "report.json").is_file()

    @cached_property
    def report(self) -> dict:
        file = self.path / "report.json"
        if not file.is_file():
            raise FileNotFoundError(f"{self.path} is not a prepared dataset (no report.json): write one with "
                                    "jobs/preprocess.py")
        report = json.loads(file.read_text())
        if report.get("format") != FORMAT:
            raise ValueError(f"{self.path} was prepared in dataset format {report.get('format')}, this version "
                             f"reads format {FORMAT} (tasks with prediction windows): prepare it again with "
                             "jobs/preprocess.py")
        return report

    @property
    def summary(self) -> str:
        """report.md: the funnel, presence, what each task sees, splits and quarantine, for people."""
        return (self.path / "report.md").read_text()

    @property
    def name(self) -> str:
        """Which dataset it holds: eicu, mimic or meds."""
        return self.report["dataset"]

    @property
    def modalities(self) -> list[str]:
        return list(self.report["modalities"])

    @property
    def modality_kinds(self) -> dict[str, str]:
        return dict(self.report["modality_kinds"])

    @property
    def after_stay(self) -> list[str]:
        """Modalities known only after the stay: inputs of no task."""
        return list(self.report["after_stay"])

    @property
    def windows(self) -> dict[str, float | None]:
        """Each task's prediction time (hours after ICU admission; None: the whole stay)."""
        return dict(self.report["windows"])

    @property
    def tasks(self) -> list[str]:
        return list(self.report["tasks"])

    @property
    def image_root(self) -> Path | None:
        """The MIMIC-CXR-JPG root the dataset was prepared from."""
        cxr = self.report.get("sources", {}).get("cxr")
        return Path(cxr) if cxr else None

    def stays(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "stays.parquet")

    def table(self, modality: str) -> pd.DataFrame:
        """A modality's whole-stay table (the pretraining view)."""
        return pd.read_parquet(self.path / "modalities" / modality)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {m: self.table(m) for m in self.modalities}

    def events(self, modality: str, stay_id: int | None = None, stays: tuple[int, int] | None = None) -> pd.DataFrame:
        """Every event of a modality (or of one stay, or of the stays from `stays[0]` to `stays[1]`
        inclusive: the files are sorted by stay, so only those that hold them are read), sorted by
        stay and time."""
        filters = [("stay_id", "=", stay_id)] if stay_id is not None else None
        if stays is not None:
            filters = [*(filters or []), ("stay_id", ">=", stays[0]), ("stay_id", "<=", stays[1])]
        return pd.read_parquet(self.path / "events" / modality, filters=filters)

    def task_cohort(self, task: str) -> pd.DataFrame:
        """stay_id, split, prediction_hours, start_hours, end_hours of the task's stays."""
        return pd.read_parquet(self.path / "tasks" / f"{task}.parquet")

    def task_tables(self, task: str, modalities: list[str] | None = None) -> dict[str, pd.DataFrame]:
        """The task's per-stay tables, over its window."""
        return {m: pd.read_parquet(self.path / "tasks" / task / "modalities" / m)
                for m in (modalities or self.modalities)}

    def check_windows(self, requested: dict[str, float | None], source: str) -> None:
        """Fail when `requested` windows (task -> hours) differ from those the dataset was prepared with."""
        for task, hours in requested.items():
            prepared = self.windows.get(task, hours)
            same = (prepared is None and hours is None) or (
                prepared is not None and hours is not None and math.isclose(prepared, hours))
            if not same:
                raise ValueError(f"{source} asks for task {task!r} at {window_text(hours)}, but {self.path} was "
                                 f"prepared with {window_text(prepared)}: prepare it again with that window, "
                                 "or ask for the prepared one")


class DatasetWriter:
    """Writes a dataset folder; `data.prepare` is its one user. Used as a context manager: it
    writes into a staging sibling that replaces the folder only when the block ends without an
    error, so a dataset folder is either complete or absent (an interrupted write leaves the old
    one, or nothing) and no staging folder outlives its step."""

    def __init__(self, path: Path, rows_per_shard: int):
        self.rows_per_shard = rows_per_shard
        self._staging = replaced_when_done(path, "the dataset")

    def __enter__(self) -> "DatasetWriter":
        self.path = self._staging.__enter__()
        (self.path / "tasks").mkdir()
        return self

    def __exit__(self, kind, error, traceback) -> bool | None:
        return self._staging.__exit__(kind, error, traceback)

    def _shards(self, frames: Iterable[pd.DataFrame], folder: Path) -> None:
        """The rows of `frames`, in order, as shards of `rows_per_shard` rows, or fewer where
        their text passes `TEXT_PER_SHARD` characters (notes): at least one shard, maybe empty.
        The cuts depend on the rows only, so one frame or the same rows in parts give the same
        shards."""
        folder.mkdir(parents=True, exist_ok=True)
        pending, rows, text, shard, last = [], 0, 0, 0, None

        def flush():
            nonlocal pending, rows, text, shard
            self._shard(pd.concat(pending) if len(pending) > 1 else pending[0], folder / f"part-{shard:05d}.parquet")
            pending, rows, text, shard = [], 0, 0, shard + 1

        for frame in frames:
            last, weight, start = frame.iloc[:0], _text_per_row(frame), 0
            while start < len(frame):
                room = min(self.rows_per_shard - rows, len(frame) - start)
                total = text + np.cumsum(weight[start:start + room])
                fits = min(room, int(np.searchsorted(total, TEXT_PER_SHARD, side="right")))
                if not fits and not rows:  # one row past the limit alone: a shard of its own
                    fits = 1
                if fits:
                    pending.append(frame.iloc[start:start + fits])
                    rows, text, start = rows + fits, int(total[fits - 1]), start + fits
                if rows == self.rows_per_shard or start < len(frame):
                    flush()
        if rows or not shard:
            pending = pending or [last if last is not None else pd.DataFrame()]
            flush()

    @staticmethod
    def _shard(rows: pd.DataFrame, path: Path) -> None:
        rows = rows.astype({c: "string" for c, dtype in rows.dtypes.items()  # a reader's codes, as text
                            if isinstance(dtype, pd.CategoricalDtype)})
        # one chunk per column: the same bytes whether the rows came in one frame or several
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False).combine_chunks(), path)

    def stays(self, stays: pd.DataFrame) -> None:
        stays.to_parquet(self.path / "stays.parquet", index=False)

    def modality(self, name: str, table: Iterable[pd.DataFrame], events: Iterable[pd.DataFrame]) -> None:
        """The modality's per-stay table and its events (sorted by stay and time), each in parts."""
        self._shards(table, self.path / "modalities" / name)
        self._shards(events, self.path / "events" / name)

    def task_table(self, task: str, modality: str, table: Iterable[pd.DataFrame]) -> None:
        """A modality's per-stay table over the task's window, in parts."""
        self._shards(table, self.path / "tasks" / task / "modalities" / modality)

    def task_cohort(self, task: str, cohort: pd.DataFrame) -> None:
        cohort.to_parquet(self.path / "tasks" / f"{task}.parquet", index=False)

    def quarantine(self, frame: pd.DataFrame) -> None:
        frame.to_parquet(self.path / "quarantine.parquet", index=False)

    def report(self, report: dict, markdown: str) -> None:
        (self.path / "report.json").write_text(json.dumps({"format": FORMAT, **report}, indent=2) + "\n")
        (self.path / "report.md").write_text(markdown)

    @property
    def figure(self) -> Path:
        return self.path / "missingness.png"
