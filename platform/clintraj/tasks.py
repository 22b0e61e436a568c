"""A prediction task in one place: its label, cohort rule, prediction time, loss, selection metric
and test metrics (paper §3.5, appendix A.2; METHOD.md §5).

A task is defined on a dataset's stays (`stays.parquet`): it names the label columns it reads,
which stays have a label (the cohort rule), how the label becomes a training target, the loss
weighting, the validation metric that picks checkpoints, and the test metrics with CIs.

Every task has a prediction time, in hours after ICU admission: the model sees only what was
known by then (`data.windows`). `None` means the whole ICU stay. The defaults, and where each
comes from, are in `DEFAULT_PREDICTION_HOURS`; a dataset fixes its windows when it is prepared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from clintraj.metrics.prediction import (binary_metrics, evaluate_task, multilabel_metrics, regression_metrics,
                                         why_undefined)

PHENOTYPE_PREFIX = "pheno:"
TaskName = Literal["mortality", "phenotyping", "los"]


@dataclass(frozen=True)
class Task:
    name: str
    kind: Literal["binary", "multilabel", "regression"]
    label: str  # what is predicted, in words
    headline: tuple[str, ...]  # the test metrics of the paper's tables
    selection: tuple[str, str]  # (validation metric, "max" | "min") that picks a run's best epoch

    def label_columns(self, stays: pd.DataFrame) -> list[str]:
        if self.name == "mortality":
            return ["died"]
        if self.name == "los":
            return ["los_hours"]
        return [c for c in stays.columns if c.startswith(PHENOTYPE_PREFIX)]

    def has_label(self, stays: pd.DataFrame) -> pd.Series:
        """The cohort rule on labels: stays whose label is known (the others leave the task)."""
        columns = self.label_columns(stays)
        if not columns:
            return pd.Series(False, index=stays.index)
        return stays[columns].notna().all(axis=1)

    def targets(self, stays: pd.DataFrame) -> np.ndarray:
        """Mortality 0/1 (N,); phenotyping 0/1 (N, 25); length of stay log(1 + hours) (N,)."""
        values = stays[self.label_columns(stays)].astype(float).to_numpy()
        if self.kind == "regression":
            return np.log1p(values[:, 0])
        return values[:, 0] if self.kind == "binary" else values

    def out_features(self, stays: pd.DataFrame) -> int:
        return 1 if self.kind != "multilabel" else len(self.label_columns(stays))

    def pos_weight(self, y_train: np.ndarray) -> list[float] | None:
        """BCE weight of the positives: negatives / positives of the training split, per label."""
        if self.kind == "regression":
            return None
        positives = y_train.sum(axis=0)
        return np.atleast_1d((len(y_train) - positives) / np.maximum(positives, 1.0)).tolist()

    def validation_metrics(self, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
        """Cheap metrics each epoch (no CIs); LoS errors in hours."""
        if self.kind == "binary":
            return binary_metrics(y, output)
        if self.kind == "multilabel":
            macro = multilabel_metrics(y, expit(output), y.mean(axis=0))
            return {"auroc": macro["auroc"], "auprc": macro["auprc"], "skipped_labels": macro["skipped_labels"]}
        return regression_metrics(np.expm1(y), np.expm1(output))

    def test_metrics(self, y: np.ndarray, output: np.ndarray, y_train: np.ndarray, seed: int) -> dict:
        """The test split's metrics with 95% bootstrap CIs (calibration against the training prevalence)."""
        if self.kind == "regression":
            return evaluate_task("los", np.expm1(y), np.expm1(output), seed=seed)
        prevalence = y_train.mean(axis=0)
        return evaluate_task(self.name, y, output, seed=seed,
                             train_prevalence=prevalence if self.kind == "multilabel" else float(prevalence))

    def undefined(self, y: np.ndarray, metrics: dict) -> dict[str, str]:
        """Why each NaN metric of `metrics` (test metrics over labels `y`) is undefined, with its
        counts: {"test_auroc": "undefined: n = 9, no positive"} (`metrics.prediction.why_undefined`)."""
        return why_undefined(self.kind, y, metrics)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("mortality", "binary", "in-hospital death", ("auroc", "auprc"), ("val_auroc", "max")),
    Task("phenotyping", "multilabel", "25 acute and chronic conditions of the admission", ("auroc", "auprc"),
         ("val_auroc", "max")),
    Task("los", "regression", "hospital length of stay in hours", ("mse", "mae", "pearson", "spearman"),
         ("val_mse", "min")),
)}

# A MEDS dataset (data.meds) offers the two tasks every ETL's codes define, from its stays'
# outcomes or from label files; phenotyping's 25 labels are not a MEDS label file's one value, and
# ICD conventions differ across ETLs.
DATASET_TASKS = {"eicu": ("mortality", "los"), "mimic": ("mortality", "phenotyping"), "meds": ("mortality", "los")}

# Hours after ICU admission at which each task predicts; None: the whole ICU stay.
DEFAULT_PREDICTION_HOURS: dict[str, dict[str, float | None]] = {
    "eicu": {
        "mortality": 12.0,  # the paper's appendix A: eICU tasks "are anchored 12 hours post-admission"
        "los": 12.0,  # the same anchor; the label stays the total hospital length of stay
    },
    "mimic": {
        "mortality": 48.0,  # in-hospital mortality from the first 48 h (mimic3-benchmarks, MedFuse)
        "phenotyping": None,  # the ICU stay (mimic3-benchmarks' and MedFuse's phenotyping)
    },
    "meds": {  # the PhysioNet tasks' own windows (an eICU MEDS dataset: set mortality to 12 h)
        "mortality": 48.0,  # in-hospital mortality as the MIMIC-IV task (mimic3-benchmarks, MedFuse)
        "los": 12.0,  # length of stay as the paper's only LoS task, eICU's: anchored 12 h after admission
    },
}


def task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None


def dataset_tasks(dataset: str) -> tuple[str, ...]:
    try:
        return DATASET_TASKS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASET_TASKS)}") from None


def prediction_hours(dataset: str, overrides: dict[str, float | None] | None = None) -> dict[str, float | None]:
    """Each of the dataset's tasks' prediction time: the default, unless `overrides` names the task
    (a None there means the whole stay)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(dataset_tasks(dataset)))
    if unknown:
        raise ValueError(f"prediction_hours names {unknown}, which {dataset} does not have "
                         f"(its tasks: {', '.join(dataset_tasks(dataset))})")
    for name, hours in overrides.items():
        if hours is not None and not hours > 0:
            raise ValueError(f"prediction_hours.{name}: expected hours > 0 or null (the whole stay), got {hours!r}")
    return {name: overrides.get(name, DEFAULT_PREDICTION_HOURS[dataset][name]) for name in dataset_tasks(dataset)}


def window_text(hours: float | None) -> str:
    """How a window reads in tables and logs: '12 h after ICU admission' or 'the whole ICU stay'."""
    return "the whole ICU stay" if hours is None else f"{hours:g} h after ICU admission"


def window_param(hours: float | None) -> str:
    """A window as an MLflow param value ('12' or 'whole_stay')."""
    return "whole_stay" if hours is None else f"{hours:g}"
