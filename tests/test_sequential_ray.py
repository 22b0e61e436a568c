"""Sequential fine-tuning through Ray Train: QLoRA + 8-bit AdamW + DeepSpeed ZeRO-2 on two gloo
workers learns a planted signal, and the saved adapter reproduces the test predictions exactly; a
worker killed after an epoch's checkpoint is restarted and the run resumes at the next epoch."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import psutil
import torch

from clintraj.metrics.prediction import binary_metrics
from clintraj.artifacts.sequences import Sequences
from clintraj.data.sequences import bucketed
from clintraj.training import decoder
from clintraj.training import sequential as seq
from planted import LATENT, write_planted

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


def _kill_the_worker_after_a_checkpoint(storage, done, killed):
    """Kill the Ray Train worker once the run's first epoch checkpoint is written; `killed` gets its pid."""
    deadline = time.time() + 300
    while time.time() < deadline and not done.is_set():
        if list(storage.glob("*/checkpoint_*/trainer_state.json")):
            workers = [p for p in psutil.process_iter(["cmdline", "create_time"])
                       if any("RayTrainWorker" in part for part in (p.info["cmdline"] or []))]
            if workers:  # the newest: this run's single worker
                newest = max(workers, key=lambda p: p.info["create_time"])
                newest.kill()
                killed.append(newest.pid)
                return
        time.sleep(0.2)


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
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_the_worker_after_a_checkpoint, args=(storage, done, killed), daemon=True)
    killer.start()
    trainer, _ = seq.trainer(sequences, config, storage, "killed", callbacks=[Reports()])
    result = trainer.fit()
    done.set()
    killer.join(timeout=5)
    assert len(killed) == 1, "no Ray Train worker was killed: the resume was never exercised"
    reports = [json.loads(line) for line in record.read_text().splitlines()]
    epochs = [r["epoch"] for r in reports if not r.get("final")]
    assert epochs == [0, 1, 2]  # every epoch trained and reported once, across the restart
    assert len(seq.finished(result)["predictions"]) == 64
