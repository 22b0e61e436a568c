"""diagnosis.csv.gz: a charted diagnosis for each phenotype of the stay, plus background ones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data.synthetic.eicu import vocabulary as V
from clintraj.data.synthetic.eicu.helpers import during_stay, ordered, rows_per_stay
from clintraj.data.synthetic.eicu.stays import Stays
from clintraj.data.synthetic.latent import PHENOTYPES, trait_choice

_DIAGNOSES = [entry for name in PHENOTYPES for entry in V.DIAGNOSES_BY_PHENOTYPE[name]] + list(V.OTHER_DIAGNOSES)
_PHENOTYPE_SIZES = np.array([len(V.DIAGNOSES_BY_PHENOTYPE[name]) for name in PHENOTYPES])
_PHENOTYPE_STARTS = np.cumsum(_PHENOTYPE_SIZES) - _PHENOTYPE_SIZES
_FIRST_OTHER_DIAGNOSIS = int(_PHENOTYPE_SIZES.sum())


def diagnosis_frame(rng: np.random.Generator, s: Stays, first_id: int) -> pd.DataFrame:
    """A charted diagnosis (90%) for each phenotype of the stay, some re-charted, plus background diagnoses."""
    present = s.has("diagnosis")
    stay_p, phenotype = np.nonzero(s.phenotypes & present[:, None] & (rng.random(s.phenotypes.shape) < 0.9))
    entry_p = _PHENOTYPE_STARTS[phenotype] + rng.integers(0, _PHENOTYPE_SIZES[phenotype])
    repeats = 1 + (rng.random(len(stay_p)) < 0.3)
    stay_p, entry_p = np.repeat(stay_p, repeats), np.repeat(entry_p, repeats)

    charted = np.bincount(stay_p, minlength=s.n)
    background = np.where(present, np.maximum(rng.poisson(5.0, s.n), charted == 0), 0)
    stay_b, _ = rows_per_stay(background)
    entry_b = _FIRST_OTHER_DIAGNOSIS + trait_choice(rng, s.traits[stay_b], "eicu.diagnosis", len(V.OTHER_DIAGNOSES))

    stay = np.concatenate([stay_p, stay_b])
    entry = np.concatenate([entry_p, entry_b])
    strings = np.array([d[0] for d in _DIAGNOSES], dtype=object)
    codes = np.array([d[1] or None for d in _DIAGNOSES], dtype=object)
    major = rng.random(len(stay)) < np.where(np.arange(len(stay)) < len(stay_p), 0.75, 0.2)  # phenotype rows first
    frame = pd.DataFrame(
        {
            "diagnosisid": 0,
            "patientunitstayid": s.unit_stay_id[stay],
            "activeupondischarge": rng.random(len(stay)) < 0.3,
            "diagnosisoffset": during_stay(rng, s.los[stay], early=0.85),
            "diagnosisstring": strings[entry],
            "icd9code": codes[entry],
            "diagnosispriority": np.where(major, "Major", "Other"),
        }
    )
    frame = ordered(frame, "diagnosisoffset")
    frame.loc[~frame["patientunitstayid"].duplicated(), "diagnosispriority"] = "Primary"
    frame["diagnosisid"] = first_id + np.arange(len(frame))
    return frame
