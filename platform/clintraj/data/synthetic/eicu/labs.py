"""lab.csv.gz: panels of labs drawn across the stay, their values following the latent state,
and the planted leak (`leak=True`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from clintraj.data.synthetic.eicu import vocabulary as V
from clintraj.data.synthetic.eicu.helpers import DAY, blank, fixed, ordered, rows_per_stay, shortest
from clintraj.data.synthetic.eicu.stays import Stays
from clintraj.data.synthetic.latent import SEVERITY, sigmoid, trait_loadings

LEAK_LAB = "label marker"  # the planted leak's lab name (`leak=True`)
LEAK_AFTER_MINUTES = 720  # planted after the eICU tasks' prediction time, 12 h


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
assert set(_LAB_MODELS) == set(V.LABS)


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
_LAB_NAMES = tuple(V.LABS)
_MAX_DRAWS = 8  # per panel and stay: keeps a month-long stay at a few hundred rows
_LAB_DRIFT = (1.0, -0.4)  # severity drift over the stay of (non-survivors, survivors)
_LAB_SIGNAL = 0.45  # scales the loadings: labs alone must stay well below all modalities together
_LAB_TRAITS, _LAB_STAY_NOISE = 1.0, 0.45  # a stay's own lab levels: sd of the traits' part and of noise


def lab_frame(rng: np.random.Generator, s: Stays, first_id: int,
               leak_rng: np.random.Generator | None = None, draws: float = 1.0) -> pd.DataFrame:
    stay, lab, offset = _lab_draws(rng, s, draws)
    value = _lab_values(rng, s, stay, lab, offset)
    result, text = _lab_result_and_text(value, lab)
    names = np.array(_LAB_NAMES, dtype=object)
    frame = pd.DataFrame(
        {
            "labid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "labresultoffset": offset,
            "labtypeid": np.array([V.LABS[name].labtypeid for name in _LAB_NAMES])[lab],
            "labname": names[lab],
            "labresult": result,
            "labresulttext": text,
            "labmeasurenamesystem": np.array([V.LABS[name].system_unit or None for name in _LAB_NAMES])[lab],
            "labmeasurenameinterface": _interface_units(rng, lab),
            "labresultrevisedoffset": offset + np.round(rng.exponential(45, len(lab))).astype(np.int64),
        }
    )
    if leak_rng is not None:
        frame = pd.concat([frame, _leak_rows(leak_rng, s, frame.columns)], ignore_index=True)
    frame = ordered(frame, "labresultoffset")
    frame["labid"] = first_id + np.arange(len(frame))
    return frame


def _leak_rows(rng: np.random.Generator, s: Stays, columns) -> pd.DataFrame:
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


def _lab_draws(rng: np.random.Generator, s: Stays, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stay position, lab index, offset) of every lab row: panels drawn repeatedly across the stay,
    `scale` times as often (and as many at most) as the panel's own rate."""
    days = s.los / DAY
    most = max(round(_MAX_DRAWS * scale), 1)
    stays, labs, offsets = [], [], []
    for panel in _PANELS:
        drawn = s.has("lab").copy()
        if panel.bias is not None:
            drawn &= rng.random(s.n) < sigmoid(panel.bias + s.latent @ np.array(panel.loadings))
        counts = np.where(drawn, 1 + np.minimum(rng.poisson(panel.per_day * days * scale), most - 1), 0)
        draw_stay, rank = rows_per_stay(counts)
        later = rng.random(len(rank)) * s.los[draw_stay]
        draw_offset = np.where(rank == 0, _first_draw_offset(rng, s, draw_stay), later)
        lab_index = np.array([_LAB_NAMES.index(name) for name in panel.labs])
        kept = rng.random((len(draw_stay), len(lab_index))) > 0.03  # an occasional lab missing from its panel
        draw_of_row, position = np.nonzero(kept)
        stays.append(draw_stay[draw_of_row])
        labs.append(lab_index[position])
        offsets.append(draw_offset[draw_of_row].astype(np.int64))
    return np.concatenate(stays), np.concatenate(labs), np.concatenate(offsets)


def _first_draw_offset(rng: np.random.Generator, s: Stays, stay: np.ndarray) -> np.ndarray:
    """First draw of a panel: around unit admission, or (15%) earlier in the hospital stay (negative)."""
    before = -rng.random(len(stay)) * np.minimum(-s.hospital_admit_offset[stay], 720)
    return np.where(rng.random(len(stay)) < 0.15, before, rng.integers(-30, 180, len(stay)))


def _lab_values(
    rng: np.random.Generator, s: Stays, stay: np.ndarray, lab: np.ndarray, offset: np.ndarray
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
    text = fixed(value, decimals)
    text[below] = "<" + shortest(low[below], decimals[below]).astype(str)
    text[above] = ">" + shortest(high[above], decimals[above]).astype(str)
    return blank(shortest(value, decimals), below | above), text


def _interface_units(rng: np.random.Generator, lab: np.ndarray) -> np.ndarray:
    """labmeasurenameinterface: the site's own spelling of the unit; 4% blank."""
    spellings = np.array(
        [[V.LABS[name].interface_units[min(k, len(V.LABS[name].interface_units) - 1)] for k in range(3)]
         for name in _LAB_NAMES],
        dtype=object,
    )
    variant = rng.choice(3, len(lab), p=[0.8, 0.15, 0.05])
    return blank(spellings[lab, variant], rng.random(len(lab)) < 0.04)
