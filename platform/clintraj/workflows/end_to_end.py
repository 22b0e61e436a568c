"""The end-to-end slice that exists today: raw eICU -> dataset -> static MLP per task, in MLflow.

Raw files come from `--raw` or, by default, from the synthetic generator
(written once under the work folder). Each task trains on its own cohort
(stays unseen in pretraining, re-split) on Ray Train, under one MLflow parent
run, with a child run per task holding its config, per-epoch metrics, and the
best checkpoint's validation and test metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from clintraj.config import flatten, to_dict
from clintraj.data.eicu import EicuConfig
from clintraj.data.features import StaticFeaturizer
from clintraj.data.prepare import PrepareConfig, prepare, read_dataset, read_task
from clintraj.data.synthetic import generate
from clintraj.tracking import Tracking
from clintraj.training import static

log = logging.getLogger(__name__)


@dataclass
class EndToEndConfig:
    experiment: str = "clintraj-demo"
    synthetic_stays: int = 5000
    seed: int = 0
    tasks: list[str] = field(default_factory=lambda: ["mortality", "los"])
    # The paper's 10,000-result lab threshold is for 196k stays; the demo scales it down.
    prepare: PrepareConfig = field(default_factory=lambda: PrepareConfig(eicu=EicuConfig(lab_min_count=500)))
    train: static.StaticTrainConfig = field(default_factory=static.StaticTrainConfig)


def ensure_synthetic_raw(workdir: Path, stays: int, seed: int) -> Path:
    raw = workdir / "raw" / f"eicu-synthetic-n{stays}-s{seed}"
    done = raw / ".complete"
    if not done.exists():
        log.info("generating %d synthetic eICU stays in %s", stays, raw)
        generate("eicu", raw, n_stays=stays, seed=seed)
        done.touch()
    return raw


def ensure_dataset(raw: Path, workdir: Path, config: PrepareConfig) -> Path:
    out = workdir / "datasets" / f"{raw.name}-prepared"
    if not (out / "report.json").exists():
        log.info("preparing the dataset from %s", raw)
        prepare(raw, out, config)
    return out


def run(config: EndToEndConfig, workdir: Path, tracking: Tracking, raw: Path | None = None) -> dict[str, dict]:
    import mlflow

    workdir = Path(workdir).resolve()
    raw = Path(raw) if raw else ensure_synthetic_raw(workdir, config.synthetic_stays, config.seed)
    dataset = ensure_dataset(raw, workdir, config.prepare)
    stays, modalities, report = read_dataset(dataset)
    mlflow.set_tracking_uri(tracking.uri)
    experiment_id = tracking.experiment(config.experiment)
    results = {}
    with mlflow.start_run(experiment_id=experiment_id, run_name="end-to-end") as parent:
        mlflow.log_params({k: v for k, v in flatten(to_dict(config)).items() if not isinstance(v, list)})
        mlflow.set_tags({"dataset": "eicu", "stage": "end-to-end", "raw": "synthetic" if raw.is_relative_to(workdir) else "given"})
        mlflow.log_artifact(str(dataset / "report.md"), "dataset")
        mlflow.log_artifact(str(dataset / "report.json"), "dataset")
        mlflow.log_artifact(str(dataset / "missingness.png"), "dataset")
        for task in config.tasks:
            # the task's cohort (stays unseen in pretraining), with its own split; features fitted on its train
            cohort = read_task(dataset, task).merge(stays.drop(columns="split"), on="stay_id", validate="1:1")
            x = StaticFeaturizer.fit(cohort, modalities).transform(cohort, modalities)
            splits = {name: (x[(cohort["split"] == name).to_numpy()],
                             static.targets(cohort[cohort["split"] == name], task))
                      for name in ("train", "val", "test")}
            train_config = static.StaticTrainConfig(**{**vars(config.train), "task": task})
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"static-mlp-{task}", nested=True) as child:
                mlflow.set_tags({"dataset": "eicu", "task": task, "architecture": "mlp", "initialisation": "raw-features"})
                mlflow.log_params({f"train.{k}": v for k, v in vars(train_config).items()})
                mlflow.log_params({"features": x.shape[1], **{f"stays.{s}": len(splits[s][1]) for s in splits}})
                metrics = static.fit(splits, train_config, workdir / "runs" / child.info.run_id,
                                     run_name=f"static-mlp-{task}", tracking_uri=tracking.uri,
                                     mlflow_run_id=child.info.run_id)
                mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
                mlflow.set_tag("checkpoint", metrics["checkpoint"])
            results[task] = metrics
        mlflow.log_metrics({f"{task}.{k}": v for task, m in results.items() for k, v in m.items()
                            if k.startswith("test_")})
    return results
