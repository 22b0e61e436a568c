"""apacheApsVar.csv.gz: one APACHE IV physiology row per stay, the worst first-day values."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from clintraj.data import eicu_tables as T
from clintraj.data.synthetic.eicu.helpers import shortest
from clintraj.data.synthetic.eicu.stays import Stays
from clintraj.data.synthetic.latent import RENAL, RESPIRATORY, SEVERITY, sigmoid, trait_loadings


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
_APS_SIGNAL = 0.6  # scales the loadings against unit noise, like labs.py's _LAB_SIGNAL
_APS_TRAITS, _APS_NOISE = 1.2, 0.35  # the rest of each value: the stay's traits' part and noise (sd)


def aps_frame(rng: np.random.Generator, s: Stays, first_id: int) -> pd.DataFrame:
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
    return rng.random(len(latent)) < sigmoid(logit)


def _aps_values(rng: np.random.Generator, model: _ApsModel, latent: np.ndarray, recorded: np.ndarray,
                trait_part: np.ndarray) -> np.ndarray:
    z = _APS_SIGNAL * latent @ np.array(model.loadings) + trait_part + _APS_NOISE * rng.normal(size=len(latent))
    value = model.center * np.exp(model.spread * z) if model.log else model.center + model.spread * z
    value = np.clip(value, model.low, model.high)
    if model.with_decimals == 0.0:
        return np.where(recorded, np.round(value), T.APS_UNRECORDED).astype(np.int64)
    decimals = np.where(rng.random(len(value)) < model.with_decimals, model.decimals, 0)
    return np.where(recorded, shortest(value, decimals), str(T.APS_UNRECORDED))


def _aps_support(rng: np.random.Generator, latent: np.ndarray) -> dict[str, np.ndarray]:
    sev, resp, renal = latent[:, SEVERITY], latent[:, RESPIRATORY], latent[:, RENAL]
    intubated = rng.random(len(latent)) < sigmoid(-2.0 + 0.9 * sev + 1.4 * resp)
    return {
        "intubated": intubated.astype(np.int64),
        "vent": (intubated | (rng.random(len(latent)) < 0.05)).astype(np.int64),
        "dialysis": (rng.random(len(latent)) < sigmoid(-3.8 + 0.4 * sev + 1.8 * renal)).astype(np.int64),
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
