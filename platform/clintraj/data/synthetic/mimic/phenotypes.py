"""What a stay's diagnoses do to the rest of its MIMIC-IV record, by phenotype (the 25 HCUP CCS
groups of `latent.PHENOTYPES`, here by a short clinical name).

The labels are the ICD codes; everything a model may see instead shows the disease the way a
chart does: sepsis raises heart rate and temperature, diabetes the glucose, heart block slows
the heart and leaves a pacemaker on the chest film, COPD hyperinflates the lungs and lowers pH
and O2 saturation, the chronic diseases come with age, a surgical complication with a surgical
admission. The shifts on the signals are in `signals.PHENOTYPE_SHIFTS`, the chest findings in
`chest.py`, the admission in `admissions.py`; the mortality model is here.
"""

from __future__ import annotations

import numpy as np

from clintraj.data.synthetic.latent import PHENOTYPES, Mortality

SHORT_NAMES = (  # in latent.PHENOTYPES order
    "acute renal failure", "stroke", "AMI", "dysrhythmia", "CKD", "COPD", "surgical complication", "conduction",
    "CHF", "CAD", "diabetes complicated", "diabetes", "lipids", "hypertension", "electrolytes", "GI bleed",
    "hypertension complicated", "liver", "lower respiratory", "upper respiratory", "pleural", "pneumonia",
    "respiratory failure", "sepsis", "shock",
)
_COLUMN = {name: k for k, name in enumerate(SHORT_NAMES)}

# MIMIC-IV's in-hospital death: mostly the acute severity, plus what the acute diagnoses add to it
# (shock, stroke, liver failure, sepsis, respiratory failure; SAPS / OASIS-like), a little less
# with the chronic, managed ones. About 15% of stays, a quarter of those still in the ICU at 48 h.
MORTALITY = Mortality(
    bias=-4.4,
    loadings=(2.5, 0.3, 0.4, 0.3, 0.3),
    effects=tuple((PHENOTYPES[_COLUMN[short]], effect) for short, effect in (
        ("shock", 1.0), ("stroke", 1.0), ("liver", 0.8), ("sepsis", 0.6), ("respiratory failure", 0.6),
        ("AMI", 0.5), ("acute renal failure", 0.4), ("GI bleed", 0.4), ("hypertension", -0.4), ("lipids", -0.3),
    )),
)


def column(short: str) -> int:
    """The phenotype's column in `latent.PHENOTYPES` order."""
    return _COLUMN[short]


def weights(effects: dict[str, float]) -> np.ndarray:
    """A (25,) vector from {short name: effect}, zero elsewhere: `phenotypes @ weights(...)`."""
    vector = np.zeros(len(SHORT_NAMES))
    for short, effect in effects.items():
        vector[_COLUMN[short]] = effect
    return vector

# Years of age and log-odds of male sex that a patient's diagnoses (of the first stay) go with:
# the chronic cardiovascular, renal and lung diseases come late, alcoholic liver disease earlier;
# coronary disease and infarction are commoner in men.
AGE_YEARS = {"CAD": 5, "hypertension": 4, "hypertension complicated": 4, "CKD": 4, "lipids": 4, "dysrhythmia": 6,
             "CHF": 4, "conduction": 6, "COPD": 4, "diabetes": 2, "diabetes complicated": 2, "liver": -9,
             "GI bleed": -2}
MALE_LOGIT = {"CAD": 0.6, "AMI": 0.5, "liver": 0.5, "lipids": 0.2, "COPD": -0.2}
# Log-odds of an admission for an operation: a complication of it, bypass grafting, a pacemaker;
# the infections come in through the emergency room.
SURGICAL_LOGIT = {"surgical complication": 2.2, "CAD": 1.0, "conduction": 0.6, "sepsis": -0.8, "pneumonia": -0.6}
