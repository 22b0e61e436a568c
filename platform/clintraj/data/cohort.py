"""What every dataset's builder returns: the cohort, its modality tables and its bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from clintraj.data.rawio import Quarantine


@dataclass
class CohortTables:
    """One dataset's cohort, ready to split and write.

    stays:      one row per cohort stay: stay_id (int), patient_id (nullable), the labels,
                and a boolean has_<modality> per modality.
    modalities: name -> stay_id + that modality's static features (numbers, or text / a path
                for notes and images), one row per stay that has the modality.
    events:     name -> stay_id, time_hours (from the stay's start; demographics at 0) and the
                event's payload, one row per timeline event (for the sequential models).
    funnel:     [{"step", "removed", "remaining"}], in the order the inclusion rules ran.
    """

    modality_names: tuple[str, ...]
    stays: pd.DataFrame
    modalities: dict[str, pd.DataFrame]
    funnel: list[dict]
    quarantine: Quarantine
    events: dict[str, pd.DataFrame] = field(default_factory=dict)
    label_columns: tuple[str, ...] = ()
