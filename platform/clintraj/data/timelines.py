"""Event inputs of the sequential view (METHOD.md §3): one encoder input per
timeline event, from that event's own content.

An event is one modality's observations of a stay at one time: the lab results drawn at the same
minute, the diagnoses entered together, one hourly bin of the time series, one image, one note,
and the static modalities (demographics, APS) at the time they become known. Its input lives in
the feature space of the modality's per-stay vector (`data.stay_inputs.InputScaling`, the
training split's statistics), so the frozen encoders that make the static view embed it
unchanged:

* terms / values modalities (eICU diagnosis, treatment, medication, lab): the event's terms
  aggregated into the modality's columns as the per-stay table aggregates a window
  (`data.modalities.aggregate` per event time);
* the time series (MIMIC-IV): one scaled (values, measured) step;
* static modalities: the stay's scaled row, at the time it becomes known;
* notes and images: the note's own text, the image's own file.

`write_event_inputs` writes every event of the given stays (a task picks its window's events
when its timelines are assembled, `data.windows.select`), a shard of stays at a time so memory
holds one shard's events: `vectors/part-NNNNN.parquet` (stay_id, time_hours, modality index, x of
the modality's own length), and per note or image modality `<name>/part-NNNNN.parquet` (stay_id,
time_hours, modality, `<name>.text` or `<name>.path`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clintraj.artifacts.dataset import Dataset
from clintraj.data.modalities import Modality, aggregate
from clintraj.data.stay_inputs import InputScaling, modality_vectors

EVENT_SHARD_STAYS = 10_000  # stays whose event inputs are built together (memory: one shard's events)


def _vector_inputs(modality: Modality, events: pd.DataFrame, static: pd.DataFrame | None,
                   scaling: InputScaling) -> tuple[pd.DataFrame, np.ndarray]:
    """(stay_id, time_hours) keys and scaled input vectors of one vector modality's events."""
    scaler = scaling.scalers[modality.name]
    if modality.kind == "static":  # one event per stay: its row, when it becomes known
        keys = events[["stay_id", "time_hours"]].reset_index(drop=True)
        return keys, modality_vectors(scaler, static, keys["stay_id"]).astype(np.float32)
    vocabulary = [c.split(":", 1)[1] for c in scaler.numbers]
    wide = aggregate(modality, events, vocabulary=vocabulary, by=("stay_id", "time_hours"))
    keys = wide[["stay_id", "time_hours"]]
    return keys, scaler.transform(wide.drop(columns=["stay_id", "time_hours"])).astype(np.float32)


def _keyed(keys: pd.DataFrame, index: int, **columns) -> pa.Table:
    """The event rows' keys: stay_id, time_hours, modality and `tie`, the event's rank among the
    modality's events of its stay at the same time, in the dataset's order (two notes written in
    the same minute): the timelines' order of tied events, whatever order Ray Data returns them in."""
    tie = keys.groupby(["stay_id", "time_hours"], sort=False).cumcount().to_numpy(np.int32)
    return pa.table({"stay_id": pa.array(keys["stay_id"].to_numpy("int64")),
                     "time_hours": pa.array(keys["time_hours"].to_numpy("float64")),
                     "modality": pa.array(np.full(len(keys), index, np.int8)), "tie": pa.array(tie), **columns})


def write_event_inputs(dataset: Dataset, out: Path, stay_ids, scaling: InputScaling | None = None,
                       shard_stays: int = EVENT_SHARD_STAYS) -> dict:
    """Write the event inputs of `stay_ids` under `out`, `shard_stays` stays at a time (a shard's
    events read alone, one part file per input kind and shard); return {"files": {name: folder},
    "events": {modality: count}}."""
    out = Path(out)
    scaling = scaling or InputScaling.fit(dataset)
    out.mkdir(parents=True, exist_ok=True)
    static = {m: dataset.table(m) for m, kind in scaling.kinds.items() if kind == "static"}
    stay_ids = np.unique(np.asarray(stay_ids))
    files, counts = {}, dict.fromkeys(dataset.modalities, 0)
    for shard, start in enumerate(range(0, len(stay_ids), shard_stays)):
        stays = stay_ids[start:start + shard_stays]
        for name, table in _shard_inputs(dataset, scaling, static, stays, counts):
            (out / name).mkdir(exist_ok=True)
            pq.write_table(table, out / name / f"part-{shard:05d}.parquet")
            files[name] = name
    return {"files": {name: files[name] for name in [*dataset.modalities, "vectors"] if name in files},
            "events": counts}


def _shard_inputs(dataset: Dataset, scaling: InputScaling, static: dict, stays: np.ndarray, counts: dict):
    """Yield (input kind, table) of one shard of stays (sorted ids): the vectors of every vector
    modality together, each note or image modality apart; add the events to `counts`."""
    vectors = []
    for index, name in enumerate(dataset.modalities):
        modality = Modality(name, scaling.kinds[name])
        events = dataset.events(name, stays=(int(stays[0]), int(stays[-1])))
        events = events[events["stay_id"].isin(stays)].reset_index(drop=True)
        if events.empty:
            continue
        if modality.kind == "time_series":
            keys, x = events[["stay_id", "time_hours"]], scaling.steps(events)
        elif modality.kind in ("text", "image"):
            column = f"{name}.text" if modality.kind == "text" else f"{name}.path"
            source = events["text"] if modality.kind == "text" else events["path"]
            counts[name] += len(events)
            if len(events):
                yield name, _keyed(events, index, **{column: pa.array(source.astype(str))})
            continue
        else:
            keys, x = _vector_inputs(modality, events, static.get(name), scaling)
        counts[name] += len(keys)
        width = x.shape[1]
        flat = pa.ListArray.from_arrays(pa.array(np.arange(len(keys) + 1, dtype=np.int32) * width),
                                        pa.array(x.ravel()))
        vectors.append(_keyed(keys, index, x=flat))
    if vectors and sum(t.num_rows for t in vectors):
        yield "vectors", pa.concat_tables(vectors)


def events_by_shard(files: list[Path], first_stays: np.ndarray, out: Path) -> list[Path | None]:
    """Split the embedded events of `files` (stay_id, time_hours, modality, tie, h) into shards of stays,
    one record batch at a time: shard k holds the stays from first_stays[k] up to first_stays[k + 1]
    (sorted ids; a stay before the first goes to shard 0). Rows keep their order (file, then row).
    Return each shard's file under `out`, None for a shard without events."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=65_536):
                shard = np.searchsorted(first_stays, batch.column("stay_id").to_numpy(), side="right") - 1
                shard = np.maximum(shard, 0)
                for k in np.unique(shard):
                    if k not in writers:
                        writers[k] = pq.ParquetWriter(out / f"shard-{k:05d}.parquet", batch.schema)
                    writers[k].write_batch(batch.filter(pa.array(shard == k)))
    finally:
        for writer in writers.values():
            writer.close()
    return [out / f"shard-{k:05d}.parquet" if k in writers else None for k in range(len(first_stays))]


def assemble_timelines(events: pd.DataFrame, cohort: pd.DataFrame, after_stay: list[int]) -> pa.Table:
    """One row per cohort stay: its embedded events inside its window, in time order (ties in
    modality order, then by `tie` where given), as stay_id, n_events, time_hours, modality and the
    flattened (n_events, latent) matrix h. `events`: stay_id, time_hours, modality, h (one vector
    per row), optionally tie;
    `cohort`: the task's stay_id, start_hours, end_hours; `after_stay`: modality indices that
    are no task's input (`data.modalities.Modality.after_stay`)."""
    from clintraj.data.windows import select

    inside = select(events, cohort) & ~events["modality"].isin(after_stay).to_numpy()
    order = ["stay_id", "time_hours", "modality", *(["tie"] if "tie" in events else [])]
    events = events[inside].sort_values(order, kind="stable")
    h = np.stack(events["h"].to_numpy()).astype(np.float32) if len(events) else np.zeros((0, 0), np.float32)
    latent = h.shape[1]
    bounds = np.flatnonzero(np.diff(events["stay_id"].to_numpy())) + 1
    starts, ends = (np.r_[0, bounds], np.r_[bounds, len(events)]) if len(events) else (np.zeros(0, int),) * 2
    offsets = np.r_[starts, len(events)].astype(np.int32)
    return pa.table({
        "stay_id": pa.array(events["stay_id"].to_numpy()[starts].astype(np.int64)),
        "n_events": pa.array((ends - starts).astype(np.int32)),
        "time_hours": pa.ListArray.from_arrays(pa.array(offsets), pa.array(events["time_hours"].to_numpy(np.float32))),
        "modality": pa.ListArray.from_arrays(pa.array(offsets), pa.array(events["modality"].to_numpy(np.int8))),
        "h": pa.ListArray.from_arrays(pa.array((offsets * latent).astype(np.int32)), pa.array(h.ravel())),
    })
