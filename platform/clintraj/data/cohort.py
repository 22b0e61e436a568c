"""What every dataset's reader returns: the cohort, its modalities as events, and its bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from clintraj.data.event_parts import Parts
from clintraj.data.modalities import Modality
from clintraj.data.rawio import Quarantine


@dataclass
class CohortTables:
    """One dataset's cohort, ready to split, cut into task windows and aggregate.

    modalities: the dataset's modalities (name and kind, `data.modalities`), in order.
    stays:      one row per cohort stay: stay_id (int), patient_id (nullable), the labels and
                unit_hours (the length of the ICU stay: where every window ends at the latest).
    events:     name -> stay_id, time_hours (hours from ICU admission: negative before it, beyond
                unit_hours after discharge) and the event's payload (its kind's columns), one row
                per event, sorted by stay and time. A static modality has one event per stay: when
                its values become known. In memory (a DataFrame) or, for a long table, on disk
                by stay range (`event_parts.Parts`: read it with `modalities.stay_slices`).
    static:     name -> stay_id + features of the static modalities (one row per stay).
    funnel:     [{"step", "removed", "remaining", ...}], in the order the inclusion rules ran.
    reading:    counts of how the raw data was read, for the report (the MEDS reader's: every
                row's fate, unmapped codes); {} when the reader has none.
    """

    modalities: tuple[Modality, ...]
    stays: pd.DataFrame
    events: dict[str, pd.DataFrame | Parts]
    static: dict[str, pd.DataFrame]
    funnel: list[dict]
    quarantine: Quarantine
    label_columns: tuple[str, ...] = ()
    reading: dict = field(default_factory=dict)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)
