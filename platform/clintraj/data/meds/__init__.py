"""Any MEDS dataset (Medical Event Data Standard, the `meds` package's schema) to the cohort,
labels and modalities as events, like the PhysioNet readers (`data.eicu`, `data.mimic`).

    raw/data/**/*.parquet            subject_id, time, code, numeric_value, text_value
    raw/metadata/dataset.json        (optional) names and versions
    raw/metadata/codes.parquet       (optional) the codes: ours missing from it are counted
    raw/metadata/subject_splits.parquet  (for `splits: meds`) train / tuning / held_out

What a code means comes from a code map (`config.CodeMap`, a YAML file; presets for the MIMIC-IV
and eICU MEDS ETLs in `clintraj/configs/meds/`): which codes open and close a stay (an ICU stay),
which interval gives its outcome (the hospital admission: in-hospital death is its discharge
disposition, the length of stay its length), and which codes feed which modality.

Two streamed passes (never the whole dataset in memory): the structural codes (`stays.py`: a
filtered three-column scan), then every row of the cohort's subjects (`events.py`: row groups of
other subjects skipped unread, every row's fate counted), then the modality tables
(`tables.py`). Labels come from the events, or from ACES / MEDS label files (`labels.py`).
Folder and files are checked against the `meds` schemas (`layout.py`).

Outputs (as `data.cohort.CohortTables` says): stays (stay_id 1..N in subject and admission
order, patient_id = subject_id as text, died, los_hours, unit_hours, given_split with
`splits: meds`, admission_time / discharge_time for internal use only: never written or
logged); events per modality in hours from ICU admission; the static tables; a funnel; the
quarantine; and `reading`, the counts of report.md's "MEDS reading" section (every row's fate,
unmapped codes by prefix, codes missing from codes.parquet, how stays and labels were found).
"""

from __future__ import annotations

import logging
from pathlib import Path

import meds
import numpy as np
import pandas as pd

from clintraj.data.cohort import CohortTables
from clintraj.data.meds.codes import CodeRouter
from clintraj.data.meds.config import PRESETS, CodeMap, MedsConfig, load_code_map
from clintraj.data.meds.events import Spans, read_events
from clintraj.data.meds.labels import LABEL_COLUMN, read_labels, stay_labels
from clintraj.data.meds.layout import MedsFolder, MedsFormatError
from clintraj.data.meds.report import reading_report, render_reading
from clintraj.data.meds.stays import HOUR_US, boundary_events, find_stays
from clintraj.data.meds.tables import modality_tables
from clintraj.data.rawio import Quarantine
from clintraj.data.splits import GIVEN_SPLIT

__all__ = ["PRESETS", "CodeMap", "MedsConfig", "MedsFolder", "MedsFormatError", "build", "load_code_map",
           "render_reading"]

log = logging.getLogger(__name__)

MEDS_SPLITS = {meds.train_split: "train", meds.tuning_split: "val", meds.held_out_split: "test"}


def build(raw: Path, config: MedsConfig | None = None, windows: dict[str, float | None] | None = None,
          lookback_hours: float = 0.0) -> CohortTables:
    """Cohort, labels and the events of every modality of one MEDS folder. `windows` (task ->
    prediction hours) places each task's label-file rows; `lookback_hours` widens the events kept
    before ICU admission to what a task may see."""
    config = config or MedsConfig()
    folder, code_map = MedsFolder(Path(raw)), load_code_map(config.codes)
    router = CodeRouter(code_map)
    metadata = folder.metadata
    files = [folder.relative(f) for f in folder.data_files]
    boundary, timeless = boundary_events(folder, router, config.batch_rows)
    stays, counts = find_stays(boundary, router, code_map.outcome is not None)
    if not len(stays):
        raise MedsFormatError(f"{raw}: no stays: no {code_map.stays.admission} code followed by a "
                              f"{code_map.stays.discharge} code for any subject (see the code map {config.codes})")
    counts["structural codes without a time"] = timeless
    funnel = [{"step": "stays: an admission code, then a discharge code", "removed": 0, "remaining": len(stays)}]
    label_counts = {}
    for task, path in config.labels.items():
        labels, missing = read_labels(Path(path), task)
        stays[LABEL_COLUMN[task]], label_counts[task] = stay_labels(
            stays, labels, (windows or {}).get(task), config.label_tolerance_seconds)
        label_counts[task]["rows without a value"] = missing
    if config.splits == "meds":
        stays = _given_splits(folder, stays, funnel)

    modalities = code_map.platform_modalities()
    spans = Spans(stays, max(config.history_hours, lookback_hours))
    reading = read_events(folder, router, [m.kind for m in modalities], spans, config.batch_rows)
    quarantine = Quarantine()
    events, static, static_counts = modality_tables(modalities, reading, stays, router, quarantine, files,
                                                    config.clean_notes)
    empty = [m.name for m in modalities if not len(events[m.name])]
    modalities = tuple(m for m in modalities if m.name not in empty)

    has = pd.concat([stays["stay_id"].isin(events[m.name]["stay_id"]) for m in modalities], axis=1).any(axis=1) \
        if modalities else pd.Series(False, index=stays.index)
    funnel.append({"step": "no modality present", "removed": int((~has).sum()), "remaining": int(has.sum())})
    stays = stays[has.to_numpy()]
    report = reading_report(metadata, folder, router, reading, counts, label_counts, static_counts, empty, config)
    return _cohort_tables(stays, modalities, events, static, funnel, quarantine, report)


def _given_splits(folder: MedsFolder, stays: pd.DataFrame, funnel: list[dict]) -> pd.DataFrame:
    """The dataset's own splits (train -> train, tuning -> val, held_out -> test) on the stays;
    stays of subjects with no such split leave the cohort, counted."""
    table = folder.subject_splits()
    if table is None:
        raise MedsFormatError(f"{folder.root}: splits: meds needs metadata/subject_splits.parquet, which is absent")
    splits = pd.Series(table["split"].to_pylist(), index=table["subject_id"].to_numpy())
    splits = splits[~splits.index.duplicated(keep="first")].map(MEDS_SPLITS)
    given = stays["subject_id"].map(splits)
    funnel.append({"step": "subject without a train, tuning or held_out split (metadata/subject_splits.parquet)",
                   "removed": int(given.isna().sum()), "remaining": int(given.notna().sum())})
    return stays.assign(**{GIVEN_SPLIT: given})[given.notna().to_numpy()].reset_index(drop=True)


def _cohort_tables(stays: pd.DataFrame, modalities: tuple, events: dict, static: dict, funnel: list[dict],
                   quarantine: Quarantine, reading: dict) -> CohortTables:
    ids = stays["stay_id"]
    out = pd.DataFrame({
        "stay_id": ids.to_numpy(np.int64),
        "patient_id": stays["subject_id"].astype("string").to_numpy(),
        "died": stays["died"].astype("Float64").array,
        "los_hours": stays["los_hours"].astype(float).to_numpy(),
        "unit_hours": ((stays["end"] - stays["start"]) / HOUR_US).to_numpy(float),
        "admission_time": pd.to_datetime(stays["start"].to_numpy(), unit="us"),
        "discharge_time": pd.to_datetime(stays["end"].to_numpy(), unit="us"),
    })
    out["patient_id"] = out["patient_id"].astype("string")
    if GIVEN_SPLIT in stays:
        out[GIVEN_SPLIT] = stays[GIVEN_SPLIT].to_numpy()
    keep = {m.name: e[e["stay_id"].isin(ids)].reset_index(drop=True) for m in modalities for e in [events[m.name]]}
    tables = {name: table[table["stay_id"].isin(ids)].reset_index(drop=True) for name, table in static.items()
              if name in keep}
    log.info("MEDS cohort: %d stays; %s", len(out), ", ".join(f"{m} {e['stay_id'].nunique()}" for m, e in keep.items()))
    return CohortTables(modalities, out, keep, tables, funnel, quarantine, label_columns=("died", "los_hours"),
                        reading=reading)
