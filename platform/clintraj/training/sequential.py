"""Sequential LLM fine-tuning (paper §3.4.2, appendix B.2-B.3) on Ray Train, fed by Ray Data.

The driver writes each split of a task's timelines (`task_sequences`:
truncated to `max_events`, keeping demographics / APS and the most recent
events, the truncation counted). Ray Data streams the training split to the
workers (`streaming_split` through `DataConfig`; rank 0 reads the small
validation and test splits whole, from the same storage); each worker reads chunks of
`bucket_batches` batches, sorts them by length and cuts batches from them, so
a batch pads to its own longest stay, not the dataset's.

On each worker: the backbone (4-bit NF4 when `quantization: nf4`) gets LoRA
on its family's projections, non-reentrant activation checkpointing, 8-bit
AdamW, and DeepSpeed ZeRO (`deepspeed_stage`; 0 = plain DDP) over the
process group Ray Train made. Capability checks (`training.capabilities`)
decide what runs and say what does not.

Each epoch rank 0 scores the validation split and reports a checkpoint: the
LoRA adapter (`adapter/`, for `PeftModel.from_pretrained`), `head.pt`
(projection, [PREDICT] embedding, head) and `sequential.json`, plus
`trainer_state.json` and `best.pt` (the best epoch so far). After the last
epoch the best epoch's weights score the test split, and the final
checkpoint holds them with `predictions.parquet`.

A failed worker (`max_failures`) restarts the run from the last epoch's
checkpoint: the weights, the early-stopping state and the best epoch come back,
so no epoch is trained or counted twice. The optimizer's moments restart (with
ZeRO they are partitioned across workers and are not in the checkpoint).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from clintraj.storage import storage_path, uri_of
from clintraj.tasks import TaskName, task as task_named

log = logging.getLogger(__name__)


@dataclass
class SequentialTrainConfig:
    task: TaskName = "mortality"
    # A registry name (models.backbones), optionally with its own weight source after "@"
    # ("smollm2-135m@random"), which then overrides `weights`: how one sweep compares sources.
    backbone: str = "llama3-8b"
    weights: Literal["hub", "local", "tiny", "packaged", "random"] = "hub"
    model_dir: str | None = None  # weights "local": <model_dir>/<backbone>/ (or $CLINTRAJ_MODEL_DIR)
    tiny_root: str | None = None  # weights "tiny": where the tiny random models are written
    # weights "packaged" / "random": where converted / random-init models are written
    # (default $CLINTRAJ_WEIGHTS_CACHE, else ~/.cache/clintraj/backbones)
    weights_cache: str | None = None
    lora_r: int = 16  # METHOD.md section 4's defaults (the paper's values were lost)
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    quantization: Literal["nf4", "none"] = "nf4"
    optimizer: Literal["adamw8bit", "adamw"] = "adamw8bit"
    gradient_checkpointing: bool = True
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    deepspeed_stage: int = 2  # 0: plain DDP
    lr: float = 2e-4
    weight_decay: float = 0.0
    batch_size: int = 8
    bucket_batches: int = 8  # batches sorted by length together
    epochs: int = 3
    patience: int = 2
    max_events: int = 256  # events kept per stay (the sequence is twice as long with [PREDICT]s)
    loss_on: Literal["all_predict", "last_predict"] = "all_predict"
    modality_dropout: float = 0.1  # per stay and modality, training only
    robustness_removed: int = 3  # test metric with 0..N modalities removed per stay (0: skip)
    num_workers: int = 1
    cpus_per_worker: float = 0.5
    use_gpu: bool = False
    max_failures: int = 2  # worker failures Ray Train recovers from, resuming at the last epoch's checkpoint
    seed: int = 0


# ---- data: timelines of a task, truncation, length-bucketed batches ----

def truncate(modality: np.ndarray, keep_modalities: np.ndarray, max_events: int) -> np.ndarray:
    """Indices of the events kept: every event of `keep_modalities`, then the most recent others."""
    keep = np.isin(modality, keep_modalities)
    room = max(max_events - int(keep.sum()), 0)
    others = np.flatnonzero(~keep)
    return np.sort(np.concatenate([np.flatnonzero(keep), others[len(others) - room:] if room else others[:0]]))


def task_sequences(dataset: Path, embeddings: Path, task: TaskName, out: Path, max_events: int) -> dict:
    """Write `out/{train,val,test}.parquet` (stay_id, y, n_events, modality, h) for a task's cohort:
    each stay's timeline over the task's window."""
    from clintraj.data.prepare import read_task
    from clintraj.workflows.embed import read_timelines

    record = json.loads((Path(embeddings) / "embeddings.json").read_text())
    latent, modalities = record["latent_dim"], record["modalities"]
    # the static modalities (demographics, APS) survive truncation: they are few and describe the stay
    keep = np.array([modalities.index(m) for m, kind in record["modality_kinds"].items() if kind == "static"],
                    dtype=np.int8)
    stays = pd.read_parquet(Path(dataset) / "stays.parquet").drop(columns="split")
    cohort = read_task(dataset, task)
    hours = cohort["prediction_hours"].iloc[0] if len(cohort) else None
    cohort = cohort.merge(stays, on="stay_id", validate="1:1").merge(
        read_timelines(embeddings, task), on="stay_id", how="left", validate="1:1")
    without = int(cohort["n_events"].isna().sum())
    if without:
        raise ValueError(f"{without} stays of the {task} cohort have no timeline in {embeddings}")
    y = task_named(task).targets(cohort).reshape(len(cohort), -1).astype(np.float32)
    truncated = dropped = 0
    rows = {"modality": [], "h": [], "n_events": [], "time_hours": []}
    for modality, h, times in zip(cohort["modality"], cohort["h"], cohort["time_hours"]):
        modality = np.asarray(modality, np.int8)
        kept = truncate(modality, keep, max_events)
        truncated += len(kept) < len(modality)
        dropped += len(modality) - len(kept)
        rows["modality"].append(modality[kept])
        rows["time_hours"].append(np.asarray(times, np.float32)[kept])
        rows["h"].append(np.asarray(h, np.float32).reshape(-1, latent)[kept].ravel())
        rows["n_events"].append(len(kept))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        at = (cohort["split"] == split).to_numpy()
        pick = np.flatnonzero(at)
        pq.write_table(pa.table({
            "stay_id": pa.array(cohort["stay_id"].to_numpy()[at]),
            "y": pa.FixedSizeListArray.from_arrays(pa.array(y[at].ravel()), y.shape[1]),
            "n_events": pa.array(np.asarray(rows["n_events"], np.int32)[at]),
            "modality": pa.array([rows["modality"][i] for i in pick], type=pa.list_(pa.int8())),
            "h": pa.array([rows["h"][i] for i in pick], type=pa.list_(pa.float32())),
            "time_hours": pa.array([rows["time_hours"][i] for i in pick], type=pa.list_(pa.float32())),
        }), out / f"{split}.parquet")
    y_train = y[(cohort["split"] == "train").to_numpy()]
    info = {"task": task, "dataset": str(Path(dataset).resolve()), "embeddings": str(Path(embeddings).resolve()),
            "latent_dim": latent, "modalities": modalities, "out_features": int(y.shape[1]),
            "stays": {s: int((cohort["split"] == s).sum()) for s in ("train", "val", "test")},
            "truncated_stays": int(truncated), "dropped_events": int(dropped), "max_events": max_events,
            "prediction_hours": None if hours is None or pd.isna(hours) else float(hours),
            "pos_weight": task_named(task).pos_weight(y_train[:, 0] if y.shape[1] == 1 else y_train),
            "train_prevalence": y_train.mean(axis=0).tolist()}
    (out / "sequences.json").write_text(json.dumps(info, indent=2) + "\n")
    if truncated:
        log.info("%s: %d stays truncated to %d events (%d events dropped)", task, truncated, max_events, dropped)
    return info


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


def read_split(path: Path) -> dict:
    """A split file as numpy columns (what a Ray Data batch looks like), for scoring outside Ray."""
    table = pq.read_table(path)
    return {"stay_id": table["stay_id"].to_numpy(), "n_events": table["n_events"].to_numpy(),
            "y": list(table["y"].to_numpy(zero_copy_only=False)),
            "modality": list(table["modality"].to_numpy(zero_copy_only=False)),
            "h": list(table["h"].to_numpy(zero_copy_only=False)),
            **({"time_hours": list(table["time_hours"].to_numpy(zero_copy_only=False))}
               if "time_hours" in table.column_names else {})}


# ---- the model on a worker ----

def build_model(config: dict, runtime, device: torch.device):
    """Backbone (quantised or not) + LoRA + projection, [PREDICT] and head, on `device`."""
    from clintraj.models import backbones
    from clintraj.models.sequential import SequentialModel

    location = weights_of(config)
    quantized = config["quantization"] == "nf4"
    base = backbones.load_backbone(location, attention=runtime.attention, quantization=config["quantization"],
                                   dtype=runtime.dtype, device_map={"": device} if quantized else None)
    if not quantized:
        base = base.to(device)
    peft_model = backbones.apply_lora(base, backbones.spec(config["backbone"]), r=config["lora_r"],
                                      alpha=config["lora_alpha"], dropout=config["lora_dropout"],
                                      quantized=quantized, gradient_checkpointing=config["gradient_checkpointing"])
    model = SequentialModel(peft_model, config["latent_dim"], base.config.hidden_size, config["out_features"])
    if task_named(config["task"]).kind == "regression":  # start at the training mean of log(1 + hours), not 0 hours
        torch.nn.init.constant_(model.head.bias, float(np.mean(config["train_prevalence"])))
    # from_pretrained returns the decoder in eval mode, where transformers skips activation
    # checkpointing: without this the first epoch (until `predict` sets train mode) kept every
    # layer's activations.
    return place_small_modules(model, device).train()


def weights_of(config: dict) -> str:
    """`backbones.weights_location` of a config (or a checkpoint's record): the backbone's own
    "@source" or `weights`, written once when the source is materialised (tiny, packaged, random)."""
    from clintraj.models import backbones

    return backbones.weights_location(config["backbone"], config["weights"], config.get("model_dir"),
                                      Path(config["tiny_root"]) if config.get("tiny_root") else None,
                                      config.get("weights_cache"))


def place_small_modules(model, device):
    """Move the projection, [PREDICT] embedding and head to `device`, never the backbone: a 4-bit
    backbone already sits on its device, and `.to()` on bitsandbytes weights may quantise them again."""
    for part in model.small_modules().values():
        if isinstance(part, torch.nn.Module):
            part.to(device)
    model.predict_embedding.data = model.predict_embedding.data.to(device)
    return model


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, model, config: dict, runtime) -> None:
    """adapter/ (PEFT), head.pt (projection, [PREDICT], head) and sequential.json."""
    directory = Path(directory)
    model.backbone.save_pretrained(directory / "adapter")
    torch.save({name: (part.detach().cpu() if isinstance(part, torch.Tensor) else part.state_dict())
                for name, part in model.small_modules().items()}, directory / "head.pt")
    record = {**{k: config[k] for k in ("backbone", "weights", "model_dir", "tiny_root", "weights_cache",
                                          "quantization", "task", "latent_dim", "out_features", "modalities")},
              "attention": runtime.attention, "precision": runtime.precision, "dtypes": float_dtypes(model)}
    (directory / "sequential.json").write_text(json.dumps(record, indent=2) + "\n")


def _parameter_group(name: str) -> str:
    return "trainable" if "lora_" in name or not name.startswith("backbone.") else "frozen"


def float_dtypes(model) -> dict[str, str]:
    """The dtype the trained model computed in, per group: "trainable" (LoRA, projection, [PREDICT],
    head) and "frozen" (the backbone's unquantised weights: norms, embeddings). k-bit preparation
    makes the frozen ones fp32, and DeepSpeed's bf16 mode casts both groups to bf16 (keeping fp32
    master copies in the optimizer): a reloaded model must compute in the same dtypes."""
    found = {}
    for name, parameter in model.named_parameters():
        if parameter.is_floating_point():
            found.setdefault(_parameter_group(name), str(parameter.dtype).removeprefix("torch."))
    return found


def cast_float_parameters(model, dtypes: dict[str, str]) -> None:
    for name, parameter in model.named_parameters():
        group = _parameter_group(name)
        if parameter.is_floating_point() and group in dtypes:
            parameter.data = parameter.data.to(getattr(torch, dtypes[group]))


def load_head_file(model, directory: Path) -> None:
    """Projection, [PREDICT] embedding and head from a checkpoint's head.pt, into `model`'s own tensors."""
    state = torch.load(Path(directory) / "head.pt", weights_only=True)
    model.projection.load_state_dict(state["projection"])
    model.head.load_state_dict(state["head"])
    model.predict_embedding.data.copy_(state["predict_embedding"])


def load_checkpoint(directory: Path, device: str = "cpu", attention: str | None = None):
    """The model of a checkpoint: base weights + `PeftModel.from_pretrained(adapter)` + head.pt.
    `attention="eager"` for attention maps."""
    from peft import PeftModel

    from clintraj.models import backbones
    from clintraj.models.sequential import SequentialModel
    from clintraj.training.capabilities import Resolved

    directory = Path(directory)
    record = json.loads((directory / "sequential.json").read_text())
    location = weights_of(record)
    dtype = Resolved("sdpa", record["precision"], "gloo").dtype
    quantized = record["quantization"] == "nf4"
    base = backbones.load_backbone(location, attention=attention or record["attention"],
                                   quantization=record["quantization"], dtype=dtype,
                                   device_map={"": device} if quantized else None)
    peft_model = PeftModel.from_pretrained(base, directory / "adapter")
    model = SequentialModel(peft_model, record["latent_dim"], base.config.hidden_size, record["out_features"])
    load_head_file(model, directory)
    cast_float_parameters(model, record.get("dtypes", {}))
    if not quantized:
        model.backbone.to(device)
    return place_small_modules(model, device).eval(), record


def predict(model, batches, latent: int, device) -> pd.DataFrame:
    """stay_id, y, output (the last [PREDICT]'s), n_events and the output after every event."""
    from clintraj.models.sequential import last_logits

    model.eval()
    rows = []
    with torch.no_grad():
        for batch in batches:
            tensors = collate(batch, latent, device=device)
            logits = model(tensors["events"], tensors["event_mask"]).float()
            final = last_logits(logits, tensors["event_mask"]).cpu().numpy()
            lengths = tensors["event_mask"].sum(dim=1).cpu().numpy()
            for i, stay in enumerate(tensors["stay_id"]):
                rows.append({"stay_id": int(stay), "y": tensors["y"][i].cpu().numpy(), "output": final[i],
                             "n_events": int(lengths[i]),
                             "output_by_event": logits[i, :lengths[i], 0].cpu().numpy()})
    model.train()
    return pd.DataFrame(rows).sort_values("stay_id", kind="stable").reset_index(drop=True)


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


def robustness(model, split: dict, task: str, latent: int, batch_size: int, device, seed: int,
               max_removed: int = 4) -> dict[str, float]:
    """The test metric (AUROC; Spearman for LoS) with 0..max_removed modalities removed per stay."""
    key = "spearman" if task_named(task).kind == "regression" else "auroc"
    curve = {}
    for removed in range(max_removed + 1):
        rng = np.random.default_rng(seed + removed)
        frame = predict(model, bucketed([without_modalities(split, removed, rng)], batch_size, shuffle=False),
                        latent, device)
        curve[f"robust_{key}_{removed}"] = task_named(task).validation_metrics(*outputs(frame))[key]
    return curve


def outputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(y, output) arrays of a predictions frame, one column dropped for single-output tasks."""
    y, out = np.stack(frame["y"].to_numpy()), np.stack(frame["output"].to_numpy())
    return (y[:, 0], out[:, 0]) if y.shape[1] == 1 else (y, out)


def make_optimizer(model, config: dict) -> torch.optim.Optimizer:
    """8-bit AdamW (bitsandbytes) or AdamW over the trainable parameters (LoRA, projection, head)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config["optimizer"] == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(trainable, lr=config["lr"], weight_decay=config["weight_decay"])
    return torch.optim.AdamW(trainable, lr=config["lr"], weight_decay=config["weight_decay"])


def distribute(model, optimizer, config: dict, runtime, world: int):
    """(forward, step): a DeepSpeed ZeRO engine when `deepspeed_stage` > 0, else DDP over Ray
    Train's process group when `world` > 1, else the model itself. `step(loss)` runs backward and
    the optimizer step. Needs an initialised process group for DeepSpeed or DDP."""
    if config["deepspeed_stage"] > 0:
        import deepspeed

        trainable = [p for p in model.parameters() if p.requires_grad]
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=trainable, optimizer=optimizer,
                                               config=deepspeed_config(config, runtime))

        def step(loss):
            engine.backward(loss)
            engine.step()

        return engine, step
    forward = model
    if world > 1:
        import ray.train.torch

        forward = ray.train.torch.prepare_model(model, move_to_device=False,
                                                parallel_strategy_kwargs={"find_unused_parameters": True})

    def step(loss):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return forward, step


def training_loss(forward, tensors: dict, config: dict, pos_weight: torch.Tensor | None) -> torch.Tensor:
    """The task loss of one collated batch (`loss_on` [PREDICT] positions), in fp32."""
    from clintraj.models.sequential import sequence_loss

    logits = forward(tensors["events"], tensors["event_mask"])
    return sequence_loss(logits.float(), tensors["y"], tensors["event_mask"], config["task"], pos_weight,
                         config["loss_on"])


def deepspeed_config(config: dict, runtime) -> dict:
    """The DeepSpeed config generated from ours (logged as an artifact)."""
    return {"train_micro_batch_size_per_gpu": config["batch_size"], "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": config["deepspeed_stage"]},
            "bf16": {"enabled": runtime.precision == "bf16"}, "gradient_clipping": 1.0,
            "steps_per_print": 10 ** 9, "wall_clock_breakdown": False,
            # bitsandbytes' 8-bit AdamW is not on DeepSpeed's list; ZeRO-1/2 only hand it flat fp32 partitions
            "zero_allow_untested_optimizer": config["optimizer"] == "adamw8bit"}


def train_loop(config: dict) -> None:
    """Ray Train worker loop; `config` = SequentialTrainConfig fields + the task's data facts."""
    import ray.train
    import ray.train.torch

    from clintraj.training import capabilities

    started = time.perf_counter()
    torch.manual_seed(config["seed"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    rng = np.random.default_rng(config["seed"] + 1000 * rank)
    device = ray.train.torch.get_device()
    runtime = capabilities.resolve(config["attention"], config["precision"], config["quantization"],
                                   config["optimizer"], config["deepspeed_stage"], config["use_gpu"])
    if rank == 0:
        for note in runtime.notes:
            log.warning("%s", note)
    model = build_model(config, runtime, device)
    resumed = _resume(model, ray.train.get_checkpoint())  # before DeepSpeed copies the weights
    if rank == 0:
        log.info("%s ready in %.1f s (%s attention, %s, %s weights)", config["backbone"], time.perf_counter() - started,
                 runtime.attention, runtime.precision, config["quantization"])
    forward, step_on = distribute(model, make_optimizer(model, config), config, runtime, world)
    weights = config["pos_weight"]
    weights = torch.tensor(weights, device=device) if weights is not None else None
    metric, mode = task_named(config["task"]).selection
    latent = config["latent_dim"]
    train_shard = ray.train.get_dataset_shard("train")
    chunk = config["batch_size"] * config["bucket_batches"]
    # Validation and test are small and scored by rank 0 alone: read whole, not streamed.
    val = read_split(Path(config["sequences"]) / "val.parquet") if rank == 0 else None
    test = read_split(Path(config["sequences"]) / "test.parquet") if rank == 0 else None
    tracking = _step_logger(config) if rank == 0 else None
    if rank == 0 and config.get("mlflow_run_id"):
        _record_runtime(config, runtime)

    best, best_state, best_metrics, stale, step, first = None, None, None, 0, 0, 0
    if resumed:
        state, best_state = resumed
        best, best_metrics, stale, step = state["best"], state["best_metrics"], state["stale"], state["step"]
        first = state["next_epoch"]
        if rank == 0:
            log.warning("resuming at epoch %d from the last checkpoint (the optimizer's moments restart)", first)
    for epoch in range(first, config["epochs"]):
        losses, tokens, waited, started = [], 0, 0.0, time.perf_counter()
        batches = bucketed(train_shard.iter_batches(batch_size=chunk, batch_format="numpy"),
                           config["batch_size"], shuffle=True, rng=rng)
        while True:
            before = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - before
            if batch is None:
                break
            tensors = collate(batch, latent, config["modality_dropout"], rng, device)
            loss = training_loss(forward, tensors, config, weights)
            step_on(loss)
            losses.append(loss.item())
            tokens += 2 * int(tensors["event_mask"].sum())
            step += 1
        elapsed = time.perf_counter() - started
        if tracking:
            tracking(losses, step - len(losses))
        metrics = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                   "train_tokens_per_s": tokens * world / elapsed, "data_wait_share": waited / max(elapsed, 1e-9)}
        checkpoint_dir = tempfile.mkdtemp()
        if rank == 0:
            frame = predict(model, bucketed([val], config["batch_size"], shuffle=False), latent, device)
            y, out = outputs(frame)
            metrics.update({f"val_{k}": v for k, v in task_named(config["task"]).validation_metrics(y, out).items()})
            value = metrics[metric]
            improved = best is None or (value > best if mode == "max" else value < best)
            if improved:
                best, best_state, best_metrics, stale = value, trainable_state(model), dict(metrics), 0
            else:
                stale += 1
            metrics["val_score"] = value if mode == "max" else -value
            save_checkpoint(Path(checkpoint_dir), model, config, runtime)
            _save_trainer_state(Path(checkpoint_dir), {"next_epoch": epoch + 1, "step": step, "best": best,
                                                       "best_metrics": best_metrics, "stale": stale}, best_state)
        stop = _agree(stale >= config["patience"], world)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir) if rank == 0 else None)
        if stop:
            break
    final_dir = tempfile.mkdtemp()
    final = {"epoch": config["epochs"], "final": 1}
    if rank == 0:  # the best epoch's weights score the test split
        model.load_state_dict(best_state, strict=False)
        save_checkpoint(Path(final_dir), model, config, runtime)
        frame = predict(model, bucketed([test], config["batch_size"], shuffle=False), latent, device)
        frame.to_parquet(Path(final_dir) / "predictions.parquet")
        if config.get("robustness_removed", 0) > 0:  # beyond the paper: test metric vs modalities removed
            best_metrics.update(robustness(model, test, config["task"], latent, config["batch_size"], device,
                                           config["seed"], config["robustness_removed"]))
        final.update({**best_metrics, "epoch": best_metrics["epoch"], "final": 1, "best_epoch": best_metrics["epoch"],
                      "val_score": best if mode == "max" else -best})
    ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(final_dir) if rank == 0 else None)


def _save_trainer_state(directory: Path, state: dict, best_state: dict[str, torch.Tensor]) -> None:
    (directory / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    torch.save(best_state, directory / "best.pt")


def _resume(model, checkpoint) -> tuple[dict, dict] | None:
    """Load a reported epoch checkpoint's weights into `model` (adapter, head file); return its
    trainer state and the best epoch's weights, or None without a checkpoint."""
    if checkpoint is None:
        return None
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    with checkpoint.as_directory() as directory:
        directory = Path(directory)
        if not (directory / "trainer_state.json").is_file():  # the final checkpoint: nothing to resume
            return None
        set_peft_model_state_dict(model.backbone, load_file(directory / "adapter" / "adapter_model.safetensors"))
        load_head_file(model, directory)
        state = json.loads((directory / "trainer_state.json").read_text())
        best_state = torch.load(directory / "best.pt", weights_only=True)
    return state, best_state


def _agree(stop: bool, world: int) -> bool:
    """Rank 0 decides early stopping; every worker follows it."""
    if world == 1:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([1.0 if stop else 0.0])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _record_runtime(config: dict, runtime) -> None:
    """What ran, on the trial's MLflow run: resolved switches, notes, the DeepSpeed config."""
    from mlflow.tracking import MlflowClient

    client, run_id = MlflowClient(config["tracking_uri"]), config["mlflow_run_id"]
    for key, value in {"attention_used": runtime.attention, "precision_used": runtime.precision,
                       "backend_used": runtime.backend,
                       "capability_notes": " | ".join(runtime.notes) or "every requested feature ran"}.items():
        client.set_tag(run_id, key, value)
    if config["deepspeed_stage"] > 0:
        client.log_dict(run_id, deepspeed_config(config, runtime), "deepspeed_config.json")


def _step_logger(config: dict):
    """Per-step training loss to the trial's MLflow run (rank 0), one batch per epoch."""
    if not config.get("mlflow_run_id"):
        return None
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(config["tracking_uri"])

    def log_steps(losses: list[float], first_step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(config["mlflow_run_id"], metrics=[
            Metric("train_step_loss", value, now, first_step + i) for i, value in enumerate(losses)])

    return log_steps


def trainer(sequences: Path, config: SequentialTrainConfig, storage: str | Path, run_name: str,
            tracking_uri: str | None = None, mlflow_run_id: str | None = None, callbacks=()):
    """The TorchTrainer of one fine-tuning run on `task_sequences` output; checkpoints and adapters
    go under `storage`, a folder or a URI (`clintraj.storage.storage_path`)."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from clintraj.training.callbacks import MlflowEpochLogger

    from clintraj.models.backbones import weights_source

    sequences = Path(sequences).resolve()
    if weights_source(config.backbone, config.weights) in ("tiny", "packaged", "random"):
        weights_of(asdict(config))  # written once here, not raced by the workers
    info = json.loads((sequences / "sequences.json").read_text())
    if info["task"] != config.task:
        raise ValueError(f"{sequences} holds task {info['task']!r}, the config asks for {config.task!r}")
    # Materialised once: every epoch streams from the object store, not from re-read files.
    datasets = {"train": ray.data.read_parquet(str(sequences / "train.parquet")).materialize()}
    loop_config = {**asdict(config), "latent_dim": info["latent_dim"], "out_features": info["out_features"],
                   "pos_weight": info["pos_weight"], "modalities": info["modalities"],
                   "train_prevalence": info["train_prevalence"], "sequences": str(sequences),
                   "tracking_uri": tracking_uri, "mlflow_run_id": mlflow_run_id}
    logger = [MlflowEpochLogger(tracking_uri, mlflow_run_id)] if mlflow_run_id else []
    return TorchTrainer(
        train_loop, train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                               resources_per_worker={"CPU": config.cpus_per_worker}),
        datasets=datasets, dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(name=run_name, storage_path=storage_path(storage),
                                       callbacks=[*callbacks, *logger],
                                       failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
    ), loop_config


def fit(sequences: Path, config: SequentialTrainConfig, storage: str | Path, run_name: str, **kwargs) -> dict:
    """Train; return the final checkpoint's path, best-epoch validation metrics and test predictions."""
    run, _ = trainer(sequences, config, storage, run_name, **kwargs)
    result = run.fit()
    return finished(result)


def finished(result) -> dict:
    """The final checkpoint's location (a local path, or a URI under URI storage), metrics, predictions."""
    checkpoint = result.checkpoint
    with checkpoint.as_directory() as directory:
        predictions = pd.read_parquet(Path(directory) / "predictions.parquet")
    return {"checkpoint": uri_of(checkpoint.filesystem, checkpoint.path), "metrics": result.metrics,
            "predictions": predictions}
