"""A Ray Tune sweep of MGA pretraining (`search_spaces/pretrain_<dataset>.yaml`).

Each trial is a Tune function trainable that opens its MLflow child run under the sweep's parent
run, then fits one pretraining run (Ray Train V2's Tune composition, or in the trial's process with
one CPU worker) whose epochs reach Tune and MLflow (`MlflowEpochLogger`), as in the other sweeps.
A stopped sweep resumes where it stopped (`Tuner.restore`), under the parent run it had.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from clintraj import disclosure, names
from clintraj.config import flatten, from_dict, to_dict
from clintraj.storage import join, stage_root
from clintraj.tracking import Tracking
from clintraj.training import pretrain
from clintraj.tuning import SearchSpace, finished_trial, fit, param_space, sweep_parent_run, trial_run, tuner
from clintraj.workflows.pretrain import prepare_inputs, test_and_log

log = logging.getLogger(__name__)


def make_trial(inputs_dir: Path, meta: dict, base: pretrain.PretrainConfig, ray_results: str | Path,
               tracking: Tracking, experiment_id: str, parent_run_id: str):
    """The Tune function trainable: sampled params over `base`, one MLflow child run, one fit."""

    def trial(sampled: dict) -> None:
        from mlflow.tracking import MlflowClient
        from ray import tune

        config = from_dict(pretrain.PretrainConfig, {**to_dict(base), **sampled}, "search space sample")
        trial_id = tune.get_context().get_trial_id()
        client = MlflowClient(tracking.uri)
        run_name = names.stage_run("pretrain", meta["dataset"], trial_id)
        if (done := finished_trial(client, experiment_id, parent_run_id, trial_id)) is not None:
            tune.report(done)  # finished by an earlier attempt: not trained again
            return
        with trial_run(client, experiment_id, run_name, tags={
            "mlflow.parentRunId": parent_run_id, "dataset": meta["dataset"], "stage": "pretrain-trial",
            "trial_id": trial_id, "missing_tokens_in_context": str(config.missing_tokens_in_context)}) as run_id:
            for key, value in disclosure.values(flatten(to_dict(config))).items():
                if not isinstance(value, list):
                    client.log_param(run_id, key, value)
            pretrain.trainer(inputs_dir, meta, config, ray_results, f"trial-{trial_id}", tracking_uri=tracking.uri,
                             mlflow_run_id=run_id, tune=True).fit()

    return trial


def run(dataset: Path, workdir: Path, base: pretrain.PretrainConfig, space: SearchSpace, tracking: Tracking,
        experiment: str, image_root: Path | None = None, name: str = "sweep", resume: bool = False,
        storage: str | Path | None = None) -> dict:
    """Sweep; Ray Train/Tune state goes to <storage>/sweep-pretrain (a folder or a URI) when
    `storage` is set, else under `workdir`. The summary names the best trial (by the space's
    metric) and that trial's lowest-validation-loss checkpoint, the one to embed with, with its
    config and test scores (as `workflows.pretrain.run`'s summary has them, on the parent run)."""
    import mlflow

    workdir = Path(workdir).resolve()
    inputs_dir, meta = prepare_inputs(Path(dataset), workdir, base, image_root)
    root = stage_root(storage, "sweep-pretrain", workdir)
    ray_results = join(root, "ray_results")
    with sweep_parent_run(tracking, experiment, name, meta["dataset"], "pretrain-sweep", join(root, "tune"),
                          resume) as (parent, experiment_id):
        mlflow.log_dict({"base": to_dict(base), "search_space": to_dict(space)}, "sweep.json")
        trial = make_trial(inputs_dir, meta, base, ray_results, tracking, experiment_id, parent.info.run_id)
        results = fit(tuner(trial, param_space(space), space, base, name, join(root, "tune"), resume,
                        label=f"{meta['dataset']} pretraining sweep"), "pretraining sweep")
        end_stopped_trials(tracking, experiment_id, parent.info.run_id)
        best = results.get_best_result(space.metric, space.mode, scope="all")
        summary = {"best_config": best.config, "best_trial": (best.metrics or {}).get("trial_id"),
                   "best_metrics": {k: v for k, v in (best.metrics or {}).items() if isinstance(v, (int, float))},
                   "trials": len(results), "errors": len(results.errors)}
        # read from the trial's saved checkpoints: the scheduler may have stopped it mid-fit
        chosen = summary["best_trial"] and pretrain.best_saved_checkpoint(
            join(ray_results, f"trial-{summary['best_trial']}"))
        if chosen:
            config = from_dict(pretrain.PretrainConfig, {**to_dict(base), **best.config}, "the best trial")
            scores = test_and_log(chosen["checkpoint"], inputs_dir, meta, config, workdir / "evaluation")
            summary.update(best_checkpoint=chosen, checkpoint=chosen["checkpoint"], best_epoch=int(chosen["epoch"]),
                           best_val_loss=float(chosen["val_loss"]), meta=meta, config=to_dict(config), **scores)
            mlflow.log_metric("best_val_loss", chosen["val_loss"])
        mlflow.log_metrics({"trials": summary["trials"], "trial_errors": summary["errors"]})
        mlflow.log_text(json.dumps({k: v for k, v in summary.items() if k != "meta"}, indent=2, default=str),
                        "sweep_result.json")
    return summary


def end_stopped_trials(tracking: Tracking, experiment_id: str, parent_run_id: str) -> None:
    """A trial the scheduler stopped (or that failed) never closed its MLflow run: mark it KILLED."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.uri)
    for child in client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                                     "and attributes.status = 'RUNNING'"):
        client.set_terminated(child.info.run_id, status="KILLED")
