"""treatment.csv.gz and medication.csv.gz: therapies a stay receives with a propensity that
follows its latent state, each as treatment strings or drug orders."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data.synthetic.eicu import vocabulary as V
from clintraj.data.synthetic.eicu.helpers import DAY, blank, during_stay, ordered, rows_per_stay
from clintraj.data.synthetic.eicu.stays import Stays
from clintraj.data.synthetic.latent import sigmoid, trait_choice

# logit bias and loadings on latent.FACTORS of receiving each therapy; None: everyone gets it.
# fmt: off
_THERAPY_PROPENSITY = {
    #                 bias   sev  card  resp  renal infect
    "vasopressor":   (-2.0, (1.5, 0.6, 0.0, 0.0, 0.8)),
    "ventilation":   (-1.6, (1.0, 0.0, 1.6, 0.0, 0.0)),
    "oxygen":        (-0.3, (0.3, 0.2, 1.0, 0.0, 0.0)),
    "dialysis":      (-3.2, (0.5, 0.0, 0.0, 1.8, 0.0)),
    "antibacterial": (-0.6, (0.4, 0.0, 0.3, 0.0, 1.6)),
    "sedation":      (-1.2, (0.8, 0.0, 1.0, 0.0, 0.0)),
    "diuretic":      (-1.5, (0.0, 1.2, 0.3, 0.3, 0.0)),
    "antiarrhythmic": (-1.3, (0.2, 1.4, 0.0, 0.0, 0.0)),
    "insulin":       (-0.8, (0.4, 0.0, 0.0, 0.4, 0.2)),
    "electrolytes":  (-0.5, (0.3, 0.0, 0.0, 0.6, 0.0)),
    "routine":       None,
}
# fmt: on
assert tuple(_THERAPY_PROPENSITY) == V.THERAPIES
_ROWS_PER_DAY = 0.3  # extra rows per day of stay for a therapy a stay receives (x3 for routine care)
_MAX_ROWS_PER_THERAPY = 6


def _therapy_rows(rng: np.random.Generator, s: Stays, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(stay position, therapy index) per row of `modality`'s table; every present stay gets routine care."""
    present = s.has(modality)
    days = s.los / DAY
    stays, therapies = [], []
    for index, propensity in enumerate(_THERAPY_PROPENSITY.values()):
        rate = _ROWS_PER_DAY * (3 if propensity is None else 1)
        given = present.copy()
        if propensity is not None:
            bias, loadings = propensity
            given &= rng.random(s.n) < sigmoid(bias + s.latent @ np.array(loadings))
        counts = np.where(given, 1 + np.minimum(rng.poisson(rate * days), _MAX_ROWS_PER_THERAPY - 1), 0)
        stay, _ = rows_per_stay(counts)
        stays.append(stay)
        therapies.append(np.full(len(stay), index))
    return np.concatenate(stays), np.concatenate(therapies)


def _pick_per_therapy(rng: np.random.Generator, therapy: np.ndarray, traits: np.ndarray, vocabulary,
                      family: str) -> pd.DataFrame:
    """One entry of `vocabulary[THERAPIES[t]]` per row, as table rows: which one (the drug, the
    device) follows the stay's traits, the habits of the patient and of the team."""
    entries = pd.DataFrame([entry for name in V.THERAPIES for entry in vocabulary[name]])
    sizes = np.array([len(vocabulary[name]) for name in V.THERAPIES])
    within = np.zeros(len(therapy), dtype=np.int64)
    for index, name in enumerate(V.THERAPIES):
        rows = np.flatnonzero(therapy == index)
        within[rows] = trait_choice(rng, traits[rows], f"{family}.{name}", sizes[index])
    return entries.iloc[(np.cumsum(sizes) - sizes)[therapy] + within].reset_index(drop=True)


def treatment_frame(rng: np.random.Generator, s: Stays, first_id: int) -> pd.DataFrame:
    stay, therapy = _therapy_rows(rng, s, "treatment")
    strings = _pick_per_therapy(rng, therapy, s.traits[stay], V.TREATMENTS, "eicu.treatment")[0].to_numpy()
    frame = pd.DataFrame(
        {
            "treatmentid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "treatmentoffset": during_stay(rng, s.los[stay], early=0.7),
            "treatmentstring": strings,
            "activeupondischarge": rng.random(len(stay)) < 0.28,
        }
    )
    frame = ordered(frame, "treatmentoffset")
    frame["treatmentid"] = first_id + np.arange(len(frame))
    return frame


def medication_frame(rng: np.random.Generator, s: Stays, first_id: int) -> pd.DataFrame:
    stay, therapy = _therapy_rows(rng, s, "medication")
    drugs = _pick_per_therapy(rng, therapy, s.traits[stay], V.MEDICATIONS, "eicu.medication").replace("", None)
    n = len(stay)
    los = s.los[stay]
    order = during_stay(rng, los, early=0.7)
    start = order + rng.integers(-30, 120, n)
    stop = start + np.minimum(rng.exponential(1.5 * DAY, n), np.maximum(los + DAY - start, 1)).astype(np.int64)
    unnamed = rng.random(n) < 0.3  # eICU often leaves drugname blank and names the drug by drughiclseqno
    frame = pd.DataFrame(
        {
            "medicationid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "drugorderoffset": order,
            "drugstartoffset": start,
            "drugivadmixture": np.where(drugs["routeadmin"].str.startswith("IV") & (rng.random(n) < 0.5), "Yes", "No"),
            "drugordercancelled": np.where(rng.random(n) < 0.035, "Yes", "No"),
            "drugname": blank(drugs["drugname"], unnamed),
            "drughiclseqno": blank(drugs["drughiclseqno"], ~unnamed & (rng.random(n) < 0.06)),
            "dosage": blank(drugs["dosage"], rng.random(n) < 0.08),
            "routeadmin": drugs["routeadmin"].to_numpy(),
            "frequency": drugs["frequency"].to_numpy(),
            "loadingdose": blank(np.full(n, "0 mg"), rng.random(n) > 0.005),
            "prn": np.where(drugs["frequency"].str.contains("PRN", na=False), "Yes", "No"),
            "drugstopoffset": stop,
            "gtc": drugs["gtc"].to_numpy(),
        }
    )
    frame = ordered(frame, "drugorderoffset")
    frame["medicationid"] = first_id + np.arange(len(frame))
    return frame
