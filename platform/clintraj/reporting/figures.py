"""The report's figures, drawn from an experiment's backbone runs (their test predictions and
metrics): each run's own (ROC/PR and reliability, or predicted vs true length of stay) and, per
dataset and task, the models side by side (AUROC by events seen; the test metric as modalities are
removed). Each is titled, and captioned with the dataset, task, prediction time, model,
initialisation and the test split's counts; the sections follow the paper's tables."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj import names
from clintraj.evaluation.plots import performance_by_length, robustness_curves, task_figures
from clintraj.reporting.tables import INIT_ORDER, MODEL_ORDER, TABLES

KINDS = {"roc_pr": "ROC and precision-recall curves", "reliability": "Reliability diagram (calibration)",
         "los_scatter": "Predicted vs true length of stay"}


# (dataset, task) sections in the order of the paper's tables: MIMIC-IV (Table 2), then eICU (Table 3)
SECTIONS = list(dict.fromkeys((dataset, task) for dataset, tasks in TABLES.values() for task in tasks))


@dataclass
class Figure:
    group: tuple[str, str]  # (dataset, task): the section it appears in
    caption: str
    path: Path
    wide: bool = False  # two panels side by side


def counts(task: str, predictions: pd.DataFrame) -> str:
    """The test split behind a figure: 'n = 300 stays, 27 positive'."""
    y = np.stack([np.asarray(v, float).ravel() for v in predictions["y"]]) if len(predictions) else np.zeros((0, 1))
    if task == "mortality":
        return f"n = {len(y)} stays, {int(y.sum())} died"
    if task == "phenotyping":
        return f"n = {len(y)} stays, {y.shape[1]} labels, {int(y.sum())} positive labels in all"
    return f"n = {len(y)} stays"


def _order(run) -> tuple:
    tags = run.data.tags
    group, model, init = (tags.get("dataset"), tags.get("task")), tags.get("backbone"), tags.get("initialisation")
    return (SECTIONS.index(group) if group in SECTIONS else len(SECTIONS), str(group),
            MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model or "",
            INIT_ORDER.index(init) if init in INIT_ORDER else len(INIT_ORDER))


def collect(client, experiment_id: str, out: Path) -> list[Figure]:
    """Every finished backbone run's figures, drawn under out/figures from its test predictions, then
    the comparisons of each dataset and task; in the order of the paper's tables, models and
    initialisations."""
    runs = sorted(client.search_runs([experiment_id], "tags.stage = 'sequential' and attributes.status = 'FINISHED'"),
                  key=_order)
    figures, predictions, curves = [], {}, {}
    for run in runs:
        tags = run.data.tags
        group, label = (tags["dataset"], tags["task"]), f"{tags['backbone']} ({tags['initialisation']})"
        subject = names.subject(*group, tags["backbone"], tags["initialisation"], tags.get("window"))
        with tempfile.TemporaryDirectory() as scratch:
            frame = pd.read_parquet(client.download_artifacts(run.info.run_id, "test_predictions.parquet", scratch))
        y, output = (np.stack(frame[column].to_numpy()) for column in ("y", "output"))
        if y.shape[1] == 1:
            y, output = y[:, 0], output[:, 0]
        folder = out / "figures" / "_".join([*group, tags["backbone"], tags["initialisation"]])
        for path in task_figures(group[1], y, output, folder, subject):
            figures.append(Figure(group, f"{KINDS[path.stem]}: {subject}. Test split: {counts(group[1], frame)}.", path,
                                  wide=path.stem == "roc_pr"))
        if group[1] == "mortality":
            predictions.setdefault(group, {})[label] = frame
        robust = {k: v for k, v in run.data.metrics.items() if k.startswith("robust_")}
        if robust:
            curves.setdefault(group, {})[label] = robust
    for (dataset, task), by_model in predictions.items():
        title = f"{names.dataset(dataset)} {names.task(task)}: AUROC by events seen"
        path = performance_by_length(by_model, out / "figures" / f"{dataset}_{task}_by_length.png", title)
        if path:
            figures.append(Figure((dataset, task), f"{title}, each model's prediction after its k-th event, over "
                                  "the test stays with at least k events (appendix A.11-A.16).", path))
    for (dataset, task), by_model in curves.items():
        metric = next(iter(next(iter(by_model.values())))).split("_")[1]
        title = f"{names.dataset(dataset)} {names.task(task)}: test {names.metric(metric)} with modalities removed"
        path = robustness_curves(by_model, names.metric(metric), out / "figures" / f"{dataset}_{task}_robustness.png",
                                 title)
        figures.append(Figure((dataset, task), f"{title} from each test stay at random (scratch dashed, "
                              "contrastive solid; beyond the paper).", path))
    return figures
