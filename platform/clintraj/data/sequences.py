"""A task's sequences for the decoders (paper §3.3.2; METHOD.md §3): each cohort stay's embedded
timeline over the task's window, truncated (`task_sequences`, written as `artifacts.sequences`);
length-bucketed batches of them (`bucketed`); and padded tensors of a batch, with modality dropout in
training (`collate`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from sklearn.preprocessing import StandardScaler

from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.embeddings import Embeddings
from clintraj.artifacts.sequences import SPLITS, Sequences
from clintraj.data.features import standardisation
from clintraj.tasks import TaskName, task as task_named

log = logging.getLogger(__name__)

SEQUENCE_SHARD_STAYS = 10_000  # cohort stays whose sequences are built together (memory: one shard's timelines)
# training stays whose events go to one StandardScaler.partial_fit: fixed, not the shard, so the rounding
# of the statistics is the same whatever shard_stays (a call per stay cost ~0.2 ms: 30 s at full eICU)
MOMENT_BLOCK_STAYS = 512


def truncate(modality: np.ndarray, keep_modalities: np.ndarray, max_events: int) -> np.ndarray:
    """Indices of the events kept: every event of `keep_modalities`, then the most recent others."""
    keep = np.isin(modality, keep_modalities)
    room = max(max_events - int(keep.sum()), 0)
    others = np.flatnonzero(~keep)
    return np.sort(np.concatenate([np.flatnonzero(keep), others[max(len(others) - room, 0):] if room else others[:0]]))


class BlockMoments:
    """A StandardScaler fitted (`partial_fit`) on the training stays' events `MOMENT_BLOCK_STAYS` stays
    at a time, the block carried across shards; `flush` fits the last, partial block."""

    def __init__(self):
        self.scaler, self.block = StandardScaler(), []

    def add(self, events: np.ndarray) -> None:
        self.block.append(events)
        if len(self.block) == MOMENT_BLOCK_STAYS:
            self.flush()

    def flush(self) -> StandardScaler:
        if self.block:
            self.scaler.partial_fit(np.concatenate(self.block).astype(np.float64))
            self.block = []
        return self.scaler


def task_sequences(dataset: Path, embeddings: Path, task: TaskName, out: Path, max_events: int,
                   shard_stays: int = SEQUENCE_SHARD_STAYS) -> dict:
    """Write a task's training sequences to `out` (`artifacts.sequences`): each cohort stay's timeline
    over the task's window, truncated to `max_events` (the static modalities kept); return its info.
    The cohort goes `shard_stays` stays at a time (the timelines of those stays read alone), so
    memory holds one shard's timelines, not the task's."""
    source, embedded = Dataset(dataset), Embeddings(embeddings)
    latent, modalities = embedded.latent_dim, embedded.modalities
    # the static modalities (demographics, APS) survive truncation: they are few and describe the stay
    keep = np.array([modalities.index(m) for m, kind in embedded.record["modality_kinds"].items()
                     if kind == "static"], dtype=np.int8)
    cohort = source.task_cohort(task)
    hours = cohort["prediction_hours"].iloc[0] if len(cohort) else None
    cohort = cohort.merge(source.stays().drop(columns="split"), on="stay_id", validate="1:1")
    without = int((~cohort["stay_id"].isin(embedded.timelines(task, columns=["stay_id"])["stay_id"])).sum())
    if without:
        raise ValueError(f"{without} stays of the {task} cohort have no timeline in {embeddings}")
    y = task_named(task).targets(cohort).reshape(len(cohort), -1).astype(np.float32)
    counts = {"truncated": 0, "dropped": 0}
    moments = BlockMoments()  # of the training split's kept events

    def shards():
        for start in range(0, max(len(cohort), 1), shard_stays):  # an empty cohort: one empty shard
            part = cohort.iloc[start:start + shard_stays]
            bounds = (int(part["stay_id"].min()), int(part["stay_id"].max())) if len(part) else (0, -1)
            part = part.merge(embedded.timelines(task, stays=bounds), on="stay_id", how="left", validate="1:1")
            yield _split_tables(part, y[start:start + shard_stays], keep, max_events, latent, counts, moments)

    def info() -> dict:
        y_train = y[(cohort["split"] == "train").to_numpy()]
        return {"task": task, "dataset": str(Path(dataset).resolve()), "embeddings": str(Path(embeddings).resolve()),
                "latent_dim": latent, "modalities": modalities, "out_features": int(y.shape[1]),
                "stays": {s: int((cohort["split"] == s).sum()) for s in SPLITS},
                "truncated_stays": counts["truncated"], "dropped_events": counts["dropped"], "max_events": max_events,
                "prediction_hours": None if hours is None or pd.isna(hours) else float(hours),
                "pos_weight": task_named(task).pos_weight(y_train[:, 0] if y.shape[1] == 1 else y_train),
                "train_prevalence": y_train.mean(axis=0).tolist(),
                # what the sequential model standardises its input with (models.standardize)
                **dict(zip(("event_mean", "event_std"), standardisation(moments.flush(), latent)))}

    written = Sequences(out).write(shards(), info)
    if counts["truncated"]:
        log.info("%s: %d stays truncated to %d events (%d events dropped)", task, counts["truncated"], max_events,
                 counts["dropped"])
    return written


def _split_tables(cohort: pd.DataFrame, y: np.ndarray, keep: np.ndarray, max_events: int, latent: int,
                  counts: dict, moments: BlockMoments) -> dict[str, pa.Table]:
    """Per split, the rows of these cohort stays (with their timelines and targets `y`), truncated;
    the truncated stays and dropped events added to `counts`, the training events to `moments`."""
    rows = {"modality": [], "h": [], "n_events": [], "time_hours": []}
    for modality, h, times, split in zip(cohort["modality"], cohort["h"], cohort["time_hours"], cohort["split"]):
        modality = np.asarray(modality, np.int8)
        kept = truncate(modality, keep, max_events)
        counts["truncated"] += len(kept) < len(modality)
        counts["dropped"] += len(modality) - len(kept)
        events = np.asarray(h, np.float32).reshape(-1, latent)[kept]
        if split == "train" and len(events):
            moments.add(events)
        rows["modality"].append(modality[kept])
        rows["time_hours"].append(np.asarray(times, np.float32)[kept])
        rows["h"].append(events.ravel())
        rows["n_events"].append(len(kept))
    tables = {}
    for split in SPLITS:
        at = (cohort["split"] == split).to_numpy()
        pick = np.flatnonzero(at)
        tables[split] = pa.table({
            "stay_id": pa.array(cohort["stay_id"].to_numpy()[at]),
            "y": pa.FixedSizeListArray.from_arrays(pa.array(y[at].ravel()), y.shape[1]),
            "n_events": pa.array(np.asarray(rows["n_events"], np.int32)[at]),
            "modality": pa.array([rows["modality"][i] for i in pick], type=pa.list_(pa.int8())),
            "h": pa.array([rows["h"][i] for i in pick], type=pa.list_(pa.float32())),
            "time_hours": pa.array([rows["time_hours"][i] for i in pick], type=pa.list_(pa.float32())),
        })
    return tables


def bucketed(chunks, batch_size: int, shuffle: bool, rng: np.random.Generator | None = None):
    """Batches cut from length-sorted chunks (dicts of numpy columns); shuffled batch order in training."""
    for chunk in chunks:
        order = np.argsort(np.asarray(chunk["n_events"]), kind="stable")
        groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if shuffle:
            rng.shuffle(groups)
        for group in groups:
            yield {key: np.asarray(value)[group] if not isinstance(value, list) else [value[i] for i in group]
                   for key, value in chunk.items()}


def collate(batch: dict, latent: int, modality_dropout: float = 0.0, rng: np.random.Generator | None = None,
            device: str | torch.device = "cpu") -> dict:
    """Padded tensors: events (B, L, latent), event_mask (B, L), modality (B, L), y (B, out), stay_id.

    With `modality_dropout` (training), each stay loses each of its modalities' events with that
    probability (a stay keeps all its events rather than lose every modality)."""
    hs, modalities = [], []
    for modality, h in zip(batch["modality"], batch["h"]):
        modality = np.asarray(modality, np.int8)
        h = np.asarray(h, np.float32).reshape(-1, latent)
        if modality_dropout > 0:
            present = np.unique(modality)
            dropped = present[rng.random(len(present)) < modality_dropout]
            kept = ~np.isin(modality, dropped)
            if kept.any():
                modality, h = modality[kept], h[kept]
        hs.append(h)
        modalities.append(modality)
    longest = max(len(h) for h in hs)
    events = np.zeros((len(hs), longest, latent), np.float32)
    mask = np.zeros((len(hs), longest), bool)
    modality = np.full((len(hs), longest), -1, np.int64)
    for i, (h, m) in enumerate(zip(hs, modalities)):
        events[i, :len(h)], mask[i, :len(h)], modality[i, :len(m)] = h, True, m
    y = np.stack([np.asarray(v, np.float32) for v in batch["y"]])
    return {"events": torch.from_numpy(events).to(device), "event_mask": torch.from_numpy(mask).to(device),
            "modality": torch.from_numpy(modality), "y": torch.from_numpy(y).to(device),
            "stay_id": np.asarray(batch["stay_id"])}


def without_modalities(split: dict, removed: int, rng: np.random.Generator) -> dict:
    """The split with `removed` of each stay's modalities (drawn at random) taken out entirely;
    a stay keeps at least one modality."""
    out = {**split, "modality": [], "h": [], "n_events": []}
    for modality, h in zip(split["modality"], split["h"]):
        modality = np.asarray(modality)
        h = np.asarray(h, np.float32).reshape(len(modality), -1)
        present = np.unique(modality)
        gone = rng.choice(present, size=min(removed, len(present) - 1), replace=False)
        kept = ~np.isin(modality, gone)
        out["modality"].append(modality[kept])
        out["h"].append(h[kept].ravel())
        out["n_events"].append(int(kept.sum()))
    out["n_events"] = np.asarray(out["n_events"])
    return out
