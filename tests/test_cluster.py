"""Beyond one machine: on a local Ray cluster of two nodes, preprocessing (eICU and MIMIC-IV) reads
its raw tables as Ray tasks spread over both nodes and writes the single-process run's dataset
byte for byte, and the embedding stage, spread over both nodes, gives the one-node embeddings."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clintraj.artifacts.embeddings import Embeddings
from clintraj.data.rawio import Quarantine, read_apart
from clintraj.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]


def digests(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def job_logs(workdir: Path) -> str:
    return "".join(path.read_text() for path in (workdir / "logs").glob("*.log"))


def reader(table: str, rows: list[int]):
    def read(quarantine: Quarantine) -> str:
        quarantine.count_read(table, len(rows) + 3)
        quarantine.add(table, "malformed", rows)
        quarantine.add(table, "a field missing", rows[:1], field_only=True)
        quarantine.count_filtered(table, "another stay", 2)
        quarantine.count_used(table, 1)
        return table

    return read


def test_readers_with_ledgers_of_their_own_leave_the_ledger_of_reading_in_turn():
    # two readers share a (table, reason): its rows are listed once, in row order
    readers = [reader("a.csv", [5, 6]), reader("b.csv", [0]), reader("a.csv", [1])]
    in_turn, apart = Quarantine(), Quarantine()
    assert [read(in_turn) for read in readers] == read_apart(readers, apart) == ["a.csv", "b.csv", "a.csv"]
    assert apart.frame()["row"].tolist() == [1, 5, 1, 5, 6, 0, 0]  # a's field entries, a's rows, then b's
    assert apart.frame().equals(in_turn.frame())
    assert apart.summary() == in_turn.summary() and apart.accounts() == in_turn.accounts()
    assert apart.accounts()[0] == {"table": "a.csv", "rows": 9, "used": 2, "filtered": {"another stay": 4},
                                   "quarantined": {"malformed": 3}, "used_with_a_field_missing": {"a field missing": 2},
                                   "unaccounted": 0}


@pytest.mark.slow
@pytest.mark.own_ray
def test_prepare_and_embed_on_two_nodes_match_one_process(tmp_path):
    raw = {"eicu": tmp_path / "eicu", "mimic": tmp_path / "mimic"}
    generate("eicu", raw["eicu"], n_stays=300, seed=5, progress=False)
    generate("mimic", raw["mimic"], n_stays=120, seed=5, progress=False)
    config = tmp_path / "prepare.yaml"
    config.write_text(yaml.safe_dump({"eicu": {"lab_min_count": 100}}))

    def arguments(dataset: str, run: str) -> list[str]:
        sources = ["--cxr", str(raw["mimic"] / "mimic-cxr-jpg"), "--notes", str(raw["mimic"] / "mimic-iv-note")]
        return ["--dataset", dataset, "--raw", str(raw[dataset]), *(sources if dataset == "mimic" else []),
                "--config", str(config), "--out", str(tmp_path / f"{dataset}-{run}"),
                "--workdir", str(tmp_path / f"job-{dataset}-{run}")]

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # no cluster: one process, no Ray
    for dataset in raw:
        subprocess.run([sys.executable, "jobs/preprocess.py", *arguments(dataset, "serial")], cwd=REPO, env=env,
                       check=True, timeout=600)
    assert "Ray tasks" not in job_logs(tmp_path / "job-eicu-serial")

    cluster_jobs = json.dumps([arguments(dataset, "cluster") for dataset in raw])
    done = subprocess.run([sys.executable, "tests/multinode.py", str(raw["eicu"]), str(tmp_path),
                           str(tmp_path / "eicu-serial"), cluster_jobs], cwd=REPO, env=env, capture_output=True,
                          check=False, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]

    # prepare: the raw tables were read on both nodes (eICU: 5 tables; MIMIC-IV: the measurements,
    # CXR metadata and two note files), and each dataset is the single-process one, file by file
    for dataset, tables in (("eicu", 5), ("mimic", 4)):
        log = job_logs(tmp_path / f"job-{dataset}-cluster")
        assert f"raw tables: {tables} Ray tasks on 2 nodes" in log, log[-3000:]
        serial, cluster = digests(tmp_path / f"{dataset}-serial"), digests(tmp_path / f"{dataset}-cluster")
        assert len(serial) > 10 and any(name.endswith(".parquet") for name in serial)
        assert cluster == serial, dataset

    # embed: actors on both nodes, the one-node embeddings within float tolerance
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(seen["nodes"]["cluster"]) == 2 and len(seen["nodes"]["one"]) == 1
    assert seen["failure"] == {"type": "RawDataError", "message": f"missing raw file: {raw['eicu'] / 'absent.csv.gz'}"}
    one, two = Embeddings(tmp_path / "emb-one"), Embeddings(tmp_path / "emb-cluster")
    tasks = list(one.record["tasks"])
    assert tasks and list(two.record["tasks"]) == tasks
    for task in tasks:
        a, b = (e.static(task).sort_values("stay_id", ignore_index=True) for e in (one, two))
        assert len(a) > 50 and a["stay_id"].tolist() == b["stay_id"].tolist()
        vectors = [c for c in a.columns if c.endswith(".h")]
        assert vectors
        for column in vectors:
            np.testing.assert_allclose(np.stack(a[column]), np.stack(b[column]), rtol=1e-5, atol=1e-6)
        a, b = (e.timelines(task).sort_values("stay_id", ignore_index=True) for e in (one, two))
        assert a["stay_id"].tolist() == b["stay_id"].tolist() and a["n_events"].sum() > len(a)
        for x, y in zip(events_by_stay(a), events_by_stay(b)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def events_by_stay(timelines: pd.DataFrame):
    """Per stay, its events as rows (time, modality, h...) in a canonical order: events tied on
    (time, modality) may come in either order (Ray Data keeps no block order), so ties are
    ordered by their rounded values."""
    for _, stay in timelines.iterrows():
        h = np.asarray(stay["h"], dtype=np.float64).reshape(stay["n_events"], -1)
        rows = np.column_stack([np.asarray(stay["time_hours"]), np.asarray(stay["modality"]), h])
        yield rows[np.lexsort(np.round(rows, 4).T[::-1])]
