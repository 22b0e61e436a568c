"""Frozen encoders turn every task stay into one embedding per modality over the task's window (the
static view) and every event into one embedding (the sequential view).

Ray Data pipelines: the tasks' stay tables (`data.stay_inputs.build_task_tables`, each task's
window), the tokenisation / image map stages (no augmentation), then `EmbedStays` in an actor
pool, so each actor builds the encoders once (on a GPU when the pool asks for one). With a GPU the
map stages are CPU actors of their own, feeding it; on CPU they run inside the embedding actor: one
pass is one process instead of three, and each of its actors costs a process importing torch. An absent
modality gets the learned missing token. "contrastive" encoders come from an MGA checkpoint;
"scratch" encoders are the same architecture randomly initialised with a recorded seed.
`embeddings.json` records which.

The sequential view: every event of the task stays is embedded from its own content by
`EmbedEvents` actors with the same encoders (a lab draw, one hourly bin, one note's text, one
image, the demographics when known; `data.timelines`). Each task's timelines then hold, per
stay, the events of its window in time order (ties in modality order, then in the dataset's
order: `data.timelines`). The folder's layout:
`clintraj.artifacts.embeddings`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.embeddings import Embeddings
from clintraj.data.stay_inputs import (InputScaling, build_task_tables, collate, input_meta, map_stages,
                                      with_map_stages)
from clintraj.data.timelines import assemble_timelines, events_by_shard, write_event_inputs
from clintraj.storage import is_uri, redact, replaced_when_done, stage_in
from clintraj.training import pretrain
from clintraj.workflows.pretrain import with_text_model

log = logging.getLogger(__name__)

TIMELINE_SHARD_STAYS = 10_000  # stays whose timelines are assembled together (memory: one shard's events)


def _encoders(meta: dict, config: pretrain.PretrainConfig, checkpoint: str | None, seed: int, device: str):
    import torch

    torch.manual_seed(seed)  # scratch encoders: the same weights in every actor of a run
    model = pretrain.load_model(Path(checkpoint), meta, config) if checkpoint else pretrain.build_model(meta, config)
    return model.to(device).eval()


def _built(stages: list) -> list:
    """`map_stages`'s stages built inside this actor, to apply in turn to each batch."""
    return [stage(**arguments) for stage, arguments, _ in stages]


class EmbedStays:
    """Ray Data actor: builds the encoders (and the map stages it runs itself) once, then embeds
    batches of stays."""

    def __init__(self, meta: dict, config: pretrain.PretrainConfig, checkpoint: str | None, seed: int,
                 use_gpu: bool, stages: list = ()):
        self.device = "cuda" if use_gpu else "cpu"
        self.model = _encoders(meta, config, checkpoint, seed, self.device)
        self.meta = meta
        self.stages = _built(stages)

    def __call__(self, batch: dict) -> dict:
        import torch

        from clintraj.models.mga import embed

        for stage in self.stages:
            batch = stage(batch)
        tensors = {k: (v.float() if v.dtype == torch.float64 else v).to(self.device)
                   for k, v in collate(batch, self.meta["feature_dims"]).items()}
        h, present = embed(self.model, tensors)
        out = {key: np.asarray(batch[key]) for key in ("task", "stay_id", "split")}
        out["present"] = present.cpu().numpy()
        for index, name in enumerate(self.meta["modalities"]):
            out[f"{name}.h"] = h[:, index].float().cpu().numpy()
        return out


class EmbedEvents:
    """Ray Data actor: builds the encoders once, then embeds each event with its modality's encoder.

    A batch holds either `x` (one vector per event: vector modalities and time-series steps) or a
    note's tokens / an image's pixels under `<modality>.<input>` keys, as the stay batches do."""

    def __init__(self, meta: dict, config: pretrain.PretrainConfig, checkpoint: str | None, seed: int,
                 use_gpu: bool, stages: list = ()):
        self.device = "cuda" if use_gpu else "cpu"
        self.encoders = _encoders(meta, config, checkpoint, seed, self.device).encoders
        self.names = meta["modalities"]
        self.stages = _built(stages)

    def _inputs(self, batch: dict, name: str, rows: np.ndarray) -> dict:
        import torch

        if "x" in batch:
            x = torch.as_tensor(np.stack([batch["x"][i] for i in rows]), dtype=torch.float32, device=self.device)
            if name == "time_series":  # one hourly step
                return {"values": x[:, None, :], "lengths": torch.ones(len(x), dtype=torch.long)}
            return {"x": x}
        prefix = f"{name}."
        return {key[len(prefix):]: torch.as_tensor(np.asarray(value)[rows], device=self.device)
                for key, value in batch.items() if key.startswith(prefix)}

    def __call__(self, batch: dict) -> dict:
        import torch

        for stage in self.stages:
            batch = stage(batch)
        kinds = np.asarray(batch["modality"])
        h = None
        for kind in np.unique(kinds):
            rows = np.flatnonzero(kinds == kind)
            name = self.names[int(kind)]
            with torch.no_grad():
                out = self.encoders[name](**self._inputs(batch, name, rows)).float().cpu().numpy()
            h = np.zeros((len(kinds), out.shape[1]), np.float32) if h is None else h
            h[rows] = out
        return {"stay_id": np.asarray(batch["stay_id"]), "time_hours": np.asarray(batch["time_hours"]),
                "modality": kinds, "tie": np.asarray(batch["tie"]), "h": h}


def encoder_setup(encoders: str, workdir: Path, config: pretrain.PretrainConfig | None):
    """(checkpoint folder or None, PretrainConfig): a contrastive checkpoint brings its own config."""
    if encoders == "scratch":
        return None, config or pretrain.PretrainConfig()
    checkpoint = str(stage_in(encoders, Path(workdir) / "staged"))
    return checkpoint, pretrain.saved_config(Path(checkpoint))


def write_task_timelines(source: Dataset, target: Embeddings, tasks: list[str], modalities: list[str],
                         scratch: Path, shard_stays: int = TIMELINE_SHARD_STAYS) -> dict:
    """Write each task's timelines from the embedded events of `target`, `shard_stays` stays at a
    time: the events are split by shard of stays in one pass (under `scratch`, removed after), then
    each shard's timelines are assembled and written as one file per task, so memory holds one
    shard's events, not the cohort's. Return per task its stays and event counts."""
    after_stay = [modalities.index(m) for m in source.after_stay]
    cohorts = {task: source.task_cohort(task) for task in tasks}
    stays = np.unique(np.concatenate([cohort["stay_id"].to_numpy() for cohort in cohorts.values()]))
    first = stays[::shard_stays]
    shutil.rmtree(scratch, ignore_errors=True)
    shards = events_by_shard(target.event_files(), first, scratch)
    lengths: dict[str, list[np.ndarray]] = {task: [] for task in tasks}
    for k, file in enumerate(shards):
        if file is None:
            continue
        events = pq.read_table(file).to_pandas()
        upper = first[k + 1] if k + 1 < len(first) else np.iinfo(np.int64).max
        for task, cohort in cohorts.items():
            ids = cohort["stay_id"].to_numpy()
            table = assemble_timelines(events, cohort[(ids >= first[k]) & (ids < upper)], after_stay)
            if table.num_rows:
                target.write_timelines(task, table, shard=k)
                lengths[task].append(table["n_events"].to_numpy())
        del events
    shutil.rmtree(scratch, ignore_errors=True)
    timelines = {}
    for task in tasks:
        if not lengths[task]:  # no events in any window: one empty file, as the readers expect
            empty = pd.DataFrame({"stay_id": [], "time_hours": [], "modality": [], "h": []})
            target.write_timelines(task, assemble_timelines(empty, cohorts[task], after_stay))
        counts = np.concatenate(lengths[task]) if lengths[task] else np.zeros(0, np.int32)
        timelines[task] = {"stays": len(counts), "events": int(counts.sum()),
                           "median_events": float(np.median(counts)) if len(counts) else 0.0,
                           "max_events": int(counts.max(initial=0))}
    return timelines


def run(dataset: Path, out: Path, encoders: str, workdir: Path, config: pretrain.PretrainConfig | None = None,
        seed: int = 0, actors: int = 1, use_gpu: bool = False, tasks: list[str] | None = None,
        stage_actors: bool | None = None) -> dict:
    """Embed the task stays of `dataset` (every task's, or `tasks`) with `encoders`: "scratch", or an
    MGA checkpoint folder, local or a URI (s3://... under cluster run storage), staged in under
    workdir/staged. `stage_actors`: tokenisation and image decoding as actors of their own (by
    default with a GPU) rather than inside the embedding actors."""
    import ray.data

    source, workdir = Dataset(dataset), Path(workdir).resolve()
    tasks = list(tasks or source.tasks)
    checkpoint, config = encoder_setup(encoders, workdir, config)
    scaling = InputScaling.fit(source)
    meta = with_text_model(input_meta(source, scaling, None), config, workdir)
    actor_args = {"meta": meta, "config": config, "checkpoint": checkpoint, "seed": seed, "use_gpu": use_gpu}
    pool = {"compute": ray.data.ActorPoolStrategy(size=actors), "num_gpus": 1 if use_gpu else 0, "num_cpus": 0.5}
    with replaced_when_done(out, "the embeddings") as staging:  # complete, or as it was
        target = Embeddings(staging)
        stays = build_task_tables(source, workdir / "task_inputs", config.inputs, tasks)

        def staged(rows):
            """The rows, and the map stages the embedding actors run themselves."""
            if use_gpu if stage_actors is None else stage_actors:
                return with_map_stages(rows, meta, config.inputs, augment=False), []
            return rows, map_stages(rows, meta, config.inputs, augment=False)

        stay_rows, stages = staged(ray.data.read_parquet(str(workdir / "task_inputs")))
        stay_rows.map_batches(EmbedStays, fn_constructor_kwargs={**actor_args, "stages": stages}, batch_size=256,
                              **pool).write_parquet(str(target.static_folder))

        task_stays = np.unique(np.concatenate([source.task_cohort(t)["stay_id"].to_numpy() for t in tasks]))
        event_inputs = write_event_inputs(source, workdir / "event_inputs", task_stays, scaling)
        for name, file in event_inputs["files"].items():  # one pass per input kind: vectors, each note, images
            events, stages = staged(ray.data.read_parquet(str(workdir / "event_inputs" / file)))
            events.map_batches(EmbedEvents, fn_constructor_kwargs={**actor_args, "stages": stages},
                               batch_size=2048 if name == "vectors" else 64,
                               **pool).write_parquet(str(target.events_folder(name)))
        timelines = write_task_timelines(source, target, tasks, meta["modalities"], workdir / "timeline_shards")
        record = {"encoders": "contrastive" if checkpoint else "scratch",
                  "checkpoint": redact(encoders) if is_uri(encoders) else checkpoint,
                  "seed": None if checkpoint else seed, "dataset": str(source.path.resolve()),
                  "modalities": meta["modalities"], "modality_kinds": meta["modality_kinds"],
                  "latent_dim": config.latent_dim, "tasks": {t: {"prediction_hours": source.windows[t],
                                                                 "stays": stays[t], "timelines": timelines[t]}
                                                             for t in tasks},
                  "events": event_inputs["events"]}
        target.write_record(record)
    log.info("embedded the task stays of %s with %s encoders into %s", source.path, record["encoders"], out)
    return record
