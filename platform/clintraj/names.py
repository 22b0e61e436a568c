"""How datasets, tasks, models, metrics and runs are named for people: MLflow run names, table
headers, figure titles and captions. One place, so the console, the report and the MLflow UI say
the same thing; code keeps the short keys (`eicu`, `los`, `test_auroc`) everywhere else."""

from __future__ import annotations

DATASETS = {"eicu": "eICU", "mimic": "MIMIC-IV", "meds": "MEDS"}
TASKS = {"mortality": "in-hospital mortality", "los": "length of stay", "phenotyping": "phenotyping (25 conditions)"}
MODELS = {"mlp": "MLP", "lstm": "LSTM", "mga": "MGA encoders"}
METRICS = {"auroc": "AUROC", "auprc": "AUPRC", "ace": "ACE", "bss": "BSS", "mse": "MSE (h²)", "mae": "MAE (h)",
           "pearson": "Pearson r", "spearman": "Spearman ρ"}
STAGES = {"backbone-sweep": "backbone sweep", "static-baselines": "static baselines",
          "pretrain-sweep": "MGA pretraining sweep", "pretrain": "MGA pretraining", "dataset": "dataset"}


def dataset(name: str | None) -> str:
    return DATASETS.get(name, name or "?")


def task(name: str | None) -> str:
    return TASKS.get(name, name or "?")


def model(name: str | None) -> str:
    return MODELS.get(name, name or "?")


def metric(name: str) -> str:
    return METRICS.get(name, name)


def trial_run(model_name: str, initialisation: str, task_name: str, dataset_name: str, trial_id: str) -> str:
    """'llama3-8b · contrastive · mortality · eICU · 7506e_00000': what a person scans for in the runs table."""
    return " · ".join([model_name, initialisation, task_name, dataset(dataset_name), trial_id])


def stage_run(stage: str, dataset_name: str, trial_id: str | None = None) -> str:
    """'backbone sweep · eICU', 'MGA pretraining · MIMIC-IV · trial 1a2b3_00000'."""
    return " · ".join([STAGES.get(stage, stage), dataset(dataset_name), *([f"trial {trial_id}"] if trial_id else [])])


def subject(dataset_name: str, task_name: str, model_name: str, initialisation: str, window: str | None = None) -> str:
    """'eICU in-hospital mortality at 12 h after ICU admission, llama3-8b, contrastive initialisation':
    what a figure shows, in its title and caption."""
    at = f" at {window}" if window else ""
    return f"{dataset(dataset_name)} {task(task_name)}{at}, {model(model_name)}, {initialisation} initialisation"


def section(dataset_name: str, task_name: str, window: str | None = None) -> str:
    """'eICU · in-hospital mortality, predicted at 12 h after ICU admission': a table's or figure group's heading."""
    return f"{dataset(dataset_name)} · {task(task_name)}" + (f", predicted at {window}" if window else "")


def undefined_tag(metric_key: str) -> str:
    """The MLflow tag that says why a metric (e.g. test_auroc) has no value: metrics cannot be NaN
    with a reason, so the reason is a tag beside the absent metric."""
    return f"undefined.{metric_key}"

