"""Every job on the real demos, run as a user runs them (their command lines, in this process, on the
session's Ray): the main job (`jobs/sweep_backbones.py`) end to end on the eICU demo (lab from the
labelled subset) and on the MIMIC-IV demo (the chartevents stand-in; no CXR, no notes), and
`preprocess`, `pretrain`, `embed`, `interpret` and `report` on one of them. Sized small: one task,
one backbone, an epoch, a one-trial pretraining sweep (a Tune trial trains in its own process)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from jobs_in_process import run_job, small_config
from test_eicu_cohort import expected_cohort, rows
from test_mimic_cohort import demo_expected

from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.embeddings import Embeddings
from clintraj.data.mimic import tables as mt

MIMIC_ABSENT = ("cxr", "discharge_note", "radiology_note")  # no MIMIC-CXR, no MIMIC-IV-Note


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


@dataclass
class MainRun:
    console: str
    workdir: Path
    experiment: str
    task: str

    @property
    def dataset(self) -> Dataset:
        (folder,) = (self.workdir / "datasets").iterdir()
        return Dataset(folder)

    def runs(self) -> dict[str, list]:
        """The experiment's MLflow runs by stage."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking.uri)
        by_stage = {}
        for run in client.search_runs([client.get_experiment_by_name(self.experiment).experiment_id]):
            by_stage.setdefault(run.data.tags.get("stage"), []).append(run)
        return by_stage

    @property
    def tracking(self):
        from clintraj.tracking import Tracking

        return Tracking.resolve(None, self.workdir / "mlflow")


def main_job(workdir: Path, config: dict, *arguments: str) -> MainRun:
    path = write_yaml(workdir.parent / f"{config['experiment']}.yaml", config)
    console = run_job("sweep_backbones", "--config", str(path), *arguments, "--workdir", str(workdir))
    return MainRun(console, workdir, config["experiment"], config["tasks"][0])


@pytest.fixture(scope="session")
def eicu_demo_jobs(tmp_path_factory, eicu_demo_raw, ray_local):
    """The eICU demo through jobs/preprocess.py, and through the main job from the raw files."""
    root = tmp_path_factory.mktemp("eicu-demo-jobs")
    prepare = {"eicu": {"lab_min_count": 100}}  # the demo's 500 is for its synthetic 2,000 stays
    preprocess = run_job("preprocess", "--dataset", "eicu", "--raw", str(eicu_demo_raw), "--out", str(root / "eicu-v1"),
                         "--config", str(write_yaml(root / "prepare.yaml", prepare)), "--workdir", str(root / "pre"))
    main = main_job(root / "work", small_config("demo-eicu", "eicu", "los", prepare), "--dataset", "eicu",
                    "--raw", str(eicu_demo_raw))
    return preprocess, Dataset(root / "eicu-v1"), main


@pytest.fixture(scope="session")
def mimic_demo_jobs(tmp_path_factory, mimic_demo_raw, ray_local):
    """The main job from the MIMIC-IV demo's raw files, then the single jobs over what it made:
    pretrain on its dataset -> embed with that checkpoint; interpret its backbone pair on a test stay;
    the report of its experiment. Their consoles by job."""
    root = tmp_path_factory.mktemp("mimic-demo-jobs")
    work = root / "work"
    main = main_job(work, small_config("demo-mimic", "mimic", "phenotyping", {"mimic": {"chartevents_stand_in": True}}),
                    "--dataset", "mimic", "--raw", str(mimic_demo_raw))
    data = str(main.dataset.path)
    config = write_yaml(root / "pretrain.yaml", {"latent_dim": 16, "epochs": 2, "patience": 2, "num_workers": 1})
    consoles = {"pretrain": run_job("pretrain", "--dataset", "mimic", "--data", data, "--config", str(config),
                                    "--experiment", "demo-mimic-pretrain", "--workdir", str(work))}
    (checkpoint,) = [line.split(": ", 1)[1] for line in consoles["pretrain"].splitlines()
                     if line.startswith("best checkpoint: ")]
    consoles["embed"] = run_job("embed", "--data", data, "--encoders", checkpoint, "--out", str(root / "embeddings"),
                                "--workdir", str(work))
    pair = {r.data.tags["initialisation"]: r for r in main.runs()["sequential"]}
    consoles["interpret"] = run_job(
        "interpret", "--run-id", pair["contrastive"].info.run_id, "--compare-run-id", pair["scratch"].info.run_id,
        "--remove", "time_series", "--stay-id", str(first_test_stay(pair["contrastive"])),
        "--out", str(root / "interpretation"), "--workdir", str(work))
    consoles["report"] = run_job("report", "--experiment", "demo-mimic", "--out", str(root / "report"),
                                 "--workdir", str(work))
    return main, consoles, root


def first_test_stay(run) -> int:
    return int(pd.read_parquet(Path(run.data.params["sequences"]) / "test.parquet")["stay_id"][0])


# --- checks shared by both demos ---------------------------------------------------------------------


def check_main_run(main: MainRun, name: str, reports: int = 1) -> dict[str, list]:
    """The console's stages and tables, and the experiment's runs: every stage FINISHED, the trials'
    headline test metrics finite, the report naming the dataset and where its data came from."""
    from clintraj.tasks import TASKS

    for stage in ("raw files -> cohort", "MGA pretraining", "embedding", "static baselines", "backbone sweep"):
        assert f": {stage}" in main.console and main.console.count(": done in") >= 6, main.console[-3000:]
    assert "| model | scratch | contrastive |" in main.console  # initialisations side by side
    assert "\n| llama3-8b | " in main.console and "\n| MLP | " in main.console
    runs = main.runs()
    expected = {"dataset": 1, "pretrain-sweep": 1, "pretrain-trial": 1, "static-baselines": 1, "static-baseline": 2,
                "backbone-sweep": 1, "sequential": 2, "report": reports}
    assert {stage: len(found) for stage, found in runs.items()} == expected
    assert all(run.info.status == "FINISHED" for found in runs.values() for run in found)
    headline = TASKS[main.task].headline
    for run in [*runs["static-baseline"], *runs["sequential"]]:
        assert run.data.tags["task"] == main.task
        values = {m: run.data.metrics[f"test_{m}"] for m in headline}
        assert all(math.isfinite(v) for v in values.values()), (run.info.run_name, values)
    assert {(r.data.tags["backbone"], r.data.tags["initialisation"]) for r in runs["sequential"]} == {
        ("llama3-8b", "contrastive"), ("llama3-8b", "scratch")}
    check_report(main.workdir / "report" / "report.html", name, main.dataset)
    return runs


def check_report(page: Path, name: str, dataset: Dataset) -> None:
    """The report's "What ran" row: the dataset by name, from real raw files, its stays per split, and
    what ran on it (the paper's tables name both datasets whatever ran)."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))
    splits = dataset.stays()["split"].value_counts()
    row = f"{name} real: raw files (--raw) {splits['train']} / {splits['val']} / {splits['test']} "
    assert row in text, text[text.find("What ran"):][:1500]
    ran = text[text.index(row):][:400]
    assert "MGA, a sweep of 1 trial; up to 1 epochs" in ran and "MLP; up to 2 epochs" in ran and "4 finished" in ran


# --- eICU ------------------------------------------------------------------------------------------


def test_the_main_job_on_the_eicu_demo(eicu_demo_jobs, eicu_demo_raw):
    _, prepared, main = eicu_demo_jobs
    check_main_run(main, "eICU")
    stays = main.dataset.stays()
    cohort = expected_cohort(eicu_demo_raw)  # the adult 12 h-30 d stays with lab results, from the CSVs
    status = {int(r["patientunitstayid"]): r["hospitaldischargestatus"] for r in rows(eicu_demo_raw / "patient.csv.gz")}
    assert set(stays["stay_id"]) == cohort
    assert int(stays["died"].sum()) == sum(status[s] == "Expired" for s in cohort) > 0
    assert f"{len(cohort)} stays" in main.console
    # the preprocess job writes what the main job's first stage wrote from the same files and settings
    pd.testing.assert_frame_equal(prepared.stays(), stays)
    assert prepared.report["tasks"]["los"]["stays"] == main.dataset.report["tasks"]["los"]["stays"]


def test_the_preprocess_job_on_the_eicu_demo(eicu_demo_jobs, eicu_demo_raw):
    console, prepared, _ = eicu_demo_jobs
    assert f"{len(expected_cohort(eicu_demo_raw))} stays written to {prepared.path}" in console
    assert prepared.name == "eicu" and (prepared.path / "report.md").is_file()


# --- MIMIC-IV ---------------------------------------------------------------------------------------


def test_the_main_job_on_the_mimic_demo_without_images_or_notes(mimic_demo_jobs, mimic_demo_raw):
    main, _, _ = mimic_demo_jobs
    check_main_run(main, "MIMIC-IV", reports=2)  # the main job's report and the report job's
    dataset = main.dataset
    stays = dataset.stays()
    with_series, with_demographics = demo_expected(mimic_demo_raw)  # straight from the CSVs
    assert set(stays["stay_id"]) == with_series | with_demographics
    admission = {int(r["stay_id"]): r["hadm_id"] for r in rows(mimic_demo_raw / mt.ICUSTAYS.path)}
    expired = {r["hadm_id"] for r in rows(mimic_demo_raw / mt.ADMISSIONS.path) if r["hospital_expire_flag"] == "1"}
    assert int(stays["died"].sum()) == sum(admission[s] in expired for s in stays["stay_id"]) > 0
    # CXR and notes: absent for every stay, in the dataset and in both embeddings
    assert not stays[[f"has_{m}" for m in MIMIC_ABSENT]].any().any()
    assert all(dataset.report["presence_share"][m] == 0 for m in MIMIC_ABSENT)
    folders = sorted((main.workdir / "mimic").glob("embeddings-*"))
    assert len(folders) == 2
    for folder in folders:
        check_absent_everywhere(Embeddings(folder), main.task)


def check_absent_everywhere(embeddings: Embeddings, task: str) -> None:
    """The modalities without data: not present for any stay, no event embedded, none in a timeline."""
    absent = [embeddings.modalities.index(m) for m in MIMIC_ABSENT]
    static = embeddings.static(task)
    present = pd.DataFrame(np.stack(static["present"].to_numpy()), columns=embeddings.modalities)
    assert len(static) > 0 and not present[list(MIMIC_ABSENT)].any().any()
    assert present["time_series"].any() and present["demographics"].all()
    assert all(embeddings.record["events"][m] == 0 for m in MIMIC_ABSENT)
    timelines = embeddings.timelines(task)
    assert not any(set(codes) & set(absent) for codes in timelines["modality"])


def test_the_pretrain_and_embed_jobs_on_the_mimic_demo(mimic_demo_jobs):
    from mlflow.tracking import MlflowClient

    main, consoles, root = mimic_demo_jobs
    client = MlflowClient(main.tracking.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("demo-mimic-pretrain").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "pretrain"
    losses = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(losses) == 2 and all(math.isfinite(m.value) for m in losses)
    assert math.isfinite(run.data.metrics["test_recall_at_10"])
    embeddings = Embeddings(root / "embeddings")
    assert embeddings.record["encoders"] == "contrastive" and embeddings.latent_dim == 16
    assert set(embeddings.record["tasks"]) == {"mortality", "phenotyping"}  # every task of the dataset
    for task in ("mortality", "phenotyping"):
        assert embeddings.record["tasks"][task]["stays"] == len(main.dataset.task_cohort(task))
        check_absent_everywhere(embeddings, task)
    assert f"written to {root / 'embeddings'}" in consoles["embed"]


def test_the_interpret_and_report_jobs_on_the_mimic_demo(mimic_demo_jobs):
    from mlflow.tracking import MlflowClient

    main, consoles, root = mimic_demo_jobs
    out = root / "interpretation"
    assert "without time_series" in consoles["interpret"]
    assert {p.name for p in (out / "stay").glob("heatmap_*.png")} >= {"heatmap_contrastive_full.png"}
    client = MlflowClient(main.tracking.uri)
    for run in main.runs()["sequential"]:
        logged = {a.path for a in client.list_artifacts(run.info.run_id, "interpretation")}
        assert "interpretation/stay" in logged
    report = root / "report" / "report.html"
    check_report(report, "MIMIC-IV", main.dataset)
    assert f"report written to {report}" in consoles["report"]
