"""Sequential fine-tuning through Ray Train: QLoRA + 8-bit AdamW + DeepSpeed ZeRO-2 on two gloo
workers learns a planted signal, and the saved adapter reproduces the test predictions exactly; a
worker killed after an epoch's checkpoint is restarted and the run resumes at the next epoch; a run
restarted after its final report reports it again instead of training."""

from __future__ import annotations

import json

import numpy as np
import torch

from clintraj.metrics.prediction import binary_metrics
from clintraj.artifacts.sequences import Sequences
from clintraj.data.sequences import bucketed
from clintraj.training import decoder
from clintraj.training import sequential as seq
from planted import LATENT, write_planted
from train_workers import kill_newest_worker_once

# marked slow by tests/conftest.py, as every test that uses ray_local


def test_qlora_deepspeed_zero2_on_two_workers_learns_and_reloads_exactly(tmp_path, ray_local):
    sequences = write_planted(tmp_path / "sequences")
    config = seq.SequentialTrainConfig(
        task="mortality", backbone="llama3-8b", weights="tiny", tiny_root=str(tmp_path / "tiny"),
        quantization="nf4", optimizer="adamw8bit", deepspeed_stage=2, num_workers=2, cpus_per_worker=0.5,
        epochs=2, patience=2, batch_size=16, lr=2e-3, modality_dropout=0.1)
    trainer, _ = seq.trainer(sequences, config, tmp_path / "ray", "planted")
    result = trainer.fit()
    finished = seq.finished(result)
    y, output = seq.outputs(finished["predictions"])
    auroc = binary_metrics(y, output)["auroc"]
    print("test AUROC", auroc, finished["metrics"])
    assert auroc >= 0.7
    assert len(finished["predictions"]) == 128
    history = result.metrics_dataframe
    assert {"train_loss", "val_auroc", "train_tokens_per_s", "data_wait_share"} <= set(history.columns)

    torch.set_num_threads(1)
    with result.checkpoint.as_directory() as directory:
        model, record = decoder.load_checkpoint(directory)
    assert record["quantization"] == "nf4" and record["attention"] == "sdpa" and record["precision"] == "fp32"
    reloaded = seq.predict(model, bucketed([Sequences(sequences).split("test")], 16, shuffle=False), LATENT, "cpu")
    assert np.array_equal(np.stack(reloaded["output"]), np.stack(finished["predictions"]["output"]))


def test_a_killed_worker_resumes_at_the_next_epoch(tmp_path, ray_local):
    from ray.train import UserCallback

    record = tmp_path / "reports.jsonl"

    class Reports(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            with open(record, "a") as handle:
                handle.write(json.dumps({k: v for k, v in metrics[0].items() if k in ("epoch", "final")}) + "\n")

    sequences = write_planted(tmp_path / "sequences", n_train=192, n_eval=64)
    config = seq.SequentialTrainConfig(
        task="mortality", backbone="llama3-8b", weights="tiny", tiny_root=str(tmp_path / "tiny"),
        quantization="nf4", optimizer="adamw8bit", deepspeed_stage=0, num_workers=1, epochs=3, patience=3,
        batch_size=16, lr=2e-3, robustness_removed=0, max_failures=2)
    storage = tmp_path / "ray"
    done, killed = kill_newest_worker_once(storage, "trainer_state.json")
    trainer, _ = seq.trainer(sequences, config, storage, "killed", callbacks=[Reports()])
    result = trainer.fit()
    done.set()
    assert len(killed) == 1, "no Ray Train worker was killed: the resume was never exercised"
    reports = [json.loads(line) for line in record.read_text().splitlines()]
    epochs = [r["epoch"] for r in reports if not r.get("final")]
    assert epochs == [0, 1, 2]  # every epoch trained and reported once, across the restart
    assert len(seq.finished(result)["predictions"]) == 64


def test_a_run_restarted_after_its_final_report_reports_it_again_without_training(tmp_path, ray_local):
    """A trial killed between its final report and closing its MLflow run is run again by a resumed
    sweep: it finds its final checkpoint and reports that, rather than training from scratch."""
    from ray import tune
    from ray.train import UserCallback

    from clintraj.tuning import SearchSpace, tuner

    sequences = write_planted(tmp_path / "sequences", n_train=64, n_eval=32)
    config = seq.SequentialTrainConfig(
        task="mortality", backbone="llama3-8b", weights="tiny", tiny_root=str(tmp_path / "tiny"), quantization="none",
        optimizer="adamw", deepspeed_stage=0, num_workers=1, epochs=2, patience=2, batch_size=16, lr=2e-3,
        robustness_removed=0)
    record = tmp_path / "attempts.json"

    class Reports(UserCallback):
        def __init__(self):
            self.epochs = []

        def after_report(self, run_context, metrics, checkpoint):
            self.epochs.append((metrics[0]["epoch"], metrics[0].get("final", 0)))

    def trial(_):
        attempts = []
        for _attempt in range(2):  # the same run twice: the second finds the first's final checkpoint
            reports = Reports()
            trainer, _ = seq.trainer(sequences, config, tmp_path / "ray", "restarted", callbacks=[reports], tune=True)
            finished = seq.finished(trainer.fit())
            attempts.append({"trainer": type(trainer).__name__, "reports": reports.epochs,
                             "output": np.stack(finished["predictions"]["output"]).tolist(),
                             "val_score": finished["metrics"]["val_score"]})
        record.write_text(json.dumps(attempts))

    space = SearchSpace(metric="val_score", mode="max", num_samples=1)
    results = tuner(trial, {"seed": tune.grid_search([0])}, space, config, "equal", tmp_path / "tune").fit()
    assert not results.errors
    first, second = json.loads(record.read_text())
    assert first["trainer"] == second["trainer"] == "InProcessTrainer"
    assert [final for _, final in first["reports"]] == [0, 0, 1]  # two epochs, then the final report
    assert second["reports"] == [first["reports"][-1]]  # the final report again, no epoch trained
    assert second["output"] == first["output"] and second["val_score"] == first["val_score"]
