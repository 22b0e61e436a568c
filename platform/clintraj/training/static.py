"""Static baselines (MLP / LSTM over per-stay vectors) on Ray Train, fed by Ray Data.

Each split's (x, y) goes to Ray Data as an in-memory Arrow table; Ray Data
streams the training split, sharded over workers (DDP), and gives every worker
the whole validation split. Each epoch rank 0 reports metrics and a checkpoint; Ray
Train keeps the best by the validation metric, and the driver scores the
test split from that checkpoint, with bootstrap confidence intervals. A worker
that dies restarts the group at the last epoch's checkpoint (weights, optimizer,
early-stopping state).

Losses (METHOD.md section 4): mortality BCE with pos_weight = negatives /
positives of the training split; phenotyping BCE with a pos_weight per label;
length of stay MSE on log(1 + hours), errors reported in hours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from clintraj.data.features import training_standardisation
from clintraj.models.static import build_static_model
from clintraj.storage import uri_of
from clintraj.tasks import TaskName, task as task_named
from clintraj.training.loop import (Prefetch, dataset_shard, is_rank_zero, make_trainer, prepare_model, report,
                                    resume_state, save_state, trains_in_process)

log = logging.getLogger(__name__)


@dataclass
class StaticTrainConfig:
    task: TaskName = "mortality"
    architecture: Literal["mlp", "lstm"] = "mlp"
    hidden: int = 128
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 15
    patience: int = 5
    num_workers: int = 2  # a Tune trial's 1 CPU worker is the trial's own process (loop.trains_in_process)
    cpus_per_worker: float = 0.5  # fractional: leaves CPUs to Ray Data's read tasks
    use_gpu: bool = False
    # worker failures Ray Train recovers from, resuming at the last epoch's checkpoint (in process: Tune's retries)
    max_failures: int = 2
    seed: int = 0


def split_table(x: np.ndarray, y: np.ndarray) -> pa.Table:
    """A split's (x, y) as an Arrow table of fixed-size float32 lists, one row per stay."""

    def fixed(a: np.ndarray) -> pa.Array:
        a = a.reshape(len(a), -1).astype(np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1])

    return pa.table({"x": fixed(x), "y": fixed(y)})


@dataclass(frozen=True)
class StaticRun:
    """What a worker needs: the config and the shape of the data."""

    config: StaticTrainConfig
    in_features: int
    out_features: int
    modalities: int  # the LSTM reads the input as this many modality vectors
    pos_weight: list[float] | None  # BCE weight of the positives (None: regression)
    target_mean: float | None  # regression: where the head's bias starts
    input_stats: tuple[list[float], list[float]] | None = None  # the training split's (mean, std) per feature


def build_model(run: StaticRun) -> nn.Module:
    config = run.config
    model = build_static_model(config.architecture, run.in_features, run.out_features, config.hidden,
                               config.dropout, run.modalities, run.input_stats)
    if run.target_mean is not None:
        # LoS: start at the training mean of log(1 + hours), not at 0 hours; the few hundred steps
        # of a small cohort otherwise go to learning the mean before any ranking
        nn.init.constant_(model.output.bias, run.target_mean)
    return model


def _predict(model: nn.Module, batches) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    ys, outs = [], []
    with torch.no_grad():
        for batch in batches:
            outs.append(model(batch["x"]).float().cpu().numpy())
            ys.append(batch["y"].cpu().numpy())
    model.train()
    return _squeeze(np.concatenate(ys)), _squeeze(np.concatenate(outs))


def _squeeze(a: np.ndarray) -> np.ndarray:
    return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


def loss_function(run: StaticRun) -> nn.Module:
    if run.pos_weight is None:
        return nn.MSELoss()
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(run.pos_weight))


def train_epoch(model: nn.Module, optimizer, loss_fn: nn.Module, batches) -> float:
    """One pass over the training batches; the mean loss per stay."""
    total, count = 0.0, 0
    for batch in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(batch["x"]), batch["y"])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch["y"])
        count += len(batch["y"])
    return total / max(count, 1)


def train_loop(args: dict) -> None:
    """Ray Train worker loop of a `StaticRun`."""
    run: StaticRun = args["run"]
    config = run.config
    torch.manual_seed(config.seed)
    task = task_named(config.task)
    model = build_model(run)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    metric, mode = task.selection
    stopping, first = resume_state(model, optimizer, mode, config.patience)
    model = prepare_model(model)
    loss_fn = loss_function(run)
    train_shard = dataset_shard("train")

    def epoch_batches() -> Prefetch:  # started while the previous epoch is scored and saved
        return Prefetch(lambda: train_shard.iter_torch_batches(batch_size=config.batch_size, dtypes=torch.float32))

    upcoming = epoch_batches()
    # The validation split is small and read every epoch: held in memory after the first pass.
    val_batches = list(dataset_shard("val").iter_torch_batches(batch_size=1024, dtypes=torch.float32))

    for epoch in range(first, config.epochs):
        train_loss = train_epoch(model, optimizer, loss_fn, upcoming)
        if epoch + 1 < config.epochs:
            upcoming = epoch_batches()
        y, output = _predict(model, val_batches)
        metrics = {"epoch": epoch, "train_loss": train_loss,
                   **{f"val_{k}": v for k, v in task.validation_metrics(y, output).items()}}
        stopping.update(metrics[metric], epoch)
        metrics["val_score"] = stopping.score(metrics[metric])  # one higher-is-better key for Tune
        state = {"epoch": epoch, "stopping": stopping.state()}
        report(metrics, partial(save_state, model=model, optimizer=optimizer, state=state) if is_rank_zero() else None)
        if stopping.stop:
            break


def trainer(splits: dict, config: StaticTrainConfig, workdir: Path, run_name: str, modalities: int = 0,
            tracking_uri: str | None = None, mlflow_run_id: str | None = None, callbacks=(),
            storage: str | Path | None = None, tune: bool = False):
    """(trainer, run) of one static run over splits {'train'|'val'|'test': (x, y)}; checkpoints go
    under `storage` (a folder or a URI), by default workdir/ray_results.
    `tune`: the run is a Tune trial (in its process with one CPU worker, `loop.trains_in_process`)."""
    import ray.data

    workdir = Path(workdir).resolve()
    x_train, y_train = splits["train"]
    task = task_named(config.task)
    # Already in memory: put in the object store as is, each epoch streams from there (no file written
    # and read back, so no read tasks or Parquet footer reader per trial)
    datasets = {name: ray.data.from_arrow(split_table(*splits[name])) for name in ("train", "val")}
    run = StaticRun(config, in_features=int(x_train.shape[1]),
                    out_features=1 if y_train.ndim == 1 else int(y_train.shape[1]), modalities=modalities,
                    pos_weight=task.pos_weight(y_train),
                    target_mean=float(np.mean(y_train)) if task.kind == "regression" else None,
                    input_stats=training_standardisation(x_train))
    return make_trainer(train_loop, run, name=run_name, storage=storage or workdir / "ray_results",
                        datasets=datasets, split=("train",), workers=config.num_workers,
                        cpus_per_worker=config.cpus_per_worker, use_gpu=config.use_gpu,
                        max_failures=config.max_failures, keep=2, score=task.selection,
                        tracking_uri=tracking_uri, mlflow_run_id=mlflow_run_id, callbacks=callbacks, tune=tune,
                        in_process=trains_in_process(config, tune)), run


def score(result, run: StaticRun, splits: dict) -> dict:
    """Best-checkpoint validation metrics and test metrics (with CIs) of a finished run."""
    task = task_named(run.config.task)
    metric, mode = task.selection
    best_checkpoint, best_metrics = max(
        result.best_checkpoints, key=lambda pair: pair[1][metric] if mode == "max" else -pair[1][metric])
    model = build_model(run)
    with best_checkpoint.as_directory() as directory:
        model.load_state_dict(torch.load(Path(directory) / "model.pt", weights_only=True))
    model.eval()
    x_test, y_test = splits["test"]
    with torch.no_grad():
        output = _squeeze(model(torch.as_tensor(x_test, dtype=torch.float32)).numpy())
    return {
        "best_epoch": int(best_metrics["epoch"]),
        **{f"best_{k}": v for k, v in best_metrics.items() if k.startswith("val_")},
        **{f"test_{k}": v for k, v in task.test_metrics(y_test, output, splits["train"][1], run.config.seed).items()},
        "checkpoint": uri_of(best_checkpoint.filesystem, best_checkpoint.path),
    }


def fit(splits: dict, config: StaticTrainConfig, workdir: Path, run_name: str, modalities: int = 0,
        tracking_uri: str | None = None, mlflow_run_id: str | None = None) -> dict:
    """Train on splits {'train'|'val'|'test': (x, y)}; return best-checkpoint val and test metrics."""
    trained, run = trainer(splits, config, workdir, run_name, modalities, tracking_uri, mlflow_run_id)
    return score(trained.fit(), run, splits)
