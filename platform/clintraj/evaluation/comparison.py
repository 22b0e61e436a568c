"""The comparison table in the layout of the paper's Tables 2 and 3: one row per model and
initialisation, per task its headline metrics as "value (low-high)" with 95% bootstrap CIs."""

from __future__ import annotations

import pandas as pd

TASK_METRICS = {"mortality": ("auroc", "auprc"), "phenotyping": ("auroc", "auprc"),
                "los": ("mse", "mae", "pearson", "spearman")}
STATIC_MODELS = {"mlp": "MLP", "lstm": "LSTM"}


def _cell(row: pd.Series, metric: str) -> str:
    value = row.get(f"test_{metric}")
    if value is None or pd.isna(value):
        return ""
    low, high = row.get(f"test_{metric}_low"), row.get(f"test_{metric}_high")
    interval = f" ({low:.3f}-{high:.3f})" if low is not None and pd.notna(low) and pd.notna(high) else ""
    return f"{value:.3f}{interval}"


def comparison_table(sequential: pd.DataFrame | None, static: pd.DataFrame | None = None) -> pd.DataFrame:
    """Static baselines first (MLP, LSTM), then the backbones; scratch before contrastive."""
    rows = []
    for frame, model_column, kind in ((static, "architecture", "static"), (sequential, "backbone", "sequential")):
        if frame is None or not len(frame):
            continue
        for _, row in frame.iterrows():
            model = STATIC_MODELS.get(row[model_column], row[model_column]) if kind == "static" else row[model_column]
            rows.append({"kind": kind, "model": model, "initialisation": row["initialisation"], "task": row["task"],
                         **{f"{row['task']} {m}": _cell(row, m) for m in TASK_METRICS[row["task"]]}})
    if not rows:
        return pd.DataFrame(columns=["model", "initialisation"])
    long = pd.DataFrame(rows)
    columns = [c for task, metrics in TASK_METRICS.items() for c in (f"{task} {m}" for m in metrics) if c in long]
    table = long.groupby(["kind", "model", "initialisation"], sort=False)[columns].agg(
        lambda cells: next((c for c in cells if isinstance(c, str) and c), ""))
    table = table.reset_index()
    table["order"] = table["kind"].map({"static": 0, "sequential": 1})
    table["init_order"] = table["initialisation"].map({"scratch": 0, "contrastive": 1}).fillna(2)
    table = table.sort_values(["order", "model", "init_order"], kind="stable")
    return table.drop(columns=["order", "init_order", "kind"]).reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-style Markdown table of string-able cells."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
