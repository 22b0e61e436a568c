"""The sequential model's layout, loss, truncation, batching and checkpoint round trip (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from clintraj.data import sequences as data
from clintraj.models.sequential import interleave, last_logits, predict_positions, sequence_loss
from clintraj.training import capabilities, decoder
from clintraj.training import sequential as seq

pytestmark = pytest.mark.usefixtures("torch_one_thread")
LATENT = 8


def test_predict_follows_every_event_and_padding_is_masked():
    H = 4
    events = torch.arange(2 * 3 * H, dtype=torch.float32).reshape(2, 3, H) + 1
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    predict = torch.full((H,), -7.0)
    sequence, attention = interleave(events, mask, predict)
    assert sequence.shape == (2, 6, H)
    for stay in range(2):
        for i in range(3):
            assert torch.equal(sequence[stay, 2 * i], events[stay, i])  # event i at 2i
            assert torch.equal(sequence[stay, 2 * i + 1], predict)  # its [PREDICT] right after
    assert attention.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
    assert predict_positions(2).tolist() == [1, 3]


def test_loss_over_all_or_last_predict_matches_hand_computation():
    logits = torch.tensor([[[0.5], [-1.0], [9.0]], [[2.0], [9.0], [9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    y = torch.tensor([[1.0], [0.0]])

    def bce(z, t):
        return -(t * np.log(1 / (1 + np.exp(-z))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-z))))

    every = (bce(0.5, 1) + bce(-1.0, 1) + bce(2.0, 0)) / 3  # padding logits (9.0) never count
    last = (bce(-1.0, 1) + bce(2.0, 0)) / 2
    assert sequence_loss(logits, y, mask, "mortality", None).item() == pytest.approx(every, rel=1e-6)
    assert sequence_loss(logits, y, mask, "mortality", None, "last_predict").item() == pytest.approx(last, rel=1e-6)
    weighted = sequence_loss(logits, y, mask, "mortality", torch.tensor([3.0]), "last_predict").item()
    assert weighted == pytest.approx((3 * bce(-1.0, 1) + bce(2.0, 0)) / 2, rel=1e-6)
    los = sequence_loss(logits, torch.tensor([[1.0], [2.0]]), mask, "los", None).item()
    assert los == pytest.approx(((0.5 - 1) ** 2 + (-1 - 1) ** 2 + (2 - 2) ** 2) / 3, rel=1e-6)
    assert last_logits(logits, mask)[:, 0].tolist() == [-1.0, 2.0]
    with pytest.raises(ValueError, match="loss_on"):
        sequence_loss(logits, y, mask, "mortality", None, "first")


def test_truncation_keeps_admission_events_and_the_most_recent():
    # demographics (0) and APS (5) at admission, then 6 later events of other modalities
    modality = np.array([0, 5, 1, 2, 1, 4, 2, 1], dtype=np.int8)
    kept = data.truncate(modality, np.array([0, 5], np.int8), max_events=5)
    assert kept.tolist() == [0, 1, 5, 6, 7]
    assert data.truncate(modality, np.array([0, 5], np.int8), max_events=20).tolist() == list(range(8))
    # room for more than the 6 others but fewer than twice as many: all kept (a negative slice start dropped some)
    assert data.truncate(modality, np.array([0, 5], np.int8), max_events=10).tolist() == list(range(8))
    assert data.truncate(modality, np.array([0, 5], np.int8), max_events=8).tolist() == list(range(8))
    assert data.truncate(modality, np.array([0, 5], np.int8), max_events=2).tolist() == [0, 1]


def _rows(lengths, seed=0):
    rng = np.random.default_rng(seed)
    modality = [rng.integers(0, 4, n).astype(np.int8) for n in lengths]
    return {"stay_id": np.arange(len(lengths)), "n_events": np.array(lengths),
            "y": [np.array([i % 2], np.float32) for i in range(len(lengths))], "modality": modality,
            "h": [rng.normal(size=(n, LATENT)).astype(np.float32).ravel() for n in lengths]}


def test_length_bucketing_pads_less_and_keeps_every_stay_once():
    lengths = [3, 40, 5, 38, 4, 41, 6, 39]
    chunk = _rows(lengths)

    def padding(batches):
        return sum(len(b["n_events"]) * max(b["n_events"]) - sum(b["n_events"]) for b in batches)

    bucketed = list(data.bucketed([chunk], 2, shuffle=True, rng=np.random.default_rng(0)))
    plain = [{k: (v[i:i + 2] if not isinstance(v, list) else v[i:i + 2]) for k, v in chunk.items()}
             for i in range(0, 8, 2)]
    assert sorted(np.concatenate([b["stay_id"] for b in bucketed]).tolist()) == list(range(8))
    assert padding(bucketed) < padding(plain) / 5


def test_collate_pads_and_modality_dropout_removes_whole_modalities():
    chunk = _rows([4, 7, 2], seed=1)
    batch = data.collate(chunk, LATENT)
    assert batch["events"].shape == (3, 7, LATENT)
    assert batch["event_mask"].sum(dim=1).tolist() == [4, 7, 2]
    np.testing.assert_array_equal(batch["events"][1, :7].numpy(), chunk["h"][1].reshape(7, LATENT))
    assert (batch["events"][2, 2:] == 0).all()

    rng = np.random.default_rng(3)
    dropped = data.collate(chunk, LATENT, modality_dropout=0.5, rng=rng)
    for i, modality in enumerate(chunk["modality"]):
        n = int(dropped["event_mask"][i].sum())
        kept_modalities = set(dropped["modality"][i, :n].tolist())
        expected = [j for j, m in enumerate(modality) if m in kept_modalities]
        assert n == len(expected)  # every event of a kept modality stays, in order
        np.testing.assert_array_equal(dropped["events"][i, :n].numpy(), chunk["h"][i].reshape(-1, LATENT)[expected])
    everything = data.collate(chunk, LATENT, modality_dropout=1.0, rng=rng)  # never an empty stay
    assert everything["event_mask"].sum(dim=1).tolist() == [4, 7, 2]


def test_capability_checks_say_what_is_off_and_refuse_what_cannot_run():
    resolved = capabilities.resolve("auto", "auto", "nf4", "adamw8bit", 2, use_gpu=False)
    assert (resolved.attention, resolved.precision, resolved.backend) == ("sdpa", "fp32", "gloo")
    notes = " ".join(resolved.notes)
    assert "Flash Attention 2 off" in notes and "bf16 off" in notes and "bitsandbytes" in notes
    with pytest.raises(RuntimeError, match="sdpa"):
        capabilities.resolve("flash_attention_2", "auto", "none", "adamw", 0, use_gpu=False)
    with pytest.raises(ValueError, match="deepspeed_stage: 2"):
        capabilities.resolve("sdpa", "fp32", "nf4", "adamw8bit", 3, use_gpu=False)


# the training events' statistics, not the identity: a reloaded checkpoint must bring them back
EVENT_STATS = ([0.1 * i for i in range(LATENT)], [0.5 + 0.25 * i for i in range(LATENT)])
FACTS = decoder.SequenceFacts(latent_dim=LATENT, out_features=1, modalities=["a", "b", "c", "d"], pos_weight=None,
                              train_prevalence=[0.5], event_stats=EVENT_STATS)


def _config(tmp_path, backbone="llama3-8b", quantization="nf4", weights="tiny"):
    return seq.SequentialTrainConfig(backbone=backbone, weights=weights, quantization=quantization,
                                     tiny_root=str(tmp_path / "tiny"))


# "phi3-mini@tiny" under weights "hub": the backbone's own source wins (the hub is unreachable here),
# and the checkpoint's record brings it back on reload.
@pytest.mark.parametrize("backbone,quantization,weights", [("llama3-8b", "nf4", "tiny"),
                                                           ("phi3-mini@tiny", "none", "hub")])
def test_checkpoint_reloads_through_peft_and_reproduces_predictions(tmp_path, backbone, quantization, weights):
    config = _config(tmp_path, backbone, quantization, weights)
    runtime = capabilities.resolve("sdpa", "fp32", quantization, "adamw", 0, use_gpu=False)
    torch.manual_seed(0)
    model = decoder.build_model(config, FACTS, runtime, torch.device("cpu"))
    chunk = _rows([5, 9, 3, 12, 7, 4], seed=2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):  # move the adapters, projection, [PREDICT] and head away from their init
        batch = data.collate(chunk, LATENT)
        loss = sequence_loss(model(batch["events"], batch["event_mask"]), batch["y"], batch["event_mask"],
                             "mortality", None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    before = seq.predict(model, data.bucketed([chunk], 4, shuffle=False), LATENT, "cpu")
    decoder.save_checkpoint(tmp_path / "ckpt", model, config, FACTS, runtime)
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"adapter", "head.pt", "sequential.json"}
    assert not list((tmp_path / "ckpt").rglob("model.safetensors"))  # adapters only, no full copy
    reloaded, record = decoder.load_checkpoint(tmp_path / "ckpt")
    assert type(reloaded.backbone).__name__ == "PeftModel" and record["backbone"] == backbone
    after = seq.predict(reloaded, data.bucketed([chunk], 4, shuffle=False), LATENT, "cpu")
    assert np.array_equal(np.stack(before["output"]), np.stack(after["output"]))
    assert len(before["output_by_event"]) == len(after["output_by_event"]) == 6  # zip below pairs every stay
    assert all(np.array_equal(a, b) for a, b in zip(before["output_by_event"], after["output_by_event"]))
    assert after["n_events"].tolist() == [5, 9, 3, 12, 7, 4]


def test_the_projection_reads_events_standardised_by_the_training_statistics(tmp_path):
    """Built from facts with event statistics, the model computes on raw events what the same
    weights with identity statistics compute on (events - mean) / std."""
    config = _config(tmp_path, quantization="none")
    runtime = capabilities.resolve("sdpa", "fp32", "none", "adamw", 0, use_gpu=False)
    torch.manual_seed(0)
    model = decoder.build_model(config, FACTS, runtime, "cpu").eval()
    torch.manual_seed(0)
    plain = decoder.build_model(config, decoder.SequenceFacts(**{**vars(FACTS), "event_stats": None}), runtime,
                                "cpu").eval()
    batch = data.collate(_rows([5, 3], seed=4), LATENT)
    mean, std = (torch.tensor(s) for s in EVENT_STATS)
    with torch.no_grad():
        expected = plain((batch["events"] - mean) / std, batch["event_mask"])
        assert torch.allclose(model(batch["events"], batch["event_mask"]), expected, atol=1e-5)
        assert not torch.allclose(plain(batch["events"], batch["event_mask"]), expected, atol=1e-3)


def test_a_built_model_trains_with_activation_checkpointing(tmp_path):
    """from_pretrained hands back eval mode, in which transformers skips checkpointing: build_model
    must return train mode, so the backward pass recomputes each decoder layer (2 forwards each)."""
    config = _config(tmp_path, quantization="none")
    runtime = capabilities.resolve("sdpa", "fp32", "none", "adamw", 0, use_gpu=False)
    model = decoder.build_model(config, FACTS, runtime, "cpu")
    assert all(module.training for module in model.modules())
    calls = []
    mlp = model.backbone.get_base_model().layers[0].mlp
    forward = mlp.forward  # wrapped, not hooked: module hooks do not run when checkpointing recomputes
    mlp.forward = lambda *args, **kwargs: (calls.append(1), forward(*args, **kwargs))[1]
    batch = data.collate(_rows([4, 6], seed=3), LATENT)
    sequence_loss(model(batch["events"], batch["event_mask"]), batch["y"], batch["event_mask"], "mortality",
                  None).backward()
    assert len(calls) == 2


def test_a_restarted_worker_resumes_the_epoch_checkpoints_weights_and_state(tmp_path):
    config = _config(tmp_path)
    runtime = capabilities.resolve("sdpa", "fp32", "nf4", "adamw", 0, use_gpu=False)
    torch.manual_seed(0)
    trained = decoder.build_model(config, FACTS, runtime, torch.device("cpu"))
    with torch.no_grad():  # stand-in for training: every trainable tensor moved off its init
        for parameter in trained.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    best = decoder.trainable_state(trained)
    assert best  # the all() checks below compare some tensors
    state = {"next_epoch": 2, "step": 40, "stopping": {"mode": "max", "patience": 2, "best": 0.71, "best_epoch": 1,
                                                       "stale": 0}, "best_metrics": {"epoch": 1, "val_auroc": 0.71}}
    directory = tmp_path / "epoch-1"
    directory.mkdir()
    decoder.save_checkpoint(directory, trained, config, FACTS, runtime)
    decoder.save_trainer_state(directory, state, best)

    torch.manual_seed(1)
    fresh = decoder.build_model(config, FACTS, runtime, torch.device("cpu"))  # what a restarted worker builds
    assert not torch.equal(fresh.head.weight, trained.head.weight)
    resumed_state, resumed_best = decoder.resume(fresh, directory)
    assert resumed_state == state
    assert resumed_best.keys() == best.keys() and all(torch.equal(resumed_best[k], best[k]) for k in best)
    assert decoder.trainable_state(fresh).keys() == best.keys()
    assert all(torch.equal(decoder.trainable_state(fresh)[k], best[k]) for k in best)  # LoRA, projection, [PREDICT], head
    final = tmp_path / "final"  # the closing checkpoint holds no trainer state: nothing to resume
    final.mkdir()
    decoder.save_checkpoint(final, trained, config, FACTS, runtime)
    assert decoder.resume(fresh, final) is None


def test_causal_predictions_ignore_later_events_and_padding(tmp_path):
    config = _config(tmp_path, "mistral-7b", "none")
    runtime = capabilities.resolve("eager", "fp32", "none", "adamw", 0, use_gpu=False)
    torch.manual_seed(0)
    model = decoder.build_model(config, FACTS, runtime, torch.device("cpu")).eval()
    chunk = _rows([6, 3], seed=4)
    batch = data.collate(chunk, LATENT)
    with torch.no_grad():
        logits = model(batch["events"], batch["event_mask"])
        alone = model(batch["events"][1:, :3], batch["event_mask"][1:, :3])
        changed = batch["events"].clone()
        changed[0, 4] += 5.0  # a later event of stay 0
        moved = model(changed, batch["event_mask"])
    torch.testing.assert_close(logits[1, :3], alone[0], rtol=1e-5, atol=1e-5)  # padding changes nothing
    torch.testing.assert_close(moved[0, :4], logits[0, :4], rtol=1e-5, atol=1e-5)  # the past cannot see it
    assert not torch.allclose(moved[0, 4], logits[0, 4])
    assert F.mse_loss(moved[1], logits[1]).item() == 0.0


def test_robustness_inputs_remove_whole_modalities_but_never_the_last():
    chunk = _rows([6, 9, 5], seed=7)
    chunk["modality"][2] = np.zeros(5, np.int8)  # a stay with one modality only
    out = data.without_modalities(chunk, 2, np.random.default_rng(0))
    assert len(out["modality"]) == len(out["h"]) == 3  # zip below pairs every stay
    for before, after, h_before, h_after in zip(chunk["modality"], out["modality"], chunk["h"], out["h"]):
        present, left = set(before.tolist()), set(after.tolist())
        assert len(left) == max(len(present) - 2, 1) and left <= present
        kept = np.isin(before, list(left))
        assert kept.sum() == len(after)  # every event of a kept modality stays
        np.testing.assert_array_equal(np.asarray(h_after).reshape(-1, LATENT), h_before.reshape(-1, LATENT)[kept])
    assert out["n_events"].tolist() == [len(m) for m in out["modality"]]
