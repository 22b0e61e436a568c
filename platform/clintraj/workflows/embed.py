"""Frozen encoders turn every stay into one embedding per modality (the static view) and into one
embedding per timeline event (the sequential view).

A Ray Data pipeline: the stay table, the tokenisation / image map stages
(no augmentation), then `EmbedStays` in an actor pool, so each actor builds
the encoders once (on a GPU when the pool asks for one). An absent modality
gets the learned missing token. "contrastive" encoders come from an MGA
checkpoint; "scratch" encoders are the same architecture randomly
initialised with a recorded seed. `embeddings.json` records which.

The sequential view (`data.timelines`): events of the per-event modalities are
embedded by `EmbedEvents` actors with the same encoders; the static-at-admission
modalities and the one-per-stay ones (CXR, notes) place the stay's static
embedding at each of their event times. `timelines/` then holds one row per stay:
its events in time order (ties in modality order, so demographics and APS
lead), with times, modality indices and the flattened (n_events, latent) matrix.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from clintraj.config import from_dict
from clintraj.data.timelines import write_event_inputs
from clintraj.data.stay_inputs import collate
from clintraj.storage import is_uri, redact, stage_in
from clintraj.training import pretrain
from clintraj.workflows.pretrain import prepare_inputs

log = logging.getLogger(__name__)


def _encoders(meta: dict, config: dict, checkpoint: str | None, seed: int, device: str):
    import torch

    torch.manual_seed(seed)  # scratch encoders: the same weights in every actor of a run
    model = pretrain.load_model(Path(checkpoint), meta, config) if checkpoint else pretrain.build_model(meta, config)
    return model.to(device).eval()


class EmbedStays:
    """Ray Data actor: builds the encoders once, then embeds batches of stays."""

    def __init__(self, meta: dict, config: dict, checkpoint: str | None, seed: int, use_gpu: bool):
        self.device = "cuda" if use_gpu else "cpu"
        self.model = _encoders(meta, config, checkpoint, seed, self.device)
        self.meta = meta

    def __call__(self, batch: dict) -> dict:
        import torch

        from clintraj.models.mga import embed

        tensors = {k: (v.float() if v.dtype == torch.float64 else v).to(self.device)
                   for k, v in collate(batch, self.meta["feature_dims"]).items()}
        h, present = embed(self.model, tensors)
        out = {"stay_id": np.asarray(batch["stay_id"]), "split": np.asarray(batch["split"]),
               "present": present.cpu().numpy()}
        for index, name in enumerate(self.meta["modalities"]):
            out[f"{name}.h"] = h[:, index].float().cpu().numpy()
        return out


class EmbedEvents:
    """Ray Data actor: builds the encoders once, then embeds each event with its modality's encoder."""

    def __init__(self, meta: dict, config: dict, checkpoint: str | None, seed: int, use_gpu: bool):
        self.device = "cuda" if use_gpu else "cpu"
        self.encoders = _encoders(meta, config, checkpoint, seed, self.device).encoders
        self.names = meta["modalities"]

    def __call__(self, batch: dict) -> dict:
        import torch

        kinds = np.asarray(batch["modality"])
        h = None
        for kind in np.unique(kinds):
            rows = np.flatnonzero(kinds == kind)
            name = self.names[int(kind)]
            x = torch.as_tensor(np.stack([batch["x"][i] for i in rows]), dtype=torch.float32, device=self.device)
            with torch.no_grad():
                if name == "time_series":  # one hourly step
                    out = self.encoders[name](values=x[:, None, :], lengths=torch.ones(len(x), dtype=torch.long))
                else:
                    out = self.encoders[name](x=x)
            out = out.float().cpu().numpy()
            h = np.zeros((len(kinds), out.shape[1]), np.float32) if h is None else h
            h[rows] = out
        return {"stay_id": batch["stay_id"], "time_hours": batch["time_hours"], "modality": kinds, "h": h}


def run(dataset: Path, out: Path, encoders: str, workdir: Path, config: pretrain.PretrainConfig | None = None,
        seed: int = 0, actors: int = 1, use_gpu: bool = False) -> dict:
    """Embed every stay of `dataset` with `encoders`: "scratch", or an MGA checkpoint folder, local or
    a URI (s3://... under cluster run storage), staged in under workdir/staged."""
    checkpoint = None if encoders == "scratch" else str(stage_in(encoders, Path(workdir) / "staged"))
    if checkpoint:
        saved = json.loads((Path(checkpoint) / "config.json").read_text())
        config = from_dict(pretrain.PretrainConfig, {k: v for k, v in saved.items()
                                                     if k in pretrain.PretrainConfig.__dataclass_fields__})
        text_model = json.loads((Path(checkpoint) / "meta.json").read_text()).get("text_model")
        config.text_model = text_model or config.text_model
    config = config or pretrain.PretrainConfig()
    inputs_dir, meta = prepare_inputs(Path(dataset), Path(workdir).resolve(), config, image_root=None)
    model_config = {**asdict(config), "text_max_length": config.inputs.text_max_length}
    model_config.pop("inputs")
    import ray.data

    splits = pretrain.datasets(inputs_dir, meta, config, splits=("train", "val", "test"), augment=False)
    stays = splits["train"].union(splits["val"], splits["test"])
    embedded = stays.map_batches(
        EmbedStays, fn_constructor_kwargs={"meta": meta, "config": model_config, "checkpoint": checkpoint,
                                           "seed": seed, "use_gpu": use_gpu},
        batch_size=256, compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if use_gpu else 0, num_cpus=0.5)
    out = Path(out)
    for folder in ("static", "events", "timelines"):  # Ray Data adds files to a folder: start clean
        shutil.rmtree(out / folder, ignore_errors=True)
    embedded.write_parquet(str(out / "static"))
    event_inputs = write_event_inputs(dataset, Path(workdir).resolve() / "event_inputs")
    if event_inputs["modalities"]:  # one pass over every per-event modality's events
        ray.data.read_parquet(str(Path(workdir).resolve() / "event_inputs" / "events.parquet")).map_batches(
            EmbedEvents, fn_constructor_kwargs={"meta": meta, "config": model_config, "checkpoint": checkpoint,
                                                "seed": seed, "use_gpu": use_gpu},
            batch_size=2048, compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if use_gpu else 0,
            num_cpus=0.5,
        ).write_parquet(str(out / "events"))
    timeline_counts = write_timelines(Path(dataset), out, meta["modalities"], event_inputs["modalities"])
    record = {"encoders": "contrastive" if checkpoint else "scratch",
              "checkpoint": redact(encoders) if is_uri(encoders) else checkpoint,
              "seed": None if checkpoint else seed, "dataset": str(Path(dataset).resolve()),
              "modalities": meta["modalities"], "latent_dim": config.latent_dim,
              "per_event_modalities": event_inputs["modalities"], "timelines": timeline_counts}
    (out / "embeddings.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("embedded the stays of %s with %s encoders into %s", dataset, record["encoders"], out)
    return record


def read_static(out: Path):
    """(frame with stay_id, split, present, <m>.h columns; the record) of an embedding folder."""
    import pandas as pd

    out = Path(out)
    frame = pd.read_parquet(out / "static").sort_values("stay_id", kind="stable").reset_index(drop=True)
    return frame, json.loads((out / "embeddings.json").read_text())


def write_timelines(dataset: Path, out: Path, modalities: list[str], per_event: list[str]) -> dict:
    """`out/timelines/part-00000.parquet`: one row per stay, its event embeddings in time order."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    static = pd.read_parquet(out / "static", columns=["stay_id", *[f"{m}.h" for m in modalities]])
    parts = [pd.read_parquet(out / "events")] if per_event else []
    for index, name in enumerate(modalities):
        if name in per_event:
            continue
        times = pd.read_parquet(dataset / "events" / name, columns=["stay_id", "time_hours"]).drop_duplicates()
        h = static[["stay_id", f"{name}.h"]].rename(columns={f"{name}.h": "h"})
        parts.append(times.merge(h, on="stay_id", validate="m:1").assign(modality=np.int8(index)))
    events = pd.concat(parts, ignore_index=True).sort_values(["stay_id", "time_hours", "modality"], kind="stable")
    h = np.stack(events["h"].to_numpy()).astype(np.float32)  # Ray writes tensor columns: stack them
    latent = h.shape[1]
    bounds = np.flatnonzero(np.diff(events["stay_id"].to_numpy())) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, len(events)]
    table = pa.table({
        "stay_id": pa.array(events["stay_id"].to_numpy()[starts]),
        "n_events": pa.array((ends - starts).astype(np.int32)),
        "time_hours": pa.ListArray.from_arrays(pa.array(np.r_[starts, len(events)].astype(np.int32)),
                                               pa.array(events["time_hours"].to_numpy(np.float32))),
        "modality": pa.ListArray.from_arrays(pa.array(np.r_[starts, len(events)].astype(np.int32)),
                                             pa.array(events["modality"].to_numpy(np.int8))),
        "h": pa.ListArray.from_arrays(pa.array((np.r_[starts, len(events)] * latent).astype(np.int32)),
                                      pa.array(h.ravel())),
    })
    (out / "timelines").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "timelines" / "part-00000.parquet")
    lengths = ends - starts
    return {"stays": int(len(starts)), "events": int(len(events)), "latent_dim": int(latent),
            "median_events": float(np.median(lengths)), "max_events": int(lengths.max())}


def read_timelines(out: Path):
    """The timelines table of an embedding folder (pandas)."""
    import pandas as pd

    return pd.read_parquet(Path(out) / "timelines")
