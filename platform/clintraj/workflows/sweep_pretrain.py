"""A Ray Tune sweep of MGA pretraining (`search_spaces/pretrain_<dataset>.yaml`).

Each trial is a Tune function trainable that fits one pretraining
`TorchTrainer` (Ray Train V2's Tune composition). MLflow gets a parent run
for the sweep and, through `MLflowLoggerCallback`, one child run per trial.
A stopped sweep resumes where it stopped with `Tuner.restore`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from clintraj.config import from_dict, to_dict
from clintraj.storage import join, redact, stage_root, storage_path
from clintraj.tracking import Tracking
from clintraj.training import pretrain
from clintraj.tuning import SearchSpace, param_space, scheduler
from clintraj.workflows.pretrain import prepare_inputs

log = logging.getLogger(__name__)


def make_trial(inputs_dir: Path, meta: dict, base: pretrain.PretrainConfig, storage: str | Path):
    """The Tune function trainable: sampled params over `base`, one TorchTrainer fit."""

    def trial(sampled: dict) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        config = from_dict(pretrain.PretrainConfig, {**to_dict(base), **sampled}, "search space sample")
        name = f"trial-{tune.get_context().get_trial_id()}"
        pretrain.trainer(inputs_dir, meta, config, storage, name, callbacks=[TuneReportCallback()]).fit()

    return trial


def run(dataset: Path, workdir: Path, base: pretrain.PretrainConfig, space: SearchSpace, tracking: Tracking,
        experiment: str, image_root: Path | None = None, name: str = "sweep", resume: bool = False,
        storage: str | Path | None = None) -> dict:
    """Sweep; Ray Train/Tune state goes to <storage>/sweep-pretrain (a folder or a URI) when
    `storage` is set, else under `workdir`."""
    import mlflow
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    workdir = Path(workdir).resolve()
    inputs_dir, meta = prepare_inputs(Path(dataset), workdir, base, image_root)
    root = stage_root(storage, "sweep-pretrain", workdir)
    ray_results, sweep_dir = join(root, "ray_results"), join(root, "tune")
    trainable = tune.with_resources(make_trial(inputs_dir, meta, base, ray_results), {"cpu": 0.1})
    mlflow.set_tracking_uri(tracking.uri)
    experiment_id = tracking.experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-{meta['dataset']}") as parent:
        mlflow.set_tags({"dataset": meta["dataset"], "stage": "pretrain-sweep"})
        mlflow.log_dict({"base": to_dict(base), "search_space": to_dict(space)}, "sweep.json")
        sweep_path = storage_path(join(sweep_dir, name))
        if resume and tune.Tuner.can_restore(sweep_path):
            log.info("resuming the sweep at %s", redact(sweep_path))
            tuner = tune.Tuner.restore(sweep_path, trainable=trainable, resume_errored=True)
        else:
            logger = MLflowLoggerCallback(
                tracking_uri=tracking.uri, experiment_name=experiment, save_artifact=False,
                tags={"mlflow.parentRunId": parent.info.run_id, "dataset": meta["dataset"], "stage": "pretrain-trial"})
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(space),
                tune_config=tune.TuneConfig(metric=space.metric, mode=space.mode, num_samples=space.num_samples,
                                            max_concurrent_trials=space.max_concurrent_trials,
                                            scheduler=scheduler(space, base.epochs)),
                run_config=tune.RunConfig(name=name, storage_path=storage_path(sweep_dir), callbacks=[logger]),
            )
        results = tuner.fit()
        best = results.get_best_result(space.metric, space.mode, scope="all")
        summary = {"best_config": best.config, "best_trial": (best.metrics or {}).get("trial_id"),
                   "best_metrics": {k: v for k, v in (best.metrics or {}).items() if isinstance(v, (int, float))},
                   "trials": len(results), "errors": len(results.errors)}
        # the best trial by the space's comparable metric; its lowest-validation-loss checkpoint, read
        # from its saved checkpoints (ASHA may stop a trial mid-fit)
        if summary["best_trial"]:
            chosen = pretrain.best_saved_checkpoint(join(ray_results, f"trial-{summary['best_trial']}"))
            if chosen:
                summary["best_checkpoint"] = chosen
                mlflow.set_tag("best_checkpoint", chosen["checkpoint"])
                mlflow.log_metric("best_val_loss", chosen["val_loss"])
        mlflow.log_dict(summary, "sweep_result.json")
    return summary
