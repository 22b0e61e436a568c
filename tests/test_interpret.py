"""Attention under modality ablation on a tiny backbone: causal rows, exact removal, the sink,
the figures, and the cohort summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from clintraj.artifacts.dataset import FORMAT as DATASET_FORMAT
from clintraj.evaluation import attention as attn
from clintraj.artifacts.sequences import Sequences
from clintraj.training import capabilities, decoder
from clintraj.training import sequential as seq
from clintraj.workflows import interpret

pytestmark = pytest.mark.usefixtures("torch_one_thread")
LATENT = 8
NAMES = ["demographics", "lab", "diagnosis"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint of a tiny Llama sequential model, a test split with times, and raw events."""
    root = tmp_path_factory.mktemp("interpret")
    rng = np.random.default_rng(0)
    stays, rows = [], []
    for i in range(6):
        n = 7 + i
        modality = np.r_[0, rng.choice([1, 2], n - 1)].astype(np.int8)
        times = np.r_[0.0, np.sort(rng.uniform(0, 30, n - 1))].astype(np.float32)
        rows.append({"stay_id": 500 + i, "y": np.array([i % 2], np.float32), "n_events": n, "modality": modality,
                     "h": rng.normal(size=(n, LATENT)).astype(np.float32).ravel(), "time_hours": times})
        for kind, time in zip(modality, times):
            stays.append({"stay_id": 500 + i, "time_hours": float(time), "modality": NAMES[kind], "value": 1.0})
        stays.append({"stay_id": 500 + i, "time_hours": 40.0, "modality": "lab", "value": 1.0})  # after its window
    sequences = root / "sequences"
    sequences.mkdir()
    pd.DataFrame(rows).to_parquet(sequences / "test.parquet")
    dataset = root / "dataset"
    for name in NAMES:
        events = pd.DataFrame(stays)
        (dataset / "events" / name).mkdir(parents=True)
        events[events["modality"] == name].drop(columns="modality").to_parquet(dataset / "events" / name / "part-0.parquet")
    (dataset / "tasks").mkdir()
    pd.DataFrame({"stay_id": 500 + np.arange(6), "split": "test", "prediction_hours": 30.0, "start_hours": 0.0,
                  "end_hours": 30.0}).to_parquet(dataset / "tasks" / "mortality.parquet")
    (dataset / "report.json").write_text(json.dumps({"format": DATASET_FORMAT, "dataset": "eicu", "after_stay": []}))
    (sequences / "sequences.json").write_text(json.dumps({
        "task": "mortality", "dataset": str(dataset), "latent_dim": LATENT, "modalities": NAMES, "out_features": 1}))
    config = seq.SequentialTrainConfig(backbone="llama3-8b", weights="tiny", quantization="none",
                                       tiny_root=str(root / "tiny"))
    facts = decoder.SequenceFacts(latent_dim=LATENT, out_features=1, modalities=NAMES, pos_weight=None,
                                  train_prevalence=[0.5])
    runtime = capabilities.resolve("sdpa", "fp32", "none", "adamw", 0, False)
    checkpoints = {}
    for seed, name in ((0, "contrastive"), (1, "scratch")):
        torch.manual_seed(seed)
        decoder.save_checkpoint(root / name, decoder.build_model(config, facts, runtime, "cpu"), config, facts,
                                runtime)
        checkpoints[name] = root / name
    return root, sequences, checkpoints


def trained(checkpoints: dict, sequences) -> dict:
    return {name: interpret.Trained(checkpoint, sequences) for name, checkpoint in checkpoints.items()}


def test_attention_is_causal_and_removal_is_exact(setup):
    _, sequences, checkpoints = setup
    model, _ = decoder.load_checkpoint(checkpoints["contrastive"], attention="eager")
    split = Sequences(sequences).split("test")
    row = attn.stay_row(split, 3)
    attention, logits = attn.final_layer_attention(model, row, LATENT)
    n = int(row["n_events"][0])
    assert attention.shape == (2 * n, 2 * n) and logits.shape == (n, 1)
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, rtol=1e-5)  # over the visible keys
    assert np.all(np.triu(attention, k=1) == 0)  # nothing from the future

    kinds = np.asarray(row["modality"][0])
    ablated = attn.remove_modality(row, 1, LATENT)
    kept = kinds != 1
    assert int(ablated["n_events"][0]) == kept.sum()
    np.testing.assert_array_equal(ablated["modality"][0], kinds[kept])
    np.testing.assert_array_equal(np.asarray(ablated["h"][0]).reshape(-1, LATENT),
                                  np.asarray(row["h"][0]).reshape(-1, LATENT)[kept])
    labels = attn.position_labels(ablated["modality"][0], NAMES)
    assert len(labels) == 2 * kept.sum() and "lab" not in labels  # its events and their [PREDICT]s are gone
    assert labels[1::2] == [attn.PREDICT] * int(kept.sum())
    sdpa, _ = decoder.load_checkpoint(checkpoints["contrastive"])  # sdpa returns no attentions: a clear error
    with pytest.raises(RuntimeError, match="eager"):
        attn.final_layer_attention(sdpa, row, LATENT)


def test_the_dominant_key_is_reported_as_the_sink():
    labels = ["demographics", attn.PREDICT, "lab", attn.PREDICT, "lab", attn.PREDICT]
    attention = np.tril(np.full((6, 6), 0.02))
    attention[:, 0] = 0.9  # every query looks at the demographics event
    attention /= attention.sum(axis=1, keepdims=True)
    assert attn.attention_sink(attention, labels)[:2] == (0, "demographics")
    shares = attn.modality_shares(attention, labels)
    assert shares["demographics"] > 0.8 and sum(shares.values()) == pytest.approx(1.0)
    assert set(shares) == {"demographics", "lab", attn.PREDICT}


def test_explain_stay_writes_differing_heatmaps_and_the_events_table(setup, tmp_path):
    _, sequences, checkpoints = setup
    summary = interpret.explain_stay(trained(checkpoints, sequences), 503, "lab", tmp_path)
    full = (tmp_path / "heatmap_contrastive_full.png").read_bytes()
    ablated = (tmp_path / "heatmap_contrastive_ablated.png").read_bytes()
    assert full != ablated and (tmp_path / "attention_stay3_lab.png").stat().st_size > 10_000
    assert set(summary["models"]) == {"contrastive", "scratch"}
    model = summary["models"]["contrastive"]
    assert "lab" in model["shares_full"] and "lab" not in model["shares_ablated"]
    assert sum(model["shares_full"].values()) == pytest.approx(1.0)
    events = pd.read_csv(tmp_path / "stay3_events.csv")
    assert len(events) == 10 and set(events["modality"]) <= set(NAMES)  # the window's events, not the later one
    assert events["time_hours"].max() <= 30
    with pytest.raises(ValueError, match="not in the test split"):
        interpret.explain_stay(trained(checkpoints, sequences), 999, "lab", tmp_path)


def test_each_model_reads_the_timelines_it_was_trained_on(setup, tmp_path):
    """A contrastive and a scratch run hold the same stays and events, embedded by different encoders:
    each model is explained on its own run's embeddings."""
    _, sequences, checkpoints = setup
    scratch_sequences = tmp_path / "scratch-sequences"
    scratch_sequences.mkdir()
    (scratch_sequences / "sequences.json").write_text((sequences / "sequences.json").read_text())
    table = pd.read_parquet(sequences / "test.parquet")
    table["h"] = [-h for h in table["h"]]  # other encoders: other vectors for the same events
    table.to_parquet(scratch_sequences / "test.parquet")
    models = {"contrastive": interpret.Trained(checkpoints["contrastive"], sequences),
              "scratch": interpret.Trained(checkpoints["scratch"], scratch_sequences)}
    summary = interpret.explain_stay(models, 503, "lab", tmp_path / "out")
    model, _ = interpret._load(checkpoints["scratch"])
    own, other = (interpret._panel(model, attn.stay_row(Sequences(folder).split("test"), 3), LATENT, NAMES)
                  for folder in (scratch_sequences, sequences))
    assert summary["models"]["scratch"]["prediction_full"] == pytest.approx(float(own["logits"][-1, 0]))
    assert abs(float(own["logits"][-1, 0]) - float(other["logits"][-1, 0])) > 1e-3  # the check can tell them apart
    # stays are paired by their row: runs whose test splits differ are refused
    table.iloc[::-1].to_parquet(scratch_sequences / "test.parquet")
    with pytest.raises(ValueError, match="test splits hold different stays"):
        interpret.explain_stay(models, 503, "lab", tmp_path / "out")


def test_summary_pairs_the_two_models_on_the_same_stays():
    rng = np.random.default_rng(1)
    frames = {}
    for name, scale in (("contrastive", 0.1), ("scratch", 1.0)):
        frames[name] = pd.DataFrame({"index": np.arange(40), "delta_prediction": rng.normal(0, scale, 40),
                                     "share_full:demographics": rng.uniform(0, 0.2 if scale < 1 else 0.9, 40),
                                     "delta_share:demographics": rng.normal(0, 0.05, 40)})
    summary = interpret.summarise(frames)
    assert summary["contrastive"]["stays"] == 40
    tests = summary["paired_wilcoxon"]
    assert tests["models"] == ["contrastive", "scratch"]
    assert tests["delta_prediction"]["p_value"] < 0.01 and tests["delta_prediction"]["median_difference"] < 0
    assert tests["share_full:demographics"]["pairs"] == 40


class DemographicsSink(torch.nn.Module):
    """A model whose every [PREDICT] attends almost only to the first position (demographics)."""

    def forward(self, events, event_mask, output_attentions=False):
        T = 2 * events.shape[1]
        scores = torch.zeros(T, T)
        scores[:, 0] = 8.0  # position 0 dominates every row
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))  # causal
        attention = torch.softmax(scores, dim=-1)[None, None].expand(1, 4, T, T)  # (batch, heads, T, T)
        return torch.zeros(1, events.shape[1], 1), (attention,)


def test_a_model_that_attends_to_demographics_reports_it_as_the_sink(setup):
    _, sequences, _ = setup
    row = attn.stay_row(Sequences(sequences).split("test"), 2)
    panel = interpret._panel(DemographicsSink(), row, LATENT, NAMES)
    assert panel["sink"][:2] == (0, "demographics")
    assert panel["shares"]["demographics"] > 0.5
    np.testing.assert_allclose(panel["attention"].sum(axis=1), 1.0, rtol=1e-5)
