"""Static MLP on per-stay vectors: Ray Data feeds Ray Train workers (DDP), MLflow records the run.

The driver writes each split's (x, y) to Parquet; Ray Data streams the
training split, sharded over workers, and gives every worker the whole
validation split. Each epoch rank 0 reports metrics and a checkpoint; Ray
Train keeps the best by the validation metric, and the driver scores the
test split from that checkpoint.
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

from clintraj.evaluation.metrics import binary_metrics, evaluate_task, regression_metrics
from clintraj.models.static_mlp import StaticMLP

log = logging.getLogger(__name__)
Task = Literal["mortality", "los"]


@dataclass
class StaticTrainConfig:
    task: Task = "mortality"
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


def selection_metric(task: Task) -> tuple[str, str]:
    return ("val_auroc", "max") if task == "mortality" else ("val_mse", "min")


def targets(stays, task: Task) -> np.ndarray:
    """Mortality as 0/1; length of stay as log(1 + hours) (METHOD.md section 4)."""
    if task == "mortality":
        return stays["died"].astype(float).to_numpy()
    return np.log1p(stays["los_hours"].astype(float).to_numpy())


def task_metrics(task: Task, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    if task == "mortality":
        return binary_metrics(y, output)
    return regression_metrics(np.expm1(y), np.expm1(output))  # errors in hours


def write_split(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel()), x.shape[1])
    pq.write_table(pa.table({"x": vectors, "y": y.astype(np.float32)}), path)
    return path


def _loss(task: Task, pos_weight: float | None) -> nn.Module:
    if task == "mortality":
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    return nn.MSELoss()


def _predict(model: nn.Module, batches) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    ys, outs = [], []
    with torch.no_grad():
        for batch in batches:
            outs.append(model(batch["x"]).squeeze(-1).float().cpu().numpy())
            ys.append(batch["y"].cpu().numpy())
    model.train()
    return np.concatenate(ys), np.concatenate(outs)


def train_loop(config: dict) -> None:
    """Ray Train worker loop; `config` holds StaticTrainConfig fields plus run wiring."""
    import ray.train
    import ray.train.torch
    torch.manual_seed(config["seed"])
    task = config["task"]
    model = ray.train.torch.prepare_model(
        StaticMLP(config["in_features"], 1, config["hidden"], config["dropout"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    loss_fn = _loss(task, config.get("pos_weight"))
    metric, mode = selection_metric(task)
    context = ray.train.get_context()
    rank_zero = context.get_world_rank() == 0
    train_shard = ray.train.get_dataset_shard("train")
    # The validation split is small and read every epoch: held in memory after the first pass.
    val_batches = list(ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=1024, dtypes=torch.float32))

    best, stale = None, 0
    for epoch in range(config["epochs"]):
        total, count = 0.0, 0
        for batch in train_shard.iter_torch_batches(batch_size=config["batch_size"], dtypes=torch.float32):
            optimizer.zero_grad()
            loss = loss_fn(model(batch["x"]).squeeze(-1), batch["y"])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch["y"])
            count += len(batch["y"])
        y, output = _predict(model, val_batches)
        metrics = {"epoch": epoch, "train_loss": total / max(count, 1),
                   **{f"val_{k}": v for k, v in task_metrics(task, y, output).items()}}
        improved = best is None or (metrics[metric] > best if mode == "max" else metrics[metric] < best)
        best, stale = (metrics[metric], 0) if improved else (best, stale + 1)
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if rank_zero:
                state = (model.module if hasattr(model, "module") else model).state_dict()
                torch.save(state, Path(directory) / "model.pt")
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint)
        if stale >= config["patience"]:
            break


def fit(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    config: StaticTrainConfig,
    workdir: Path,
    run_name: str,
    tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
) -> dict:
    """Train on splits {'train'|'val'|'test': (x, y)}; return best-checkpoint val and test metrics."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from clintraj.training.callbacks import MlflowEpochLogger

    workdir = Path(workdir).resolve()
    x_train, y_train = splits["train"]
    # Materialised once: each epoch then streams from the object store instead of re-reading files.
    datasets = {name: ray.data.read_parquet(str(write_split(workdir / "splits" / f"{name}.parquet", *splits[name])))
                .materialize() for name in ("train", "val")}
    positives = float(y_train.sum()) if config.task == "mortality" else 0.0
    loop_config = {
        **vars(config),
        "in_features": int(x_train.shape[1]),
        "pos_weight": (len(y_train) - positives) / max(positives, 1.0) if config.task == "mortality" else None,
    }
    metric, mode = selection_metric(config.task)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.num_workers, use_gpu=config.use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker}),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=str(workdir / "ray_results"),
            callbacks=[MlflowEpochLogger(tracking_uri, mlflow_run_id)] if mlflow_run_id else [],
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode)),
    )
    result = trainer.fit()
    best_checkpoint, best_metrics = max(
        result.best_checkpoints, key=lambda pair: pair[1][metric] if mode == "max" else -pair[1][metric])
    model = StaticMLP(loop_config["in_features"], 1, config.hidden, config.dropout)
    with best_checkpoint.as_directory() as directory:
        model.load_state_dict(torch.load(Path(directory) / "model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        x_test, y_test = splits["test"]
        output = model(torch.as_tensor(x_test, dtype=torch.float32)).squeeze(-1).numpy()
    if config.task == "mortality":  # AUROC, AUPRC, ACE, BSS against the training prevalence, with 95% CIs
        test = evaluate_task("mortality", y_test, output, train_prevalence=float(y_train.mean()),
                             seed=config.seed)
    else:  # errors in hours
        test = evaluate_task("los", np.expm1(y_test), np.expm1(output), seed=config.seed)
    return {
        "best_epoch": int(best_metrics["epoch"]),
        **{f"best_{k}": v for k, v in best_metrics.items() if k.startswith("val_")},
        **{f"test_{k}": v for k, v in test.items()},
        "checkpoint": best_checkpoint.path,
    }
