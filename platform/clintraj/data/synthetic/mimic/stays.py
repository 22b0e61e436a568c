"""A chunk's stays, drawn from the latent cohort with their ids and timelines.

Ids are planned from the cohort's size, independent of chunking; the running ids of
labevents continue from one chunk to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clintraj.data.synthetic.latent import CARDIAC, RESPIRATORY, SEVERITY, sigmoid, trait_loadings
from clintraj.data.synthetic.mimic import phenotypes as ph
from clintraj.data.synthetic.mimic.helpers import DAY, HOUR, ceil_minute, floor_minute
from clintraj.data.synthetic.mimic.signals import MEAN_AGE, PHENOTYPE_SHIFTS, SIGNALS, TRAIT_SHARE

_ANCHOR_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")
_ICD10_FROM_REAL_YEAR = 2016  # US switch to ICD-10-CM: October 2015


@dataclass(frozen=True)
class IdPlan:
    """Unique ids independent of chunking: base + index * stride + jitter, jitter < stride."""

    subject_stride: int
    stay_stride: int

    @classmethod
    def for_sizes(cls, n_patients: int, n_stays: int) -> "IdPlan":
        return cls(min(40, 89_999_999 // n_patients), min(40, 9_999_999 // n_stays))

    @staticmethod
    def draw(base: int, index: np.ndarray, stride: int, rng: np.random.Generator) -> np.ndarray:
        return base + index.astype(np.int64) * stride + rng.integers(0, stride, len(index))


@dataclass
class Counters:
    """Running ids that continue from one chunk to the next."""

    labevent_id: int = 1
    specimen_id: int = 1_000_000

    def take(self, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` increasing ids with random gaps (real MIMIC ids are not contiguous)."""
        ids = getattr(self, name) + np.cumsum(rng.integers(1, 4, n))
        if n:
            setattr(self, name, int(ids[-1]))
        return ids


@dataclass
class Stays:
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
    traits: np.ndarray  # latent.TRAITS per stay: shown by every modality, no label depends on them
    ventilated: np.ndarray
    surgical: np.ndarray  # admitted for an operation (same-day or elective)
    male: np.ndarray
    age: np.ndarray  # years, at admission
    icd_version: np.ndarray
    effects: dict[str, np.ndarray]  # per-stay offset of each signal: traits, age, diagnoses, the stay's own
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
    def draw(cls, cohort, present, start: int, stop: int, ids: IdPlan, rng: np.random.Generator) -> Stays:
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

        subject_ids = IdPlan.draw(10_000_000, patient_global[first_of_patient], ids.subject_stride, rng)
        phenotypes = cohort.phenotypes[rows]
        first_z, first_phenotypes = z[first_of_patient], phenotypes[first_of_patient]
        male = rng.random(n_patients) < sigmoid(0.24 + first_phenotypes @ ph.weights(ph.MALE_LOGIT))
        mean_age = MEAN_AGE - 2 + 7 * first_z[:, SEVERITY] + 3 * first_z[:, CARDIAC]
        anchor_age = np.clip(np.round(rng.normal(mean_age + first_phenotypes @ ph.weights(ph.AGE_YEARS), 11)), 18, 91)
        anchor_year = rng.integers(2110, 2191, n_patients)
        group = rng.integers(0, len(_ANCHOR_YEAR_GROUPS), n_patients)
        real_anchor_year = 2008 + 3 * group + rng.integers(0, 3, n_patients)

        times = _timeline(rng, patient, first_of_patient, anchor_year, cohort.los_hours[rows], died)
        admit_year = times["admittime"].astype("datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
        real_year = real_anchor_year[patient] + admit_year - anchor_year[patient]
        respiratory_failure = phenotypes[:, ph.column("respiratory failure")]
        ventilated = rng.random(len(rows)) < sigmoid(
            -1.4 + 1.0 * z[:, RESPIRATORY] + 0.9 * z[:, SEVERITY] + 2.5 * respiratory_failure)
        surgical = rng.random(len(rows)) < sigmoid(phenotypes @ ph.weights(ph.SURGICAL_LOGIT) - 1.7)
        age = anchor_age[patient] + admit_year - anchor_year[patient]
        traits = cohort.traits[rows]
        effects = _signal_offsets(rng, traits, age, phenotypes)
        effects["weight"] = effects["weight"][first_of_patient][patient] + 8 * (male[patient] - 0.5)  # a patient's own
        dod = _date_of_death(rng, patient, n_patients, died, times["dischtime"], z)
        return cls(
            index=rows,
            patient=patient,
            latent=z,
            died=died,
            los_hours=(times["outtime"] - times["intime"]) / HOUR,
            phenotypes=phenotypes,
            present={name: flags[rows] for name, flags in present.items()},
            subject_id=subject_ids[patient],
            hadm_id=IdPlan.draw(20_000_000, rows, ids.stay_stride, rng),
            stay_id=IdPlan.draw(30_000_000, rows, ids.stay_stride, rng),
            traits=traits,
            ventilated=ventilated,
            surgical=surgical,
            male=male[patient],
            age=age,
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


def _signal_offsets(rng, traits, age, phenotypes) -> dict[str, np.ndarray]:
    """Each signal's per-stay offset: the patient's traits (a share TRAIT_SHARE of `stay_sd`) and the
    stay's own part, the change with age, and the shifts of the stay's diagnoses."""
    trait_part = traits @ trait_loadings("mimic.signals", len(SIGNALS)).T
    own = rng.normal(size=(len(traits), len(SIGNALS)))
    offsets = {}
    for k, (name, sig) in enumerate(SIGNALS.items()):
        stay = TRAIT_SHARE * trait_part[:, k] + np.sqrt(1 - TRAIT_SHARE**2) * own[:, k]
        shift = phenotypes @ ph.weights(PHENOTYPE_SHIFTS.get(name, {}))
        offsets[name] = sig.stay_sd * stay + sig.per_year * (age - MEAN_AGE) + shift
    return offsets


def _timeline(rng, patient, first_of_patient, anchor_year, los_hours, died) -> dict[str, np.ndarray]:
    """Admission, ICU and discharge times; a patient's stays follow one another."""
    n = len(patient)
    pre_icu = np.round(rng.uniform(1, 30, n) * HOUR)
    los = np.round(los_hours * HOUR)
    survivor_post = np.clip(np.exp(rng.normal(np.log(72), 0.8, n)), 6, 720) * HOUR
    ward_death = rng.random(n) < 0.2
    died_post = np.where(ward_death, rng.uniform(6, 96, n) * HOUR, 0.0)
    post = np.round(np.where(died, died_post, survivor_post))
    gap = rng.uniform(20, 500, n) * DAY
    span = pre_icu + los + post + gap
    cumulative = np.cumsum(span)
    offset = cumulative - span - np.repeat((cumulative - span)[first_of_patient], np.bincount(patient))
    year_start = (anchor_year - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
    n_patients = len(anchor_year)
    first_admit = year_start + (rng.integers(0, 3, n_patients) * 365 + rng.uniform(0, 360, n_patients)) * DAY
    admittime = floor_minute(first_admit[patient] + offset)
    intime = admittime + pre_icu.astype(np.int64)
    outtime = intime + los.astype(np.int64)
    dischtime = ceil_minute(outtime + post.astype(np.int64))
    return {"admittime": admittime, "intime": intime, "outtime": outtime, "dischtime": dischtime}


def _date_of_death(rng, patient, n_patients, died, dischtime, z) -> np.ndarray:
    """Midnight of the in-hospital death, or for some survivors a death within a year."""
    last = np.r_[patient[1:] != patient[:-1], True]
    dod = np.full(n_patients, -1, dtype=np.int64)
    later = rng.random(n_patients) < sigmoid(-2.5 + 0.8 * z[last, SEVERITY])
    after_discharge = dischtime[last] + (rng.uniform(10, 365, n_patients) * DAY).astype(np.int64)
    dod[later] = after_discharge[later]
    dod[died[last]] = dischtime[last][died[last]]
    return np.where(dod >= 0, dod - dod % DAY, -1)
