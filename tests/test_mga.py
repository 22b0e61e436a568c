"""MGA: the loss against a plain-loop reference, missing tokens, modality dropout, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from clintraj.metrics.retrieval import recall_at_k
from clintraj.models.encoders import VectorEncoder
from clintraj.models.mga import MGAModel, embed, mga_loss, modality_dropout


pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---------------------------------------------------------------- reference (METHOD.md §1, plain loops)

def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm > 0 else [0.0] * len(v)


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def reference_loss(z, d, tau, tokens_in_context=False):
    """Straight from the equations: lists and loops, nothing shared with the implementation."""
    B, M, D = len(z), len(z[0]), len(z[0][0])
    n = [sum(d[i]) for i in range(B)]
    w = [[1 if tokens_in_context else d[i][k] for k in range(M)] for i in range(B)]

    def centroid(i, m):  # eq. 2
        return _unit([sum(w[i][k] * z[i][k][x] for k in range(M) if k != m) for x in range(D)])

    def glob(i):  # eq. 3
        return _unit([sum(w[i][k] * z[i][k][x] for k in range(M)) for x in range(D)])

    per_modality = []
    for m in range(M):
        terms = []
        for i in range(B):
            if not (d[i][m] == 1 and n[i] >= 2):
                continue
            positive = _dot(z[i][m], centroid(i, m)) / tau
            negatives = [_dot(z[i][m], centroid(j, m) if n[j] - d[j][m] >= 1 else glob(j)) / tau for j in range(B)]
            top = max(negatives)
            terms.append(-(positive - (top + math.log(sum(math.exp(x - top) for x in negatives)))))
        if terms:
            per_modality.append(sum(terms) / len(terms))
    return sum(per_modality) / len(per_modality) if per_modality else 0.0


def _angles(degrees):
    return [[[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in row] for row in degrees]


# stay 0 has all three modalities, stay 1 has 0 and 1, stay 2 only modality 0 (its negative target
# for m=0 falls back to g[2]); absent slots hold "tokens" at 200, 250 and 300 degrees.
TINY_Z = _angles([[0, 30, 100], [60, 170, 300], [220, 250, 300]])
TINY_D = [[1, 1, 1], [1, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize("tokens_in_context", [False, True])
def test_loss_matches_hand_computation_on_tiny_case(tokens_in_context):
    loss, info = mga_loss(torch.tensor(TINY_Z, dtype=torch.float64), torch.tensor(TINY_D, dtype=torch.bool),
                          0.5, tokens_in_context)
    assert loss.item() == pytest.approx(reference_loss(TINY_Z, TINY_D, 0.5, tokens_in_context), rel=1e-10)
    assert info["anchors_per_modality"] == [2, 2, 1]
    assert info["empty_batch"] is False


def test_loss_closed_form():
    """Two stays, two modalities, own views identical and orthogonal to the other stay's:
    each anchor's logits are (1/tau, 0), so L = log(1 + exp(-1/tau))."""
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    loss, _ = mga_loss(z, torch.ones(2, 2, dtype=torch.bool), 0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)


def test_negative_falls_back_to_global_when_stay_has_only_that_modality():
    z = torch.tensor(TINY_Z, dtype=torch.float64)
    _, info = mga_loss(z, torch.tensor(TINY_D, dtype=torch.bool), 0.5, missing_tokens_in_context=False)
    # modality 0: anchors 0 and 1; targets c[0,0], c[1,0] and, for stay 2 (modality 0 only), g[2] = z[2,0]
    targets = torch.stack([nn.functional.normalize(z[0, 1] + z[0, 2], dim=0), z[1, 1], z[2, 0]])
    terms = [-torch.log_softmax(targets @ z[i, 0] / 0.5, dim=0)[i] for i in (0, 1)]
    assert info["loss_per_modality"][0] == pytest.approx(float(sum(terms) / 2), rel=1e-10)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tokens_in_context", [False, True])
def test_loss_matches_reference_on_random_cases(seed, tokens_in_context):
    g = torch.Generator().manual_seed(seed)
    B, M, D = 8, 5, 4
    z = nn.functional.normalize(torch.randn(B, M, D, generator=g, dtype=torch.float64), dim=-1)
    present = torch.rand(B, M, generator=g) < 0.5
    present[torch.arange(B), torch.randint(M, (B,), generator=g)] = True  # at least one each
    present[0] = False
    present[0, 2] = True  # a stay with a single modality for the fallback
    tau = float(torch.empty(1).uniform_(0.05, 1.0, generator=g))
    loss, _ = mga_loss(z, present, tau, tokens_in_context)
    expected = reference_loss(z.tolist(), present.int().tolist(), tau, tokens_in_context)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_empty_batch_gives_connected_zero():
    z = nn.functional.normalize(torch.randn(4, 3, 2), dim=-1).requires_grad_()
    present = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=torch.bool)
    tau = torch.tensor(0.1, requires_grad=True)
    loss, info = mga_loss(z, present, tau)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    assert info["empty_batch"] is True and info["anchors_per_modality"] == [0, 0, 0]
    loss.backward()
    assert torch.all(z.grad == 0) and tau.grad == 0


# ---------------------------------------------------------------- the model

class Recorder(nn.Module):
    """A vector encoder that records the rows it was run on."""

    def __init__(self, in_features, latent_dim):
        super().__init__()
        self.linear = nn.Linear(in_features, latent_dim)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.linear(x)


def _batch(present, dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    present = torch.as_tensor(present, dtype=torch.bool)
    batch = {"present": present, "stay_id": torch.arange(len(present))}
    for index, (m, dim) in enumerate(dims.items()):
        batch[f"{m}.x"] = torch.randn(len(present), dim, generator=g) * present[:, index, None]
    return batch


DIMS = {"a": 3, "b": 4, "c": 2}
PRESENT = [[1, 1, 0], [1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0]]


def _model(encoders=None, **kwargs):
    encoders = encoders or nn.ModuleDict({m: VectorEncoder(d, 8, hidden=16) for m, d in DIMS.items()})
    return MGAModel(encoders, list(DIMS), 8, **kwargs)


def test_encoders_run_only_on_present_rows_and_tokens_fill_the_rest():
    torch.manual_seed(0)
    model = _model(nn.ModuleDict({m: Recorder(d, 8) for m, d in DIMS.items()}))
    batch = _batch(PRESENT, DIMS)
    out = model(batch)
    present = batch["present"]
    for index, m in enumerate(DIMS):
        (seen,) = model.encoders[m].seen
        assert torch.equal(seen, batch[f"{m}.x"][present[:, index]])
        assert torch.allclose(out["h"][present[:, index], index], model.encoders[m].linear(seen))
        assert torch.equal(out["h"][~present[:, index], index],
                           model.missing_tokens[index].expand(int((~present[:, index]).sum()), -1))
    assert torch.allclose(out["z"].norm(dim=-1), torch.ones(len(PRESENT), 3))
    assert torch.equal(out["present"], present)


def test_modality_nobody_has_is_not_encoded():
    model = _model(nn.ModuleDict({m: Recorder(d, 8) for m, d in DIMS.items()}))
    model(_batch([[1, 1, 0], [1, 0, 0]], DIMS))
    assert model.encoders["c"].seen == []


@pytest.mark.parametrize("tokens_in_context", [False, True])
def test_missing_tokens_get_gradient_only_when_in_context(tokens_in_context):
    torch.manual_seed(0)
    model = _model(missing_tokens_in_context=tokens_in_context)
    loss, _ = model.loss(model(_batch(PRESENT, DIMS)))
    loss.backward()
    grad = model.missing_tokens.grad
    if tokens_in_context:
        assert grad is not None and torch.all(grad.abs().sum(dim=1) > 0)  # every modality is absent somewhere
    else:
        assert grad is None or torch.all(grad == 0)
    assert model.log_tau.grad is not None and model.log_tau.grad != 0


def test_tau_is_clamped():
    model = _model(init_tau=0.07, tau_bounds=(0.01, 1.0))
    assert model.tau.item() == pytest.approx(0.07)
    with torch.no_grad():
        model.log_tau.fill_(5.0)
    assert model.tau.item() == pytest.approx(1.0)
    with torch.no_grad():
        model.log_tau.fill_(-10.0)
    assert model.tau.item() == pytest.approx(0.01)


# ---------------------------------------------------------------- modality dropout

def test_dropout_never_removes_the_last_modality():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        present = torch.rand(64, 5, generator=g) < torch.rand(1, generator=g)
        out = modality_dropout(present, p=1.0, generator=g)
        n_before, n_after = present.sum(1), out.sum(1)
        assert torch.all(out <= present)                                   # only removes
        assert torch.all(n_after == torch.where(n_before >= 2, n_before - 1, n_before))
        assert torch.all(n_after >= n_before.clamp(max=1))                  # never the last one


def test_dropout_frequency_and_uniform_choice():
    g = torch.Generator().manual_seed(1)
    present = torch.ones(20000, 4, dtype=torch.bool)
    present[:5000, 3] = False
    dropped = present & ~modality_dropout(present, p=0.3, generator=g)
    assert dropped.any(dim=1).float().mean().item() == pytest.approx(0.3, abs=0.015)
    full = dropped[5000:][dropped[5000:].any(dim=1)]
    assert np.allclose(full.float().mean(0).numpy(), 0.25, atol=0.02)  # uniform over present modalities
    assert not dropped[:5000, 3].any()
    single = torch.zeros(1000, 4, dtype=torch.bool)
    single[:, 1] = True
    assert torch.equal(modality_dropout(single, p=1.0, generator=g), single)


def test_model_dropout_in_training_only_and_encoders_skip_dropped_rows():
    torch.manual_seed(0)
    model = _model(nn.ModuleDict({m: Recorder(d, 8) for m, d in DIMS.items()}), modality_dropout=1.0)
    batch = _batch(PRESENT, DIMS)
    out = model(batch)
    n = batch["present"].sum(1)
    assert torch.equal(out["present"].sum(1), torch.where(n >= 2, n - 1, n))
    assert torch.equal(out["dropped"], batch["present"] & ~out["present"])
    for index, m in enumerate(DIMS):
        assert len(model.encoders[m].seen[-1]) == int(out["present"][:, index].sum())
        dropped = out["dropped"][:, index]
        assert torch.equal(out["h"][dropped, index], model.missing_tokens[index].expand(int(dropped.sum()), -1))
    model.eval()
    assert torch.equal(model(batch)["present"], batch["present"])
    model.train()
    h, present = embed(model, batch)
    assert torch.equal(present, batch["present"]) and model.training and not h.requires_grad


# ---------------------------------------------------------------- learning

def _views(n, generator):
    """Modalities a, b: noisy linear views of one latent; c: noise. ~25% of slots missing."""
    latent = torch.randn(n, 6, generator=generator)
    maps = torch.Generator().manual_seed(123)  # the same views for train and test stays
    a = latent @ torch.randn(6, 10, generator=maps) + 0.1 * torch.randn(n, 10, generator=generator)
    b = torch.tanh(latent @ torch.randn(6, 12, generator=maps)) + 0.1 * torch.randn(n, 12, generator=generator)
    c = torch.randn(n, 5, generator=generator)
    present = torch.rand(n, 3, generator=generator) > 0.25
    present[present.sum(1) == 0, 0] = True
    return {"present": present, "a.x": a * present[:, :1], "b.x": b * present[:, 1:2], "c.x": c * present[:, 2:]}


def test_mga_learns_cross_modal_alignment():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, test = _views(64, g), _views(256, g)
    model = MGAModel(nn.ModuleDict({"a": VectorEncoder(10, 16, hidden=64), "b": VectorEncoder(12, 16, hidden=64),
                                    "c": VectorEncoder(5, 16, hidden=64)}), ["a", "b", "c"], 16,
                     modality_dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss, _ = model.loss(model(train))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    h, present = embed(model, test)
    scores = recall_at_k(nn.functional.normalize(h, dim=-1), present, ks=(1,), modality_names=["a", "b", "c"])
    pair = scores["pairs"]["a->b"]
    assert pair["recall_at_1"] > 10 * pair["random_at_1"], pair
