"""The paper's tables regenerated from MLflow, ours beside the published values.

`paper_results.csv` (in this package) transcribes Tables 1-3 and appendix C of
the paper, one row per (source, dataset, task, model, initialisation, metric).
`our_results` reads the test metrics (with bootstrap CIs) of an experiment's
static-baseline and sequential child runs, and its pretraining runs' retrieval.
`side_by_side` lays one table out in the paper's row order (MLP and LSTM from
scratch, then contrastive; the six backbones from scratch, then contrastive) with, per metric, ours
"value (low-high)", the paper's value and ours minus the paper's.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from clintraj.evaluation.comparison import cell, markdown
from clintraj.names import undefined_tag

MODEL_ORDER = ["mlp", "lstm", "biomistral-7b", "deepseek-7b", "meditron-7b", "llama3-8b", "phi3-mini", "mistral-7b"]
INIT_ORDER = ["scratch", "contrastive"]
# The paper's rows: the static models (scratch, then contrastive), then the backbones (the same).
ROW_ORDER = [(model, init) for group in (MODEL_ORDER[:2], MODEL_ORDER[2:]) for init in INIT_ORDER for model in group]
TABLES = {
    "table2": ("mimic", {"mortality": ("auroc", "auprc"), "phenotyping": ("auroc", "auprc")}),
    "table3": ("eicu", {"mortality": ("auroc", "auprc"), "los": ("mse", "mae", "pearson", "spearman")}),
    "calibration_mimic": ("mimic", {"mortality": ("ace", "bss"), "phenotyping": ("ace", "bss")}),
    "calibration_eicu": ("eicu", {"mortality": ("ace", "bss")}),
}
METRICS_OF = {task: tuple(dict.fromkeys(m for _, tasks in TABLES.values() for m in tasks.get(task, ())))
              for task in ("mortality", "phenotyping", "los")}  # a task's metrics in the tables
NOT_IN_SWEEP = "not in this run's sweep"
NOT_PRETRAINED = "not pretrained in this run"


def published() -> pd.DataFrame:
    with resources.files("clintraj.reporting").joinpath("paper_results.csv").open() as handle:
        return pd.read_csv(handle, dtype={"value": str})  # as printed: "0.9000" stays "0.9000"


def our_results(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """Long frame (dataset, task, model, initialisation, metric, value, low, high, why, window,
    run_id) of an experiment. A metric of the tables without a value says why: the run's
    `undefined.test_<metric>` tag ("undefined: n = 9, no positive"), its trial failed or did not
    finish, or the run did not record it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} at {tracking_uri}")
    rows = []
    for run in client.search_runs([found.experiment_id]):  # the latest first
        tags, metrics, status = run.data.tags, run.data.metrics, run.info.status
        model = tags.get("architecture") if tags.get("stage") == "static-baseline" else tags.get("backbone")
        if tags.get("stage") in ("pretrain", "pretrain-sweep") and status == "FINISHED":  # Table 1: the embedding checkpoints ' retrieval
            for k in (1, 5, 10):
                recall, random = metrics.get(f"test_recall_at_{k}"), metrics.get(f"test_random_at_{k}")
                values = {f"recall_at_{k}": recall, f"random_at_{k}": random,
                          f"improvement_at_{k}": recall / random if recall is not None and random else None}
                rows += [{"dataset": tags.get("dataset"), "task": "pretraining", "model": "mga",
                          "initialisation": "contrastive", "metric": metric, "value": value,
                          "run_id": run.info.run_id} for metric, value in values.items() if value is not None]
        if tags.get("stage") in ("static-baseline", "sequential") and model:
            key = {"dataset": tags.get("dataset"), "task": tags.get("task"), "model": model,
                   "initialisation": tags.get("initialisation"), "window": tags.get("window"),
                   "run_id": run.info.run_id}
            if status != "FINISHED":
                why = "trial failed" if status == "FAILED" else f"trial {status.lower()}"
                rows += [{**key, "metric": metric, "value": None, "why": why}
                         for metric in METRICS_OF.get(key["task"], ())]
                continue
            for name, value in metrics.items():
                if name.startswith("test_") and not name.endswith(("_low", "_high")):
                    rows.append({**key, "metric": name[len("test_"):], "value": value,
                                 "low": metrics.get(f"{name}_low"), "high": metrics.get(f"{name}_high")})
            for metric in METRICS_OF.get(key["task"], ()):
                if f"test_{metric}" not in metrics:
                    rows.append({**key, "metric": metric, "value": None,
                                 "why": tags.get(undefined_tag(f"test_{metric}"), "not recorded")})
    return pd.DataFrame(rows, columns=["dataset", "task", "model", "initialisation", "metric", "value", "low",
                                       "high", "why", "window", "run_id"])


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, table: str) -> pd.DataFrame:
    """One of TABLES in the paper's row order; several runs of one cell: the latest with a value
    wins. A cell of ours without a run reads NOT_IN_SWEEP; one without a value says why."""
    dataset, tasks = TABLES[table]
    rows = []
    for model, init in ROW_ORDER:
        row = {"model": model, "initialisation": init}
        for task, metrics in tasks.items():
            for metric in metrics:
                mine = ours[(ours["dataset"] == dataset) & (ours["task"] == task) & (ours["model"] == model)
                            & (ours["initialisation"] == init) & (ours["metric"] == metric)]
                theirs = paper[(paper["dataset"] == dataset) & (paper["task"] == task) & (paper["model"] == model)
                               & (paper["initialisation"] == init) & (paper["metric"] == metric)]
                value = latest(mine)
                printed = theirs["value"].iloc[0] if len(theirs) else None
                published_value = float(printed) if printed is not None else None
                name = f"{task} {metric}"
                row[f"{name} ours"] = (NOT_IN_SWEEP if value is None
                                       else cell(value["value"], value.get("low"), value.get("high"), value.get("why")))
                row[f"{name} paper"] = printed or ""
                row[f"{name} diff"] = ("" if value is None or pd.isna(value["value"]) or published_value is None
                                       else f"{value['value'] - published_value:+.3f}")
        rows.append(row)
    return pd.DataFrame(rows)


def latest(rows: pd.DataFrame):
    """The row of a cell to show: the latest run with a value, else the latest that says why not."""
    if not len(rows):
        return None
    valued = rows[rows["value"].notna()]
    return (valued if len(valued) else rows).iloc[0]


def write(table: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """Markdown, CSV and LaTeX files of a table."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.md", folder / f"{name}.csv", folder / f"{name}.tex"]
    paths[0].write_text(markdown(table))
    table.to_csv(paths[1], index=False)
    paths[2].write_text(latex(table))
    return paths


def latex(table: pd.DataFrame) -> str:
    """A booktabs tabular (no pandas Styler: no jinja2 dependency)."""
    def escape(text) -> str:
        return str(text).replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%").replace(
            "_", r"\_").replace("#", r"\#")

    lines = [r"\begin{tabular}{" + "l" * len(table.columns) + "}", r"\toprule",
             " & ".join(escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


def table1(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Table 1's layout: dataset x Recall@K, random baseline, Masked Global Alignment, improvement."""
    rows = []
    for dataset in ("mimic", "eicu"):
        for k in (1, 5, 10):
            row = {"dataset": dataset, "metric": f"R@{k}"}
            for column, metric in (("random", f"random_at_{k}"), ("masked global", f"recall_at_{k}"),
                                   ("improvement", f"improvement_at_{k}")):
                mine = ours[(ours["dataset"] == dataset) & (ours["task"] == "pretraining") & (ours["metric"] == metric)]
                theirs = paper[(paper["dataset"] == dataset) & (paper["source"] == "Table 1") & (paper["metric"] == metric)]
                value = float(mine["value"].iloc[0]) if len(mine) else None  # the latest run's
                row[f"{column} ours"] = NOT_PRETRAINED if value is None else (
                    f"{value:.2f}" if column == "improvement" else f"{100 * value:.3f}%")
                row[f"{column} paper"] = theirs["value"].iloc[0]  # as printed (recalls in %)
            rows.append(row)
    return pd.DataFrame(rows)
