"""The stays: what ties a stay to its neighbours or to the labels (ids, hospitalizations and
their timelines, patient attributes), drawn for all stays at once; chunks only slice them."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from clintraj.data.synthetic.eicu import vocabulary as V
from clintraj.data.synthetic.eicu.helpers import DAY, YEAR, blank, pick
from clintraj.data.synthetic.latent import CARDIAC, SEVERITY, sigmoid, trait_loadings

# the generator's modalities: a stay's `present` columns, in this order
MODALITIES = ("demographics", "diagnosis", "treatment", "medication", "lab", "aps")


@dataclass(frozen=True)
class Stays:
    """Per-stay arrays (row = stay, in cohort order) that chunks only slice.

    Times are minutes. A hospitalization (patienthealthsystemstayid) holds one
    or more consecutive unit stays of one patient; hospital-level fields are
    equal across its stays.
    """

    latent: np.ndarray
    traits: np.ndarray  # latent.TRAITS per stay: shown by every modality, no label depends on them
    died: np.ndarray
    los: np.ndarray  # unit length of stay, minutes
    phenotypes: np.ndarray
    present: np.ndarray  # (n, len(MODALITIES)) bool
    unit_stay_id: np.ndarray
    health_system_stay_id: np.ndarray
    uniquepid: np.ndarray  # str
    visit: np.ndarray  # unitvisitnumber
    last_visit: np.ndarray  # last unit stay of its hospitalization
    died_in_unit: np.ndarray
    sent_home: np.ndarray  # discharged home straight from the unit
    hospital_admit_offset: np.ndarray
    hospital_discharge_offset: np.ndarray
    hospital_admit_minute: np.ndarray  # absolute, minutes since 2014-01-01
    hospital_admit_second: np.ndarray
    hospital_id: np.ndarray
    ward_id: np.ndarray
    admit_source: np.ndarray  # hospitaladmitsource (str or None)
    discharge_location: np.ndarray  # hospitaldischargelocation (str or None)
    status_blank: np.ndarray  # hospitaldischargestatus left blank
    male: np.ndarray
    age: np.ndarray  # years
    ethnicity: np.ndarray  # str or None
    height: np.ndarray  # cm
    weight: np.ndarray  # kg

    @property
    def n(self) -> int:
        return len(self.died)

    def take(self, rows: slice) -> Stays:
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def has(self, modality: str) -> np.ndarray:
        return self.present[:, MODALITIES.index(modality)]


def hospitalizations(rng: np.random.Generator, stay_number: np.ndarray, died: np.ndarray) -> np.ndarray:
    """Hospitalization index per stay: a readmission shares the previous stay's hospitalization half the time.

    Only stays with the same outcome share one, since discharge status is per hospitalization.
    """
    same = (stay_number > 0) & (rng.random(len(died)) < 0.5)
    same[1:] &= died[1:] == died[:-1]
    return np.cumsum(~same) - 1


def stay_ids(rng: np.random.Generator, stay_number: np.ndarray, hospitalization: np.ndarray) -> dict:
    n = len(stay_number)
    n_hosp = hospitalization[-1] + 1
    patient = np.cumsum(stay_number == 0) - 1
    step = np.where(stay_number == 0, rng.integers(2, 12, n), 1)  # a patient's stays get consecutive ids
    prefix = rng.integers(1, 40, patient[-1] + 1)[patient]
    return {
        "unit_stay_id": 141_000 + np.cumsum(step),
        "health_system_stay_id": (128_000 + np.cumsum(rng.integers(1, 8, n_hosp)))[hospitalization],
        "uniquepid": np.array([f"{p:03d}-{10_000 + i}" for p, i in zip(prefix, patient)], dtype=object),
        "visit": np.arange(n) - np.flatnonzero(np.r_[True, np.diff(hospitalization) > 0])[hospitalization] + 1,
    }


def timeline(rng: np.random.Generator, hospitalization: np.ndarray, los: np.ndarray, died: np.ndarray) -> dict:
    """Hospital admission and discharge around each unit stay, as offsets from unit admission.

    Hospital stay = time before the first unit stay + unit stays (with gaps
    between them) + time after the last one. The ward time before and after
    grows with the unit stay (a sicker patient is sicker on the ward too), so
    hospital length of stay, the label (paper appendix A), keeps the latent
    signal of `los`.
    """
    n = len(los)
    first = np.r_[True, np.diff(hospitalization) > 0]
    last = np.r_[first[1:], True]
    before = _pick_by_share(  # from the ED, from a ward, after a long ward stay
        rng, [0.62, 0.3, 0.08], rng.exponential(150, n), los * rng.lognormal(np.log(0.4), 0.5, n),
        los * rng.lognormal(np.log(1.5), 0.5, n)
    )
    gap = np.where(rng.random(n) < 0.5, 0, rng.exponential(DAY, n)).astype(np.int64)
    step = np.where(first, before, np.r_[0, los[:-1]] + gap)
    total = np.cumsum(step)
    unit_start = total - (total - step)[first][hospitalization]  # minutes since hospital admission

    died_in_unit = died & last & (rng.random(n) < 0.6)
    sent_home = ~died & last & (rng.random(n) < np.where(los < 12 * 60, 0.5, 0.15))  # short stays often go home
    ward_time = los * rng.lognormal(np.log(0.7), 0.35, n) + rng.integers(0, 720, n)
    after = np.where(died, los * rng.lognormal(np.log(0.5), 0.5, n), ward_time)
    after = np.where(died_in_unit, 0, np.where(sent_home, rng.exponential(60, n), after)).astype(np.int64)
    hospital_end = (unit_start + los + after)[last][hospitalization]
    return {
        "last_visit": last,
        "died_in_unit": died_in_unit,
        "sent_home": sent_home,
        "hospital_admit_offset": -unit_start,
        "hospital_discharge_offset": hospital_end - unit_start,
        **{
            name: values[hospitalization]
            for name, values in _hospital_fields(rng, before[first], died[last], sent_home[last]).items()
        },
    }


def _hospital_fields(rng: np.random.Generator, before: np.ndarray, died: np.ndarray, sent_home: np.ndarray) -> dict:
    """Per hospitalization: admission time, source, discharge location, and a few blank statuses."""
    n = len(before)
    location = pick(rng, V.HOSPITAL_DISCHARGE_LOCATIONS, n, [0.62, 0.14, 0.06, 0.05, 0.05, 0.05, 0.03])
    location = np.where(died, V.DEATH, np.where(sent_home, "Home", location))
    return {
        "hospital_admit_minute": rng.integers(0, 2 * YEAR - 90 * DAY, n),
        "hospital_admit_second": np.where(rng.random(n) < 0.15, rng.integers(1, 60, n), 0),
        "admit_source": _hospital_admit_sources(rng, before),
        "discharge_location": blank(location, rng.random(n) < 0.013),
        "status_blank": rng.random(n) < 0.011,
    }


def _hospital_admit_sources(rng: np.random.Generator, before: np.ndarray) -> np.ndarray:
    """hospitaladmitsource from the time spent in hospital before the unit (ED-like if short); 24% blank."""
    short = pick(rng, V.HOSPITAL_ADMIT_SOURCES[:5], len(before), [0.74, 0.0, 0.13, 0.08, 0.05])
    long = pick(rng, V.HOSPITAL_ADMIT_SOURCES, len(before), [0.0, 0.55, 0.0, 0.1, 0.0, 0.15, 0.08, 0.08, 0.04])
    source = np.where(before < 360, short, long)
    source[rng.random(len(before)) < 0.24] = None
    return source


def patient_attributes(
    rng: np.random.Generator, patient_index: np.ndarray, stay_number: np.ndarray, latent: np.ndarray,
    traits: np.ndarray,
) -> dict:
    """What stays of one patient share: sex, age, body size (from the traits), ethnicity, hospital."""
    n_patients = patient_index[-1] + 1
    first = latent[stay_number == 0]
    habitus = traits[stay_number == 0] @ trait_loadings("eicu.habitus", 3).T  # height, weight, age
    sex_lean = traits[stay_number == 0] @ trait_loadings("eicu.sex", 1, 1.2).T[:, 0]
    male = rng.random(n_patients) < sigmoid(np.log(0.6 / 0.4) + sex_lean)
    spread = 0.9 * habitus[:, 2] + 0.45 * rng.normal(size=n_patients)
    age = 63 + 4 * first[:, SEVERITY] + 3 * first[:, CARDIAC] + 15 * spread
    age = np.where(rng.random(n_patients) < 0.01, rng.integers(15, 18, n_patients), np.round(age))
    height = np.where(male, 177, 163) + 7.5 * (0.9 * habitus[:, 0] + 0.45 * rng.normal(size=n_patients))
    weight = np.where(male, 86, 73) + 20 * (0.9 * habitus[:, 1] + 0.45 * rng.normal(size=n_patients))
    weight = np.clip(weight, 35, 250)
    ethnicity = np.asarray(V.ETHNICITIES, dtype=object)[_trait_draw(
        rng, traits[stay_number == 0], "eicu.ethnicity", [0.81, 0.09, 0.046, 0.034, 0.013, 0.007])]
    hospital_ids = np.sort(rng.choice(np.arange(56, 460), 208, replace=False))
    wards = rng.choice(np.arange(80, 1200), (208, 2), replace=False)
    hospital = rng.integers(0, 208, n_patients)[patient_index]
    n = len(patient_index)
    return {
        "hospital_id": hospital_ids[hospital],
        "ward_id": wards[hospital, (rng.random(n) < 0.25).astype(int)],
        "male": male[patient_index],
        "age": np.clip(age, 15, 100).astype(np.int64)[patient_index],
        "ethnicity": ethnicity[patient_index],
        "height": np.round(height, 1)[patient_index],
        "weight": np.round(weight, 1)[patient_index],
    }


def _trait_draw(rng: np.random.Generator, traits: np.ndarray, family: str, shares, sharpness: float = 1.5) -> np.ndarray:
    """An option index per row: the base `shares`, tilted towards the options the traits lean to."""
    logits = np.log(np.asarray(shares)) + traits @ trait_loadings(family, len(shares), sharpness).T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((cumulative < rng.random((len(traits), 1))).sum(axis=1), len(shares) - 1)


def _pick_by_share(rng: np.random.Generator, shares, *options: np.ndarray) -> np.ndarray:
    """Per element, options[k] with probability shares[k] (as int64 minutes)."""
    which = rng.choice(len(options), len(options[0]), p=shares)
    return np.choose(which, options).astype(np.int64)
