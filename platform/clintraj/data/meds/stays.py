"""The cohort's stays and their labels, from the structural codes only (the first of the reader's
two passes over the data: a pyarrow scan that reads three columns and only the rows whose code
matches a stay, outcome or birth pattern).

A stay is an admission code followed, in the subject's time order, by a discharge code (at the
same time a discharge sorts first, so back-to-back stays pair correctly); an admission with no
discharge before the subject's next admission, and a discharge with no admission, are counted and
make no stay. Outcome intervals (hospital admissions) pair the same way. Each stay's outcome is
the interval that overlaps it most (MIMIC-IV charts some ICU admissions before the hospital
admission time, and some ICU discharges after the hospital discharge): in-hospital death is that
interval's own discharge code matching a death pattern, the length of stay its length. A stay no
outcome interval overlaps has unknown labels (NA: no task takes it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from clintraj.data.meds.codes import (
    BIRTH,
    OUTCOME_ADMISSION,
    OUTCOME_DISCHARGE,
    STAY_ADMISSION,
    STAY_DISCHARGE,
    CodeRouter,
)
from clintraj.data.meds.layout import READAHEAD, MedsFolder

HOUR_US = 3_600_000_000


def boundary_events(folder: MedsFolder, router: CodeRouter, batch_rows: int) -> tuple[pd.DataFrame, int]:
    """(subject_id, time (µs since the epoch), role, code_id) of the structural codes that have a
    time, and how many had none."""
    scan = folder.dataset().to_batches(columns=["subject_id", "time", "code"], batch_size=batch_rows,
                                       filter=pc.match_substring_regex(pc.field("code"), router.boundary_regex),
                                       batch_readahead=READAHEAD, fragment_readahead=1)
    frames, timeless = [], 0
    for batch in scan:
        roles, ids = router.route(batch.column("code"))
        time = batch.column("time")
        timeless += time.null_count
        frame = pd.DataFrame({"subject_id": batch.column("subject_id").to_numpy(),
                              "time": pc.fill_null(time.cast("int64"), np.iinfo(np.int64).min).to_numpy(),
                              "role": roles, "code_id": ids})
        frames.append(frame[time.is_valid().to_numpy(zero_copy_only=False)])
    empty = pd.DataFrame({"subject_id": pd.Series(dtype="int64"), "time": pd.Series(dtype="int64"),
                          "role": pd.Series(dtype="int8"), "code_id": pd.Series(dtype="int64")})
    return pd.concat([empty, *frames], ignore_index=True), timeless


def pair(events: pd.DataFrame, admission: int, discharge: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Intervals (subject_id, start, end, discharge_code_id) from admission / discharge events."""
    rows = events[events["role"].isin([admission, discharge])]
    rows = rows.assign(opens=rows["role"] == admission).sort_values(["subject_id", "time", "opens"], kind="stable")
    subject, opens = rows["subject_id"].to_numpy(), rows["opens"].to_numpy()
    closes_next = np.r_[(subject[1:] == subject[:-1]) & ~opens[1:], False]
    paired = opens & closes_next
    after = np.flatnonzero(paired) + 1
    intervals = pd.DataFrame({"subject_id": subject[paired], "start": rows["time"].to_numpy()[paired],
                              "end": rows["time"].to_numpy()[after],
                              "discharge_code_id": rows["code_id"].to_numpy()[after]})
    counts = {"admission codes without a discharge": int(opens.sum() - paired.sum()),
              "discharge codes without an admission": int((~opens).sum() - paired.sum())}
    return intervals, counts


def outcome_of(stays: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per stay (stays' index), the outcome interval overlapping it most: start, end, discharge_code_id
    (NA where none overlaps)."""
    pairs = stays.reset_index(names="stay").merge(outcomes, on="subject_id", suffixes=("", "_outcome"))
    overlap = (np.minimum(pairs["end"], pairs["end_outcome"]) - np.maximum(pairs["start"], pairs["start_outcome"]))
    pairs = pairs[overlap.to_numpy() > 0].assign(overlap=overlap[overlap > 0])
    best = pairs.sort_values(["stay", "overlap"], ascending=[True, False], kind="stable").drop_duplicates("stay")
    best = best.set_index("stay")[["start_outcome", "end_outcome", "discharge_code_id_outcome"]]
    return best.reindex(stays.index)


def find_stays(events: pd.DataFrame, router: CodeRouter, has_outcome: bool) -> tuple[pd.DataFrame, dict]:
    """The stays (stay_id, subject_id, start, end in µs, died, los_hours, birth), sorted by
    subject and admission, with stay ids 1..N in that order; and the counts of what made no stay."""
    stays, stay_counts = pair(events, STAY_ADMISSION, STAY_DISCHARGE)
    counts = {f"stays: {k}": v for k, v in stay_counts.items()}
    stays = stays.sort_values(["subject_id", "start"], kind="stable").reset_index(drop=True)
    if has_outcome:
        outcomes, outcome_counts = pair(events, OUTCOME_ADMISSION, OUTCOME_DISCHARGE)
        counts.update({f"outcomes: {k}": v for k, v in outcome_counts.items()})
        outcome = outcome_of(stays, outcomes)
    else:  # the stay's own discharge gives the labels
        outcome = pd.DataFrame({"start_outcome": stays["start"], "end_outcome": stays["end"],
                                "discharge_code_id_outcome": stays["discharge_code_id"]})
    known = outcome["discharge_code_id_outcome"].notna()
    death = np.array([router.is_death(router.codes[int(i)]) if ok else False
                      for i, ok in zip(outcome["discharge_code_id_outcome"].fillna(0), known)])
    counts["stays with no outcome interval (labels unknown)"] = int((~known).sum())
    births = events[events["role"] == BIRTH].groupby("subject_id")["time"].min()
    return pd.DataFrame({
        "stay_id": np.arange(1, len(stays) + 1, dtype=np.int64),
        "subject_id": stays["subject_id"].to_numpy(np.int64),
        "start": stays["start"].to_numpy(np.int64), "end": stays["end"].to_numpy(np.int64),
        "died": pd.array(np.where(known, death.astype(float), np.nan), dtype="Float64").astype("Float64"),
        "los_hours": ((outcome["end_outcome"] - outcome["start_outcome"]) / HOUR_US).astype(float).to_numpy(),
        "birth": stays["subject_id"].map(births).to_numpy(dtype=float),
    }), counts
