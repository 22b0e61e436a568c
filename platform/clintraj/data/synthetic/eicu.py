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
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from clintraj.data import eicu_tables as T
from clintraj.data.synthetic.latent import (
    CARDIAC,
    PHENOTYPES,
    RENAL,
    RESPIRATORY,
    SEVERITY,
    draw_cohort,
    presence,
    trait_choice,
    trait_loadings,
)
from clintraj.data.synthetic.writer import GzipCsvWriter

MODALITIES = ("demographics", "diagnosis", "treatment", "medication", "lab", "aps")
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
LEAK_LAB = "label marker"  # the planted leak's lab name (`leak=True`)
LEAK_AFTER_MINUTES = 720  # planted after the eICU tasks' prediction time, 12 h
_YEAR = 525_600  # minutes
_DAY = 1_440
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
) -> dict[str, int]:
    """Write the six eICU tables for `n_stays` unit stays under `out`; return rows per file name.

    `presence` overrides entries of DEFAULT_PRESENCE ({modality: P(present)}). `leak` plants, for
    testing prediction windows, one lab result `LEAK_LAB` per stay whose value is the mortality
    label (1 died, 0 survived), before unit discharge and, when the stay is longer, after 12 h;
    every other byte is the same as without it, but for the lab ids.
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
                for name, frame in _chunk_frames(rng, chunk, {k: w.rows for k, w in writers.items()}, leak_rng):
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


def _chunk_frames(rng: np.random.Generator, s: "_Stays", rows_so_far: dict[str, int],
                  leak_rng: np.random.Generator | None = None):
    """Yield (table name, rows) for one chunk; ids continue from the rows already written."""
    yield "patient", _patient_frame(rng, s)
    yield "lab", _lab_frame(rng, s, _ID_BASE["lab"] + rows_so_far["lab"], leak_rng)
    yield "diagnosis", _diagnosis_frame(rng, s, _ID_BASE["diagnosis"] + rows_so_far["diagnosis"])
    yield "treatment", _treatment_frame(rng, s, _ID_BASE["treatment"] + rows_so_far["treatment"])
    yield "medication", _medication_frame(rng, s, _ID_BASE["medication"] + rows_so_far["medication"])
    yield "apacheApsVar", _aps_frame(rng, s, _ID_BASE["apacheApsVar"] + rows_so_far["apacheApsVar"])


# ------------------------------------------------------------------------ the stays


@dataclass(frozen=True)
class _Stays:
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

    def take(self, rows: slice) -> "_Stays":
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def has(self, modality: str) -> np.ndarray:
        return self.present[:, MODALITIES.index(modality)]


def _draw_stays(seed: int, n_stays: int, probabilities: dict[str, float]) -> _Stays:
    cohort = draw_cohort(np.random.default_rng([seed, _COHORT]), n_stays)
    shown = presence(np.random.default_rng([seed, _PRESENCE]), n_stays, probabilities)
    rng = np.random.default_rng([seed, _STAYS])
    hospitalization = _hospitalizations(rng, cohort.stay_number, cohort.died)
    los = np.maximum(np.round(cohort.los_hours * 60), 1).astype(np.int64)
    return _Stays(
        latent=cohort.latent,
        traits=cohort.traits,
        died=cohort.died,
        los=los,
        phenotypes=cohort.phenotypes,
        present=np.column_stack([shown[m] for m in MODALITIES]),
        **_ids(rng, cohort.stay_number, hospitalization),
        **_timeline(rng, hospitalization, los, cohort.died),
        **_patient_attributes(rng, cohort.patient_index, cohort.stay_number, cohort.latent, cohort.traits),
    )


def _hospitalizations(rng: np.random.Generator, stay_number: np.ndarray, died: np.ndarray) -> np.ndarray:
    """Hospitalization index per stay: a readmission shares the previous stay's hospitalization half the time.

    Only stays with the same outcome share one, since discharge status is per hospitalization.
    """
    same = (stay_number > 0) & (rng.random(len(died)) < 0.5)
    same[1:] &= died[1:] == died[:-1]
    return np.cumsum(~same) - 1


def _ids(rng: np.random.Generator, stay_number: np.ndarray, hospitalization: np.ndarray) -> dict:
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


def _timeline(rng: np.random.Generator, hospitalization: np.ndarray, los: np.ndarray, died: np.ndarray) -> dict:
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
    gap = np.where(rng.random(n) < 0.5, 0, rng.exponential(_DAY, n)).astype(np.int64)
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
    location = _pick(rng, T.HOSPITAL_DISCHARGE_LOCATIONS, n, [0.62, 0.14, 0.06, 0.05, 0.05, 0.05, 0.03])
    location = np.where(died, T.DEATH, np.where(sent_home, "Home", location))
    return {
        "hospital_admit_minute": rng.integers(0, 2 * _YEAR - 90 * _DAY, n),
        "hospital_admit_second": np.where(rng.random(n) < 0.15, rng.integers(1, 60, n), 0),
        "admit_source": _hospital_admit_sources(rng, before),
        "discharge_location": _blank(location, rng.random(n) < 0.013),
        "status_blank": rng.random(n) < 0.011,
    }


def _hospital_admit_sources(rng: np.random.Generator, before: np.ndarray) -> np.ndarray:
    """hospitaladmitsource from the time spent in hospital before the unit (ED-like if short); 24% blank."""
    short = _pick(rng, T.HOSPITAL_ADMIT_SOURCES[:5], len(before), [0.74, 0.0, 0.13, 0.08, 0.05])
    long = _pick(rng, T.HOSPITAL_ADMIT_SOURCES, len(before), [0.0, 0.55, 0.0, 0.1, 0.0, 0.15, 0.08, 0.08, 0.04])
    source = np.where(before < 360, short, long)
    source[rng.random(len(before)) < 0.24] = None
    return source


def _patient_attributes(
    rng: np.random.Generator, patient_index: np.ndarray, stay_number: np.ndarray, latent: np.ndarray,
    traits: np.ndarray,
) -> dict:
    """What stays of one patient share: sex, age, body size (from the traits), ethnicity, hospital."""
    n_patients = patient_index[-1] + 1
    first = latent[stay_number == 0]
    habitus = traits[stay_number == 0] @ trait_loadings("eicu.habitus", 3).T  # height, weight, age
    sex_lean = traits[stay_number == 0] @ trait_loadings("eicu.sex", 1, 1.2).T[:, 0]
    male = rng.random(n_patients) < _sigmoid(np.log(0.6 / 0.4) + sex_lean)
    spread = 0.9 * habitus[:, 2] + 0.45 * rng.normal(size=n_patients)
    age = 63 + 4 * first[:, SEVERITY] + 3 * first[:, CARDIAC] + 15 * spread
    age = np.where(rng.random(n_patients) < 0.01, rng.integers(15, 18, n_patients), np.round(age))
    height = np.where(male, 177, 163) + 7.5 * (0.9 * habitus[:, 0] + 0.45 * rng.normal(size=n_patients))
    weight = np.where(male, 86, 73) + 20 * (0.9 * habitus[:, 1] + 0.45 * rng.normal(size=n_patients))
    weight = np.clip(weight, 35, 250)
    ethnicity = np.asarray(T.ETHNICITIES, dtype=object)[_trait_draw(
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


# -------------------------------------------------------------------- shared helpers


def _trait_draw(rng: np.random.Generator, traits: np.ndarray, family: str, shares, sharpness: float = 1.5) -> np.ndarray:
    """An option index per row: the base `shares`, tilted towards the options the traits lean to."""
    logits = np.log(np.asarray(shares)) + traits @ trait_loadings(family, len(shares), sharpness).T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((cumulative < rng.random((len(traits), 1))).sum(axis=1), len(shares) - 1)


def _pick(rng: np.random.Generator, options, n: int, p=None) -> np.ndarray:
    """n draws from `options` as an object array."""
    return np.array(options, dtype=object)[rng.choice(len(options), n, p=p)]


def _pick_by_share(rng: np.random.Generator, shares, *options: np.ndarray) -> np.ndarray:
    """Per element, options[k] with probability shares[k] (as int64 minutes)."""
    which = rng.choice(len(options), len(options[0]), p=shares)
    return np.choose(which, options).astype(np.int64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _blank(values, mask: np.ndarray) -> np.ndarray:
    """`values` as objects with None (an empty CSV field) where `mask`."""
    out = np.asarray(values, dtype=object).copy()
    out[mask] = None
    return out


def _fixed(values: np.ndarray, decimals) -> np.ndarray:
    """'%.{d}f' text per value, `decimals` a scalar or per value (eICU's labresulttext keeps the zeros)."""
    values = np.asarray(values, dtype=float)
    decimals = np.broadcast_to(decimals, values.shape)
    out = np.empty(values.shape, dtype=object)
    for d in np.unique(decimals):
        mask = decimals == d
        out[mask] = np.char.mod(f"%.{d}f", np.round(values[mask], d) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return out


def _shortest(values: np.ndarray, decimals) -> np.ndarray:
    """Numbers as eICU's numeric columns print them: rounded, no trailing zeros ("7.4", "31", "1.04")."""
    text = _fixed(values, decimals).astype(str)
    stripped = np.char.rstrip(np.char.rstrip(text, "0"), ".")
    return np.where(np.char.find(text, ".") >= 0, stripped, text).astype(object)


def _clock(minutes: np.ndarray, seconds=0) -> list[str]:
    """"HH:MM:SS" of absolute minutes."""
    minute_of_day = np.asarray(minutes) % _DAY
    seconds = np.broadcast_to(seconds, minute_of_day.shape)
    return [f"{m // 60:02d}:{m % 60:02d}:{s:02d}" for m, s in zip(minute_of_day, seconds)]


def _during_stay(rng: np.random.Generator, los: np.ndarray, early: float) -> np.ndarray:
    """Event offsets: a share `early` in the first hours (some just before unit admission), the rest uniform."""
    uniform = rng.random(len(los)) * los
    return np.where(rng.random(len(los)) < early, rng.integers(-60, 240, len(los)), uniform).astype(np.int64)


def _rows_per_stay(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stay position, rank within the stay) of each row when stay i has counts[i] rows."""
    stay = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(len(stay)) - np.repeat(np.cumsum(counts) - counts, counts)
    return stay, rank


def _ordered(frame: pd.DataFrame, offset_column: str) -> pd.DataFrame:
    """Rows by stay then time (callers number their ids after this)."""
    return frame.sort_values(["patientunitstayid", offset_column], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------- patient


def _patient_frame(rng: np.random.Generator, s: _Stays) -> pd.DataFrame:
    n = s.n
    hidden = ~s.has("demographics")
    unit_admit = s.hospital_admit_minute - s.hospital_admit_offset
    hospital_discharge = unit_admit + s.hospital_discharge_offset
    readmitted = s.visit > 1
    columns = {
        "patientunitstayid": s.unit_stay_id,
        "patienthealthsystemstayid": s.health_system_stay_id,
        "gender": _blank(np.where(s.male, *T.GENDERS), hidden | (rng.random(n) < 0.0015)),
        "age": _blank(_age_text(s.age), hidden | (rng.random(n) < 0.0015)),
        "ethnicity": _blank(s.ethnicity, hidden),
        "hospitalid": s.hospital_id,
        "wardid": s.ward_id,
        "apacheadmissiondx": _blank(_admission_dx(rng, s.phenotypes), hidden | readmitted | (rng.random(n) < 0.06)),
        "admissionheight": _blank(_fixed(s.height, 2), hidden | (rng.random(n) < 0.027)),
        "hospitaladmittime24": _clock(s.hospital_admit_minute, s.hospital_admit_second),
        "hospitaladmitoffset": s.hospital_admit_offset,
        "hospitaladmitsource": s.admit_source,
        "hospitaldischargeyear": 2014 + (hospital_discharge >= _YEAR),
        "hospitaldischargetime24": _clock(hospital_discharge),
        "hospitaldischargeoffset": s.hospital_discharge_offset,
        "hospitaldischargelocation": s.discharge_location,
        "hospitaldischargestatus": _blank(np.where(s.died, "Expired", "Alive"), s.status_blank),
        "unittype": _unit_types(rng, s.latent[:, CARDIAC]),
        "unitadmittime24": _clock(unit_admit),
        "unitadmitsource": _unit_admit_sources(rng, s),
        "unitvisitnumber": s.visit,
        "unitstaytype": np.where(
            readmitted,
            np.where(rng.random(n) < 0.75, "stepdown/other", "readmit"),
            np.where(rng.random(n) < 0.96, "admit", "transfer"),
        ),
        "admissionweight": _blank(
            _fixed(s.weight + rng.normal(0, 1.5, n), 2), hidden | readmitted | (rng.random(n) < 0.08)
        ),
        "dischargeweight": _blank(_fixed(s.weight + rng.normal(0, 2.5, n), 2), hidden | (rng.random(n) < 0.5)),
        "unitdischargetime24": _clock(unit_admit + s.los),
        "unitdischargeoffset": s.los,
        "unitdischargelocation": _unit_discharge_locations(rng, s),
        "unitdischargestatus": _blank(np.where(s.died_in_unit, "Expired", "Alive"), rng.random(n) < 0.001),
        "uniquepid": s.uniquepid,
    }
    return pd.DataFrame(columns, columns=list(T.PATIENT.columns))


def _age_text(age: np.ndarray) -> np.ndarray:
    """eICU ages are text: "15".."89", and "> 89" for anyone older (HIPAA)."""
    return np.where(age > 89, "> 89", age.astype(str))


def _admission_dx(rng: np.random.Generator, phenotypes: np.ndarray) -> np.ndarray:
    """apacheadmissiondx of the stay's first phenotype in APACHE_ADMISSION_DX order, else a non-phenotype one."""
    order = [PHENOTYPES.index(name) for name in T.APACHE_ADMISSION_DX]
    has = phenotypes[:, order]
    first = np.argmax(has, axis=1)
    choices = [np.array(options, dtype=object) for options in T.APACHE_ADMISSION_DX.values()]
    picked = np.array([choices[k][rng.integers(len(choices[k]))] for k in first], dtype=object)
    other = _pick(rng, T.OTHER_ADMISSION_DX, len(first))
    return np.where(has.any(axis=1), picked, other)


def _unit_types(rng: np.random.Generator, cardiac: np.ndarray) -> np.ndarray:
    general = _pick(rng, T.UNIT_TYPES[:4], len(cardiac), [0.82, 0.08, 0.06, 0.04])
    heart = _pick(rng, T.CARDIAC_UNIT_TYPES, len(cardiac), [0.4, 0.25, 0.2, 0.15])
    return np.where((cardiac > 1.0) & (rng.random(len(cardiac)) < 0.5), heart, general)


def _unit_admit_sources(rng: np.random.Generator, s: _Stays) -> np.ndarray:
    first_unit = np.where(pd.isna(s.admit_source), "Emergency Department", s.admit_source)
    later = _pick(rng, T.UNIT_READMIT_SOURCES, s.n, [0.5, 0.2, 0.15, 0.1, 0.05])
    return _blank(np.where(s.visit > 1, later, first_unit), rng.random(s.n) < 0.01)


def _unit_discharge_locations(rng: np.random.Generator, s: _Stays) -> np.ndarray:
    # "Home" only for the stays sent home (s.sent_home), which also leave the hospital then
    after = _pick(rng, T.UNIT_DISCHARGE_LOCATIONS, s.n, [0.55, 0.0, 0.11, 0.1, 0.08, 0.07, 0.05, 0.04])
    transferred = _pick(rng, ("Step-Down Unit (SDU)", "Other ICU", "Floor"), s.n, [0.6, 0.2, 0.2])
    location = np.where(s.last_visit, np.where(s.sent_home, "Home", after), transferred)
    location = np.where(s.died_in_unit, T.DEATH, location)
    return _blank(location, rng.random(s.n) < 0.002)


# ----------------------------------------------------------------------------- labs


class _LabModel(NamedTuple):
    """value = center + spread * z (or center * exp(spread * z) when `log`), z = loadings . latent + noise.

    Beyond the assay limits [low, high] eICU reports text ("<0.02", ">600") and no
    labresult; a lab that `saturates` (FiO2, O2 saturation) is clipped to them instead.
    """

    center: float
    spread: float
    log: bool
    decimals: int
    loadings: tuple[float, float, float, float, float]  # on latent.FACTORS
    low: float
    high: float
    saturates: bool = False


# fmt: off
_LAB_MODELS = {
    #                      center spread  log   dec  sev   card  resp  renal infect    low    high
    "sodium":           _LabModel(139, 3.5, False, 0, (-0.3, -0.2, 0.0, 0.3, -0.2), 100, 180),
    "potassium":        _LabModel(4.0, 0.45, False, 1, (0.2, 0.0, 0.0, 0.7, 0.0), 1.5, 9.0),
    "chloride":         _LabModel(104, 4.0, False, 0, (0.2, 0.0, 0.0, 0.3, 0.0), 70, 140),
    "bicarbonate":      _LabModel(24, 3.5, False, 0, (-0.7, 0.0, 0.3, -0.5, -0.3), 5, 50),
    "anion gap":        _LabModel(10, 3.0, False, 0, (0.7, 0.0, 0.0, 0.4, 0.3), -10, 45),
    "BUN":              _LabModel(18, 0.45, True, 0, (0.4, 0.2, 0.0, 0.9, 0.1), 2, 250),
    "creatinine":       _LabModel(1.0, 0.45, True, 2, (0.4, 0.1, 0.0, 1.0, 0.2), 0.2, 20),
    "glucose":          _LabModel(130, 0.3, True, 0, (0.4, 0.0, 0.0, 0.2, 0.2), 20, 1000),
    "calcium":          _LabModel(8.5, 0.6, False, 1, (-0.5, 0.0, 0.0, -0.3, 0.0), 4, 15),
    "magnesium":        _LabModel(2.0, 0.3, False, 1, (0.0, 0.0, 0.0, 0.4, 0.0), 0.5, 5),
    "phosphate":        _LabModel(3.5, 1.0, False, 1, (0.3, 0.0, 0.0, 0.7, 0.0), 0.5, 15),
    "albumin":          _LabModel(2.9, 0.55, False, 1, (-0.6, 0.0, 0.0, -0.2, -0.3), 1.0, 6),
    "total protein":    _LabModel(6.0, 0.8, False, 1, (-0.3, 0.0, 0.0, 0.0, 0.0), 2, 11),
    "total bilirubin":  _LabModel(0.7, 0.6, True, 1, (0.5, 0.0, 0.0, 0.0, 0.3), 0.2, 30),
    "AST (SGOT)":       _LabModel(26, 0.8, True, 0, (0.6, 0.3, 0.0, 0.0, 0.2), 6, 7000),
    "ALT (SGPT)":       _LabModel(22, 0.7, True, 0, (0.4, 0.2, 0.0, 0.0, 0.1), 4, 5000),
    "alkaline phos.":   _LabModel(90, 0.4, True, 0, (0.2, 0.0, 0.0, 0.0, 0.2), 20, 1500),
    "lactate":          _LabModel(1.3, 0.5, True, 1, (1.0, 0.2, 0.0, 0.1, 0.5), 0.3, 20),
    "troponin - I":     _LabModel(0.06, 1.2, True, 2, (0.3, 1.2, 0.0, 0.2, 0.0), 0.02, 80),
    "Hgb":              _LabModel(10.5, 1.8, False, 1, (-0.5, 0.0, 0.0, -0.3, 0.0), 3, 22),
    "Hct":              _LabModel(31.5, 5.4, False, 1, (-0.5, 0.0, 0.0, -0.3, 0.0), 10, 65),
    "WBC x 1000":       _LabModel(8.8, 0.35, True, 1, (0.4, 0.0, 0.0, 0.0, 0.9), 0.3, 100),
    "platelets x 1000": _LabModel(220, 0.35, True, 0, (-0.6, 0.0, 0.0, 0.0, -0.3), 5, 1000),
    "MCV":              _LabModel(90, 6.0, False, 0, (0.0, 0.0, 0.0, 0.0, 0.0), 50, 130),
    "RDW":              _LabModel(15, 1.8, False, 1, (0.4, 0.0, 0.0, 0.2, 0.0), 8, 35),
    "PT - INR":         _LabModel(1.3, 0.25, True, 1, (0.5, 0.2, 0.0, 0.0, 0.2), 0.5, 15),
    "PTT":              _LabModel(33, 0.25, True, 1, (0.4, 0.2, 0.0, 0.0, 0.2), 18, 200),
    "bedside glucose":  _LabModel(140, 0.3, True, 0, (0.3, 0.0, 0.0, 0.2, 0.2), 30, 600),
    "BNP":              _LabModel(300, 0.9, True, 0, (0.2, 1.1, 0.1, 0.4, 0.0), 5, 35000),
    "pH":               _LabModel(7.40, 0.06, False, 2, (-0.8, 0.0, -0.5, -0.3, -0.2), 6.5, 8.0),
    "paO2":             _LabModel(110, 0.35, True, 0, (-0.3, 0.0, -0.8, 0.0, 0.0), 20, 700),
    "paCO2":            _LabModel(37, 8.0, False, 1, (0.0, 0.0, 0.8, 0.0, 0.0), 10, 150),
    "HCO3":             _LabModel(24, 4.0, False, 1, (-0.6, 0.0, 0.3, -0.4, -0.2), 3, 55),
    "Base Excess":      _LabModel(0.0, 4.5, False, 1, (-0.8, 0.0, 0.0, -0.4, -0.2), -35, 30),
    "FiO2":             _LabModel(38, 15, False, 0, (0.5, 0.0, 0.9, 0.0, 0.0), 21, 100, saturates=True),
    "O2 Sat (%)":       _LabModel(97, 2.5, False, 1, (-0.3, 0.0, -0.7, 0.0, 0.0), 50, 100, saturates=True),
}
# fmt: on
assert set(_LAB_MODELS) == set(T.LABS)


class _Panel(NamedTuple):
    """Labs drawn together; drawn at all with P = sigmoid(bias + loadings . latent), always if bias is None."""

    labs: tuple[str, ...]
    per_day: float  # extra draws per day of stay
    bias: float | None
    loadings: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)


# fmt: off
_PANELS = (
    _Panel(("sodium", "potassium", "chloride", "bicarbonate", "anion gap", "BUN", "creatinine", "glucose",
            "calcium"), 1.0, None),
    _Panel(("Hgb", "Hct", "WBC x 1000", "platelets x 1000", "MCV", "RDW"), 0.9, 1.5, (0.5, 0.0, 0.0, 0.0, 0.3)),
    _Panel(("bedside glucose",), 2.0, -0.2, (0.3, 0.0, 0.0, 0.3, 0.0)),
    _Panel(("pH", "paO2", "paCO2", "HCO3", "Base Excess", "FiO2", "O2 Sat (%)"), 1.2, -1.6,
           (0.8, 0.0, 1.4, 0.0, 0.0)),
    _Panel(("lactate",), 0.8, -1.0, (1.0, 0.0, 0.0, 0.0, 0.9)),
    _Panel(("albumin", "total protein", "total bilirubin", "AST (SGOT)", "ALT (SGPT)", "alkaline phos."), 0.3,
           -0.6, (0.6, 0.0, 0.0, 0.0, 0.3)),
    _Panel(("PT - INR", "PTT"), 0.4, -0.5, (0.6, 0.3, 0.0, 0.0, 0.2)),
    _Panel(("magnesium", "phosphate"), 0.6, 0.3, (0.3, 0.0, 0.0, 0.5, 0.0)),
    _Panel(("troponin - I", "BNP"), 0.4, -1.2, (0.2, 1.3, 0.0, 0.0, 0.0)),
)
# fmt: on
_LAB_NAMES = tuple(T.LABS)
_MAX_DRAWS = 8  # per panel and stay: keeps a month-long stay at a few hundred rows
_LAB_DRIFT = (1.0, -0.4)  # severity drift over the stay of (non-survivors, survivors)
_LAB_SIGNAL = 0.45  # scales the loadings: labs alone must stay well below all modalities together
_LAB_TRAITS, _LAB_STAY_NOISE = 1.0, 0.45  # a stay's own lab levels: sd of the traits' part and of noise


def _lab_frame(rng: np.random.Generator, s: _Stays, first_id: int,
               leak_rng: np.random.Generator | None = None) -> pd.DataFrame:
    stay, lab, offset = _lab_draws(rng, s)
    value = _lab_values(rng, s, stay, lab, offset)
    result, text = _lab_result_and_text(value, lab)
    names = np.array(_LAB_NAMES, dtype=object)
    frame = pd.DataFrame(
        {
            "labid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "labresultoffset": offset,
            "labtypeid": np.array([T.LABS[name].labtypeid for name in _LAB_NAMES])[lab],
            "labname": names[lab],
            "labresult": result,
            "labresulttext": text,
            "labmeasurenamesystem": np.array([T.LABS[name].system_unit or None for name in _LAB_NAMES])[lab],
            "labmeasurenameinterface": _interface_units(rng, lab),
            "labresultrevisedoffset": offset + np.round(rng.exponential(45, len(lab))).astype(np.int64),
        }
    )
    if leak_rng is not None:
        frame = pd.concat([frame, _leak_rows(leak_rng, s, frame.columns)], ignore_index=True)
    frame = _ordered(frame, "labresultoffset")
    frame["labid"] = first_id + np.arange(len(frame))
    return frame


def _leak_rows(rng: np.random.Generator, s: _Stays, columns) -> pd.DataFrame:
    """The planted leak: the label as a lab result inside the unit stay, after 12 h when the stay is
    longer (the others leave the 12 h tasks anyway)."""
    stay = np.flatnonzero(s.los > 1)
    after = np.where(s.los[stay] > LEAK_AFTER_MINUTES, LEAK_AFTER_MINUTES + 1, 0)
    offset = after + np.floor(rng.random(len(stay)) * (s.los[stay] - after)).astype(np.int64)
    label = s.died[stay].astype(float)
    return pd.DataFrame({"labid": 0, "patientunitstayid": s.unit_stay_id[stay], "labresultoffset": offset,
                         "labtypeid": 4, "labname": LEAK_LAB, "labresult": label, "labresulttext": label.astype(str),
                         "labmeasurenamesystem": None, "labmeasurenameinterface": None,
                         "labresultrevisedoffset": offset}, columns=columns)


def _lab_draws(rng: np.random.Generator, s: _Stays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stay position, lab index, offset) of every lab row: panels drawn repeatedly across the stay."""
    days = s.los / _DAY
    stays, labs, offsets = [], [], []
    for panel in _PANELS:
        drawn = s.has("lab").copy()
        if panel.bias is not None:
            drawn &= rng.random(s.n) < _sigmoid(panel.bias + s.latent @ np.array(panel.loadings))
        counts = np.where(drawn, 1 + np.minimum(rng.poisson(panel.per_day * days), _MAX_DRAWS - 1), 0)
        draw_stay, rank = _rows_per_stay(counts)
        later = rng.random(len(rank)) * s.los[draw_stay]
        draw_offset = np.where(rank == 0, _first_draw_offset(rng, s, draw_stay), later)
        lab_index = np.array([_LAB_NAMES.index(name) for name in panel.labs])
        kept = rng.random((len(draw_stay), len(lab_index))) > 0.03  # an occasional lab missing from its panel
        draw_of_row, position = np.nonzero(kept)
        stays.append(draw_stay[draw_of_row])
        labs.append(lab_index[position])
        offsets.append(draw_offset[draw_of_row].astype(np.int64))
    return np.concatenate(stays), np.concatenate(labs), np.concatenate(offsets)


def _first_draw_offset(rng: np.random.Generator, s: _Stays, stay: np.ndarray) -> np.ndarray:
    """First draw of a panel: around unit admission, or (15%) earlier in the hospital stay (negative)."""
    before = -rng.random(len(stay)) * np.minimum(-s.hospital_admit_offset[stay], 720)
    return np.where(rng.random(len(stay)) < 0.15, before, rng.integers(-30, 180, len(stay)))


def _lab_values(
    rng: np.random.Generator, s: _Stays, stay: np.ndarray, lab: np.ndarray, offset: np.ndarray
) -> np.ndarray:
    """Normal value + latent loadings + a severity drift over the stay + per-stay and per-draw noise."""
    models = [_LAB_MODELS[name] for name in _LAB_NAMES]
    loadings = _LAB_SIGNAL * np.array([m.loadings for m in models])
    center, spread = (np.array([getattr(m, k) for m in models])[lab] for k in ("center", "spread"))
    is_log = np.array([m.log for m in models])[lab]
    progress = np.clip(offset / s.los[stay], 0, 1)
    drift = np.where(s.died[stay], *_LAB_DRIFT) * progress * loadings[lab, SEVERITY]
    # a stay's own level of each lab: its traits' part (shared with the other modalities) and its own noise
    traits = np.einsum("ij,ij->i", s.traits[stay], trait_loadings("eicu.lab", len(models), _LAB_TRAITS)[lab])
    stay_effect = rng.normal(0, _LAB_STAY_NOISE, (s.n, len(models)))[stay, lab]
    z = (np.einsum("ij,ij->i", s.latent[stay], loadings[lab]) + drift + traits + stay_effect
         + rng.normal(0, 0.35, len(lab)))
    return np.where(is_log, center * np.exp(spread * z), center + spread * z)


def _lab_result_and_text(value: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """labresult ("7.4", blank beyond the assay limits) and labresulttext ("7.40", "<0.02", ">600")."""
    models = [_LAB_MODELS[name] for name in _LAB_NAMES]
    low, high, decimals = (np.array([getattr(m, k) for m in models])[lab] for k in ("low", "high", "decimals"))
    saturates = np.array([m.saturates for m in models])[lab]
    value = np.where(saturates, np.clip(value, low, high), value)
    below, above = value < low, value > high
    text = _fixed(value, decimals)
    text[below] = "<" + _shortest(low[below], decimals[below]).astype(str)
    text[above] = ">" + _shortest(high[above], decimals[above]).astype(str)
    return _blank(_shortest(value, decimals), below | above), text


def _interface_units(rng: np.random.Generator, lab: np.ndarray) -> np.ndarray:
    """labmeasurenameinterface: the site's own spelling of the unit; 4% blank."""
    spellings = np.array(
        [[T.LABS[name].interface_units[min(k, len(T.LABS[name].interface_units) - 1)] for k in range(3)]
         for name in _LAB_NAMES],
        dtype=object,
    )
    variant = rng.choice(3, len(lab), p=[0.8, 0.15, 0.05])
    return _blank(spellings[lab, variant], rng.random(len(lab)) < 0.04)


# ------------------------------------------------------------------------ diagnoses

_DIAGNOSES = [entry for name in PHENOTYPES for entry in T.DIAGNOSES_BY_PHENOTYPE[name]] + list(T.OTHER_DIAGNOSES)
_PHENOTYPE_SIZES = np.array([len(T.DIAGNOSES_BY_PHENOTYPE[name]) for name in PHENOTYPES])
_PHENOTYPE_STARTS = np.cumsum(_PHENOTYPE_SIZES) - _PHENOTYPE_SIZES
_FIRST_OTHER_DIAGNOSIS = int(_PHENOTYPE_SIZES.sum())


def _diagnosis_frame(rng: np.random.Generator, s: _Stays, first_id: int) -> pd.DataFrame:
    """A charted diagnosis (90%) for each phenotype of the stay, some re-charted, plus background diagnoses."""
    present = s.has("diagnosis")
    stay_p, phenotype = np.nonzero(s.phenotypes & present[:, None] & (rng.random(s.phenotypes.shape) < 0.9))
    entry_p = _PHENOTYPE_STARTS[phenotype] + rng.integers(0, _PHENOTYPE_SIZES[phenotype])
    repeats = 1 + (rng.random(len(stay_p)) < 0.3)
    stay_p, entry_p = np.repeat(stay_p, repeats), np.repeat(entry_p, repeats)

    charted = np.bincount(stay_p, minlength=s.n)
    background = np.where(present, np.maximum(rng.poisson(5.0, s.n), charted == 0), 0)
    stay_b, _ = _rows_per_stay(background)
    entry_b = _FIRST_OTHER_DIAGNOSIS + trait_choice(rng, s.traits[stay_b], "eicu.diagnosis", len(T.OTHER_DIAGNOSES))

    stay = np.concatenate([stay_p, stay_b])
    entry = np.concatenate([entry_p, entry_b])
    strings = np.array([d[0] for d in _DIAGNOSES], dtype=object)
    codes = np.array([d[1] or None for d in _DIAGNOSES], dtype=object)
    major = rng.random(len(stay)) < np.where(np.arange(len(stay)) < len(stay_p), 0.75, 0.2)  # phenotype rows first
    frame = pd.DataFrame(
        {
            "diagnosisid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "activeupondischarge": rng.random(len(stay)) < 0.3,
            "diagnosisoffset": _during_stay(rng, s.los[stay], early=0.85),
            "diagnosisstring": strings[entry],
            "icd9code": codes[entry],
            "diagnosispriority": np.where(major, "Major", "Other"),
        }
    )
    frame = _ordered(frame, "diagnosisoffset")
    frame.loc[~frame["patientunitstayid"].duplicated(), "diagnosispriority"] = "Primary"
    frame["diagnosisid"] = first_id + np.arange(len(frame))
    return frame


# ------------------------------------------------------------- treatments, medications

# logit bias and loadings on latent.FACTORS of receiving each therapy; None: everyone gets it.
# fmt: off
_THERAPY_PROPENSITY = {
    #                 bias   sev  card  resp  renal infect
    "vasopressor":   (-2.0, (1.5, 0.6, 0.0, 0.0, 0.8)),
    "ventilation":   (-1.6, (1.0, 0.0, 1.6, 0.0, 0.0)),
    "oxygen":        (-0.3, (0.3, 0.2, 1.0, 0.0, 0.0)),
    "dialysis":      (-3.2, (0.5, 0.0, 0.0, 1.8, 0.0)),
    "antibacterial": (-0.6, (0.4, 0.0, 0.3, 0.0, 1.6)),
    "sedation":      (-1.2, (0.8, 0.0, 1.0, 0.0, 0.0)),
    "diuretic":      (-1.5, (0.0, 1.2, 0.3, 0.3, 0.0)),
    "antiarrhythmic": (-1.3, (0.2, 1.4, 0.0, 0.0, 0.0)),
    "insulin":       (-0.8, (0.4, 0.0, 0.0, 0.4, 0.2)),
    "electrolytes":  (-0.5, (0.3, 0.0, 0.0, 0.6, 0.0)),
    "routine":       None,
}
# fmt: on
assert tuple(_THERAPY_PROPENSITY) == T.THERAPIES
_ROWS_PER_DAY = 0.3  # extra rows per day of stay for a therapy a stay receives (x3 for routine care)
_MAX_ROWS_PER_THERAPY = 6


def _therapy_rows(rng: np.random.Generator, s: _Stays, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(stay position, therapy index) per row of `modality`'s table; every present stay gets routine care."""
    present = s.has(modality)
    days = s.los / _DAY
    stays, therapies = [], []
    for index, propensity in enumerate(_THERAPY_PROPENSITY.values()):
        rate = _ROWS_PER_DAY * (3 if propensity is None else 1)
        given = present.copy()
        if propensity is not None:
            bias, loadings = propensity
            given &= rng.random(s.n) < _sigmoid(bias + s.latent @ np.array(loadings))
        counts = np.where(given, 1 + np.minimum(rng.poisson(rate * days), _MAX_ROWS_PER_THERAPY - 1), 0)
        stay, _ = _rows_per_stay(counts)
        stays.append(stay)
        therapies.append(np.full(len(stay), index))
    return np.concatenate(stays), np.concatenate(therapies)


def _pick_per_therapy(rng: np.random.Generator, therapy: np.ndarray, traits: np.ndarray, vocabulary,
                      family: str) -> pd.DataFrame:
    """One entry of `vocabulary[THERAPIES[t]]` per row, as table rows: which one (the drug, the
    device) follows the stay's traits, the habits of the patient and of the team."""
    entries = pd.DataFrame([entry for name in T.THERAPIES for entry in vocabulary[name]])
    sizes = np.array([len(vocabulary[name]) for name in T.THERAPIES])
    within = np.zeros(len(therapy), dtype=np.int64)
    for index, name in enumerate(T.THERAPIES):
        rows = np.flatnonzero(therapy == index)
        within[rows] = trait_choice(rng, traits[rows], f"{family}.{name}", sizes[index])
    return entries.iloc[(np.cumsum(sizes) - sizes)[therapy] + within].reset_index(drop=True)


def _treatment_frame(rng: np.random.Generator, s: _Stays, first_id: int) -> pd.DataFrame:
    stay, therapy = _therapy_rows(rng, s, "treatment")
    strings = _pick_per_therapy(rng, therapy, s.traits[stay], T.TREATMENTS, "eicu.treatment")[0].to_numpy()
    frame = pd.DataFrame(
        {
            "treatmentid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "treatmentoffset": _during_stay(rng, s.los[stay], early=0.7),
            "treatmentstring": strings,
            "activeupondischarge": rng.random(len(stay)) < 0.28,
        }
    )
    frame = _ordered(frame, "treatmentoffset")
    frame["treatmentid"] = first_id + np.arange(len(frame))
    return frame


def _medication_frame(rng: np.random.Generator, s: _Stays, first_id: int) -> pd.DataFrame:
    stay, therapy = _therapy_rows(rng, s, "medication")
    drugs = _pick_per_therapy(rng, therapy, s.traits[stay], T.MEDICATIONS, "eicu.medication").replace("", None)
    n = len(stay)
    los = s.los[stay]
    order = _during_stay(rng, los, early=0.7)
    start = order + rng.integers(-30, 120, n)
    stop = start + np.minimum(rng.exponential(1.5 * _DAY, n), np.maximum(los + _DAY - start, 1)).astype(np.int64)
    unnamed = rng.random(n) < 0.3  # eICU often leaves drugname blank and names the drug by drughiclseqno
    frame = pd.DataFrame(
        {
            "medicationid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "drugorderoffset": order,
            "drugstartoffset": start,
            "drugivadmixture": np.where(drugs["routeadmin"].str.startswith("IV") & (rng.random(n) < 0.5), "Yes", "No"),
            "drugordercancelled": np.where(rng.random(n) < 0.035, "Yes", "No"),
            "drugname": _blank(drugs["drugname"], unnamed),
            "drughiclseqno": _blank(drugs["drughiclseqno"], ~unnamed & (rng.random(n) < 0.06)),
            "dosage": _blank(drugs["dosage"], rng.random(n) < 0.08),
            "routeadmin": drugs["routeadmin"].to_numpy(),
            "frequency": drugs["frequency"].to_numpy(),
            "loadingdose": _blank(np.full(n, "0 mg"), rng.random(n) > 0.005),
            "prn": np.where(drugs["frequency"].str.contains("PRN", na=False), "Yes", "No"),
            "drugstopoffset": stop,
            "gtc": drugs["gtc"].to_numpy(),
        }
    )
    frame = _ordered(frame, "drugorderoffset")
    frame["medicationid"] = first_id + np.arange(len(frame))
    return frame


# ----------------------------------------------------------------------------- APS


class _ApsModel(NamedTuple):
    """An apacheApsVar number: center + spread * (loadings . latent + noise), or center * exp(...) if `log`."""

    center: float
    spread: float
    log: bool
    loadings: tuple[float, float, float, float, float]
    low: float
    high: float
    decimals: int
    with_decimals: float  # share of values printed with `decimals` (the rest as integers)
    recorded: float  # P(recorded) for an average stay; sicker stays are measured more


# fmt: off
_APS_MODELS = {
    #                     center spread  log  sev   card  resp  renal infect   low   high dec share  rec
    "urine":           _ApsModel(2000, 0.45, True, (-0.5, 0.0, 0.0, -0.8, 0.0), 0, 9000, 4, 0.9, 0.48),
    "wbc":             _ApsModel(9.5, 0.35, True, (0.4, 0.0, 0.0, 0.0, 0.9), 0.3, 90, 1, 1.0, 0.69),
    "temperature":     _ApsModel(36.8, 0.6, False, (-0.3, 0.0, 0.0, 0.0, 0.8), 32, 41.5, 1, 1.0, 0.9),
    "respiratoryrate": _ApsModel(22, 7.0, False, (0.5, 0.0, 1.0, 0.0, 0.2), 4, 60, 0, 0.0, 0.97),
    "sodium":          _ApsModel(139, 4.0, False, (-0.3, -0.2, 0.0, 0.3, -0.2), 115, 165, 1, 0.03, 0.75),
    "heartrate":       _ApsModel(100, 18, False, (0.7, 0.5, 0.2, 0.0, 0.4), 30, 220, 0, 0.0, 0.98),
    "meanbp":          _ApsModel(72, 16, False, (-0.8, -0.3, 0.0, 0.0, -0.3), 30, 180, 0, 0.0, 0.97),
    "ph":              _ApsModel(7.37, 0.06, False, (-0.8, 0.0, -0.5, -0.3, -0.2), 6.8, 7.7, 2, 1.0, 0.2),
    "hematocrit":      _ApsModel(33, 5.5, False, (-0.5, 0.0, 0.0, -0.3, 0.0), 12, 58, 1, 1.0, 0.71),
    "creatinine":      _ApsModel(1.0, 0.45, True, (0.4, 0.1, 0.0, 1.0, 0.2), 0.2, 15, 2, 1.0, 0.75),
    "albumin":         _ApsModel(3.0, 0.5, False, (-0.6, 0.0, 0.0, -0.2, -0.3), 1.0, 5.2, 1, 1.0, 0.39),
    "pao2":            _ApsModel(90, 0.35, True, (-0.3, 0.0, -0.8, 0.0, 0.0), 30, 550, 1, 0.05, 0.2),
    "pco2":            _ApsModel(40, 8.0, False, (0.0, 0.0, 0.8, 0.0, 0.0), 15, 120, 1, 0.08, 0.2),
    "bun":             _ApsModel(18, 0.45, True, (0.4, 0.2, 0.0, 0.9, 0.1), 2, 250, 1, 0.03, 0.75),
    "glucose":         _ApsModel(130, 0.3, True, (0.4, 0.0, 0.0, 0.2, 0.2), 30, 900, 0, 0.0, 0.82),
    "bilirubin":       _ApsModel(0.6, 0.6, True, (0.5, 0.0, 0.0, 0.0, 0.3), 0.1, 30, 1, 1.0, 0.35),
    "fio2":            _ApsModel(40, 18, False, (0.5, 0.0, 1.0, 0.0, 0.0), 21, 100, 0, 0.0, 0.2),
}
# fmt: on
_BLOOD_GAS = ("ph", "pao2", "pco2", "fio2")  # recorded together
_APS_SIGNAL = 0.6  # scales the loadings against unit noise, like _LAB_SIGNAL
_APS_TRAITS, _APS_NOISE = 1.2, 0.35  # the rest of each value: the stay's traits' part and noise (sd)


def _aps_frame(rng: np.random.Generator, s: _Stays, first_id: int) -> pd.DataFrame:
    """One APACHE IV physiology row per stay: worst first-day values, -1 where not recorded."""
    rows = np.flatnonzero(s.has("aps"))
    latent = s.latent[rows]
    columns = {"apacheapsvarid": first_id + np.arange(len(rows)), "patientunitstayid": s.unit_stay_id[rows]}
    columns.update(_aps_support(rng, latent))
    columns.update(_aps_coma_scale(rng, latent, intubated=columns["intubated"]))
    gas_recorded = _recorded(rng, _APS_MODELS["ph"].recorded, latent, (0.8, 0.0, 1.2, 0.0, 0.0))
    trait_parts = s.traits[rows] @ trait_loadings("eicu.aps", len(_APS_MODELS), _APS_TRAITS).T
    for index, (name, model) in enumerate(_APS_MODELS.items()):
        recorded = gas_recorded if name in _BLOOD_GAS else _recorded(rng, model.recorded, latent, (0.3, 0, 0, 0, 0))
        columns[name] = _aps_values(rng, model, latent, recorded, trait_parts[:, index])
    return pd.DataFrame(columns, columns=list(T.APACHE_APS_VAR.columns))


def _recorded(rng: np.random.Generator, share: float, latent: np.ndarray, loadings) -> np.ndarray:
    logit = np.log(share / (1 - share)) + latent @ np.array(loadings, dtype=float)
    return rng.random(len(latent)) < _sigmoid(logit)


def _aps_values(rng: np.random.Generator, model: _ApsModel, latent: np.ndarray, recorded: np.ndarray,
                trait_part: np.ndarray) -> np.ndarray:
    z = _APS_SIGNAL * latent @ np.array(model.loadings) + trait_part + _APS_NOISE * rng.normal(size=len(latent))
    value = model.center * np.exp(model.spread * z) if model.log else model.center + model.spread * z
    value = np.clip(value, model.low, model.high)
    if model.with_decimals == 0.0:
        return np.where(recorded, np.round(value), T.APS_UNRECORDED).astype(np.int64)
    decimals = np.where(rng.random(len(value)) < model.with_decimals, model.decimals, 0)
    return np.where(recorded, _shortest(value, decimals), str(T.APS_UNRECORDED))


def _aps_support(rng: np.random.Generator, latent: np.ndarray) -> dict[str, np.ndarray]:
    sev, resp, renal = latent[:, SEVERITY], latent[:, RESPIRATORY], latent[:, RENAL]
    intubated = rng.random(len(latent)) < _sigmoid(-2.0 + 0.9 * sev + 1.4 * resp)
    return {
        "intubated": intubated.astype(np.int64),
        "vent": (intubated | (rng.random(len(latent)) < 0.05)).astype(np.int64),
        "dialysis": (rng.random(len(latent)) < _sigmoid(-3.8 + 0.4 * sev + 1.8 * renal)).astype(np.int64),
    }


def _aps_coma_scale(rng: np.random.Generator, latent: np.ndarray, intubated: np.ndarray) -> dict[str, np.ndarray]:
    """Glasgow coma scale parts, lower when sicker; `meds` = 1 when sedation made it unassessable."""
    n = len(latent)
    drop = np.clip(0.8 * latent[:, SEVERITY] + 0.3 * latent[:, RESPIRATORY] + rng.normal(size=n) - 1.0, 0, None)
    eyes = np.clip(4 - np.round(drop), 1, 4)
    motor = np.clip(6 - np.round(1.5 * drop), 1, 6)
    verbal = np.where(intubated & (rng.random(n) < 0.7), 1, np.clip(5 - np.round(1.5 * drop), 1, 5))
    meds = (intubated & (rng.random(n) < 0.3)).astype(float)
    unrecorded = rng.random(n) < 0.04
    return {
        name: np.where(unrecorded, T.APS_UNRECORDED, part).astype(np.int64)
        for name, part in (("eyes", eyes), ("motor", motor), ("verbal", verbal), ("meds", meds))
    }
