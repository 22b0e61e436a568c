"""Synthetic MIMIC-IV chartevents at the real table's density (`chart_rows_per_stay`): rows of
items outside the 17 variables, counted as filtered by the time-series step, which leave
the 17 variables' rows and hourly events as they were."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.config import MimicConfig
from clintraj.data.mimic.measurements import discretize, load_measurements
from clintraj.data.mimic.stays import load_stays
from clintraj.data.rawio import Quarantine
from clintraj.data.synthetic import generate
from clintraj.data.synthetic.mimic import other_items

PRESENCE = {"time_series": 0.8, "cxr": 0.0, "discharge_note": 0.3, "radiology_note": 0.0}
N_STAYS, DENSITY, CHUNK = 60, 700, 25
CHART = mt.CHARTEVENTS.path


def _generate(out: Path, seed: int, density: int) -> dict[str, int]:
    return generate("mimic", out, n_stays=N_STAYS, seed=seed, presence=PRESENCE, chunk_stays=CHUNK,
                    progress=False, chart_rows_per_stay=density)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, tuple[Path, dict[str, int]]]:
    """Without and with the other items (batches of 7,000 rows: several per chunk), and a repeat."""
    root = tmp_path_factory.mktemp("mimic_density")
    out = {"plain": (root / "plain", _generate(root / "plain", 5, 0))}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(other_items, "BATCH_ROWS", 7_000)
        for name in ("dense", "again"):
            out[name] = (root / name, _generate(root / name, 5, DENSITY))
    return out


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return handle.read().splitlines()


def _hourly(raw: Path) -> tuple[pd.DataFrame, Quarantine]:
    quarantine = Quarantine()
    stays, _ = load_stays(raw, quarantine)
    measurements, _ = load_measurements(raw, stays, MimicConfig(use_labevents=False, progress=False), quarantine)
    return discretize(measurements), quarantine


def test_other_items_are_real_mimic_items_outside_the_17_variables():
    assert not set(other_items.ITEMIDS) & set(mt.ITEMID_TO_VARIABLE)
    assert len(set(other_items.ITEMIDS)) == len(other_items.ITEMIDS) == 41
    assert all(220_000 <= itemid < 230_000 for itemid in other_items.ITEMIDS)  # MetaVision's range


def test_stays_with_time_series_get_the_asked_density(folders):
    (plain, _), (dense, written) = folders["plain"], folders["dense"]
    icu = pd.read_csv(dense / mt.ICUSTAYS.path)
    chart = pd.read_csv(dense / CHART)
    with_series = chart["stay_id"].nunique()
    assert 0.6 * N_STAYS < with_series < N_STAYS  # presence 0.8
    # each chunk tops its stays up to DENSITY rows a stay with time series: exact in total
    assert written[CHART] == len(chart) == DENSITY * with_series
    assert set(chart["stay_id"]) <= set(icu["stay_id"])
    assert len(pd.read_csv(plain / CHART)) < 0.2 * len(chart)  # the 17 variables: ~86 rows a stay
    # shared out by length of stay: rows per hour about equal across stays
    per_stay = chart.groupby("stay_id").size()
    hours = icu.set_index("stay_id")["los"].reindex(per_stay.index) * 24
    rate = per_stay / hours
    assert rate[hours > 24].std() / rate[hours > 24].mean() < 0.25


def test_other_item_rows_are_plausible_and_inside_their_stay(folders):
    dense, _ = folders["dense"]
    # "None" is an answer (ectopy, O2 device), not a blank
    chart = pd.read_csv(dense / CHART, keep_default_na=False, na_values={"valuenum": [""], "valueuom": [""]})
    other = chart[chart["itemid"].isin(other_items.ITEMIDS)]
    assert set(other["itemid"]) == set(other_items.ITEMIDS)
    icu = pd.read_csv(dense / mt.ICUSTAYS.path, parse_dates=["intime", "outtime"]).set_index("stay_id")
    t = pd.to_datetime(other["charttime"], format="%Y-%m-%d %H:%M:%S")
    assert (t.dt.second == 0).all()
    assert (t.to_numpy() >= icu["intime"].reindex(other["stay_id"]).to_numpy()).all()
    assert (t.to_numpy() <= icu["outtime"].reindex(other["stay_id"]).to_numpy()).all()
    assert (pd.to_datetime(other["storetime"]) >= t).all()
    numeric = {i[0]: i for i in other_items.NUMERIC_ITEMS + other_items.VENTILATOR_NUMERIC}
    is_numeric = other["itemid"].isin(list(numeric))
    # numbers: valuenum and value the same number, the item's unit; answers: valuenum blank
    assert (other.loc[is_numeric, "value"].astype(float) == other.loc[is_numeric, "valuenum"]).all()
    assert (other.loc[is_numeric, "valueuom"] == other.loc[is_numeric, "itemid"].map(lambda i: numeric[i][2])).all()
    assert other.loc[~is_numeric, "valuenum"].isna().all() and other.loc[~is_numeric, "valueuom"].isna().all()
    answers = {i[0]: set(i[2]) for i in other_items.TEXT_ITEMS + other_items.VENTILATOR_TEXT}
    assert all(v in answers[i] for i, v in zip(other.loc[~is_numeric, "itemid"], other.loc[~is_numeric, "value"]))
    heart_alarm = other.loc[other["itemid"] == 220046, "valuenum"]
    assert 115 < heart_alarm.mean() < 125  # drawn around 120 bpm
    # ventilator items only in ventilated stays: those that chart arterial pH or an intubated GCS answer
    ventilator = {i[0] for i in other_items.VENTILATOR_NUMERIC + other_items.VENTILATOR_TEXT}
    ventilated = set(chart.loc[(chart["itemid"] == 223830) | (chart["value"] == "No Response-ETT"), "stay_id"])
    with_settings = set(other.loc[other["itemid"].isin(ventilator), "stay_id"])
    assert with_settings and with_settings <= ventilated and with_settings < set(other["stay_id"])


def test_the_17_variables_rows_and_every_other_table_are_unchanged(folders):
    (plain, written_plain), (dense, written) = folders["plain"], folders["dense"]
    for path in written_plain:
        if path != CHART:
            assert (plain / path).read_bytes() == (dense / path).read_bytes(), path
    others = {str(i) for i in other_items.ITEMIDS}
    kept = [line for line in _lines(dense / CHART) if line.split(",")[6] not in others]
    assert kept == _lines(plain / CHART)  # same rows, same order, same header
    assert written[CHART] - written_plain[CHART] == len(_lines(dense / CHART)) - len(kept)


def test_time_series_step_gives_the_same_hours_and_files_the_other_items_as_filtered(folders):
    (plain, written_plain), (dense, written) = folders["plain"], folders["dense"]
    (events_plain, ledger_plain), (events, ledger) = _hourly(plain), _hourly(dense)
    assert len(events) > 10 * N_STAYS
    pd.testing.assert_frame_equal(events, events_plain)
    accounts = {a["table"]: a for a in ledger.accounts()}[CHART]
    accounts_plain = {a["table"]: a for a in ledger_plain.accounts()}[CHART]
    other_rows = written[CHART] - written_plain[CHART]
    assert accounts["rows"] == written[CHART]
    assert accounts["unaccounted"] == accounts_plain["unaccounted"] == 0
    reason = "itemid not one of the 17 variables' items"
    assert accounts["filtered"][reason] == accounts_plain["filtered"].get(reason, 0) + other_rows
    assert accounts["used"] == accounts_plain["used"]
    assert accounts["quarantined"] == accounts_plain["quarantined"]


def test_same_seed_same_bytes_other_seed_other_rows(folders, tmp_path):
    (dense, _), (again, _) = folders["dense"], folders["again"]
    assert (dense / CHART).read_bytes() == (again / CHART).read_bytes()
    _generate(tmp_path / "other", 6, DENSITY)
    assert (tmp_path / "other" / CHART).read_bytes() != (dense / CHART).read_bytes()


def test_density_below_the_17_variables_adds_nothing_and_negative_is_refused(folders, tmp_path):
    plain, _ = folders["plain"]
    _generate(tmp_path / "low", 5, 10)
    assert (tmp_path / "low" / CHART).read_bytes() == (plain / CHART).read_bytes()
    with pytest.raises(ValueError, match="chart_rows_per_stay"):
        _generate(tmp_path / "bad", 5, -1)


def test_rows_per_stay_follows_length_of_stay():
    """Hand-checkable: 2 stays with time series, 10 h and 30 h, 100 rows a stay, 40 rows already
    written: 160 other rows, shared 1:3 in expectation (multinomial)."""

    class Chunk:
        n = 3
        present = {"time_series": np.array([True, False, True])}
        los_hours = np.array([10.0, 99.0, 30.0])

    totals = np.array([other_items.rows_per_stay(Chunk, np.random.default_rng(s), 100, 40) for s in range(400)])
    assert (totals.sum(axis=1) == 160).all() and (totals[:, 1] == 0).all()
    assert abs(totals[:, 0].mean() - 40) < 1.5 and abs(totals[:, 2].mean() - 120) < 1.5
