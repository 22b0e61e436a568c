"""The physiological signals behind chartevents, labevents and the notes' admission
findings: each a normal value plus loadings on the latent factors."""

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


SIGNALS = {
    "heart_rate": Signal(86, (7, 5, 3, 0, 7), 6, 6, 18, 30, 200),
    "systolic": Signal(118, (-8, 4, 0, 2, -5), 8, 9, -22, 55, 230),
    "diastolic": Signal(59, (-5, 1, 0, 1, -3), 5, 6, -12, 25, 130),
    "resp_rate": Signal(19, (2, 0.5, 3.5, 0.5, 1.5), 2, 3, 6, 5, 50),
    "spo2": Signal(97.5, (-0.8, -0.3, -1.8, 0, -0.3), 0.8, 1.2, -5, 60, 100),
    "temperature": Signal(36.9, (0.1, 0, 0, 0, 0.55), 0.2, 0.3, -0.3, 33, 42),
    "glucose": Signal(128, (12, 4, 0, 10, 8), 15, 25, 15, 30, 600),
    "ph": Signal(7.40, (-0.035, -0.01, -0.03, -0.03, -0.015), 0.02, 0.03, -0.1, 6.8, 7.7),
    "fio2": Signal(40, (8, 2, 10, 0, 3), 5, 8, 20, 21, 100),
    "gcs_impairment": Signal(-0.3, (0.9, 0.3, 0.2, 0.2, 0.2), 0.5, 0.5, 3.0, 0, 5),
    "crr_logit": Signal(-2.2, (1.1, 0.6, 0, 0, 0.4), 0.5, 0.0, 2.0),
    "weight": Signal(81, (0, 2, 0, 1, 0), 16, 1.2, 0, 35, 250),
}
