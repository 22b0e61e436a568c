"""Synthetic MIMIC-IV v2.2 (hosp, icu) + MIMIC-CXR-JPG 2.0.0 + MIMIC-IV-Note 2.2.

Writes the PhysioNet folder layouts with the real column orders and renderings
(`clintraj.data.mimic.tables`): ints without ".0", "YYYY-MM-DD HH:MM:SS"
datetimes, blank fields for missing values, gzip CSV, quoted multi-line note
text, JPEGs under files/pXX/pSUBJECT/sSTUDY/. Every value is driven by the
latent cohort of `latent.draw_cohort`, so labels are learnable from the raw
files: mortality -> hospital_expire_flag, phenotypes -> ICD codes of the right
HCUP CCS group, the latent factors -> vitals, labs, image opacity and note
findings. Stays are generated chunk by chunk (never splitting a patient), each
chunk from its own seeded generator, so memory is flat and output is
byte-identical for the same (seed, n_stays, chunk_stays, presence).

One module per part: `stays.py` (a chunk's stays, ids and timelines), `admissions.py`
(patients, admissions, diagnoses, icustays), `events.py` (chartevents, labevents, from
the physiology of `signals.py`), `images.py` (MIMIC-CXR-JPG), `notes.py` (MIMIC-IV-Note);
`helpers.py` holds the small draws and MIMIC's renderings they share.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from clintraj.data.mimic import tables as mt
from clintraj.data.synthetic import latent
from clintraj.data.synthetic.mimic.admissions import (
    FILLER_ICD_CODES, PHENOTYPE_ICD_CODES, admissions_table, diagnoses_table, icustays_table, patients_table,
)
from clintraj.data.synthetic.mimic.chest import chest_findings
from clintraj.data.synthetic.mimic.events import chartevents_table, labevents_table
from clintraj.data.synthetic.mimic.images import IMAGE_SIZE, cxr_metadata_table, cxr_studies, write_images
from clintraj.data.synthetic.mimic.notes import (
    LEAK_AFTER_HOURS, LEAK_TEXTS, discharge_table, leak_notes, padded, radiology_table,
)
from clintraj.data.synthetic.mimic.other_items import other_item_batches, rows_per_stay
from clintraj.data.synthetic.mimic.phenotypes import MORTALITY
from clintraj.data.synthetic.mimic.stays import Counters, IdPlan, Stays
from clintraj.data.synthetic.writer import GzipCsvWriter

__all__ = [
    "DEFAULT_PRESENCE", "FILLER_ICD_CODES", "IMAGE_SIZE", "LEAK_AFTER_HOURS", "LEAK_TEXTS", "MODALITIES",
    "PHENOTYPE_ICD_CODES", "generate",
]

MODALITIES = ("time_series", "cxr", "discharge_note", "radiology_note", "demographics")

# P(modality present) per stay. Sparse like MIMIC-IV ICU cohorts linked to CXR and
# notes: ~28% of stays have exactly one of the four clinical modalities, ~4% all
# four. Demographics (admissions' insurance/language/marital status/race) are
# always there unless asked otherwise.
DEFAULT_PRESENCE = {
    "time_series": 0.75,
    "cxr": 0.30,
    "discharge_note": 0.45,
    "radiology_note": 0.40,
    "demographics": 1.0,
}

_COHORT_STREAM, _PRESENCE_STREAM, _CHUNK_STREAM, _LEAK_STREAM, _OTHER_ITEMS_STREAM = 0, 1, 2, 3, 4


def generate(
    out: Path,
    n_stays: int,
    seed: int,
    presence: dict[str, float] | None = None,
    chunk_stays: int = 2000,
    progress: bool = True,
    leak: bool = False,
    chart_rows_per_stay: int = 0,
    note_chars: dict[str, int] | None = None,
) -> dict[str, int]:
    """Write synthetic MIMIC-IV + MIMIC-CXR-JPG + MIMIC-IV-Note under `out`.

    `presence` overrides DEFAULT_PRESENCE per modality (P(present) per stay). `leak` plants, for
    testing prediction windows, one radiology report per stay that states the mortality label
    (`LEAK_TEXTS`), charted before ICU discharge and, when the stay is longer, after 48 h; every
    other table is the same as without it. `chart_rows_per_stay` (0: off) adds chartevents rows of
    MIMIC-IV items outside the 17 variables (`other_items.py`) until the stays with the time-series
    modality have that many chart rows on average (real MIMIC-IV: about 4,300); the 17 variables'
    rows, and every other table, are the same as without them. `note_chars` (note modality ->
    characters, e.g. `REAL_NOTE_CHARS`) pads each note of that modality with clinical filler
    text to at least that length (the synthetic notes are a few hundred characters; real
    discharge summaries about 10,000), for measuring memory at real note sizes; the draws, and
    so every other column and table, are the same as without it.
    Returns the rows written per table, keyed by path relative to `out`.
    """
    if not 1 <= n_stays < 10_000_000:
        raise ValueError(f"n_stays must be in [1, 10_000_000), got {n_stays}")
    if chart_rows_per_stay < 0:
        raise ValueError(f"chart_rows_per_stay must be >= 0, got {chart_rows_per_stay}")
    if chunk_stays < 1:
        raise ValueError(f"chunk_stays must be >= 1, got {chunk_stays}")
    out = Path(out)
    profile = _presence_profile(presence)
    cohort = latent.draw_cohort(np.random.default_rng([seed, _COHORT_STREAM]), n_stays, mortality=MORTALITY)
    present = latent.presence(np.random.default_rng([seed, _PRESENCE_STREAM]), n_stays, profile)
    ids = IdPlan.for_sizes(n_patients=int(cohort.patient_index[-1]) + 1, n_stays=n_stays)
    counters = Counters()
    with ExitStack() as stack:
        writers = {t.path: stack.enter_context(GzipCsvWriter(out / t.path, list(t.columns))) for t in mt.MIMIC_TABLES}
        bar = stack.enter_context(tqdm(total=n_stays, disable=not progress, unit="stay", desc="mimic"))
        for k, (start, stop) in enumerate(_chunks(cohort.patient_index, chunk_stays)):
            rng = np.random.default_rng([seed, _CHUNK_STREAM, k])
            stays = Stays.draw(cohort, present, start, stop, ids, rng)
            tables = _chunk_tables(stays, rng, counters, out)
            if leak:
                planted = leak_notes(stays, np.random.default_rng([seed, _LEAK_STREAM, k]))
                tables[mt.RADIOLOGY.path] = pd.concat([tables[mt.RADIOLOGY.path], planted], ignore_index=True)
            for modality, length in (note_chars or {}).items():
                path = NOTE_TABLES[modality]
                tables[path] = tables[path].assign(text=padded(tables[path]["text"], length))
            for path, frame in tables.items():
                writers[path].write(frame)
            if chart_rows_per_stay:
                chart = writers[mt.CHARTEVENTS.path]
                other = np.random.default_rng([seed, _OTHER_ITEMS_STREAM, k])
                counts = rows_per_stay(stays, other, chart_rows_per_stay, len(tables[mt.CHARTEVENTS.path]))
                for batch in other_item_batches(stays, counts, other, chart.columns):
                    chart.write_arrow(batch)
            bar.update(stop - start)
    return {path: writer.rows for path, writer in writers.items()}


NOTE_TABLES = {"discharge_note": mt.DISCHARGE.path, "radiology_note": mt.RADIOLOGY.path}


def _presence_profile(presence: dict[str, float] | None) -> dict[str, float]:
    unknown = set(presence or {}) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
    return {**DEFAULT_PRESENCE, **(presence or {})}


def _chunks(patient_index: np.ndarray, chunk_stays: int) -> Iterator[tuple[int, int]]:
    """Stay ranges of about `chunk_stays` stays that never split a patient's stays."""
    n, start = len(patient_index), 0
    while start < n:
        stop = min(start + chunk_stays, n)
        stop = int(np.searchsorted(patient_index, patient_index[stop - 1], side="right"))
        yield start, stop
        start = stop


def _chunk_tables(stays: Stays, rng: np.random.Generator, counters: Counters, out: Path) -> dict:
    """All rows of one chunk, keyed by table path. The call order fixes the draws."""
    findings = chest_findings(stays, rng)
    studies = cxr_studies(stays, rng)
    write_images(stays, findings, studies, rng, out / "mimic-cxr-jpg")
    return {
        mt.PATIENTS.path: patients_table(stays),
        mt.ADMISSIONS.path: admissions_table(stays, rng),
        mt.DIAGNOSES_ICD.path: diagnoses_table(stays, rng),
        mt.ICUSTAYS.path: icustays_table(stays, rng),
        mt.CHARTEVENTS.path: chartevents_table(stays, rng),
        mt.LABEVENTS.path: labevents_table(stays, rng, counters),
        mt.CXR_METADATA.path: cxr_metadata_table(stays, studies),
        mt.DISCHARGE.path: discharge_table(stays, findings, rng),
        mt.RADIOLOGY.path: radiology_table(stays, findings, rng),
    }
