"""An MLflow run ends as what happened to it: FINISHED, FAILED on an exception, KILLED when the job
that owned it was killed (found by the next job over the same store)."""

import signal
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from clintraj.tracking import OWNER_TAG, Tracking, owner_tags
from clintraj.tuning import trial_run


def killed_job_leaves_a_running_run(tracking: Tracking) -> str:
    """A job's process opens a run (owned by it, as the jobs' runs are) and is SIGKILLed."""
    script = textwrap.dedent(f"""
        import os, signal
        import mlflow
        from clintraj.tracking import Tracking, owner_tags
        tracking = Tracking({tracking.uri!r}, {tracking.artifact_root!r})
        mlflow.set_tracking_uri(tracking.uri)
        run = mlflow.start_run(experiment_id=tracking.experiment("e"), tags=owner_tags())
        print(run.info.run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    return done.stdout.split()[-1]


def test_runs_of_a_killed_job_are_marked_killed_by_the_next_job(tmp_path):
    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    orphan = killed_job_leaves_a_running_run(tracking)
    client = MlflowClient(tracking.uri)
    experiment_id = client.get_experiment_by_name("e").experiment_id
    assert client.get_run(orphan).info.status == "RUNNING"
    alive = client.create_run(experiment_id, tags=owner_tags()).info.run_id  # this process: alive
    elsewhere = client.create_run(experiment_id, tags={OWNER_TAG: "another-host:1:1"}).info.run_id
    unowned = client.create_run(experiment_id).info.run_id  # not one of our jobs' runs

    assert tracking.experiment("e") == experiment_id  # the next job over the store
    assert client.get_run(orphan).info.status == "KILLED"
    assert {client.get_run(r).info.status for r in (alive, elsewhere, unowned)} == {"RUNNING"}
    assert tracking.end_abandoned_runs(experiment_id) == 0  # nothing left to end


def test_a_trial_run_fails_with_its_trial_and_is_reopened_by_the_retry(tmp_path):
    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    client = MlflowClient(tracking.uri)
    experiment_id = tracking.experiment("e")
    parent = client.create_run(experiment_id, tags=owner_tags()).info.run_id
    tags = {"mlflow.parentRunId": parent, "trial_id": "t_00001", "stage": "sequential"}

    with pytest.raises(RuntimeError, match="worker died"), trial_run(client, experiment_id, "a trial", tags) as first:
        assert client.get_run(first).info.status == "RUNNING"
        raise RuntimeError("worker died")
    assert client.get_run(first).info.status == "FAILED"
    # the trial's owner is its sweep's: the job, not the Tune process the trial ran in
    assert client.get_run(first).data.tags[OWNER_TAG] == owner_tags()[OWNER_TAG]

    with trial_run(client, experiment_id, "a trial", tags) as again:  # Tune's retry of the same trial
        client.log_metric(again, "test_auroc", 0.8)
    assert again == first and client.get_run(first).info.status == "FINISHED"
    other = {**tags, "trial_id": "t_00002"}
    with pytest.raises(SystemExit), trial_run(client, experiment_id, "another trial", other) as second:
        raise SystemExit(0)  # how Tune stops a trial its scheduler gave up on
    assert second != first and client.get_run(second).info.status == "KILLED"
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["trial_id"] for r in children) == ["t_00001", "t_00002"]


class Sweep:
    """A Tuner's fit() result as `tuning.fit` reads it: the trials and their errors."""

    def __init__(self, trials: int, errors: list):
        self.results = type("Results", (list,), {"errors": errors})(range(trials))

    def fit(self):
        return self.results


def test_a_sweep_whose_every_trial_failed_is_an_error_naming_the_cause(caplog):
    from ray.exceptions import RayTaskError

    from clintraj.tuning import fit

    cause = RayTaskError("trial", "traceback text", ValueError("no positive label in the training split\nmore"))
    with pytest.raises(RuntimeError, match=r"every trial of the backbone sweep failed \(2\); the first: "
                                           r"ValueError: no positive label in the training split$"):
        fit(Sweep(2, [cause, cause]), "backbone sweep")
    assert len(fit(Sweep(3, [cause]), "backbone sweep")) == 3  # some failed: the sweep goes on, saying so
    assert "1 of 3 trials of the backbone sweep failed" in caplog.text
