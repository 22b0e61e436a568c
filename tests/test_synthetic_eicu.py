"""The synthetic eICU generator: real layout, determinism, density, and learnable labels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clintraj.data import eicu_tables
from clintraj.data.synthetic import generate
from clintraj.data.synthetic.eicu import DEFAULT_PRESENCE, MODALITIES, vocabulary

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEMO = SHARED_DATA / "eicu-demo-2.0.1"
REAL_FILES = {
    **{table.name: DEMO / table.file for table in eicu_tables.TABLES},
    # lab.csv.gz is not in the shared demo copy; a re-serialised subset keeps its header.
    "lab": DEMO / "_partial_substitutes" / "lab.pyhealth_100patient_subset.csv",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eicu_small")
    generate("eicu", out, n_stays=400, seed=11, chunk_stays=150, progress=False)
    return out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eicu_cohort")
    generate("eicu", out, n_stays=1500, seed=5, progress=False)
    return out


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, low_memory=False)


def _kind(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "bool"
    if pd.api.types.is_integer_dtype(column):
        return "int"
    if pd.api.types.is_float_dtype(column):
        return "float"
    return "text"


# ------------------------------------------------------------------------ layout


@pytest.mark.parametrize("table", eicu_tables.TABLES, ids=lambda t: t.name)
def test_header_and_column_kinds_match_the_real_files(small, table):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real eICU demo files not available ({SHARED_DATA} is absent)")
    real = _read(REAL_FILES[table.name])
    synthetic = _read(small / table.file)
    assert list(synthetic.columns) == list(real.columns) == list(table.columns)
    compared = 0
    for name in real.columns:
        if real[name].notna().any():
            assert synthetic[name].notna().any(), f"{table.name}.{name} is empty"
            assert _kind(synthetic[name]) == _kind(real[name]), f"{table.name}.{name}"
            compared += 1
    assert compared > 0, f"{table.name}: no column of the real file holds a value to compare"


@pytest.mark.parametrize("table", eicu_tables.TABLES, ids=lambda t: t.name)
def test_declared_dtypes_read_the_files(small, table):
    frame = pd.read_csv(small / table.file, dtype=dict(table.dtypes))
    assert tuple(frame.columns) == table.columns


def test_value_formats(small):
    out = small
    patient = _read(out / "patient.csv.gz")
    assert patient["patientunitstayid"].is_unique
    assert patient["patientunitstayid"].between(100_000, 9_999_999).all()
    assert patient["uniquepid"].str.fullmatch(r"\d{3}-\d+").all()
    assert set(patient["gender"].dropna()) <= {"Male", "Female"}
    assert set(patient["hospitaldischargestatus"].dropna()) == {"Alive", "Expired"}
    assert (patient["hospitaladmitoffset"] <= 0).all()
    assert (patient["hospitaldischargeoffset"] >= patient["unitdischargeoffset"]).all()
    for column in ("hospitaladmittime24", "hospitaldischargetime24", "unitadmittime24", "unitdischargetime24"):
        assert patient[column].str.fullmatch(r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d").all()
    raw_patient = pd.read_csv(out / "patient.csv.gz", dtype=str)
    assert raw_patient["admissionheight"].dropna().str.fullmatch(r"\d+\.\d\d").all()

    lab = pd.read_csv(out / "lab.csv.gz", dtype=str)
    assert not lab["labresult"].dropna().str.endswith(".0").any()  # "31", not "31.0"
    assert set(lab["labname"]) <= set(vocabulary.LABS)
    aps = _read(out / "apacheApsVar.csv.gz")
    assert aps["patientunitstayid"].is_unique
    measured = list(eicu_tables.APACHE_APS_VARIABLES[3:])  # intubated, vent, dialysis are always 0/1
    assert (aps[measured] == eicu_tables.APS_UNRECORDED).any().all()


def test_stays_of_one_patient_and_one_hospitalization_agree(small):
    patient = _read(small / "patient.csv.gz")
    assert patient["uniquepid"].duplicated().any()
    assert (patient["unitvisitnumber"] > 1).any()
    hospitalization = patient.groupby("patienthealthsystemstayid")
    assert (hospitalization["uniquepid"].nunique() == 1).all()
    assert (hospitalization["hospitaldischargestatus"].nunique() <= 1).all()
    hospital_minutes = patient["hospitaldischargeoffset"] - patient["hospitaladmitoffset"]
    assert (hospital_minutes.groupby(patient["patienthealthsystemstayid"]).nunique() == 1).all()


# ------------------------------------------------------------------- determinism


def _digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.csv.gz"))}


def test_same_seed_same_bytes_and_counts_match_files(tmp_path):
    first = generate("eicu", tmp_path / "a", n_stays=150, seed=3, chunk_stays=40, progress=False)
    second = generate("eicu", tmp_path / "b", n_stays=150, seed=3, chunk_stays=40, progress=False)
    other = generate("eicu", tmp_path / "c", n_stays=150, seed=4, chunk_stays=40, progress=False)
    assert first == second
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")
    assert set(first) == {table.file for table in eicu_tables.TABLES}
    for file, rows in first.items():
        assert len(_read(tmp_path / "a" / file)) == rows
    assert first["patient.csv.gz"] == 150 and other["patient.csv.gz"] == 150


def test_presence_profile(tmp_path):
    counts = generate("eicu", tmp_path, n_stays=100, seed=1, presence={"lab": 0.0, "aps": 1.0}, progress=False)
    assert counts["lab.csv.gz"] == 0 and counts["apacheApsVar.csv.gz"] == 100
    assert list(_read(tmp_path / "lab.csv.gz").columns) == list(eicu_tables.LAB.columns)
    with pytest.raises(ValueError, match="unknown modalities"):
        generate("eicu", tmp_path, n_stays=10, seed=1, presence={"notes": 0.5}, progress=False)


def test_lab_draws_scale_the_lab_rows(tmp_path):
    """lab_draws=3.8 gives about the real eICU's 195 lab rows per stay (39 M over 200,859 stays),
    three times the default; the stays (patient table, drawn before the labs) are the same."""
    default = generate("eicu", tmp_path / "a", n_stays=400, seed=3, progress=False)
    dense = generate("eicu", tmp_path / "b", n_stays=400, seed=3, progress=False, lab_draws=3.8)
    assert 55 <= default["lab.csv.gz"] / 400 <= 75
    assert 170 <= dense["lab.csv.gz"] / 400 <= 215
    assert _digests(tmp_path / "a")["patient.csv.gz"] == _digests(tmp_path / "b")["patient.csv.gz"]


# ----------------------------------------------------------- density and cohort


def _present(folder: Path) -> pd.DataFrame:
    """Per stay, whether each modality has any data in the raw files."""
    patient = _read(folder / "patient.csv.gz").set_index("patientunitstayid")
    present = pd.DataFrame(index=patient.index)
    present["demographics"] = patient[["gender", "age", "ethnicity"]].notna().any(axis=1)
    for modality, table in (("diagnosis", "diagnosis"), ("treatment", "treatment"), ("medication", "medication"),
                            ("lab", "lab"), ("aps", "apacheApsVar")):  # fmt: skip
        present[modality] = patient.index.isin(_read(folder / f"{table}.csv.gz")["patientunitstayid"])
    return present


def test_default_density_and_cohort_filter_material(cohort):
    present = _present(cohort)
    assert list(present.columns) == list(MODALITIES) == list(DEFAULT_PRESENCE)
    assert present.all(axis=1).mean() >= 0.75
    assert (~present["lab"]).any(), "some stays must have no lab rows"

    patient = _read(cohort / "patient.csv.gz")
    age = patient["age"]
    assert (age == "> 89").any() and age.isna().any()
    assert (pd.to_numeric(age, errors="coerce") < 18).any()
    hours = (patient["hospitaldischargeoffset"] - patient["hospitaladmitoffset"]) / 60
    assert (hours < 12).any() and (hours > 720).any()
    assert patient["hospitaldischargestatus"].isna().any()


# --------------------------------------------------------------- planted signal


def _features(folder: Path) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Simple per-stay features per modality and the labels, from the raw files only."""
    patient = _read(folder / "patient.csv.gz").set_index("patientunitstayid")
    stays = patient.index
    age = pd.to_numeric(patient["age"].replace("> 89", "90"), errors="coerce")
    demographics = pd.concat(
        [age.rename("age"), (patient["gender"] == "Male").astype(float).rename("male"),
         patient[["admissionheight", "admissionweight"]], pd.get_dummies(patient["apacheadmissiondx"], dtype=float)],
        axis=1,
    )  # fmt: skip
    lab = _read(folder / "lab.csv.gz")
    lab_features = pd.concat(
        [lab.pivot_table(index="patientunitstayid", columns="labname", values="labresult", aggfunc="mean"),
         np.log1p(lab.groupby("patientunitstayid").size()).rename("n_labs")],
        axis=1,
    )  # fmt: skip
    aps = _read(folder / "apacheApsVar.csv.gz").set_index("patientunitstayid").drop(columns="apacheapsvarid")
    medication = _read(folder / "medication.csv.gz")
    modalities = {
        "demographics": demographics,
        "diagnosis": _counts(folder / "diagnosis.csv.gz", "diagnosisstring"),
        "treatment": _counts(folder / "treatment.csv.gz", "treatmentstring"),
        "medication": pd.crosstab(medication["patientunitstayid"], medication["drughiclseqno"]),
        "lab": lab_features,
        "aps": aps.replace(eicu_tables.APS_UNRECORDED, np.nan),
    }
    modalities = {name: frame.reindex(stays).add_prefix(f"{name}:") for name, frame in modalities.items()}
    labels = pd.DataFrame(
        {
            "died": patient["hospitaldischargestatus"].map({"Alive": 0.0, "Expired": 1.0}),
            "log_los": np.log((patient["hospitaldischargeoffset"] - patient["hospitaladmitoffset"]) / 60),
        }
    )
    return modalities, labels


def _counts(path: Path, column: str) -> pd.DataFrame:
    frame = _read(path)
    return pd.crosstab(frame["patientunitstayid"], frame[column])


_TASKS = {
    # target: (per-modality model, fusion model, score, metric)
    "died": (LogisticRegression(C=0.01, max_iter=3000), LogisticRegression(), "decision_function", roc_auc_score),
    "log_los": (Ridge(alpha=300.0), Ridge(alpha=1.0), "predict", lambda y, p: spearmanr(y, p).statistic),
}


def _scores(modalities: dict[str, pd.DataFrame], labels: pd.DataFrame, target: str) -> dict[str, float]:
    """Test-half metric of each modality's linear model, and of their late fusion ("all").

    Models are fitted on the first half of the stays. The fusion model combines
    the modalities' out-of-fold scores, so a weak modality cannot drown a
    strong one in columns.
    """
    estimator, combiner, method, metric = _TASKS[target]
    known = labels[target].notna().to_numpy()
    y = labels[target].to_numpy()[known]
    half = len(y) // 2
    results, train_scores, test_scores = {}, [], []
    for name, features in modalities.items():
        x = features[known].astype(float)
        x = x.loc[:, x.notna().any()].to_numpy()
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), clone(estimator))
        train_scores.append(cross_val_predict(model, x[:half], y[:half], cv=5, method=method))
        test_scores.append(getattr(model.fit(x[:half], y[:half]), method)(x[half:]))
        results[name] = metric(y[half:], test_scores[-1])
    fused = clone(combiner).fit(np.column_stack(train_scores), y[:half])
    results["all"] = metric(y[half:], getattr(fused, method)(np.column_stack(test_scores)))
    return results


def test_labels_are_learnable_from_every_modality_and_best_from_all(cohort):
    modalities, labels = _features(cohort)
    auroc = _scores(modalities, labels, "died")
    rho = _scores(modalities, labels, "log_los")
    assert auroc["all"] >= 0.75, auroc
    assert rho["all"] >= 0.4, rho
    for name in modalities:
        assert 0.55 < auroc[name] < auroc["all"], (name, auroc)
        assert rho[name] < rho["all"], (name, rho)
