"""Static late-fusion baselines over one vector per modality (paper §3.3.1), each reading its input
standardised with the training split's statistics (`models.standardize`)."""

from __future__ import annotations

import torch
from torch import nn

from clintraj.models.standardize import Standardize


class StaticMLP(nn.Module):
    """The modality vectors concatenated, an MLP head."""

    def __init__(self, in_features: int, out_features: int = 1, hidden: int = 128, dropout: float = 0.2,
                 standardize: Standardize | None = None):
        super().__init__()
        self.standardize = standardize or Standardize(in_features)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, out_features),
        )

    @property
    def output(self) -> nn.Linear:
        return self.net[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(x))


class StaticLSTM(nn.Module):
    """The M modality embeddings read as an (unordered) sequence; the final hidden state to the head.

    Input: the concatenated vector (B, M * D), reshaped to (B, M, D).
    """

    def __init__(self, modalities: int, latent_dim: int, out_features: int = 1, hidden: int = 128,
                 dropout: float = 0.2, standardize: Standardize | None = None):
        super().__init__()
        self.modalities, self.latent_dim = modalities, latent_dim
        self.standardize = standardize or Standardize(modalities * latent_dim)
        self.lstm = nn.LSTM(latent_dim, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, out_features))

    @property
    def output(self) -> nn.Linear:
        return self.head[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardize(x)
        _, (hidden, _) = self.lstm(x.view(x.shape[0], self.modalities, self.latent_dim))
        return self.head(hidden[-1])


def build_static_model(architecture: str, in_features: int, out_features: int, hidden: int, dropout: float,
                       modalities: int = 0, input_stats: tuple[list[float], list[float]] | None = None) -> nn.Module:
    """`input_stats`: the training split's (mean, std) per input feature (`data.features.standardisation`)."""
    standardize = Standardize(in_features, *input_stats) if input_stats is not None else None
    if architecture == "mlp":
        return StaticMLP(in_features, out_features, hidden, dropout, standardize)
    if architecture == "lstm":
        if modalities < 1 or in_features % modalities:
            raise ValueError(f"lstm needs in_features ({in_features}) = modalities ({modalities}) x latent size")
        return StaticLSTM(modalities, in_features // modalities, out_features, hidden, dropout, standardize)
    raise ValueError(f"unknown architecture {architecture!r}: mlp or lstm")
