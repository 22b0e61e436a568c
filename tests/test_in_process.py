"""One-worker CPU trials trained in the Tune trial's own process (`training.in_process`): the
checkpoints kept and resumed from, the same numbers as a Ray Train worker, and Tune's retry of a
trial whose process dies."""

import json
import threading
import time

import numpy as np
import pytest

from clintraj.config import from_dict
from clintraj.training import loop
from clintraj.training.in_process import REPORTED, InProcessTrainer, running

SCORES = [0.3, 0.9, 0.5, 0.7, 0.4]  # val_score of epochs 0-4: the best two are epochs 1 and 3


def scored_loop(args: dict) -> None:
    """Reports SCORES from the epoch after the checkpoint it resumes from, each with a checkpoint
    holding its epoch; stops after `args["run"]` epochs in all."""
    start = loop.resumed(lambda directory: json.loads((directory / "state.json").read_text())["epoch"] + 1) or 0
    for epoch in range(start, args["run"]):
        def save(directory, epoch=epoch):
            (directory / "state.json").write_text(json.dumps({"epoch": epoch}))
        loop.report({"epoch": epoch, "val_score": SCORES[epoch]}, save)


def test_keeps_the_best_checkpoints_and_the_latest_and_resumes_after_the_latest(tmp_path):
    storage = tmp_path / "ray"
    first = InProcessTrainer(scored_loop, 5, name="run", storage=storage, datasets={}, keep=2,
                             score=("val_score", "max"), tune=False).fit()
    kept = sorted(p.name for p in (storage / "run").iterdir())
    # epochs 1 and 3 score best; epoch 4 is the latest, kept to resume from (Ray Train's rule)
    assert kept == ["checkpoint_000001", "checkpoint_000003", "checkpoint_000004"]
    assert sorted(m["epoch"] for _, m in first.best_checkpoints) == [1, 3, 4]
    assert first.metrics == {"epoch": 4, "val_score": 0.4} and first.checkpoint.path.endswith("checkpoint_000004")
    assert json.loads((storage / "run" / "checkpoint_000003" / REPORTED).read_text())["val_score"] == 0.7
    assert running() is None  # fit leaves no run behind

    # a retried attempt of a 3-epoch run that stopped while writing epoch 2's checkpoint
    (storage / "short").mkdir()
    InProcessTrainer(scored_loop, 2, name="short", storage=storage, datasets={}, keep=2, score=None, tune=False).fit()
    cut = storage / "short" / "checkpoint_000002"
    cut.mkdir()
    (cut / "state.json").write_text(json.dumps({"epoch": 2}))  # no reported.json: never finished
    epochs = []
    resumed = InProcessTrainer(lambda args: epochs.append(loop.resumed(
        lambda directory: json.loads((directory / "state.json").read_text())["epoch"])) or scored_loop(args),
        3, name="short", storage=storage, datasets={}, keep=2, score=None, tune=False).fit()
    assert epochs == [1]  # resumed from the last complete checkpoint, epoch 1
    assert (storage / "short" / "checkpoint_000002" / REPORTED).is_file()  # the cut one removed, epoch 2 redone
    assert [m["epoch"] for _, m in resumed.best_checkpoints] == [1, 2]  # epoch 2 trained once, after the resume


def test_an_epoch_persisted_but_not_logged_is_logged_once_on_resume(tmp_path):
    """A trial's process can die after persisting an epoch's checkpoint and before logging it: the
    resumed run does not redo that epoch, so it logs it then, and an epoch logged before is not
    logged again."""
    from mlflow.tracking import MlflowClient

    from clintraj.tracking import Tracking
    from clintraj.training.callbacks import MlflowEpochLogger

    client = MlflowClient(Tracking.resolve(None, tmp_path / "mlflow").uri)
    run_id = client.create_run(client.create_experiment("catch-up")).info.run_id
    logger = MlflowEpochLogger(client.tracking_uri, run_id)
    storage = tmp_path / "ray"
    InProcessTrainer(scored_loop, 2, name="run", storage=storage, datasets={}, keep=2, score=None,
                     callbacks=[logger], tune=False).fit()  # epochs 0 and 1, each logged
    logger.run_id = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id  # a run without them
    for resumed_run in (logger.run_id, run_id):
        InProcessTrainer(scored_loop, 2, name="run", storage=storage, datasets={}, keep=2, score=None,
                         callbacks=[MlflowEpochLogger(client.tracking_uri, resumed_run)], tune=False).fit()
    assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "val_score")] == [(1, 0.9)]
    assert [m.step for m in client.get_metric_history(run_id, "val_score")] == [0, 1]  # not logged twice


def test_the_loop_sees_one_worker_and_the_whole_dataset(tmp_path):
    seen = {}

    def probe(args):
        seen.update(rank_world=loop.rank_and_world(), rank_zero=loop.is_rank_zero(), device=str(loop.worker_device()),
                    shard=loop.dataset_shard("train"), model=loop.prepare_model("model"))

    InProcessTrainer(probe, None, name="probe", storage=tmp_path, datasets={"train": "whole"}, keep=1, score=None,
                     tune=False).fit()
    assert seen == {"rank_world": (0, 1), "rank_zero": True, "device": "cpu", "shard": "whole", "model": "model"}


def test_prefetch_takes_the_first_batch_ahead_and_keeps_the_order():
    produced, first_ready = [], threading.Event()

    def pipeline():
        for item in range(4):
            produced.append(item)
            if item == 0:
                first_ready.set()
            yield item

    ahead = loop.Prefetch(pipeline)
    assert first_ready.wait(10), "the pipeline did not start before the loop asked for a batch"
    time.sleep(0.05)
    assert produced == [0]  # only the first batch is taken ahead; the rest stream as the loop asks
    assert list(ahead) == [0, 1, 2, 3]

    def broken():
        raise OSError("the pipeline could not start")

    with pytest.raises(OSError, match="could not start"):
        list(loop.Prefetch(broken))  # raised where the loop iterates, not lost in the thread


def test_timed_batches_measure_the_wait_for_data():
    def slow():
        for item in range(3):
            time.sleep(0.05)
            yield item

    timed = loop.TimedBatches(slow())
    assert list(timed) == [0, 1, 2]
    assert 0.15 <= timed.waited <= timed.elapsed  # every sleep was a wait for the next batch


def test_which_runs_train_in_process():
    from clintraj.training.pretrain import PretrainConfig
    from clintraj.training.sequential import SequentialTrainConfig

    one = from_dict(PretrainConfig, {"num_workers": 1, "cpus_per_worker": 0.5, "max_failures": 2})
    assert loop.trains_in_process(one) and not loop.trains_in_process(one, tune=False)
    assert loop.trial_resources(one) == {"cpu": 0.5} and loop.trial_retries(one) == 2
    two = from_dict(PretrainConfig, {"num_workers": 2, "max_failures": 2})
    assert not loop.trains_in_process(two) and loop.trial_resources(two) == {"cpu": 0.1}
    assert loop.trial_retries(two) == 0  # Ray Train restarts the workers instead
    assert not loop.trains_in_process(from_dict(PretrainConfig, {"num_workers": 1, "use_gpu": True}))
    zero2 = from_dict(SequentialTrainConfig, {"num_workers": 1, "deepspeed_stage": 2})
    assert not loop.trains_in_process(zero2)  # DeepSpeed needs Ray Train's process group
    assert loop.trains_in_process(from_dict(SequentialTrainConfig, {"num_workers": 1, "deepspeed_stage": 0}))


def planted_splits(seed: int = 0) -> dict:
    """Mortality-like splits: the label follows the first two features."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", 512), ("val", 192), ("test", 192)):
        x = rng.normal(size=(n, 12)).astype(np.float32)
        y = (x[:, 0] + 0.5 * x[:, 1] + 0.5 * rng.normal(size=n) > 0.8).astype(np.float32)
        splits[name] = (x, y)
    return splits


# slow: tests/conftest.py marks every test that uses ray_local
def test_a_trial_in_its_own_process_gives_the_numbers_of_a_train_worker(tmp_path, ray_local):
    from ray import tune

    from clintraj.training import static
    from clintraj.tuning import SearchSpace, tuner

    splits = planted_splits()
    config = static.StaticTrainConfig(task="mortality", epochs=3, patience=3, num_workers=1, cpus_per_worker=0.5)
    on_worker, run = static.trainer(splits, config, tmp_path / "worker", "worker")
    expected = static.score(on_worker.fit(), run, splits)
    record = tmp_path / "in_process.json"

    def trial(_):
        trained, run = static.trainer(splits, config, tmp_path / "trial", "trial", tune=True)
        scored = static.score(trained.fit(), run, splits)
        record.write_text(json.dumps({"trainer": type(trained).__name__, **scored}))

    space = SearchSpace(metric="val_score", mode="max", num_samples=1)
    results = tuner(trial, {"seed": tune.grid_search([0])}, space, config, "equal", tmp_path / "tune").fit()
    assert not results.errors
    assert len(results[0].metrics_dataframe) == 3  # every epoch reached Tune
    got = json.loads(record.read_text())
    assert got.pop("trainer") == "InProcessTrainer" and type(on_worker).__name__ == "TorchTrainer"
    assert got.pop("checkpoint") != expected.pop("checkpoint")
    print({k: (v, got[k]) for k, v in expected.items() if k.startswith(("best_", "test_auroc"))})
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected, rel=1e-6)  # same seed, same data order: the same model
