"""The downstream models read frozen embeddings standardised with their training split's statistics:
the moments (streamed in parts or whole), the static and sequential models' input, and the
statistics travelling with a trained model's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn.preprocessing import StandardScaler

from clintraj.data.features import standardisation, training_standardisation
from clintraj.models.static import build_static_model
from clintraj.training.static import StaticRun, StaticTrainConfig, build_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_moments_streamed_in_parts_equal_the_whole_and_a_constant_feature_keeps_its_scale():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(3.0, 0.1, size=(50, 2)), np.full((50, 1), 1234.5)], axis=1)
    streamed = StandardScaler()
    for part in (x[:7], x[7:8], x[8:]):
        streamed.partial_fit(part)
    mean, std = standardisation(streamed, 3)
    assert np.allclose(mean, x.mean(axis=0)) and np.allclose(std[:2], x[:, :2].std(axis=0))
    assert std[2] == 1.0  # constant in training (e.g. a modality no training stay has): centred, not divided by 0
    assert np.allclose(training_standardisation(x), (mean, std))
    assert standardisation(StandardScaler(), 4) == ([0.0] * 4, [1.0] * 4)  # no training rows: the identity
    assert training_standardisation(x[:0]) == ([0.0] * 3, [1.0] * 3)


@pytest.mark.parametrize("architecture", ["mlp", "lstm"])
def test_a_static_model_reads_its_input_standardised_by_the_training_statistics(architecture):
    """Built with (mean, std), the model computes on raw embeddings what the same weights compute
    on (x - mean) / std; the statistics are in its state dict, so a checkpoint carries them."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.5, 0.05, size=(20, 3 * 4)).astype(np.float32)  # small-scale embeddings, 3 modalities
    stats = training_standardisation(x)
    config = StaticTrainConfig(task="phenotyping", architecture=architecture, hidden=8)
    run = StaticRun(config, in_features=12, out_features=5, modalities=3, pos_weight=[1.0] * 5, target_mean=None,
                    input_stats=stats)
    torch.manual_seed(0)
    standardised = build_model(run).eval()
    torch.manual_seed(0)
    plain = build_static_model(architecture, 12, 5, 8, config.dropout, modalities=3).eval()
    mean, std = (np.asarray(s, np.float32) for s in stats)
    with torch.no_grad():
        expected = plain(torch.from_numpy((x - mean) / std))
        assert torch.allclose(standardised(torch.from_numpy(x)), expected, atol=1e-5)
        assert not torch.allclose(plain(torch.from_numpy(x)), expected, atol=1e-2)  # it made a difference
    state = standardised.state_dict()
    assert np.allclose(state["standardize.mean"].numpy(), mean) and np.allclose(state["standardize.std"].numpy(), std)
    torch.manual_seed(5)
    reloaded = build_static_model(architecture, 12, 5, 8, config.dropout, modalities=3)  # identity statistics
    reloaded.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(torch.from_numpy(x)), standardised(torch.from_numpy(x)))
