"""Static MLP / LSTM baselines on frozen-encoder embeddings, swept by Ray Tune, one MLflow run per trial.

The grid is initialisation (contrastive / scratch embeddings) x task x the
search space's own axes (architecture, optimiser settings). Each trial is a
Tune function trainable that opens its MLflow child run (tagged dataset,
task, architecture, initialisation), fits one static run whose epochs reach
Tune and MLflow (`MlflowEpochLogger`), then scores the test split from the
best checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj import disclosure, names
from clintraj.config import from_dict, to_dict
from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.embeddings import Embeddings
from clintraj.storage import join, stage_root
from clintraj.tracking import Tracking
from clintraj.tasks import task as task_named, window_param, window_text
from clintraj.training import static
from clintraj.tuning import SearchSpace, child_results, finished_trial, fit, grid, sweep_parent_run, trial_run, tuner

log = logging.getLogger(__name__)


def task_splits(dataset: Path, embeddings: Path, task: str) -> tuple[dict, int]:
    """{'train'|'val'|'test': (x, y)} of a task's cohort, x = the modality embeddings of its window,
    concatenated."""
    source, embedded = Dataset(dataset), Embeddings(embeddings)
    frame = embedded.static(task)
    stays = source.stays().drop(columns="split")
    cohort = source.task_cohort(task)[["stay_id", "split"]]
    if len(frame) != len(cohort):
        raise ValueError(f"{embeddings} holds {len(frame)} {task} stays, the dataset's cohort {len(cohort)}: "
                         "embed the dataset again")
    cohort = cohort.merge(stays, on="stay_id", validate="1:1").merge(frame.drop(columns="split"), on="stay_id",
                                                                      validate="1:1")
    x = np.concatenate([np.stack(cohort[f"{m}.h"].to_numpy()) for m in embedded.modalities], axis=1)
    splits = {}
    for name in ("train", "val", "test"):
        rows = (cohort["split"] == name).to_numpy()
        splits[name] = (x[rows].astype(np.float32), task_named(task).targets(cohort[rows]))
    return splits, len(embedded.modalities)


def make_trial(dataset: Path, embeddings: dict[str, str], base: static.StaticTrainConfig, workdir: Path,
               ray_results: str | Path, tracking: Tracking, experiment_id: str, parent_run_id: str,
               dataset_name: str, windows: dict[str, float | None]):
    """The Tune function trainable: each trial writes its splits under workdir/<trial> and its
    checkpoints under ray_results (a folder or a URI)."""
    def trial(sampled: dict) -> None:
        from mlflow.tracking import MlflowClient
        from ray import tune

        initialisation = sampled["initialisation"]
        overrides = {k: v for k, v in sampled.items() if k != "initialisation"}
        config = from_dict(static.StaticTrainConfig, {**vars(base), **overrides}, "search space sample")
        trial_id = tune.get_context().get_trial_id()
        name = f"{config.architecture}-{initialisation}-{config.task}-{trial_id}"  # its folders'
        run_name = names.trial_run(names.model(config.architecture), initialisation, config.task, dataset_name,
                                   trial_id)
        client = MlflowClient(tracking.uri)
        hours = windows[config.task]
        if (done := finished_trial(client, experiment_id, parent_run_id, trial_id)) is not None:
            tune.report(done)  # finished by an earlier attempt: not trained again
            return
        with trial_run(client, experiment_id, run_name, tags={
            "mlflow.parentRunId": parent_run_id, "dataset": dataset_name, "task": config.task,
            "architecture": config.architecture, "initialisation": initialisation, "stage": "static-baseline",
            "window": window_text(hours), "trial_id": trial_id}) as run_id:
            for key, value in disclosure.values({**vars(config), "embeddings": embeddings[initialisation],
                                                 "prediction_hours": window_param(hours)}).items():
                client.log_param(run_id, key, value)
            splits, modalities = task_splits(dataset, Path(embeddings[initialisation]), config.task)
            trainer, static_run = static.trainer(splits, config, workdir / name, name, modalities,
                                                 tracking.uri, run_id, storage=join(ray_results, name, "ray_results"),
                                                 tune=True)
            metrics = static.score(trainer.fit(), static_run, splits)
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    client.log_metric(run_id, key, float(value))
            tested = {key: value for key, value in metrics.items() if key.startswith("test_")}
            for key, why in task_named(config.task).undefined(splits["test"][1], tested).items():
                client.set_tag(run_id, names.undefined_tag(key), why)  # e.g. no death in the test split
            client.set_tag(run_id, "checkpoint", disclosure.value(metrics["checkpoint"]))

    return trial


def run(dataset: Path, embeddings: dict[str, Path], tasks: list[str], workdir: Path,
        base: static.StaticTrainConfig, space: SearchSpace, tracking: Tracking, experiment: str,
        name: str = "static-baselines", resume: bool = False, storage: str | Path | None = None) -> pd.DataFrame:
    """Sweep the static baselines; return one row per trial (its config and test metrics).
    Ray Train/Tune state goes to <storage>/static (a folder or a URI) when `storage` is set,
    else under `workdir`."""
    import mlflow

    workdir = Path(workdir).resolve()
    source = Dataset(dataset)
    dataset_name = source.name
    embeddings = {init: str(Path(path).resolve()) for init, path in embeddings.items()}
    param_grid = grid(space, initialisation=sorted(embeddings), task=tasks)
    root = stage_root(storage, "static", workdir)
    with sweep_parent_run(tracking, experiment, name, dataset_name, "static-baselines", join(root, "tune"),
                          resume) as (parent, experiment_id):
        mlflow.log_dict({"base": to_dict(base), "search_space": to_dict(space), "embeddings": embeddings},
                        "sweep.json")
        trial = make_trial(Path(dataset).resolve(), embeddings, base, workdir / "ray_results",
                           join(root, "ray_results"), tracking, experiment_id, parent.info.run_id, dataset_name,
                           source.windows)
        results = fit(tuner(trial, param_grid, space, base, name, join(root, "tune"), resume,
                        label=f"{dataset_name} static baselines"), "static baselines")
        table = child_results(tracking.uri, experiment_id, parent.info.run_id,
                              ("task", "architecture", "initialisation"))
        mlflow.log_text(table.to_string(index=False), "results.txt")
        mlflow.log_metric("trials", len(results))
        mlflow.log_metric("trial_errors", len(results.errors))
    return table
