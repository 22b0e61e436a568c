import numpy as np
import pandas as pd

from clintraj.data.splits import presence_combination, split_stays

PRESENCE = ["has_a", "has_b", "has_c"]


def make_stays(n_patients=600, seed=0, orphans=40):
    rng = np.random.default_rng(seed)
    rows = []
    stay_id = 1000
    for patient in range(n_patients):
        for _ in range(rng.integers(1, 4)):
            rows.append({"stay_id": stay_id, "patient_id": f"p{patient}",
                         **{c: bool(rng.random() < p) for c, p in zip(PRESENCE, (0.9, 0.5, 0.2))}})
            stay_id += 1
    for _ in range(orphans):
        rows.append({"stay_id": stay_id, "patient_id": None, "has_a": True, "has_b": False, "has_c": False})
        stay_id += 1
    return pd.DataFrame(rows)


def test_no_patient_in_two_splits_and_fractions_hold():
    stays = make_stays()
    split, report = split_stays(stays, PRESENCE, seed=3)
    assert split.notna().all()
    per_patient = stays.assign(split=split).dropna(subset=["patient_id"]).groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    units = report.units
    total = sum(units.values())
    assert abs(units["train"] / total - 0.70) < 0.03
    assert abs(units["val"] / total - 0.15) < 0.03
    assert report.stays == split.value_counts().to_dict()


def test_stratified_on_the_first_stays_combination():
    stays = make_stays()
    split, _ = split_stays(stays, PRESENCE, seed=1)
    first = stays.assign(split=split, combo=presence_combination(stays, PRESENCE)).dropna(subset=["patient_id"])
    first = first.sort_values("stay_id").groupby("patient_id").first()
    checked = []
    for combo, group in first.groupby("combo"):
        if len(group) >= 40:  # each large stratum keeps the 70/15/15 shape
            assert abs((group["split"] == "train").mean() - 0.70) < 0.05, combo
            checked.append(combo)
    # has_a present (p 0.9) with any has_b/has_c: four strata of 50-250 first stays among 600 patients
    assert len(checked) >= 4, checked


def test_orphans_are_units_and_small_strata_are_pooled():
    stays = make_stays(n_patients=50, orphans=30)
    split, report = split_stays(stays, PRESENCE, seed=0, min_units_per_stratum=10)
    orphans = stays["patient_id"].isna()
    assert split[orphans].nunique() == 3  # 30 orphan stays spread over the splits individually
    combos = presence_combination(stays, PRESENCE)
    first = stays.assign(c=combos).sort_values("stay_id").groupby(
        stays["patient_id"].fillna("stay:" + stays["stay_id"].astype(str)))["c"].first()
    assert report.pooled_strata == int((first.value_counts() < 10).sum()) > 0


def test_deterministic_by_seed():
    stays = make_stays()
    a, _ = split_stays(stays, PRESENCE, seed=5)
    b, _ = split_stays(stays.sample(frac=1.0, random_state=1), PRESENCE, seed=5)
    c, _ = split_stays(stays, PRESENCE, seed=6)
    pd.testing.assert_series_equal(a, b.sort_index())
    assert not a.equals(c)
