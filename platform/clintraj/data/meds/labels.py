"""Task labels from ACES / MEDS label files (`meds.LabelSchema`: subject_id, prediction_time and a
value column), given per task (`MedsConfig.labels`, `--labels TASK=PATH`).

Every task predicts at a fixed time (its window, `clintraj.tasks`), so a label row belongs to the
stay of its subject whose prediction time (ICU admission + the task's hours, or ICU discharge
for a whole-stay window) is within `label_tolerance_seconds` of the row's prediction_time: ACES
writes exactly that time for a task anchored on the ICU admission. Rows at no stay's prediction
time, a stay's second row and rows without the value are counted, not used; a stay with no
row has no label (it leaves the task). mortality reads boolean_value, los float_value (hours).
"""

from __future__ import annotations

from pathlib import Path

import meds
import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from clintraj.data.meds.layout import MedsFormatError, check_schema
from clintraj.data.meds.stays import HOUR_US

VALUE_COLUMN = {"mortality": "boolean_value", "los": "float_value"}
LABEL_COLUMN = {"mortality": "died", "los": "los_hours"}


def label_files(path: Path) -> list[Path]:
    files = sorted(Path(path).rglob("*.parquet")) if Path(path).is_dir() else [Path(path)]
    if not files or not files[0].is_file():
        raise MedsFormatError(f"{path}: no label file (a Parquet file, or a folder of them)")
    return files


def read_labels(path: Path, task: str) -> tuple[pd.DataFrame, int]:
    """(subject_id, prediction_time µs, value) rows with a value, and the count of rows without one."""
    if task not in VALUE_COLUMN:
        raise ValueError(f"labels given for task {task!r}; a MEDS dataset's tasks with labels: {', '.join(VALUE_COLUMN)}")
    column = VALUE_COLUMN[task]
    files = label_files(path)
    for file in files:
        if column not in check_schema(file, meds.LabelSchema).names:
            raise MedsFormatError(f"{file}: no {column} column, which the {task} task reads")
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(
        columns=["subject_id", "prediction_time", column])
    frame = pd.DataFrame({"subject_id": table["subject_id"].to_numpy(),
                          "prediction_time": table["prediction_time"].cast("int64").to_numpy(zero_copy_only=False),
                          "value": table[column].to_pandas().astype("Float64")})
    missing = frame["value"].isna() | frame["subject_id"].isna()
    return frame[~missing].reset_index(drop=True), int(missing.sum())


def stay_labels(stays: pd.DataFrame, labels: pd.DataFrame, hours: float | None,
                tolerance_seconds: float) -> tuple[pd.Series, dict[str, int]]:
    """Each stay's label (index of `stays`; NA without one) from label rows at its prediction time."""
    moment = stays["end"] if hours is None else stays["start"] + int(round(hours * HOUR_US))
    targets = stays.assign(prediction_time=moment.to_numpy(np.int64))[["stay_id", "subject_id", "prediction_time"]]
    rows = labels.assign(row=np.arange(len(labels))).sort_values("prediction_time", kind="stable")
    matched = pd.merge_asof(rows, targets.sort_values("prediction_time", kind="stable"), on="prediction_time",
                            by="subject_id", direction="nearest", tolerance=int(tolerance_seconds * 1e6))
    matched = matched.dropna(subset=["stay_id"]).sort_values("row", kind="stable")
    first = matched.drop_duplicates("stay_id")
    value = first.set_index("stay_id")["value"]
    label = stays["stay_id"].map(value).astype("Float64")
    counts = {"rows": len(labels), "rows at a stay's prediction time": len(first),
              "rows at no stay's prediction time": len(labels) - len(matched),
              "further rows for a stay (first kept)": len(matched) - len(first),
              "stays without a label": int(label.isna().sum())}
    return label, counts
