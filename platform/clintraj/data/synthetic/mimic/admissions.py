"""hosp/patients, hosp/admissions, hosp/diagnoses_icd and icu/icustays of a chunk's stays,
with the ICD codes and the admission vocabularies they draw from."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data.synthetic.latent import CARDIAC, INFECTION, PHENOTYPES, RESPIRATORY, SEVERITY, sigmoid
from clintraj.data.synthetic.mimic import phenotypes as ph
from clintraj.data.synthetic.mimic.helpers import (
    DAY, HOUR, categorical, floor_minute, fmt_date, fmt_datetime, pick, provider_ids,
)
from clintraj.data.synthetic.mimic.stays import Stays

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

# --- admissions vocabularies (values as they appear in MIMIC-IV) ------------------
# (value, share among unplanned admissions, share among admissions for an operation, log-odds per
# unit of the stay's severity): the sickest come through the emergency room or from another
# hospital, observation and elective admissions are the well ones.
_ADMISSION_TYPES = (
    ("EW EMER.", 0.55, 0.02, 0.5), ("URGENT", 0.15, 0.15, 0.2), ("OBSERVATION ADMIT", 0.13, 0.02, -0.9),
    ("EU OBSERVATION", 0.09, 0.0, -0.9), ("SURGICAL SAME DAY ADMISSION", 0.0, 0.5, -0.5),
    ("DIRECT EMER.", 0.08, 0.01, 0.6), ("ELECTIVE", 0.0, 0.3, -0.7),
)
_ADMISSION_LOCATIONS = (
    ("EMERGENCY ROOM", 0.66, 0.03, 0.3), ("PHYSICIAN REFERRAL", 0.1, 0.6, -0.5),
    ("TRANSFER FROM HOSPITAL", 0.15, 0.15, 0.7), ("CLINIC REFERRAL", 0.03, 0.07, -0.6),
    ("PROCEDURE SITE", 0.02, 0.15, -0.3), ("WALK-IN/SELF REFERRAL", 0.04, 0.0, -0.6),
)
_TRANSFERRED = {"AMI": 1.2, "stroke": 1.2}  # log-odds: sent on for a catheter lab or a stroke unit
_DISCHARGE_LOCATIONS = (
    ("HOME HEALTH CARE", 0.3), ("HOME", 0.27), ("", 0.12), ("SKILLED NURSING FACILITY", 0.15),
    ("REHAB", 0.07), ("CHRONIC/LONG TERM ACUTE CARE", 0.05), ("HOSPICE", 0.02), ("AGAINST ADVICE", 0.02),
)
_LANGUAGE = (("ENGLISH", 0.92), ("?", 0.08))
_MARITAL = ("SINGLE", "MARRIED", "WIDOWED", "DIVORCED", "")
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


def patients_table(stays: Stays) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": stays.patient_subject_id,
            "gender": np.where(stays.patient_male, "M", "F"),
            "anchor_age": stays.anchor_age,
            "anchor_year": stays.anchor_year,
            "anchor_year_group": stays.anchor_year_group,
            "dod": fmt_date(stays.dod),
        }
    )


def _by_admission(rng, stays: Stays, options, tilt: np.ndarray | None = None) -> np.ndarray:
    """One of `options` ((value, unplanned share, surgical share, per severity), ...) per stay; `tilt`
    (n, options) multiplies the shares."""
    shares = np.array([[unplanned, surgical] for _, unplanned, surgical, _ in options])
    weights = shares[:, stays.surgical.astype(int)].T
    weights = weights * np.exp(np.outer(stays.latent[:, SEVERITY], [acuity for *_, acuity in options]))
    values = np.array([value for value, *_ in options], dtype=object)
    return values[categorical(rng, weights if tilt is None else weights * tilt)]


def _insurance_and_marital_status(rng, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Medicare from 65; widowed more often, single less, with age."""
    medicare = rng.random(len(age)) < 0.04 + 0.9 * sigmoid((age - 65) / 1.5)
    insurance = np.where(medicare, "Medicare", np.where(rng.random(len(age)) < 0.2, "Medicaid", "Other"))
    decades = (age - 60) / 10
    weights = np.stack([0.38 * np.exp(-0.5 * decades), np.full(len(age), 0.32), 0.1 * np.exp(0.9 * decades),
                        np.full(len(age), 0.1), np.full(len(age), 0.05)], axis=1)
    return insurance.astype(object), np.array(_MARITAL, dtype=object)[categorical(rng, weights)]


def admissions_table(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
    n = stays.n
    transfer = np.exp(stays.phenotypes @ ph.weights(_TRANSFERRED))
    tilt = np.ones((n, len(_ADMISSION_LOCATIONS)))
    tilt[:, [value for value, *_ in _ADMISSION_LOCATIONS].index("TRANSFER FROM HOSPITAL")] = transfer
    location = _by_admission(rng, stays, _ADMISSION_LOCATIONS, tilt)
    from_ed = location == "EMERGENCY ROOM"
    edregtime = np.where(from_ed, stays.admittime - floor_minute(rng.uniform(1, 8, n) * HOUR), -1)
    edouttime = np.where(from_ed, stays.admittime + floor_minute(rng.uniform(0, 1.5, n) * HOUR), -1)
    insurance, marital_status = _insurance_and_marital_status(rng, stays.age)
    demographics = {
        "insurance": insurance,
        "language": pick(rng, _LANGUAGE, n),
        "marital_status": marital_status,
        "race": pick(rng, _RACE, n),
    }
    absent = ~stays.present["demographics"]
    for values in demographics.values():
        values[absent] = ""
    return pd.DataFrame(
        {
            "subject_id": stays.subject_id,
            "hadm_id": stays.hadm_id,
            "admittime": fmt_datetime(stays.admittime),
            "dischtime": fmt_datetime(stays.dischtime),
            "deathtime": fmt_datetime(stays.deathtime),
            "admission_type": _by_admission(rng, stays, _ADMISSION_TYPES),
            "admit_provider_id": provider_ids(rng, n),
            "admission_location": location,
            "discharge_location": np.where(stays.died, "DIED", pick(rng, _DISCHARGE_LOCATIONS, n)),
            **demographics,
            "edregtime": fmt_datetime(edregtime),
            "edouttime": fmt_datetime(edouttime),
            "hospital_expire_flag": stays.died.astype(int),
        }
    )


def diagnoses_table(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
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


def icustays_table(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
    z = stays.latent
    weights = np.stack(
        [
            1.0 + z[:, INFECTION].clip(0) + z[:, RESPIRATORY].clip(0),  # MICU
            0.8 + 2.0 * stays.surgical,  # SICU
            np.full(stays.n, 0.8),  # MICU/SICU
            np.full(stays.n, 0.5),  # TSICU
            0.2 + 3.0 * stays.phenotypes[:, ph.column("stroke")],  # Neuro SICU
            0.3 + 0.8 * z[:, CARDIAC].clip(0) + 2.0 * stays.surgical * stays.phenotypes[:, ph.column("CAD")],  # CVICU
            0.2 + 1.0 * z[:, CARDIAC].clip(0),  # CCU
        ],
        axis=1,
    )
    first = categorical(rng, weights)
    moved = rng.random(stays.n) < 0.08
    last = np.where(moved, categorical(rng, weights), first)
    units = np.array(_CAREUNITS)
    return pd.DataFrame(
        {
            "subject_id": stays.subject_id,
            "hadm_id": stays.hadm_id,
            "stay_id": stays.stay_id,
            "first_careunit": units[first],
            "last_careunit": units[last],
            "intime": fmt_datetime(stays.intime),
            "outtime": fmt_datetime(stays.outtime),
            "los": (stays.outtime - stays.intime) / DAY,
        }
    )
