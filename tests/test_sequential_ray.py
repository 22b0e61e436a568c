"""Sequential fine-tuning through Ray Train: QLoRA + 8-bit AdamW + DeepSpeed ZeRO-2 on two gloo
workers learns a planted signal, and the saved adapter reproduces the test predictions exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clintraj.evaluation.metrics import binary_metrics
from clintraj.training import sequential as seq
from planted import LATENT, write_planted

pytestmark = pytest.mark.slow


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
        model, record = seq.load_checkpoint(directory)
    assert record["quantization"] == "nf4" and record["attention"] == "sdpa" and record["precision"] == "fp32"
    reloaded = seq.predict(model, seq.bucketed([seq.read_split(sequences / "test.parquet")], 16, shuffle=False),
                           LATENT, "cpu")
    assert np.array_equal(np.stack(reloaded["output"]), np.stack(finished["predictions"]["output"]))
