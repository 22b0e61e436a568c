"""The labels of each stay's admission: in-hospital mortality (`hosp/admissions`) and the
25 benchmark phenotypes from its ICD-9 / ICD-10 codes (`hosp/diagnoses_icd`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.config import MimicConfig
from clintraj.data.rawio import Quarantine, stream_table
from clintraj.tasks import PHENOTYPE_PREFIX

OTHER_ADMISSION = "admission of no cohort stay"


def load_phenotypes() -> dict[str, dict[str, list[str]]]:
    """{phenotype: {"icd9": [...], "icd10": [...]}} of the 25 benchmark HCUP CCS groups,
    in `latent.PHENOTYPES` order, from the package's `resources/phenotypes.yaml`."""
    text = resources.files("clintraj").joinpath("resources/phenotypes.yaml").read_text(encoding="utf-8")
    groups = yaml.safe_load(text)
    if len(groups) != 25 or any(set(g) != {"icd9", "icd10"} for g in groups.values()):
        raise ValueError("resources/phenotypes.yaml: expected 25 groups with icd9 and icd10 lists")
    return {name: {"icd9": [str(c) for c in g["icd9"]], "icd10": [str(c) for c in g["icd10"]]}
            for name, g in groups.items()}


def normalise_icd(code: pd.Series) -> pd.Series:
    """ICD codes as MIMIC writes them: no dots or spaces, upper case."""
    return code.astype("string").str.strip().str.replace(".", "", regex=False).str.upper()


def expire_flags(admissions: pd.DataFrame) -> pd.Series:
    """hospital_expire_flag of each admission as 0.0 / 1.0; NA when it is not 0/1."""
    flag = pd.to_numeric(admissions["hospital_expire_flag"], errors="coerce")
    return flag.where(flag.isin([0, 1])).astype("Float64")


def mortality(stays: pd.DataFrame, admissions: pd.DataFrame) -> pd.Series:
    """hospital_expire_flag of each stay's admission as 0.0 / 1.0; NA when unknown."""
    return stays["hadm_id"].map(expire_flags(admissions)).astype("Float64")


def phenotype_labels(raw: Path, stays: pd.DataFrame, config: MimicConfig,
                     quarantine: Quarantine) -> tuple[pd.DataFrame, pd.Series]:
    """One `pheno:<name>` column per phenotype: 1.0 when a diagnosis of the stay's admission is
    in the group (its ICD-9 or ICD-10 list, by icd_version), 0.0 when none is, NA when the
    admission has no diagnoses rows (the label is unknown, not negative); and the admissions'
    well-formed diagnoses rows (hadm_id -> rows)."""
    phenotypes = load_phenotypes()
    definitions = pd.DataFrame(
        [(version, code, k) for k, name in enumerate(phenotypes)
         for version in (9, 10) for code in phenotypes[name][f"icd{version}"]],
        columns=["icd_version", "icd_code", "phenotype"],
    ).astype({"icd_code": "string"})
    hadms = stays["hadm_id"].dropna().astype("int64").unique()
    hits, per_admission = [], []
    file = mt.DIAGNOSES_ICD.path
    chunks = stream_table(raw, file, ["hadm_id", "icd_code", "icd_version"], chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="MIMIC diagnoses", unit="chunk", disable=not config.progress):
        quarantine.count_read(file, len(chunk))
        hadm = pd.to_numeric(chunk["hadm_id"], errors="coerce")
        quarantine.add(file, "hadm_id missing or not a number", chunk.index[hadm.isna()])
        quarantine.count_filtered(file, OTHER_ADMISSION, (hadm.notna() & ~hadm.isin(hadms)).sum())
        chunk = chunk[hadm.isin(hadms)]
        rows = pd.DataFrame({"hadm_id": hadm[chunk.index].astype("int64"),
                             "icd_version": pd.to_numeric(chunk["icd_version"], errors="coerce"),
                             "icd_code": normalise_icd(chunk["icd_code"])})
        bad = ~rows["icd_version"].isin([9, 10]) | rows["icd_code"].fillna("").eq("")
        quarantine.add(mt.DIAGNOSES_ICD.path, "icd_version not 9/10 or icd_code missing", rows.index[bad])
        rows = rows[~bad].astype({"icd_version": "int64"})
        per_admission.append(rows["hadm_id"].value_counts())
        hits.append(rows.merge(definitions, on=["icd_version", "icd_code"])[["hadm_id", "phenotype"]])
    per_admission = pd.concat(per_admission).groupby(level=0).sum().sort_index()
    coded_hadms = per_admission.index.to_numpy("int64")
    matrix = np.zeros((len(coded_hadms), len(phenotypes)))
    if hits:
        hit = pd.concat(hits)
        matrix[np.searchsorted(coded_hadms, hit["hadm_id"].to_numpy()), hit["phenotype"].to_numpy()] = 1.0
    wide = pd.DataFrame(matrix, index=coded_hadms, columns=[f"{PHENOTYPE_PREFIX}{n}" for n in phenotypes])
    position = pd.Index(coded_hadms).get_indexer(stays["hadm_id"].fillna(-1).astype("int64"))
    labels = wide.iloc[np.maximum(position, 0)].astype("Float64").set_axis(stays.index)
    labels[position < 0] = pd.NA
    return labels, per_admission
