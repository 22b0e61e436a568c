"""Per-feature standardisation of frozen embeddings, fitted on the training split.

The encoders' embeddings come in scales that differ by modality and by initialisation
(contrastive ones near unit norm, scratch ones a few times smaller), and the downstream models
see a few hundred stays for a few epochs: on raw embeddings their first layer spent those steps
on the scale, not the signal (MIMIC-IV phenotyping, 2026-12-06). A fixed affine map before a
learnable linear layer changes what the optimiser sees, not what the model can express.
The statistics (`data.features.standardisation`) are buffers: saved and loaded with the weights.
"""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std over the last dimension; the identity when built with its size alone."""

    def __init__(self, features: int, mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32) if mean is not None
                             else torch.zeros(features))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32) if std is not None
                             else torch.ones(features))
        if self.mean.shape != (features,) or self.std.shape != (features,):
            raise ValueError(f"standardisation statistics of {features} features expected, got "
                             f"{tuple(self.mean.shape)} and {tuple(self.std.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
