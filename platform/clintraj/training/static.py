"""Static baselines (MLP / LSTM over per-stay vectors) on Ray Train, fed by Ray Data.

The driver writes each split's (x, y) to Parquet; Ray Data streams the
training split, sharded over workers (DDP), and gives every worker the whole
validation split. Each epoch rank 0 reports metrics and a checkpoint; Ray
Train keeps the best by the validation metric, and the driver scores the
test split from that checkpoint, with bootstrap confidence intervals.

Losses (METHOD.md section 4): mortality BCE with pos_weight = negatives /
positives of the training split; phenotyping BCE with a pos_weight per label;
length of stay MSE on log(1 + hours), errors reported in hours.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from clintraj.models.static import build_static_model
from clintraj.storage import storage_path, uri_of
from clintraj.tasks import TaskName, task as task_named

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
    num_workers: int = 2
    cpus_per_worker: float = 0.5  # fractional: leaves CPUs to Ray Data's read tasks
    use_gpu: bool = False
    seed: int = 0


def write_split(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)

    def fixed(a: np.ndarray) -> pa.Array:
        a = a.reshape(len(a), -1).astype(np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1])

    pq.write_table(pa.table({"x": fixed(x), "y": fixed(y)}), path)
    return path


def _model(config: dict) -> nn.Module:
    model = build_static_model(config["architecture"], config["in_features"], config["out_features"],
                               config["hidden"], config["dropout"], config.get("modalities", 0))
    if config.get("target_mean") is not None:
        # LoS: start at the training mean of log(1 + hours), not at 0 hours; the few hundred steps
        # of a small cohort otherwise go to learning the mean before any ranking
        nn.init.constant_(model.output.bias, config["target_mean"])
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


def train_loop(config: dict) -> None:
    """Ray Train worker loop; `config` holds StaticTrainConfig fields plus the data's shape."""
    import ray.train
    import ray.train.torch

    torch.manual_seed(config["seed"])
    task = task_named(config["task"])
    model = ray.train.torch.prepare_model(_model(config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    weights = config["pos_weight"]
    loss_fn = nn.MSELoss() if weights is None else nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weights))
    metric, mode = task.selection
    rank_zero = ray.train.get_context().get_world_rank() == 0
    train_shard = ray.train.get_dataset_shard("train")
    # The validation split is small and read every epoch: held in memory after the first pass.
    val_batches = list(ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=1024, dtypes=torch.float32))

    best, stale = None, 0
    for epoch in range(config["epochs"]):
        total, count = 0.0, 0
        for batch in train_shard.iter_torch_batches(batch_size=config["batch_size"], dtypes=torch.float32):
            optimizer.zero_grad()
            loss = loss_fn(model(batch["x"]), batch["y"])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch["y"])
            count += len(batch["y"])
        y, output = _predict(model, val_batches)
        metrics = {"epoch": epoch, "train_loss": total / max(count, 1),
                   **{f"val_{k}": v for k, v in task.validation_metrics(y, output).items()}}
        value = metrics[metric]
        metrics["val_score"] = value if mode == "max" else -value  # one higher-is-better key for Tune
        improved = best is None or (value > best if mode == "max" else value < best)
        best, stale = (value, 0) if improved else (best, stale + 1)
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if rank_zero:
                state = (model.module if hasattr(model, "module") else model).state_dict()
                torch.save(state, Path(directory) / "model.pt")
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint)
        if stale >= config["patience"]:
            break


def trainer(splits: dict, config: StaticTrainConfig, workdir: Path, run_name: str, modalities: int = 0,
            tracking_uri: str | None = None, mlflow_run_id: str | None = None, callbacks=(),
            storage: str | Path | None = None):
    """The TorchTrainer of one static run over splits {'train'|'val'|'test': (x, y)}, written under
    `workdir`; checkpoints go under `storage` (a folder or a URI), by default workdir/ray_results."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from clintraj.training.callbacks import MlflowEpochLogger

    workdir = Path(workdir).resolve()
    x_train, y_train = splits["train"]
    task = task_named(config.task)
    # Materialised once: each epoch then streams from the object store instead of re-reading files.
    datasets = {name: ray.data.read_parquet(str(write_split(workdir / "splits" / f"{name}.parquet", *splits[name])))
                .materialize() for name in ("train", "val")}
    loop_config = {**vars(config), "in_features": int(x_train.shape[1]),
                   "out_features": 1 if y_train.ndim == 1 else int(y_train.shape[1]),
                   "modalities": modalities, "pos_weight": task.pos_weight(y_train),
                   "target_mean": float(np.mean(y_train)) if task.kind == "regression" else None}
    metric, mode = task.selection
    mlflow_logger = [MlflowEpochLogger(tracking_uri, mlflow_run_id)] if mlflow_run_id else []
    return TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.num_workers, use_gpu=config.use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker}),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=storage_path(storage or workdir / "ray_results"),
            callbacks=[*callbacks, *mlflow_logger],
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode)),
    ), loop_config


def score(result, loop_config: dict, splits: dict, config: StaticTrainConfig) -> dict:
    """Best-checkpoint validation metrics and test metrics (with CIs) of a finished run."""
    task = task_named(config.task)
    metric, mode = task.selection
    best_checkpoint, best_metrics = max(
        result.best_checkpoints, key=lambda pair: pair[1][metric] if mode == "max" else -pair[1][metric])
    model = _model(loop_config)
    with best_checkpoint.as_directory() as directory:
        model.load_state_dict(torch.load(Path(directory) / "model.pt", weights_only=True))
    model.eval()
    x_test, y_test = splits["test"]
    with torch.no_grad():
        output = _squeeze(model(torch.as_tensor(x_test, dtype=torch.float32)).numpy())
    return {
        "best_epoch": int(best_metrics["epoch"]),
        **{f"best_{k}": v for k, v in best_metrics.items() if k.startswith("val_")},
        **{f"test_{k}": v for k, v in task.test_metrics(y_test, output, splits["train"][1], config.seed).items()},
        "checkpoint": uri_of(best_checkpoint.filesystem, best_checkpoint.path),
    }


def fit(splits: dict, config: StaticTrainConfig, workdir: Path, run_name: str, modalities: int = 0,
        tracking_uri: str | None = None, mlflow_run_id: str | None = None) -> dict:
    """Train on splits {'train'|'val'|'test': (x, y)}; return best-checkpoint val and test metrics."""
    run, loop_config = trainer(splits, config, workdir, run_name, modalities, tracking_uri, mlflow_run_id)
    return score(run.fit(), loop_config, splits, config)
