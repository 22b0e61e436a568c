"""icu/chartevents and hosp/labevents of a chunk's stays: the signals (`signals.py`) at
irregular chart times, only for stays with the time-series modality."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data.synthetic.latent import CARDIAC, SEVERITY, sigmoid
from clintraj.data.synthetic.mimic import phenotypes as ph
from clintraj.data.synthetic.mimic.helpers import HOUR, ceil_minute, floor_minute, fmt_datetime, fmt_number, provider_ids
from clintraj.data.synthetic.mimic.signals import MEAN_AGE, SIGNALS
from clintraj.data.synthetic.mimic.stays import Counters, Stays


# Survivors' derangement resolves over their first three ICU days (over the stay, when shorter),
# non-survivors' worsens over the same days: the trend of the first 48 h that separates them at
# 48 h, as a rising SOFA score does (Ferreira et al., JAMA 2001: mortality >= 50% when it rises
# over the first 48 h, < 27% when it falls). Over a fraction of the stay, as before, a long
# stay's first 48 h hardly moved, and the 48 h mortality task (stays >= 48 h) saw no trend.
RESOLVING_HOURS = 72.0


def _signal(stays: Stays, name: str, stay: np.ndarray, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Values of signal `name` for stays `stay` at `hours` after ICU admission."""
    sig = SIGNALS[name]
    los = stays.los_hours[stay]
    died = stays.died[stay]
    progress = np.clip(hours / np.minimum(los, RESOLVING_HOURS), 0, 1)
    course = np.where(died, 1.2 + 0.6 * progress, 1.2 - 0.6 * progress)  # dying stays worsen, the others resolve
    dying = died * np.exp(-np.clip(los - hours, 0, None) / 12.0)
    level = sig.normal + (stays.latent[stay] @ np.array(sig.loadings)) * course + stays.effects[name][stay]
    return np.clip(level + sig.dying * dying + rng.normal(0, sig.noise_sd, len(stay)), sig.low, sig.high)


def _event_times(rng, stays: Stays, mask: np.ndarray, per_day, minimum: int = 0):
    """Irregular chart times (Poisson count, uniform times) for the stays in `mask`; `per_day` a
    number or one per stay."""
    candidates = np.flatnonzero(mask)
    rate = per_day[candidates] if np.ndim(per_day) else per_day
    counts = minimum + rng.poisson(rate * stays.los_hours[candidates] / 24)
    stay = np.repeat(candidates, counts)
    hours = rng.uniform(0, stays.los_hours[stay])
    return stay, hours


def _charttime(stays: Stays, stay: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Minute-resolution chart times strictly inside [intime, outtime]."""
    t = stays.intime[stay] + np.round(hours * HOUR).astype(np.int64)
    up = ceil_minute(t)
    return np.where(up <= stays.outtime[stay], up, floor_minute(t))


def _events(stay, t, itemid, value, valuenum, uom) -> pd.DataFrame:
    return pd.DataFrame({"stay": stay, "t": t, "itemid": itemid, "value": value, "valuenum": valuenum, "valueuom": uom})


def _numeric_events(stay, t, itemid, values, decimals, uom) -> pd.DataFrame:
    text = fmt_number(values, decimals)
    return _events(stay, t, itemid, text, text, uom)


def chartevents_table(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
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
        _vital(stays, rng, has, "glucose", 225664, "", per_day=1.5 + 3.0 * _diabetic(stays)),  # fingersticks QID
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
            "charttime": fmt_datetime(t),
            "storetime": fmt_datetime(t + floor_minute(rng.exponential(20 * 60, n))),
            "itemid": events["itemid"].to_numpy(),
            "value": events["value"].to_numpy(),
            "valuenum": events["valuenum"].to_numpy(),
            "valueuom": events["valueuom"].to_numpy(),
            "warning": ((rng.random(n) < 0.01) & numeric).astype(int),
        }
    )


def _diabetic(stays: Stays) -> np.ndarray:
    return stays.phenotypes[:, [ph.column("diabetes"), ph.column("diabetes complicated")]].any(axis=1)


def _vital(stays, rng, mask, name, itemid, uom, per_day, minimum=0) -> pd.DataFrame:
    """One integer-valued item charted on its own."""
    stay, hours = _event_times(rng, stays, mask, per_day, minimum)
    values = _signal(stays, name, stay, hours, rng)
    return _numeric_events(stay, _charttime(stays, stay, hours), itemid, values, 0, uom)


def _blood_pressure_events(stays, rng, mask) -> pd.DataFrame:
    """Systolic, diastolic and mean charted together, from an arterial line or a cuff."""
    stay, hours = _event_times(rng, stays, mask, per_day=2.5, minimum=1)
    z = stays.latent
    arterial = (rng.random(stays.n) < sigmoid(-0.3 + 0.8 * z[:, SEVERITY] + 0.4 * z[:, CARDIAC]))[stay]
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
    delayed = rng.random(len(stay)) < sigmoid(_signal(stays, "crr_logit", stay, hours, rng))
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
    patient_cm = rng.normal(np.where(stays.patient_male, 176, 163), 7)  # older patients are shorter
    stay = np.flatnonzero(mask & (rng.random(stays.n) < 0.6))
    hours = rng.uniform(0, np.minimum(4, stays.los_hours[stay]))
    cm = np.round(patient_cm[stays.patient[stay]] - 0.1 * (stays.age[stay] - MEAN_AGE))
    t = _charttime(stays, stay, hours)
    return pd.concat(
        [
            _numeric_events(stay, t, 226730, cm, 0, "cm"),
            _numeric_events(stay, t, 226707, cm / 2.54, 0, "Inch"),
        ]
    )


# --- hosp: labevents ---------------------------------------------------------------

_FASTING_COMMENT = "If fasting, 70-100 normal, >125 provisional diabetes."


def labevents_table(stays: Stays, rng: np.random.Generator, counters: Counters) -> pd.DataFrame:
    """Blood gases (pH, O2 saturation, glucose) and chemistry glucose; a few drawn
    before the ICU stay, and a few outpatient ones without hadm_id."""
    has = stays.present["time_series"]
    gas_stay, gas_hours = _event_times(rng, stays, has & stays.ventilated, per_day=3)
    other_stay, other_hours = _event_times(rng, stays, has & ~stays.ventilated, per_day=0.4)
    chem_stay, chem_hours = _event_times(rng, stays, has, per_day=1.2, minimum=1)
    pre_stay = np.flatnonzero(has & (rng.random(stays.n) < 0.6))
    pre_hours = -rng.uniform(0, (stays.intime[pre_stay] - stays.admittime[pre_stay]) / HOUR)
    clinic_stay = np.flatnonzero(has & (rng.random(stays.n) < 0.08))
    before_admission = (stays.intime[clinic_stay] - stays.admittime[clinic_stay]) / HOUR
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
    return floor_minute(stays.intime[stay] + np.round(hours * HOUR).astype(np.int64))


def _lab_rows(stay, t, draw, itemid, values, decimals, uom, low, high, priority, inpatient) -> pd.DataFrame:
    """Rows of one lab item; `low`/`high` the reference range (None: none)."""
    text = fmt_number(values, decimals)
    abnormal = (values < low) | (values > high) if low is not None else np.zeros(len(values), bool)
    low, high = ("", "") if low is None else (fmt_number([low], 2)[0], fmt_number([high], 2)[0])
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


def _lab_frame(stays, rng, counters: Counters, draws: pd.DataFrame) -> pd.DataFrame:
    s = draws["stay"].to_numpy()
    t = draws["t"].to_numpy()
    n = len(draws)
    draw_ids, specimen_index = np.unique(draws["draw"].to_numpy(), return_inverse=True)
    specimen = counters.take("specimen_id", len(draw_ids), rng)[specimen_index]
    hadm = pd.array(stays.hadm_id[s], dtype="Int64")
    hadm[~draws["inpatient"].to_numpy(bool)] = pd.NA
    providers = np.where(rng.random(n) < 0.3, provider_ids(rng, n), "")
    return pd.DataFrame(
        {
            "labevent_id": counters.take("labevent_id", n, rng),
            "subject_id": stays.subject_id[s],
            "hadm_id": hadm,
            "specimen_id": specimen,
            "itemid": draws["itemid"].to_numpy(),
            "order_provider_id": providers,
            "charttime": fmt_datetime(t),
            "storetime": fmt_datetime(t + floor_minute(rng.uniform(10, 120, n) * 60)),
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
