"""Per-stay encoder inputs for pretraining and embedding, streamed by Ray Data.

`build_stay_table` (driver, once per dataset) turns a prepared dataset's whole-stay view into
one row per stay: presence flags, each vector modality as a fixed-length
vector (sign-log + z-score + one-hot fitted on the training split), the
time series as a flat list of normalised (value, measured) steps, the note
texts and the chosen image's path. `build_task_tables` does the same for each
task's window, with the same statistics (`InputScaling`). Work that belongs in the data pipeline
happens in Ray Data map stages: `TokenizeNotes` (the text encoder's
tokenizer, loaded once per actor) and `data.images.LoadImages` (JPEG decoding plus the
appendix A.1.5 resize / crop / normalise; the training split's augmentations are drawn in the
worker each epoch, `data.images.EpochAugment`). `collate` (`StayCollate` for Ray Data) pads the
time series and gives the batch layout the models take (see `clintraj.models.mga`):

    present (B, M) bool; "<m>.x" (B, d); "time_series.values" (B, T, F) and
    "time_series.lengths" (B,); "cxr.image" (B, 3, H, W);
    "<note>.input_ids" / "<note>.attention_mask" (B, L)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
from ray.data.collate_fn import NumpyBatchCollateFn

from clintraj.artifacts.dataset import Dataset
from clintraj.data import windows
from clintraj.data.features import ModalityScaler, modality_vectors
from clintraj.data.images import LoadImages
from clintraj.data.modalities import time_series_variables

@dataclass
class InputConfig:
    ts_max_steps: int = 256  # the first steps of a stay's hourly series (the LSTM's input length cap)
    text_max_length: int = 512
    # Appendix A.1.5; its numbers were lost in extraction: these are the platform's defaults.
    image_resize: int = 256
    image_crop: int = 224
    augment_crop_scale: tuple[float, float] = (0.8, 1.0)
    augment_flip_p: float = 0.5
    augment_rotation_degrees: float = 10.0
    augment_translate: float = 0.1
    augment_scale: tuple[float, float] = (0.9, 1.1)


VECTOR_KINDS = ("terms", "values", "static")


def vector_modalities(kinds: dict[str, str]) -> list[str]:
    """The modalities whose input is one vector (modality name -> kind, as report.json has them)."""
    return [m for m, kind in kinds.items() if kind in VECTOR_KINDS]


def _fixed(vectors: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1])


@dataclass
class InputScaling:
    """The statistics every encoder input is scaled with, fitted once on the pretraining training
    split's whole-stay tables: pretraining, a task's window and each single event then share one
    feature space, the one the encoders were trained in."""

    kinds: dict[str, str]
    scalers: dict[str, ModalityScaler]
    ts_variables: list[str]
    ts_mean: np.ndarray
    ts_std: np.ndarray

    @classmethod
    def fit(cls, dataset: Dataset) -> "InputScaling":
        stays, kinds = dataset.stays(), dataset.modality_kinds
        train_ids = stays.loc[stays["split"] == "train", "stay_id"]
        scalers = {}
        for name in vector_modalities(kinds):
            table = dataset.table(name)
            scalers[name] = ModalityScaler.fit(table[table["stay_id"].isin(train_ids)])
        variables, mean, std = [], np.zeros(0), np.zeros(0)
        if "time_series" in kinds:
            events = dataset.events("time_series")
            variables = time_series_variables(events)
            train = events[events["stay_id"].isin(train_ids)]
            mean = train[variables].mean().fillna(0.0).to_numpy(float)
            std = train[variables].std().replace(0.0, 1.0).fillna(1.0).to_numpy(float)
        return cls(kinds, scalers, variables, mean, std)

    def steps(self, events: pd.DataFrame) -> np.ndarray:
        """Each time-series bin as [z-scored values..., measured masks...] (float32)."""
        values = (events[self.ts_variables].to_numpy(float) - self.ts_mean) / self.ts_std
        masks = events[[f"mask:{v}" for v in self.ts_variables]].to_numpy(float)
        return np.concatenate([values, masks], axis=1).astype(np.float32)

    def feature_dims(self) -> dict[str, int]:
        dims = {m: len(scaler.names) for m, scaler in self.scalers.items()}
        if self.ts_variables:
            dims["time_series"] = 2 * len(self.ts_variables)
        return dims


def time_series_steps(events: pd.DataFrame, stay_ids: pd.Series, scaling: InputScaling, max_steps: int) -> list:
    """Per stay (in `stay_ids` order) a flat float32 array of its first `max_steps` scaled bins."""
    events = events.sort_values(["stay_id", "time_hours"], kind="stable")
    events = events[(events.groupby("stay_id").cumcount() < max_steps).to_numpy()]
    steps = scaling.steps(events)
    bounds = np.flatnonzero(np.diff(events["stay_id"].to_numpy())) + 1
    per_stay = dict(zip(events["stay_id"].to_numpy()[np.r_[0, bounds]] if len(events) else [],
                        np.split(steps, bounds) if len(events) else []))
    empty = np.zeros((0, steps.shape[1]), np.float32)
    return [per_stay.get(s, empty).ravel() for s in stay_ids]


def stay_table(stays: pd.DataFrame, tables: dict[str, pd.DataFrame], ts_events: pd.DataFrame | None,
               scaling: InputScaling, config: InputConfig) -> pa.Table:
    """One row per stay of `stays` (stay_id, split, any extra key such as task): presence, each
    vector modality's scaled vector (zeros where absent), the time-series steps, note texts and the
    chosen image's path, from `tables` (a view's or a window's per-stay tables)."""
    names = list(scaling.kinds)
    ids = stays["stay_id"]
    present = np.stack([ids.isin(tables[m]["stay_id"]).to_numpy(float) for m in names], axis=1)
    columns = {key: pa.array(stays[key].astype(str) if key != "stay_id" else stays[key].to_numpy())
               for key in stays.columns}
    columns["present"] = _fixed(present.reshape(len(ids), len(names)))
    for name, kind in scaling.kinds.items():
        if kind in VECTOR_KINDS:
            columns[f"{name}.x"] = _fixed(modality_vectors(scaling.scalers[name], tables[name], ids))
        elif kind == "time_series":
            columns["time_series.steps"] = pa.array(time_series_steps(ts_events, ids, scaling, config.ts_max_steps),
                                                    type=pa.list_(pa.float32()))
        elif kind == "text":
            text = stays[["stay_id"]].merge(tables[name][["stay_id", "text"]], how="left", on="stay_id")["text"]
            columns[f"{name}.text"] = pa.array(text.fillna("").astype(str))
        elif kind == "image":
            path = stays[["stay_id"]].merge(tables[name][["stay_id", "path"]], how="left", on="stay_id")["path"]
            columns[f"{name}.path"] = pa.array(path.fillna("").astype(str))
    return pa.table(columns)


def input_meta(dataset: Dataset, scaling: InputScaling, image_root: Path | None) -> dict:
    """What the encoders need to know of a dataset's inputs (inputs.json). `image_root` None: the
    CXR root the dataset was prepared from, or none when it was prepared without one (its image
    modality is then absent for every stay, and no stage loads images)."""
    images = [m for m, kind in scaling.kinds.items() if kind == "image"]
    if image_root is None and images:
        image_root = dataset.image_root
        if image_root is None and any(len(dataset.table(m)) for m in images):
            raise ValueError(f"{dataset.path} has images but no image root: give the MIMIC-CXR-JPG root")
    return {"dataset": dataset.name, "modalities": list(scaling.kinds), "modality_kinds": scaling.kinds,
            "feature_dims": scaling.feature_dims(), "image_root": str(image_root) if image_root else None}


def build_stay_table(dataset: Dataset, out: Path, config: InputConfig, image_root: Path | None = None) -> dict:
    """The pretraining view: `out/<split>/part-*.parquet` (one row per stay, whole stay) and
    `out/inputs.json` (feature sizes)."""
    scaling = InputScaling.fit(dataset)
    ts = dataset.events("time_series") if scaling.ts_variables else None
    table = stay_table(dataset.stays()[["stay_id", "split"]], dataset.tables(), ts, scaling, config)
    for split in ("train", "val", "test"):
        write_split(table.filter(pa.compute.equal(table["split"], split)), Path(out) / split)
    meta = input_meta(dataset, scaling, image_root)
    (Path(out) / "inputs.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def build_task_tables(dataset: Dataset, out: Path, config: InputConfig, tasks: list[str]) -> dict[str, int]:
    """Each task's window: `out/part-*.parquet`, one row per (task, cohort stay) with the task's
    split, in the pretraining view's feature space; returns the stays per task."""
    scaling = InputScaling.fit(dataset)
    ts = dataset.events("time_series") if scaling.ts_variables else None
    parts, counts = [], {}
    for task in tasks:
        cohort = dataset.task_cohort(task)
        tables = dataset.task_tables(task, list(scaling.kinds))
        window_ts = ts[windows.select(ts, cohort)] if ts is not None else None
        keys = cohort[["stay_id", "split"]].assign(task=task)
        parts.append(stay_table(keys, tables, window_ts, scaling, config))
        counts[task] = len(cohort)
    write_split(pa.concat_tables(parts), Path(out))
    return counts


def write_split(table: pa.Table, folder: Path, shards: int = 4) -> None:
    """A few Parquet shards per split, so Ray Data reads them in parallel."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    rows = max(1, -(-table.num_rows // shards))
    for shard, start in enumerate(range(0, max(table.num_rows, 1), rows)):
        pq.write_table(table.slice(start, rows), folder / f"part-{shard:05d}.parquet")


def map_stages(ds, meta: dict, config: InputConfig, augment: bool) -> list[tuple[type, dict, int]]:
    """The map stages rows of `ds` need, as (callable class, its constructor's arguments, batch size):
    note tokenisation where they carry note text, image decoding where they name image files (left
    for `data.images.EpochAugment` when `augment`). Only the input's columns are asked: a dataset's
    columns after a map stage are known only by running it (actors started and a tokenizer loaded
    for one row, some 6 s). No image stage without an image root: the dataset has no image
    (`input_meta`)."""
    kinds = meta["modality_kinds"]
    stages = []
    notes = [m for m, kind in kinds.items() if kind == "text" and f"{m}.text" in ds.columns()]
    if notes:
        stages.append((TokenizeNotes, {"tokenizer_dir": str(meta["text_model"]), "max_length": config.text_max_length,
                                       "modalities": notes}, 64))
    if decodes_images(ds, meta):
        stages.append((LoadImages, {"image_root": meta["image_root"], "config": config, "train": augment}, 32))
    return stages


def with_map_stages(ds, meta: dict, config: InputConfig, augment: bool):
    """A Ray Dataset of stay (or event) rows with `map_stages`'s stages, each an actor loading its tool once."""
    import ray.data

    for stage, arguments, batch_size in map_stages(ds, meta, config, augment):
        ds = ds.map_batches(stage, fn_constructor_kwargs=arguments, compute=ray.data.ActorPoolStrategy(size=1),
                            batch_size=batch_size, num_cpus=0.25)
    return ds


def decodes_images(ds, meta: dict) -> bool:
    """Whether `with_map_stages` gives `ds` an image decoding stage (its rows name image files)."""
    kinds = meta["modality_kinds"]
    return bool(meta["image_root"]) and any(kind == "image" and f"{m}.path" in ds.columns() for m, kind in kinds.items())


class TokenizeNotes:
    """Ray Data map stage: note texts -> fixed-length token ids (tokenizer loaded once per actor)."""

    def __init__(self, tokenizer_dir: str, max_length: int, modalities: list[str]):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.max_length = max_length
        self.modalities = modalities

    def __call__(self, batch: dict) -> dict:
        for name in self.modalities:
            encoded = self.tokenizer(list(batch.pop(f"{name}.text")), padding="max_length", truncation=True,
                                     max_length=self.max_length, return_tensors="np")
            batch[f"{name}.input_ids"] = encoded["input_ids"].astype(np.int64)
            batch[f"{name}.attention_mask"] = encoded["attention_mask"].astype(np.int64)
        return batch


def collate(batch: dict, feature_dims: dict) -> dict:
    """Numpy batch from Ray Data -> the model's tensor batch (time series padded to the longest)."""
    import torch

    out = {"present": torch.as_tensor(_stack(batch["present"]) > 0.5)}
    for key, value in batch.items():
        if key in ("present", "split", "task", "time_series.steps") or key.endswith((".text", ".path")):
            continue  # keys, and raw text / paths (turned into tensors by the map stages, not here)
        out[key] = torch.as_tensor(_stack(value))
    if "time_series.steps" in batch:
        width = feature_dims["time_series"]
        series = [np.asarray(s, np.float32).reshape(-1, width) for s in batch["time_series.steps"]]
        lengths = np.array([len(s) for s in series])
        padded = np.zeros((len(series), max(1, lengths.max(initial=0)), width), np.float32)
        for i, s in enumerate(series):
            padded[i, : len(s)] = s
        out["time_series.values"] = torch.as_tensor(padded)
        out["time_series.lengths"] = torch.as_tensor(lengths, dtype=torch.long)
    return out


class StayCollate(NumpyBatchCollateFn):
    """`collate` as Ray Data's `iter_torch_batches(collate_fn=...)` takes it: a callable class over
    numpy batches (a plain function there is deprecated since Ray 2.47)."""

    def __init__(self, feature_dims: dict):
        self.feature_dims = feature_dims

    def __call__(self, batch: dict) -> dict:
        return collate(batch, self.feature_dims)


def _stack(value) -> np.ndarray:
    """A column as one writable array (torch refuses to wrap Arrow's read-only buffers); Ray Data may
    hand fixed-size list columns over as an object array of rows."""
    value = np.asarray(value)
    return np.stack(value) if value.dtype == object else np.array(value)
