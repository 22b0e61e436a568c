"""The MLflow UI over our runs: experiments tagged as machine-learning ones, run names that say
model, initialisation, task and dataset, and the runs link the jobs print, opened in headless
Chromium over a real `mlflow server` (tests/browser.py; the end-to-end test runs the same check
over the main job's own store)."""

import pytest
from browser import check_runs_view

from clintraj import names
from clintraj.tracking import TRIAL_FILTER, Tracking


def job_like_store(tracking: Tracking, experiment: str) -> list[str]:
    """An experiment with the main job's kinds of runs, named as the workflows name them: a dataset
    run, pretraining, and per sweep a parent run with its trials as children. Returns the trials'
    names."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.uri)
    experiment_id = tracking.experiment(experiment)
    for stage in ("dataset", "pretrain"):
        run = client.create_run(experiment_id, run_name=names.stage_run(stage, "eicu"),
                                tags={"stage": stage, "dataset": "eicu"})
        client.set_terminated(run.info.run_id)
    trials = []
    for sweep, stage, models in (("static-baselines", "static-baseline", ("mlp",)),
                                 ("backbone-sweep", "sequential", ("llama3-8b", "phi3-mini"))):
        parent = client.create_run(experiment_id, run_name=names.stage_run(sweep, "eicu"),
                                   tags={"stage": sweep, "dataset": "eicu"})
        for number, (model, init) in enumerate((m, i) for m in models for i in ("contrastive", "scratch")):
            trial_id = f"5f0e1_{number:05d}"
            name = names.trial_run(names.model(model), init, "mortality", "eicu", trial_id)
            run = client.create_run(experiment_id, run_name=name, tags={
                "mlflow.parentRunId": parent.info.run_id, "dataset": "eicu", "task": "mortality",
                "architecture" if stage == "static-baseline" else "backbone": model, "initialisation": init,
                "stage": stage, "trial_id": trial_id})
            client.log_metric(run.info.run_id, "test_auroc", 0.7 + 0.01 * number)
            client.set_terminated(run.info.run_id)
            trials.append(name)
        client.set_terminated(parent.info.run_id)
    return trials


def test_run_names_and_the_runs_link():
    assert names.trial_run("MLP", "contrastive", "mortality", "eicu", "5f0e1_00000") == \
        "MLP · contrastive · mortality · eICU · 5f0e1_00000"
    assert names.stage_run("backbone-sweep", "mimic") == "backbone sweep · MIMIC-IV"
    assert names.stage_run("pretrain", "eicu", "5f0e1_00001") == "MGA pretraining · eICU · trial 5f0e1_00001"
    tracking = Tracking("sqlite:////tmp/unused/mlflow.db", None)
    assert tracking.runs_url("3") == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&searchFilter=tags.task%20IS%20NOT%20NULL&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true")
    server = Tracking("http://mlflow.example:5000/", None)  # a tracking server serves its UI too
    assert server.runs_url("7").startswith("http://mlflow.example:5000/#/experiments/7/runs?workflowType=")


@pytest.mark.slow  # an MLflow server and Chromium: about half a minute
def test_the_mlflow_ui_opens_the_link_on_the_trial_runs_listed_by_name(tmp_path):
    from mlflow.tracking import MlflowClient

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    client = MlflowClient(tracking.uri)
    older = client.create_experiment("made-before")  # untagged, as MLflow makes them: tagged when next used
    assert tracking.experiment("made-before") == older
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == "custom_model_development"
    trials = job_like_store(tracking, "ui-test")
    selected = client.search_runs([tracking.experiment("ui-test")], TRIAL_FILTER)
    assert sorted(r.info.run_name for r in selected) == sorted(trials)  # no sweep, dataset or pretraining run
    page = check_runs_view(tracking, "ui-test", trials, tmp_path / "server")
    assert names.stage_run("backbone-sweep", "eicu") not in page  # the sweeps' parent runs are not listed
    assert page.index(trials[2]) < page.index(trials[3])  # sorted by name: llama3-8b contrastive, then scratch
