"""The sequential model (paper §3.3.2, METHOD.md section 3): a decoder reading event embeddings.

Each stay is a time-ordered list of frozen-encoder event embeddings. A
learnable projection maps each to the backbone's hidden size, and a
learnable [PREDICT] embedding follows every event:

    position  0    1          2    3          ...  2n-2  2n-1
    token     e_1  [PREDICT]  e_2  [PREDICT]  ...  e_n   [PREDICT]

The projection reads each event embedding standardised with the training split's statistics
(`models.standardize`). The sequence enters the (LoRA-adapted) decoder as `inputs_embeds`, right
padded with a zero attention mask; a task head reads the hidden state at
every [PREDICT] position, so position 2i+1 predicts from events 1..i+1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from clintraj.models.standardize import Standardize


def interleave(events: torch.Tensor, event_mask: torch.Tensor, predict: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, H) events + (B, L) mask -> (B, 2L, H) inputs_embeds with [PREDICT] after each event, (B, 2L) mask."""
    B, L, H = events.shape
    sequence = torch.stack([events, predict.to(events.dtype).expand(B, L, H)], dim=2).reshape(B, 2 * L, H)
    mask = event_mask.repeat_interleave(2, dim=1)
    return sequence, mask.long()


def predict_positions(n_events: int) -> np.ndarray:
    """Sequence positions of the [PREDICT] tokens of a stay with `n_events` events."""
    return 2 * np.arange(n_events) + 1


class SequentialModel(nn.Module):
    def __init__(self, backbone: nn.Module, latent_dim: int, hidden_size: int, out_features: int,
                 event_stats: tuple[list[float], list[float]] | None = None):
        """`event_stats`: the training events' (mean, std) per latent feature; a checkpoint's come
        back with its projection's weights (head.pt)."""
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Sequential(Standardize(latent_dim, *(event_stats or (None, None))),
                                        nn.Linear(latent_dim, hidden_size), nn.GELU(),
                                        nn.Linear(hidden_size, hidden_size))
        self.predict_embedding = nn.Parameter(0.02 * torch.randn(hidden_size))
        self.head = nn.Linear(hidden_size, out_features)

    def small_modules(self) -> dict[str, nn.Module | nn.Parameter]:
        """What is saved beside the adapter (the head file): projection, [PREDICT] embedding, head."""
        return {"projection": self.projection, "predict_embedding": self.predict_embedding, "head": self.head}

    def forward(self, events: torch.Tensor, event_mask: torch.Tensor, output_attentions: bool = False):
        """Logits (B, L, out) at every [PREDICT] position (padding positions are garbage: mask them);
        with `output_attentions`, also the backbone's per-layer attentions."""
        embedding_dtype = self.backbone.get_input_embeddings().weight.dtype
        projected = self.projection(events.to(self.head.weight.dtype)).to(embedding_dtype)
        inputs, mask = interleave(projected, event_mask, self.predict_embedding)
        positions = torch.arange(inputs.shape[1], device=inputs.device).expand(len(inputs), -1)
        out = self.backbone(inputs_embeds=inputs, attention_mask=mask, position_ids=positions,
                            output_attentions=output_attentions, use_cache=False)
        logits = self.head(out.last_hidden_state[:, 1::2].to(self.head.weight.dtype))
        return (logits, out.attentions) if output_attentions else logits


def last_logits(logits: torch.Tensor, event_mask: torch.Tensor) -> torch.Tensor:
    """(B, out): the logits at each stay's last [PREDICT] (what evaluation reads)."""
    last = event_mask.sum(dim=1).clamp(min=1) - 1
    return logits[torch.arange(len(logits), device=logits.device), last]


def sequence_loss(logits: torch.Tensor, y: torch.Tensor, event_mask: torch.Tensor, task: str,
                  pos_weight: torch.Tensor | None, loss_on: str = "all_predict") -> torch.Tensor:
    """METHOD.md section 4's loss at the [PREDICT] positions: every valid one (the mean over them)
    or only each stay's last (`loss_on`). y is (B, out): mortality/phenotyping 0/1, LoS log(1 + hours)."""
    if loss_on == "last_predict":
        logits, y = last_logits(logits, event_mask), y
    elif loss_on == "all_predict":
        mask = event_mask.bool()
        logits, y = logits[mask], y[:, None, :].expand(-1, mask.shape[1], -1)[mask]
    else:
        raise ValueError(f"loss_on must be all_predict or last_predict, got {loss_on!r}")
    if task == "los":
        return F.mse_loss(logits, y)
    return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
