"""Sequential LLM fine-tuning (paper §3.4.2, appendix B.2-B.3) on Ray Train, fed by Ray Data.

The driver writes a task's sequences once (`data.sequences.task_sequences`: each stay's timeline
over the task's window, truncated to `max_events`, keeping demographics / APS and the most recent
events, the truncation counted). The training split is held in Ray's object store, each worker
reading its fixed shard (`training.shards`; rank 0 reads the small validation and test splits
whole, from the same storage); each worker reads chunks of `bucket_batches` batches, sorts them by
length and cuts batches from them, so a batch pads to its own longest stay, not the dataset's.

On each worker: the decoder of `training.decoder` (4-bit NF4 when `quantization: nf4`, LoRA on its
family's projections, non-reentrant activation checkpointing), 8-bit AdamW, and DeepSpeed ZeRO
(`deepspeed_stage`; 0 = plain DDP) over the process group Ray Train made. Capability checks
(`training.capabilities`) decide what runs and say what does not.

Each epoch (`train_epoch`) rank 0 scores the validation split and reports a checkpoint (the
decoder's, with `trainer_state.json` and `best.pt`, the best epoch so far). After the last epoch the
best epoch's weights score the test split, and the final checkpoint holds them with
`predictions.parquet`.

A failed worker (`max_failures`) restarts the run from the last epoch's checkpoint: the weights,
the early-stopping state and the best epoch come back, so no epoch is trained or counted twice.
The optimizer's moments restart (with ZeRO they are partitioned across workers and are not in the
checkpoint).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from clintraj.artifacts.sequences import Sequences
from clintraj.data.sequences import bucketed, collate, without_modalities
from clintraj.storage import uri_of
from clintraj.tasks import TaskName, task as task_named
from clintraj.training import decoder
from clintraj.training.decoder import SequenceFacts
from clintraj.training.loop import (EarlyStopping, Prefetch, TimedBatches, dataset_shard, make_trainer, rank_and_world,
                                    report, resumed, trains_in_process, worker_device)

log = logging.getLogger(__name__)
FINAL_REPORT = "final_report.json"  # in the final checkpoint: what its run reported at the end


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
    num_workers: int = 1  # in a Tune trial, 1 CPU worker without DeepSpeed is the trial's own process
    cpus_per_worker: float = 0.5
    use_gpu: bool = False
    # worker failures Ray Train recovers from, resuming at the last epoch's checkpoint (in process: Tune's retries)
    max_failures: int = 2
    seed: int = 0


@dataclass(frozen=True)
class SequentialRun:
    """What a worker needs: the config, the facts of the task's sequences, where they are, and the
    trial's MLflow run (per-step losses, the resolved switches)."""

    config: SequentialTrainConfig
    facts: SequenceFacts
    sequences: str
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None


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


def make_optimizer(model, config: SequentialTrainConfig) -> torch.optim.Optimizer:
    """8-bit AdamW (bitsandbytes) or AdamW over the trainable parameters (LoRA, projection, head)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(trainable, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)


def distribute(model, optimizer, config: SequentialTrainConfig, runtime, world: int):
    """(forward, step): a DeepSpeed ZeRO engine when `deepspeed_stage` > 0, else DDP over Ray
    Train's process group when `world` > 1, else the model itself. `step(loss)` runs backward and
    the optimizer step. Needs an initialised process group for DeepSpeed or DDP."""
    if config.deepspeed_stage > 0:
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


def training_loss(forward, tensors: dict, config: SequentialTrainConfig, pos_weight: torch.Tensor | None) -> torch.Tensor:
    """The task loss of one collated batch (`loss_on` [PREDICT] positions), in fp32."""
    from clintraj.models.sequential import sequence_loss

    logits = forward(tensors["events"], tensors["event_mask"])
    return sequence_loss(logits.float(), tensors["y"], tensors["event_mask"], config.task, pos_weight, config.loss_on)


def deepspeed_config(config: SequentialTrainConfig, runtime) -> dict:
    """The DeepSpeed config generated from ours (logged as an artifact)."""
    return {"train_micro_batch_size_per_gpu": config.batch_size, "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": config.deepspeed_stage},
            "bf16": {"enabled": runtime.precision == "bf16"}, "gradient_clipping": 1.0,
            "steps_per_print": 10 ** 9, "wall_clock_breakdown": False,
            # bitsandbytes' 8-bit AdamW is not on DeepSpeed's list; ZeRO-1/2 only hand it flat fp32 partitions
            "zero_allow_untested_optimizer": config.optimizer == "adamw8bit"}


@dataclass
class EpochStats:
    losses: list[float]
    tokens: int  # events and [PREDICT]s through the model
    waited: float  # seconds spent waiting for the next batch
    elapsed: float


def train_epoch(forward, step_on, batches, run: SequentialRun, pos_weight, rng: np.random.Generator,
                device) -> EpochStats:
    """One pass over the training batches (numpy chunks bucketed by length), the time spent waiting
    for data measured apart."""
    config = run.config
    losses, tokens, timed = [], 0, TimedBatches(batches)
    for batch in timed:
        tensors = collate(batch, run.facts.latent_dim, config.modality_dropout, rng, device)
        loss = training_loss(forward, tensors, config, pos_weight)
        step_on(loss)
        losses.append(loss.item())
        tokens += 2 * int(tensors["event_mask"].sum())
    return EpochStats(losses, tokens, timed.waited, timed.elapsed)


def _save_epoch(directory: Path, model, run: SequentialRun, runtime, state: dict, best_state: dict) -> None:
    decoder.save_checkpoint(directory, model, run.config, run.facts, runtime)
    decoder.save_trainer_state(directory, state, best_state)


def _save_final(directory: Path, model, run: SequentialRun, runtime, predictions: pd.DataFrame,
                metrics: dict) -> None:
    decoder.save_checkpoint(directory, model, run.config, run.facts, runtime)
    predictions.to_parquet(directory / "predictions.parquet")
    (directory / FINAL_REPORT).write_text(json.dumps(metrics, default=float))


def _final_report(directory: Path) -> dict | None:
    """The final report a checkpoint holds (None: an epoch checkpoint)."""
    path = Path(directory) / FINAL_REPORT
    return json.loads(path.read_text()) if path.is_file() else None


def _copy_final(directory: Path) -> None:
    """The final checkpoint the run resumed from, again as this report's checkpoint."""
    resumed(lambda earlier: shutil.copytree(earlier, directory, dirs_exist_ok=True))


def train_loop(args: dict) -> None:
    """Ray Train worker loop of a `SequentialRun`."""
    from clintraj.training import capabilities

    run: SequentialRun = args["run"]
    config, facts = run.config, run.facts
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rank, world = rank_and_world()
    rng = np.random.default_rng(config.seed + 1000 * rank)
    device = worker_device()
    runtime = capabilities.resolve(config.attention, config.precision, config.quantization, config.optimizer,
                                   config.deepspeed_stage, config.use_gpu)
    if rank == 0:
        for note in runtime.notes:
            log.warning("%s", note)
    # Restarted after its final report (killed before its trial closed): report that again, train no more
    if (final := resumed(_final_report)) is not None:
        report(final, _copy_final if rank == 0 else None)
        return
    train_shard = dataset_shard("train")
    chunk = config.batch_size * config.bucket_batches

    def epoch_chunks():
        return train_shard.iter_batches(batch_size=chunk, batch_format="numpy")

    upcoming = Prefetch(epoch_chunks)  # the first epoch's pipeline starts while the model is built
    model = decoder.build_model(config, facts, runtime, device)
    restored = resumed(partial(decoder.resume, model))  # before DeepSpeed copies the weights
    if rank == 0:
        log.info("%s ready in %.1f s (%s attention, %s, %s weights)", config.backbone, time.perf_counter() - started,
                 runtime.attention, runtime.precision, config.quantization)
    forward, step_on = distribute(model, make_optimizer(model, config), config, runtime, world)
    weights = torch.tensor(facts.pos_weight, device=device) if facts.pos_weight is not None else None
    task = task_named(config.task)
    metric, mode = task.selection
    latent = facts.latent_dim
    # Validation and test are small and scored by rank 0 alone: read whole, not streamed.
    sequences = Sequences(run.sequences)
    val = sequences.split("val") if rank == 0 else None
    test = sequences.split("test") if rank == 0 else None
    tracking = _step_logger(run) if rank == 0 else None
    if rank == 0 and run.mlflow_run_id:
        _record_runtime(run, runtime)

    stopping, best_state, best_metrics, step, first = EarlyStopping(mode, config.patience), None, None, 0, 0
    if restored:
        state, best_state = restored
        stopping, best_metrics = EarlyStopping(**state["stopping"]), state["best_metrics"]
        step, first = state["step"], state["next_epoch"]
        if rank == 0:
            log.warning("resuming at epoch %d from the last checkpoint (the optimizer's moments restart)", first)
    for epoch in range(first, config.epochs):
        batches = bucketed(iter(upcoming), config.batch_size, shuffle=True, rng=rng)
        stats = train_epoch(forward, step_on, batches, run, weights, rng, device)
        if epoch + 1 < config.epochs:  # the next epoch's pipeline starts while rank 0 validates this one
            upcoming = Prefetch(epoch_chunks)
        if tracking:
            tracking(stats.losses, step)
        step += len(stats.losses)
        metrics = {"epoch": epoch, "train_loss": float(np.mean(stats.losses)) if stats.losses else float("nan"),
                   "train_tokens_per_s": stats.tokens * world / stats.elapsed,
                   "data_wait_share": stats.waited / max(stats.elapsed, 1e-9)}
        save = None
        if rank == 0:
            frame = predict(model, bucketed([val], config.batch_size, shuffle=False), latent, device)
            metrics.update({f"val_{k}": v for k, v in task.validation_metrics(*outputs(frame)).items()})
            if stopping.update(metrics[metric], epoch):
                best_state, best_metrics = decoder.trainable_state(model), dict(metrics)
            metrics["val_score"] = stopping.score(metrics[metric])
            state = {"next_epoch": epoch + 1, "step": step, "stopping": stopping.state(), "best_metrics": best_metrics}
            save = partial(_save_epoch, model=model, run=run, runtime=runtime, state=state, best_state=best_state)
        stop = _agree(stopping.stop, world)
        report(metrics, save)
        if stop:
            break
    final, save = {"epoch": config.epochs, "final": 1}, None
    if rank == 0:  # the best epoch's weights score the test split
        model.load_state_dict(best_state, strict=False)
        frame = predict(model, bucketed([test], config.batch_size, shuffle=False), latent, device)
        if config.robustness_removed > 0:  # beyond the paper: test metric vs modalities removed
            best_metrics.update(robustness(model, test, config.task, latent, config.batch_size, device,
                                           config.seed, config.robustness_removed))
        final.update({**best_metrics, "epoch": best_metrics["epoch"], "final": 1, "best_epoch": best_metrics["epoch"],
                      "val_score": stopping.score(stopping.best)})
        save = partial(_save_final, model=model, run=run, runtime=runtime, predictions=frame, metrics=final)
    report(final, save)


def _agree(stop: bool, world: int) -> bool:
    """Rank 0 decides early stopping; every worker follows it."""
    if world == 1:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([1.0 if stop else 0.0])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _record_runtime(run: SequentialRun, runtime) -> None:
    """What ran, on the trial's MLflow run: resolved switches, notes, the DeepSpeed config."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(run.tracking_uri)
    for key, value in {"attention_used": runtime.attention, "precision_used": runtime.precision,
                       "backend_used": runtime.backend,
                       "capability_notes": " | ".join(runtime.notes) or "every requested feature ran"}.items():
        client.set_tag(run.mlflow_run_id, key, value)
    if run.config.deepspeed_stage > 0:
        client.log_dict(run.mlflow_run_id, deepspeed_config(run.config, runtime), "deepspeed_config.json")


def _step_logger(run: SequentialRun):
    """Per-step training loss to the trial's MLflow run (rank 0), one batch per epoch."""
    if not run.mlflow_run_id:
        return None
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(run.tracking_uri)

    def log_steps(losses: list[float], first_step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run.mlflow_run_id, metrics=[
            Metric("train_step_loss", value, now, first_step + i) for i, value in enumerate(losses)])

    return log_steps


def trainer(sequences: Path, config: SequentialTrainConfig, storage: str | Path, run_name: str,
            tracking_uri: str | None = None, mlflow_run_id: str | None = None, callbacks=(), tune: bool = False):
    """(trainer, run) of one fine-tuning run on a task's sequences; checkpoints and adapters go
    under `storage`, a folder or a URI (`clintraj.storage.storage_path`). `tune`: the run is a Tune
    trial (in its process with one CPU worker and no DeepSpeed, `loop.trains_in_process`)."""
    import ray.data

    from clintraj.models.backbones import weights_source

    source = Sequences(Path(sequences).resolve())
    if weights_source(config.backbone, config.weights) in ("tiny", "packaged", "random"):
        decoder.weights_location(config)  # written once here, not raced by the workers
    if source.info["task"] != config.task:
        raise ValueError(f"{sequences} holds task {source.info['task']!r}, the config asks for {config.task!r}")
    run = SequentialRun(config, SequenceFacts.of(source.info), str(source.path), tracking_uri, mlflow_run_id)
    # Materialised once: every epoch streams from the object store, not from re-read files.
    datasets = {"train": ray.data.read_parquet(str(source.file("train"))).materialize()}
    return make_trainer(train_loop, run, name=run_name, storage=storage, datasets=datasets, split=("train",),
                        workers=config.num_workers, cpus_per_worker=config.cpus_per_worker, use_gpu=config.use_gpu,
                        max_failures=config.max_failures, keep=2, tracking_uri=tracking_uri,
                        mlflow_run_id=mlflow_run_id, callbacks=callbacks, tune=tune,
                        in_process=trains_in_process(config, tune), backend="nccl" if config.use_gpu else "gloo"), run


def fit(sequences: Path, config: SequentialTrainConfig, storage: str | Path, run_name: str, **kwargs) -> dict:
    """Train; return the final checkpoint's path, best-epoch validation metrics and test predictions."""
    trained, _ = trainer(sequences, config, storage, run_name, **kwargs)
    return finished(trained.fit())


def finished(result) -> dict:
    """The final checkpoint's location (a local path, or a URI under URI storage), metrics, predictions."""
    checkpoint = result.checkpoint
    with checkpoint.as_directory() as directory:
        predictions = pd.read_parquet(Path(directory) / "predictions.parquet")
    return {"checkpoint": uri_of(checkpoint.filesystem, checkpoint.path), "metrics": result.metrics,
            "predictions": predictions}
