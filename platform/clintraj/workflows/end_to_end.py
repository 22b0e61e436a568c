"""The main job's pipeline, end to end, once per dataset.

raw eICU or MIMIC-IV (+ MIMIC-CXR-JPG + MIMIC-IV-Note; synthetic by default, written once
under the work folder)
  -> cohort, splits and task cohorts (`data.prepare`)
  -> MGA pretraining of the modality encoders (Ray Train)
  -> static and per-event embeddings by the contrastive and the scratch encoders (Ray Data)
  -> static MLP / LSTM baselines per task and initialisation (Ray Tune over Ray Train)
  -> the backbone sweep: (Q)LoRA fine-tuning of the decoders on the event timelines
     (Ray Tune over Ray Train), compared with the static baselines
and then the report: the paper's tables with ours beside, figures, one HTML page.
Everything lands in one MLflow experiment; each dataset's stages work under
<workdir>/<dataset>/.

The embedded default runs both datasets, so all four tasks (eICU mortality and
length of stay, MIMIC-IV mortality and phenotyping), each stage sized for a 2-core
laptop: synthetic data, tiny random-weight backbones, a tiny text encoder, small
images, one CPU worker per trial, and one backbone (`DEMO_BACKBONES`). A cluster
config names the real weights, GPUs, the six backbones (search_spaces/backbones.yaml)
and the paper's epochs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from clintraj.data.eicu import EicuConfig
from clintraj.config import fingerprint
from clintraj.artifacts.dataset import Dataset
from clintraj.data.prepare import PrepareConfig, log_dataset, prepare
from clintraj.data.stay_inputs import InputConfig
from clintraj.data.synthetic import generate
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


def _demo_search_space() -> SearchSpace:
    return SearchSpace(metric="val_score", mode="max", num_samples=1, max_concurrent_trials=4,
                       params={"architecture": {"grid": ["mlp", "lstm"]}})  # 2 x 2 initialisations x tasks


# Each trial is a Ray Train run: on 2 cores its controller, worker and helper actors cost about
# 50 CPU-s, against about 2 s per epoch for a tiny backbone; measured, a sequential trial takes
# about 34 s of the machine and a static one 24 s. With one backbone, the four tasks' 16 static
# trials and 8 backbone trials (2 initialisations x 4 tasks) make the whole default about 17
# minutes here; all six backbones (48 trials) take over half an hour more. search_spaces/backbones.yaml (--search-space) names the six.
DEMO_BACKBONES = ["llama3-8b"]


def _demo_backbone_space() -> SearchSpace:
    # 4 trials x (0.1 driver + 1 worker x 0.5 CPU) leaves Ray Data a whole logical CPU of 4.
    return SearchSpace(metric="val_score", mode="max", num_samples=1, max_concurrent_trials=4,
                       params={"backbone": {"grid": list(DEMO_BACKBONES)}})


def _demo_sequential() -> SequentialTrainConfig:
    # One CPU worker per trial: DeepSpeed has nothing to shard (its multi-worker path is tested).
    # The loss on the last [PREDICT] only (METHOD.md's `loss_on` option), not on all of them: with
    # a few epochs on ~550 stays, all_predict left the final output, the one evaluated, near
    # chance on the test split (AUROC 0.55 against 0.70 on validation; last_predict 0.71 after 4
    # epochs, measured on the demo's data). The paper's all_predict stays the library default.
    return SequentialTrainConfig(weights="tiny", epochs=4, patience=4, max_events=64, batch_size=16, lr=1e-3,
                                 loss_on="last_predict", deepspeed_stage=0)


def _demo_pretrain() -> PretrainConfig:
    # MIMIC's CXR images and notes cut to what 2 CPU cores embed in a minute: small images, short
    # notes, and the tiny random BERT (the offline MiniLM took 4 minutes for 3 epochs of 1,211 stays).
    inputs = InputConfig(ts_max_steps=48, text_max_length=64, image_resize=72, image_crop=64)
    return PretrainConfig(latent_dim=32, epochs=5, patience=3, inputs=inputs, text_model="tiny")


SYNTHETIC_STAYS = {"eicu": 3000, "mimic": 1500}  # 1,000 MIMIC-IV stays left ~5 deaths in the test split


@dataclass
class EndToEndConfig:
    experiment: str = "clintraj-demo"
    datasets: list[str] = field(default_factory=lambda: ["eicu", "mimic"])  # what --raw holds, or the synthetic data made
    # stays per synthetic dataset; one the mapping leaves out gets its SYNTHETIC_STAYS default
    synthetic_stays: dict[str, int] = field(default_factory=lambda: dict(SYNTHETIC_STAYS))
    seed: int = 0
    tasks: list[str] | None = None  # static baselines; None: each dataset's two tasks (tasks.DATASET_TASKS)
    # The paper's 10,000-result lab threshold is for 196k stays; the demo scales it down.
    prepare: PrepareConfig = field(default_factory=lambda: PrepareConfig(eicu=EicuConfig(lab_min_count=500)))
    pretrain: PretrainConfig = field(default_factory=_demo_pretrain)
    # One worker per static trial: DDP of a small MLP over 2 processes on a 2-core laptop buys
    # nothing and costs a second worker process (its multi-worker path is tested).
    static: StaticTrainConfig = field(default_factory=lambda: StaticTrainConfig(epochs=8, patience=3, num_workers=1))
    static_search: SearchSpace = field(default_factory=_demo_search_space)
    sequential_tasks: list[str] | None = None  # the backbone sweep's; None: each dataset's two tasks
    sequential: SequentialTrainConfig = field(default_factory=_demo_sequential)
    backbone_search: SearchSpace = field(default_factory=_demo_backbone_space)

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
    """Which dataset (eicu, mimic) a folder written by `data.prepare` holds."""
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
                         "say which with --dataset eicu or --dataset mimic")
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
