"""Nothing identifying leaves the work folder (README: logs and MLflow never carry note text,
identifiers or dates). Canaries are planted in synthetic raw MIMIC-IV (with notes and CXR): a
sentence in every note, a stay id and a subject id that cannot occur by chance, and a date. The
main job runs end to end on it as a user runs it (its own process and its own local Ray), then the
interpretation job on a test stay; every MLflow param, tag, metric name, run name and artifact,
both jobs' stdout and stderr, and everything under the work folder's logs/ (the jobs' log files and
Ray's session logs, which hold the workers' output) are scanned: zero hits."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from jobs_in_process import small_config

from clintraj.artifacts.dataset import Dataset
from clintraj.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

NOTE = "Mrs Quillfeather-Oakhurst mentioned the violet lighthouse on Tuesday."
STAY, SUBJECT = 987654321, 918273645  # ten times any MIMIC-IV id: no stay or subject has them by chance
DATE = pd.Timestamp("2197-11-23")  # the canary stay's ICU admission day; no other row has it
CANARIES = {
    "note text": re.compile(r"quillfeather|violet lighthouse", re.IGNORECASE),
    "stay id": re.compile(rf"(?<!\d){STAY}(?!\d)"),
    "subject id": re.compile(rf"(?<!\d){SUBJECT}(?!\d)"),
    "date": re.compile("|".join(re.escape(DATE.strftime(f)) for f in ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%m/%d/%Y"))),
}
TIMES = ("intime", "outtime", "admittime", "dischtime", "deathtime", "edregtime", "edouttime", "charttime",
         "storetime", "dod")


def plant(raw: Path) -> int:
    """Plant the canaries in the synthetic raw folder, keeping every file valid: the sentence at the
    end of every note; the stay with the largest id becomes STAY and its subject SUBJECT (both stay
    last in id order, so the splits are those of the unplanted data) in every table, image folder
    and note id; that subject's times all move by whole days so the stay's admission falls on DATE.
    Returns the canary stay's former id."""
    stays = pd.read_csv(raw / "icu" / "icustays.csv.gz", dtype=str, keep_default_na=False)
    last = stays.loc[stays["stay_id"].astype(int).idxmax()]
    old_stay, old_subject = last["stay_id"], last["subject_id"]
    shift = DATE - pd.Timestamp(last["intime"]).normalize()
    years = (pd.Timestamp(last["intime"]) + shift).year - pd.Timestamp(last["intime"]).year
    for path in sorted(raw.rglob("*.csv.gz")):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert not table.apply(lambda column: column.str.contains(DATE.strftime("%Y-%m-%d"))).any().any(), path
        mine = table["subject_id"] == old_subject
        table.loc[mine, "subject_id"] = str(SUBJECT)
        if "stay_id" in table:
            table.loc[table["stay_id"] == old_stay, "stay_id"] = str(STAY)
        for column in [c for c in TIMES if c in table]:
            when = mine & (table[column] != "")
            moved = pd.to_datetime(table.loc[when, column]) + shift
            table.loc[when, column] = moved.dt.strftime("%Y-%m-%d" if column == "dod" else "%Y-%m-%d %H:%M:%S")
        if "anchor_year" in table:
            table.loc[mine, "anchor_year"] = (table.loc[mine, "anchor_year"].astype(int) + years).astype(str)
        if "StudyDate" in table:
            moved = pd.to_datetime(table.loc[mine, "StudyDate"], format="%Y%m%d") + shift
            table.loc[mine, "StudyDate"] = moved.dt.strftime("%Y%m%d")
        if "note_id" in table:
            table.loc[mine, "note_id"] = table.loc[mine, "note_id"].str.replace(old_subject, str(SUBJECT), n=1)
            table["text"] = table["text"] + "\n" + NOTE
        with gzip.open(path, "wt", newline="") as handle:
            table.to_csv(handle, index=False)
    images = raw / "mimic-cxr-jpg" / "files" / f"p{old_subject[:2]}" / f"p{old_subject}"
    if images.is_dir():
        target = raw / "mimic-cxr-jpg" / "files" / f"p{str(SUBJECT)[:2]}" / f"p{SUBJECT}"
        target.parent.mkdir(parents=True, exist_ok=True)
        images.rename(target)
    return int(old_stay)


def hits(text: str, where: str) -> list[tuple[str, str]]:
    return [(where, name) for name, pattern in CANARIES.items() if pattern.search(text)]


def file_text(path: Path) -> str:
    """A file as text to scan: a table's cells written out, anything else its bytes decoded."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv(index=False)
    return path.read_bytes().decode("utf-8", errors="replace")


@dataclass
class CanaryRun:
    raw: Path
    workdir: Path
    outputs: dict[str, str]  # job -> its stdout and stderr


def job(*arguments: str) -> str:
    done = subprocess.run([sys.executable, *arguments], cwd=REPO, capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "RAY_ADDRESS": ""})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


@pytest.fixture(scope="session")
def canary_run(tmp_path_factory) -> CanaryRun:
    root = tmp_path_factory.mktemp("canaries")
    raw, workdir = root / "mimic-raw", root / "work"
    generate("mimic", raw, n_stays=300, seed=0)
    plant(raw)
    # the seed of the splits that puts the canary stay in the phenotyping task's test split (the
    # generator's data with seed 0): its predictions and its interpretation are made and logged, and
    # its radiology report (the whole stay is the window) is in its timeline
    config = small_config("canaries", "mimic", "phenotyping", {"seed": 0})
    (root / "canaries.yaml").write_text(yaml.safe_dump(config))
    outputs = {"sweep_backbones": job("jobs/sweep_backbones.py", "--config", str(root / "canaries.yaml"),
                                      "--dataset", "mimic", "--raw", str(raw), "--workdir", str(workdir))}
    from mlflow.tracking import MlflowClient

    from clintraj.tracking import Tracking

    client = MlflowClient(Tracking.resolve(None, workdir / "mlflow").uri)
    trials = client.search_runs([client.get_experiment_by_name("canaries").experiment_id], "tags.stage = 'sequential'")
    pair = {run.data.tags["initialisation"]: run for run in trials}
    test = pd.read_parquet(Path(pair["contrastive"].data.params["sequences"]) / "test.parquet")["stay_id"].tolist()
    assert STAY in test, "the canary stay is not a test stay: pick the splits' seed again (a generator change?)"
    outputs["interpret"] = job("jobs/interpret.py", "--run-id", pair["contrastive"].info.run_id, "--compare-run-id",
                               pair["scratch"].info.run_id, "--remove", "radiology_note", "--stay-id", str(STAY),
                               "--out", str(root / "interpretation"), "--workdir", str(workdir))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return CanaryRun(raw, workdir, outputs)


def test_no_note_text_identifier_or_date_leaves_the_work_folder(canary_run, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from clintraj.tracking import Tracking

    # the canaries are in the raw data the job ran on, and reached its dataset
    raw = canary_run.raw
    icu = pd.read_csv(raw / "icu" / "icustays.csv.gz", dtype=str)
    canary = icu[icu["stay_id"] == str(STAY)]
    assert len(canary) == 1 and canary["subject_id"].item() == str(SUBJECT)
    assert pd.Timestamp(canary["intime"].item()).normalize() == DATE
    for kind in ("discharge", "radiology"):
        notes = pd.read_csv(raw / "mimic-iv-note" / "note" / f"{kind}.csv.gz", dtype=str)
        assert notes["text"].str.endswith(NOTE).all()
    assert (notes["subject_id"] == str(SUBJECT)).any()  # the canary stay's radiology reports
    (dataset,) = (canary_run.workdir / "datasets").iterdir()
    stays = Dataset(dataset).stays().set_index("stay_id")
    assert stays.loc[STAY, "has_radiology_note"]

    found, scanned = [], {"mlflow runs": 0, "artifact files": 0, "log files": 0}
    for name, output in canary_run.outputs.items():
        found += hits(output, f"{name} stdout/stderr")

    client = MlflowClient(Tracking.resolve(None, canary_run.workdir / "mlflow").uri)
    for experiment in client.search_experiments():
        found += hits(f"{experiment.name} {experiment.tags}", f"experiment {experiment.name}")
        for run in client.search_runs([experiment.experiment_id]):
            scanned["mlflow runs"] += 1
            where = f"run {run.info.run_name}"
            found += hits(f"{run.info.run_name}", where)
            found += hits("\n".join(f"{k}={v}" for k, v in run.data.params.items()), f"{where} params")
            found += hits("\n".join(f"{k}={v}" for k, v in run.data.tags.items()), f"{where} tags")
            found += hits("\n".join(run.data.metrics), f"{where} metric names")
            local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / run.info.run_id),
                                                             tracking_uri=client.tracking_uri))
            for path in (p for p in local.rglob("*") if p.is_file()):
                scanned["artifact files"] += 1
                found += hits(file_text(path), f"{where} artifact {path.relative_to(local)}")

    # the jobs' logs, and the local Ray's session logs: in work/ray/ when that path is short enough
    # for Ray's sockets, else moved to work/logs/ray-session_* when Ray stops (clintraj.runtime)
    work = canary_run.workdir
    ray_logs = [*work.glob("ray/session_2*/logs"), *work.glob("logs/ray-session_*")]
    assert ray_logs and any(p.name.startswith("worker-") for folder in ray_logs for p in folder.iterdir()), \
        "the local Ray's session logs (the workers' output) were not kept in the work folder"
    for folder in [work / "logs", *work.glob("ray/session_2*/logs")]:
        for path in (p for p in folder.rglob("*") if p.is_file()):
            scanned["log files"] += 1
            found += hits(file_text(path), f"log {path.relative_to(work)}")

    print(scanned)
    assert scanned["mlflow runs"] >= 10 and scanned["artifact files"] >= 20 and scanned["log files"] >= 10, scanned
    assert not found, sorted(set(found))
    # the scan finds what is there: the dataset's stays and notes, and the interpreted stay's own
    # events, all kept in the work folder only
    local = {name for path in dataset.rglob("*") if path.is_file() and path.suffix in (".parquet", ".csv")
             for _, name in hits(file_text(path), "local")}
    assert {"stay id", "note text"} <= local
    (events,) = (canary_run.workdir.parent / "interpretation" / "stay").glob("stay*_events.csv")
    assert {("local", "stay id"), ("local", "note text")} <= set(hits(file_text(events), "local"))
