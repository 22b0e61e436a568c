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
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from clintraj.data.mimic import tables as mt
from clintraj.data.synthetic import latent
from clintraj.data.synthetic.latent import CARDIAC, INFECTION, PHENOTYPES, RESPIRATORY, SEVERITY
from clintraj.data.synthetic.writer import GzipCsvWriter

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

IMAGE_SIZE = 64  # pixels, square grayscale JPEGs

_COHORT_STREAM, _PRESENCE_STREAM, _CHUNK_STREAM, _LEAK_STREAM = 0, 1, 2, 3
LEAK_AFTER_HOURS = 48  # the planted leak (`leak=True`) lies after MIMIC-IV mortality's prediction time
LEAK_TEXTS = ("label marker: the patient is recovering", "label marker: the patient expired")
_MAX_STUDIES_PER_STAY = 8  # study_id = 50000000 + 8 * stay index + study number
_HOUR = 3600
_DAY = 86400

# --- ICD codes -------------------------------------------------------------------
# A few ICD-9 and ICD-10-CM codes (no dots, as MIMIC writes them) per HCUP CCS
# benchmark group, each a member of that group in the MedFuse MIMIC-IV definitions
# (icd_9_10_definitions_2.yaml, derived from HCUP CCS 2015 + CMS GEMs) and of no
# other benchmark group. Keys follow latent.PHENOTYPES.
PHENOTYPE_ICD_CODES: dict[str, dict[int, tuple[str, ...]]] = {
    "Acute and unspecified renal failure": {9: ("5849", "5845"), 10: ("N179", "N170")},
    "Acute cerebrovascular disease": {9: ("431", "43491"), 10: ("I619", "I6350", "I629")},
    "Acute myocardial infarction": {9: ("41071", "41041"), 10: ("I214", "I2129")},
    "Cardiac dysrhythmias": {9: ("42731", "4271", "42732"), 10: ("I4891", "I472")},
    "Chronic kidney disease": {9: ("5853", "5856"), 10: ("N183", "N186", "Z992")},
    "Chronic obstructive pulmonary disease and bronchiectasis": {9: ("49121", "496"), 10: ("J449", "J441")},
    "Complications of surgical procedures or medical care": {
        9: ("99859", "99702", "9974"),
        10: ("K9189", "J95851", "I9581"),
    },
    "Conduction disorders": {9: ("4263", "42611", "4264"), 10: ("I442", "I447", "Z950")},
    "Congestive heart failure; nonhypertensive": {9: ("4280", "42833", "42823"), 10: ("I5033", "I509", "I5023")},
    "Coronary atherosclerosis and other heart disease": {9: ("41401", "4139"), 10: ("I2510", "Z951")},
    "Diabetes mellitus with complications": {9: ("25040", "25060", "25013"), 10: ("E1165", "E1140")},
    "Diabetes mellitus without complication": {9: ("25000",), 10: ("E119",)},
    "Disorders of lipid metabolism": {9: ("2724", "2720"), 10: ("E785", "E7801")},
    "Essential hypertension": {9: ("4019",), 10: ("I10",)},
    "Fluid and electrolyte disorders": {9: ("2761", "2762", "2765", "2767"), 10: ("E871", "E872", "E860", "E875")},
    "Gastrointestinal hemorrhage": {9: ("5789", "5781"), 10: ("K922", "K921", "K920")},
    "Hypertension with complications and secondary hypertension": {9: ("40391", "40390"), 10: ("I129", "I130")},
    "Other liver diseases": {9: ("5715", "5723"), 10: ("K7469", "K766")},
    "Other lower respiratory disease": {9: ("7862", "78605"), 10: ("R0602", "R0989", "J984")},
    "Other upper respiratory disease": {9: ("4781",), 10: ("R040", "J387", "J9801")},
    "Pleurisy; pneumothorax; pulmonary collapse": {9: ("5119", "5180", "51189"), 10: ("J918", "J939")},
    "Pneumonia (except that caused by tuberculosis or sexually transmitted disease)": {
        9: ("486", "4829", "481"),
        10: ("J189", "J159", "J181"),
    },
    "Respiratory failure; insufficiency; arrest (adult)": {9: ("51881", "51882"), 10: ("J9600", "J9620", "J9690")},
    "Septicemia (except in labor)": {9: ("0389", "99591", "99592"), 10: ("A419", "R6520")},
    "Shock": {9: ("78552", "78551"), 10: ("R6521", "R570")},
}
# Common secondary diagnoses outside all 25 benchmark groups (anemia, GERD, tobacco, ...).
FILLER_ICD_CODES: dict[int, tuple[str, ...]] = {
    9: ("V5861", "3051", "2859", "53081", "311", "V1582", "2449", "E8497", "32723", "2809", "V103", "7806", "27800"),
    10: ("Z87891", "D649", "K219", "F329", "Z794", "Z7901", "E039", "Z66", "Y929", "G4733", "D509", "Z853", "R509"),
}
_ANCHOR_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")
_ICD10_FROM_REAL_YEAR = 2016  # US switch to ICD-10-CM: October 2015

# --- admissions vocabularies (values as they appear in MIMIC-IV) ------------------
_ADMISSION_TYPES = (
    ("EW EMER.", 0.45), ("URGENT", 0.15), ("OBSERVATION ADMIT", 0.12), ("EU OBSERVATION", 0.08),
    ("SURGICAL SAME DAY ADMISSION", 0.08), ("DIRECT EMER.", 0.06), ("ELECTIVE", 0.06),
)
_ADMISSION_LOCATIONS = (
    ("EMERGENCY ROOM", 0.55), ("PHYSICIAN REFERRAL", 0.2), ("TRANSFER FROM HOSPITAL", 0.15),
    ("CLINIC REFERRAL", 0.04), ("PROCEDURE SITE", 0.03), ("WALK-IN/SELF REFERRAL", 0.03),
)
_DISCHARGE_LOCATIONS = (
    ("HOME HEALTH CARE", 0.3), ("HOME", 0.27), ("", 0.12), ("SKILLED NURSING FACILITY", 0.15),
    ("REHAB", 0.07), ("CHRONIC/LONG TERM ACUTE CARE", 0.05), ("HOSPICE", 0.02), ("AGAINST ADVICE", 0.02),
)
_INSURANCE = (("Other", 0.5), ("Medicare", 0.4), ("Medicaid", 0.1))
_LANGUAGE = (("ENGLISH", 0.92), ("?", 0.08))
_MARITAL = (("SINGLE", 0.38), ("MARRIED", 0.32), ("WIDOWED", 0.15), ("DIVORCED", 0.1), ("", 0.05))
_RACE = (
    ("WHITE", 0.62), ("BLACK/AFRICAN AMERICAN", 0.16), ("UNKNOWN", 0.06), ("HISPANIC/LATINO - PUERTO RICAN", 0.04),
    ("ASIAN", 0.04), ("OTHER", 0.03), ("WHITE - OTHER EUROPEAN", 0.02), ("UNABLE TO OBTAIN", 0.02),
    ("HISPANIC OR LATINO", 0.01),
)
_CAREUNITS = (
    "Medical Intensive Care Unit (MICU)",
    "Surgical Intensive Care Unit (SICU)",
    "Medical/Surgical Intensive Care Unit (MICU/SICU)",
    "Trauma SICU (TSICU)",
    "Neuro Surgical Intensive Care Unit (Neuro SICU)",
    "Cardiac Vascular Intensive Care Unit (CVICU)",
    "Coronary Care Unit (CCU)",
)


def generate(
    out: Path,
    n_stays: int,
    seed: int,
    presence: dict[str, float] | None = None,
    chunk_stays: int = 2000,
    progress: bool = True,
    leak: bool = False,
) -> dict[str, int]:
    """Write synthetic MIMIC-IV + MIMIC-CXR-JPG + MIMIC-IV-Note under `out`.

    `presence` overrides DEFAULT_PRESENCE per modality (P(present) per stay). `leak` plants, for
    testing prediction windows, one radiology report per stay that states the mortality label
    (`LEAK_TEXTS`), charted before ICU discharge and, when the stay is longer, after 48 h; every
    other table is the same as without it.
    Returns the rows written per table, keyed by path relative to `out`.
    """
    if not 1 <= n_stays < 10_000_000:
        raise ValueError(f"n_stays must be in [1, 10_000_000), got {n_stays}")
    if chunk_stays < 1:
        raise ValueError(f"chunk_stays must be >= 1, got {chunk_stays}")
    out = Path(out)
    profile = _presence_profile(presence)
    cohort = latent.draw_cohort(np.random.default_rng([seed, _COHORT_STREAM]), n_stays)
    present = latent.presence(np.random.default_rng([seed, _PRESENCE_STREAM]), n_stays, profile)
    ids = _IdPlan.for_sizes(n_patients=int(cohort.patient_index[-1]) + 1, n_stays=n_stays)
    counters = _Counters()
    with ExitStack() as stack:
        writers = {t.path: stack.enter_context(GzipCsvWriter(out / t.path, list(t.columns))) for t in mt.MIMIC_TABLES}
        bar = stack.enter_context(tqdm(total=n_stays, disable=not progress, unit="stay", desc="mimic"))
        for k, (start, stop) in enumerate(_chunks(cohort.patient_index, chunk_stays)):
            rng = np.random.default_rng([seed, _CHUNK_STREAM, k])
            stays = _Stays.draw(cohort, present, start, stop, ids, rng)
            tables = _chunk_tables(stays, rng, counters, out)
            if leak:
                planted = _leak_notes(stays, np.random.default_rng([seed, _LEAK_STREAM, k]))
                tables[mt.RADIOLOGY.path] = pd.concat([tables[mt.RADIOLOGY.path], planted], ignore_index=True)
            for path, frame in tables.items():
                writers[path].write(frame)
            bar.update(stop - start)
    return {path: writer.rows for path, writer in writers.items()}


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


def _chunk_tables(stays: "_Stays", rng: np.random.Generator, counters: "_Counters", out: Path) -> dict:
    """All rows of one chunk, keyed by table path. The call order fixes the draws."""
    studies = _cxr_studies(stays, rng)
    _write_images(stays, studies, rng, out / "mimic-cxr-jpg")
    return {
        mt.PATIENTS.path: _patients_table(stays),
        mt.ADMISSIONS.path: _admissions_table(stays, rng),
        mt.DIAGNOSES_ICD.path: _diagnoses_table(stays, rng),
        mt.ICUSTAYS.path: _icustays_table(stays, rng),
        mt.CHARTEVENTS.path: _chartevents_table(stays, rng),
        mt.LABEVENTS.path: _labevents_table(stays, rng, counters),
        mt.CXR_METADATA.path: _cxr_metadata_table(stays, studies),
        mt.DISCHARGE.path: _discharge_table(stays, rng),
        mt.RADIOLOGY.path: _radiology_table(stays, rng),
    }


# --- ids ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _IdPlan:
    """Unique ids independent of chunking: base + index * stride + jitter, jitter < stride."""

    subject_stride: int
    stay_stride: int

    @classmethod
    def for_sizes(cls, n_patients: int, n_stays: int) -> "_IdPlan":
        return cls(min(40, 89_999_999 // n_patients), min(40, 9_999_999 // n_stays))

    @staticmethod
    def draw(base: int, index: np.ndarray, stride: int, rng: np.random.Generator) -> np.ndarray:
        return base + index.astype(np.int64) * stride + rng.integers(0, stride, len(index))


@dataclass
class _Counters:
    """Running ids that continue from one chunk to the next."""

    labevent_id: int = 1
    specimen_id: int = 1_000_000

    def take(self, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` increasing ids with random gaps (real MIMIC ids are not contiguous)."""
        ids = getattr(self, name) + np.cumsum(rng.integers(1, 4, n))
        if n:
            setattr(self, name, int(ids[-1]))
        return ids


# --- the chunk's stays -------------------------------------------------------------


@dataclass
class _Stays:
    """One chunk of stays in chronological order per patient, with their timelines.

    Times are int64 seconds since 1970. A patient dies at most once: the stay that
    died is moved to the end of the patient's history, and if the cohort drew more
    than one death for a patient only the last is kept.
    """

    index: np.ndarray  # cohort row (global stay index)
    patient: np.ndarray  # chunk-local patient index of each stay
    latent: np.ndarray
    died: np.ndarray
    los_hours: np.ndarray
    phenotypes: np.ndarray
    present: dict[str, np.ndarray]
    subject_id: np.ndarray
    hadm_id: np.ndarray
    stay_id: np.ndarray
    admittime: np.ndarray
    intime: np.ndarray
    outtime: np.ndarray
    dischtime: np.ndarray
    ventilated: np.ndarray
    opacity: np.ndarray  # what chest imaging shows: lung disease, infection, severity, tubes
    male: np.ndarray
    icd_version: np.ndarray
    effects: dict[str, np.ndarray]  # per-stay random offsets of each signal
    # per patient
    patient_subject_id: np.ndarray
    patient_male: np.ndarray
    anchor_age: np.ndarray
    anchor_year: np.ndarray
    anchor_year_group: np.ndarray
    dod: np.ndarray  # seconds, -1 when alive

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def deathtime(self) -> np.ndarray:
        return np.where(self.died, self.dischtime, -1)

    @classmethod
    def draw(cls, cohort, present, start: int, stop: int, ids: _IdPlan, rng: np.random.Generator) -> "_Stays":
        """Stays `start:stop` of `cohort` (whole patients) with everything drawn per patient and stay."""
        rows = np.arange(start, stop)
        rows = rows[np.lexsort((cohort.stay_number[rows], cohort.died[rows], cohort.patient_index[rows]))]
        patient_global = cohort.patient_index[rows]
        last_of_patient = np.r_[patient_global[1:] != patient_global[:-1], True]
        first_of_patient = np.r_[True, patient_global[1:] != patient_global[:-1]]
        patient = np.cumsum(first_of_patient) - 1
        n_patients = int(patient[-1]) + 1
        z = cohort.latent[rows]
        died = cohort.died[rows] & last_of_patient

        subject_ids = _IdPlan.draw(10_000_000, patient_global[first_of_patient], ids.subject_stride, rng)
        male = rng.random(n_patients) < 0.56
        first_z = z[first_of_patient]
        anchor_age = np.clip(np.round(rng.normal(63 + 7 * first_z[:, SEVERITY] + 3 * first_z[:, CARDIAC], 13)), 18, 91)
        anchor_year = rng.integers(2110, 2191, n_patients)
        group = rng.integers(0, len(_ANCHOR_YEAR_GROUPS), n_patients)
        real_anchor_year = 2008 + 3 * group + rng.integers(0, 3, n_patients)

        times = _timeline(rng, patient, first_of_patient, anchor_year, cohort.los_hours[rows], died)
        admit_year = times["admittime"].astype("datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
        real_year = real_anchor_year[patient] + admit_year - anchor_year[patient]
        ventilated = rng.random(len(rows)) < _sigmoid(-0.8 + 1.3 * z[:, RESPIRATORY] + 0.9 * z[:, SEVERITY])
        effects = {name: rng.normal(0.0, sig.stay_sd, len(rows)) for name, sig in _SIGNALS.items()}
        effects["weight"] = effects["weight"][first_of_patient][patient] + 8 * (male[patient] - 0.5)  # a patient's own
        dod = _date_of_death(rng, patient, n_patients, died, times["dischtime"], z)
        return cls(
            index=rows,
            patient=patient,
            latent=z,
            died=died,
            los_hours=(times["outtime"] - times["intime"]) / _HOUR,
            phenotypes=cohort.phenotypes[rows],
            present={name: flags[rows] for name, flags in present.items()},
            subject_id=subject_ids[patient],
            hadm_id=_IdPlan.draw(20_000_000, rows, ids.stay_stride, rng),
            stay_id=_IdPlan.draw(30_000_000, rows, ids.stay_stride, rng),
            ventilated=ventilated,
            opacity=z[:, RESPIRATORY] + 0.6 * z[:, INFECTION] + 0.3 * z[:, SEVERITY] + 0.5 * ventilated,
            male=male[patient],
            icd_version=np.where(real_year >= _ICD10_FROM_REAL_YEAR, 10, 9),
            effects=effects,
            patient_subject_id=subject_ids,
            patient_male=male,
            anchor_age=anchor_age.astype(int),
            anchor_year=anchor_year,
            anchor_year_group=np.array(_ANCHOR_YEAR_GROUPS)[group],
            dod=dod,
            **times,
        )


def _timeline(rng, patient, first_of_patient, anchor_year, los_hours, died) -> dict[str, np.ndarray]:
    """Admission, ICU and discharge times; a patient's stays follow one another."""
    n = len(patient)
    pre_icu = np.round(rng.uniform(1, 30, n) * _HOUR)
    los = np.round(los_hours * _HOUR)
    survivor_post = np.clip(np.exp(rng.normal(np.log(72), 0.8, n)), 6, 720) * _HOUR
    ward_death = rng.random(n) < 0.2
    died_post = np.where(ward_death, rng.uniform(6, 96, n) * _HOUR, 0.0)
    post = np.round(np.where(died, died_post, survivor_post))
    gap = rng.uniform(20, 500, n) * _DAY
    span = pre_icu + los + post + gap
    cumulative = np.cumsum(span)
    offset = cumulative - span - np.repeat((cumulative - span)[first_of_patient], np.bincount(patient))
    year_start = (anchor_year - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
    n_patients = len(anchor_year)
    first_admit = year_start + (rng.integers(0, 3, n_patients) * 365 + rng.uniform(0, 360, n_patients)) * _DAY
    admittime = _floor_minute(first_admit[patient] + offset)
    intime = admittime + pre_icu.astype(np.int64)
    outtime = intime + los.astype(np.int64)
    dischtime = _ceil_minute(outtime + post.astype(np.int64))
    return {"admittime": admittime, "intime": intime, "outtime": outtime, "dischtime": dischtime}


def _date_of_death(rng, patient, n_patients, died, dischtime, z) -> np.ndarray:
    """Midnight of the in-hospital death, or for some survivors a death within a year."""
    last = np.r_[patient[1:] != patient[:-1], True]
    dod = np.full(n_patients, -1, dtype=np.int64)
    later = rng.random(n_patients) < _sigmoid(-2.5 + 0.8 * z[last, SEVERITY])
    after_discharge = dischtime[last] + (rng.uniform(10, 365, n_patients) * _DAY).astype(np.int64)
    dod[later] = after_discharge[later]
    dod[died[last]] = dischtime[last][died[last]]
    return np.where(dod >= 0, dod - dod % _DAY, -1)


# --- hosp: patients, admissions, diagnoses ---------------------------------------


def _patients_table(stays: _Stays) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": stays.patient_subject_id,
            "gender": np.where(stays.patient_male, "M", "F"),
            "anchor_age": stays.anchor_age,
            "anchor_year": stays.anchor_year,
            "anchor_year_group": stays.anchor_year_group,
            "dod": _fmt_date(stays.dod),
        }
    )


def _admissions_table(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    n = stays.n
    location = _pick(rng, _ADMISSION_LOCATIONS, n)
    from_ed = location == "EMERGENCY ROOM"
    edregtime = np.where(from_ed, stays.admittime - _floor_minute(rng.uniform(1, 8, n) * _HOUR), -1)
    edouttime = np.where(from_ed, stays.admittime + _floor_minute(rng.uniform(0, 1.5, n) * _HOUR), -1)
    demographics = {
        "insurance": _pick(rng, _INSURANCE, n),
        "language": _pick(rng, _LANGUAGE, n),
        "marital_status": _pick(rng, _MARITAL, n),
        "race": _pick(rng, _RACE, n),
    }
    absent = ~stays.present["demographics"]
    for values in demographics.values():
        values[absent] = ""
    return pd.DataFrame(
        {
            "subject_id": stays.subject_id,
            "hadm_id": stays.hadm_id,
            "admittime": _fmt_datetime(stays.admittime),
            "dischtime": _fmt_datetime(stays.dischtime),
            "deathtime": _fmt_datetime(stays.deathtime),
            "admission_type": _pick(rng, _ADMISSION_TYPES, n),
            "admit_provider_id": _provider_ids(rng, n),
            "admission_location": location,
            "discharge_location": np.where(stays.died, "DIED", _pick(rng, _DISCHARGE_LOCATIONS, n)),
            **demographics,
            "edregtime": _fmt_datetime(edregtime),
            "edouttime": _fmt_datetime(edouttime),
            "hospital_expire_flag": stays.died.astype(int),
        }
    )


def _diagnoses_table(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    """One or two codes of its CCS group per phenotype, plus filler codes, shuffled."""
    stay, group = np.nonzero(stays.phenotypes)
    version = stays.icd_version[stay]
    pools = [PHENOTYPE_ICD_CODES[PHENOTYPES[g]][v] for g, v in zip(group, version)]
    sizes = np.array([len(p) for p in pools], dtype=int)
    first = rng.integers(0, 1 << 30, len(stay)) % sizes
    second = (first + 1 + rng.integers(0, 1 << 30, len(stay)) % np.maximum(sizes - 1, 1)) % sizes  # != first
    two = (rng.random(len(stay)) < 0.4) & (sizes > 1)
    codes = [p[i] for p, i in zip(pools, first)] + [p[i] for p, i, t in zip(pools, second, two) if t]
    code_stay = np.r_[stay, stay[two]]

    filler_stay = np.repeat(np.arange(stays.n), rng.integers(1, 7, stays.n))
    filler_pools = [FILLER_ICD_CODES[v] for v in stays.icd_version[filler_stay]]
    codes += [pool[i % len(pool)] for pool, i in zip(filler_pools, rng.integers(0, 1 << 30, len(filler_stay)))]
    code_stay = np.r_[code_stay, filler_stay]

    frame = pd.DataFrame({"stay": code_stay, "icd_code": codes, "key": rng.random(len(code_stay))})
    frame = frame.drop_duplicates(["stay", "icd_code"]).sort_values(["stay", "key"], kind="stable")
    frame["seq_num"] = frame.groupby("stay").cumcount() + 1
    s = frame["stay"].to_numpy()
    return pd.DataFrame(
        {
            "subject_id": stays.subject_id[s],
            "hadm_id": stays.hadm_id[s],
            "seq_num": frame["seq_num"].to_numpy(),
            "icd_code": frame["icd_code"].to_numpy(),
            "icd_version": stays.icd_version[s],
        }
    )


# --- icu: icustays, chartevents ----------------------------------------------------


def _icustays_table(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    z = stays.latent
    weights = np.stack(
        [
            1.0 + z[:, INFECTION].clip(0) + z[:, RESPIRATORY].clip(0),  # MICU
            np.full(stays.n, 0.8),  # SICU
            np.full(stays.n, 0.8),  # MICU/SICU
            np.full(stays.n, 0.5),  # TSICU
            np.full(stays.n, 0.2),  # Neuro SICU
            0.3 + 0.8 * z[:, CARDIAC].clip(0),  # CVICU
            0.2 + 1.0 * z[:, CARDIAC].clip(0),  # CCU
        ],
        axis=1,
    )
    first = _categorical(rng, weights)
    moved = rng.random(stays.n) < 0.08
    last = np.where(moved, _categorical(rng, weights), first)
    units = np.array(_CAREUNITS)
    return pd.DataFrame(
        {
            "subject_id": stays.subject_id,
            "hadm_id": stays.hadm_id,
            "stay_id": stays.stay_id,
            "first_careunit": units[first],
            "last_careunit": units[last],
            "intime": _fmt_datetime(stays.intime),
            "outtime": _fmt_datetime(stays.outtime),
            "los": (stays.outtime - stays.intime) / _DAY,
        }
    )


@dataclass(frozen=True)
class _Signal:
    """A physiological quantity: normal + loadings . latent (+ per-stay offset, noise),
    resolving over the stay for survivors and drifting by `dying` before a death."""

    normal: float
    loadings: tuple[float, float, float, float, float]  # severity, cardiac, respiratory, renal, infection
    stay_sd: float
    noise_sd: float
    dying: float
    low: float = -np.inf
    high: float = np.inf


_SIGNALS = {
    "heart_rate": _Signal(86, (7, 5, 3, 0, 7), 6, 6, 18, 30, 200),
    "systolic": _Signal(118, (-8, 4, 0, 2, -5), 8, 9, -22, 55, 230),
    "diastolic": _Signal(59, (-5, 1, 0, 1, -3), 5, 6, -12, 25, 130),
    "resp_rate": _Signal(19, (2, 0.5, 3.5, 0.5, 1.5), 2, 3, 6, 5, 50),
    "spo2": _Signal(97.5, (-0.8, -0.3, -1.8, 0, -0.3), 0.8, 1.2, -5, 60, 100),
    "temperature": _Signal(36.9, (0.1, 0, 0, 0, 0.55), 0.2, 0.3, -0.3, 33, 42),
    "glucose": _Signal(128, (12, 4, 0, 10, 8), 15, 25, 15, 30, 600),
    "ph": _Signal(7.40, (-0.035, -0.01, -0.03, -0.03, -0.015), 0.02, 0.03, -0.1, 6.8, 7.7),
    "fio2": _Signal(40, (8, 2, 10, 0, 3), 5, 8, 20, 21, 100),
    "gcs_impairment": _Signal(-0.3, (0.9, 0.3, 0.2, 0.2, 0.2), 0.5, 0.5, 3.0, 0, 5),
    "crr_logit": _Signal(-2.2, (1.1, 0.6, 0, 0, 0.4), 0.5, 0.0, 2.0),
    "weight": _Signal(81, (0, 2, 0, 1, 0), 16, 1.2, 0, 35, 250),
}


def _signal(stays: _Stays, name: str, stay: np.ndarray, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Values of signal `name` for stays `stay` at `hours` after ICU admission."""
    sig = _SIGNALS[name]
    los = stays.los_hours[stay]
    died = stays.died[stay]
    course = np.where(died, 1.0, 1.2 - 0.5 * np.clip(hours / los, 0, 1))
    dying = died * np.exp(-np.clip(los - hours, 0, None) / 12.0)
    level = sig.normal + (stays.latent[stay] @ np.array(sig.loadings)) * course + stays.effects[name][stay]
    return np.clip(level + sig.dying * dying + rng.normal(0, sig.noise_sd, len(stay)), sig.low, sig.high)


def _event_times(rng, stays: _Stays, mask: np.ndarray, per_day: float, minimum: int = 0):
    """Irregular chart times (Poisson count, uniform times) for the stays in `mask`."""
    candidates = np.flatnonzero(mask)
    counts = minimum + rng.poisson(per_day * stays.los_hours[candidates] / 24)
    stay = np.repeat(candidates, counts)
    hours = rng.uniform(0, stays.los_hours[stay])
    return stay, hours


def _charttime(stays: _Stays, stay: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Minute-resolution chart times strictly inside [intime, outtime]."""
    t = stays.intime[stay] + np.round(hours * _HOUR).astype(np.int64)
    up = _ceil_minute(t)
    return np.where(up <= stays.outtime[stay], up, _floor_minute(t))


def _events(stay, t, itemid, value, valuenum, uom) -> pd.DataFrame:
    return pd.DataFrame({"stay": stay, "t": t, "itemid": itemid, "value": value, "valuenum": valuenum, "valueuom": uom})


def _numeric_events(stay, t, itemid, values, decimals, uom) -> pd.DataFrame:
    text = _fmt_number(values, decimals)
    return _events(stay, t, itemid, text, text, uom)


def _chartevents_table(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    """The charted variables of the 17 (all but GCS total, which MetaVision does not
    chart), ~35 rows per stay-day, only for stays with the time-series modality."""
    has = stays.present["time_series"]
    parts = [
        _vital(stays, rng, has, "heart_rate", 220045, "bpm", per_day=4, minimum=1),
        _vital(stays, rng, has, "resp_rate", 220210, "insp/min", per_day=3, minimum=1),
        _vital(stays, rng, has, "spo2", 220277, "%", per_day=3, minimum=1),
        _blood_pressure_events(stays, rng, has),
        _temperature_events(stays, rng, has),
        _gcs_events(stays, rng, has),
        _capillary_refill_events(stays, rng, has),
        _vital(stays, rng, has, "glucose", 225664, "", per_day=1.5),
        _fio2_events(stays, rng, has),
        _ph_chart_events(stays, rng, has),
        _weight_events(stays, rng, has),
        _height_events(stays, rng, has),
    ]
    events = pd.concat(parts, ignore_index=True).sort_values(["stay", "t", "itemid"], kind="stable")
    s = events["stay"].to_numpy()
    t = events["t"].to_numpy()
    n = len(events)
    numeric = events["valuenum"].notna().to_numpy()
    return pd.DataFrame(
        {
            "subject_id": stays.subject_id[s],
            "hadm_id": stays.hadm_id[s],
            "stay_id": stays.stay_id[s],
            "caregiver_id": rng.integers(10_000, 100_000, n),
            "charttime": _fmt_datetime(t),
            "storetime": _fmt_datetime(t + _floor_minute(rng.exponential(20 * 60, n))),
            "itemid": events["itemid"].to_numpy(),
            "value": events["value"].to_numpy(),
            "valuenum": events["valuenum"].to_numpy(),
            "valueuom": events["valueuom"].to_numpy(),
            "warning": ((rng.random(n) < 0.01) & numeric).astype(int),
        }
    )


def _vital(stays, rng, mask, name, itemid, uom, per_day, minimum=0) -> pd.DataFrame:
    """One integer-valued item charted on its own."""
    stay, hours = _event_times(rng, stays, mask, per_day, minimum)
    values = _signal(stays, name, stay, hours, rng)
    return _numeric_events(stay, _charttime(stays, stay, hours), itemid, values, 0, uom)


def _blood_pressure_events(stays, rng, mask) -> pd.DataFrame:
    """Systolic, diastolic and mean charted together, from an arterial line or a cuff."""
    stay, hours = _event_times(rng, stays, mask, per_day=2.5, minimum=1)
    z = stays.latent
    arterial = (rng.random(stays.n) < _sigmoid(-0.3 + 0.8 * z[:, SEVERITY] + 0.4 * z[:, CARDIAC]))[stay]
    systolic = _signal(stays, "systolic", stay, hours, rng)
    diastolic = np.minimum(_signal(stays, "diastolic", stay, hours, rng), systolic - 10)
    mean = (systolic + 2 * diastolic) / 3 + rng.normal(0, 1.5, len(stay))
    t = _charttime(stays, stay, hours)
    ids = {True: (220050, 220051, 220052), False: (220179, 220180, 220181)}
    return pd.concat(
        [
            _numeric_events(stay, t, np.where(arterial, ids[True][i], ids[False][i]), values, 0, "mmHg")
            for i, values in enumerate((systolic, diastolic, mean))
        ]
    )


def _temperature_events(stays, rng, mask) -> pd.DataFrame:
    stay, hours = _event_times(rng, stays, mask, per_day=2.5, minimum=1)
    celsius = _signal(stays, "temperature", stay, hours, rng)
    fahrenheit = rng.random(len(stay)) < 0.85
    t = _charttime(stays, stay, hours)
    return pd.concat(
        [
            _numeric_events(stay[fahrenheit], t[fahrenheit], 223761, celsius[fahrenheit] * 1.8 + 32, 1, "°F"),
            _numeric_events(stay[~fahrenheit], t[~fahrenheit], 223762, celsius[~fahrenheit], 1, "°C"),
        ]
    )


# MIMIC-IV MetaVision GCS answers by score (chartevents value; valuenum is the score).
_GCS_EYE = {4: "Spontaneously", 3: "To Speech", 2: "To Pain", 1: "None"}
_GCS_MOTOR = {
    6: "Obeys Commands", 5: "Localizes Pain", 4: "Flex-withdraws",
    3: "Abnormal Flexion", 2: "Abnormal extension", 1: "No response",
}
_GCS_VERBAL = {5: "Oriented", 4: "Confused", 3: "Inappropriate Words", 2: "Incomprehensible sounds", 1: "No Response"}
_GCS_INTUBATED = "No Response-ETT"


def _gcs_events(stays, rng, mask) -> pd.DataFrame:
    """Eye, verbal and motor answers charted together as text, with the score in valuenum."""
    stay, hours = _event_times(rng, stays, mask, per_day=1.5, minimum=1)
    impairment = _signal(stays, "gcs_impairment", stay, hours, rng)
    t = _charttime(stays, stay, hours)
    parts = []
    for itemid, answers, slope in ((220739, _GCS_EYE, 0.8), (223900, _GCS_VERBAL, 1.0), (223901, _GCS_MOTOR, 1.1)):
        top = max(answers)
        score = np.clip(np.round(top - slope * impairment + rng.normal(0, 0.3, len(stay))), 1, top).astype(int)
        text = np.array([answers[s] for s in range(1, top + 1)])[score - 1]
        if itemid == 223900:
            text = np.where(stays.ventilated[stay] & (rng.random(len(stay)) < 0.8), _GCS_INTUBATED, text)
            score = np.where(text == _GCS_INTUBATED, 1, score)
        parts.append(_events(stay, t, itemid, text, score.astype(str), ""))
    return pd.concat(parts)


def _capillary_refill_events(stays, rng, mask) -> pd.DataFrame:
    """Text-only items (valuenum blank), right or left hand."""
    stay, hours = _event_times(rng, stays, mask, per_day=0.7)
    delayed = rng.random(len(stay)) < _sigmoid(_signal(stays, "crr_logit", stay, hours, rng))
    text = np.where(delayed, "Abnormal >3 Seconds", "Normal <3 Seconds")
    itemid = np.where(rng.random(len(stay)) < 0.5, 223951, 224308)
    return _events(stay, _charttime(stays, stay, hours), itemid, text, None, "")


def _fio2_events(stays, rng, mask) -> pd.DataFrame:
    """Inspired O2 fraction in percent, for ventilated stays and some on oxygen."""
    on_oxygen = stays.ventilated | (rng.random(stays.n) < 0.3)
    stay, hours = _event_times(rng, stays, mask & on_oxygen, per_day=3)
    stay_rate = np.where(stays.ventilated[stay], 1.0, 0.35)
    keep = rng.random(len(stay)) < stay_rate
    stay, hours = stay[keep], hours[keep]
    fio2 = np.round(_signal(stays, "fio2", stay, hours, rng) / 5) * 5
    return _numeric_events(stay, _charttime(stays, stay, hours), 223835, fio2, 0, "")


def _ph_chart_events(stays, rng, mask) -> pd.DataFrame:
    """Arterial pH as charted in the ICU (the lab table carries the same draws and more)."""
    stay, hours = _event_times(rng, stays, mask & stays.ventilated, per_day=1.5)
    ph = _signal(stays, "ph", stay, hours, rng)
    return _numeric_events(stay, _charttime(stays, stay, hours), 223830, ph, 2, "units")


def _weight_events(stays, rng, mask) -> pd.DataFrame:
    """Admission weight in kg (and sometimes lbs) once, daily weights for some stays."""
    admission = np.flatnonzero(mask & (rng.random(stays.n) < 0.9))
    hours = rng.uniform(0, np.minimum(2, stays.los_hours[admission]))
    kg = _signal(stays, "weight", admission, hours, rng)
    t = _charttime(stays, admission, hours)
    pounds = rng.random(len(admission)) < 0.5
    daily_stay, daily_hours = _event_times(rng, stays, mask & (rng.random(stays.n) < 0.6), per_day=1)
    return pd.concat(
        [
            _numeric_events(admission, t, 226512, kg, 1, "kg"),
            _numeric_events(admission[pounds], t[pounds], 226531, kg[pounds] * 2.20462, 1, ""),
            _numeric_events(
                daily_stay, _charttime(stays, daily_stay, daily_hours), 224639,
                _signal(stays, "weight", daily_stay, daily_hours, rng), 1, "kg",
            ),
        ]
    )


def _height_events(stays, rng, mask) -> pd.DataFrame:
    """Height charted once, in cm and in inches at the same time."""
    patient_cm = np.round(rng.normal(np.where(stays.patient_male, 176, 163), 7))
    stay = np.flatnonzero(mask & (rng.random(stays.n) < 0.6))
    hours = rng.uniform(0, np.minimum(4, stays.los_hours[stay]))
    cm = patient_cm[stays.patient[stay]]
    t = _charttime(stays, stay, hours)
    return pd.concat(
        [
            _numeric_events(stay, t, 226730, cm, 0, "cm"),
            _numeric_events(stay, t, 226707, cm / 2.54, 0, "Inch"),
        ]
    )


# --- hosp: labevents ---------------------------------------------------------------

_FASTING_COMMENT = "If fasting, 70-100 normal, >125 provisional diabetes."


def _labevents_table(stays: _Stays, rng: np.random.Generator, counters: _Counters) -> pd.DataFrame:
    """Blood gases (pH, O2 saturation, glucose) and chemistry glucose; a few drawn
    before the ICU stay, and a few outpatient ones without hadm_id."""
    has = stays.present["time_series"]
    gas_stay, gas_hours = _event_times(rng, stays, has & stays.ventilated, per_day=3)
    other_stay, other_hours = _event_times(rng, stays, has & ~stays.ventilated, per_day=0.4)
    chem_stay, chem_hours = _event_times(rng, stays, has, per_day=1.2, minimum=1)
    pre_stay = np.flatnonzero(has & (rng.random(stays.n) < 0.6))
    pre_hours = -rng.uniform(0, (stays.intime[pre_stay] - stays.admittime[pre_stay]) / _HOUR)
    clinic_stay = np.flatnonzero(has & (rng.random(stays.n) < 0.08))
    before_admission = (stays.intime[clinic_stay] - stays.admittime[clinic_stay]) / _HOUR
    clinic_hours = -before_admission - rng.uniform(3, 90, len(clinic_stay)) * 24
    draws = pd.concat(
        [
            _blood_gas_draw(stays, rng, np.r_[gas_stay, other_stay], np.r_[gas_hours, other_hours]),
            _chemistry_draw(stays, rng, np.r_[chem_stay, pre_stay], np.r_[chem_hours, pre_hours], inpatient=True),
            _chemistry_draw(stays, rng, clinic_stay, clinic_hours, inpatient=False),
        ],
        ignore_index=True,
    ).sort_values(["stay", "t", "draw", "itemid"], kind="stable")
    return _lab_frame(stays, rng, counters, draws)


def _lab_time(stays, stay, hours) -> np.ndarray:
    return _floor_minute(stays.intime[stay] + np.round(hours * _HOUR).astype(np.int64))


def _lab_rows(stay, t, draw, itemid, values, decimals, uom, low, high, priority, inpatient) -> pd.DataFrame:
    """Rows of one lab item; `low`/`high` the reference range (None: none)."""
    text = _fmt_number(values, decimals)
    abnormal = (values < low) | (values > high) if low is not None else np.zeros(len(values), bool)
    low, high = ("", "") if low is None else (_fmt_number([low], 2)[0], _fmt_number([high], 2)[0])
    return pd.DataFrame(
        {
            "stay": stay, "t": t, "draw": draw, "itemid": itemid, "value": text, "valuenum": text,
            "valueuom": uom, "ref_range_lower": low, "ref_range_upper": high,
            "flag": np.where(abnormal, "abnormal", ""), "priority": priority, "comments": "", "inpatient": inpatient,
        }
    )


def _blood_gas_draw(stays, rng, stay, hours) -> pd.DataFrame:
    """Blood gas panel: pH always, O2 saturation and glucose sometimes (priority blank)."""
    t = _lab_time(stays, stay, hours)
    draw = rng.integers(0, 1 << 62, len(stay))
    ph = _signal(stays, "ph", stay, hours, rng)
    sat = np.clip(_signal(stays, "spo2", stay, hours, rng) + rng.normal(0, 1.5, len(stay)), 50, 100)
    glucose = _signal(stays, "glucose", stay, hours, rng)
    with_sat = rng.random(len(stay)) < 0.5
    with_glucose = rng.random(len(stay)) < 0.4
    return pd.concat(
        [
            _lab_rows(stay, t, draw, 50820, ph, 2, "units", 7.35, 7.45, "", True),
            _lab_rows(stay[with_sat], t[with_sat], draw[with_sat], 50817, sat[with_sat], 0, "%", None, None, "", True),
            _lab_rows(
                stay[with_glucose], t[with_glucose], draw[with_glucose], 50809,
                glucose[with_glucose], 0, "mg/dL", 70, 105, "", True,
            ),
        ]
    )


def _chemistry_draw(stays, rng, stay, hours, inpatient: bool) -> pd.DataFrame:
    """Chemistry glucose: MIMIC-IV blanks its value to '___' (the comment is PHI-scrubbed
    with it) and keeps the number in valuenum."""
    t = _lab_time(stays, stay, hours)
    glucose = _signal(stays, "glucose", stay, hours, rng)
    priority = np.where(rng.random(len(stay)) < 0.55, "STAT", "ROUTINE")
    draw = rng.integers(0, 1 << 62, len(stay))
    rows = _lab_rows(stay, t, draw, 50931, glucose, 0, "mg/dL", 70, 100, priority, inpatient)
    rows["value"] = "___"
    rows["comments"] = _FASTING_COMMENT
    return rows


def _lab_frame(stays, rng, counters: _Counters, draws: pd.DataFrame) -> pd.DataFrame:
    s = draws["stay"].to_numpy()
    t = draws["t"].to_numpy()
    n = len(draws)
    draw_ids, specimen_index = np.unique(draws["draw"].to_numpy(), return_inverse=True)
    specimen = counters.take("specimen_id", len(draw_ids), rng)[specimen_index]
    hadm = pd.array(stays.hadm_id[s], dtype="Int64")
    hadm[~draws["inpatient"].to_numpy(bool)] = pd.NA
    providers = np.where(rng.random(n) < 0.3, _provider_ids(rng, n), "")
    return pd.DataFrame(
        {
            "labevent_id": counters.take("labevent_id", n, rng),
            "subject_id": stays.subject_id[s],
            "hadm_id": hadm,
            "specimen_id": specimen,
            "itemid": draws["itemid"].to_numpy(),
            "order_provider_id": providers,
            "charttime": _fmt_datetime(t),
            "storetime": _fmt_datetime(t + _floor_minute(rng.uniform(10, 120, n) * 60)),
            "value": draws["value"].to_numpy(),
            "valuenum": draws["valuenum"].to_numpy(),
            "valueuom": draws["valueuom"].to_numpy(),
            "ref_range_lower": draws["ref_range_lower"].to_numpy(),
            "ref_range_upper": draws["ref_range_upper"].to_numpy(),
            "flag": draws["flag"].to_numpy(),
            "priority": draws["priority"].to_numpy(),
            "comments": draws["comments"].to_numpy(),
        }
    )


# --- MIMIC-CXR-JPG -----------------------------------------------------------------

_PORTABLE_AP = "CHEST (PORTABLE AP)"
_PA_AND_LAT = "CHEST (PA AND LAT)"
_VIEW_MEANING = {"AP": "antero-posterior", "PA": "postero-anterior", "LATERAL": "lateral", "LL": "left lateral"}


def _cxr_studies(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    """One row per image. Portable AP studies strictly inside the ICU stay only where
    the stay has the CXR modality; every stay may also have AP studies in the ED
    before or on the ward after the stay, and PA + lateral studies inside it or far
    from it (outpatient), which a cohort filter must drop."""
    n, ms = stays.n, 1000
    los_ms = (stays.outtime - stays.intime) * ms
    inside = stays.present["cxr"] * (1 + np.minimum(rng.poisson(0.25 * stays.los_hours / 24), 3))
    parts = []
    for k in range(int(inside.max(initial=0))):
        stay = np.flatnonzero(inside > k)
        t = stays.intime[stay] * ms + (rng.uniform(0.02, 0.98, len(stay)) * los_ms[stay]).astype(np.int64)
        parts.append(("AP", stay, t, 1.0))
    ed = np.flatnonzero(rng.random(n) < 0.35)
    parts.append(("AP", ed, (stays.intime[ed] - rng.uniform(0.5, 12, len(ed)) * _HOUR).astype(np.int64) * ms, 0.8))
    ward = np.flatnonzero((rng.random(n) < 0.15) & (stays.dischtime - stays.outtime > 2 * _HOUR))
    after = stays.outtime[ward] + rng.uniform(0.05, 0.95, len(ward)) * (stays.dischtime[ward] - stays.outtime[ward])
    parts.append(("AP", ward, after.astype(np.int64) * ms, 0.6))
    in_stay_pa = np.flatnonzero(rng.random(n) < 0.05)
    t = stays.intime[in_stay_pa] * ms + (rng.uniform(0.02, 0.98, len(in_stay_pa)) * los_ms[in_stay_pa]).astype(np.int64)
    parts.append(("PA", in_stay_pa, t, 1.0))
    clinic = np.flatnonzero(rng.random(n) < 0.25)
    before = (rng.random(len(clinic)) < 0.6) | stays.died[clinic]
    shift = (rng.uniform(20, 400, len(clinic)) * _DAY).astype(np.int64)
    t = np.where(before, stays.admittime[clinic] - shift, stays.dischtime[clinic] + shift) * ms
    parts.append(("PA", clinic, t + rng.integers(0, _DAY * ms // 2, len(clinic)), 0.3))
    return _study_images(stays, rng, parts)


def _study_images(stays, rng, parts) -> pd.DataFrame:
    """Expand studies to images (a PA study also has a lateral), give them ids."""
    frames = []
    for view, stay, t_ms, disease in parts:
        frames.append(pd.DataFrame({"stay": stay, "t_ms": t_ms, "kind": view, "disease": disease}))
    studies = pd.concat(frames, ignore_index=True).sort_values(["stay", "t_ms"], kind="stable").reset_index(drop=True)
    studies["study_no"] = studies.groupby("stay").cumcount()
    studies = studies[studies["study_no"] < _MAX_STUDIES_PER_STAY]
    stay = studies["stay"].to_numpy()
    studies["study_id"] = 50_000_000 + stays.index[stay].astype(np.int64) * _MAX_STUDIES_PER_STAY + studies["study_no"]
    frontal = studies.assign(view=studies["kind"])
    pa = studies[studies["kind"] == "PA"]
    lateral = pa.assign(view=np.where(rng.random(len(pa)) < 0.8, "LATERAL", "LL"))
    images = pd.concat([frontal, lateral]).sort_values(["stay", "t_ms", "view"], kind="stable").reset_index(drop=True)
    words = rng.integers(0, 1 << 32, (len(images), 5), dtype=np.uint64)
    images["dicom_id"] = ["-".join(f"{w:08x}" for w in row) for row in words]
    recumbent = (images["view"].to_numpy() == "AP") & (rng.random(len(images)) < 0.7)
    images["orientation"] = np.where(recumbent, "Recumbent", "Erect")
    return images.drop(columns=["study_no"])


def _cxr_metadata_table(stays: _Stays, images: pd.DataFrame) -> pd.DataFrame:
    stay = images["stay"].to_numpy()
    view = images["view"].to_numpy()
    when = pd.DatetimeIndex(images["t_ms"].to_numpy().astype("datetime64[ms]"))
    # hhmmss.fff from exact integers, so the float prints as 143512.234
    hhmmss_ms = (when.hour * 10_000 + when.minute * 100 + when.second) * 1000 + when.microsecond // 1000
    procedure = np.where(images["kind"].to_numpy() == "AP", _PORTABLE_AP, _PA_AND_LAT)
    return pd.DataFrame(
        {
            "dicom_id": images["dicom_id"].to_numpy(),
            "subject_id": stays.subject_id[stay],
            "study_id": images["study_id"].to_numpy(),
            "PerformedProcedureStepDescription": procedure,
            "ViewPosition": view,
            "Rows": IMAGE_SIZE,
            "Columns": IMAGE_SIZE,
            "StudyDate": (when.year * 10_000 + when.month * 100 + when.day).to_numpy(),
            "StudyTime": np.asarray(hhmmss_ms, dtype=float) / 1000,
            "ProcedureCodeSequence_CodeMeaning": procedure,
            "ViewCodeSequence_CodeMeaning": [_VIEW_MEANING[v] for v in view],
            "PatientOrientationCodeSequence_CodeMeaning": images["orientation"].to_numpy(),
        }
    )


_AXIS = np.linspace(-1, 1, IMAGE_SIZE)
_GRID_Y, _GRID_X = np.meshgrid(_AXIS, _AXIS, indexing="ij")


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((_GRID_X - cx) / rx) ** 2 + ((_GRID_Y - cy) / ry) ** 2 < 1


@dataclass(frozen=True)
class _ChestView:
    """What does not change between images of one view: body, lungs, diaphragm."""

    background: np.ndarray
    lungs: np.ndarray  # 0/1 float mask
    diaphragm: np.ndarray
    heart_x: float

    @classmethod
    def build(cls, body: np.ndarray, lungs: np.ndarray, heart_x: float) -> "_ChestView":
        diaphragm = (_GRID_Y > 0.62) & body
        background = np.where(body, 100.0, 15.0)
        background[lungs] = 40.0
        background[diaphragm] = 135.0
        return cls(background, lungs.astype(float), diaphragm, heart_x)


_FRONTAL = _ChestView.build(
    _ellipse(0, 0.05, 0.9, 1.05), _ellipse(-0.42, -0.05, 0.3, 0.6) | _ellipse(0.42, -0.05, 0.3, 0.6), heart_x=0.08
)
_LATERAL = _ChestView.build(_ellipse(0, 0.05, 0.75, 1.05), _ellipse(0.05, -0.05, 0.55, 0.65), heart_x=-0.25)


def _chest_image(rng: np.random.Generator, view: str, opacity: float, cardiac: float) -> np.ndarray:
    """A crude chest radiograph: dark lungs that haze over and grow blobs with
    `opacity`, a heart shadow that widens with `cardiac`, and noise."""
    chest = _LATERAL if view in ("LATERAL", "LL") else _FRONTAL
    heart = _ellipse(chest.heart_x, 0.35, 0.22 * (1 + 0.15 * np.clip(cardiac, -1.5, 3)), 0.22) & ~chest.diaphragm
    image = np.where(heart, 165.0, chest.background)
    severity = _sigmoid(opacity - 0.5)
    shadow = np.full(image.shape, 50.0 * severity)
    for _ in range(rng.poisson(3.0 * severity)):
        cx, cy, width = rng.uniform(-0.6, 0.6), rng.uniform(-0.1, 0.5), rng.uniform(0.08, 0.2)
        rows, columns = np.exp(-((_AXIS - cy) ** 2) / (2 * width**2)), np.exp(-((_AXIS - cx) ** 2) / (2 * width**2))
        shadow += 60.0 * np.outer(rows, columns)
    image += shadow * chest.lungs + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_images(stays: _Stays, images: pd.DataFrame, rng: np.random.Generator, root: Path) -> None:
    """One JPEG per metadata row; studies far from the stay reflect less of its state."""
    opacity = stays.opacity
    cardiac = stays.latent[:, CARDIAC]
    noise = rng.normal(0, 0.3, len(images))
    for row, extra in zip(images.itertuples(index=False), noise):
        stay = row.stay
        pixels = _chest_image(rng, row.view, row.disease * opacity[stay] + extra, row.disease * cardiac[stay])
        path = root / mt.cxr_image_path(int(stays.subject_id[stay]), int(row.study_id), row.dicom_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(path, format="JPEG", quality=90)


# --- MIMIC-IV-Note -----------------------------------------------------------------

# Acute problems: (phenotype, discharge diagnosis, hospital course paragraph).
_ACUTE_PROBLEMS = (
    ("Septicemia (except in labor)", "Sepsis",
     "# Sepsis: Presented febrile and tachycardic with leukocytosis, meeting SIRS criteria. Blood cultures "
     "were drawn and broad-spectrum antibiotics (vancomycin and cefepime) were started."),
    ("Pneumonia (except that caused by tuberculosis or sexually transmitted disease)", "Pneumonia",
     "# Pneumonia: Chest imaging showed a new consolidation. Treated with ceftriaxone and azithromycin "
     "with improvement of oxygen requirement."),
    ("Respiratory failure; insufficiency; arrest (adult)", "Acute hypoxemic respiratory failure",
     "# Acute hypoxemic respiratory failure: Required intubation and mechanical ventilation in the ICU."),
    ("Congestive heart failure; nonhypertensive", "Acute on chronic systolic heart failure",
     "# Acute decompensated heart failure: Volume overloaded with elevated JVP and bilateral edema; "
     "diuresed with IV furosemide."),
    ("Shock", "Septic shock",
     "# Shock: Hypotensive despite fluid resuscitation, requiring norepinephrine via central line."),
    ("Acute and unspecified renal failure", "Acute kidney injury",
     "# ___: Creatinine rose above baseline, likely prerenal in setting of poor PO intake; "
     "improved with IV fluids. Nephrotoxins were avoided."),
    ("Acute myocardial infarction", "NSTEMI",
     "# NSTEMI: Troponins elevated with ST depressions; started on heparin drip and aspirin, "
     "cardiology was consulted."),
    ("Gastrointestinal hemorrhage", "Upper GI bleed",
     "# GI bleed: Melena with hemoglobin drop, transfused 2 units pRBC; EGD showed a gastric ulcer."),
    ("Acute cerebrovascular disease", "Intracerebral hemorrhage",
     "# Stroke: CT head showed an acute hemorrhage; neurology followed, blood pressure was controlled."),
    ("Cardiac dysrhythmias", "Atrial fibrillation with rapid ventricular response",
     "# Atrial fibrillation with RVR: Rate controlled with metoprolol, anticoagulation was discussed."),
)
_CHRONIC_HISTORY = (
    ("Essential hypertension", "Hypertension"),
    ("Disorders of lipid metabolism", "Hyperlipidemia"),
    ("Diabetes mellitus without complication", "Type 2 diabetes mellitus"),
    ("Diabetes mellitus with complications", "Type 2 diabetes mellitus with neuropathy"),
    ("Coronary atherosclerosis and other heart disease", "Coronary artery disease s/p PCI"),
    ("Chronic kidney disease", "Chronic kidney disease stage III"),
    ("Chronic obstructive pulmonary disease and bronchiectasis", "COPD on home O2"),
    ("Other liver diseases", "Alcoholic cirrhosis"),
    ("Conduction disorders", "Complete heart block s/p pacemaker"),
)
_PHENOTYPE_COLUMN = {name: k for k, name in enumerate(PHENOTYPES)}


def _discharge_table(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    stay = np.flatnonzero(stays.present["discharge_note"])
    seq = _note_seq(stays, stay, rng)
    store = stays.dischtime[stay] + _floor_minute(rng.uniform(2, 72, len(stay)) * _HOUR)
    u = rng.random((len(stay), 4))
    texts = [_discharge_text(stays, i, u_i) for i, u_i in zip(stay, u)]
    return _note_frame(stays, stay, "DS", seq, stays.dischtime[stay] - stays.dischtime[stay] % _DAY, store, texts)


def _radiology_table(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    """Reports during the admission where the stay has radiology notes; plus outpatient
    reports (no hadm_id) months before the admission for some patients."""
    counts = stays.present["radiology_note"] * (1 + np.minimum(rng.poisson(0.4 * stays.los_hours / 24), 5))
    stay = np.repeat(np.arange(stays.n), counts)
    span = stays.dischtime[stay] - stays.admittime[stay]
    t = _floor_minute(stays.admittime[stay] + rng.uniform(0.02, 0.98, len(stay)) * span)
    clinic = np.flatnonzero(rng.random(stays.n) < 0.2)
    clinic_t = _floor_minute(stays.admittime[clinic] - rng.uniform(20, 300, len(clinic)) * _DAY)
    stay, t = np.r_[stay, clinic], np.r_[t, clinic_t]
    inpatient = np.r_[np.ones(len(t) - len(clinic), bool), np.zeros(len(clinic), bool)]
    order = np.lexsort((t, stay))
    stay, t, inpatient = stay[order], t[order], inpatient[order]
    u = rng.random((len(stay), 4))
    texts = [_radiology_text(stays, i, inside, u_i) for i, inside, u_i in zip(stay, inpatient, u)]
    store = t + _floor_minute(rng.uniform(0.3, 10, len(stay)) * _HOUR)
    frame = _note_frame(stays, stay, "RR", _note_seq(stays, stay, rng), t, store, texts)
    frame["hadm_id"] = pd.array(frame["hadm_id"], dtype="Int64")
    frame.loc[~inpatient, "hadm_id"] = pd.NA
    return frame


def _leak_notes(stays: _Stays, rng: np.random.Generator) -> pd.DataFrame:
    """The planted leak: a report stating the label inside the ICU stay, after 48 h when the stay
    is longer (the others leave the 48 h task anyway)."""
    stay = np.flatnonzero(stays.los_hours > 1)
    after = stays.intime[stay] + np.where(stays.los_hours[stay] > LEAK_AFTER_HOURS, LEAK_AFTER_HOURS, 0) * _HOUR
    t = _ceil_minute(after + rng.uniform(0.1, 0.9, len(stay)) * (stays.outtime[stay] - after))
    texts = [LEAK_TEXTS[int(died)] for died in stays.died[stay]]
    seq = 900 + np.arange(len(stay))  # beyond the generated reports' numbers
    frame = _note_frame(stays, stay, "RR", seq, t, t + _HOUR, texts)
    frame["hadm_id"] = pd.array(frame["hadm_id"], dtype="Int64")
    return frame


def _note_seq(stays: _Stays, stay: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-subject running note numbers from a random start, as in MIMIC-IV-Note."""
    subject = stays.subject_id[stay]
    start = rng.integers(1, 30, stays.n)[stays.patient[stay]]
    within = pd.Series(subject).groupby(subject).cumcount().to_numpy()
    return start + within


def _note_frame(stays, stay, note_type, seq, charttime, storetime, texts) -> pd.DataFrame:
    subject = stays.subject_id[stay]
    return pd.DataFrame(
        {
            "note_id": [f"{s}-{note_type}-{q}" for s, q in zip(subject, seq)],
            "subject_id": subject,
            "hadm_id": stays.hadm_id[stay],
            "note_type": note_type,
            "note_seq": seq,
            "charttime": _fmt_datetime(charttime),
            "storetime": _fmt_datetime(storetime),
            "text": texts,
        }
    )


def _problems(stays: _Stays, i: int, table) -> list:
    return [entry for entry in table if stays.phenotypes[i, _PHENOTYPE_COLUMN[entry[0]]]]


def _admission_level(stays: _Stays, i: int, name: str) -> float:
    """Signal `name` of stay `i` at ICU admission, without measurement noise."""
    sig = _SIGNALS[name]
    level = sig.normal + 1.2 * float(stays.latent[i] @ np.array(sig.loadings)) + stays.effects[name][i]
    return float(np.clip(level, sig.low, sig.high))


def _discharge_text(stays: _Stays, i: int, u: np.ndarray) -> str:
    """A discharge summary with MIMIC-IV-Note's de-identification artefacts
    (`___` for names, dates and ages; stray \x95 bullets)."""
    acute = _problems(stays, i, _ACUTE_PROBLEMS)
    diagnoses = [label for _, label, _ in acute] or ["Mechanical fall"]
    history = [label for _, label in _problems(stays, i, _CHRONIC_HISTORY)] or ["None"]
    sex, title, person = ("M", "Mr.", "man") if stays.male[i] else ("F", "Ms.", "woman")
    main = _in_sentence(diagnoses[0])
    course = [text for _, _, text in acute] or ["# Fall: Mechanical; imaging negative. Seen by ___, home."]
    sections = [
        " \nName:  ___                     Unit No:   ___",
        "Admission Date:  ___              Discharge Date:   ___",
        f"Date of Birth:  ___             Sex:   {sex}",
        f"Service: {'MEDICINE' if u[1] < 0.7 else 'SURGERY'}",
        f"Allergies: \n{'No Known Allergies / Adverse Drug Reactions' if u[2] < 0.6 else 'Penicillins'}",
        "Attending: ___.",
        f"Chief Complaint:\n{diagnoses[0]}",
        f"History of Present Illness:\n{title} ___ is a ___ year old {person} with a history of "
        f"{', '.join(_in_sentence(h) for h in history)} who presents with {main}.",
        "Past Medical History:\n" + "\n".join(f"- {h}" for h in history),
        "Social History:\n___\nFamily History:\nNon-contributory.",
        "Physical Exam:\nADMISSION PHYSICAL EXAM:\n" + _admission_exam(stays, i),
        "Pertinent Results:\nADMISSION LABS:\n"
        f"___ 04:30AM BLOOD Glucose-{_admission_level(stays, i, 'glucose'):.0f}\n"
        f"___ 05:12AM BLOOD pH-{_admission_level(stays, i, 'ph'):.2f}",
        f"Brief Hospital Course:\n{title} ___ is a ___ year old {person} admitted to the ICU for {main}.",
        "\n \n".join(course),
    ]
    if stays.died[i]:
        sections += [
            "Discharge Disposition:\nExpired",
            "Discharge Diagnosis:\n" + "\n".join(diagnoses),
            "Discharge Condition:\nExpired",
            "Discharge Instructions:\nN/A",
        ]
    else:
        sections += [
            f"Discharge Disposition:\n{('Home', 'Home With Service', 'Extended Care')[int(u[0] * 3)]}",
            "Facility:\n___",
            "Discharge Diagnosis:\nPRIMARY:\n" + "\n".join(diagnoses),
            "Discharge Condition:\nMental Status: Clear and coherent.\nLevel of Consciousness: Alert and interactive.",
            f"Discharge Instructions:\nDear {title} ___,\n \nYou were admitted to ___ for {main}.\n"
            "\x95 Please take all of your medications as prescribed.\n"
            "\x95 Please keep your follow-up appointments.\n \nWe wish you the best,\nYour ___ Care Team",
        ]
    return "\n \n".join(sections + ["Followup Instructions:\n___\n"])


def _admission_exam(stays: _Stays, i: int) -> str:
    z = stays.latent[i]
    names = ("temperature", "heart_rate", "systolic", "diastolic", "resp_rate", "spo2")
    level = {name: _admission_level(stays, i, name) for name in names}
    spo2 = level["spo2"]
    device = "on ventilator" if stays.ventilated[i] else ("4L NC" if spo2 < 95 else "RA")
    if z[RESPIRATORY] + z[INFECTION] > 1:
        lungs = "Crackles at bilateral bases"
    else:
        lungs = "Clear to auscultation bilaterally"
    if stays.ventilated[i]:
        neuro = "Intubated and sedated"
    else:
        neuro = "Confused, moving all extremities" if z[SEVERITY] > 1 else "A&Ox3, CNII-XII intact"
    return (
        f"VS: T {level['temperature']:.1f} HR {level['heart_rate']:.0f} BP {level['systolic']:.0f}/"
        f"{level['diastolic']:.0f} RR {level['resp_rate']:.0f} O2 {spo2:.0f}% {device}\n"
        f"LUNGS: {lungs}\nNEURO: {neuro}"
    )


def _in_sentence(label: str) -> str:
    """'Sepsis' -> 'sepsis' inside a sentence, but 'NSTEMI' and 'COPD ...' stay."""
    return label if label[:2].isupper() else label[0].lower() + label[1:]


_NORMAL_CHEST = (
    "The lungs are clear. No pleural effusion or pneumothorax. Cardiomediastinal silhouette is within normal limits.",
    "No acute cardiopulmonary process.",
)


def _radiology_text(stays: _Stays, i: int, inpatient: bool, u: np.ndarray) -> str:
    """A chest radiograph report whose findings follow the stay's lungs and heart."""
    cardiac = stays.latent[i, CARDIAC]
    opacity = stays.opacity[i] if inpatient else 0.3 * stays.opacity[i]
    findings, impression = [], []
    if opacity > 1.0:
        side = ("right lower lobe", "left lower lobe", "bilateral lower lobes")[int(u[1] * 3)]
        findings.append(f"There is a new patchy opacity in the {side}, concerning for pneumonia.")
        impression.append(f"{side.capitalize()} opacity concerning for pneumonia.")
    if cardiac > 0.8:
        findings.append("The heart size is moderately enlarged. There is pulmonary vascular congestion.")
        impression.append("Cardiomegaly with mild pulmonary edema.")
    if opacity > 1.5 or (cardiac > 1.2 and u[2] < 0.5):
        findings.append("Small bilateral pleural effusions with adjacent atelectasis.")
        impression.append("Small bilateral pleural effusions.")
    if not findings:
        findings.append(_NORMAL_CHEST[0])
        impression.append(_NORMAL_CHEST[1])
    if inpatient and stays.ventilated[i]:
        findings.insert(0, f"Endotracheal tube terminates approximately {3 + int(u[0] * 3)} cm above the carina.")
        impression.insert(0, "Lines and tubes in standard position.")
    if inpatient:
        exam, technique = _PORTABLE_AP, "Portable AP chest radiograph"
    else:
        exam, technique = _PA_AND_LAT, "Chest PA and lateral"
    indication = ("hypoxia", "fever", "shortness of breath", "line placement")[int(u[3] * 4)]
    person = "man" if stays.male[i] else "woman"
    sections = [
        f"EXAMINATION:  {exam}",
        f"INDICATION:  ___ year old {person} with {indication}  // eval for pneumonia",
        f"TECHNIQUE:  {technique}",
        "COMPARISON:  ___",
        "FINDINGS: \n \n" + "\n".join(findings),
        "IMPRESSION: \n \n" + "\n".join(impression) + "\n",
    ]
    return "\n \n".join(sections)


# --- small helpers -----------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _floor_minute(seconds) -> np.ndarray:
    seconds = np.asarray(seconds).astype(np.int64)
    return seconds - seconds % 60


def _ceil_minute(seconds) -> np.ndarray:
    return -_floor_minute(-np.asarray(seconds).astype(np.int64))


def _pick(rng: np.random.Generator, options, n: int) -> np.ndarray:
    """`n` draws from ((value, probability), ...)."""
    values = np.array([v for v, _ in options], dtype=object)
    p = np.array([w for _, w in options], dtype=float)
    return values[rng.choice(len(values), size=n, p=p / p.sum())]


def _categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One draw per row of unnormalised `weights`."""
    cumulative = np.cumsum(weights, axis=1)
    return (rng.random(len(weights))[:, None] * cumulative[:, -1:] > cumulative).sum(axis=1)


def _provider_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ids like 'P03YMR'."""
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    letters = alphabet[rng.integers(0, len(alphabet), (n, 5))]
    return np.array(["P" + "".join(row) for row in letters], dtype=object)


def _fmt_datetime(seconds: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DD HH:MM:SS'; negative seconds (missing) become blank."""
    return _fmt_time(seconds, "%Y-%m-%d %H:%M:%S")


def _fmt_date(seconds: np.ndarray) -> np.ndarray:
    return _fmt_time(seconds, "%Y-%m-%d")


def _fmt_time(seconds: np.ndarray, pattern: str) -> np.ndarray:
    seconds = np.asarray(seconds, dtype=np.int64)
    stamps = seconds.astype("datetime64[s]")
    stamps[seconds < 0] = np.datetime64("NaT")
    return np.asarray(pd.DatetimeIndex(stamps).strftime(pattern), dtype=object)


def _fmt_number(values: np.ndarray, decimals: int) -> np.ndarray:
    """Numbers as MIMIC prints them: at most `decimals` decimals, no trailing '.0'."""
    rounded = np.round(np.asarray(values, dtype=float), decimals)
    if decimals == 0:
        return rounded.astype(np.int64).astype(str).astype(object)
    text = pd.Series(rounded).astype(str).str.replace(r"\.0$", "", regex=True)
    return text.to_numpy(dtype=object)
