"""The main job's pipeline, end to end, once per dataset.

raw eICU or MIMIC-IV (+ MIMIC-CXR-JPG + MIMIC-IV-Note; synthetic by default, written once
under the work folder), or any MEDS dataset (`data.meds`)
  -> cohort, splits and task cohorts (`data.prepare`)
  -> MGA pretraining of the modality encoders (Ray Train; a Ray Tune sweep when the config has
     a pretraining search space for the dataset: the best trial's checkpoint is embedded with)
  -> static and per-event embeddings by the contrastive and the scratch encoders (Ray Data)
  -> static MLP / LSTM baselines per task and initialisation (Ray Tune over Ray Train)
  -> the backbone sweep: (Q)LoRA fine-tuning of the decoders on the event timelines
     (Ray Tune over Ray Train), compared with the static baselines
and then the report: the paper's tables with ours beside, figures, one HTML page.
Everything lands in one MLflow experiment; each dataset's stages work under
<workdir>/<dataset>/.

`EndToEndConfig`'s defaults are the paper's study. The recipes in clintraj/configs/ size it: `demo`
(the embedded default: both datasets, so all four tasks, each stage sized for a 2-core laptop:
synthetic data, tiny random-weight backbones, a tiny text encoder, small images, one CPU worker per
trial, one backbone) and `cluster` (the six decoders' real weights, one GPU per trial).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from clintraj.config import fingerprint, from_dict, to_dict
from clintraj.console import stage
from clintraj.artifacts.dataset import Dataset
from clintraj.data.prepare import PrepareConfig, log_dataset, prepare
from clintraj.data.synthetic import generate
from clintraj.models.backbones import PAPER_BACKBONES
from clintraj.reporting.page import build_and_log
from clintraj.reporting.summary import DATA_SOURCE_TAG
from clintraj.storage import join
from clintraj.tasks import DATASET_TASKS as TASKS, window_text
from clintraj.tracking import Tracking
from clintraj.training.pretrain import PretrainConfig
from clintraj.training.sequential import SequentialTrainConfig
from clintraj.training.static import StaticTrainConfig
from clintraj.tuning import SearchSpace, check_params
from clintraj.workflows import embed, pretrain, static_baselines, sweep_backbones, sweep_pretrain

log = logging.getLogger(__name__)


SYNTHETIC_STAYS = {"eicu": 3000, "mimic": 1500}


def _static_space() -> SearchSpace:
    return SearchSpace(metric="val_score", mode="max", num_samples=1, max_concurrent_trials=2,
                       params={"architecture": {"grid": ["mlp", "lstm"]}})


def _backbone_space() -> SearchSpace:
    return SearchSpace(metric="val_score", mode="max", num_samples=1, max_concurrent_trials=2,
                       params={"backbone": {"grid": list(PAPER_BACKBONES)}})


@dataclass
class EndToEndConfig:
    """The main job's settings; the defaults are the paper's study (the recipes in
    clintraj/configs/ size it: `demo`, the embedded default, and `cluster`)."""

    experiment: str = "clintraj"
    datasets: list[str] = field(default_factory=lambda: ["eicu", "mimic"])  # what --raw holds, or the synthetic data made
    # stays per synthetic dataset; one the mapping leaves out gets its SYNTHETIC_STAYS default
    synthetic_stays: dict[str, int] = field(default_factory=lambda: dict(SYNTHETIC_STAYS))
    seed: int = 0
    tasks: list[str] | None = None  # static baselines; None: each dataset's two tasks (tasks.DATASET_TASKS)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    # dataset -> a pretraining search space over `pretrain` (search_spaces/pretrain_<dataset>.yaml on a
    # cluster); a dataset without one pretrains once with `pretrain`
    pretrain_search: dict[str, SearchSpace] = field(default_factory=dict)
    static: StaticTrainConfig = field(default_factory=StaticTrainConfig)
    static_search: SearchSpace = field(default_factory=_static_space)
    sequential_tasks: list[str] | None = None  # the backbone sweep's; None: each dataset's two tasks
    sequential: SequentialTrainConfig = field(default_factory=SequentialTrainConfig)
    backbone_search: SearchSpace = field(default_factory=_backbone_space)

    def stays_of(self, dataset: str) -> int:
        return self.synthetic_stays.get(dataset, SYNTHETIC_STAYS[dataset])

    def tasks_of(self, dataset: str) -> tuple[list[str], list[str]]:
        """(static tasks, sequential tasks) of one dataset: the configured ones it has."""
        own = list(TASKS[dataset])
        return ([t for t in self.tasks if t in own] if self.tasks else own,
                [t for t in self.sequential_tasks if t in own] if self.sequential_tasks else own)


def ensure_synthetic_raw(workdir: Path, stays: int, seed: int, dataset: str = "eicu") -> Path:
    raw = workdir / "raw" / f"{dataset}-synthetic-n{stays}-s{seed}"
    done = raw / ".complete"
    if not done.exists():
        log.info("generating %d synthetic %s stays in %s", stays, dataset, raw)
        generate(dataset, raw, n_stays=stays, seed=seed)
        done.touch()
    return raw


def ensure_dataset(raw: Path, workdir: Path, config: PrepareConfig) -> Path:
    """The dataset folder prepared from `raw` with `config` (its windows included), written once
    under the work folder, in a folder named after both. MIMIC-IV: the CXR and note roots are read
    beside the hosp/icu folders when there (the synthetic layout)."""
    out = workdir / "datasets" / f"{raw.name}-{fingerprint(config)}"
    if not Dataset(out).exists:
        log.info("preparing the dataset from %s", raw)
        extra = {}
        if config.dataset == "mimic":
            extra = {name: raw / folder for name, folder in (("cxr", "mimic-cxr-jpg"), ("notes", "mimic-iv-note"))
                     if (raw / folder).is_dir()}
        prepare(raw, out, config, **extra)
    return out


def data_source(config: EndToEndConfig, name: str, raw: Path | None, dataset: Path | None) -> str:
    """Where a dataset's data came from, in words, for the report's summary."""
    if dataset is not None:
        return "a prepared dataset folder (--data)"
    if raw is not None:
        return "real: raw files (--raw)"
    return f"synthetic: {config.stays_of(name)} generated stays, seed {config.seed}"


def prepared_dataset(folder: Path) -> str:
    """Which dataset (eicu, mimic, meds) a folder written by `data.prepare` holds."""
    return Dataset(folder).name


def check(config: EndToEndConfig) -> None:
    """Fail before any work on a dataset or task the config cannot run."""
    unknown = sorted(set(config.datasets) - set(TASKS))
    if unknown or not config.datasets:
        raise ValueError(f"datasets must be some of {sorted(TASKS)}, got {config.datasets}")
    for key in ("synthetic_stays", "pretrain_search"):
        strays = sorted(set(getattr(config, key)) - set(TASKS))
        if strays:
            raise ValueError(f"{key} names {strays}; the datasets are {sorted(TASKS)}")
    spaces = {"static_search": (config.static_search, StaticTrainConfig),
              "backbone_search": (config.backbone_search, SequentialTrainConfig),
              **{f"pretrain_search.{name}": (space, PretrainConfig) for name, space in config.pretrain_search.items()}}
    for key, (space, config_cls) in spaces.items():
        check_params(space, config_cls, f"the config's {key}")
    offered = {task for name in config.datasets for task in TASKS[name]}
    missing = sorted(set((config.tasks or []) + (config.sequential_tasks or [])) - offered)
    if missing:
        raise ValueError(f"the datasets {config.datasets} have the tasks {sorted(offered)}, not {missing}")


@dataclass
class Results:
    """The test metrics of the static baselines and of the backbone sweep (a `dataset` column
    beside), and each dataset's prediction windows (task -> hours, None: the whole stay)."""

    static: pd.DataFrame
    sequential: pd.DataFrame
    windows: dict[str, dict[str, float | None]]


def run(config: EndToEndConfig, workdir: Path, tracking: Tracking, raw: Path | None = None,
        resume: bool = False, dataset: Path | None = None, storage: str | Path | None = None) -> Results:
    """Run the pipeline for each of `config.datasets`, then the report; return the results.

    `raw` (a raw eICU or MIMIC-IV folder) or `dataset` (a folder written by jobs/preprocess.py)
    is the input of a single configured dataset; without either, synthetic data is made.
    Checkpoints, adapters and Tune state go under `storage`/<dataset> (a folder or a URI such as
    s3://BUCKET/clintraj) when set, else under `workdir`/<dataset>.
    """
    if raw is not None and dataset is not None:
        raise ValueError("give raw files or a prepared dataset, not both")
    check(config)
    if (raw is not None or dataset is not None) and len(config.datasets) != 1:
        raise ValueError(f"an input folder holds one dataset and the config runs {config.datasets}: "
                         "say which with --dataset eicu, mimic or meds")
    if raw is None and dataset is None and "meds" in config.datasets:
        raise ValueError("there is no synthetic MEDS dataset: give a MEDS folder (--raw) or a prepared one (--data)")
    workdir = Path(workdir).resolve()
    if config.sequential.weights == "tiny" and not config.sequential.tiny_root:
        config.sequential.tiny_root = str(workdir / "tiny-backbones")  # beside the runs that used them
    statics, sequentials, windows = [], [], {}
    for name in config.datasets:
        static_tasks, sequential_tasks = config.tasks_of(name)
        if not static_tasks and not sequential_tasks:
            log.info("%s: none of the configured tasks; skipped", name)
            continue
        static, sequential, windows[name] = run_dataset(name, static_tasks, sequential_tasks, config, workdir,
                                                        tracking, raw, dataset, resume,
                                                        join(storage, name) if storage else None)
        statics.append(static.assign(dataset=name))
        sequentials.append(sequential.assign(dataset=name))
    with stage("the report: the paper's tables beside ours, figures") as notes:
        report = build_and_log(tracking, config.experiment, workdir / "report")
        notes.append(str(report))
    return Results(pd.concat(statics, ignore_index=True), pd.concat(sequentials, ignore_index=True), windows)


def run_dataset(name: str, static_tasks: list[str], sequential_tasks: list[str], config: EndToEndConfig,
                workdir: Path, tracking: Tracking, raw: Path | None, dataset: Path | None, resume: bool,
                storage: str | None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One dataset's stages, from raw files (or a prepared dataset) to the backbone sweep; the
    results and the dataset's windows."""
    from mlflow.tracking import MlflowClient

    prepare_config = replace(config.prepare, dataset=name)
    with stage(f"{name}: raw files -> cohort, splits and task windows") as notes:
        source = data_source(config, name, raw, dataset)
        if dataset is None:
            raw = Path(raw) if raw else ensure_synthetic_raw(workdir, config.stays_of(name), config.seed, name)
            dataset = ensure_dataset(raw, workdir, prepare_config)
        dataset = Path(dataset).resolve()
        prepared = Dataset(dataset)
        if prepared.name != name:
            raise ValueError(f"{dataset} holds {prepared.name}, not {name}: name it with --dataset {prepared.name}")
        prepared.check_windows(prepare_config.prediction_hours, "the config's prepare.prediction_hours")
        tasks = list(dict.fromkeys([*static_tasks, *sequential_tasks]))
        notes += [f"{len(prepared.stays())} stays"] + [
            f"{task} {len(prepared.task_cohort(task))} stays at {window_text(prepared.windows[task])}" for task in tasks]
    stages = workdir / name
    dataset_key = fingerprint(prepared.report)

    def dataset_run() -> dict:
        run_id = log_dataset(dataset, tracking, config.experiment)
        MlflowClient(tracking.uri).set_tag(run_id, DATA_SOURCE_TAG, source)
        return {"run_id": run_id}

    once(stages / f"dataset-{dataset_key}.json", dataset_run)
    space = config.pretrain_search.get(name)
    key = fingerprint({"dataset": dataset_key, "pretrain": to_dict(config.pretrain),
                       "search": to_dict(space) if space else None})
    with stage(f"{name}: MGA pretraining") as notes:
        summary = once(stages / f"pretrain-{key}" / "result.json", lambda: pretrain_encoders(
            name, dataset, config, space, stages / f"pretrain-{key}", tracking, resume, keyed(storage, "pretrain", key)),
            notes)
        retrieval = summary["retrieval"]["mean"]
        notes.append(f"test Recall@10 {retrieval['recall_at_10']:.3f} (random {retrieval['random_at_10']:.3f})")
    chosen = from_dict(PretrainConfig, summary["config"], "the pretraining summary")  # the scratch twin's shape
    encoders = {"contrastive": {"encoders": summary["checkpoint"]},
                "scratch": {"encoders": "scratch", "config": to_dict(chosen), "seed": config.seed}}
    embeddings = {init: stages / f"embeddings-{init}-{fingerprint({'dataset': dataset_key, 'tasks': tasks, **how})}"
                  for init, how in encoders.items()}
    with stage(f"{name}: embedding each task's stays and events, contrastive and scratch encoders") as notes:
        for init, folder in embeddings.items():
            if (folder / "embeddings.json").is_file():  # complete: written to a staging folder, renamed when done
                notes.append(f"{init} reused")
            else:
                embed.run(dataset, folder, encoders[init]["encoders"], stages / "embed", chosen, seed=config.seed,
                          tasks=tasks)
    inputs = {"embeddings": {init: folder.name for init, folder in embeddings.items()}}
    static = pd.DataFrame()
    if static_tasks:
        key = fingerprint({**inputs, "tasks": static_tasks, "static": to_dict(config.static),
                           "search": to_dict(config.static_search)})
        with stage(f"{name}: static baselines") as notes:
            static = once(stages / f"static-{key}" / "result.parquet", lambda: static_baselines.run(
                dataset, embeddings, static_tasks, stages / f"static-{key}", config.static, config.static_search,
                tracking, config.experiment, resume=resume, storage=keyed(storage, "static", key)), notes)
    sequential = pd.DataFrame()
    if sequential_tasks:
        key = fingerprint({**inputs, "tasks": sequential_tasks, "sequential": to_dict(config.sequential),
                           "search": to_dict(config.backbone_search)})
        with stage(f"{name}: backbone sweep") as notes:
            sequential = once(stages / f"sequential-{key}" / "result.parquet", lambda: sweep_backbones.run(
                dataset, embeddings, sequential_tasks, stages / f"sequential-{key}", config.sequential,
                config.backbone_search, tracking, config.experiment, static_results=static, resume=resume,
                storage=keyed(storage, "sequential", key)), notes)
    return static, sequential, {task: prepared.windows[task] for task in tasks}


def pretrain_encoders(name: str, dataset: Path, config: EndToEndConfig, space: SearchSpace | None, workdir: Path,
                      tracking: Tracking, resume: bool, storage: str | None) -> dict:
    """One pretraining run, or the dataset's pretraining sweep when the config has a space for it;
    either way the summary of the checkpoint to embed with (its config and test scores)."""
    if space is None:
        return pretrain.run(dataset, workdir, config.pretrain, tracking, config.experiment, storage=storage)
    summary = sweep_pretrain.run(dataset, workdir, config.pretrain, space, tracking, config.experiment,
                                 name="pretrain-sweep", resume=resume, storage=storage)
    if "checkpoint" not in summary:
        raise RuntimeError(f"{name}: no trial of the pretraining sweep saved a checkpoint "
                           f"({summary['errors']} of {summary['trials']} trials failed)")
    log.info("%s pretraining sweep: %d trials, the best by %s: %s", name, summary["trials"], space.metric,
             summary["best_config"])
    return summary


def keyed(storage: str | None, stage_name: str, key: str) -> str | None:
    """A stage's run storage under cluster storage, named after its inputs and config like its folder."""
    return join(storage, f"{stage_name}-{key}") if storage else None


def once(record: Path, compute: Callable[[], Any], notes: list | None = None) -> Any:
    """A finished stage's result, read back from `record` (a stage folder's result.json or
    result.parquet, written when the stage finished: the folder is named after the stage's inputs
    and config); else `compute()`'s, recorded. A rerun (or `--resume`) never redoes a finished stage."""
    parquet = record.suffix == ".parquet"
    if record.is_file():
        if notes is not None:
            notes.append("reused the finished stage")
        return pd.read_parquet(record) if parquet else json.loads(record.read_text())
    result = compute()
    record.parent.mkdir(parents=True, exist_ok=True)
    partial = record.with_name(f".{record.name}.partial")
    if parquet:
        result.to_parquet(partial, index=False)
    else:
        partial.write_text(json.dumps(result, indent=2, default=_plain) + "\n")
    partial.rename(record)
    return result


def _plain(value: Any) -> Any:
    """numpy scalars as numbers, anything else JSON cannot hold as text."""
    return value.item() if hasattr(value, "item") else str(value)
