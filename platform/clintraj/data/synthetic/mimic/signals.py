"""The physiological signals behind chartevents, labevents and the notes' admission
findings: each a normal value plus loadings on the latent factors, and a stay's own offset
from the patient (traits, age) and the stay's diagnoses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Signal:
    """A physiological quantity: normal + loadings . latent (+ per-stay offset, noise),
    resolving over the stay for survivors and drifting by `dying` before a death."""

    normal: float
    loadings: tuple[float, float, float, float, float]  # severity, cardiac, respiratory, renal, infection
    stay_sd: float
    noise_sd: float
    dying: float
    low: float = -np.inf
    high: float = np.inf
    per_year: float = 0.0  # change per year of age above MEAN_AGE


SIGNALS = {
    "heart_rate": Signal(86, (7, 5, 3, 0, 7), 6, 6, 18, 30, 200, per_year=-0.2),
    "systolic": Signal(118, (-8, 4, 0, 2, -5), 8, 9, -22, 55, 230, per_year=0.6),
    "diastolic": Signal(59, (-5, 1, 0, 1, -3), 5, 6, -12, 25, 130, per_year=-0.25),
    "resp_rate": Signal(19, (2, 0.5, 3.5, 0.5, 1.5), 2, 3, 6, 5, 50),
    "spo2": Signal(97.5, (-0.8, -0.3, -1.8, 0, -0.3), 0.8, 1.2, -5, 60, 100, per_year=-0.02),
    "temperature": Signal(36.9, (0.1, 0, 0, 0, 0.55), 0.2, 0.3, -0.3, 33, 42, per_year=-0.004),
    "glucose": Signal(128, (12, 4, 0, 10, 8), 15, 25, 15, 30, 600),
    "ph": Signal(7.40, (-0.035, -0.01, -0.03, -0.03, -0.015), 0.02, 0.03, -0.1, 6.8, 7.7),
    "fio2": Signal(40, (8, 2, 10, 0, 3), 5, 8, 20, 21, 100),
    "gcs_impairment": Signal(-0.3, (0.9, 0.3, 0.2, 0.2, 0.2), 0.5, 0.5, 3.0, 0, 5, per_year=0.01),
    "crr_logit": Signal(-2.2, (1.1, 0.6, 0, 0, 0.4), 0.5, 0.0, 2.0, per_year=0.02),
    "weight": Signal(81, (0, 2, 0, 1, 0), 16, 1.2, 0, 35, 250, per_year=-0.2),
}
MEAN_AGE = 63
# The share of a stay's own offset (sd `stay_sd`) that follows the patient's traits
# (`latent.trait_loadings("mimic.<signal>")`): the baseline heart rate, blood pressure, glucose
# and build that make a patient recognisable in every modality.
TRAIT_SHARE = 0.75

# How each phenotype (`phenotypes.SHORT_NAMES`) moves a signal for the whole stay, in the signal's
# units: the bedside picture of the diagnosis; a stay with several adds them up. The chronic,
# treated diagnoses show the least (a raw-feature probe on 4,000 stays scored lipids 0.59, upper
# respiratory 0.67, coronary disease 0.69, liver 0.71, CKD 0.71 AUROC): they carry their
# treatment's mark, still within what an ICU chart shows: beta-blockade slows a coronary
# patient's heart by ~10 bpm; CKD and complicated hypertension keep systolic ~15-20 mmHg up and
# pH ~0.05 down (a metabolic acidosis); liver disease lowers the pressure (vasodilation), clouds
# the sensorium (encephalopathy) and the glucose (failing gluconeogenesis); an upper-airway
# disease raises the rate and lowers the saturation; the lipid disorders come with obesity.
PHENOTYPE_SHIFTS = {
    "heart_rate": {"dysrhythmia": 16, "conduction": -20, "sepsis": 8, "shock": 10, "GI bleed": 14, "CAD": -10,
                   "pneumonia": 4, "electrolytes": 7, "lipids": -3},
    "systolic": {"hypertension": 16, "hypertension complicated": 20, "CKD": 15, "stroke": 16, "shock": -18,
                 "sepsis": -8, "GI bleed": -14, "liver": -12, "electrolytes": -6},
    "diastolic": {"hypertension": 8, "hypertension complicated": 9, "CKD": 5, "stroke": 7, "shock": -10,
                  "sepsis": -5, "liver": -7, "GI bleed": -6},
    "resp_rate": {"pneumonia": 3, "respiratory failure": 4, "COPD": 3, "lower respiratory": 4, "sepsis": 2,
                  "CHF": 2, "pleural": 2, "upper respiratory": 4},
    "spo2": {"COPD": -2.5, "respiratory failure": -2, "pneumonia": -1.5, "pleural": -1.5, "CHF": -1,
             "lower respiratory": -1.5, "upper respiratory": -1.5},
    "temperature": {"sepsis": 0.8, "pneumonia": 0.6, "surgical complication": 0.5, "upper respiratory": 0.5,
                    "lower respiratory": 0.3},
    "glucose": {"diabetes": 45, "diabetes complicated": 70, "sepsis": 10, "liver": -20, "lipids": 12},
    "ph": {"COPD": -0.05, "respiratory failure": -0.04, "acute renal failure": -0.06, "CKD": -0.06, "shock": -0.06,
           "sepsis": -0.02, "electrolytes": -0.03, "hypertension complicated": -0.02},
    "fio2": {"respiratory failure": 15, "pneumonia": 8, "COPD": 5, "CHF": 5, "pleural": 6, "lower respiratory": 4},
    "gcs_impairment": {"stroke": 2.0, "liver": 1.6, "sepsis": 0.4, "shock": 0.6},
    "crr_logit": {"shock": 1.5, "sepsis": 0.7, "GI bleed": 0.7},
    "weight": {"CHF": 6, "diabetes": 7, "diabetes complicated": 7, "lipids": 10, "hypertension": 5, "COPD": -4,
               "liver": -3, "acute renal failure": 3},
}
