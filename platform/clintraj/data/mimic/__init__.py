"""MIMIC-IV v2.2 (+ MIMIC-CXR-JPG 2.0.0, MIMIC-IV-Note 2.2) raw files to the cohort,
labels and five modality tables (paper appendix A.1, A.2).

Layout: `raw` holds `hosp/` and `icu/`; `cxr` is the MIMIC-CXR-JPG root
(`mimic-cxr-2.0.0-metadata.csv.gz`, `files/`); `notes` is the MIMIC-IV-Note root
(`note/discharge.csv.gz`, `note/radiology.csv.gz`). `cxr` / `notes` may be None:
that modality is then absent for every stay, and the funnel says so.

Cohort: the ICU stays of `icu/icustays` with a valid stay_id and intime < outtime,
of subjects in the MIMIC-CXR metadata (the paper's inner join of the CXR metadata
and icustays on subject_id; `MimicConfig.require_cxr_subject`, applied when `cxr`
is given), kept when they have at least one modality. Everything per stay is
computed on those stays first; the last funnel step drops the stays with none.

Modalities, one module each; its docstring says how they are read:

* time_series (`measurements.py`): the 17 mimic3-benchmarks variables of
  `icu/chartevents` (and `hosp/labevents`), in hourly bins, each an event when it closes.
* cxr (`cxr.py`): AP chest X-rays strictly inside the stay, each an event at its study time.
* discharge_note / radiology_note (`notes.py`): the cleaned notes of the stay's admission,
  one event per note.
* demographics (`demographics.py`): admission and patient fields, known at admission.

Labels: `died` (admissions.hospital_expire_flag) and the 25 phenotypes
`pheno:<name>` from the admission's ICD-9 / ICD-10 codes
(`resources/phenotypes.yaml`); NA when the admission has no row to read them from.

Modules: `stays.py` (the stays and their admissions), `labels.py`, one per modality (above),
`config.py` (`MimicConfig`, `MODALITIES`), `tables.py` (the schemas, item ids and normal
values); the streamed CSV reading they share is `data.rawio`'s.

Outputs (sorted by stay_id): `stays` has stay_id, patient_id (subject_id as
text), hadm_id, intime (a date: for internal use only, never written or logged),
the labels and unit_hours. `events["time_series"]` holds one row per bin with a
measurement (time_hours = when the bin closes, the 17 imputed values,
`mask:<variable>`); the per-stay summaries are `data.modalities.summarise` of a
window's bins.

Quarantine vs filtering: rows that are malformed or contradict the stay they name
(a non-numeric value, NaN/inf, a chart time outside its stay, a duplicate row, an
unparseable date) are counted in the Quarantine by (table, reason) with their
0-based data row in the file. Rows that are simply not ICU data of the cohort
(other items, outpatient labs and notes, PA views, images outside the stay) are
filtered and counted in the funnel's `detail`. Every data row of every table read is
counted once in the Quarantine's ledger, as used, filtered (by reason) or quarantined
(`rawio.Quarantine.accounts`). Nothing here logs or raises with note text, ids or dates.
"""

from __future__ import annotations

import logging
import tempfile
from functools import partial
from pathlib import Path

import pandas as pd

from clintraj.data.cohort import CohortTables
from clintraj.data.event_parts import Parts
from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.config import HOUR, MODALITIES, MODALITY_NAMES, MimicConfig
from clintraj.data.mimic.cxr import cxr_modality, study_datetime
from clintraj.data.modalities import event_frames, event_stays
from clintraj.data.mimic.demographics import demographics_table, read_patients
from clintraj.data.mimic.labels import OTHER_ADMISSION, expire_flags, load_phenotypes, mortality, phenotype_labels
from clintraj.data.mimic.measurements import discretize, load_measurements, normal_values, time_series
from clintraj.data.mimic.notes import clean_note_text, note_modality
from clintraj.data.mimic.stays import cxr_linked_stays, load_stays, read_admissions
from clintraj.data.rawio import Quarantine, parse_datetime, read_apart
from clintraj.tasks import PHENOTYPE_PREFIX

__all__ = [
    "MODALITIES", "MODALITY_NAMES", "MimicConfig", "build", "clean_note_text", "discretize", "load_measurements",
    "load_phenotypes", "load_stays", "normal_values", "parse_datetime", "study_datetime", "time_series",
]

log = logging.getLogger(__name__)


def _absent(name: str) -> pd.DataFrame:
    """The (empty) events of a modality whose source was not given."""
    if name == "cxr":
        return pd.DataFrame({"stay_id": pd.Series(dtype="int64"), "time_hours": pd.Series(dtype="float64"),
                             "dicom_id": pd.Series(dtype="string"), "study_id": pd.Series(dtype="int64"),
                             "path": pd.Series(dtype="string")})
    return pd.DataFrame({"stay_id": pd.Series(dtype="int64"), "time_hours": pd.Series(dtype="float64"),
                         "note_index": pd.Series(dtype="int64"), "text": pd.Series(dtype="string")})


_MODALITY_STEPS = {
    "time_series": "stays with a measurement of the 17 variables inside the stay",
    "cxr": "stays with an AP chest X-ray strictly inside the stay",
    "discharge_note": "stays whose admission has a discharge note",
    "radiology_note": "stays whose admission has a radiology report",
    "demographics": "stays with a known admission or patient field",
}


def build(raw: Path, cxr: Path | None, notes: Path | None, config: MimicConfig | None = None,
          scratch: Path | None = None) -> CohortTables:
    """Cohort, labels and the events of every modality of one raw MIMIC-IV folder, with the
    MIMIC-CXR-JPG and MIMIC-IV-Note roots when given (None: that modality is absent). The notes'
    events stay on disk under `scratch` when given (an empty folder every reader can reach:
    `event_parts`; `data.prepare`'s way at full size), else they come back in memory."""
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="clintraj-mimic-") as folder:
            tables = build(raw, cxr, notes, config, Path(folder))
            tables.events = {name: pd.concat(list(event_frames(events)), ignore_index=True)
                             for name, events in tables.events.items()}
            return tables
    config = config or MimicConfig()
    raw = Path(raw)
    quarantine = Quarantine()
    stays, funnel = load_stays(raw, quarantine)
    valid = len(stays)
    stays = cxr_linked_stays(stays, cxr, config, funnel)
    quarantine.count_filtered(mt.ICUSTAYS.path, "subject without a row in the MIMIC-CXR metadata", valid - len(stays))
    stays["unit_hours"] = (stays["outtime"] - stays["intime"]) / HOUR
    admissions = read_admissions(raw, quarantine)
    stays["dischtime"] = parse_datetime(admissions["dischtime"].reindex(stays["hadm_id"]).reset_index(drop=True)
                                        ).set_axis(stays.index)
    stays["died"] = mortality(stays, admissions)
    phenotypes, diagnoses = phenotype_labels(raw, stays, config, quarantine)
    stays = pd.concat([stays, phenotypes], axis=1)

    readers = {"time_series": partial(time_series, raw, stays, config)}  # the sources given, one file each
    if cxr is not None:
        readers["cxr"] = partial(cxr_modality, cxr, stays, config)
    if notes is not None:
        readers |= {name: partial(note_modality, notes, name, stays, config, scratch=scratch)
                    for name in ("discharge_note", "radiology_note")}
    read = dict(zip(readers, read_apart(list(readers.values()), quarantine)))  # on a Ray cluster: over its nodes
    events = {name: read[name][0] if name in read else _absent(name)
              for name in ("time_series", "cxr", "discharge_note", "radiology_note")}
    details = {name: detail for name, (_, detail) in read.items()}
    patients = read_patients(raw, quarantine)
    static = {"demographics": demographics_table(stays, admissions, patients, config)}
    events["demographics"] = pd.DataFrame({"stay_id": static["demographics"]["stay_id"], "time_hours": 0.0})

    missing_source = {"cxr": cxr is None, "discharge_note": notes is None, "radiology_note": notes is None}
    has = {}
    for name in MODALITY_NAMES:
        has[name] = stays["stay_id"].isin(event_stays(events[name]))
        step = _MODALITY_STEPS[name]
        if missing_source.get(name, False):
            step = f"not provided ({'cxr' if name == 'cxr' else 'notes'}=None): absent for every stay"
        # a modality step removes no stay: it says how many have the modality (the last step removes)
        funnel.append({"step": f"{name}: {step}", "removed": 0, "remaining": len(stays),
                       "stays_with_modality": int(has[name].sum()), "detail": details.get(name, {})})
    present = pd.concat(has, axis=1).any(axis=1)
    funnel.append({"step": "no modality present", "removed": int((~present).sum()), "remaining": int(present.sum())})
    quarantine.count_filtered(mt.ICUSTAYS.path, "no modality present", (~present).sum())
    _account_stay_tables(stays[present], admissions, patients, diagnoses, quarantine)
    return _cohort_tables(stays[present], events, static, funnel, quarantine, scratch)


def _account_stay_tables(cohort: pd.DataFrame, admissions: pd.DataFrame, patients: pd.DataFrame,
                         diagnoses: pd.Series, quarantine: Quarantine) -> None:
    """The ledger of the per-stay tables once the cohort is final: its icustays rows, and the
    admissions, patients and diagnoses rows of its stays, are used (the others filtered); the
    fields of used rows read as missing are entered (field-level)."""
    quarantine.count_used(mt.ICUSTAYS.path, len(cohort))
    hadms = cohort["hadm_id"].dropna().astype("int64").unique()
    used = admissions.index.isin(hadms)
    quarantine.count_used(mt.ADMISSIONS.path, used.sum())
    quarantine.count_filtered(mt.ADMISSIONS.path, OTHER_ADMISSION, (~used).sum())
    quarantine.add(mt.ADMISSIONS.path, "hospital_expire_flag not 0/1 (mortality label unknown)",
                   admissions.loc[used & expire_flags(admissions).isna().to_numpy(), "row"], field_only=True)
    used = patients.index.isin(cohort["subject_id"])
    quarantine.count_used(mt.PATIENTS.path, used.sum())
    quarantine.count_filtered(mt.PATIENTS.path, "patient of no cohort stay", (~used).sum())
    unknown = (patients["anchor_age"].isna() | patients["anchor_year"].isna()).to_numpy()
    quarantine.add(mt.PATIENTS.path, "anchor_age or anchor_year missing or not a number (age unknown)",
                   patients.loc[used & unknown, "row"], field_only=True)
    used = diagnoses.index.isin(hadms)
    quarantine.count_used(mt.DIAGNOSES_ICD.path, diagnoses[used].sum())
    quarantine.count_filtered(mt.DIAGNOSES_ICD.path, OTHER_ADMISSION, diagnoses[~used].sum())


def _cohort_tables(stays: pd.DataFrame, events: dict, static: dict, funnel: list[dict],
                   quarantine: Quarantine, scratch: Path) -> CohortTables:
    """The final CohortTables: everything restricted to the cohort and sorted by stay_id (events
    on disk a part at a time: each holds a range of stays)."""
    stays = stays.sort_values("stay_id", kind="stable").reset_index(drop=True)
    stays.insert(1, "patient_id", stays.pop("subject_id").astype("string"))
    labels = ["died", *[c for c in stays.columns if c.startswith(PHENOTYPE_PREFIX)]]
    stays = stays[["stay_id", "patient_id", "hadm_id", "intime", *labels, "unit_hours"]]
    ids = stays["stay_id"]

    def restrict(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
        frame = frame[frame["stay_id"].isin(ids)].sort_values(order, kind="stable").reset_index(drop=True)
        return frame.astype({"stay_id": "int64"})

    static = {m: restrict(table, ["stay_id"]) for m, table in static.items()}
    order = {"cxr": ["stay_id", "time_hours", "dicom_id"], "discharge_note": ["stay_id", "time_hours", "note_index"],
             "radiology_note": ["stay_id", "time_hours", "note_index"]}
    timelines = {}
    for m in MODALITY_NAMES:
        by = partial(restrict, order=order.get(m, ["stay_id", "time_hours"]))
        timelines[m] = events[m].rewrite(by, scratch / f"{m}-cohort") if isinstance(events[m], Parts) else by(events[m])
    log.info("MIMIC-IV cohort: %d stays; %s", len(stays),
             ", ".join(f"{m} {len(event_stays(timelines[m]))}" for m in MODALITY_NAMES))
    return CohortTables(MODALITIES, stays, timelines, static, funnel, quarantine, label_columns=tuple(labels))
