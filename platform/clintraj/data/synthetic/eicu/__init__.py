"""Synthetic eICU-CRD v2.0 in the real flat layout: patient, lab, diagnosis, treatment,
medication and apacheApsVar `.csv.gz` files with the real columns and value formats.

Each stay's hidden state (`latent.draw_cohort`) drives its labels (in-hospital
mortality, length of stay) and what every table shows about it, so a model
learns from any one table and learns more from all of them.

Work is split in two. `_draw_stays` draws, for all stays at once, what ties a
stay to its neighbours or to the labels (cohort, ids, hospitalizations and
their timelines, patient attributes): a few numbers per stay. Then each chunk
of `chunk_stays` stays draws its rows from its own generator
(`default_rng([seed, 3, chunk])`) and is written before the next one starts,
so memory does not grow with `n_stays` and the bytes depend only on the
arguments.

One module per table (`patient.py`, `labs.py`, `diagnoses.py`, `therapies.py` for
treatment and medication, `aps.py`), beside `stays.py` (the stays and what is drawn
for all of them), `helpers.py` (small shared draws and renderings) and `vocabulary.py`
(the eICU strings the tables use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from clintraj.data import eicu_tables as T
from clintraj.data.synthetic.eicu.aps import aps_frame
from clintraj.data.synthetic.eicu.diagnoses import diagnosis_frame
from clintraj.data.synthetic.eicu.labs import LEAK_AFTER_MINUTES, LEAK_LAB, lab_frame
from clintraj.data.synthetic.eicu.patient import patient_frame
from clintraj.data.synthetic.eicu.stays import (
    MODALITIES, Stays, hospitalizations, patient_attributes, stay_ids, timeline,
)
from clintraj.data.synthetic.eicu.therapies import medication_frame, treatment_frame
from clintraj.data.synthetic.latent import draw_cohort, presence
from clintraj.data.synthetic.writer import GzipCsvWriter

__all__ = ["DEFAULT_PRESENCE", "LEAK_AFTER_MINUTES", "LEAK_LAB", "MODALITIES", "generate"]

DEFAULT_PRESENCE = {
    "demographics": 0.99,
    "diagnosis": 0.97,
    "treatment": 0.96,
    "medication": 0.96,
    "lab": 0.97,
    "aps": 0.96,
}
"""P(present) per modality, drawn independently: about 82% of stays have all six.

An absent modality has no rows in its table; absent demographics blank the
descriptive fields of the patient row (the row itself always exists)."""

_COHORT, _PRESENCE, _STAYS, _CHUNK, _LEAK = range(5)  # random streams, see _draw_stays / generate
_ID_BASE = {"lab": 150_000_000, "diagnosis": 7_000_000, "treatment": 8_500_000,
            "medication": 6_500_000, "apacheApsVar": 1_000}  # fmt: skip


def generate(
    out: Path,
    n_stays: int,
    seed: int,
    presence: dict[str, float] | None = None,
    chunk_stays: int = 2000,
    progress: bool = True,
    leak: bool = False,
    lab_draws: float = 1.0,
) -> dict[str, int]:
    """Write the six eICU tables for `n_stays` unit stays under `out`; return rows per file name.

    `presence` overrides entries of DEFAULT_PRESENCE ({modality: P(present)}). `leak` plants, for
    testing prediction windows, one lab result `LEAK_LAB` per stay whose value is the mortality
    label (1 died, 0 survived), before unit discharge and, when the stay is longer, after 12 h;
    every other byte is the same as without it, but for the lab ids. `lab_draws` scales each lab
    panel's draws per day and its cap per stay: 1 gives about 65 lab rows per stay, 3.8 about the
    real database's 195 (39 M rows over 200,859 stays).
    """
    if chunk_stays < 1:
        raise ValueError(f"chunk_stays must be >= 1, got {chunk_stays}")
    stays = _draw_stays(seed, n_stays, _presence_profile(presence))
    out = Path(out)
    writers = {table.name: GzipCsvWriter(out / table.file, list(table.columns)) for table in T.TABLES}
    try:
        with tqdm(total=n_stays, unit="stay", desc="eicu", disable=not progress) as bar:
            for index, start in enumerate(range(0, n_stays, chunk_stays)):
                chunk = stays.take(slice(start, start + chunk_stays))
                rng = np.random.default_rng([seed, _CHUNK, index])
                leak_rng = np.random.default_rng([seed, _LEAK, index]) if leak else None
                rows_so_far = {k: w.rows for k, w in writers.items()}
                for name, frame in _chunk_frames(rng, chunk, rows_so_far, leak_rng, lab_draws):
                    writers[name].write(frame)
                bar.update(chunk.n)
    finally:
        for writer in writers.values():
            writer.close()
    return {writers[table.name].path.name: writers[table.name].rows for table in T.TABLES}


def _presence_profile(overrides: dict[str, float] | None) -> dict[str, float]:
    unknown = set(overrides or {}) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; eICU has {MODALITIES}")
    return {**DEFAULT_PRESENCE, **(overrides or {})}


def _chunk_frames(rng: np.random.Generator, s: Stays, rows_so_far: dict[str, int],
                  leak_rng: np.random.Generator | None = None, lab_draws: float = 1.0):
    """Yield (table name, rows) for one chunk; ids continue from the rows already written."""
    yield "patient", patient_frame(rng, s)
    yield "lab", lab_frame(rng, s, _ID_BASE["lab"] + rows_so_far["lab"], leak_rng, lab_draws)
    yield "diagnosis", diagnosis_frame(rng, s, _ID_BASE["diagnosis"] + rows_so_far["diagnosis"])
    yield "treatment", treatment_frame(rng, s, _ID_BASE["treatment"] + rows_so_far["treatment"])
    yield "medication", medication_frame(rng, s, _ID_BASE["medication"] + rows_so_far["medication"])
    yield "apacheApsVar", aps_frame(rng, s, _ID_BASE["apacheApsVar"] + rows_so_far["apacheApsVar"])


def _draw_stays(seed: int, n_stays: int, probabilities: dict[str, float]) -> Stays:
    cohort = draw_cohort(np.random.default_rng([seed, _COHORT]), n_stays)
    shown = presence(np.random.default_rng([seed, _PRESENCE]), n_stays, probabilities)
    rng = np.random.default_rng([seed, _STAYS])
    hospitalization = hospitalizations(rng, cohort.stay_number, cohort.died)
    los = np.maximum(np.round(cohort.los_hours * 60), 1).astype(np.int64)
    return Stays(
        latent=cohort.latent,
        traits=cohort.traits,
        died=cohort.died,
        los=los,
        phenotypes=cohort.phenotypes,
        present=np.column_stack([shown[m] for m in MODALITIES]),
        **stay_ids(rng, cohort.stay_number, hospitalization),
        **timeline(rng, hospitalization, los, cohort.died),
        **patient_attributes(rng, cohort.patient_index, cohort.stay_number, cohort.latent, cohort.traits),
    )
