"""A task's training sequences, written by `data.sequences.task_sequences` and read by the
sequential trainer and the interpretation:

    sequences.json                  task, dataset, embeddings, window, modalities, latent size,
                                    out features, per-split stays, truncation counts, the training
                                    split's pos_weight and prevalence
    {train,val,test}.parquet        stay_id, y (fixed list), n_events, modality (list), h (flat
                                    list of n_events x latent), time_hours (list)
"""

from __future__ import annotations

import json
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

    def write(self, tables: dict[str, pa.Table], info: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for split, table in tables.items():
            pq.write_table(table, self.file(split))
        (self.path / "sequences.json").write_text(json.dumps(info, indent=2) + "\n")
        self.__dict__.pop("info", None)
