"""Nothing identifying leaves the work folder (README: logs and MLflow never carry note text,
identifiers or dates). Canaries are planted in synthetic raw MIMIC-IV (with notes and CXR): a
sentence in every note, a stay id and a subject id that cannot occur by chance, and a date. The
main job runs end to end on it as a user runs it (its own process and its own local Ray), then the
interpretation job on a test stay; every MLflow param, tag, metric name, run name and artifact,
both jobs' stdout and stderr, and everything under the work folder's logs/ (the jobs' log files and
Ray's session logs, which hold the workers' output) are scanned: zero hits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from canary_run import CANARIES, DATE, NOTE, STAY, SUBJECT

from clintraj.artifacts.dataset import Dataset

pytestmark = [pytest.mark.slow, pytest.mark.own_ray]


def hits(text: str, where: str) -> list[tuple[str, str]]:
    return [(where, name) for name, pattern in CANARIES.items() if pattern.search(text)]


def file_text(path: Path) -> str:
    """A file as text to scan: a table's cells written out, anything else its bytes decoded."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv(index=False)
    return path.read_bytes().decode("utf-8", errors="replace")


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
