"""The canary run: synthetic raw MIMIC-IV (with notes and CXR) with canaries planted (a sentence in
every note, a stay id and a subject id that cannot occur by chance, a date), then the main job end
to end on it as a user runs it (its own process and its own local Ray) and the interpretation job on
the canary stay. tests/test_canaries.py scans everything it leaves; tests/test_pretrain_ray.py reads
its pretraining inputs. One run for both: `canary_run` in tests/conftest.py."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from jobs_in_process import small_config

from clintraj.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]

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


@dataclass
class CanaryRun:
    raw: Path
    workdir: Path
    outputs: dict[str, str]  # job -> its stdout and stderr

    @property
    def pretraining(self) -> dict:
        """The main job's pretraining sweep summary (its best trial's checkpoint, meta and retrieval)."""
        (result,) = (self.workdir / "mimic").glob("pretrain-*/result.json")
        return json.loads(result.read_text())


def job(*arguments: str) -> str:
    done = subprocess.run([sys.executable, *arguments], cwd=REPO, capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "RAY_ADDRESS": ""})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


def run_canaries(root: Path) -> CanaryRun:
    """The main job, then the interpretation job on the canary stay, on synthetic raw MIMIC-IV with
    the canaries planted: the run tests/test_canaries.py scans (and tests/test_pretrain_ray.py
    reads the pretraining of: `tests/conftest.py`'s session fixture `canary_run`)."""
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


