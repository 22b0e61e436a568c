"""What a task may see: the events of each stay inside its window (METHOD.md §5).

A task predicts at `prediction_hours` after ICU admission (None: at ICU discharge, the whole
stay). A stay's window runs from `start_hours` = -lookback_hours (0 by default: nothing from
before the ICU stay) to `end_hours` = the prediction time, never beyond ICU discharge:

    start_hours <= time_hours <= end_hours

The same rule cuts every view of a task: its static tables (`data.modalities.aggregate` over
the window's events) and its timelines (`select` over the per-event embeddings). Stays whose
ICU stay ends before the prediction time leave the task (`long_enough`) and are counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RELATIONS = ("in window", "before the window start", "after the prediction time", "after ICU discharge")


def long_enough(stays: pd.DataFrame, prediction_hours: float | None) -> pd.Series:
    """Stays still in the ICU at the prediction time (every stay for the whole-stay window)."""
    if prediction_hours is None:
        return pd.Series(True, index=stays.index)
    return stays["unit_hours"] >= prediction_hours


def bounds(stays: pd.DataFrame, prediction_hours: float | None, lookback_hours: float = 0.0) -> pd.DataFrame:
    """stay_id, start_hours, end_hours of each stay (stays: stay_id, unit_hours)."""
    unit = stays["unit_hours"].astype(float).to_numpy()
    end = unit if prediction_hours is None else np.minimum(unit, float(prediction_hours))
    return pd.DataFrame({"stay_id": stays["stay_id"].astype("int64").to_numpy(),
                         "start_hours": np.full(len(stays), -float(lookback_hours)), "end_hours": end})


def _aligned(events: pd.DataFrame, window: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, unit end) of each event's stay; NaN for events of stays outside `window`."""
    index = pd.Index(window["stay_id"]).get_indexer(events["stay_id"])
    known = index >= 0
    start, end = np.full(len(events), np.nan), np.full(len(events), np.nan)
    start[known] = window["start_hours"].to_numpy(float)[index[known]]
    end[known] = window["end_hours"].to_numpy(float)[index[known]]
    unit = np.full(len(events), np.nan)
    if "unit_hours" in window:
        unit[known] = window["unit_hours"].to_numpy(float)[index[known]]
    return start, end, unit


def select(events: pd.DataFrame, window: pd.DataFrame, after_stay: bool = False) -> np.ndarray:
    """Boolean mask of the events (stay_id, time_hours) inside their stay's window; events of stays
    the window does not list are outside, and so is every event of an `after_stay` modality."""
    start, end, _ = _aligned(events, window)
    time = events["time_hours"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        return (time >= start) & (time <= end) & (not after_stay)


def relations(events: pd.DataFrame, window: pd.DataFrame, after_stay: bool = False) -> dict[str, int]:
    """How many events of the window's stays fall in each of `RELATIONS` (window: stay_id,
    start_hours, end_hours, unit_hours); an `after_stay` modality's all count after ICU discharge."""
    start, end, unit = _aligned(events, window)
    known = ~np.isnan(start)
    time = events["time_hours"].to_numpy(float)[known]
    start, end, unit = start[known], end[known], unit[known]
    before = (time < start) & (not after_stay)
    after_discharge = ~before & ((time > unit) | after_stay)
    after_prediction = ~before & ~after_discharge & (time > end)
    inside = ~before & ~after_discharge & ~after_prediction
    return dict(zip(RELATIONS, (int(inside.sum()), int(before.sum()), int(after_prediction.sum()),
                                int(after_discharge.sum()))))
