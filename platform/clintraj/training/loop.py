"""The skeleton every trainer shares (pretraining, static baselines, sequential fine-tuning).

A run is a typed object handed to the Ray Train workers whole (`train_loop_config={"run": run}`):
its stage's config dataclass plus the facts of its data. Each epoch the worker loop trains, scores
the validation split, updates `EarlyStopping` and calls `report`, which attaches rank 0's
checkpoint (written by the trainer's own `save`) in a temporary folder that Ray persists to the
run's storage and that is removed after. `make_trainer` builds the `TorchTrainer` of a run: storage,
the number of worker failures Ray Train recovers from (the loop then resumes from the last epoch's
checkpoint, `resumed`), the checkpoints kept and the MLflow epoch logger.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from clintraj.storage import storage_path


@dataclass
class EarlyStopping:
    """Best value of a validation metric so far, and the epochs since it last improved."""

    mode: Literal["max", "min"]
    patience: int
    best: float | None = None
    best_epoch: int | None = None
    stale: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is the best so far."""
        improved = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if improved:
            self.best, self.best_epoch, self.stale = value, epoch, 0
        else:
            self.stale += 1
        return improved

    @property
    def stop(self) -> bool:
        return self.stale >= self.patience

    def score(self, value: float) -> float:
        """The value as higher-is-better (what Tune compares trials by)."""
        return value if self.mode == "max" else -value

    def state(self) -> dict:
        return asdict(self)


def report(metrics: dict, save: Callable[[Path], None] | None = None) -> None:
    """`ray.train.report` one epoch; `save` (rank 0's, else None) writes its checkpoint."""
    import ray.train

    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if save is not None:
            save(Path(directory))
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def resumed(read: Callable[[Path], object]):
    """What `read` makes of the checkpoint a restarted worker group resumes from; None on a fresh start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return read(Path(directory))


def save_state(directory: Path, model, optimizer, state: dict) -> None:
    """model.pt, optimizer.pt and state.json (the epoch, early stopping): what `resume_state` reads."""
    import torch

    torch.save((model.module if hasattr(model, "module") else model).state_dict(), directory / "model.pt")
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    (directory / "state.json").write_text(json.dumps(state))


def resume_state(model, optimizer, mode: Literal["max", "min"], patience: int) -> tuple[EarlyStopping, int]:
    """(early stopping, first epoch): fresh on a first start; after a restart, model and optimizer
    loaded from the checkpoint `save_state` wrote and training picks up after its epoch."""
    import torch

    def read(directory: Path) -> dict:
        model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
        return json.loads((directory / "state.json").read_text())

    state = resumed(read)
    if state is None:
        return EarlyStopping(mode, patience), 0
    return EarlyStopping(**state["stopping"]), state["epoch"] + 1


def is_rank_zero() -> bool:
    import ray.train

    return ray.train.get_context().get_world_rank() == 0


def make_trainer(loop: Callable[[dict], None], run, *, name: str, storage: str | Path, datasets: dict,
                 workers: int, cpus_per_worker: float, use_gpu: bool, split: tuple[str, ...] | None = None,
                 max_failures: int = 0, keep: int = 2, score: tuple[str, str] | None = None,
                 tracking_uri: str | None = None, mlflow_run_id: str | None = None, callbacks=(),
                 backend: str | None = None):
    """The TorchTrainer of one run. `split`: the datasets sharded over workers (None: all of them);
    `score`: (metric, "max" | "min") that ranks the `keep` checkpoints kept (None: the latest);
    `mlflow_run_id`: each epoch's metrics go to that run (`callbacks.MlflowEpochLogger`)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from clintraj.training.callbacks import MlflowEpochLogger

    attribute, order = score if score else (None, "max")
    logger = [MlflowEpochLogger(tracking_uri, mlflow_run_id)] if mlflow_run_id else []
    return TorchTrainer(
        loop,
        train_loop_config={"run": run},
        torch_config=TorchConfig(backend=backend) if backend else None,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": cpus_per_worker}),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=list(split)) if split is not None else None,
        run_config=ray.train.RunConfig(
            # MLflow first: a trial that Tune stops on this report still has the epoch logged
            name=name, storage_path=storage_path(storage), callbacks=[*logger, *callbacks],
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=attribute,
                                                         checkpoint_score_order=order)),
    )
