"""MIMIC-IV cohort builder: synthetic raw folders, hand-made examples and the real demo."""

from __future__ import annotations

import csv
import gzip
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import SHARED_DATA, require

from clintraj.data.features import ModalityScaler, modality_vectors
from clintraj.data.mimic import (
    MODALITIES, MODALITY_NAMES, MimicConfig, build, clean_note_text, discretize, load_phenotypes, normal_values,
    study_datetime,
)
from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.measurements import load_measurements
from clintraj.data.mimic.ranges import apply_ranges, load_ranges
from clintraj.data.mimic.stays import load_stays
from clintraj.data.modalities import aggregate
from clintraj.data.rawio import Quarantine, RawDataError
from clintraj.data.synthetic import generate
from clintraj.data.synthetic import mimic as synthetic_mimic
from clintraj.data.synthetic.latent import PHENOTYPES

HCUP_YAML = SHARED_DATA / "mimic3-benchmarks-resources" / "hcup_ccs_2015_definitions.yaml"
RANGES_CSV = SHARED_DATA / "mimic3-benchmarks-resources" / "variable_ranges.csv"
QUIET = MimicConfig(progress=False)
TIME = "%Y-%m-%d %H:%M:%S"


def rows(path: Path):
    with gzip.open(path, "rt", newline="") as handle:
        yield from csv.DictReader(handle)


def write_rows(path: Path, header: list[str], records: list[dict]) -> None:
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(records)


def header(path: Path) -> list[str]:
    with gzip.open(path, "rt", newline="") as handle:
        return next(csv.reader(handle))


def when(text: str) -> datetime:
    return datetime.strptime(text, TIME)


def linked_copy(source: Path, target: Path, replace: tuple[str, ...] = ()) -> Path:
    """A raw folder of symlinks to `source`'s hosp/ and icu/ files, except the `replace` paths."""
    for folder in ("hosp", "icu"):
        (target / folder).mkdir(parents=True, exist_ok=True)
        for file in (source / folder).glob("*.csv.gz"):
            relative = f"{folder}/{file.name}"
            if relative not in replace:
                (target / relative).symlink_to(file.resolve())
    return target


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mimic-synthetic")
    generate("mimic", out, n_stays=300, seed=3, progress=False)
    return out


def whole_stay(cohort, name: str) -> pd.DataFrame:
    """A modality's per-stay table over every event (the pretraining view)."""
    modality = next(m for m in MODALITIES if m.name == name)
    return aggregate(modality, cohort.events[name], cohort.static.get(name))


def has(cohort, name: str) -> pd.Series:
    return cohort.stays["stay_id"].isin(cohort.events[name]["stay_id"])


@pytest.fixture(scope="session")
def synthetic(synthetic_raw):
    return build(synthetic_raw, synthetic_raw / "mimic-cxr-jpg", synthetic_raw / "mimic-iv-note", QUIET)


@pytest.fixture(scope="session")
def demo_raw(mimic_demo_raw) -> Path:
    return mimic_demo_raw


# --- synthetic: cohort, modalities, labels ------------------------------------------------


def test_funnel_arithmetic_and_tables_consistent(synthetic):
    funnel, stays = synthetic.funnel, synthetic.stays
    assert funnel[0]["remaining"] == 300
    assert len(funnel) >= 2
    for before, after in zip(funnel, funnel[1:]):
        assert before["remaining"] - after["removed"] == after["remaining"]
    assert funnel[-1]["remaining"] == len(stays)
    assert stays["stay_id"].is_unique and stays["stay_id"].is_monotonic_increasing
    assert pd.concat([has(synthetic, m) for m in MODALITY_NAMES], axis=1).any(axis=1).all()
    assert synthetic.modality_names == MODALITY_NAMES
    for name in MODALITY_NAMES:
        table = whole_stay(synthetic, name)
        assert table["stay_id"].is_unique
        assert set(table["stay_id"]) == set(stays.loc[has(synthetic, name), "stay_id"])
        assert set(synthetic.events[name]["stay_id"]) == set(table["stay_id"])
        step = next(s for s in funnel if s["step"].startswith(f"{name}:"))
        assert step["stays_with_modality"] >= int(has(synthetic, name).sum())
    assert synthetic.label_columns == ("died", *[f"pheno:{p}" for p in PHENOTYPES])


def test_cxr_events_are_the_ap_images_strictly_inside_the_stay_and_the_table_the_latest(synthetic, synthetic_raw):
    icu = {int(r["stay_id"]): r for r in rows(synthetic_raw / mt.ICUSTAYS.path)}
    images = pd.read_csv(synthetic_raw / mt.CXR_METADATA.path, dtype={"StudyDate": str, "StudyTime": str})
    images["t"] = study_datetime(images["StudyDate"], images["StudyTime"])
    expected, every = {}, {}
    cohort = set(synthetic.stays["stay_id"])
    for stay_id, row in icu.items():
        inside = images[(images["subject_id"] == int(row["subject_id"])) & (images["ViewPosition"] == "AP")
                        & (images["t"] > when(row["intime"])) & (images["t"] < when(row["outtime"]))]
        if len(inside) and stay_id in cohort:
            expected[stay_id] = inside.sort_values(["t", "dicom_id"]).iloc[-1]["dicom_id"]
            every[stay_id] = sorted(inside["dicom_id"])
    events = synthetic.events["cxr"]
    assert {s: sorted(g["dicom_id"]) for s, g in events.groupby("stay_id")} == every
    assert sum(len(v) for v in every.values()) > len(every)  # stays with several images: each is an event
    cxr = whole_stay(synthetic, "cxr")
    assert len(cxr) > 20
    assert dict(zip(cxr["stay_id"], cxr["dicom_id"])) == expected
    views = images.set_index("dicom_id")["ViewPosition"]
    assert (views[cxr["dicom_id"]] == "AP").all()
    assert ((cxr["study_time_hours"] > 0) & (cxr["study_time_hours"] < 24 * 400)).all()
    for path in cxr["path"]:
        assert (synthetic_raw / "mimic-cxr-jpg" / path).is_file()


def test_notes_are_cleaned(synthetic):
    for name in ("discharge_note", "radiology_note"):
        texts = list(whole_stay(synthetic, name)["text"]) + list(synthetic.events[name]["text"])
        assert texts
        for text in texts:
            assert "___" not in text and "\x95" not in text and text == text.lower()
            assert not any(line.startswith(("name:", "unit no:", "admission date:", "date of birth:"))
                           for line in text.split("\n"))
    discharge = whole_stay(synthetic, "discharge_note")["text"]
    assert discharge.str.contains("discharge diagnosis:").all()  # sections and punctuation stay


def test_notes_follow_the_admission(synthetic, synthetic_raw):
    """Every note of a stay's (subject_id, hadm_id) is an event; outpatient notes are not."""
    stays = synthetic.stays.set_index("stay_id")
    cohort_patients = set(stays["patient_id"])
    admission_notes, outpatient = {}, 0
    for row in rows(synthetic_raw / mt.RADIOLOGY.path):
        if row["hadm_id"]:
            key = (row["subject_id"], int(row["hadm_id"]))
            admission_notes.setdefault(key, []).append(clean_note_text(row["text"]))
        elif row["subject_id"] in cohort_patients:
            outpatient += 1
    assert outpatient > 0  # cohort patients have outpatient reports: the rule has something to leave out
    # a stay's events: exactly its admission's notes, none missing and no outpatient report among them
    expected = {stay_id: sorted(admission_notes[(patient, hadm)])
                for stay_id, patient, hadm in zip(stays.index, stays["patient_id"], stays["hadm_id"])
                if (patient, hadm) in admission_notes}
    assert len(expected) > 10
    events = synthetic.events["radiology_note"]
    assert {stay_id: sorted(group["text"]) for stay_id, group in events.groupby("stay_id")} == expected
    for stay_id, group in events.groupby("stay_id"):
        assert list(group["note_index"]) == list(range(len(group)))


def test_time_series_bins_and_imputation(synthetic, synthetic_raw):
    events = synthetic.events["time_series"]
    los = {int(r["stay_id"]): (when(r["outtime"]) - when(r["intime"])).total_seconds() / 3600
           for r in rows(synthetic_raw / mt.ICUSTAYS.path)}
    # a bin is an event when it closes: its end, or the stay's end for the last (partial) one
    length = events["stay_id"].map(los)
    whole = events["time_hours"] == np.floor(events["time_hours"])
    assert (whole | np.isclose(events["time_hours"], length)).all() and whole.mean() > 0.9
    assert (events["time_hours"] > 0).all()
    assert (events["time_hours"] <= length + 1e-9).all()
    assert not events.duplicated(["stay_id", "time_hours"]).any()
    masks = [f"mask:{v}" for v in mt.VARIABLES]
    assert events[masks].any(axis=1).all()
    assert not events[list(mt.VARIABLES)].isna().any().any()
    normal = normal_values()
    never = events.groupby("stay_id")[masks].any()
    checked = 0
    for variable in mt.VARIABLES:
        stays = never.index[~never[f"mask:{variable}"]]
        values = events.loc[events["stay_id"].isin(stays), variable]
        assert (values == normal[variable]).all()
        checked += len(stays)
    assert checked > 0  # e.g. pH or FiO2 of stays without a blood gas
    static = whole_stay(synthetic, "time_series")
    assert all(c.startswith("ts:") for c in static.columns[1:])
    assert static.drop(columns="stay_id").dtypes.map(pd.api.types.is_numeric_dtype).all()


def test_discretize_carry_forward_on_a_hand_made_stay():
    measurements = pd.DataFrame([
        (1, 0.2, "Heart Rate", 80.0), (1, 0.7, "Heart Rate", 90.0),
        (1, 0.1, "Glascow coma scale eye opening", 3.0), (1, 0.9, "Glascow coma scale eye opening", 2.0),
        (1, 3.5, "Heart Rate", 100.0),
        (1, 5.0, "Temperature", 38.0),
        (2, 1.0, "Glucose", 200.0),
    ], columns=["stay_id", "hours", "variable", "value"])
    events = discretize(measurements, 1.0).set_index(["stay_id", "time_hours"])
    normal = normal_values()
    assert list(events.index) == [(1, 0.0), (1, 3.0), (1, 5.0), (2, 1.0)]
    assert events.loc[(1, 0.0), "Heart Rate"] == 85.0  # mean within the bin
    assert events.loc[(1, 0.0), "Glascow coma scale eye opening"] == 2.0  # categorical: last in the bin
    assert events.loc[(1, 3.0), "Heart Rate"] == 100.0
    assert events.loc[(1, 3.0), "Glascow coma scale eye opening"] == 2.0  # carried forward
    assert not events.loc[(1, 3.0), "mask:Glascow coma scale eye opening"]
    assert events.loc[(1, 5.0), "Heart Rate"] == 100.0
    assert events.loc[(1, 0.0), "Temperature"] == normal["Temperature"]  # before its first value
    assert events.loc[(1, 5.0), "Temperature"] == 38.0
    assert events.loc[(1, 0.0), "pH"] == normal["pH"] == 7.4  # never measured
    assert events.loc[(2, 1.0), "Heart Rate"] == normal["Heart Rate"]  # no carry-over between stays
    assert events.loc[(2, 1.0), "Glascow coma scale total"] == 15.0
    assert events.loc[(1, 0.0), "mask:Heart Rate"] and not events.loc[(1, 0.0), "mask:pH"]


def test_died_equals_hospital_expire_flag(synthetic, synthetic_raw):
    flag = {int(r["hadm_id"]): float(r["hospital_expire_flag"]) for r in rows(synthetic_raw / mt.ADMISSIONS.path)}
    stays = synthetic.stays
    assert (stays["died"].astype(float) == stays["hadm_id"].astype(int).map(flag)).all()
    assert 0 < stays["died"].sum() < len(stays)


def test_phenotypes_match_the_diagnosis_codes(synthetic, synthetic_raw):
    groups = load_phenotypes()
    codes = {}
    for r in rows(synthetic_raw / mt.DIAGNOSES_ICD.path):
        codes.setdefault(int(r["hadm_id"]), set()).add((r["icd_version"], r["icd_code"]))
    stays = synthetic.stays
    for name in PHENOTYPES:
        wanted = {("9", c) for c in groups[name]["icd9"]} | {("10", c) for c in groups[name]["icd10"]}
        expected = stays["hadm_id"].astype(int).map(lambda h: float(bool(codes.get(h, set()) & wanted)))
        assert (stays[f"pheno:{name}"].astype(float) == expected).all(), name
    assert stays[[f"pheno:{p}" for p in PHENOTYPES]].sum().gt(0).sum() >= 20


def test_phenotypes_on_hand_made_diagnoses(tmp_path, synthetic_raw):
    """One ICD-9 and one ICD-10 code per phenotype, each on a stay of its own."""
    raw = linked_copy(synthetic_raw, tmp_path, replace=(mt.DIAGNOSES_ICD.path,))
    icu = list(rows(synthetic_raw / mt.ICUSTAYS.path))
    groups = load_phenotypes()
    records = []
    for k, name in enumerate(PHENOTYPES):
        for offset, version in ((0, 9), (25, 10)):
            stay = icu[k + offset]
            records.append({"subject_id": stay["subject_id"], "hadm_id": stay["hadm_id"], "seq_num": 1,
                            "icd_code": groups[name][f"icd{version}"][0], "icd_version": version})
    # an ICD-9 code filed as ICD-10 matches nothing, and codes outside the 25 groups neither
    records.append({"subject_id": icu[50]["subject_id"], "hadm_id": icu[50]["hadm_id"], "seq_num": 1,
                    "icd_code": groups[PHENOTYPES[0]]["icd9"][0], "icd_version": 10})
    records.append({"subject_id": icu[51]["subject_id"], "hadm_id": icu[51]["hadm_id"], "seq_num": 1,
                    "icd_code": "V5861", "icd_version": 9})
    write_rows(raw / mt.DIAGNOSES_ICD.path, list(mt.DIAGNOSES_ICD.columns), records)
    stays = build(raw, None, None, QUIET).stays.set_index("hadm_id")
    columns = [f"pheno:{p}" for p in PHENOTYPES]
    for k in range(25):
        for offset in (0, 25):
            row = stays.loc[int(icu[k + offset]["hadm_id"]), columns].astype(float).to_numpy()
            assert list(np.flatnonzero(row)) == [k]
    for index in (50, 51):
        assert (stays.loc[int(icu[index]["hadm_id"]), columns] == 0).all()
    assert stays.loc[int(icu[60]["hadm_id"]), columns].isna().all()  # no diagnoses: unknown, not negative


def test_demographics_raw_and_age_groups(synthetic, synthetic_raw):
    table = synthetic.static["demographics"].set_index("stay_id")
    expected = ["admission_type", "admission_location", "insurance", "language", "marital_status", "race",
                "gender", "age_group", "age"]
    assert list(table.columns) == expected
    assert table["age_group"].isin(["18-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+"]).all()
    patients = {r["subject_id"]: r for r in rows(synthetic_raw / mt.PATIENTS.path)}
    admit = {int(r["hadm_id"]): when(r["admittime"]).year for r in rows(synthetic_raw / mt.ADMISSIONS.path)}
    stays = synthetic.stays.set_index("stay_id")
    assert len(table) >= 40
    for stay_id, row in table.head(40).iterrows():
        patient = patients[stays.loc[stay_id, "patient_id"]]
        age = int(patient["anchor_age"]) + admit[int(stays.loc[stay_id, "hadm_id"])] - int(patient["anchor_year"])
        assert row["age"] == age and row["gender"] == patient["gender"]
    events = synthetic.events["demographics"]
    assert (events["time_hours"] == 0).all() and len(events) == len(table)


def test_static_tables_scale(synthetic):
    """Raw demographics (strings + age) and time-series summaries scale to finite vectors; a stay
    without the modality gets zeros."""
    train = synthetic.stays["stay_id"][synthetic.stays.index % 5 != 0]
    for name in ("time_series", "demographics"):
        table = whole_stay(synthetic, name)
        scaler = ModalityScaler.fit(table[table["stay_id"].isin(train)])
        absent = synthetic.stays["stay_id"].max() + 1
        vectors = modality_vectors(scaler, table, pd.concat([synthetic.stays["stay_id"], pd.Series([absent])]))
        assert vectors.shape == (len(synthetic.stays) + 1, len(scaler.names)) and np.isfinite(vectors).all()
        assert not vectors[-1].any() and vectors[:-1].any(axis=1).mean() > 0.5
    assert {"age_group=80+", "age"} <= set(scaler.names)


def test_build_is_deterministic(synthetic, synthetic_raw):
    again = build(synthetic_raw, synthetic_raw / "mimic-cxr-jpg", synthetic_raw / "mimic-iv-note", QUIET)
    pd.testing.assert_frame_equal(synthetic.stays, again.stays)
    for name in MODALITY_NAMES:
        pd.testing.assert_frame_equal(synthetic.events[name], again.events[name])
    pd.testing.assert_frame_equal(synthetic.static["demographics"], again.static["demographics"])
    assert synthetic.funnel == again.funnel
    pd.testing.assert_frame_equal(synthetic.quarantine.frame(), again.quarantine.frame())


def test_small_chunks_give_the_same_tables(synthetic, synthetic_raw):
    """Streaming never changes the result: duplicates and row numbers span chunk boundaries."""
    small = build(synthetic_raw, synthetic_raw / "mimic-cxr-jpg", synthetic_raw / "mimic-iv-note",
                  MimicConfig(progress=False, chunk_rows=400))
    pd.testing.assert_frame_equal(synthetic.stays, small.stays)
    for name in MODALITY_NAMES:
        pd.testing.assert_frame_equal(synthetic.events[name], small.events[name])
    assert synthetic.quarantine.summary() == small.quarantine.summary()


def test_stays_without_any_modality_leave_the_cohort(tmp_path, synthetic, synthetic_raw):
    """Without admissions and patients rows of its own no stay has demographics (nor a known
    label): the cohort is then the stays with a clinical modality, and the last step removes the
    rest. (A table without any data row is an error: the one row here is another patient's.)"""
    raw = linked_copy(synthetic_raw, tmp_path, replace=(mt.ADMISSIONS.path, mt.PATIENTS.path))
    write_rows(raw / mt.ADMISSIONS.path, list(mt.ADMISSIONS.columns), [{"subject_id": "1", "hadm_id": "1"}])
    write_rows(raw / mt.PATIENTS.path, list(mt.PATIENTS.columns), [{"subject_id": "1"}])
    tables = build(raw, synthetic_raw / "mimic-cxr-jpg", synthetic_raw / "mimic-iv-note", QUIET)
    full = synthetic.stays
    clinical = pd.concat([has(synthetic, m) for m in MODALITY_NAMES if m != "demographics"], axis=1)
    expected = set(full.loc[clinical.any(axis=1), "stay_id"])
    assert set(tables.stays["stay_id"]) == expected
    assert tables.funnel[-1] == {"step": "no modality present", "removed": len(full) - len(expected),
                                 "remaining": len(expected)}
    assert tables.funnel[-1]["removed"] > 0
    assert not has(tables, "demographics").any() and tables.stays["died"].isna().all()


def test_absent_sources_are_absent_for_every_stay(synthetic_raw):
    tables = build(synthetic_raw, None, None, QUIET)
    for name in ("cxr", "discharge_note", "radiology_note"):
        assert not has(tables, name).any()
        assert whole_stay(tables, name).empty and tables.events[name].empty
        step = next(s for s in tables.funnel if s["step"].startswith(f"{name}:"))
        assert "not provided" in step["step"] and step["stays_with_modality"] == 0
    # without a CXR root the CXR-subject join is not applied, and the funnel says so
    step = next(s for s in tables.funnel if "MIMIC-CXR metadata" in s["step"])
    assert step["step"].endswith("not applied (cxr=None)") and step["removed"] == 0
    assert tables.funnel[0]["remaining"] == step["remaining"] == 300


def test_cohort_is_the_cxr_metadata_join_on_subject(synthetic, synthetic_raw):
    """Paper A.1: inner join of the MIMIC-CXR metadata and icustays on subject_id. Stays of
    subjects without any metadata row leave the cohort in their own funnel step."""
    imaged = {r["subject_id"] for r in rows(synthetic_raw / mt.CXR_METADATA.path)}
    icu = list(rows(synthetic_raw / mt.ICUSTAYS.path))
    unlinked = {int(r["stay_id"]) for r in icu if r["subject_id"] not in imaged}
    assert 0 < len(unlinked) < len(icu)
    step = next(s for s in synthetic.funnel if "MIMIC-CXR metadata" in s["step"])
    assert step["removed"] == len(unlinked) and step["remaining"] == len(icu) - len(unlinked)
    assert set(synthetic.stays["patient_id"]) <= imaged
    assert not set(synthetic.stays["stay_id"]) & unlinked
    # with the option off, those stays stay (they have demographics and maybe a time series)
    kept = build(synthetic_raw, synthetic_raw / "mimic-cxr-jpg", None, MimicConfig(progress=False,
                                                                                   require_cxr_subject=False))
    assert unlinked <= set(kept.stays["stay_id"])
    step = next(s for s in kept.funnel if "MIMIC-CXR metadata" in s["step"])
    assert step["step"].endswith("not applied (require_cxr_subject=False)") and step["removed"] == 0
    linked = kept.stays[~kept.stays["stay_id"].isin(unlinked)]
    assert list(linked["stay_id"]) == list(synthetic.stays["stay_id"])
    assert (has(kept, "cxr")[~kept.stays["stay_id"].isin(unlinked)].to_numpy() == has(synthetic, "cxr").to_numpy()).all()
    assert not has(kept, "cxr")[kept.stays["stay_id"].isin(unlinked)].any()


# --- small pieces ----------------------------------------------------------------------


def test_clean_note_text():
    raw = ("Name:  ___   Unit No:   ___\nAdmission Date:  ___  Discharge Date:   ___\n"
           "Date of Birth:  ___   Sex:   F\nHistory: Pt\x95 denies CP, doesnâ€™t want ___.\r\n"
           "\x95 No  fever;  NOT hypoxic?\x00\ufffd\n\n\n\nDone.")
    text = clean_note_text(raw)
    assert text == "history: pt denies cp, doesnt want .\nno fever; not hypoxic?\n\ndone."


def test_study_datetime_restores_lost_leading_zeros():
    parsed = study_datetime(pd.Series(["21800723", "21800723", "2180"]), pd.Series(["80556.875", "235959", "1"]))
    assert parsed[0] == pd.Timestamp("2180-07-23 08:05:56.875")
    assert parsed[1] == pd.Timestamp("2180-07-23 23:59:59")
    assert pd.isna(parsed[2])


def test_phenotype_definitions_file():
    groups = load_phenotypes()
    assert list(groups) == list(PHENOTYPES)
    for name, codes in synthetic_mimic.PHENOTYPE_ICD_CODES.items():
        assert set(codes[9]) <= set(groups[name]["icd9"]) and set(codes[10]) <= set(groups[name]["icd10"])
    every = [c for g in groups.values() for c in g["icd9"] + g["icd10"]]
    assert len(every) == len(set(every))  # no code in two groups


def test_icd9_lists_equal_the_hcup_ccs_definitions():
    hcup = yaml.safe_load(require(HCUP_YAML).read_text())
    benchmark = {name: group["codes"] for name, group in hcup.items() if group["use_in_benchmark"]}
    assert set(benchmark) == set(PHENOTYPES)
    groups = load_phenotypes()
    for name in PHENOTYPES:
        assert groups[name]["icd9"] == benchmark[name], name


def test_ranges_are_the_benchmarks():
    """resources/variable_ranges.yaml holds mimic3-benchmarks' numbers for the 17 variables."""
    benchmark = pd.read_csv(require(RANGES_CSV)).assign(key=lambda f: f["LEVEL2"].str.lower()).set_index("key")
    columns = ["OUTLIER LOW", "VALID LOW", "VALID HIGH", "OUTLIER HIGH"]
    expected = benchmark.loc[[v.lower() for v in mt.VARIABLES], columns].to_numpy(float)
    np.testing.assert_array_equal(load_ranges(), expected)


def test_outliers_are_removed_and_the_rest_clipped_as_the_benchmark_does():
    variables = ["Fraction inspired oxygen"] * 5 + ["Temperature"] * 4 + ["Heart Rate"] * 3
    values = [0.19, 0.2, 0.5, 1.05, 1.2, 14.1, 14.2, 46.0, 47.5, -1.0, 360.0, 391.0]
    outlier, clipped = apply_ranges(np.array([mt.VARIABLES.index(v) for v in variables]), np.array(values))
    assert outlier.tolist() == [True, False, False, False, True, True, False, False, True, True, False, True]
    kept = clipped[~outlier].tolist()
    assert kept == [0.21, 0.5, 1.0, 26.0, 45.0, 350.0]  # clipped to the valid bounds: 0.21-1, 26-45, 0-350


def test_planted_outliers_are_quarantined_and_clipped_values_counted(tmp_path, synthetic_raw):
    raw = linked_copy(synthetic_raw, tmp_path, replace=(mt.CHARTEVENTS.path,))
    chart = list(rows(synthetic_raw / mt.CHARTEVENTS.path))
    stay = next(r for r in rows(synthetic_raw / mt.ICUSTAYS.path) if r["stay_id"] == chart[0]["stay_id"])
    intime = when(stay["intime"])
    at = when((intime + (when(stay["outtime"]) - intime) / 3).strftime(TIME))
    planted = [{**chart[0], "itemid": "220045", "charttime": at.strftime(TIME), "value": v, "valuenum": v}
               for v in ("500", "360")]
    write_rows(raw / mt.CHARTEVENTS.path, header(synthetic_raw / mt.CHARTEVENTS.path), chart + planted)
    quarantine = Quarantine()
    stays, _ = load_stays(raw, quarantine)
    measurements, detail = load_measurements(raw, stays, QUIET, quarantine)
    entries = quarantine.frame()
    n = len(chart)
    assert entries.loc[entries["reason"] == "Heart Rate outside its outlier bounds [0, 390]", "row"].tolist() == [n]
    assert detail["Heart Rate values clipped to the valid range [0, 350]"] == 1
    heart = measurements[measurements["variable"] == "Heart Rate"]
    assert heart["value"].max() == 350
    hours = (at - intime).total_seconds() / 3600
    mine = heart[(heart["stay_id"] == int(stay["stay_id"])) & np.isclose(heart["hours"], hours)]
    assert 350 in mine["value"].tolist() and 500 not in mine["value"].tolist()


# --- bad input --------------------------------------------------------------------------


def test_missing_file_and_column_are_named(tmp_path, synthetic_raw):
    raw = linked_copy(synthetic_raw, tmp_path, replace=(mt.DIAGNOSES_ICD.path, mt.ADMISSIONS.path))
    admissions = pd.read_csv(synthetic_raw / mt.ADMISSIONS.path, dtype=str, keep_default_na=False)
    admissions.drop(columns="hospital_expire_flag").to_csv(raw / mt.ADMISSIONS.path, index=False)
    with pytest.raises(RawDataError, match=r"admissions\.csv\.gz: missing column 'hospital_expire_flag'"):
        build(raw, None, None, QUIET)
    (raw / mt.ADMISSIONS.path).unlink()
    (raw / mt.ADMISSIONS.path).symlink_to(synthetic_raw / mt.ADMISSIONS.path)
    with pytest.raises(RawDataError, match=r"missing raw file: .*diagnoses_icd\.csv\.gz"):
        build(raw, None, None, QUIET)
    (raw / mt.DIAGNOSES_ICD.path).symlink_to(synthetic_raw / mt.DIAGNOSES_ICD.path)
    with pytest.raises(RawDataError, match=r"missing raw file: .*radiology\.csv\.gz"):
        notes = tmp_path / "notes" / "note"
        notes.mkdir(parents=True)
        (notes / "discharge.csv.gz").symlink_to(synthetic_raw / mt.DISCHARGE.path)
        build(raw, None, tmp_path / "notes", QUIET)


def test_bad_chartevents_rows_are_quarantined_with_their_row(tmp_path, synthetic_raw):
    raw = linked_copy(synthetic_raw, tmp_path, replace=(mt.CHARTEVENTS.path,))
    chart = list(rows(synthetic_raw / mt.CHARTEVENTS.path))
    stay = next(r for r in rows(synthetic_raw / mt.ICUSTAYS.path) if r["stay_id"] == chart[0]["stay_id"])
    inside = when(stay["intime"]) + (when(stay["outtime"]) - when(stay["intime"])) / 2
    bad_number = {**chart[0], "itemid": "220045", "charttime": inside.strftime(TIME), "value": "n/a",
                  "valuenum": "n/a"}
    before = when(stay["intime"]).replace(year=when(stay["intime"]).year - 1)
    bad_time = {**chart[0], "itemid": "220045", "charttime": before.strftime(TIME), "value": "80", "valuenum": "80"}
    infinite = {**chart[0], "itemid": "220045", "charttime": inside.strftime(TIME), "value": "inf", "valuenum": "inf"}
    write_rows(raw / mt.CHARTEVENTS.path, header(synthetic_raw / mt.CHARTEVENTS.path),
               chart + [bad_number, bad_time, infinite, chart[5]])
    quarantine = build(raw, None, None, QUIET).quarantine.frame()
    chart_rows = quarantine[quarantine["table"] == mt.CHARTEVENTS.path]
    n = len(chart)
    reasons = chart_rows.groupby("reason")["row"].apply(set)
    assert {n, n + 2} <= reasons["valuenum missing or not a finite number"]
    assert reasons["charttime outside the stay"] == {n + 1}
    assert n + 3 in reasons["duplicate row (same stay, charttime, item and value)"]


def test_cut_off_event_table_and_bad_diagnosis_ids(tmp_path, synthetic_raw):
    """The streamed tables share the eICU reader's errors (tests/test_raw_faults.py); a diagnoses row
    whose hadm_id is not a number is quarantined, not taken for another admission's."""
    raw = linked_copy(synthetic_raw, tmp_path, replace=(mt.LABEVENTS.path, mt.DIAGNOSES_ICD.path))
    whole = (synthetic_raw / mt.LABEVENTS.path).read_bytes()
    (raw / mt.LABEVENTS.path).write_bytes(whole[: len(whole) // 2])
    diagnoses = list(rows(synthetic_raw / mt.DIAGNOSES_ICD.path))
    write_rows(raw / mt.DIAGNOSES_ICD.path, header(synthetic_raw / mt.DIAGNOSES_ICD.path),
               diagnoses + [{**diagnoses[0], "hadm_id": "SECRET-4711"}])
    with pytest.raises(RawDataError, match=r"labevents\.csv\.gz: not a complete compressed file") as error:
        build(raw, None, None, QUIET)
    assert "SECRET" not in str(error.value)
    (raw / mt.LABEVENTS.path).unlink()
    (raw / mt.LABEVENTS.path).symlink_to(synthetic_raw / mt.LABEVENTS.path)
    tables = build(raw, None, None, QUIET)
    entries = tables.quarantine.frame()
    assert entries.loc[entries["reason"] == "hadm_id missing or not a number", "row"].tolist() == [len(diagnoses)]
    assert all(a["unaccounted"] == 0 for a in tables.quarantine.accounts())


# --- the real MIMIC-IV demo ---------------------------------------------------------------


def demo_expected(raw: Path) -> tuple[set, set]:
    """(stays with time series, stays with demographics) of the demo, straight from the CSVs."""
    icu = list(rows(raw / mt.ICUSTAYS.path))
    chart_items = {str(i) for v, ids in mt.CHART_ITEMIDS.items() if v != "Capillary refill rate" for i in ids}
    lab_items = {str(i) for ids in mt.LAB_ITEMIDS.values() for i in ids}

    def number(text: str) -> bool:
        try:
            return math.isfinite(float(text))
        except ValueError:
            return False

    with_series = {int(r["stay_id_inferred"]) for r in rows(raw / mt.CHARTEVENTS.path)
                   if r["stay_id_inferred"] and r["itemid"] in chart_items and number(r["valuenum"])}
    windows = {}
    for r in icu:
        windows.setdefault(r["subject_id"], []).append((when(r["intime"]), when(r["outtime"]), int(r["stay_id"])))
    for r in rows(raw / mt.LABEVENTS.path):
        if r["itemid"] in lab_items and number(r["valuenum"]) and r["charttime"]:
            t = when(r["charttime"])
            with_series |= {s for start, end, s in windows.get(r["subject_id"], []) if start <= t <= end}
    fields = ["admission_type", "admission_location", "insurance", "language", "marital_status", "race"]
    admitted = {r["hadm_id"] for r in rows(raw / mt.ADMISSIONS.path) if any(r[f] for f in fields)}
    patients = {r["subject_id"] for r in rows(raw / mt.PATIENTS.path) if r["gender"] or r["anchor_age"]}
    with_demographics = {int(r["stay_id"]) for r in icu if r["hadm_id"] in admitted or r["subject_id"] in patients}
    return with_series, with_demographics


def test_real_demo_cohort_matches_an_independent_count(demo_raw):
    tables = build(demo_raw, None, None, MimicConfig(chartevents_stand_in=True, progress=False))
    stays = tables.stays
    assert tables.funnel[0]["remaining"] == 140
    assert len(tables.funnel) >= 2
    for before, after in zip(tables.funnel, tables.funnel[1:]):
        assert before["remaining"] - after["removed"] == after["remaining"]
    with_series, with_demographics = demo_expected(demo_raw)
    assert set(stays["stay_id"]) == with_series | with_demographics
    assert set(stays.loc[has(tables, "time_series"), "stay_id"]) == with_series
    assert set(stays.loc[has(tables, "demographics"), "stay_id"]) == with_demographics
    for name in ("cxr", "discharge_note", "radiology_note"):
        assert not has(tables, name).any() and whole_stay(tables, name).empty
    assert set(stays["died"].unique()) == {0.0, 1.0}
    reasons = {(q["table"], q["reason"]) for q in tables.quarantine.summary()}
    # stand-in rows without stay_id outside every ICU stay are counted, not dropped silently
    assert (mt.CHARTEVENTS.path, "stay_id blank and charttime in no ICU stay of the subject") in reasons


def test_real_demo_stand_in_needs_the_option(demo_raw):
    with pytest.raises(RawDataError, match=r"chartevents\.csv\.gz: missing column 'stay_id'"):
        build(demo_raw, None, None, QUIET)
