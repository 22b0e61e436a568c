"""Static late fusion: every modality's vector concatenated, an MLP head (paper §3.3.1)."""

from __future__ import annotations

from torch import nn


class StaticMLP(nn.Module):
    def __init__(self, in_features: int, out_features: int = 1, hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, out_features),
        )

    def forward(self, x):
        return self.net(x)
