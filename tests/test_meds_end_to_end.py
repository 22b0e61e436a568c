"""The main job end to end on a MEDS folder, as a user runs it (`jobs/sweep_backbones.py --dataset
meds --raw DIR`, in this process on the session's Ray: tests/test_canaries.py and
tests/test_killed_driver.py run it in its own process with its own local Ray): MEDS folder ->
dataset -> MGA pretraining -> embeddings -> static baseline -> backbone sweep (one tiny backbone) ->
report -> MLflow."""

import yaml
from jobs_in_process import PAPER_SPLITS, run_job
from meds_folders import synthetic_icu, write_meds

from clintraj import names

# marked slow by tests/conftest.py, as every test that uses ray_local

CONFIG = {
    "base": "demo", "experiment": "meds-e2e", "seed": 1,
    "tasks": ["mortality"], "sequential_tasks": ["mortality"], "prepare": PAPER_SPLITS,
    "pretrain": {"latent_dim": 32, "epochs": 2, "patience": 2, "num_workers": 1},
    "static": {"epochs": 4, "patience": 4, "num_workers": 1},
    "static_search": {"metric": "val_score", "mode": "max", "num_samples": 1, "max_concurrent_trials": 2,
                      "params": {"architecture": {"grid": ["mlp"]}}},
    "sequential": {"weights": "tiny", "epochs": 1, "patience": 1, "max_events": 48, "batch_size": 16, "lr": 1.0e-3,
                   "deepspeed_stage": 0, "loss_on": "last_predict"},
    "backbone_search": {"metric": "val_score", "mode": "max", "num_samples": 1, "max_concurrent_trials": 2,
                        "params": {"backbone": {"grid": ["llama3-8b"]}}},
}


def test_the_main_job_runs_on_a_meds_folder(tmp_path, ray_local):
    from mlflow.tracking import MlflowClient

    from clintraj.artifacts.dataset import Dataset
    from clintraj.tracking import Tracking

    raw = write_meds(synthetic_icu(subjects=1000, seed=5), tmp_path / "mimic-meds")
    config = tmp_path / "meds-e2e.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    workdir = tmp_path / "work"
    console = run_job("sweep_backbones", "--config", str(config), "--dataset", "meds", "--raw", str(raw),
                      "--splits", "meds", "--workdir", str(workdir))
    assert "MEDS dataset (no paper table)" in console and "| llama3-8b | " in console
    heading = names.section("meds", "mortality", "48 h after ICU admission")  # one table per task
    assert f"{heading}: AUROC\n| model | " in console

    dataset = Dataset(next((workdir / "datasets").iterdir()))
    assert dataset.name == "meds" and dataset.report["reading"]["splits"] == "meds"
    tracking = Tracking.resolve(None, workdir / "mlflow")
    client = MlflowClient(tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("meds-e2e").experiment_id])
    by_stage = {}
    for run in runs:
        by_stage.setdefault(run.data.tags.get("stage"), []).append(run)
    assert {"dataset", "pretrain", "static-baseline", "sequential", "backbone-sweep", "report"} <= set(by_stage)
    static = by_stage["static-baseline"]
    print("static test AUROC", {r.data.tags["initialisation"]: r.data.metrics["test_auroc"] for r in static})
    assert len(static) == 2 and all(r.info.status == "FINISHED" and r.data.tags["dataset"] == "meds" for r in static)
    assert max(r.data.metrics["test_auroc"] for r in static) >= 0.7  # the planted signal, from the MEDS rows
    sequential = by_stage["sequential"]
    assert len(sequential) == 2 and all(r.info.status == "FINISHED" for r in sequential)
    assert all(r.data.params["prediction_hours"] == "48" for r in [*static, *sequential])
    assert (workdir / "report" / "report.html").is_file()
