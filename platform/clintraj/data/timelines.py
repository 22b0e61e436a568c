"""Event inputs of the sequential view (METHOD.md section 3): one encoder input per timeline event.

An event is one modality's observations of a stay at one time: the lab
results drawn at the same minute, the diagnoses entered together, one hourly
bin of the time series. Its input lives in the same feature space as the
modality's per-stay vector (`data.features`, scaled with the same
training-split statistics), so the frozen encoders that made the static view
embed it unchanged:

* count / sum modalities (eICU lab, diagnosis, treatment, medication): the
  event's terms summed into the modality's columns, zero elsewhere (the
  static table's convention for "not observed");
* the time series (MIMIC-IV): one normalised (values, measured) step;
* static modalities (demographics, APS at offset 0) and the CXR / notes
  (one image and one text per stay in the static view): the stay's static
  embedding at each of the modality's event times, added by the embedding job.

`write_event_inputs` writes `<out>/events.parquet`: stay_id, time_hours, the
modality's index and x (float32 list) for every event of the per-event modalities,
so one Ray Data pass embeds them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clintraj.data.features import ModalityScaler
from clintraj.data.stay_inputs import normalised_steps, vector_modalities

STATIC_AT_ADMISSION = ("demographics", "aps")


def per_event_modalities(modality_names: list[str]) -> list[str]:
    """Modalities whose events each get their own encoder input (the others reuse the stay's embedding)."""
    vectors = [m for m in vector_modalities(modality_names) if m not in STATIC_AT_ADMISSION]
    return vectors + [m for m in modality_names if m == "time_series"]


def count_event_vectors(events: pd.DataFrame, static: pd.DataFrame, modality: str,
                        scaler: ModalityScaler) -> tuple[pd.DataFrame, np.ndarray]:
    """(stay_id, time_hours) keys and scaled vectors of a count / sum modality's events."""
    columns = f"{modality}:" + events["name"].astype(str)
    known = columns.isin(scaler.numbers)
    keyed = events.assign(column=columns)[known]
    wide = keyed.pivot_table(index=["stay_id", "time_hours"], columns="column", values="value", aggfunc="sum",
                             fill_value=0.0, sort=True)
    wide = wide.reindex(columns=[c for c in static.columns if c != "stay_id"], fill_value=0.0)
    keys = wide.index.to_frame(index=False)
    return keys, scaler.transform(wide.reset_index(drop=True)).astype(np.float32)


def write_event_inputs(dataset: Path, out: Path) -> dict:
    """Write `out/events.parquet` (stay_id, time_hours, modality index, x: that modality's input, of
    its own length) for every per-event modality; return {"modalities": [...], "events": {m: count}}."""
    from clintraj.data.prepare import read_dataset

    dataset, out = Path(dataset), Path(out)
    stays, modalities, report = read_dataset(dataset)
    train_ids = stays.loc[stays["split"] == "train", "stay_id"]
    counts, parts = {}, []
    for name in per_event_modalities(report["modalities"]):
        events = pd.read_parquet(dataset / "events" / name)
        if name == "time_series":  # each hourly bin is one step, normalised as in pretraining
            keys = events[["stay_id", "time_hours"]].reset_index(drop=True)
            x, _, _ = normalised_steps(events, stays)
        else:
            table = modalities[name]
            scaler = ModalityScaler.fit(table[table["stay_id"].isin(train_ids)])
            keys, x = count_event_vectors(events, table, name, scaler)
        width = x.shape[1]
        parts.append(pa.table({
            "stay_id": pa.array(keys["stay_id"].to_numpy("int64")),
            "time_hours": pa.array(keys["time_hours"].to_numpy("float64")),
            "modality": pa.array(np.full(len(keys), report["modalities"].index(name), np.int8)),
            "x": pa.ListArray.from_arrays(pa.array(np.arange(len(keys) + 1, dtype=np.int32) * width),
                                          pa.array(x.ravel())),
        }))
        counts[name] = len(keys)
    out.mkdir(parents=True, exist_ok=True)
    if parts:
        pq.write_table(pa.concat_tables(parts), out / "events.parquet")
    return {"modalities": list(counts), "events": counts}
