"""patient.csv.gz: one row per unit stay, its descriptive fields blank where the stay has
no demographics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data import eicu_tables as T
from clintraj.data.synthetic.eicu import vocabulary as V
from clintraj.data.synthetic.eicu.helpers import DAY, YEAR, blank, fixed, pick
from clintraj.data.synthetic.eicu.stays import Stays
from clintraj.data.synthetic.latent import CARDIAC, PHENOTYPES


def patient_frame(rng: np.random.Generator, s: Stays) -> pd.DataFrame:
    n = s.n
    hidden = ~s.has("demographics")
    unit_admit = s.hospital_admit_minute - s.hospital_admit_offset
    hospital_discharge = unit_admit + s.hospital_discharge_offset
    readmitted = s.visit > 1
    columns = {
        "patientunitstayid": s.unit_stay_id,
        "patienthealthsystemstayid": s.health_system_stay_id,
        "gender": blank(np.where(s.male, *V.GENDERS), hidden | (rng.random(n) < 0.0015)),
        "age": blank(_age_text(s.age), hidden | (rng.random(n) < 0.0015)),
        "ethnicity": blank(s.ethnicity, hidden),
        "hospitalid": s.hospital_id,
        "wardid": s.ward_id,
        "apacheadmissiondx": blank(_admission_dx(rng, s.phenotypes), hidden | readmitted | (rng.random(n) < 0.06)),
        "admissionheight": blank(fixed(s.height, 2), hidden | (rng.random(n) < 0.027)),
        "hospitaladmittime24": _clock(s.hospital_admit_minute, s.hospital_admit_second),
        "hospitaladmitoffset": s.hospital_admit_offset,
        "hospitaladmitsource": s.admit_source,
        "hospitaldischargeyear": 2014 + (hospital_discharge >= YEAR),
        "hospitaldischargetime24": _clock(hospital_discharge),
        "hospitaldischargeoffset": s.hospital_discharge_offset,
        "hospitaldischargelocation": s.discharge_location,
        "hospitaldischargestatus": blank(np.where(s.died, "Expired", "Alive"), s.status_blank),
        "unittype": _unit_types(rng, s.latent[:, CARDIAC]),
        "unitadmittime24": _clock(unit_admit),
        "unitadmitsource": _unit_admit_sources(rng, s),
        "unitvisitnumber": s.visit,
        "unitstaytype": np.where(
            readmitted,
            np.where(rng.random(n) < 0.75, "stepdown/other", "readmit"),
            np.where(rng.random(n) < 0.96, "admit", "transfer"),
        ),
        "admissionweight": blank(
            fixed(s.weight + rng.normal(0, 1.5, n), 2), hidden | readmitted | (rng.random(n) < 0.08)
        ),
        "dischargeweight": blank(fixed(s.weight + rng.normal(0, 2.5, n), 2), hidden | (rng.random(n) < 0.5)),
        "unitdischargetime24": _clock(unit_admit + s.los),
        "unitdischargeoffset": s.los,
        "unitdischargelocation": _unit_discharge_locations(rng, s),
        "unitdischargestatus": blank(np.where(s.died_in_unit, "Expired", "Alive"), rng.random(n) < 0.001),
        "uniquepid": s.uniquepid,
    }
    return pd.DataFrame(columns, columns=list(T.PATIENT.columns))


def _age_text(age: np.ndarray) -> np.ndarray:
    """eICU ages are text: "15".."89", and "> 89" for anyone older (HIPAA)."""
    return np.where(age > 89, "> 89", age.astype(str))


def _admission_dx(rng: np.random.Generator, phenotypes: np.ndarray) -> np.ndarray:
    """apacheadmissiondx of the stay's first phenotype in APACHE_ADMISSION_DX order, else a non-phenotype one."""
    order = [PHENOTYPES.index(name) for name in V.APACHE_ADMISSION_DX]
    has = phenotypes[:, order]
    first = np.argmax(has, axis=1)
    choices = [np.array(options, dtype=object) for options in V.APACHE_ADMISSION_DX.values()]
    picked = np.array([choices[k][rng.integers(len(choices[k]))] for k in first], dtype=object)
    other = pick(rng, V.OTHER_ADMISSION_DX, len(first))
    return np.where(has.any(axis=1), picked, other)


def _unit_types(rng: np.random.Generator, cardiac: np.ndarray) -> np.ndarray:
    general = pick(rng, V.UNIT_TYPES[:4], len(cardiac), [0.82, 0.08, 0.06, 0.04])
    heart = pick(rng, V.CARDIAC_UNIT_TYPES, len(cardiac), [0.4, 0.25, 0.2, 0.15])
    return np.where((cardiac > 1.0) & (rng.random(len(cardiac)) < 0.5), heart, general)


def _unit_admit_sources(rng: np.random.Generator, s: Stays) -> np.ndarray:
    first_unit = np.where(pd.isna(s.admit_source), "Emergency Department", s.admit_source)
    later = pick(rng, V.UNIT_READMIT_SOURCES, s.n, [0.5, 0.2, 0.15, 0.1, 0.05])
    return blank(np.where(s.visit > 1, later, first_unit), rng.random(s.n) < 0.01)


def _unit_discharge_locations(rng: np.random.Generator, s: Stays) -> np.ndarray:
    # "Home" only for the stays sent home (s.sent_home), which also leave the hospital then
    after = pick(rng, V.UNIT_DISCHARGE_LOCATIONS, s.n, [0.55, 0.0, 0.11, 0.1, 0.08, 0.07, 0.05, 0.04])
    transferred = pick(rng, ("Step-Down Unit (SDU)", "Other ICU", "Floor"), s.n, [0.6, 0.2, 0.2])
    location = np.where(s.last_visit, np.where(s.sent_home, "Home", after), transferred)
    location = np.where(s.died_in_unit, V.DEATH, location)
    return blank(location, rng.random(s.n) < 0.002)


def _clock(minutes: np.ndarray, seconds=0) -> list[str]:
    """"HH:MM:SS" of absolute minutes."""
    minute_of_day = np.asarray(minutes) % DAY
    seconds = np.broadcast_to(seconds, minute_of_day.shape)
    return [f"{m // 60:02d}:{m % 60:02d}:{s:02d}" for m, s in zip(minute_of_day, seconds)]
