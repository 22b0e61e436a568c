"""Static baselines on the multi-worker Ray Train path: a worker killed after an epoch's checkpoint
is restarted with its group, training resumes at the next epoch (weights, optimizer and early
stopping from the checkpoint), and the run still learns a planted signal."""

from __future__ import annotations

import json

import numpy as np
import psutil

from clintraj.training import static
from train_workers import kill_newest_worker_once

# marked slow by tests/conftest.py, as every test that uses ray_local

FEATURES = 16


def _planted(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Death when the first two features sum above zero (plus noise): an MLP learns it."""
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y


def test_a_killed_worker_of_two_resumes_at_the_next_epoch_and_the_run_learns(tmp_path, ray_local):
    from ray.train import UserCallback

    record = tmp_path / "reports.jsonl"

    class Reports(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            with open(record, "a") as handle:
                handle.write(json.dumps({"epoch": metrics[0]["epoch"]}) + "\n")

    rng = np.random.default_rng(0)
    # large enough that an epoch of two workers lasts about a second: the kill lands mid-run
    splits = {"train": _planted(60_000, rng), "val": _planted(2_000, rng), "test": _planted(2_000, rng)}
    config = static.StaticTrainConfig(task="mortality", num_workers=2, cpus_per_worker=0.5, epochs=5, patience=5,
                                      batch_size=64, max_failures=2)
    storage = tmp_path / "ray"
    done, killed = kill_newest_worker_once(storage, "state.json")
    trainer, run = static.trainer(splits, config, tmp_path, "killed", callbacks=[Reports()], storage=storage)
    result = trainer.fit()
    done.set()
    assert len(killed) == 1, "no Ray Train worker was killed: the restart was never exercised"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    epochs = [json.loads(line)["epoch"] for line in record.read_text().splitlines()]
    assert epochs == [0, 1, 2, 3, 4]  # every epoch trained and reported once, across the restart
    scored = static.score(result, run, splits)
    assert scored["test_auroc"] > 0.95  # the planted rule, learned through the restart
