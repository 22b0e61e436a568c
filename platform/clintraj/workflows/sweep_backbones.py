"""The backbone sweep (paper §3.4.2, Tables 2-3): backbones x initialisation x task on Ray Tune.

Before Tune starts, the driver writes each (initialisation, task) pair's
timelines once (`data.sequences.task_sequences`). Each trial is a Tune function
trainable (Ray Train V2's composition) that opens its MLflow child run
(tagged backbone, init, task, dataset; every parameter), fits one
sequential run (in the trial's process with one CPU worker and no DeepSpeed)
whose epochs reach Tune and MLflow (`MlflowEpochLogger`; the loop adds per-step losses), then
scores the test predictions of the best epoch with bootstrap CIs, draws
ROC/PR and calibration (or LoS) figures, and records where the adapter is.
The parent run ends with the comparison table in the layout of the paper's
Tables 2 and 3, with the static baselines beside when given.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj import names
from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.sequences import Sequences
from clintraj import disclosure
from clintraj.config import from_dict, to_dict
from clintraj.data.sequences import task_sequences
from clintraj.evaluation import plots
from clintraj.evaluation.comparison import comparison_table, markdown
from clintraj.storage import join, stage_root
from clintraj.tracking import Tracking
from clintraj.tasks import task as task_named, window_param, window_text
from clintraj.training import sequential
from clintraj.tuning import SearchSpace, child_results, finished_trial, fit, grid, sweep_parent_run, trial_run, tuner

log = logging.getLogger(__name__)


def write_sequences(dataset: Path, embeddings: dict[str, Path], tasks: list[str], workdir: Path,
                    max_events: int) -> dict[tuple[str, str], Path]:
    """(initialisation, task) -> its timelines folder, written once per sweep."""
    folders = {}
    for init, path in embeddings.items():
        for task in tasks:
            folder = Path(workdir) / "sequences" / init / task
            task_sequences(dataset, path, task, folder, max_events)
            folders[(init, task)] = folder
    return folders


def score_trial(finished: dict, sequences: Path, task: str, seed: int) -> dict:
    """Test metrics (95% bootstrap CIs) of a finished trial's best-epoch predictions."""
    y, output = sequential.outputs(finished["predictions"])
    y_train = np.stack(Sequences(sequences).split("train")["y"])
    return task_named(task).test_metrics(y, output, y_train[:, 0] if y_train.shape[1] == 1 else y_train, seed)


def make_trial(sequences: dict, base: sequential.SequentialTrainConfig, storage: str | Path, tracking: Tracking,
               experiment_id: str, parent_run_id: str, dataset_name: str):
    def trial(sampled: dict) -> None:
        import tempfile

        from mlflow.tracking import MlflowClient
        from ray import tune

        init = sampled["initialisation"]
        overrides = {k: v for k, v in sampled.items() if k != "initialisation"}
        config = from_dict(sequential.SequentialTrainConfig, {**to_dict(base), **overrides}, "search space sample")
        folder = sequences[(init, config.task)]
        trial_id = tune.get_context().get_trial_id()
        name = f"{config.backbone}-{init}-{config.task}-{trial_id}"  # its folders'
        run_name = names.trial_run(config.backbone, init, config.task, dataset_name, trial_id)
        client = MlflowClient(tracking.uri)
        info = Sequences(folder).info
        if (done := finished_trial(client, experiment_id, parent_run_id, trial_id)) is not None:
            tune.report(done)  # finished by an earlier attempt: not trained again
            return
        with trial_run(client, experiment_id, run_name, tags={
            "mlflow.parentRunId": parent_run_id, "dataset": dataset_name, "task": config.task,
            "backbone": config.backbone, "initialisation": init, "stage": "sequential",
            "window": window_text(info["prediction_hours"]), "trial_id": trial_id}) as run_id:
            for key, value in disclosure.values({
                    **to_dict(config), "sequences": str(folder), "truncated_stays": info["truncated_stays"],
                    "dropped_events": info["dropped_events"],
                    "prediction_hours": window_param(info["prediction_hours"])}).items():
                client.log_param(run_id, key, value)
            trainer, _ = sequential.trainer(folder, config, join(storage, name), name, tracking.uri, run_id, tune=True)
            finished = sequential.finished(trainer.fit())
            scores = score_trial(finished, Path(folder), config.task, config.seed)
            metrics = {**scores,
                       "best_epoch": finished["metrics"].get("best_epoch", float("nan")),
                       **{k: v for k, v in finished["metrics"].items() if k.startswith("robust_")}}
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    logged = key if key == "best_epoch" or key.startswith("robust_") else f"test_{key}"
                    client.log_metric(run_id, logged, float(value))
            y, output = sequential.outputs(finished["predictions"])
            for key, why in task_named(config.task).undefined(y, {f"test_{k}": v for k, v in scores.items()}).items():
                client.set_tag(run_id, names.undefined_tag(key), why)  # e.g. no death in the test split
            title = names.subject(dataset_name, config.task, config.backbone, init, window_text(info["prediction_hours"]))
            with tempfile.TemporaryDirectory() as scratch:
                for figure in plots.task_figures(config.task, y, output, Path(scratch), title):
                    disclosure.log_artifact(client, run_id, figure, "figures")
                # rows by their index in the test split in stay order (the sequences' test.parquet maps back)
                predictions, _ = disclosure.by_index(finished["predictions"])
                predictions.to_parquet(Path(scratch) / "test_predictions.parquet")
                disclosure.log_artifact(client, run_id, Path(scratch) / "test_predictions.parquet")
            client.set_tag(run_id, "checkpoint", disclosure.value(finished["checkpoint"]))
            client.set_tag(run_id, "adapter", disclosure.value(join(finished["checkpoint"], "adapter")))

    return trial


def run(dataset: Path, embeddings: dict[str, Path], tasks: list[str], workdir: Path,
        base: sequential.SequentialTrainConfig, space: SearchSpace, tracking: Tracking, experiment: str,
        static_results: pd.DataFrame | None = None, name: str = "backbone-sweep", resume: bool = False,
        storage: str | Path | None = None) -> pd.DataFrame:
    """Sweep; return one row per trial (backbone, initialisation, task, test metrics, run id).
    Checkpoints, adapters and Tune state go to <storage>/sequential (a folder or a URI) when
    `storage` is set, else under `workdir`; the timelines stay under `workdir`."""
    import mlflow

    workdir = Path(workdir).resolve()
    dataset_name = Dataset(dataset).name
    embeddings = {init: Path(path).resolve() for init, path in embeddings.items()}
    sequences = write_sequences(Path(dataset), embeddings, tasks, workdir, base.max_events)
    param_grid = grid(space, initialisation=sorted(embeddings), task=tasks)
    root = stage_root(storage, "sequential", workdir)
    with sweep_parent_run(tracking, experiment, name, dataset_name, "backbone-sweep", join(root, "tune"),
                          resume) as (parent, experiment_id):
        mlflow.log_dict({"base": to_dict(base), "search_space": to_dict(space),
                         "embeddings": {k: str(v) for k, v in embeddings.items()}}, "sweep.json")
        trial = make_trial(sequences, base, join(root, "ray_results"), tracking, experiment_id, parent.info.run_id,
                           dataset_name)
        results = fit(tuner(trial, param_grid, space, base, name, join(root, "tune"), resume,
                        label=f"{dataset_name} backbone sweep"), "backbone sweep")
        table = child_results(tracking.uri, experiment_id, parent.info.run_id, ("backbone", "initialisation", "task"))
        comparison = comparison_table(table, static_results)
        mlflow.log_text(markdown(comparison), "comparison.md")
        mlflow.log_text(comparison.to_csv(index=False), "comparison.csv")
        mlflow.log_metric("trials", len(results))
        mlflow.log_metric("trial_errors", len(results.errors))
        for error in results.errors:
            log.error("a trial failed: %s", error)
    return table
