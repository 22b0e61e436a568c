"""Corrupted copies of the eICU demo: each fault is a RawDataError naming the file (and the column
where one is to blame) or a counted quarantine, never a traceback quoting the data. The table of
these cases is README.md's "Reliability" section."""

from __future__ import annotations

import gzip
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clintraj.data import eicu_tables as et
from clintraj.data.eicu import EicuConfig, build
from clintraj.data.rawio import RawDataError

CONFIG = EicuConfig(lab_min_count=100)
SECRET = "SECRET-4711"  # planted in the data next to each fault: no message may carry it
FILES = ("patient", "lab", "diagnosis", "treatment", "medication", "apacheApsVar")


@pytest.fixture(scope="module")
def clean(eicu_demo_raw):
    return build(eicu_demo_raw, CONFIG)


def text(raw: Path, name: str) -> str:
    with gzip.open(raw / f"{name}.csv.gz", "rt", newline="") as handle:
        return handle.read()


def frame(raw: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(raw / f"{name}.csv.gz", dtype=str, keep_default_na=False)


def copy(source: Path, target: Path, name: str, content: bytes) -> Path:
    """A raw folder linking `source`'s files, with `name`.csv.gz replaced by `content` (bytes as
    they lie on disk)."""
    target.mkdir()
    for other in FILES:
        if other != name:
            (target / f"{other}.csv.gz").symlink_to((source / f"{other}.csv.gz").resolve())
    (target / f"{name}.csv.gz").write_bytes(content)
    return target


def gz(data: str | bytes) -> bytes:
    return gzip.compress(data.encode() if isinstance(data, str) else data)


def csv_text(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n")


def cohort_row(raw: Path, name: str, clean, column: str | None = None) -> tuple[pd.DataFrame, int]:
    """The table and the position of its first row of a cohort stay (with `column` filled)."""
    table = frame(raw, name)
    inside = table["patientunitstayid"].astype(int).isin(clean.stays["stay_id"])
    if column:
        inside &= table[column].str.strip().ne("")
    return table, int(np.flatnonzero(inside.to_numpy())[0])


def edited(raw: Path, name: str, clean, column: str, value: str, filled: str | None = None) -> tuple[bytes, int, int]:
    """`name` with `column` of its first cohort row set to `value`: (gzip bytes, row, stay)."""
    table, row = cohort_row(raw, name, clean, filled)
    table.loc[row, column] = value
    return gz(csv_text(table)), row, int(table.loc[row, "patientunitstayid"]) if column != "patientunitstayid" else -1


def expect_named_error(raw: Path, match: str) -> None:
    with pytest.raises(RawDataError, match=match) as error:
        build(raw, CONFIG)
    shown = "".join(traceback.format_exception(error.value))
    assert SECRET not in shown and "Traceback" in shown  # the whole traceback, chained errors included


def rows_of(tables, file: str, reason: str) -> set[int]:
    entries = tables.quarantine.frame()
    return set(entries.loc[(entries["table"] == file) & (entries["reason"] == reason), "row"])


def balanced(tables) -> None:
    accounts = tables.quarantine.accounts()
    assert {a["table"] for a in accounts} == {f"{n}.csv.gz" for n in FILES}
    assert all(a["unaccounted"] == 0 for a in accounts), accounts


# --- a named error: file (and column), no cell -----------------------------------------


def test_truncated_gzip(tmp_path, eicu_demo_raw):
    whole = gz(text(eicu_demo_raw, "medication"))
    raw = copy(eicu_demo_raw, tmp_path / "raw", "medication", whole[: len(whole) // 2])
    expect_named_error(raw, r"medication\.csv\.gz: not a complete compressed file \(cut off or corrupt\)")


def test_not_gzip(tmp_path, eicu_demo_raw):
    raw = copy(eicu_demo_raw, tmp_path / "raw", "treatment", text(eicu_demo_raw, "treatment").encode())
    expect_named_error(raw, r"treatment\.csv\.gz: not a complete compressed file")


@pytest.mark.parametrize("content", [b"", gz("")], ids=["zero bytes", "empty gzip"])
def test_empty_file(tmp_path, eicu_demo_raw, content):
    raw = copy(eicu_demo_raw, tmp_path / "raw", "diagnosis", content)
    expect_named_error(raw, r"diagnosis\.csv\.gz: empty file \(no header row\)")


def test_header_only(tmp_path, eicu_demo_raw):
    header = text(eicu_demo_raw, "treatment").split("\n", 1)[0] + "\n"
    raw = copy(eicu_demo_raw, tmp_path / "raw", "treatment", gz(header))
    expect_named_error(raw, r"treatment\.csv\.gz: a header but no data rows")


def test_missing_column(tmp_path, eicu_demo_raw):
    table = frame(eicu_demo_raw, "lab").drop(columns="labresultoffset")
    raw = copy(eicu_demo_raw, tmp_path / "raw", "lab", gz(csv_text(table)))
    expect_named_error(raw, r"lab\.csv\.gz: missing column 'labresultoffset'")


def test_invalid_utf8_names_the_column(tmp_path, eicu_demo_raw, clean):
    table, row = cohort_row(eicu_demo_raw, "diagnosis", clean)
    table.loc[row, "diagnosisstring"] = "PLACEHOLDER"
    data = csv_text(table).encode().replace(b"PLACEHOLDER", SECRET.encode() + b"\xff\xfe")
    raw = copy(eicu_demo_raw, tmp_path / "raw", "diagnosis", gz(data))
    expect_named_error(raw, r"diagnosis\.csv\.gz: not valid UTF-8 text in column 'diagnosisstring'")


def test_invalid_utf8_in_the_header(tmp_path, eicu_demo_raw):
    data = text(eicu_demo_raw, "treatment").encode().replace(b"treatmentstring", b"treatment\xffstring", 1)
    raw = copy(eicu_demo_raw, tmp_path / "raw", "treatment", gz(data))
    expect_named_error(raw, r"treatment\.csv\.gz: not valid UTF-8 text")


def test_row_with_missing_fields(tmp_path, eicu_demo_raw):
    lines = text(eicu_demo_raw, "treatment").splitlines(keepends=True)
    lines.insert(20, f"1,{SECRET}\n")  # a row cut off after its second field
    raw = copy(eicu_demo_raw, tmp_path / "raw", "treatment", gz("".join(lines)))
    expect_named_error(raw, r"treatment\.csv\.gz: a row has 2 fields where the header has 5")


# --- a counted quarantine ---------------------------------------------------------------


def test_non_numeric_stay_id_is_quarantined(tmp_path, eicu_demo_raw, clean):
    content, row, _ = edited(eicu_demo_raw, "treatment", clean, "patientunitstayid", SECRET)
    tables = build(copy(eicu_demo_raw, tmp_path / "raw", "treatment", content), CONFIG)
    assert rows_of(tables, "treatment.csv.gz", "treatmentid or patientunitstayid missing or not a whole number") == {row}
    assert len(tables.events["treatment"]) == len(clean.events["treatment"]) - 1
    balanced(tables)


def test_non_numeric_and_blank_offsets_are_quarantined(tmp_path, eicu_demo_raw, clean):
    content, row, stay = edited(eicu_demo_raw, "lab", clean, "labresultoffset", SECRET)
    tables = build(copy(eicu_demo_raw, tmp_path / "lab", "lab", content), CONFIG)
    assert rows_of(tables, "lab.csv.gz", "labresultoffset missing or not a number") == {row}
    balanced(tables)
    content, row, stay = edited(eicu_demo_raw, "diagnosis", clean, "diagnosisoffset", "")
    tables = build(copy(eicu_demo_raw, tmp_path / "diagnosis", "diagnosis", content), CONFIG)
    assert rows_of(tables, "diagnosis.csv.gz", "diagnosisoffset missing or not a number") == {row}
    assert not any(events["time_hours"].isna().any() for events in tables.events.values())
    assert (tables.events["diagnosis"]["stay_id"] == stay).sum() == (clean.events["diagnosis"]["stay_id"] == stay).sum() - 1
    balanced(tables)


def test_non_numeric_patient_offset_and_blank_uniquepid_quarantine_the_stay(tmp_path, eicu_demo_raw, clean):
    for column, value in (("hospitaldischargeoffset", SECRET), ("uniquepid", "")):
        table = frame(eicu_demo_raw, "patient")
        row = int(np.flatnonzero(table["patientunitstayid"].astype(int).isin(clean.stays["stay_id"]))[0])
        stay = int(table.loc[row, "patientunitstayid"])
        table.loc[row, column] = value
        tables = build(copy(eicu_demo_raw, tmp_path / column, "patient", gz(csv_text(table))), CONFIG)
        reasons = {r for (t, r) in zip(tables.quarantine.frame()["table"], tables.quarantine.frame()["reason"])
                   if t == "patient.csv.gz" and column in r}
        assert len(reasons) == 1 and rows_of(tables, "patient.csv.gz", reasons.pop()) == {row}
        assert stay not in set(tables.stays["stay_id"]) and len(tables.stays) == len(clean.stays) - 1
        assert tables.stays["patient_id"].notna().all()
        balanced(tables)


def test_non_numeric_aps_value_is_missing_and_counted(tmp_path, eicu_demo_raw, clean):
    content, row, stay = edited(eicu_demo_raw, "apacheApsVar", clean, "heartrate", SECRET)
    tables = build(copy(eicu_demo_raw, tmp_path / "raw", "apacheApsVar", content), CONFIG)
    entries = tables.quarantine.frame()
    entry = entries[entries["reason"] == "heartrate not a number (read as not recorded)"]
    assert entry["row"].tolist() == [row] and entry["field_only"].all()  # the row is used, the field missing
    aps = tables.static["aps"].set_index("stay_id")
    assert np.isnan(aps.loc[stay, "aps:heartrate"]) and aps.loc[stay].notna().sum() > 5
    balanced(tables)


def test_aps_not_recorded_markers_are_missing(eicu_demo_raw, clean):
    raw = frame(eicu_demo_raw, "apacheApsVar")
    raw = raw[raw["patientunitstayid"].astype(int).isin(clean.stays["stay_id"])].set_index("patientunitstayid")
    aps = clean.static["aps"].set_index("stay_id")
    values = aps[[f"aps:{c}" for c in et.APACHE_APS_VARIABLES]].to_numpy()
    markers = raw.loc[aps.index.astype(str), list(et.APACHE_APS_VARIABLES)].astype(float).to_numpy() == -1
    assert markers.sum() > 100 and not (values == -1).any()
    assert np.isnan(values[markers]).all() and not np.isnan(values[~markers]).any()


def test_blank_terms_are_quarantined_and_counted(eicu_demo_raw, clean):
    medication = frame(eicu_demo_raw, "medication")
    cohort = medication["patientunitstayid"].astype(int).isin(clean.stays["stay_id"])
    blank = medication["drugname"].str.strip().eq("").to_numpy()
    assert blank.mean() > 0.35  # about 40% of the demo's medication rows name no drug
    quarantined = rows_of(clean, "medication.csv.gz", "drugname blank")
    assert quarantined <= set(np.flatnonzero(blank))  # (rows of stays that left the cohort later, too)
    assert quarantined & set(np.flatnonzero(cohort)) == set(np.flatnonzero(blank & cohort.to_numpy()))
    assert len(clean.events["medication"]) == int((cohort & ~blank).sum())


@pytest.mark.parametrize("stays_per_part", [None, 50])
def test_duplicate_rows_are_judged_by_the_tables_key(tmp_path, eicu_demo_raw, clean, stays_per_part, monkeypatch):
    """An exact repeat of a labid is quarantined, not summed twice; two different rows claiming one
    labid are both quarantined (which is right is unknown), also when they name stays whose events
    go to different parts on disk (`event_parts`, parts of 50 of the 161 stays); a distinct lab
    result (its own labid) of the same name at the same time is summed (paper A.1.3)."""
    from clintraj.data import event_parts

    lab = frame(eicu_demo_raw, "lab")
    table, row = cohort_row(eicu_demo_raw, "lab", clean)
    stay, name = int(table.loc[row, "patientunitstayid"]), table.loc[row, "labname"]
    same = lab.iloc[[row]]
    used = clean.events["lab"]
    other_name = used.loc[(used["stay_id"] == stay) & (used["name"] != name), "name"].value_counts().index[0]
    conflicting = lab[(lab["patientunitstayid"] == str(stay)) & (lab["labname"] == other_name)
                      & pd.to_numeric(lab["labresult"], errors="coerce").notna()].head(1)
    distinct = same.assign(labid=str(lab["labid"].astype(int).max() + 1), labresult="1000")
    other = conflicting.assign(labresult="999999")
    cohort = clean.stays["stay_id"]
    victim = lab.loc[[int(used.loc[used["stay_id"] == cohort.iloc[0], "row"].iloc[0])]]  # the first stay's
    far = int(cohort.iloc[-1])  # the last stay: another part when parts hold 50 stays
    elsewhere = victim.assign(patientunitstayid=str(far))  # its labid, another stay
    if stays_per_part:
        from clintraj import runtime

        monkeypatch.setattr(runtime, "ray_is_up", lambda: False)  # readers here, where the patch holds
        monkeypatch.setattr(event_parts, "STAYS_PER_PART", stays_per_part)
        part_of = event_parts.stay_parts(cohort.to_numpy())
        assert len(cohort) > 3 * stays_per_part and part_of(np.array([cohort.iloc[0]]))[0] != part_of(np.array([far]))[0]
    n = len(lab)
    content = gz(csv_text(pd.concat([lab, same, other, distinct, elsewhere])))
    tables = build(copy(eicu_demo_raw, tmp_path / "raw", "lab", content), CONFIG)
    assert rows_of(tables, "lab.csv.gz", "duplicate row (labid repeated)") == {n}
    assert rows_of(tables, "lab.csv.gz", "labid repeated with different content") == {
        conflicting.index[0], n + 1, victim.index[0], n + 3}
    before = clean.events["lab"].groupby(["stay_id", "name"])["value"].sum()
    after = tables.events["lab"].groupby(["stay_id", "name"])["value"].sum()
    assert after[stay, name] == pytest.approx(before[stay, name] + 1000.0)  # the distinct result, added once
    assert after.get((stay, other_name), 0.0) == pytest.approx(
        before[stay, other_name] - float(conflicting["labresult"].iloc[0]))
    victim_name = victim["labname"].iloc[0]
    assert after.get((int(cohort.iloc[0]), victim_name), 0.0) == pytest.approx(
        before[int(cohort.iloc[0]), victim_name] - float(victim["labresult"].iloc[0]))
    assert after.get((far, victim_name), 0.0) == pytest.approx(before.get((far, victim_name), 0.0))
    balanced(tables)


def test_text_codes_agree_across_chunks():
    """A long table's names are held as codes: one per distinct text whatever chunk it is read in,
    blanks kept apart (a blank name is quarantined by its reader, not merged), null missing."""
    import pyarrow as pa

    from clintraj.data.rawio import TextCodes

    codes = TextCodes()
    first = codes.encode(pa.array(["sodium", "BUN", None, "sodium", " "], type=pa.string()))
    second = codes.encode(pa.array(["", "BUN", "albumin", "sodium"], type=pa.string()))
    names = codes.categorical(np.concatenate([first, second]))
    assert list(names.categories) == ["", " ", "BUN", "albumin", "sodium"]  # sorted as Python sorts text
    assert names.tolist()[:2] + names.tolist()[3:] == ["sodium", "BUN", "sodium", " ", "", "BUN", "albumin", "sodium"]
    assert pd.isna(names[2])
    assert first[0] == first[3] == second[3] and first[1] == second[1]
