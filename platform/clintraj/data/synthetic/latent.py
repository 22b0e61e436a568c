"""The hidden patient state that drives every synthetic modality and every label.

One latent vector per stay (severity, cardiac, respiratory, renal, infection),
partly shared between the stays of one patient, is the single cause of the
labels and of what each modality shows. A model therefore beats chance from
any modality, does better with more of them, and contrastive pretraining can
align modalities because they describe the same state.

Beside it, each stay has `TRAITS` patient traits that drive no label but show
in every modality (body habitus, baseline organ function, chronic medication,
the care team's habits): what makes a real stay's modalities recognisably one
patient's. Without them five factors seen through noise leave thousands of
stays nearly interchangeable, and cross-modal retrieval (paper Table 1) has
little to find; with them it has, while no task gets easier.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

FACTORS = ("severity", "cardiac", "respiratory", "renal", "infection")
SEVERITY, CARDIAC, RESPIRATORY, RENAL, INFECTION = range(len(FACTORS))
TRAITS = 8

# The 25 acute and chronic phenotypes of the mimic3-benchmarks / MedFuse task.
PHENOTYPES = (
    "Acute and unspecified renal failure",
    "Acute cerebrovascular disease",
    "Acute myocardial infarction",
    "Cardiac dysrhythmias",
    "Chronic kidney disease",
    "Chronic obstructive pulmonary disease and bronchiectasis",
    "Complications of surgical procedures or medical care",
    "Conduction disorders",
    "Congestive heart failure; nonhypertensive",
    "Coronary atherosclerosis and other heart disease",
    "Diabetes mellitus with complications",
    "Diabetes mellitus without complication",
    "Disorders of lipid metabolism",
    "Essential hypertension",
    "Fluid and electrolyte disorders",
    "Gastrointestinal hemorrhage",
    "Hypertension with complications and secondary hypertension",
    "Other liver diseases",
    "Other lower respiratory disease",
    "Other upper respiratory disease",
    "Pleurisy; pneumothorax; pulmonary collapse",
    "Pneumonia (except that caused by tuberculosis or sexually transmitted disease)",
    "Respiratory failure; insufficiency; arrest (adult)",
    "Septicemia (except in labor)",
    "Shock",
)

# Phenotype logit = bias + loadings . latent. Rows follow PHENOTYPES, columns FACTORS.
_PHENOTYPE_BIAS_AND_LOADINGS = np.array(
    [
        # bias  sev   card  resp  renal infect
        [-1.6, 0.6, 0.0, 0.0, 1.6, 0.3],  # acute renal failure
        [-2.6, 0.5, 0.6, 0.0, 0.0, 0.0],  # cerebrovascular
        [-2.4, 0.4, 1.5, 0.0, 0.0, 0.0],  # AMI
        [-1.1, 0.3, 1.3, 0.0, 0.0, 0.0],  # dysrhythmias
        [-1.9, 0.0, 0.3, 0.0, 1.4, 0.0],  # CKD
        [-2.0, 0.0, 0.0, 1.2, 0.0, 0.0],  # COPD
        [-2.0, 0.4, 0.0, 0.0, 0.0, 0.5],  # complications of care
        [-2.6, 0.0, 1.0, 0.0, 0.0, 0.0],  # conduction
        [-1.6, 0.3, 1.4, 0.3, 0.2, 0.0],  # CHF
        [-1.3, 0.0, 1.2, 0.0, 0.0, 0.0],  # coronary
        [-2.2, 0.0, 0.2, 0.0, 0.9, 0.0],  # DM with complications
        [-1.6, 0.0, 0.3, 0.0, 0.4, 0.0],  # DM without complication
        [-1.0, 0.0, 0.6, 0.0, 0.2, 0.0],  # lipid
        [-0.6, -0.3, 0.5, 0.0, 0.0, 0.0],  # essential hypertension
        [-0.9, 0.6, 0.0, 0.0, 0.8, 0.3],  # fluid/electrolyte
        [-2.4, 0.6, 0.0, 0.0, 0.0, 0.0],  # GI hemorrhage
        [-1.8, 0.0, 0.5, 0.0, 1.0, 0.0],  # hypertension with complications
        [-2.4, 0.5, 0.0, 0.0, 0.3, 0.3],  # liver
        [-2.2, 0.0, 0.0, 0.9, 0.0, 0.3],  # other lower respiratory
        [-3.0, 0.0, 0.0, 0.6, 0.0, 0.3],  # other upper respiratory
        [-2.4, 0.3, 0.0, 1.0, 0.0, 0.0],  # pleurisy
        [-1.8, 0.3, 0.0, 1.0, 0.0, 1.0],  # pneumonia
        [-1.7, 0.9, 0.0, 1.5, 0.0, 0.2],  # respiratory failure
        [-2.0, 0.8, 0.0, 0.0, 0.2, 1.7],  # septicemia
        [-2.4, 1.4, 0.4, 0.0, 0.0, 0.8],  # shock
    ]
)
PHENOTYPE_BIAS = _PHENOTYPE_BIAS_AND_LOADINGS[:, 0]
PHENOTYPE_LOADINGS = _PHENOTYPE_BIAS_AND_LOADINGS[:, 1:]

MORTALITY_BIAS = -2.5
MORTALITY_LOADINGS = np.array([1.7, 0.4, 0.5, 0.3, 0.4])
LOS_LOG_HOURS_MEAN = 3.9  # exp(3.9) ~ 49 h, the median stay
LOS_LOADINGS = np.array([0.45, 0.1, 0.15, 0.1, 0.2])
LOS_NOISE = 0.35


@dataclass(frozen=True)
class Mortality:
    """In-hospital death: logit = bias + loadings . latent + the effects of the stay's phenotypes
    (`effects`: phenotype name -> logit shift; none by default)."""

    bias: float = MORTALITY_BIAS
    loadings: tuple[float, ...] = tuple(MORTALITY_LOADINGS)
    effects: tuple[tuple[str, float], ...] = ()

    def logit(self, latent: np.ndarray, phenotypes: np.ndarray) -> np.ndarray:
        shift = np.zeros(len(PHENOTYPES))
        for name, effect in self.effects:
            shift[PHENOTYPES.index(name)] = effect
        return self.bias + latent @ np.array(self.loadings) + phenotypes @ shift


@dataclass(frozen=True)
class Cohort:
    """Patients, their stays and the hidden state of every stay (row = stay)."""

    patient_index: np.ndarray  # (n_stays,) int, 0..n_patients-1, stays of a patient are contiguous
    stay_number: np.ndarray  # (n_stays,) int, 0 for a patient's first stay
    latent: np.ndarray  # (n_stays, len(FACTORS)) float
    died: np.ndarray  # (n_stays,) bool, in-hospital mortality
    los_hours: np.ndarray  # (n_stays,) float, ICU length of stay
    phenotypes: np.ndarray  # (n_stays, 25) bool
    traits: np.ndarray  # (n_stays, TRAITS) float, unit variance; no label depends on them

    @property
    def n_stays(self) -> int:
        return len(self.patient_index)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_cohort(rng: np.random.Generator, n_stays: int, readmission_rate: float = 0.2,
                mortality: Mortality = Mortality()) -> Cohort:
    """Draw `n_stays` stays; a share `readmission_rate` of stays are a patient's 2nd+ stay. The
    draws do not depend on `mortality`: the same seed gives the same latent state, length of
    stay, phenotypes and traits whatever the mortality model."""
    if n_stays < 1:
        raise ValueError(f"n_stays must be >= 1, got {n_stays}")
    extra_stays = rng.geometric(1.0 - readmission_rate, size=n_stays) - 1
    stays_per_patient = 1 + np.minimum(extra_stays, 5)
    ends = np.cumsum(stays_per_patient)
    n_patients = int(np.searchsorted(ends, n_stays) + 1)
    stays_per_patient = stays_per_patient[:n_patients].copy()
    stays_per_patient[-1] -= ends[n_patients - 1] - n_stays
    patient_index = np.repeat(np.arange(n_patients), stays_per_patient)
    first_row = np.concatenate([[0], np.cumsum(stays_per_patient)[:-1]])
    stay_number = np.arange(n_stays) - np.repeat(first_row, stays_per_patient)

    patient_state = rng.normal(size=(n_patients, len(FACTORS)))
    latent = 0.7 * patient_state[patient_index] + 0.71 * rng.normal(size=(n_stays, len(FACTORS)))

    death_draw = rng.random(n_stays)
    log_hours = LOS_LOG_HOURS_MEAN + latent @ LOS_LOADINGS + LOS_NOISE * rng.normal(size=n_stays)
    los_hours = np.clip(np.exp(log_hours), 2.0, 1500.0)
    phenotypes = rng.random((n_stays, len(PHENOTYPES))) < sigmoid(PHENOTYPE_BIAS + latent @ PHENOTYPE_LOADINGS.T)
    died = death_draw < sigmoid(mortality.logit(latent, phenotypes))
    # drawn last: the same seed keeps the same latent state and labels as before traits existed
    traits = 0.8 * rng.normal(size=(n_patients, TRAITS))[patient_index] + 0.6 * rng.normal(size=(n_stays, TRAITS))
    return Cohort(patient_index, stay_number, latent, died, los_hours, phenotypes, traits)


def trait_loadings(family: str, n_items: int, scale: float = 1.0) -> np.ndarray:
    """(n_items, TRAITS) loadings of a family of items ("eicu.lab", ...) on the traits, fixed by
    the family's name (the same for every seed, as the loadings on FACTORS are); each row's
    traits part has standard deviation about `scale`."""
    rng = np.random.default_rng(zlib.crc32(family.encode()))
    return scale * rng.normal(size=(n_items, TRAITS)) / np.sqrt(TRAITS)


def trait_choice(rng: np.random.Generator, traits: np.ndarray, family: str, n_options: int,
                 sharpness: float = 2.5) -> np.ndarray:
    """One option index per row of `traits`, drawn with P proportional to exp(loadings . traits)."""
    logits = traits @ trait_loadings(family, n_options, sharpness).T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((cumulative < rng.random((len(traits), 1))).sum(axis=1), n_options - 1)


def presence(rng: np.random.Generator, n_stays: int, probabilities: dict[str, float]) -> dict[str, np.ndarray]:
    """Independent per-modality presence draws, from a missingness profile {modality: P(present)}."""
    for name, p in probabilities.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"presence probability of {name!r} must be in [0, 1], got {p}")
    return {name: rng.random(n_stays) < p for name, p in probabilities.items()}
