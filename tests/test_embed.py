"""The embedding job: per-modality vectors per stay, the learned missing token where absent."""

import json

import numpy as np
import torch

from clintraj.config import from_dict, to_dict
from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.embeddings import Embeddings
from clintraj.data.prepare import PrepareConfig, prepare
from clintraj.data.synthetic import generate
from clintraj.training.pretrain import PretrainConfig, build_model
from clintraj.workflows import embed, pretrain

# marked slow by tests/conftest.py, as every test that uses ray_local


def test_absent_modalities_carry_exactly_the_checkpoints_missing_token(tmp_path, ray_local):
    generate("eicu", tmp_path / "raw", n_stays=500, seed=21, progress=False,
             presence={"diagnosis": 0.6, "treatment": 0.6})
    prepare(tmp_path / "raw", tmp_path / "data", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 100}}))
    config = from_dict(PretrainConfig, {"latent_dim": 16, "batch_size": 64, "epochs": 2, "num_workers": 1})
    # a checkpoint folder in the layout pretraining writes (model.pt, meta.json, config.json)
    _, meta = pretrain.prepare_inputs(tmp_path / "data", tmp_path / "w0", config, None)
    torch.manual_seed(3)
    model = build_model(meta, config)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    torch.save(model.state_dict(), checkpoint / "model.pt")
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    (checkpoint / "config.json").write_text(json.dumps(to_dict(config)))
    summary = {"checkpoint": str(checkpoint)}

    record = embed.run(tmp_path / "data", tmp_path / "emb", summary["checkpoint"], tmp_path / "w")
    frame, saved = Embeddings(tmp_path / "emb").static("mortality"), Embeddings(tmp_path / "emb").record
    assert saved == record and record["encoders"] == "contrastive"
    cohort = Dataset(tmp_path / "data").task_cohort("mortality")
    assert frame["stay_id"].tolist() == sorted(cohort["stay_id"]) and record["tasks"]["mortality"]["prediction_hours"] == 12
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

    # the sequential view: one embedding per timeline event of the task's window, keyed by stay, in time order
    timelines = Embeddings(tmp_path / "emb").timelines("mortality").set_index("stay_id")
    assert set(timelines.index) == set(frame["stay_id"])
    assert all((np.asarray(t) >= 0).all() and (np.asarray(t) <= 12).all() for t in timelines["time_hours"])
    events = Dataset(tmp_path / "data").events("lab")
    events = events[events["stay_id"].isin(cohort["stay_id"]) & events["time_hours"].between(0, 12)]
    lab = record["modalities"].index("lab")
    stay = events["stay_id"].value_counts().index[0]  # the stay with the most lab results
    row = timelines.loc[stay]
    modality, times = np.asarray(row["modality"]), np.asarray(row["time_hours"])
    h = np.asarray(row["h"]).reshape(-1, record["latent_dim"])
    assert len(modality) == row["n_events"] == len(h) and (np.diff(times) >= 0).all()
    # one event per lab draw time (results drawn together are one event)
    assert (modality == lab).sum() == events.loc[events["stay_id"] == stay, "time_hours"].nunique()
    static = frame.set_index("stay_id")
    demographics = record["modalities"].index("demographics")
    assert modality[0] == demographics and times[0] == 0.0  # admission events lead
    np.testing.assert_array_equal(h[0], static.loc[stay, "demographics.h"])
    assert not np.isclose(h[modality == lab], tokens[lab]).all(axis=1).any()  # encoded, not the missing token
    absent = frame.loc[~present[:, record["modalities"].index("diagnosis")], "stay_id"].iloc[0]
    assert record["modalities"].index("diagnosis") not in np.asarray(timelines.loc[absent, "modality"])


def test_mimic_without_images_embeds_with_the_cxr_modality_absent(tmp_path, mimic_demo_raw, ray_local):
    """A MIMIC-IV-only user prepares without --cxr (nor notes): the image modality is then absent
    for every stay, and the embedding job runs (it once died in the image-loading actors)."""
    prepare(mimic_demo_raw, tmp_path / "data", from_dict(PrepareConfig, {
        "dataset": "mimic", "mimic": {"chartevents_stand_in": True, "progress": False}}))
    config = from_dict(PretrainConfig, {"latent_dim": 8, "text_model": "tiny", "num_workers": 1,
                                        "inputs": {"text_max_length": 16}})
    record = embed.run(tmp_path / "data", tmp_path / "emb", "scratch", tmp_path / "w", config=config,
                       tasks=["mortality"])
    frame = Embeddings(tmp_path / "emb").static("mortality")
    assert len(frame) == record["tasks"]["mortality"]["stays"] > 0
    present = np.stack(frame["present"].to_numpy())
    names = record["modalities"]
    assert not present[:, names.index("cxr")].any() and present[:, names.index("time_series")].all()
    images = np.stack(frame["cxr.h"].to_numpy())
    np.testing.assert_array_equal(images, np.broadcast_to(images[0], images.shape))  # one missing token for all
    assert record["events"]["cxr"] == 0
