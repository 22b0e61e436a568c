"""What a stay's chest radiographs show and its radiology reports say: one set of findings per
stay, from its latent state, diagnoses and treatment, that `images.py` draws and `notes.py`
words, so an image and a report of the same stay describe the same chest (a pacemaker, an
endotracheal tube, an enlarged heart, effusions, hyperinflated lungs, a patient's build)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clintraj.data.synthetic.latent import CARDIAC, INFECTION, RENAL, RESPIRATORY, SEVERITY, sigmoid
from clintraj.data.synthetic.mimic import phenotypes as ph
from clintraj.data.synthetic.mimic.signals import SIGNALS
from clintraj.data.synthetic.mimic.stays import Stays

# Lines and tubes an ICU film shows while the stay lasts, and those a patient keeps for life.
ACUTE_DEVICES = ("endotracheal_tube", "central_line", "enteric_tube", "chest_tube")
CHRONIC_DEVICES = ("pacemaker", "sternotomy", "tracheostomy")


@dataclass(frozen=True)
class ChestFindings:
    """Per stay of a chunk (row = stay)."""

    opacity: np.ndarray  # airspace disease, a continuous grade: pneumonia, infection, severity, ventilation
    heart: np.ndarray  # heart size above normal, a continuous grade: the cardiac factor, heart failure
    edema: np.ndarray  # bool
    effusion: np.ndarray  # bool
    pneumothorax: np.ndarray  # bool
    hyperinflation: np.ndarray  # bool: emphysema
    calcified_aorta: np.ndarray  # bool: comes with age and atherosclerosis
    habitus: np.ndarray  # body build, about unit variance: the patient's weight
    devices: dict[str, np.ndarray]  # bool per device of ACUTE_DEVICES + CHRONIC_DEVICES


def chest_findings(stays: Stays, rng: np.random.Generator) -> ChestFindings:
    z, n = stays.latent, stays.n

    def has(short: str) -> np.ndarray:
        return stays.phenotypes[:, ph.column(short)].astype(float)

    def drawn(logit: np.ndarray) -> np.ndarray:
        return rng.random(n) < sigmoid(logit)

    ventilated = stays.ventilated.astype(float)
    pleural = has("pleural")
    pneumothorax = (pleural > 0) & (rng.random(n) < 0.35)
    return ChestFindings(
        opacity=(z[:, RESPIRATORY] + 0.6 * z[:, INFECTION] + 0.6 * z[:, SEVERITY] + 0.5 * ventilated
                 + 1.3 * has("pneumonia") + 0.5 * has("respiratory failure") + 0.4 * has("lower respiratory")),
        heart=z[:, CARDIAC] + 1.2 * has("CHF") + 0.3 * has("CAD") + 0.3 * has("dysrhythmia")
        + 0.3 * has("hypertension complicated"),
        edema=drawn(-2.8 + 2.2 * has("CHF") + 0.8 * z[:, CARDIAC] + 0.6 * z[:, RENAL] + 0.6 * has("acute renal failure")
                    + 0.5 * has("CKD")),
        effusion=drawn(-2.6 + 2.4 * pleural + 1.2 * has("CHF") + 0.8 * has("pneumonia") + 0.4 * z[:, SEVERITY]),
        pneumothorax=pneumothorax,
        hyperinflation=drawn(-3.5 + 4.0 * has("COPD")),
        calcified_aorta=drawn((stays.age - 72) / 6 + 1.2 * has("CAD") + 1.0 * has("lipids")  # atherosclerosis
                               + 0.5 * has("hypertension")),
        habitus=stays.effects["weight"] / SIGNALS["weight"].stay_sd,
        devices={
            "endotracheal_tube": stays.ventilated,
            "central_line": drawn(-1.8 + 2.0 * has("shock") + 1.0 * has("sepsis") + 1.3 * z[:, SEVERITY]),
            "enteric_tube": drawn(-2.6 + 1.8 * ventilated + 1.5 * has("GI bleed")),
            "chest_tube": drawn(-4.5 + 3.5 * pneumothorax + 1.5 * has("surgical complication") + 1.0 * pleural),
            "pacemaker": drawn(-4.5 + 5.0 * has("conduction") + 1.5 * has("dysrhythmia")),
            "sternotomy": drawn(-4.0 + 2.5 * has("CAD") + 1.5 * has("surgical complication") + 0.8 * has("CHF")),
            "tracheostomy": drawn(-4.5 + 3.5 * has("upper respiratory") + 0.6 * ventilated),
        },
    )
