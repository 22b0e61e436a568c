"""One-worker CPU runs of a Tune trial, trained in the trial's own process: no Ray Train actors.

A Ray Train run starts a controller, a worker and helper actors, each a process that imports Ray
and torch: about 28 CPU-s on 2 cores (bench/local_ray.py) against a tiny model's 2 s an epoch.
When a Tune trial trains with one CPU worker, that worker can be the trial itself.

Ray Train V2's local mode (`ScalingConfig(num_workers=0)`) is not used for this: in Ray 2.60 it
keeps only the last report in memory (no checkpoint persisted, no callbacks, no
`best_checkpoints`), and inside a Tune function trainable `ray.train.report`, `get_context`,
`get_checkpoint` and `ray.train.torch.prepare_model` raise (Ray asks for the `ray.tune` API there).
So the loop runs here, unchanged: its calls (`training.loop`: report, resumed, rank_and_world,
dataset_shard, prepare_model, device) go to the `InProcessTrainer` whose `fit` is running.

* Each reported checkpoint is copied to `<storage>/<name>/checkpoint_NNNNNN`, where a TorchTrainer
  run keeps its own, and its metrics are written into it last (`reported.json`: a folder without
  one was cut short and is removed). The `keep` best by the score, and the latest, stay.
* Each report goes to the run's callbacks (`after_report`, as on the Train controller) and then
  to Tune (`ray.tune.report`), so schedulers and the results see every epoch.
* A failed trial (an error, its process killed) is retried by Tune (`tune.FailureConfig`, set by
  `tuning.tuner`): the new attempt finds the run's checkpoints and resumes after the latest, as a
  restarted worker group does. There is no worker group to restart in process.

`fit` returns a `ray.train.Result` as TorchTrainer's does: the latest checkpoint with its metrics,
and the checkpoints kept with theirs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clintraj.storage import join, list_dirs, read_text, remove, storage_path, upload, write_text

log = logging.getLogger(__name__)

REPORTED = "reported.json"
_running: "InProcessTrainer | None" = None


def running() -> "InProcessTrainer | None":
    """The in-process run whose loop is running in this process, if any."""
    return _running


@dataclass
class Saved:
    index: int
    location: str | Path
    checkpoint: object  # ray.train.Checkpoint
    metrics: dict


class InProcessTrainer:
    """Runs `loop({"run": run})` in this process with one worker's view of `datasets`; `score`:
    (metric, "max" | "min") that ranks the `keep` checkpoints kept (None: the latest);
    `tune`: report each epoch to the Tune trial this process runs."""

    def __init__(self, loop: Callable[[dict], None], run, *, name: str, storage: str | Path, datasets: dict,
                 keep: int, score: tuple[str, str] | None, callbacks=(), tune: bool = True):
        self.loop, self.run = loop, run
        self.location = join(storage_path(storage), name)
        self.datasets = datasets
        self.keep, self.score, self.callbacks, self.tune = keep, score, list(callbacks), tune
        self.saved: list[Saved] = []

    def fit(self):
        import ray.train

        global _running
        if _running is not None:
            raise RuntimeError("an in-process run is already training in this process")
        self.saved = self._earlier()
        if self.saved:
            log.warning("%s: resuming after checkpoint %d, left by an earlier attempt", self.location,
                        self.saved[-1].index)
            for callback in self.callbacks:  # the attempt may have died between persisting and logging it
                if hasattr(callback, "catch_up"):
                    callback.catch_up(self.saved[-1].metrics)
        _running = self
        try:
            self.loop({"run": self.run})
        finally:
            _running = None
        latest = self.saved[-1] if self.saved else None
        return ray.train.Result(metrics=latest.metrics if latest else None,
                                checkpoint=latest.checkpoint if latest else None, error=None,
                                path=str(self.location),
                                best_checkpoints=[(s.checkpoint, s.metrics) for s in self.saved])

    # --- what the loop calls (training.loop) ---

    def rank_and_world(self) -> tuple[int, int]:
        return 0, 1

    def dataset_shard(self, name: str):
        """The whole dataset: one worker reads all of it."""
        return self.datasets[name]

    def prepare_model(self, model, **_):
        return model  # one process: no DDP

    def device(self):
        import torch

        return torch.device("cpu")

    def latest_checkpoint(self):
        return self.saved[-1].checkpoint if self.saved else None

    def report(self, metrics: dict, directory: Path | None) -> None:
        """Persist the checkpoint in `directory` (if any), then tell the callbacks and Tune."""
        checkpoint = self._persist(directory, metrics) if directory is not None else None
        for callback in self.callbacks:
            callback.after_report(None, [metrics], checkpoint)
        if self.tune:
            from ray import tune

            tune.report({**metrics, **({"checkpoint_path": checkpoint.path} if checkpoint else {})})

    # --- checkpoints ---

    def _persist(self, directory: Path, metrics: dict):
        import ray.train

        index = self.saved[-1].index + 1 if self.saved else 0
        location = join(self.location, f"checkpoint_{index:06d}")
        filesystem, path = upload(directory, location)
        write_text(join(location, REPORTED), json.dumps(metrics, default=float))
        self.saved.append(Saved(index, location, ray.train.Checkpoint(path, filesystem=filesystem), metrics))
        self._drop_extra()
        return self.saved[-1].checkpoint

    def _rank(self, saved: Saved) -> float:
        if self.score is None:
            return saved.index
        metric, order = self.score
        value = saved.metrics[metric]
        return value if order == "max" else -value

    def _drop_extra(self) -> None:
        """Delete all but the `keep` best checkpoints and the latest (Ray Train's rule)."""
        best = sorted(self.saved, key=self._rank)[-self.keep:]
        kept = {s.index for s in best} | {self.saved[-1].index}
        for saved in self.saved:
            if saved.index not in kept:
                remove(saved.location)
        self.saved = [s for s in self.saved if s.index in kept]

    def _earlier(self) -> list[Saved]:
        """Checkpoints an earlier attempt of this run persisted, oldest first; cut-short ones removed."""
        import ray.train

        found = []
        for location in list_dirs(self.location, "checkpoint_"):
            reported = read_text(join(location, REPORTED))
            if reported is None:
                log.warning("removing %s: an attempt stopped while writing it", location)
                remove(location)
                continue
            index = int(str(location).rstrip("/").rsplit("checkpoint_", 1)[1])
            found.append(Saved(index, location, ray.train.Checkpoint(str(location)), json.loads(reported)))
        return sorted(found, key=lambda s: s.index)
