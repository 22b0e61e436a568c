"""The embedding folder, written by the embedding job and read by the static baselines and the
sequential stage.

    embeddings.json                        which encoders (contrastive checkpoint, or scratch and
                                           its seed), modalities and kinds, latent size, per task
                                           its window and counts
    static/part-*.parquet                  task, stay_id, split (the task's), present, <m>.h: one
                                           embedding per modality over the task's window
    events/<inputs>/part-*.parquet         stay_id, time_hours, modality, tie, h: every event embedded
                                           from its own content (one folder per input kind)
    timelines/<task>/part-NNNNN.parquet    stay_id, n_events, time_hours, modality, h (flattened):
                                           each task stay's events inside its window, in time order;
                                           one file per shard of stays, the files in stay order
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Embeddings:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @cached_property
    def record(self) -> dict:
        return json.loads((self.path / "embeddings.json").read_text())

    @property
    def modalities(self) -> list[str]:
        return list(self.record["modalities"])

    @property
    def latent_dim(self) -> int:
        return int(self.record["latent_dim"])

    def static(self, task: str) -> pd.DataFrame:
        """stay_id, split, present, <m>.h of the task's stays, by stay_id."""
        frame = pd.read_parquet(self.path / "static", filters=[("task", "==", task)])
        return frame.drop(columns="task").sort_values("stay_id", kind="stable").reset_index(drop=True)

    def event_files(self) -> list[Path]:
        """The embedded events' files (stay_id, time_hours, modality, tie, h), by folder and name."""
        root = self.path / "events"
        folders = sorted(folder for folder in root.iterdir() if folder.is_dir()) if root.is_dir() else []
        return [file for folder in folders for file in sorted(folder.rglob("*.parquet"))]

    def timelines(self, task: str, columns: list[str] | None = None,
                  stays: tuple[int, int] | None = None) -> pd.DataFrame:
        """A task's timelines (`columns` of them), in stay order; those of the stays from `stays[0]`
        to `stays[1]` inclusive when given (only the files that hold them are read)."""
        filters = [("stay_id", ">=", stays[0]), ("stay_id", "<=", stays[1])] if stays else None
        return pd.read_parquet(self.path / "timelines" / task, columns=columns, filters=filters)

    # --- writing (the embedding job, into a staging folder): Ray Data writes the folders these name ---

    @property
    def static_folder(self) -> Path:
        return self.path / "static"

    def events_folder(self, inputs: str) -> Path:
        return self.path / "events" / inputs

    def write_timelines(self, task: str, table: pa.Table, shard: int = 0) -> None:
        """One shard of a task's timelines (shards numbered in stay order)."""
        folder = self.path / "timelines" / task
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{shard:05d}.parquet")

    def write_record(self, record: dict) -> None:
        (self.path / "embeddings.json").write_text(json.dumps(record, indent=2) + "\n")
        self.__dict__.pop("record", None)
