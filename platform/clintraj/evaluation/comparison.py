"""The comparison table in the layout of the paper's Tables 2 and 3: one row per model and
initialisation, per task its headline metrics as "value (low-high)" with 95% bootstrap CIs.
A metric the test split leaves undefined says why ("undefined: n = 9, no positive", from the
trial run's `undefined.test_<metric>` tag); a task a model did not run says "not run"."""

from __future__ import annotations

import pandas as pd

from clintraj import names

TASK_METRICS = {"mortality": ("auroc", "auprc"), "phenotyping": ("auroc", "auprc"),
                "los": ("mse", "mae", "pearson", "spearman")}
# The one metric per task the console shows (the report has them all): the paper's first for the
# classification tasks, for length of stay the error in hours a person reads at a glance.
CONSOLE_METRIC = {"mortality": "auroc", "phenotyping": "auroc", "los": "mae"}
STATIC_MODELS = {"mlp": "MLP", "lstm": "LSTM"}
NOT_RUN = "not run"
INIT_ORDER = {"scratch": 0, "contrastive": 1}


def cell(value, low=None, high=None, why=None) -> str:
    """'0.912 (0.850-0.950)'; a missing value: the reason given, else empty."""
    if value is None or pd.isna(value):
        return why if isinstance(why, str) else ""
    interval = f" ({low:.3f}-{high:.3f})" if low is not None and pd.notna(low) and pd.notna(high) else ""
    return f"{value:.3f}{interval}"


def _cell(row: pd.Series, metric: str) -> str:
    key = f"test_{metric}"
    return cell(row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high"), row.get(names.undefined_tag(key)))


def comparison_table(sequential: pd.DataFrame | None, static: pd.DataFrame | None = None) -> pd.DataFrame:
    """Static baselines first (MLP, LSTM), then the backbones; scratch before contrastive. Columns
    '<task> <metric>'; a model's cells of a task it has no run of read NOT_RUN."""
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
    ran = long.groupby(["kind", "model", "initialisation"], sort=False)["task"].agg(set)
    table = long.groupby(["kind", "model", "initialisation"], sort=False)[columns].agg(
        lambda cells: next((c for c in cells if isinstance(c, str) and c), ""))
    for column in columns:  # a task the row never ran, not a value that came out empty
        table.loc[[column.split(" ")[0] not in tasks for tasks in ran], column] = NOT_RUN
    table = table.reset_index()
    table["order"] = table["kind"].map({"static": 0, "sequential": 1})
    table["init_order"] = table["initialisation"].map(INIT_ORDER).fillna(2)
    table = table.sort_values(["order", "model", "init_order"], kind="stable")
    return table.drop(columns=["order", "init_order", "kind"]).reset_index(drop=True)


def console_tables(table: pd.DataFrame) -> dict[str, tuple[str, pd.DataFrame]]:
    """`comparison_table` compacted for a console, per task: (its headline metric's name, one row
    per model that ran the task, scratch and contrastive side by side). The other metrics stay in
    the report and in MLflow."""
    out = {}
    for task, metric in CONSOLE_METRIC.items():
        column = f"{task} {metric}"
        if column not in table:
            continue
        ran = table[table[column] != NOT_RUN]
        if not len(ran):
            continue
        initialisations = sorted(set(ran["initialisation"]), key=lambda i: (INIT_ORDER.get(i, 2), i))
        rows = [{"model": model, **{init: NOT_RUN for init in initialisations},
                 **dict(zip(group["initialisation"], group[column]))}
                for model, group in ran.groupby("model", sort=False)]
        out[task] = (names.metric(metric), pd.DataFrame(rows, columns=["model", *initialisations]))
    return out


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-style Markdown table of string-able cells."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
