"""The main job's pipeline, end to end, once per dataset.

raw eICU or MIMIC-IV (+ MIMIC-CXR-JPG + MIMIC-IV-Note; synthetic by default, written once
under the work folder), or any MEDS dataset (`data.meds`)
  -> cohort, splits and task cohorts (`data.prepare`)
  -> MGA pretraining of the modality encoders (Ray Train)
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

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from clintraj.config import fingerprint
from clintraj.artifacts.dataset import Dataset
from clintraj.data.prepare import PrepareConfig, log_dataset, prepare
from clintraj.data.synthetic import generate
from clintraj.models.backbones import PAPER_BACKBONES
from clintraj.reporting.page import build_and_log
from clintraj.storage import join
from clintraj.tasks import DATASET_TASKS as TASKS, window_text
from clintraj.tracking import Tracking
from clintraj.training.pretrain import PretrainConfig
from clintraj.training.sequential import SequentialTrainConfig
from clintraj.training.static import StaticTrainConfig
from clintraj.tuning import SearchSpace
from clintraj.workflows import embed, pretrain, static_baselines, sweep_backbones

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


def prepared_dataset(folder: Path) -> str:
    """Which dataset (eicu, mimic, meds) a folder written by `data.prepare` holds."""
    return Dataset(folder).name


def check(config: EndToEndConfig) -> None:
    """Fail before any work on a dataset or task the config cannot run."""
    unknown = sorted(set(config.datasets) - set(TASKS))
    if unknown or not config.datasets:
        raise ValueError(f"datasets must be some of {sorted(TASKS)}, got {config.datasets}")
    strays = sorted(set(config.synthetic_stays) - set(TASKS))
    if strays:
        raise ValueError(f"synthetic_stays names {strays}; the datasets are {sorted(TASKS)}")
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
    report = build_and_log(tracking, config.experiment, workdir / "report")
    log.info("report: %s", report)
    return Results(pd.concat(statics, ignore_index=True), pd.concat(sequentials, ignore_index=True), windows)


def run_dataset(name: str, static_tasks: list[str], sequential_tasks: list[str], config: EndToEndConfig,
                workdir: Path, tracking: Tracking, raw: Path | None, dataset: Path | None, resume: bool,
                storage: str | None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One dataset's stages, from raw files (or a prepared dataset) to the backbone sweep; the
    results and the dataset's windows."""
    prepare_config = replace(config.prepare, dataset=name)
    if dataset is None:
        raw = Path(raw) if raw else ensure_synthetic_raw(workdir, config.stays_of(name), config.seed, name)
        dataset = ensure_dataset(raw, workdir, prepare_config)
    dataset = Path(dataset).resolve()
    prepared = Dataset(dataset)
    if prepared.name != name:
        raise ValueError(f"{dataset} holds {prepared.name}, not {name}: name it with --dataset {prepared.name}")
    prepared.check_windows(prepare_config.prediction_hours, "the config's prepare.prediction_hours")
    tasks = list(dict.fromkeys([*static_tasks, *sequential_tasks]))
    for task in tasks:
        log.info("%s %s: predicts at %s", name, task, window_text(prepared.windows[task]))
    stages = workdir / name
    log_dataset(dataset, tracking, config.experiment)
    summary = pretrain.run(dataset, stages / "pretrain", config.pretrain, tracking, config.experiment,
                           storage=storage)
    log.info("%s pretraining: best epoch %d, test mean Recall@10 %.3f (random %.3f)", name, summary["best_epoch"],
             summary["retrieval"]["mean"]["recall_at_10"], summary["retrieval"]["mean"]["random_at_10"])
    embeddings = {"contrastive": stages / "embeddings" / "contrastive", "scratch": stages / "embeddings" / "scratch"}
    embed.run(dataset, embeddings["contrastive"], summary["checkpoint"], stages / "embed", tasks=tasks)
    embed.run(dataset, embeddings["scratch"], "scratch", stages / "embed", config.pretrain, seed=config.seed,
              tasks=tasks)
    static = static_baselines.run(dataset, embeddings, static_tasks, stages / "static", config.static,
                                  config.static_search, tracking, config.experiment, resume=resume,
                                  storage=storage) if static_tasks else pd.DataFrame()
    sequential = sweep_backbones.run(dataset, embeddings, sequential_tasks, stages / "sequential", config.sequential,
                                     config.backbone_search, tracking, config.experiment, static_results=static,
                                     resume=resume, storage=storage) if sequential_tasks else pd.DataFrame()
    return static, sequential, {task: prepared.windows[task] for task in tasks}
