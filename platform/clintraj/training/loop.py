"""The skeleton every trainer shares (pretraining, static baselines, sequential fine-tuning).

A run is a typed object handed to the Ray Train workers whole (`train_loop_config={"run": run}`):
its stage's config dataclass plus the facts of its data. Each epoch the worker loop trains, scores
the validation split, updates `EarlyStopping` and calls `report`, which attaches rank 0's
checkpoint (written by the trainer's own `save`) in a temporary folder that Ray persists to the
run's storage and that is removed after. `make_trainer` builds the trainer of a run: storage, the
number of worker failures Ray Train recovers from (the loop then resumes from the last epoch's
checkpoint, `resumed`), the checkpoints kept and the MLflow epoch logger.

Where a run trains: a Tune trial with one CPU worker (`num_workers: 1`, no GPU, no DeepSpeed)
trains in the trial's own process (`in_process.InProcessTrainer`: no Train controller or worker
actors, Tune retries a failed trial); every other run on Ray Train workers (`TorchTrainer`). The
loops do not know which: they reach their run through this module (`report`, `resumed`,
`rank_and_world`, `dataset_shard`, `prepare_model`, `worker_device`).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

from clintraj.storage import storage_path
from clintraj.training.in_process import InProcessTrainer, running


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


class TrainWorker:
    """A Ray Train worker's view of its run: `ray.train`'s API (what `InProcessTrainer` stands in for)."""

    def rank_and_world(self) -> tuple[int, int]:
        import ray.train

        context = ray.train.get_context()
        return context.get_world_rank(), context.get_world_size()

    def dataset_shard(self, name: str):
        import ray.train

        return ray.train.get_dataset_shard(name)

    def prepare_model(self, model, **kwargs):
        import ray.train.torch

        return ray.train.torch.prepare_model(model, **kwargs)

    def device(self):
        import ray.train.torch

        return ray.train.torch.get_device()

    def latest_checkpoint(self):
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict, directory: Path | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(directory) if directory is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)


def _run():
    return running() or TrainWorker()


def report(metrics: dict, save: Callable[[Path], None] | None = None) -> None:
    """Report one epoch; `save` (rank 0's, else None) writes its checkpoint."""
    with tempfile.TemporaryDirectory() as directory:
        if save is not None:
            save(Path(directory))
        _run().report(metrics, Path(directory) if save is not None else None)


def resumed(read: Callable[[Path], object]):
    """What `read` makes of the checkpoint a restarted run resumes from; None on a fresh start."""
    checkpoint = _run().latest_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return read(Path(directory))


def rank_and_world() -> tuple[int, int]:
    return _run().rank_and_world()


def dataset_shard(name: str):
    """This worker's share of a dataset: a `DataIterator` on a Train worker, the `Dataset` in process."""
    return _run().dataset_shard(name)


def prepare_model(model, **kwargs):
    """`ray.train.torch.prepare_model` on a Train worker (DDP when several); the model itself in process."""
    return _run().prepare_model(model, **kwargs)


def worker_device():
    """The device this worker trains on (`ray.train.torch.get_device`; the CPU in process)."""
    return _run().device()


_END = object()  # what `next` returns from an exhausted iterator here


class Prefetch:
    """An epoch's batches whose pipeline starts now, in a thread: the iterator is made and its first
    batch taken while the loop does other work (building the model, validating the previous epoch),
    so the epoch's first step does not wait for Ray Data to start an execution (seconds on a first
    epoch, bench/finetune.py). Iterated once, in the loop's thread; the order of batches is the
    iterator's own."""

    def __init__(self, make_iterator: Callable[[], Iterable]):
        self._iterator, self._first, self._error = None, _END, None
        self._thread = threading.Thread(target=self._start, args=(make_iterator,), name="epoch-prefetch", daemon=True)
        self._thread.start()

    def _start(self, make_iterator: Callable[[], Iterable]) -> None:
        try:
            self._iterator = iter(make_iterator())
            self._first = next(self._iterator, _END)
        except BaseException as error:  # raised in the loop's thread, when it iterates
            self._error = error

    def __iter__(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._first is not _END:
            yield self._first
            yield from self._iterator


class TimedBatches:
    """Iterates `batches`, timing the loop: `waited`, the seconds blocked on the next batch (the data
    pipeline), and `elapsed`, the seconds since iteration began."""

    def __init__(self, batches: Iterable):
        self._batches, self.waited, self._started = iter(batches), 0.0, None

    def __iter__(self):
        self._started = time.perf_counter()
        while True:
            before = time.perf_counter()
            batch = next(self._batches, _END)
            self.waited += time.perf_counter() - before
            if batch is _END:
                return
            yield batch

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._started if self._started is not None else 0.0


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
    return rank_and_world()[0] == 0


def trains_in_process(config, tune: bool = True) -> bool:
    """Whether a run of this stage config trains in its Tune trial's own process: one CPU worker and
    nothing that needs a process group (DeepSpeed, `deepspeed_stage` > 0)."""
    return (tune and config.num_workers == 1 and not config.use_gpu
            and getattr(config, "deepspeed_stage", 0) == 0)


def trial_resources(config) -> dict:
    """What a Tune trial of this config asks Ray for: the worker's CPUs when it is the worker, else a
    sliver for the trial that waits on its TorchTrainer."""
    return {"cpu": config.cpus_per_worker if trains_in_process(config) else 0.1}


def trial_retries(config) -> int:
    """Tune's retries of a failed trial: `max_failures` for in-process trials (no worker group to
    restart), none otherwise (Ray Train restarts the workers, `max_failures` times)."""
    return config.max_failures if trains_in_process(config) else 0


def ingest_in_row_order():
    """Ray Train's data ingest options with the rows in order: a worker's batches the same every
    run. Ray Data's default hands blocks on as they finish."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def make_trainer(loop: Callable[[dict], None], run, *, name: str, storage: str | Path, datasets: dict,
                 workers: int, cpus_per_worker: float, use_gpu: bool, split: tuple[str, ...] | None = None,
                 max_failures: int = 0, keep: int = 2, score: tuple[str, str] | None = None,
                 tracking_uri: str | None = None, mlflow_run_id: str | None = None, callbacks=(),
                 backend: str | None = None, tune: bool = False, in_process: bool = False):
    """The trainer of one run: an `InProcessTrainer` when `in_process` (`trains_in_process`), else a
    TorchTrainer. `split`: the datasets sharded over workers (None: all of them); `score`: (metric,
    "max" | "min") that ranks the `keep` checkpoints kept (None: the latest); `mlflow_run_id`: each
    epoch's metrics go to that run (`callbacks.MlflowEpochLogger`); `tune`: the run is a Tune trial,
    each epoch reported to Tune."""
    from clintraj.training.callbacks import MlflowEpochLogger

    logger = [MlflowEpochLogger(tracking_uri, mlflow_run_id)] if mlflow_run_id else []
    if in_process:
        return InProcessTrainer(loop, run, name=name, storage=storage, datasets=datasets, keep=keep, score=score,
                                callbacks=[*callbacks, *logger], tune=tune)
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from clintraj.training.shards import HeldShards

    attribute, order = score if score else (None, "max")
    if tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks = [*callbacks, TuneReportCallback()]
    return TorchTrainer(
        loop,
        train_loop_config={"run": run},
        torch_config=TorchConfig(backend=backend) if backend else None,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": cpus_per_worker}),
        datasets=datasets,
        dataset_config=HeldShards(datasets_to_split="all" if split is None else list(split),
                                  execution_options=ingest_in_row_order()),
        run_config=ray.train.RunConfig(
            # the epoch reaches MLflow before Tune hears of it (and its scheduler may stop the trial)
            name=name, storage_path=storage_path(storage), callbacks=[*logger, *callbacks],
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=attribute,
                                                         checkpoint_score_order=order)),
    )
