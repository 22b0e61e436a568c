"""The cohort's stays: valid ICU stays of `icu/icustays`, the paper's inner join with the
MIMIC-CXR metadata on subject_id, and the admissions (`hosp/admissions`) they belong to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.config import MimicConfig
from clintraj.data.mimic.cxr import METADATA_FILE
from clintraj.data.mimic.demographics import DEMOGRAPHIC_COLUMNS
from clintraj.data.rawio import Quarantine, csv_batches, parse_datetime, read_table, to_integers


def load_stays(raw: Path, quarantine: Quarantine) -> tuple[pd.DataFrame, list[dict]]:
    """Valid ICU stays (stay_id, subject_id, hadm_id, intime, outtime) and the funnel so far."""
    relative = mt.ICUSTAYS.path
    icu = read_table(raw, relative, ["subject_id", "hadm_id", "stay_id", "intime", "outtime"])
    quarantine.count_read(relative, len(icu))
    stays = pd.DataFrame({
        "stay_id": pd.to_numeric(icu["stay_id"], errors="coerce").astype("Int64"),
        "subject_id": pd.to_numeric(icu["subject_id"], errors="coerce").astype("Int64"),
        "hadm_id": pd.to_numeric(icu["hadm_id"], errors="coerce").astype("Int64"),
        "intime": parse_datetime(icu["intime"]),
        "outtime": parse_datetime(icu["outtime"]),
    }, index=icu.index)
    funnel = [{"step": f"ICU stays in {relative}", "removed": 0, "remaining": len(stays)}]

    def drop(bad: pd.Series, step: str, reason: str) -> None:
        nonlocal stays
        quarantine.add(relative, reason, stays.index[bad])
        funnel.append({"step": f"{step} (quarantined)", "removed": int(bad.sum()), "remaining": int((~bad).sum())})
        stays = stays[~bad]

    drop(stays["stay_id"].isna() | stays["subject_id"].isna(), "stay_id or subject_id missing",
         "stay_id or subject_id missing or not a number")
    drop(stays["stay_id"].duplicated(keep="first"), "duplicate stay_id", "duplicate stay_id")
    drop(~(stays["outtime"] > stays["intime"]).fillna(False), "intime/outtime missing or outtime not after intime",
         "intime/outtime missing, unparseable or outtime not after intime")
    stays = stays.astype({"stay_id": "int64", "subject_id": "int64"})
    return stays.sort_values("stay_id", kind="stable").reset_index(drop=True), funnel


def cxr_linked_stays(stays: pd.DataFrame, cxr: Path | None, config: MimicConfig,
                     funnel: list[dict]) -> pd.DataFrame:
    """The paper's cohort (appendix A.1): the stays of subjects with at least one row in the
    MIMIC-CXR metadata (inner join on subject_id), when `cxr` is given and
    `require_cxr_subject` is set; a funnel step either way."""
    step = "subject without a row in the MIMIC-CXR metadata (inner join on subject_id)"
    if cxr is None or not config.require_cxr_subject:
        why = "cxr=None" if cxr is None else "require_cxr_subject=False"
        funnel.append({"step": f"{step}: not applied ({why})", "removed": 0, "remaining": len(stays)})
        return stays
    subjects = list(csv_batches(Path(cxr), METADATA_FILE, ["subject_id"], config.chunk_rows,
                                lambda _, batch: to_integers(batch.column("subject_id"))))
    linked = stays["subject_id"].isin(np.unique(np.concatenate([np.zeros(0, dtype="int64"), *subjects])))
    funnel.append({"step": step, "removed": int((~linked).sum()), "remaining": int(linked.sum())})
    return stays[linked].reset_index(drop=True)


def read_admissions(raw: Path, quarantine: Quarantine) -> pd.DataFrame:
    """admissions rows indexed by hadm_id, with `row` (the file's data row). A row whose
    hadm_id is missing or repeats an earlier row's is quarantined."""
    columns = ["hadm_id", "admittime", "dischtime", *DEMOGRAPHIC_COLUMNS[:6], "hospital_expire_flag"]
    admissions = read_table(raw, mt.ADMISSIONS.path, columns)
    quarantine.count_read(mt.ADMISSIONS.path, len(admissions))
    hadm = pd.to_numeric(admissions["hadm_id"], errors="coerce")
    bad = hadm.isna() | hadm.duplicated(keep="first")
    quarantine.add(mt.ADMISSIONS.path, "hadm_id missing, not a number or repeated", admissions.index[bad])
    kept = admissions[~bad].assign(hadm_id=hadm[~bad].astype("int64"), row=admissions.index[~bad])
    return kept.set_index("hadm_id")
