"""Synthetic MIMIC-IV + MIMIC-CXR-JPG + MIMIC-IV-Note: layout, determinism, signal."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from clintraj.data.mimic import tables as mt
from clintraj.data.synthetic import generate
from clintraj.data.synthetic import mimic
from clintraj.data.synthetic.latent import PHENOTYPES

SHARED = Path(__file__).parents[1] / "../shared/data"
DEMO = SHARED / "mimic-iv-demo-2.2"
MEDFUSE_YAML = SHARED / "mimic3-benchmarks-resources/medfuse-mimic4/icd_9_10_definitions_2.yaml"
DAY = pd.Timedelta(days=1)

# icu/chartevents is not in the shared demo copy; column list from the MIMIC-IV docs.
CHARTEVENTS_DOC_COLUMNS = [
    "subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime",
    "itemid", "value", "valuenum", "valueuom", "warning",
]
CXR_METADATA_COLUMNS = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
NOTE_COLUMNS = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("mimic_small")
    return out, generate("mimic", out, n_stays=200, seed=7, progress=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mimic_signal")
    generate("mimic", out, n_stays=1500, seed=11, progress=False)
    return out


def read(root: Path, schema: mt.TableSchema) -> pd.DataFrame:
    return pd.read_csv(root / schema.path, **schema.read_csv_kwargs())


def inferred_kind(column: pd.Series) -> str:
    """'i', 'f' or 'O' as pandas infers it; an int column with blanks reads as float."""
    if pd.api.types.is_integer_dtype(column):
        return "i"
    if pd.api.types.is_float_dtype(column):
        values = column.dropna()
        return "i" if column.isna().any() and (values == values.round()).all() else "f"
    return "O"


SCHEMA_KIND = {mt.INT: "i", mt.FLOAT: "f", mt.STRING: "O", mt.DATETIME: "O"}


# --- layout ---------------------------------------------------------------------------


def test_hosp_and_icu_headers_and_dtypes_match_the_real_demo(small):
    if not DEMO.is_dir():
        pytest.skip(f"real MIMIC-IV demo not found at {DEMO}")
    out, _ = small
    compared = 0
    for schema in mt.MIMIC_TABLES:
        real_path = DEMO / schema.path
        if not schema.path.startswith(("hosp/", "icu/")) or not real_path.exists():
            continue
        real, ours = pd.read_csv(real_path), pd.read_csv(out / schema.path)
        assert list(ours.columns) == list(real.columns) == list(schema.columns), schema.path
        for column in real.columns:
            if real[column].notna().any():
                assert inferred_kind(ours[column]) == inferred_kind(real[column]), f"{schema.path}:{column}"
        compared += 1
    assert compared == 5  # patients, admissions, diagnoses_icd, labevents, icustays


def test_every_table_follows_its_documented_schema(small):
    out, _ = small
    assert list(mt.CHARTEVENTS.columns) == CHARTEVENTS_DOC_COLUMNS
    assert list(mt.CXR_METADATA.columns) == CXR_METADATA_COLUMNS
    assert list(mt.DISCHARGE.columns) == list(mt.RADIOLOGY.columns) == NOTE_COLUMNS
    for schema in mt.MIMIC_TABLES:
        frame = pd.read_csv(out / schema.path)
        assert list(frame.columns) == list(schema.columns), schema.path
        compared = 0
        for column, dtype in schema.dtypes.items():
            if frame[column].notna().any():
                assert inferred_kind(frame[column]) == SCHEMA_KIND[dtype], f"{schema.path}:{column}"
                compared += 1
        assert compared > 0, f"{schema.path}: no column with a value to compare"
        assert len(read(out, schema)) == len(frame)  # the dtypes of data.mimic.tables parse every column


def test_renderings_match_mimic(small):
    out, _ = small
    datetime_re = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
    checked = {mt.INT: 0, mt.DATETIME: 0}  # values checked of each kind
    for schema in mt.MIMIC_TABLES:
        raw = pd.read_csv(out / schema.path, dtype=str, keep_default_na=False)
        for column, dtype in schema.dtypes.items():
            values = raw[column][raw[column] != ""]
            if dtype == mt.INT:
                assert values.str.fullmatch(r"-?\d+").all(), f"{schema.path}:{column}"
                checked[dtype] += len(values)
            elif dtype == mt.DATETIME and column != "dod":
                assert values.map(lambda v: bool(datetime_re.match(v))).all(), f"{schema.path}:{column}"
                assert values.str[:4].astype(int).between(2110, 2210).all(), f"{schema.path}:{column}"
                checked[dtype] += len(values)
    assert min(checked.values()) > 0, checked
    dod = pd.read_csv(out / mt.PATIENTS.path, dtype=str)["dod"].dropna()
    assert len(dod) and dod.str.fullmatch(r"\d{4}-\d\d-\d\d").all()
    chart = pd.read_csv(out / mt.CHARTEVENTS.path, dtype=str, keep_default_na=False)
    numbers = chart["valuenum"][chart["valuenum"] != ""]
    assert not numbers.str.endswith(".0").any()
    with open(out / mt.CHARTEVENTS.path, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip


def test_ids_dates_and_labels_are_consistent(small):
    out, _ = small
    patients, admissions = read(out, mt.PATIENTS), read(out, mt.ADMISSIONS)
    stays = read(out, mt.ICUSTAYS)
    assert patients["subject_id"].is_unique and admissions["hadm_id"].is_unique and stays["stay_id"].is_unique
    assert patients["subject_id"].between(10_000_000, 99_999_999).all()
    assert admissions["hadm_id"].between(20_000_000, 29_999_999).all()
    assert stays["stay_id"].between(30_000_000, 39_999_999).all()
    assert set(admissions["subject_id"]) == set(patients["subject_id"])
    assert admissions["subject_id"].value_counts().max() > 1  # readmissions get their own hadm_id
    merged = stays.merge(admissions, on=["subject_id", "hadm_id"])
    assert len(merged) == len(stays)
    assert (merged["admittime"] <= merged["intime"]).all() and (merged["outtime"] <= merged["dischtime"]).all()
    assert np.allclose(merged["los"], (merged["outtime"] - merged["intime"]) / DAY, atol=1e-6)
    died = merged["hospital_expire_flag"] == 1
    assert 0 < died.sum() < len(merged)
    assert merged["deathtime"].notna().eq(died).all()
    assert (merged.loc[died, "discharge_location"] == "DIED").all()
    with_dod = merged[died].merge(patients, on="subject_id")
    assert (with_dod["dod"] == with_dod["deathtime"].dt.normalize()).all()
    assert patients["anchor_year_group"].isin(["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019"]).all()
    assert patients["anchor_age"].between(18, 91).all()
    assert set(read(out, mt.DIAGNOSES_ICD)["icd_version"]) == {9, 10}


def test_row_counts_are_returned(small):
    out, counts = small
    assert set(counts) == {schema.path for schema in mt.MIMIC_TABLES}
    for schema in mt.MIMIC_TABLES:
        assert counts[schema.path] == len(pd.read_csv(out / schema.path)), schema.path
    assert counts[mt.ICUSTAYS.path] == counts[mt.ADMISSIONS.path] == 200


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate("mimic", tmp_path / name, n_stays=60, seed=seed, chunk_stays=25, progress=False)
    first, second, other = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert first == second
    assert any(path.endswith(".jpg") for path in first)
    assert first[mt.CHARTEVENTS.path] != other[mt.CHARTEVENTS.path]


def test_notes_padded_to_real_length_change_nothing_else(tmp_path):
    """`note_chars` lengthens each note of a modality (memory at real note sizes, bench/scale.py)
    and leaves every other table, and each note's own text before the filler, as it was."""
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    generate("mimic", tmp_path / "short", n_stays=40, seed=3, progress=False)
    generate("mimic", tmp_path / "long", n_stays=40, seed=3, progress=False, note_chars={"discharge_note": 3000})
    short, long = files(tmp_path / "short"), files(tmp_path / "long")
    changed = {path for path in short if short[path] != long[path]}
    assert changed == {mt.DISCHARGE.path}
    before, after = (pd.read_csv(tmp_path / name / mt.DISCHARGE.path) for name in ("short", "long"))
    assert len(before) == len(after) > 5 and (before["text"].str.len() < 3000).all()
    assert (after["text"].str.len() == 3000).all()
    assert all(padded.startswith(text + "\n\n") for text, padded in zip(before["text"], after["text"]))
    assert before.drop(columns="text").equals(after.drop(columns="text"))


def test_every_cxr_metadata_row_has_a_jpeg(small):
    out, _ = small
    meta = read(out, mt.CXR_METADATA)
    assert set(meta["ViewPosition"]) >= {"AP", "PA", "LATERAL"}
    assert meta["dicom_id"].is_unique
    assert ((meta["StudyDate"] // 10_000).between(2110, 2210)).all()
    for row in meta.itertuples():
        path = out / "mimic-cxr-jpg" / mt.cxr_image_path(row.subject_id, row.study_id, row.dicom_id)
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "L"
            assert image.size == (row.Columns, row.Rows)
    assert len(list((out / "mimic-cxr-jpg").rglob("*.jpg"))) == len(meta)


def test_cxr_filter_has_work_to_do(small):
    out, _ = small
    images = cxr_with_stays(out)
    assert (~images["inside"] & (images["ViewPosition"] == "AP")).any()  # ED / ward AP films
    assert (images["inside"] & (images["ViewPosition"] != "AP")).any()  # PA / lateral during the stay
    assert images[images["inside"] & (images["ViewPosition"] == "AP")].groupby("stay_id").size().max() > 1


def test_notes_carry_deidentification_artefacts(small):
    out, _ = small
    discharge, radiology = read(out, mt.DISCHARGE), read(out, mt.RADIOLOGY)
    assert (discharge["note_type"] == "DS").all() and (radiology["note_type"] == "RR").all()
    assert discharge["note_id"].str.fullmatch(r"\d{8}-DS-\d+").all() and radiology["note_id"].is_unique
    expected_id = discharge["subject_id"].astype(str) + "-DS-" + discharge["note_seq"].astype(str)
    assert (discharge["note_id"] == expected_id).all()
    text = discharge["text"]
    for artefact in ("Name:  ___", "Unit No:   ___", "Admission Date:  ___", "\n"):
        assert text.str.contains(artefact, regex=False).all(), artefact
    assert text.str.contains("\x95", regex=False).mean() > 0.5  # stray bullets, as in the real notes
    assert radiology["text"].str.contains("___", regex=False).all()
    assert radiology["hadm_id"].isna().any() and radiology["hadm_id"].notna().any()
    raw = (out / mt.DISCHARGE.path).read_bytes()
    assert b',"' in __import__("gzip").decompress(raw)  # multi-line text is quoted


# --- missingness ----------------------------------------------------------------------


def test_absent_modalities_leave_no_rows(tmp_path):
    absent = {"time_series": 0.0, "cxr": 0.0, "discharge_note": 0.0, "radiology_note": 0.0, "demographics": 0.0}
    counts = generate("mimic", tmp_path, n_stays=80, seed=5, presence=absent, progress=False)
    assert counts[mt.CHARTEVENTS.path] == counts[mt.LABEVENTS.path] == counts[mt.DISCHARGE.path] == 0
    radiology = read(tmp_path, mt.RADIOLOGY)
    assert radiology["hadm_id"].isna().all()  # only outpatient reports remain
    images = cxr_with_stays(tmp_path)
    assert not (images["inside"] & (images["ViewPosition"] == "AP")).any()
    admissions = read(tmp_path, mt.ADMISSIONS)
    assert admissions[["insurance", "language", "marital_status", "race"]].isna().all().all()
    with pytest.raises(ValueError):
        generate("mimic", tmp_path / "x", n_stays=5, seed=0, presence={"ecg": 1.0}, progress=False)


def test_default_missingness_is_sparse(cohort):
    stays = read(cohort, mt.ICUSTAYS)
    chart = read(cohort, mt.CHARTEVENTS)
    images = cxr_with_stays(cohort)
    notes = {
        "discharge": set(read(cohort, mt.DISCHARGE)["hadm_id"]),
        "radiology": set(read(cohort, mt.RADIOLOGY)["hadm_id"].dropna()),
    }
    has = pd.DataFrame(
        {
            "time_series": stays["stay_id"].isin(chart["stay_id"]),
            "cxr": stays["stay_id"].isin(images.loc[images["inside"] & (images["ViewPosition"] == "AP"), "stay_id"]),
            "discharge": stays["hadm_id"].isin(notes["discharge"]),
            "radiology": stays["hadm_id"].isin(notes["radiology"]),
        }
    )
    for name, p in (("time_series", 0.75), ("cxr", 0.30), ("discharge", 0.45), ("radiology", 0.40)):
        assert abs(has[name].mean() - p) < 0.05, name
    n_modalities = has.sum(axis=1)
    assert (n_modalities == 1).mean() > 0.2 and (n_modalities == 4).mean() < 0.1


# --- phenotypes -----------------------------------------------------------------------


def test_phenotype_codes_belong_to_their_ccs_group(small):
    if not MEDFUSE_YAML.exists():
        pytest.skip(f"MedFuse phenotype definitions not found at {MEDFUSE_YAML}")
    import yaml

    definitions = yaml.safe_load(MEDFUSE_YAML.read_text())
    groups = {name: set(d["codes"]) for name, d in definitions.items() if d.get("use_in_benchmark")}
    assert set(groups) == set(PHENOTYPES) == set(mimic.PHENOTYPE_ICD_CODES)
    in_any_group = set().union(*groups.values())
    for name, by_version in mimic.PHENOTYPE_ICD_CODES.items():
        for version, codes in by_version.items():
            assert set(codes) <= groups[name], (name, version)
            assert all(code[0].isalpha() == (version == 10) for code in codes if not code.startswith(("V", "E")))
    fillers = {code for codes in mimic.FILLER_ICD_CODES.values() for code in codes}
    assert not fillers & in_any_group
    out, _ = small
    written = read(out, mt.DIAGNOSES_ICD)
    known = fillers | {c for by_version in mimic.PHENOTYPE_ICD_CODES.values() for cs in by_version.values() for c in cs}
    assert set(written["icd_code"]) <= known
    assert "0389" in known and written["icd_code"].str.len().min() >= 3  # strings, leading zeros kept


# --- planted signal -------------------------------------------------------------------


def stay_features(root: Path) -> pd.DataFrame:
    """Mean of each of the 17 variables per stay (inside intime..outtime) from the raw
    chartevents + labevents, with missing indicators; categorical answers via the maps."""
    stays = read(root, mt.ICUSTAYS)
    chart = read(root, mt.CHARTEVENTS)
    labs = read(root, mt.LABEVENTS).merge(stays[["hadm_id", "stay_id", "intime", "outtime"]], on="hadm_id")
    labs = labs[(labs["charttime"] >= labs["intime"]) & (labs["charttime"] <= labs["outtime"])]
    columns = ["stay_id", "itemid", "value", "valuenum"]
    events = pd.concat([chart[columns], labs[columns]])
    events = events[events["itemid"].isin(list(mt.ITEMID_TO_VARIABLE))]
    number = events["valuenum"].astype(float)
    crr = events["value"].map(mt.CAPILLARY_REFILL_TEXT_TO_NUMERIC)
    number = number.where(crr.isna(), crr)
    itemid = events["itemid"]
    number = number.where(~itemid.isin(mt.FAHRENHEIT_ITEMIDS), (number - 32) / 1.8)
    number = number.where(~itemid.isin(mt.POUND_ITEMIDS), number / 2.20462)
    number = number.where(~itemid.isin(mt.INCH_ITEMIDS), number * 2.54)
    frame = pd.DataFrame({"stay_id": events["stay_id"], "variable": itemid.map(mt.ITEMID_TO_VARIABLE), "x": number})
    means = frame.pivot_table(index="stay_id", columns="variable", values="x", aggfunc="mean")
    measured = [v for v in mt.VARIABLES if mt.CHART_ITEMIDS[v] or v in mt.LAB_ITEMIDS]  # all but GCS total
    means = means.reindex(index=stays["stay_id"], columns=measured)
    missing = means.isna().add_suffix(" missing").astype(float)
    return pd.concat([means.fillna(means.mean()), missing], axis=1).fillna(0.0)


def labelled(root: Path) -> pd.DataFrame:
    stays = read(root, mt.ICUSTAYS)
    admissions = read(root, mt.ADMISSIONS)
    patients = read(root, mt.PATIENTS)
    frame = stays.merge(admissions, on=["subject_id", "hadm_id"]).merge(patients, on="subject_id")
    frame["age"] = frame["anchor_age"] + frame["admittime"].dt.year - frame["anchor_year"]
    return frame.set_index("stay_id")


def split_auroc(features: pd.DataFrame, label: pd.Series) -> float:
    half = len(features) // 2
    x = StandardScaler().fit(features.iloc[:half]).transform(features)
    model = LogisticRegression(max_iter=2000, C=0.5).fit(x[:half], label.iloc[:half])
    return roc_auc_score(label.iloc[half:], model.predict_proba(x[half:])[:, 1])


def test_time_series_predict_mortality(cohort):
    stays = labelled(cohort)
    features = stay_features(cohort)
    label = stays.loc[features.index, "hospital_expire_flag"]
    assert 0.05 < label.mean() < 0.3
    assert split_auroc(features, label) >= 0.75


def test_missing_time_series_costs_accuracy(cohort):
    stays = labelled(cohort)
    features = stay_features(cohort)
    has_series = features["Heart Rate missing"] == 0
    demographics = pd.get_dummies(stays[["age", "gender", "insurance", "race", "marital_status"]], dtype=float)
    label = stays["hospital_expire_flag"]
    with_series = split_auroc(features[has_series], label[features.index[has_series]])
    demographics_only = split_auroc(demographics, label)
    assert with_series > demographics_only + 0.1
    assert demographics_only > 0.52  # age carries a little of the severity


def test_cxr_pixels_follow_the_respiratory_state(cohort):
    images = cxr_with_stays(cohort)
    images = images[images["inside"] & (images["ViewPosition"] == "AP")]
    brightness = {
        row.stay_id: np.asarray(Image.open(cohort / "mimic-cxr-jpg" / row.path), dtype=float).mean()
        for row in images.itertuples()
    }
    pixel_mean = pd.Series(brightness).groupby(level=0).mean()
    diagnoses = read(cohort, mt.DIAGNOSES_ICD)
    respiratory = [
        "Pneumonia (except that caused by tuberculosis or sexually transmitted disease)",
        "Respiratory failure; insufficiency; arrest (adult)",
    ]
    codes = {c for name in respiratory for cs in mimic.PHENOTYPE_ICD_CODES[name].values() for c in cs}
    sick = set(diagnoses.loc[diagnoses["icd_code"].isin(codes), "hadm_id"])
    stays = read(cohort, mt.ICUSTAYS).set_index("stay_id")
    label = stays.loc[pixel_mean.index, "hadm_id"].isin(sick)
    assert 0.1 < label.mean() < 0.9
    assert roc_auc_score(label, pixel_mean) > 0.7


def cxr_with_stays(root: Path) -> pd.DataFrame:
    """CXR metadata joined to the subject's ICU stays, flagging images strictly inside one."""
    meta = read(root, mt.CXR_METADATA)
    stays = read(root, mt.ICUSTAYS)
    clock = meta["StudyTime"].astype(int).astype(str).str.zfill(6)
    meta["time"] = pd.to_datetime(meta["StudyDate"].astype(str) + clock, format="%Y%m%d%H%M%S")
    ids = zip(meta["subject_id"], meta["study_id"], meta["dicom_id"])
    meta["path"] = [mt.cxr_image_path(subject, study, dicom) for subject, study, dicom in ids]
    joined = meta.merge(stays[["subject_id", "stay_id", "intime", "outtime"]], on="subject_id")
    joined["inside"] = (joined["time"] > joined["intime"]) & (joined["time"] < joined["outtime"])
    inside = joined[joined["inside"]]
    outside = meta[~meta["dicom_id"].isin(inside["dicom_id"])].assign(inside=False, stay_id=pd.NA)
    return pd.concat([inside, outside], ignore_index=True)
