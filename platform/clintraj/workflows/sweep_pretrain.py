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
from clintraj.tracking import Tracking
from clintraj.training import pretrain
from clintraj.tuning import SearchSpace, param_space, scheduler
from clintraj.workflows.pretrain import prepare_inputs

log = logging.getLogger(__name__)


def make_trial(inputs_dir: Path, meta: dict, base: pretrain.PretrainConfig, storage: Path):
    """The Tune function trainable: sampled params over `base`, one TorchTrainer fit."""

    def trial(sampled: dict) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        config = from_dict(pretrain.PretrainConfig, {**to_dict(base), **sampled}, "search space sample")
        name = f"trial-{tune.get_context().get_trial_id()}"
        pretrain.trainer(inputs_dir, meta, config, storage, name, callbacks=[TuneReportCallback()]).fit()

    return trial


def run(dataset: Path, workdir: Path, base: pretrain.PretrainConfig, space: SearchSpace, tracking: Tracking,
        experiment: str, image_root: Path | None = None, name: str = "sweep", resume: bool = False) -> dict:
    import mlflow
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    workdir = Path(workdir).resolve()
    inputs_dir, meta = prepare_inputs(Path(dataset), workdir, base, image_root)
    storage = workdir / "ray_results"
    sweep_dir = workdir / "tune"
    trainable = tune.with_resources(make_trial(inputs_dir, meta, base, storage), {"cpu": 0.1})
    mlflow.set_tracking_uri(tracking.uri)
    experiment_id = tracking.experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-{meta['dataset']}") as parent:
        mlflow.set_tags({"dataset": meta["dataset"], "stage": "pretrain-sweep"})
        mlflow.log_dict({"base": to_dict(base), "search_space": to_dict(space)}, "sweep.json")
        if resume and tune.Tuner.can_restore(sweep_dir / name):
            log.info("resuming the sweep at %s", sweep_dir / name)
            tuner = tune.Tuner.restore(str(sweep_dir / name), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(space),
                tune_config=tune.TuneConfig(metric=space.metric, mode=space.mode, num_samples=space.num_samples,
                                            max_concurrent_trials=space.max_concurrent_trials,
                                            scheduler=scheduler(space, base.epochs)),
                run_config=tune.RunConfig(name=name, storage_path=str(sweep_dir), callbacks=[MLflowLoggerCallback(
                    tracking_uri=tracking.uri, experiment_name=experiment, save_artifact=False,
                    tags={"mlflow.parentRunId": parent.info.run_id, "dataset": meta["dataset"],
                          "stage": "pretrain-trial"})]),
            )
        results = tuner.fit()
        best = results.get_best_result(space.metric, space.mode, scope="all")
        summary = {"best_config": best.config,
                   "best_metrics": {k: v for k, v in (best.metrics or {}).items() if isinstance(v, (int, float))},
                   "trials": len(results), "errors": len(results.errors)}
        # each trial's best checkpoint, read from its saved checkpoints (ASHA may stop a trial mid-fit)
        bests = [best for r in results if r.metrics and "trial_id" in r.metrics
                 for best in [pretrain.best_saved_checkpoint(storage / f"trial-{r.metrics['trial_id']}")] if best]
        if bests:
            summary["best_checkpoint"] = min(bests, key=lambda b: b["val_loss"])
            mlflow.set_tag("best_checkpoint", summary["best_checkpoint"]["checkpoint"])
            mlflow.log_metric("best_val_loss", summary["best_checkpoint"]["val_loss"])
        mlflow.log_dict(summary, "sweep_result.json")
    return summary
