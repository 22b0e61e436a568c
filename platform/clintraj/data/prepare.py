"""A versioned dataset folder from a raw folder: cohort, splits, task cohorts, tables, timelines, report.

Layout (read by every later stage, through Ray Data; tables are sharded into part-NNNNN.parquet):
    stays.parquet                 stay_id, patient_id, labels, has_<modality>, split (pretraining)
    tasks/<task>.parquet          stay_id, split: the task's fine-tuning cohort, drawn only from
                                  stays unseen in pretraining (its val + test pool), re-split
    modalities/<name>/part-*.parquet   stay_id + that modality's static features
    events/<name>/part-*.parquet       stay_id, time_hours + payload: the timeline events
    quarantine.parquet            (table, reason, row) of every raw row set aside
    report.json / report.md / missingness.png
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clintraj import __version__
from clintraj.config import to_dict
from clintraj.data import eicu, mimic
from clintraj.data.cohort import CohortTables
from clintraj.data.splits import split_stays

log = logging.getLogger(__name__)
DATASET_FORMAT = 1
TASKS = {"eicu": ("mortality", "los"), "mimic": ("mortality", "phenotyping")}


@dataclass
class PrepareConfig:
    dataset: str = "eicu"
    seed: int = 0
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    min_units_per_stratum: int = 10
    rows_per_shard: int = 200_000
    eicu: eicu.EicuConfig = field(default_factory=eicu.EicuConfig)
    mimic: mimic.MimicConfig = field(default_factory=mimic.MimicConfig)


def build_cohort(raw: Path, config: PrepareConfig, cxr: Path | None = None, notes: Path | None = None) -> CohortTables:
    if config.dataset == "eicu":
        return eicu.build(Path(raw), config.eicu)
    if config.dataset == "mimic":
        return mimic.build(Path(raw), cxr, notes, config.mimic)
    raise ValueError(f"unknown dataset {config.dataset!r}; choose eicu or mimic")


def task_labels(stays: pd.DataFrame, task: str) -> pd.Series:
    """Whether each stay has the task's label (stays without one stay out of the task's cohort)."""
    if task == "mortality":
        return stays["died"].notna()
    if task == "los":
        return stays["los_hours"].notna()
    if task == "phenotyping":
        return stays.filter(like=mimic.PHENOTYPE_PREFIX).notna().all(axis=1)
    raise ValueError(f"unknown task {task!r}")


def task_cohorts(stays: pd.DataFrame, dataset: str, presence: list[str], config: PrepareConfig) -> dict:
    """Per task: the stays of the pretraining val + test pool with the label, re-split the same way."""
    pool = stays[stays["split"].isin(["val", "test"])]
    cohorts = {}
    for number, task in enumerate(TASKS[dataset], start=1):
        members = pool[task_labels(pool, task)]
        split, report = split_stays(members, presence, seed=config.seed + number, fractions=config.fractions,
                                    min_units_per_stratum=config.min_units_per_stratum)
        cohorts[task] = (pd.DataFrame({"stay_id": members["stay_id"].to_numpy(), "split": split.to_numpy()}), report)
    return cohorts


def write_shards(frame: pd.DataFrame, folder: Path, rows_per_shard: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    shards = max(1, -(-len(frame) // rows_per_shard))
    for shard in range(shards):
        part = frame.iloc[shard * rows_per_shard:(shard + 1) * rows_per_shard]
        part.to_parquet(folder / f"part-{shard:05d}.parquet", index=False)
    return shards


def prepare(raw: Path, out: Path, config: PrepareConfig, cxr: Path | None = None, notes: Path | None = None) -> dict:
    """Build the dataset folder `out` from `raw`; return the report. Same input, same bytes."""
    tables = build_cohort(raw, config, cxr, notes)
    presence = [f"has_{m}" for m in tables.modality_names]
    stays = tables.stays.drop(columns=[c for c in tables.stays.columns
                                       if pd.api.types.is_datetime64_any_dtype(tables.stays[c])])
    stays["split"], split_report = split_stays(
        stays, presence, seed=config.seed, fractions=config.fractions,
        min_units_per_stratum=config.min_units_per_stratum)
    tasks = task_cohorts(stays, config.dataset, presence, config)

    out = Path(out)
    for folder in ("modalities", "events", "tasks"):
        shutil.rmtree(out / folder, ignore_errors=True)
    (out / "tasks").mkdir(parents=True)
    stays.to_parquet(out / "stays.parquet", index=False)
    for task, (cohort, _) in tasks.items():
        cohort.to_parquet(out / "tasks" / f"{task}.parquet", index=False)
    for name in tables.modality_names:
        write_shards(tables.modalities[name], out / "modalities" / name, config.rows_per_shard)
        write_shards(tables.events[name], out / "events" / name, config.rows_per_shard)
    tables.quarantine.frame().to_parquet(out / "quarantine.parquet", index=False)

    report = {
        "format": DATASET_FORMAT,
        "clintraj_version": __version__,
        "dataset": config.dataset,
        "config": to_dict(config),
        "sources": {"raw": str(Path(raw).resolve()), "cxr": str(Path(cxr).resolve()) if cxr else None,
                    "notes": str(Path(notes).resolve()) if notes else None},
        "modalities": list(tables.modality_names),
        "labels": list(tables.label_columns),
        "funnel": [{k: v for k, v in step.items() if k in ("step", "removed", "remaining")} for step in tables.funnel],
        "stays": len(stays),
        "presence_share": {m: float(stays[f"has_{m}"].mean()) for m in tables.modality_names},
        "modalities_per_stay": _per_split_counts(stays, presence),
        "splits": _split_summary(split_report),
        "tasks": {task: _split_summary(report) for task, (_, report) in tasks.items()},
        "events": {m: int(len(tables.events[m])) for m in tables.modality_names},
        "quarantine": tables.quarantine.summary(),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_report(report))
    plot_missingness(stays, presence, out / "missingness.png")
    log.info("dataset written to %s: %d stays", out, len(stays))
    return report


def _split_summary(report) -> dict:
    return {"strata": report.strata, "pooled_strata": report.pooled_strata,
            "units": report.units, "stays": report.stays}


def _per_split_counts(stays: pd.DataFrame, presence: list[str]) -> dict:
    count = stays[presence].sum(axis=1)
    return {split: {int(k): int(v) for k, v in count[stays["split"] == split].value_counts().sort_index().items()}
            for split in ("train", "val", "test")}


def plot_missingness(stays: pd.DataFrame, presence: list[str], path: Path, top: int = 15) -> None:
    """Paper appendix A.1-A.7 style: the most common modality combinations, and stays by
    number of modalities present, per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.removeprefix("has_") for p in presence]
    combination = stays[presence].apply(lambda row: " + ".join(n for n, v in zip(names, row) if v) or "none", axis=1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 2]})
    counts = combination.value_counts().head(top)[::-1]
    left.barh(counts.index, counts.to_numpy(), color="tab:blue")
    left.set_xlabel("stays")
    left.set_title("modality combinations (most common)")
    left.tick_params(axis="y", labelsize=7)
    present = stays[presence].sum(axis=1)
    table = pd.crosstab(present, stays["split"], normalize="columns").reindex(columns=["train", "val", "test"])
    table.plot.bar(ax=right, rot=0)
    right.set_xlabel("modalities present")
    right.set_ylabel("share of stays in split")
    right.set_title("modalities per stay, by split")
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def render_report(report: dict) -> str:
    lines = [f"# {report['dataset']} dataset", "", "## Cohort funnel", "",
             "| step | removed | remaining |", "|---|---:|---:|"]
    lines += [f"| {s['step']} | {s['removed']} | {s['remaining']} |" for s in report["funnel"]]
    lines += ["", "## Modality presence", "", "| modality | share of stays | timeline events |", "|---|---:|---:|"]
    lines += [f"| {m} | {share:.3f} | {report['events'][m]} |" for m, share in report["presence_share"].items()]
    lines += ["", "| modalities present | train | val | test |", "|---:|---:|---:|---:|"]
    counts = report["modalities_per_stay"]
    for k in sorted({k for split in counts.values() for k in split}):
        lines.append(f"| {k} | " + " | ".join(str(counts[s].get(k, 0)) for s in ("train", "val", "test")) + " |")
    for title, splits in [("Pretraining splits", report["splits"]),
                          *[(f"Task cohort: {task}", s) for task, s in report["tasks"].items()]]:
        lines += ["", f"## {title}", "",
                  f"{splits['strata']} presence strata, {splits['pooled_strata']} too small to split (pooled).", "",
                  "| split | units | stays |", "|---|---:|---:|"]
        lines += [f"| {s} | {splits['units'][s]} | {splits['stays'][s]} |" for s in splits["stays"]]
    lines += ["", "## Quarantine", ""]
    lines += [f"- {q['table']}: {q['reason']}: {q['rows']} rows" for q in report["quarantine"]] or ["- none"]
    return "\n".join(lines) + "\n"


def read_dataset(path: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict]:
    """(stays, modality tables, report) of a prepared dataset folder."""
    path = Path(path)
    report = json.loads((path / "report.json").read_text())
    stays = pd.read_parquet(path / "stays.parquet")
    modalities = {m: pd.read_parquet(path / "modalities" / m) for m in report["modalities"]}
    return stays, modalities, report


def read_task(path: Path, task: str) -> pd.DataFrame:
    """The task's cohort (stay_id, split)."""
    return pd.read_parquet(Path(path) / "tasks" / f"{task}.parquet")


def log_dataset(out: Path, tracking, experiment: str) -> str:
    """One MLflow run for a prepared dataset: the funnel and split sizes as metrics, the report,
    its JSON and the missingness figure as artifacts (counts only: no identifiers, no dates)."""
    import mlflow

    out = Path(out)
    report = json.loads((out / "report.json").read_text())
    mlflow.set_tracking_uri(tracking.uri)
    with mlflow.start_run(experiment_id=tracking.experiment(experiment),
                          run_name=f"dataset-{report['dataset']}") as run:
        mlflow.set_tags({"dataset": report["dataset"], "stage": "dataset"})
        mlflow.log_params({"seed": report["config"]["seed"], "stays": report["stays"]})
        for index, step in enumerate(report["funnel"]):
            mlflow.log_metric("funnel_remaining", step["remaining"], step=index)
            mlflow.log_metric("funnel_removed", step["removed"], step=index)
        mlflow.log_metrics({f"stays_{split}": n for split, n in report["splits"]["stays"].items()})
        mlflow.log_metrics({f"presence_{m}": share for m, share in report["presence_share"].items()})
        mlflow.log_metric("quarantined_rows", sum(q["rows"] for q in report["quarantine"]))
        for name in ("report.md", "report.json", "missingness.png"):
            mlflow.log_artifact(str(out / name), "dataset")
        return run.info.run_id
