"""The dataset folder: splits, task cohorts, shards, report, byte-identical reruns."""

import csv
import gzip
import hashlib
import json

import pandas as pd
import pytest

from clintraj.config import from_dict
from clintraj.artifacts.dataset import Dataset
from clintraj.data.eicu_tables import TABLES
from clintraj.data.mimic import MODALITY_NAMES
from clintraj.data.modalities import aggregate
from clintraj.data.prepare import PrepareConfig, prepare
from clintraj.data.synthetic import generate


@pytest.fixture(scope="module")
def eicu_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("eicu-raw")
    generate("eicu", raw, n_stays=900, seed=11, progress=False)
    return raw


@pytest.fixture(scope="module")
def mimic_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("mimic-raw")
    generate("mimic", raw, n_stays=400, seed=12, progress=False)
    return raw


def config(dataset, **overrides):
    return from_dict(PrepareConfig, {"dataset": dataset, "rows_per_shard": 5000,
                                     "eicu": {"lab_min_count": 200}, **overrides})


def digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_eicu_dataset_folder(eicu_raw, tmp_path):
    report = prepare(eicu_raw, tmp_path / "a", config("eicu"))
    stays = Dataset(tmp_path / "a").stays()
    assert len(stays) == report["stays"] == report["funnel"][-1]["remaining"]
    # sharded for parallel reads, nothing lost across shards
    assert len(list((tmp_path / "a" / "events" / "lab").glob("part-*.parquet"))) > 1
    lab_events = Dataset(tmp_path / "a").events("lab")
    assert len(lab_events) == report["events"]["lab"]
    # events are time-sorted within a stay; those before ICU admission are kept (a task's window decides)
    assert (lab_events.groupby("stay_id")["time_hours"].diff().dropna() >= 0).all()
    assert (lab_events["time_hours"] < 0).any()
    for task in ("mortality", "los"):
        cohort = Dataset(tmp_path / "a").task_cohort(task).merge(stays, on="stay_id", suffixes=("", "_pretrain"))
        # fine-tuning cohorts come only from stays unseen in pretraining
        assert set(cohort["split_pretrain"]) <= {"val", "test"}
        assert cohort.groupby("patient_id")["split"].nunique().max() == 1
        assert set(cohort["split"]) == {"train", "val", "test"}
        assert (cohort["prediction_hours"] == 12.0).all() and (cohort["end_hours"] == 12.0).all()
        assert report["windows"][task] == 12.0 and report["tasks"][task]["stays"] == len(cohort)
    assert stays.groupby("patient_id")["split"].nunique().max() == 1
    assert (tmp_path / "a" / "missingness.png").stat().st_size > 10_000
    text = (tmp_path / "a" / "report.md").read_text()
    assert "## Cohort funnel" in text and "Task cohort: los" in text and "## What each task sees" in text
    assert "| mortality | 12 h after ICU admission | 0 h |" in text


def test_pretraining_and_task_splits_take_their_own_fractions(eicu_raw, tmp_path):
    prepare(eicu_raw, tmp_path / "a", config("eicu", fractions=[0.5, 0.25, 0.25], task_fractions=[0.5, 0.15, 0.35]))
    stays = Dataset(tmp_path / "a").stays()
    pretraining = stays["split"].value_counts(normalize=True)
    assert pretraining["train"] == pytest.approx(0.5, abs=0.03) and pretraining["test"] == pytest.approx(0.25, abs=0.03)
    cohort = Dataset(tmp_path / "a").task_cohort("mortality")
    assert len(cohort) > 0.9 * (stays["split"] != "train").sum()  # nearly the whole pool (a 12 h window)
    shares = cohort["split"].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.35, abs=0.04) and shares["val"] == pytest.approx(0.15, abs=0.04)


def test_rerun_gives_identical_bytes(eicu_raw, tmp_path):
    prepare(eicu_raw, tmp_path / "a", config("eicu"))
    prepare(eicu_raw, tmp_path / "b", config("eicu"))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


@pytest.mark.parametrize("dataset", ["eicu", "mimic"])
def test_a_few_stays_at_a_time_gives_identical_bytes(dataset, eicu_raw, mimic_raw, tmp_path, monkeypatch):
    """The per-stay tables are aggregated a slice of stays at a time, and eICU's events and
    MIMIC-IV's notes go to disk and back in parts of a range of stays (bounded memory at full
    size): slices of 40 stays, some with no event inside a task's window, and parts of 70 stays
    (event shards of 1,000 rows spanning parts) write the very bytes of one slice and one part."""
    from clintraj import runtime
    from clintraj.data import event_parts, modalities

    monkeypatch.setattr(runtime, "ray_is_up", lambda: False)  # readers here, where the patches hold
    raw = eicu_raw if dataset == "eicu" else mimic_raw
    extra = {} if dataset == "eicu" else {"cxr": raw / "mimic-cxr-jpg", "notes": raw / "mimic-iv-note"}
    calls, parts = [], []
    monkeypatch.setattr(modalities, "aggregate", lambda *a, **k: calls.append(1) or aggregate(*a, **k))
    writer_close = event_parts.PartWriter.close
    monkeypatch.setattr(event_parts.PartWriter, "close", lambda self: parts.append(self.parts) or writer_close(self))
    prepare(raw, tmp_path / "whole", config(dataset, rows_per_shard=1000), **extra)
    whole = len(calls)
    assert set(parts) == {1}
    monkeypatch.setattr(modalities, "STAYS_AT_A_TIME", 40)
    monkeypatch.setattr(event_parts, "STAYS_PER_PART", 70)
    parts.clear()
    prepare(raw, tmp_path / "sliced", config(dataset, rows_per_shard=1000), **extra)
    assert len(calls) - whole > 4 * whole  # it did aggregate in slices
    assert min(parts) > 4  # and wrote the events in parts
    assert digest(tmp_path / "whole") == digest(tmp_path / "sliced")


def test_shards_cut_by_rows_and_by_text_whatever_the_parts(tmp_path, monkeypatch):
    """A shard holds `rows_per_shard` rows, or fewer where its text would pass `TEXT_PER_SHARD`
    characters (a row longer than that alone); the rows in one frame or in parts, the same shards."""
    from clintraj.artifacts import dataset

    monkeypatch.setattr(dataset, "TEXT_PER_SHARD", 10)
    notes = pd.DataFrame({"stay_id": range(7), "text": pd.array(["abc", "defg", "hi", "j" * 12, "k", "lm", "n"],
                                                                 dtype="string")})
    for name, frames in (("whole", [notes]), ("parts", [notes.iloc[:2], notes.iloc[2:2], notes.iloc[2:5], notes.iloc[5:]])):
        with dataset.DatasetWriter(tmp_path / name, rows_per_shard=3) as writer:
            writer.task_table("t", "note", frames)
    shards = sorted((tmp_path / "whole" / "tasks" / "t" / "modalities" / "note").glob("*.parquet"))
    assert [pd.read_parquet(s)["stay_id"].tolist() for s in shards] == [[0, 1, 2], [3], [4, 5, 6]]
    assert [p.read_bytes() for p in shards] == [
        p.read_bytes() for p in sorted((tmp_path / "parts" / "tasks" / "t" / "modalities" / "note").glob("*.parquet"))]


def test_mimic_dataset_folder_with_all_modalities(mimic_raw, tmp_path):
    report = prepare(mimic_raw, tmp_path / "m", config("mimic"),
                     cxr=mimic_raw / "mimic-cxr-jpg", notes=mimic_raw / "mimic-iv-note")
    stays = Dataset(tmp_path / "m").stays()
    assert set(report["tasks"]) == {"mortality", "phenotyping"}
    assert list(report["modalities"]) == list(MODALITY_NAMES)  # all five, so the check below sees each
    assert all(0 < report["presence_share"][m] for m in report["modalities"])
    assert not any(pd.api.types.is_datetime64_any_dtype(stays[c]) for c in stays.columns)  # no dates written
    phenotyping = Dataset(tmp_path / "m").task_cohort("phenotyping").merge(stays, on="stay_id")
    assert phenotyping.filter(like="pheno:").notna().all().all()
    assert json.loads((tmp_path / "m" / "report.json").read_text()) == json.loads(json.dumps(report))


def test_dataset_lands_in_mlflow_as_counts_and_artifacts(eicu_raw, tmp_path):
    from mlflow.tracking import MlflowClient

    from clintraj.data.prepare import log_dataset
    from clintraj.tracking import Tracking

    report = prepare(eicu_raw, tmp_path / "a", config("eicu"))
    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    run_id = log_dataset(tmp_path / "a", tracking, "datasets")
    client = MlflowClient(tracking.uri)
    funnel = client.get_metric_history(run_id, "funnel_remaining")
    assert [m.value for m in sorted(funnel, key=lambda m: m.step)] == [s["remaining"] for s in report["funnel"]]
    names = {a.path for a in client.list_artifacts(run_id, "dataset")}
    assert names == {"dataset/report.md", "dataset/report.json", "dataset/missingness.png"}


def test_a_failed_write_leaves_the_old_dataset_or_nothing(eicu_raw, tmp_path, monkeypatch):
    import clintraj.data.prepare as module

    prepare(eicu_raw, tmp_path / "a", config("eicu"))
    before = digest(tmp_path / "a")

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted while writing")

    monkeypatch.setattr(module, "plot_missingness", broken)  # the last write of the folder
    for out in (tmp_path / "a", tmp_path / "b"):
        with pytest.raises(RuntimeError, match="interrupted"):
            prepare(eicu_raw, out, config("eicu", seed=5))
    assert digest(tmp_path / "a") == before and not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no staging folder outlives its step


def test_a_full_disk_is_a_clear_error_and_leaves_nothing_half_written(eicu_raw, tmp_path):
    """A file size limit stands for a full disk (tests run as root: permissions would not stop them)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        from clintraj.config import from_dict
        from clintraj.data.prepare import PrepareConfig, prepare
        prepare({str(eicu_raw)!r}, {str(tmp_path / "d")!r}, from_dict(PrepareConfig, {{"eicu": {{"lab_min_count": 200}}}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("OSError: [Errno 27] writing the dataset ") and last.endswith("nothing was written there")
    assert list(tmp_path.iterdir()) == []


# --- every raw row accounted for -----------------------------------------------------------


def data_rows(path) -> int:
    """Data rows of a raw CSV (quoted newlines included), counted apart from the readers."""
    with gzip.open(path, "rt", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def check_accounts(out, report, roots) -> dict:
    """Per raw table: rows (counted here) = used + filtered + quarantined (as quarantine.parquet
    lists them); returns the accounts by table."""
    accounts = {a["table"]: a for a in report["accounts"]}
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    set_aside = quarantine[~quarantine["field_only"]].groupby("table").size()
    for table, account in accounts.items():
        path = next(root / table for root in roots if (root / table).is_file())
        assert account["rows"] == data_rows(path) > 0, table
        assert sum(account["quarantined"].values()) == set_aside.get(table, 0), table
        assert account["rows"] == account["used"] + sum(account["filtered"].values()) + sum(
            account["quarantined"].values()), table
        assert account["unaccounted"] == 0
    assert "## Every raw row" in (out / "report.md").read_text()
    return accounts


def check_eicu_accounts(out, report, raw) -> None:
    accounts = check_accounts(out, report, [raw])
    assert set(accounts) == {f"{t.name}.csv.gz" for t in TABLES}
    assert accounts["patient.csv.gz"]["used"] == report["stays"]
    for modality in ("lab", "diagnosis", "treatment", "medication"):
        assert accounts[f"{modality}.csv.gz"]["used"] == report["events"][modality]  # one event per used row
    assert accounts["apacheApsVar.csv.gz"]["used"] == len(Dataset(out).table("aps"))


def test_every_eicu_row_is_accounted_for(eicu_raw, tmp_path):
    report = prepare(eicu_raw, tmp_path / "a", config("eicu"))
    check_eicu_accounts(tmp_path / "a", report, eicu_raw)


def test_every_mimic_row_is_accounted_for(mimic_raw, tmp_path):
    cxr, notes = mimic_raw / "mimic-cxr-jpg", mimic_raw / "mimic-iv-note"
    report = prepare(mimic_raw, tmp_path / "m", config("mimic"), cxr=cxr, notes=notes)
    accounts = check_accounts(tmp_path / "m", report, [mimic_raw, cxr, notes])
    assert len(accounts) == 9 and accounts["icu/icustays.csv.gz"]["used"] == report["stays"]


def test_every_row_of_the_real_demos_is_accounted_for(eicu_demo_raw, mimic_demo_raw, tmp_path):
    report = prepare(eicu_demo_raw, tmp_path / "e", config("eicu", eicu={"lab_min_count": 100}))
    check_eicu_accounts(tmp_path / "e", report, eicu_demo_raw)
    report = prepare(mimic_demo_raw, tmp_path / "m", config("mimic", mimic={"chartevents_stand_in": True}))
    accounts = check_accounts(tmp_path / "m", report, [mimic_demo_raw])
    assert len(accounts) == 6 and accounts["icu/icustays.csv.gz"]["used"] == report["stays"] == 140
    outliers = sum(n for a in accounts.values() for r, n in a["quarantined"].items() if "outlier bounds" in r)
    assert outliers > 0  # the demo has values beyond mimic3-benchmarks' bounds, set aside and counted


def test_image_root_of_a_dataset_with_and_without_images(mimic_raw, tmp_path, monkeypatch):
    """Prepared without a CXR root, the image modality is absent for every stay and no stage loads
    images (image_root None); a dataset that has images but no root is a named error."""
    from clintraj.data.stay_inputs import InputScaling, input_meta

    prepare(mimic_raw, tmp_path / "plain", config("mimic"))
    plain = Dataset(tmp_path / "plain")
    assert plain.table("cxr").empty and input_meta(plain, InputScaling.fit(plain), None)["image_root"] is None
    cxr = mimic_raw / "mimic-cxr-jpg"
    prepare(mimic_raw, tmp_path / "images", config("mimic"), cxr=cxr)
    images = Dataset(tmp_path / "images")
    scaling = InputScaling.fit(images)
    assert input_meta(images, scaling, None)["image_root"] == str(cxr.resolve())
    monkeypatch.setattr(Dataset, "image_root", property(lambda self: None))
    with pytest.raises(ValueError, match="has images but no image root"):
        input_meta(images, scaling, None)
