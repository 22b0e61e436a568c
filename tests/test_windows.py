"""Tasks with a prediction time: every input of a task is known at its prediction time.

Hand-computed windows; a planted leak (the label written after the prediction time) carries no
signal into a task's static inputs or timelines while the windows are on, and nearly all of it
with the whole stay; and on the real eICU and MIMIC-IV demos every static input and every
timeline event of every task stay is at or before its prediction time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from clintraj.config import from_dict
from clintraj.data import windows
from clintraj.artifacts.dataset import Dataset
from clintraj.data.prepare import PrepareConfig, prepare
from clintraj.data.stay_inputs import InputConfig, InputScaling, build_task_tables
from clintraj.data.synthetic import generate
from clintraj.data.synthetic.eicu import LEAK_LAB
from clintraj.data.timelines import assemble_timelines, write_event_inputs
from clintraj.tasks import DEFAULT_PREDICTION_HOURS, prediction_hours

WHOLE_STAY = {"eicu": {"mortality": None, "los": None}, "mimic": {"mortality": None, "phenotyping": None}}


# --- the rule, by hand ------------------------------------------------------------------------


def test_window_bounds_select_and_count_by_hand():
    stays = pd.DataFrame({"stay_id": [1, 2], "unit_hours": [30.0, 8.0]})
    assert windows.long_enough(stays, 12).tolist() == [True, False]
    assert windows.long_enough(stays, None).tolist() == [True, True]
    window = windows.bounds(stays, 12, lookback_hours=2)
    assert window.to_dict("list") == {"stay_id": [1, 2], "start_hours": [-2.0, -2.0], "end_hours": [12.0, 8.0]}
    assert windows.bounds(stays, None)["end_hours"].tolist() == [30.0, 8.0]  # the whole stay: ICU discharge
    events = pd.DataFrame({"stay_id": [1, 1, 1, 1, 1, 2, 2, 3],
                           "time_hours": [-3.0, -1.0, 12.0, 12.5, 31.0, 7.0, 9.0, 1.0]})
    assert windows.select(events, window).tolist() == [False, True, True, False, False, True, False, False]
    assert not windows.select(events, window, after_stay=True).any()
    with_unit = window.assign(unit_hours=stays["unit_hours"])
    assert windows.relations(events, with_unit) == {"in window": 3, "before the window start": 1,
                                                    "after the prediction time": 1, "after ICU discharge": 2}
    assert windows.relations(events, with_unit, after_stay=True)["after ICU discharge"] == 7


def test_prediction_times_default_override_and_refuse_what_is_not_a_task():
    assert prediction_hours("eicu") == {"mortality": 12.0, "los": 12.0}
    assert prediction_hours("mimic") == {"mortality": 48.0, "phenotyping": None}
    assert prediction_hours("mimic", {"mortality": 24}) == {"mortality": 24, "phenotyping": None}
    assert prediction_hours("eicu", {"los": None})["los"] is None  # null: the whole stay
    with pytest.raises(ValueError, match="phenotyping.*eicu"):
        prediction_hours("eicu", {"phenotyping": 12})
    with pytest.raises(ValueError, match="prediction_hours.mortality"):
        prediction_hours("eicu", {"mortality": -1})


def test_a_job_asking_for_other_windows_than_prepared_names_both(tmp_path):
    generate("eicu", tmp_path / "raw", n_stays=300, seed=2, progress=False)
    prepare(tmp_path / "raw", tmp_path / "d", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 50}}))
    dataset = Dataset(tmp_path / "d")
    dataset.check_windows({"mortality": 12}, "the config")  # the same: fine
    with pytest.raises(ValueError, match=r"mortality.*24 h after ICU admission.*12 h after ICU admission"):
        dataset.check_windows({"mortality": 24}, "the config")
    with pytest.raises(ValueError, match="the whole ICU stay"):
        dataset.check_windows({"los": None}, "the config")


# --- a planted leak -----------------------------------------------------------------------------


def _prepared(root, dataset: str, stays: int, null_windows: bool, **generate_options):
    raw = root / "raw"
    if not raw.exists():
        generate(dataset, raw, n_stays=stays, seed=5, progress=False, leak=True, **generate_options)
    out = root / ("whole-stay" if null_windows else "windows")
    extra = {"cxr": raw / "mimic-cxr-jpg", "notes": raw / "mimic-iv-note"} if dataset == "mimic" else {}
    # pretraining keeps a fifth of the stays: the task cohorts, drawn from the rest, are large
    # enough that chance is tight (the tests check their size) from fewer generated stays
    prepare(raw, out, from_dict(PrepareConfig, {
        "dataset": dataset, "eicu": {"lab_min_count": 100}, "mimic": {"progress": False}, "fractions": [0.2, 0.4, 0.4],
        "prediction_hours": WHOLE_STAY[dataset] if null_windows else {}}), **extra)
    return out


@pytest.fixture(scope="module")
def eicu_leak(tmp_path_factory):
    root = tmp_path_factory.mktemp("eicu-leak")
    return {null: _prepared(root, "eicu", 3000, null) for null in (False, True)}


@pytest.fixture(scope="module")
def mimic_leak(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic-leak")
    return {null: _prepared(root, "mimic", 2500, null, presence={"cxr": 0.0}) for null in (False, True)}


def _labels(dataset, stay_ids) -> np.ndarray:
    stays = Dataset(dataset).stays().set_index("stay_id")
    return stays.loc[stay_ids, "died"].astype(float).to_numpy()


def _static_leak_auroc(dataset, config=InputConfig()) -> tuple[float, int]:
    """AUROC of the leak's own input feature in the mortality cohort's static inputs (what the
    encoders read: the lab vector's `lab:label marker` column)."""
    build_task_tables(Dataset(dataset), dataset.parent / f"{dataset.name}-inputs", config, ["mortality"])
    table = pd.read_parquet(dataset.parent / f"{dataset.name}-inputs")
    column = InputScaling.fit(Dataset(dataset)).scalers["lab"].names.index(f"lab:{LEAK_LAB}")
    feature = np.stack(table["lab.x"].to_numpy())[:, column]
    return roc_auc_score(_labels(dataset, table["stay_id"]), feature), len(table)


def _timeline_leak_auroc(dataset, leak_of_event) -> float:
    """AUROC of the leak in the mortality timelines: each stay's timeline assembled (as the
    embedding job does) from one number per event, the leak's value in that event's input."""
    cohort = Dataset(dataset).task_cohort("mortality")
    report = Dataset(dataset).report
    inputs = write_event_inputs(Dataset(dataset), dataset.parent / f"{dataset.name}-events", cohort["stay_id"])
    frames = []
    for name, file in inputs["files"].items():
        events = pd.read_parquet(dataset.parent / f"{dataset.name}-events" / file)
        frames.append(events[["stay_id", "time_hours", "modality"]].assign(
            h=[np.array([v], np.float32) for v in leak_of_event(name, events, report)]))
    after_stay = [report["modalities"].index(m) for m in report["after_stay"]]
    table = assemble_timelines(pd.concat(frames, ignore_index=True), cohort, after_stay).to_pandas()
    seen = np.array([np.max(h) for h in table["h"]])
    end = cohort.set_index("stay_id").loc[table["stay_id"], "end_hours"].to_numpy()
    assert all((np.asarray(t) <= e + 1e-4).all() for t, e in zip(table["time_hours"], end))  # times are float32
    return roc_auc_score(_labels(dataset, table["stay_id"]), seen)


def test_a_planted_leak_after_the_prediction_time_carries_no_signal_into_static_inputs(eicu_leak):
    windowed, stays = _static_leak_auroc(eicu_leak[False])
    assert stays >= 1800  # a cohort large enough that chance is tight
    whole_stay, _ = _static_leak_auroc(eicu_leak[True])
    print(f"eICU static leak AUROC: windows {windowed:.3f}, whole stay {whole_stay:.3f} ({stays} stays)")
    assert windowed <= 0.60
    assert whole_stay >= 0.95


def test_a_planted_leak_after_the_prediction_time_carries_no_signal_into_timelines(eicu_leak):
    scaler = InputScaling.fit(Dataset(eicu_leak[False])).scalers["lab"]
    column = scaler.names.index(f"lab:{LEAK_LAB}")
    lab = Dataset(eicu_leak[False]).modalities.index("lab")

    def leak(name, events, report):
        x = [np.asarray(v)[column] if m == lab else -1e9 for v, m in zip(events["x"], events["modality"])]
        return np.asarray(x, float)

    windowed, whole_stay = (_timeline_leak_auroc(eicu_leak[null], leak) for null in (False, True))
    print(f"eICU timeline leak AUROC: windows {windowed:.3f}, whole stay {whole_stay:.3f}")
    assert windowed <= 0.60
    assert whole_stay >= 0.95


def _note_says_died(text: pd.Series) -> np.ndarray:
    return text.fillna("").str.contains("the patient expired", regex=False).to_numpy(float)


def test_a_note_charted_after_the_prediction_time_is_no_input_of_mortality(mimic_leak):
    aurocs = {}
    for null, dataset in mimic_leak.items():
        cohort = Dataset(dataset).task_cohort("mortality")
        notes = Dataset(dataset).task_tables("mortality", ["radiology_note"])["radiology_note"]
        text = cohort[["stay_id"]].merge(notes, how="left", on="stay_id")["text"]
        static = roc_auc_score(_labels(dataset, cohort["stay_id"]), _note_says_died(text))

        def leak(name, events, report):
            if name != "radiology_note":
                return np.zeros(len(events))
            return _note_says_died(events["radiology_note.text"])

        aurocs[null] = (static, _timeline_leak_auroc(dataset, leak), len(cohort))
    print(f"MIMIC-IV note leak AUROC (static, timeline, stays): windows {aurocs[False]}, whole stay {aurocs[True]}")
    assert aurocs[False][2] >= 500
    assert max(aurocs[False][:2]) <= 0.60
    assert min(aurocs[True][:2]) >= 0.95


# --- what a task table holds ----------------------------------------------------------------------


def _window_events(dataset, task: str, modality: str) -> pd.DataFrame:
    """The events of the task's stays inside their windows, recomputed here from the raw rule."""
    events = Dataset(dataset).events(modality).merge(Dataset(dataset).task_cohort(task), on="stay_id")
    return events[(events["time_hours"] >= events["start_hours"]) & (events["time_hours"] <= events["end_hours"])]


def _check_task_tables(dataset, report: dict) -> None:
    """Every task table equals the aggregation of its window's events, recomputed independently."""
    assert report["tasks"]
    for task, summary in report["tasks"].items():
        cohort = Dataset(dataset).task_cohort(task)
        hours = report["windows"][task]
        assert len(cohort) == summary["stays"] and cohort["stay_id"].is_unique
        assert (cohort["start_hours"] == -report["lookback_hours"]).all()
        stays = Dataset(dataset).stays().set_index("stay_id").loc[cohort["stay_id"]]
        if hours is None:
            assert cohort["prediction_hours"].isna().all()
            assert np.allclose(cohort["end_hours"], stays["unit_hours"])
        else:
            assert (cohort["prediction_hours"] == hours).all() and (cohort["end_hours"] == hours).all()
            assert (stays["unit_hours"] >= hours).all()  # the others left the task, counted
        assert summary["stays_with_label"] - summary["excluded_icu_stay_shorter_than_window"] == summary["stays"]
        tables = Dataset(dataset).task_tables(task)
        checked = 0
        for name, kind in report["modality_kinds"].items():
            inside = _window_events(dataset, task, name)
            if name in report["after_stay"]:
                inside = inside.iloc[:0]
            assert set(tables[name]["stay_id"]) == set(inside["stay_id"]), (task, name)
            if kind == "values":  # e.g. lab: the sum of the window's results per name
                expected = inside.groupby(["stay_id", "name"])["value"].sum()
                table = tables[name].set_index("stay_id")
                got = pd.Series({(s, c.split(":", 1)[1]): table.loc[s, c] for s, c in
                                 zip(expected.index.get_level_values(0), f"{name}:" + expected.index.get_level_values(1))})
                np.testing.assert_allclose(got.loc[expected.index].to_numpy(), expected.to_numpy())
                checked += len(expected)
            elif kind == "terms":  # presence of each vocabulary term seen in the window
                table = tables[name].set_index("stay_id")
                for stay, terms in inside.groupby("stay_id")["name"]:
                    row = table.loc[stay]
                    columns = [f"{name}:{t}" for t in set(terms) if f"{name}:{t}" in table.columns]
                    assert (row[columns] == 1.0).all() and row.sum() == len(columns)
                    checked += 1
            elif kind == "time_series":  # the last bin of the window is the summary's "last"
                last = inside.sort_values(["stay_id", "time_hours"]).groupby("stay_id")["Heart Rate"].last()
                table = tables[name].set_index("stay_id")["ts:Heart Rate:last"]
                np.testing.assert_allclose(table.loc[last.index].to_numpy(), last.to_numpy())
                checked += len(last)
        assert checked > 0


def test_task_tables_hold_the_window_only_and_aps_when_known(tmp_path):
    generate("eicu", tmp_path / "raw", n_stays=800, seed=8, progress=False)
    report = prepare(tmp_path / "raw", tmp_path / "a", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 100}}))
    _check_task_tables(tmp_path / "a", report)
    # APACHE values are first-day summaries: known at 24 h, so no input of a 12 h task by default
    aps = Dataset(tmp_path / "a").task_tables("mortality", ["aps"])["aps"]
    assert aps.empty and report["tasks"]["mortality"]["events"]["aps"]["after the prediction time"] > 0
    assert report["tasks"]["mortality"]["events"]["lab"]["before the window start"] > 0  # counted, not seen
    # the paper's way (APS at admission) is an option, and a later prediction time sees them too
    for options in ({"eicu": {"lab_min_count": 100, "aps_available_hours": None}},
                    {"eicu": {"lab_min_count": 100}, "prediction_hours": {"mortality": 24}}):
        other = prepare(tmp_path / "raw", tmp_path / "b", from_dict(PrepareConfig, options))
        aps = Dataset(tmp_path / "b").task_tables("mortality", ["aps"])["aps"]
        assert len(aps) == pytest.approx(other["tasks"]["mortality"]["stays"] * other["presence_share"]["aps"], rel=0.1)
    # a lookback brings events from before ICU admission in, and no further
    back = prepare(tmp_path / "raw", tmp_path / "c", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 100},
                                                                              "lookback_hours": 6}))
    _check_task_tables(tmp_path / "c", back)
    lab = _window_events(tmp_path / "c", "mortality", "lab")
    assert (lab["time_hours"] < 0).any() and (lab["time_hours"] >= -6).all()


# --- the real demos -------------------------------------------------------------------------------


def test_real_eicu_demo_tasks_see_only_their_window(eicu_demo_raw, tmp_path):
    report = prepare(eicu_demo_raw, tmp_path / "d", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 50}}))
    _check_task_tables(tmp_path / "d", report)
    _check_timeline_inputs(tmp_path / "d", report)
    text = (tmp_path / "d" / "report.md").read_text()
    assert "## What each task sees" in text
    mortality = report["tasks"]["mortality"]
    assert f"| mortality | 12 h after ICU admission | 0 h | {mortality['stays_with_label']} | " \
           f"{mortality['excluded_icu_stay_shorter_than_window']} | {mortality['stays']} |" in text
    assert mortality["excluded_icu_stay_shorter_than_window"] > 0  # real stays shorter than 12 h left the task


def test_real_mimic_demo_tasks_see_only_their_window(mimic_demo_raw, tmp_path):
    report = prepare(mimic_demo_raw, tmp_path / "d", from_dict(PrepareConfig, {
        "dataset": "mimic", "mimic": {"chartevents_stand_in": True, "progress": False}}))
    assert report["windows"] == DEFAULT_PREDICTION_HOURS["mimic"]
    _check_task_tables(tmp_path / "d", report)
    _check_timeline_inputs(tmp_path / "d", report)
    assert report["tasks"]["mortality"]["excluded_icu_stay_shorter_than_window"] > 0


def _check_timeline_inputs(dataset, report: dict) -> None:
    """The timelines of every task stay, assembled from the event inputs: no event after the stay's
    prediction time, none before its window start."""
    assert report["tasks"]
    for task in report["tasks"]:
        cohort = Dataset(dataset).task_cohort(task)
        inputs = write_event_inputs(Dataset(dataset), dataset.parent / f"events-{task}", cohort["stay_id"])
        frames = [pd.read_parquet(dataset.parent / f"events-{task}" / f)[["stay_id", "time_hours", "modality"]]
                  for f in inputs["files"].values()]
        events = pd.concat(frames, ignore_index=True).assign(h=lambda f: [np.zeros(1, np.float32)] * len(f))
        after_stay = [report["modalities"].index(m) for m in report["after_stay"]]
        table = assemble_timelines(events, cohort, after_stay).to_pandas().merge(cohort, on="stay_id")
        assert len(table) == len(cohort) > 0  # every task stay has a timeline (demographics at least)
        for times, start, end in zip(table["time_hours"], table["start_hours"], table["end_hours"]):
            assert (np.asarray(times) <= end + 1e-4).all() and (np.asarray(times) >= start - 1e-4).all()
        inside = windows.select(events, cohort) & ~events["modality"].isin(after_stay).to_numpy()
        assert table["n_events"].sum() == inside.sum()
