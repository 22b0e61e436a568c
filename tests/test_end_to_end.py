"""The main job's slice, end to end on local Ray: synthetic raw -> dataset -> Ray Train -> MLflow."""

import pytest

from clintraj.config import from_dict
from clintraj.tracking import Tracking
from clintraj.workflows.end_to_end import EndToEndConfig, run

pytestmark = pytest.mark.slow


def test_end_to_end_slice_learns_and_lands_in_mlflow(tmp_path, ray_local):
    from mlflow.tracking import MlflowClient

    config = from_dict(EndToEndConfig, {
        "experiment": "e2e-test", "synthetic_stays": 6000, "seed": 3,
        "train": {"epochs": 8, "patience": 8, "batch_size": 64},
    })
    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    results = run(config, tmp_path, tracking)
    print({task: {k: v for k, v in m.items() if k.startswith("test_")} for task, m in results.items()})

    # the planted signal is learned from the raw files through the whole pipeline
    assert results["mortality"]["test_auroc"] >= 0.75
    assert results["los"]["test_spearman"] >= 0.3
    for metrics in results.values():
        assert (tmp_path / "runs").exists() and metrics["checkpoint"]

    client = MlflowClient(tracking.uri)
    experiment = client.get_experiment_by_name("e2e-test")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.run_name for r in runs} == {"end-to-end", "static-mlp-mortality", "static-mlp-los"}
    assert all(r.info.status == "FINISHED" for r in runs)
    child = next(r for r in runs if r.info.run_name == "static-mlp-mortality")
    assert child.data.tags["task"] == "mortality" and child.data.tags["architecture"] == "mlp"
    assert child.data.params["train.epochs"] == "8"
    history = client.get_metric_history(child.info.run_id, "val_auroc")
    assert 1 <= len(history) <= 8 and [m.step for m in history] == list(range(len(history)))
    assert child.data.metrics["test_auroc"] == pytest.approx(results["mortality"]["test_auroc"])
