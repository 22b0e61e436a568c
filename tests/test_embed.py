"""The embedding job: per-modality vectors per stay, the learned missing token where absent."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from clintraj.config import from_dict
from clintraj.data.prepare import PrepareConfig, prepare
from clintraj.data.synthetic import generate
from clintraj.training.pretrain import PretrainConfig, build_model
from clintraj.workflows import embed, pretrain

pytestmark = pytest.mark.slow


def test_absent_modalities_carry_exactly_the_checkpoints_missing_token(tmp_path, ray_local):
    generate("eicu", tmp_path / "raw", n_stays=500, seed=21, progress=False,
             presence={"diagnosis": 0.6, "treatment": 0.6})
    prepare(tmp_path / "raw", tmp_path / "data", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 100}}))
    config = from_dict(PretrainConfig, {"latent_dim": 16, "batch_size": 64, "epochs": 2, "num_workers": 1})
    # a checkpoint folder in the layout pretraining writes (model.pt, meta.json, config.json)
    _, meta = pretrain.prepare_inputs(tmp_path / "data", tmp_path / "w0", config, None)
    model_config = {**asdict(config), "text_max_length": config.inputs.text_max_length}
    model_config.pop("inputs")
    torch.manual_seed(3)
    model = build_model(meta, model_config)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    torch.save(model.state_dict(), checkpoint / "model.pt")
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    (checkpoint / "config.json").write_text(json.dumps(model_config))
    summary = {"checkpoint": str(checkpoint)}

    record = embed.run(tmp_path / "data", tmp_path / "emb", summary["checkpoint"], tmp_path / "w")
    frame, saved = embed.read_static(tmp_path / "emb")
    assert saved == record and record["encoders"] == "contrastive"
    state = torch.load(f"{summary['checkpoint']}/model.pt", weights_only=True)
    tokens = state["missing_tokens"].numpy()
    present = np.stack(frame["present"].to_numpy())
    assert (~present).any(axis=0).sum() >= 2
    for index, name in enumerate(record["modalities"]):
        vectors = np.stack(frame[f"{name}.h"].to_numpy())
        absent = ~present[:, index]
        np.testing.assert_array_equal(vectors[absent], np.broadcast_to(tokens[index], vectors[absent].shape))
        assert not np.isclose(vectors[~absent], tokens[index]).all(axis=1).any()  # present: the encoder's output
    assert len(frame) == len(set(frame["stay_id"]))

    scratch = embed.run(tmp_path / "data", tmp_path / "scratch", "scratch", tmp_path / "w2", config, seed=7)
    assert scratch["encoders"] == "scratch" and scratch["seed"] == 7
    assert json.loads((tmp_path / "scratch" / "embeddings.json").read_text())["checkpoint"] is None
