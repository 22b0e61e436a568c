"""Per-stay encoder inputs for pretraining and embedding, streamed by Ray Data.

`build_stay_table` (driver, once per dataset) turns a prepared dataset into
one row per stay: presence flags, each vector modality as a fixed-length
vector (sign-log + z-score + one-hot fitted on the training split), the
time series as a flat list of normalised (value, measured) steps, the note
texts and the chosen image's path. Work that belongs in the data pipeline
happens in Ray Data map stages: `TokenizeNotes` (the text encoder's
tokenizer, loaded once per actor) and `LoadImages` (JPEG decoding plus the
appendix A.1.5 resize / crop / normalise, and the augmentations for the
training split). `collate` pads the time series and gives the batch layout
the models take (see `clintraj.models.mga`):

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

from clintraj.data.features import ModalityScaler, modality_vectors

NOTE_MODALITIES = ("discharge_note", "radiology_note")
IMAGE_MODALITIES = ("cxr",)
SEQUENCE_MODALITIES = ("time_series",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def vector_modalities(modality_names: list[str]) -> list[str]:
    special = set(NOTE_MODALITIES) | set(IMAGE_MODALITIES) | set(SEQUENCE_MODALITIES)
    return [m for m in modality_names if m not in special]


def _fixed(vectors: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1])


def time_series_steps(events: pd.DataFrame, stays: pd.DataFrame, max_steps: int) -> tuple[list, list[str], dict]:
    """Per stay (in `stays` order) a flat float32 array of its first `max_steps` steps of
    [z-scored values..., measured masks...], z-scores fitted on the training split."""
    events = events.sort_values(["stay_id", "time_hours"], kind="stable")
    steps, values, scaling = normalised_steps(events, stays)
    kept = (events.groupby("stay_id").cumcount() < max_steps).to_numpy()
    events, steps = events[kept], steps[kept]
    bounds = np.flatnonzero(np.diff(events["stay_id"].to_numpy())) + 1
    per_stay = dict(zip(events["stay_id"].to_numpy()[np.r_[0, bounds]] if len(events) else [],
                        np.split(steps, bounds) if len(events) else []))
    empty = np.zeros((0, steps.shape[1]), np.float32)
    flat = [per_stay.get(s, empty).ravel() for s in stays["stay_id"]]
    return flat, values, scaling


def normalised_steps(events: pd.DataFrame, stays: pd.DataFrame) -> tuple[np.ndarray, list[str], dict]:
    """Each time-series row as [z-scored values..., measured masks...] (float32), z-scores fitted on the
    training split; the variables and the scaling."""
    values = [c for c in events.columns if c not in ("stay_id", "time_hours") and not c.startswith("mask:")]
    train = events["stay_id"].isin(stays.loc[stays["split"] == "train", "stay_id"])
    mean = events.loc[train, values].mean().fillna(0.0)
    std = events.loc[train, values].std().replace(0.0, 1.0).fillna(1.0)
    steps = np.concatenate([((events[values] - mean) / std).to_numpy(float),
                            events[[f"mask:{v}" for v in values]].to_numpy(float)], axis=1).astype(np.float32)
    return steps, values, {"mean": mean.tolist(), "std": std.tolist()}


def build_stay_table(dataset: Path, out: Path, config: InputConfig, image_root: Path | None = None) -> dict:
    """Write `out/<split>/part-*.parquet` (one row per stay) and `out/inputs.json` (feature sizes)."""
    from clintraj.data.prepare import read_dataset

    stays, modalities, report = read_dataset(dataset)
    names = report["modalities"]
    columns = {"stay_id": pa.array(stays["stay_id"].to_numpy()), "split": pa.array(stays["split"].astype(str)),
               "present": _fixed(stays[[f"has_{m}" for m in names]].to_numpy(float))}
    meta = {"dataset": report["dataset"], "modalities": names, "feature_dims": {}}
    train_ids = stays.loc[stays["split"] == "train", "stay_id"]
    for name in vector_modalities(names):
        table = modalities[name]
        scaler = ModalityScaler.fit(table[table["stay_id"].isin(train_ids)])
        columns[f"{name}.x"] = _fixed(modality_vectors(scaler, table, stays["stay_id"]))
        meta["feature_dims"][name] = len(scaler.names)
    if "time_series" in names:
        events = pd.read_parquet(Path(dataset) / "events" / "time_series")
        flat, variables, scaling = time_series_steps(events, stays, config.ts_max_steps)
        columns["time_series.steps"] = pa.array(flat, type=pa.list_(pa.float32()))
        meta["feature_dims"]["time_series"] = 2 * len(variables)
        meta["time_series_scaling"] = scaling
    for name in NOTE_MODALITIES:
        if name in names:
            text = stays[["stay_id"]].merge(modalities[name][["stay_id", "text"]], how="left", on="stay_id")["text"]
            columns[f"{name}.text"] = pa.array(text.fillna("").astype(str))
    for name in IMAGE_MODALITIES:
        if name in names:
            path = stays[["stay_id"]].merge(modalities[name][["stay_id", "path"]], how="left", on="stay_id")["path"]
            columns[f"{name}.path"] = pa.array(path.fillna("").astype(str))
            meta["image_root"] = str(image_root) if image_root else None
    table = pa.table(columns)
    for split in ("train", "val", "test"):
        write_split(table.filter(pa.compute.equal(table["split"], split)), Path(out) / split)
    (Path(out) / "inputs.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def write_split(table: pa.Table, folder: Path, shards: int = 4) -> None:
    """A few Parquet shards per split, so Ray Data reads them in parallel."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = max(1, -(-table.num_rows // shards))
    for shard, start in enumerate(range(0, max(table.num_rows, 1), rows)):
        pq.write_table(table.slice(start, rows), folder / f"part-{shard:05d}.parquet")


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


class LoadImages:
    """Ray Data map stage: image path -> normalised (3, crop, crop) array; augmented when `train`."""

    def __init__(self, image_root: str, config: InputConfig, train: bool, seed: int = 0):
        import torch
        from torchvision.transforms import v2

        self.root = Path(image_root)
        self.crop = config.image_crop
        base = [v2.Resize(config.image_resize)]
        if train:
            base += [v2.RandomResizedCrop(config.image_crop, scale=config.augment_crop_scale),
                     v2.RandomHorizontalFlip(config.augment_flip_p),
                     v2.RandomAffine(config.augment_rotation_degrees,
                                     translate=(config.augment_translate, config.augment_translate),
                                     scale=config.augment_scale)]
        else:
            base += [v2.CenterCrop(config.image_crop)]
        self.transform = v2.Compose([*base, v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        torch.manual_seed(seed)  # the augmentations draw from this actor's global generator

    def __call__(self, batch: dict) -> dict:
        from torchvision.io import ImageReadMode, decode_image

        images = np.zeros((len(batch["cxr.path"]), 3, self.crop, self.crop), np.float32)
        for i, relative in enumerate(batch.pop("cxr.path")):
            if relative:
                image = decode_image(str(self.root / relative), mode=ImageReadMode.RGB)
                images[i] = self.transform(image).numpy()
        batch["cxr.image"] = images
        return batch


def collate(batch: dict, feature_dims: dict) -> dict:
    """Numpy batch from Ray Data -> the model's tensor batch (time series padded to the longest)."""
    import torch

    out = {"present": torch.as_tensor(_stack(batch["present"]) > 0.5)}
    for key, value in batch.items():
        if key in ("present", "split", "time_series.steps") or key.endswith((".text", ".path")):
            continue  # raw text / paths are turned into tensors by the map stages, not here
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


def _stack(value) -> np.ndarray:
    """Ray Data may hand fixed-size list columns over as an object array of rows."""
    value = np.asarray(value)
    return np.stack(value) if value.dtype == object else value
