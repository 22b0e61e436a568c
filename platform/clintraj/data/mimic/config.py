"""What the MIMIC-IV reader reads and how: its modalities, `MimicConfig`, and two
small helpers its modules share."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clintraj.data.modalities import Modality

MODALITIES = (
    Modality("time_series", "time_series"), Modality("cxr", "image"),
    Modality("discharge_note", "text", after_stay=True),  # a summary written at hospital discharge
    Modality("radiology_note", "text"), Modality("demographics", "static"),
)
MODALITY_BY_NAME = {m.name: m for m in MODALITIES}
MODALITY_NAMES = tuple(m.name for m in MODALITIES)

HOUR = pd.Timedelta(hours=1)


@dataclass
class MimicConfig:
    chartevents_stand_in: bool = False  # read the _derived stand-in's columns (stay_id_inferred, no `value`)
    use_labevents: bool = True  # glucose, O2 saturation and pH from hosp/labevents too (mimic3-benchmarks)
    bin_hours: float = 1.0  # discretisation step (paper: timestep = 1.0 h)
    fio2_percent_to_fraction: bool = True  # FiO2 > 1 is a percentage: divide by 100
    valid_ranges: bool = True  # mimic3-benchmarks' bounds: outliers removed (quarantined), the rest clipped (`ranges`)
    cxr_views: tuple[str, ...] = ("AP",)
    cxr_require_file: bool = True  # an image counts only when its JPEG exists below the cxr root
    require_cxr_subject: bool = True  # cohort: stays of subjects in the CXR metadata (ignored when cxr is None)
    age_edges: tuple[int, ...] = (18, 30, 40, 50, 60, 70, 80)  # groups 18-29, ..., 70-79, 80+
    numeric_age: bool = True  # also keep the age in years (a number) next to the age group
    chunk_rows: int = 1_000_000  # rows per streamed chunk (chartevents / labevents: about, in blocks <= 4 MiB)
    progress: bool = True


class Counts(dict):
    """A dict of counts that starts every key at 0."""

    def __missing__(self, key):
        return 0
