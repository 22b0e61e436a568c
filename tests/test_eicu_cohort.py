import csv
import gzip
import math

import pandas as pd
import pytest

from clintraj.data.eicu import MODALITIES, EicuConfig, build, parse_age
from clintraj.data.modalities import aggregate
from clintraj.data.rawio import RawDataError

CONFIG = EicuConfig(lab_min_count=100)


def lab_table(tables):
    events = tables.events["lab"]
    return aggregate(MODALITIES[4], events, vocabulary=sorted(events["name"].unique()))


def rows(path):
    with gzip.open(path, "rt", newline="") as handle:
        yield from csv.DictReader(handle)


def expected_cohort(raw):
    """The adult 12 h-30 d cohort with lab results, computed straight from the CSV files."""
    lab_stays = set()
    for row in rows(raw / "lab.csv.gz"):
        try:
            if math.isfinite(float(row["labresult"])):
                lab_stays.add(int(row["patientunitstayid"]))
        except ValueError:
            pass
    kept = set()
    for row in rows(raw / "patient.csv.gz"):
        if not row["age"] or row["age"] == "> 89":
            continue
        hours = (int(row["hospitaldischargeoffset"]) - int(row["hospitaladmitoffset"])) / 60
        if 18 <= int(row["age"]) <= 89 and 12 <= hours <= 720 and int(row["patientunitstayid"]) in lab_stays:
            kept.add(int(row["patientunitstayid"]))
    return kept


def test_real_demo_cohort_matches_an_independent_count(eicu_demo_raw):
    tables = build(eicu_demo_raw, CONFIG)
    assert set(tables.stays["stay_id"]) == expected_cohort(eicu_demo_raw)
    assert tables.funnel[0]["remaining"] == 2520
    assert tables.funnel[-1]["remaining"] == len(tables.stays)
    assert len(tables.funnel) >= 2
    for before, after in zip(tables.funnel, tables.funnel[1:]):
        assert before["remaining"] - after["removed"] == after["remaining"]


def test_real_demo_labels_and_modalities(eicu_demo_raw):
    tables = build(eicu_demo_raw, CONFIG)
    stays = tables.stays
    assert stays["los_hours"].between(12, 720).all()
    assert set(stays["died"].dropna().unique()) <= {0.0, 1.0}
    assert (stays["unit_hours"] > 0).all()
    cohort = set(stays["stay_id"])
    assert set(tables.events["lab"]["stay_id"]) == cohort  # anchored on lab
    assert set(tables.static["demographics"]["stay_id"]) == cohort
    for modality in MODALITIES:
        events = tables.events[modality.name]
        assert set(events["stay_id"]) <= cohort and len(events)
        assert (events.groupby("stay_id")["time_hours"].diff().dropna() >= 0).all()  # time-sorted per stay
    for name, table in tables.static.items():  # one event per static row, when it becomes known
        assert table["stay_id"].is_unique
        assert tables.events[name]["stay_id"].tolist() == table["stay_id"].tolist()
    assert (tables.events["aps"]["time_hours"] == 24.0).all() and (tables.events["demographics"]["time_hours"] == 0).all()
    assert list(tables.static["demographics"].columns) == ["stay_id", "gender", "ethnicity", "age"]  # the paper's three
    labs = lab_table(tables)
    assert all(c.startswith("lab:") for c in labs.columns[1:]) and len(labs.columns) > 10
    assert set(labs["stay_id"]) == cohort
    # every non-numeric lab result is counted in the quarantine, never dropped silently
    reasons = {(q["table"], q["reason"]): q["rows"] for q in tables.quarantine.summary()}
    assert reasons[("lab.csv.gz", "labresult missing or not a finite number")] > 0


def test_missing_column_names_file_and_column(tmp_path, eicu_demo_raw):
    for name in ("diagnosis", "treatment", "medication", "apacheApsVar", "lab"):
        (tmp_path / f"{name}.csv.gz").symlink_to(eicu_demo_raw / f"{name}.csv.gz")
    pd.read_csv(eicu_demo_raw / "patient.csv.gz").drop(columns=["hospitaldischargeoffset"]).to_csv(
        tmp_path / "patient.csv.gz", index=False)
    with pytest.raises(RawDataError, match=r"patient\.csv\.gz: missing column 'hospitaldischargeoffset'"):
        build(tmp_path, CONFIG)
    (tmp_path / "patient.csv.gz").unlink()
    (tmp_path / "patient.csv.gz").symlink_to(eicu_demo_raw / "patient.csv.gz")
    (tmp_path / "lab.csv.gz").unlink()
    with pytest.raises(RawDataError, match=r"missing raw file: .*lab\.csv\.gz"):
        build(tmp_path, CONFIG)


def test_age_strings():
    parsed = parse_age(pd.Series(["> 89", "45", "", None, "abc"]))
    assert parsed.iloc[0] == 90 and parsed.iloc[1] == 45
    assert parsed.iloc[2:].isna().all()
