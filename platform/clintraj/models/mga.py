"""Masked Global Alignment (MGA) pretraining: missing tokens, modality dropout, the loss
(paper §3.2, METHOD.md §1).

Batch layout (built by `clintraj.data.stay_inputs.collate`): `present` (B, M) bool in the
dataset's modality order, and each modality's inputs under keys `f"{m}.<name>"`; the
encoder of `m` receives them as keyword arguments (see `clintraj.models.encoders`).

Reading of METHOD.md's ambiguity A (`missing_tokens_in_context`, METHOD.md §1):
True (the default) replaces `d` by 1 in the centroid and global sums only, so the missing tokens
take part in the loss and learn; False keeps them out (they then get no gradient). The anchor sets `V_m` (`n[i] >= 2`) and the negative
fallback (`c[j,m]` when `n[j] - d[j,m] >= 1`, else `g[j]`) keep the observed presence, so
both options have the same anchors and differ only in what the context vectors hold.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn


def modality_dropout(present: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability `p` per stay, mark one uniformly chosen present modality absent.

    Stays with fewer than two present modalities are left alone, so no stay loses its last one.
    Returns a new mask; `present` is not modified.
    """
    if p <= 0:
        return present
    B, M = present.shape
    u = torch.rand(B, generator=generator, device=present.device)
    scores = torch.rand(B, M, generator=generator, device=present.device).masked_fill(~present, -1.0)
    choice = scores.argmax(dim=1)  # a uniform random present modality (any, when none is present)
    drop = (u < p) & (present.sum(dim=1) >= 2)
    out = present.clone()
    out[drop.nonzero(as_tuple=True)[0], choice[drop]] = False
    return out


class MGAModel(nn.Module):
    """Encoders + one learnable missing token per modality + the learnable temperature.

    forward(batch) -> {"h" (B, M, D): encoder output where present, token t_m where absent;
    "z": h L2-normalised; "present" (B, M): the mask after modality dropout (training only);
    "dropped" (B, M): what dropout removed; "tau": the clamped temperature}. An encoder runs
    only on the rows that have its modality (after dropout); a modality no stay has is skipped.
    """

    def __init__(self, encoders: nn.ModuleDict, modality_names: list[str], latent_dim: int,
                 modality_dropout: float = 0.0, missing_tokens_in_context: bool = True,
                 init_tau: float = 0.07, tau_bounds: tuple[float, float] = (0.01, 1.0)):
        super().__init__()
        self.modality_names = list(modality_names)
        unknown = set(self.modality_names) - set(encoders.keys())
        if unknown:
            raise ValueError(f"no encoder for modalities {sorted(unknown)}")
        self.encoders = encoders
        self.latent_dim = latent_dim
        self.modality_dropout = modality_dropout
        self.missing_tokens_in_context = missing_tokens_in_context
        self.missing_tokens = nn.Parameter(0.02 * torch.randn(len(self.modality_names), latent_dim))
        self.log_tau = nn.Parameter(torch.tensor(math.log(init_tau)))
        self.tau_bounds = tuple(tau_bounds)
        self._input_names = {m: _accepted_inputs(encoders[m]) for m in self.modality_names}

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(*self.tau_bounds)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        observed = batch["present"].to(device=self.missing_tokens.device, dtype=torch.bool)
        present = modality_dropout(observed, self.modality_dropout) if self.training else observed
        B = present.shape[0]
        columns = []
        for index, m in enumerate(self.modality_names):
            token = self.missing_tokens[index].expand(B, -1)
            rows = present[:, index].nonzero(as_tuple=True)[0]
            if len(rows) == 0:
                columns.append(token)
                continue
            out = self.encoders[m](**self._inputs(batch, m, rows)).to(token.dtype)
            encoded = out.new_zeros(B, self.latent_dim).index_copy(0, rows, out)
            columns.append(torch.where(present[:, index, None], encoded, token))
        h = torch.stack(columns, dim=1)
        return {"h": h, "z": F.normalize(h, dim=-1), "present": present, "dropped": observed & ~present,
                "tau": self.tau}

    def _inputs(self, batch: dict, m: str, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        prefix, accepted = f"{m}.", self._input_names[m]
        inputs = {}
        for key, value in batch.items():
            name = key[len(prefix):]
            if key.startswith(prefix) and torch.is_tensor(value) and (accepted is None or name in accepted):
                inputs[name] = value.index_select(0, rows.to(value.device)).to(rows.device)
        return inputs

    def loss(self, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """`mga_loss` of a forward output with this model's ambiguity-A option."""
        return mga_loss(out["z"], out["present"], out["tau"], self.missing_tokens_in_context)


def _accepted_inputs(encoder: nn.Module) -> set[str] | None:
    """Keyword names the encoder's forward takes (None: it takes **kwargs, so everything)."""
    parameters = inspect.signature(encoder.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def mga_loss(z: torch.Tensor, present: torch.Tensor, tau: torch.Tensor | float,
             missing_tokens_in_context: bool = True) -> tuple[torch.Tensor, dict]:
    """The MGA loss of METHOD.md §1, vectorised over stays and modalities.

    z (B, M, D) unit vectors (tokens where absent), present (B, M) bool. For each modality m
    and anchor i in V_m = {d[i,m] = 1, n[i] >= 2}: InfoNCE of z[i,m] against the B targets
    c[j,m] (complementary centroid; g[j] when stay j has only m), the positive being c[i,m].
    Loss: mean over the modalities with a non-empty V_m. With no anchor at all the loss is a
    zero still attached to the graph, and info["empty_batch"] is True.

    info: "loss_per_modality" (list of M floats, 0.0 where V_m is empty),
    "anchors_per_modality" (list of M ints), "empty_batch" (bool).
    """
    d = present.to(z.dtype)
    weights = torch.ones_like(d) if missing_tokens_in_context else d
    total = torch.einsum("bm,bmd->bd", weights, z)
    g = F.normalize(total, dim=-1)                                          # (B, D) eq. 3
    c = F.normalize(total[:, None, :] - weights[..., None] * z, dim=-1)     # (B, M, D) eq. 2
    n = d.sum(dim=1)
    has_context = (n[:, None] - d) >= 1                                     # c[j,m] defined
    targets = torch.where(has_context[..., None], c, g[:, None, :])         # eq. 4
    logits = torch.einsum("imd,jmd->mij", z, targets) / tau                 # (M, B anchors, B targets)
    nll = torch.logsumexp(logits, dim=-1) - logits.diagonal(dim1=1, dim2=2)  # (M, B) eq. 5
    valid = (present.bool() & (n >= 2)[:, None]).T.to(z.dtype)             # V_m as (M, B)
    anchors = valid.sum(dim=1)
    per_modality = (nll * valid).sum(dim=1) / anchors.clamp(min=1)
    used = (anchors > 0).to(z.dtype)
    loss = (per_modality * used).sum() / used.sum().clamp(min=1)
    info = {
        "loss_per_modality": per_modality.detach().cpu().tolist(),
        "anchors_per_modality": [int(a) for a in anchors.detach().cpu().tolist()],
        "empty_batch": bool(used.sum() == 0),
    }
    return loss, info


@torch.no_grad()
def embed(model: MGAModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, present) of a batch in eval mode: no modality dropout, no encoder dropout.

    The model's train/eval state is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        out = model(batch)
    finally:
        model.train(was_training)
    return out["h"], out["present"]
