"""A task's training sequences, written by `data.sequences.task_sequences` and read by the
sequential trainer and the interpretation:

    sequences.json                  task, dataset, embeddings, window, modalities, latent size,
                                    out features, per-split stays, truncation counts, the training
                                    split's pos_weight and prevalence
    {train,val,test}.parquet        stay_id, y (fixed list), n_events, modality (list), h (flat
                                    list of n_events x latent), time_hours (list); one row group
                                    per shard of the task's stays, written as they are built
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sequences:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @cached_property
    def info(self) -> dict:
        return json.loads((self.path / "sequences.json").read_text())

    def file(self, split: str) -> Path:
        """The split's file (what Ray Data streams)."""
        return self.path / f"{split}.parquet"

    def split(self, split: str) -> dict:
        """A split as numpy columns (what a Ray Data batch looks like), for scoring outside Ray."""
        table = pq.read_table(self.file(split))
        columns = {"stay_id": table["stay_id"].to_numpy(), "n_events": table["n_events"].to_numpy()}
        for name in ("y", "modality", "h", "time_hours"):
            if name in table.column_names:
                columns[name] = list(table[name].to_numpy(zero_copy_only=False))
        return columns

    def write(self, chunks: Iterable[dict[str, pa.Table]], info: Callable[[], dict]) -> dict:
        """Write each split from chunks of its rows ({split: table}, in order; every chunk names
        every split), then `info()`, asked once the chunks are written; return that info."""
        self.path.mkdir(parents=True, exist_ok=True)
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            for chunk in chunks:
                for split, table in chunk.items():
                    if split not in writers:
                        writers[split] = pq.ParquetWriter(self.file(split), table.schema)
                    writers[split].write_table(table)
        finally:
            for writer in writers.values():
                writer.close()
        written = info()
        (self.path / "sequences.json").write_text(json.dumps(written, indent=2) + "\n")
        self.__dict__.pop("info", None)
        return written
