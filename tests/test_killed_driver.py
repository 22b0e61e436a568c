"""Fault injection: the main job's driver SIGKILLed in the middle of the backbone sweep, then the
same command with --resume. The finished trials are not rerun, the interrupted one continues from
its last checkpoint in the MLflow run it had, and the trial runs at the end are an uninterrupted
run's: one FINISHED run per (backbone, initialisation, task)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from jobs_in_process import PAPER_SPLITS
from mlflow.tracking import MlflowClient

from clintraj.tracking import Tracking

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.own_ray]

CONFIG = {
    "base": "demo", "experiment": "killed", "datasets": ["eicu"], "synthetic_stays": {"eicu": 1500}, "seed": 4,
    "tasks": ["mortality"], "sequential_tasks": ["mortality"], "prepare": PAPER_SPLITS,
    "pretrain": {"epochs": 1, "patience": 1, "num_workers": 1},
    "pretrain_search": {"eicu": {"metric": "val_recall_at_10", "mode": "max", "num_samples": 1, "scheduler": "fifo",
                                 "params": {"missing_tokens_in_context": {"grid": [True]}}}},
    "static": {"epochs": 2, "patience": 2, "num_workers": 1},
    "static_search": {"params": {"architecture": {"grid": ["mlp"]}}},
    "sequential": {"epochs": 4, "patience": 4, "max_events": 32},  # long enough to be caught mid-trial
    # four trials, two at a time: some finish while others are still training when the driver dies
    "backbone_search": {"max_concurrent_trials": 2, "params": {"backbone": {"grid": ["llama3-8b", "phi3-mini"]}}},
}


def job(config: Path, workdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "jobs" / "sweep_backbones.py"), "--config", str(config),
                             "--workdir", str(workdir), *extra], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trial_runs(client: MlflowClient, experiment_id: str) -> list:
    return client.search_runs([experiment_id], "tags.stage = 'sequential'")


def test_a_driver_killed_mid_sweep_resumes_to_an_uninterrupted_runs_trials(tmp_path):
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    workdir = tmp_path / "work"
    client = MlflowClient(Tracking.resolve(None, workdir / "mlflow").uri)
    first = job(config, workdir)
    deadline, interrupted = time.time() + 900, None
    try:
        while time.time() < deadline and first.poll() is None:  # one trial done, another past its first epoch
            time.sleep(2)
            experiment = client.get_experiment_by_name("killed")
            runs = trial_runs(client, experiment.experiment_id) if experiment else []
            done = [r for r in runs if r.info.status == "FINISHED"]
            running = [r for r in runs if r.info.status == "RUNNING"  # past its first epoch, far from its last
                       and 1 <= len(client.get_metric_history(r.info.run_id, "val_auroc")) <= 3]
            if done and running:
                interrupted = running[0]
                break
        assert interrupted is not None, f"no moment to interrupt: {first.poll()} {first.stdout.read()[-3000:]}"
    finally:
        os.kill(first.pid, signal.SIGKILL)  # the driver, with no chance to clean up
        first.wait()
        time.sleep(3)
        try:  # what the dead driver's local Ray left behind
            os.killpg(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    experiment_id = client.get_experiment_by_name("killed").experiment_id
    before = {r.info.run_id: r for r in trial_runs(client, experiment_id)}
    finished = {run_id for run_id, r in before.items() if r.info.status == "FINISHED"}
    assert finished and before[interrupted.info.run_id].info.status == "RUNNING"

    again = job(config, workdir, "--resume")
    out, _ = again.communicate(timeout=1200)
    assert again.returncode == 0, out[-4000:]
    assert "reused the finished stage" in out  # pretraining and the static baselines

    after = {r.info.run_id: r for r in trial_runs(client, experiment_id)}
    keys = {(r.data.tags["backbone"], r.data.tags["initialisation"], r.data.tags["task"]) for r in after.values()}
    assert len(after) == len(keys) == 4 and all(r.info.status == "FINISHED" for r in after.values())
    for run_id in finished:  # not rerun: ended when they ended, their epochs logged once
        assert after[run_id].info.end_time == before[run_id].info.end_time
    # the interrupted trial went on in its own run, after its last checkpoint: no epoch logged twice
    steps = [m.step for m in client.get_metric_history(interrupted.info.run_id, "val_auroc")]
    assert sorted(set(steps)) == list(range(max(steps) + 1)) and steps.count(0) == 1, steps
    # the killed driver's Ray session logs (worker output) were moved into the work folder by the
    # next job; nothing of it is left in the temporary folder
    assert len(list((workdir / "logs").glob("ray-session_*"))) == 2
    owners = [p / "clintraj-owner.json" for p in Path(tempfile.gettempdir()).glob("clintraj-ray-*")]
    assert [o for o in owners if o.is_file() and str(workdir) in o.read_text()] == []
