"""MGA pretraining on local Ray: worker failure and resume, the Tune sweep with restore, and MIMIC's
tokenisation / image stages. (Learning and MLflow logging of a run: tests/test_end_to_end.py.)"""

import json
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import ray
from ray.data.dataset import MaterializedDataset

from clintraj.config import from_dict
from clintraj.data.prepare import PrepareConfig, prepare
from clintraj.data.synthetic import generate
from clintraj.tracking import Tracking
from clintraj.training import pretrain
from clintraj.training.pretrain import PretrainConfig
from clintraj.tuning import SearchSpace
from clintraj.workflows import pretrain as pretrain_workflow
from clintraj.workflows import sweep_pretrain

# marked slow by tests/conftest.py, as every test that uses ray_local


@pytest.fixture(scope="module")
def eicu_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain-eicu")
    generate("eicu", root / "raw", n_stays=800, seed=5, progress=False)
    prepare(root / "raw", root / "data", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 200}}))
    return root / "data"


def small(**overrides):
    return from_dict(PretrainConfig, {"latent_dim": 32, "batch_size": 64, "epochs": 4, "lr": 3e-3,
                                      "modality_dropout": 0.2, **overrides})


def _kill_a_worker_once_epoch_done(tracking_uri, experiment, epochs_before_kill, done, killed):
    """Kill a Ray Train worker once the run logged `epochs_before_kill` epochs; `killed` gets its pid."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    deadline = time.time() + 300
    while time.time() < deadline and not done.is_set():
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val_loss")) >= epochs_before_kill:
            workers = [p for p in psutil.process_iter(["cmdline"])
                       if any("RayTrainWorker" in part for part in (p.info["cmdline"] or []))]
            if workers:
                workers[-1].kill()
                killed.append(workers[-1].pid)
                return
        time.sleep(0.5)


def test_killed_worker_is_restarted_and_resumes_from_the_last_checkpoint(eicu_dataset, tmp_path, ray_local):
    from mlflow.tracking import MlflowClient

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_worker_once_epoch_done,
                              args=(tracking.uri, "fault-test", 2, done, killed), daemon=True)
    killer.start()
    summary = pretrain_workflow.run(eicu_dataset, tmp_path / "work", small(epochs=5, max_failures=2),
                                    tracking, "fault-test")
    done.set()
    killer.join(timeout=5)
    assert len(killed) == 1, "no Ray Train worker was killed: the restart was never exercised"
    steps = [m.step for m in MlflowClient(tracking.uri).get_metric_history(summary["run_id"], "val_loss")]
    assert steps == [0, 1, 2, 3, 4]  # every epoch counted once, across the restart


def test_sweep_runs_trials_as_mlflow_children_and_restores(eicu_dataset, tmp_path, ray_local):
    from mlflow.tracking import MlflowClient

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    # trials compared by validation retrieval (comparable across the two readings of ambiguity A)
    space = from_dict(SearchSpace, {"metric": "val_recall_at_10", "mode": "max", "num_samples": 1,
                                    "max_concurrent_trials": 2, "scheduler": "asha", "grace_period": 1,
                                    "params": {"missing_tokens_in_context": {"grid": [False, True]}}})
    base = small(epochs=2, num_workers=1)
    first = sweep_pretrain.run(eicu_dataset, tmp_path / "work", base, space, tracking, "sweep-test", name="s")
    assert first["trials"] == 2 and first["errors"] == 0
    assert 0 < first["best_metrics"]["val_recall_at_10"] <= 1
    # the embedding checkpoint is the best trial's own (its lowest validation loss)
    assert f"trial-{first['best_trial']}" in first["best_checkpoint"]["checkpoint"]
    client = MlflowClient(tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep-test").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2
    assert all("val_loss" in r.data.metrics and r.info.status in ("FINISHED", "KILLED") for r in children)
    assert {r.data.params["missing_tokens_in_context"] for r in children} == {"False", "True"}
    # a finished sweep restored by name runs no trial again
    started = time.time()
    again = sweep_pretrain.run(eicu_dataset, tmp_path / "work", base, space, tracking, "sweep-test",
                               name="s", resume=True)
    assert again["trials"] == 2 and again["best_config"] == first["best_config"]
    runs = client.search_runs([client.get_experiment_by_name("sweep-test").experiment_id])
    assert [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags] == [parents[0].info.run_id]
    assert time.time() - started < 60


def test_mimic_pretraining_tokenises_and_decodes_images_in_ray_data(canary_run, ray_local, monkeypatch):
    """MIMIC: notes tokenised and JPEGs decoded in Ray Data map stages (the training images' augmentations
    drawn in the worker each epoch, tests/test_images.py), all five encoders: the main job's pretraining
    on synthetic MIMIC-IV with notes and CXR (the canary run, tests/canary_run.py)."""
    summary = canary_run.pretraining
    assert summary["meta"]["modalities"] == ["time_series", "cxr", "discharge_note", "radiology_note", "demographics"]
    pairs = summary["retrieval"]["pairs"]
    assert "cxr->radiology_note" in pairs and "time_series->demographics" in pairs
    assert summary["best_val_loss"] < float("inf")
    checkpoint = Path(summary["checkpoint"])
    meta, config = json.loads((checkpoint / "meta.json").read_text()), pretrain.saved_config(checkpoint)
    inputs = checkpoint.parents[2] / "inputs"  # <pretraining folder>/ray_results/trial-<id>/checkpoint_<n>

    # A seeded run is the same run twice: the training split's stays in the same order, with the
    # same decoded images (Ray Data's default order is the order its blocks finish in).
    def training_epochs():
        split = pretrain.datasets(inputs, meta, config, splits=("train",))["train"]
        return split, [[(batch["stay_id"], batch["cxr.resized"]) for batch in split.iter_batches(batch_size=32)]
                       for _ in range(2)]

    held, (first, second) = training_epochs()
    # The split fits the object store: decoded once, each epoch reads the same blocks.
    assert isinstance(held, MaterializedDataset)
    # Where it would not fit, it streams, decoding each epoch anew: the same rows and images.
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"object_store_memory": 1024})
    streamed, (third, fourth) = training_epochs()
    assert not isinstance(streamed, MaterializedDataset)
    # A split read once (the test split's embeddings, `workflows.pretrain.embed_split`) is not held.
    monkeypatch.undo()
    once = pretrain.datasets(inputs, meta, config, splits=("test",), hold=False)
    assert not isinstance(once["test"], MaterializedDataset)
    assert len(first) == len(third) > 1
    for epoch in (second, third, fourth):
        for (stays, images), (stays_again, images_again) in zip(first, epoch, strict=True):
            assert np.array_equal(stays, stays_again) and np.array_equal(images, images_again)


def _kill_the_trial_once_epochs_logged(tracking_uri, experiment, epochs_before_kill, done, killed):
    """Kill this test's Tune trial process (a one-worker CPU trial trains there) once its MLflow run
    logged `epochs_before_kill` epochs; `killed` gets its pid."""
    import os

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    deadline = time.time() + 300
    while time.time() < deadline and not done.is_set():
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id], "tags.stage = 'pretrain-trial'") if found else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val_loss")) >= epochs_before_kill:
            trials = [p for p in psutil.Process(os.getpid()).children(recursive=True)
                      if any("ImplicitFunc" in part for part in p.cmdline())]
            if trials:
                trials[0].kill()
                killed.append(trials[0].pid)
                return
        time.sleep(0.5)


def test_a_trial_whose_process_dies_is_retried_by_tune_and_resumes(eicu_dataset, tmp_path, ray_local):
    """One worker on CPU: the trial's own process trains (no Ray Train worker to restart); Tune
    retries the trial, which resumes after its last checkpoint, in the same MLflow run."""
    from mlflow.tracking import MlflowClient

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    space = from_dict(SearchSpace, {"metric": "val_loss", "mode": "min", "num_samples": 1})
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_the_trial_once_epochs_logged,
                              args=(tracking.uri, "retry-test", 2, done, killed), daemon=True)
    killer.start()
    summary = sweep_pretrain.run(eicu_dataset, tmp_path / "work", small(epochs=5, num_workers=1, max_failures=2),
                                 space, tracking, "retry-test", name="r")
    done.set()
    killer.join(timeout=5)
    assert len(killed) == 1, "no trial process was killed: the retry was never exercised"
    assert summary["trials"] == 1 and summary["errors"] == 0
    client = MlflowClient(tracking.uri)
    trials = client.search_runs([client.get_experiment_by_name("retry-test").experiment_id],
                                "tags.stage = 'pretrain-trial'")
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"  # the retry reopened the trial's run
    steps = [m.step for m in client.get_metric_history(trials[0].info.run_id, "val_loss")]
    assert steps == [0, 1, 2, 3, 4]  # every epoch counted once, across the retry
