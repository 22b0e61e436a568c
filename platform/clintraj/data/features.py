"""Per-stay feature vectors of one modality's table, scaled with the training split's statistics.

Numbers are sign-log scaled (`sign(x) log(1 + |x|)`, paper appendix B.1) and
z-scored with training-split statistics; categories are one-hot over the
training split's values (the most frequent one imputed); an absent modality
is all zeros next to its presence flag, so the model sees that it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def sign_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class ModalityScaler:
    numbers: list[str]
    categories: dict[str, list[str]]
    mean: np.ndarray
    std: np.ndarray
    fill: dict[str, object] = field(default_factory=dict)

    @classmethod
    def fit(cls, table: pd.DataFrame) -> "ModalityScaler":
        columns = [c for c in table.columns if c != "stay_id"]
        categorical = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c])]
        numbers = [c for c in columns if c not in categorical]
        fill = {c: float(table[c].mean()) if table[c].notna().any() else 0.0 for c in numbers}
        fill.update({c: (table[c].mode().iloc[0] if table[c].notna().any() else "unknown") for c in categorical})
        categories = {c: sorted(table[c].fillna(fill[c]).astype(str).unique()) for c in categorical}
        scaled = sign_log(table[numbers].fillna(fill).to_numpy(dtype=float))
        mean = scaled.mean(axis=0) if len(scaled) else np.zeros(len(numbers))
        std = scaled.std(axis=0) if len(scaled) else np.ones(len(numbers))
        return cls(numbers, categories, mean, np.where(std > 1e-8, std, 1.0), fill)

    @property
    def names(self) -> list[str]:
        return self.numbers + [f"{c}={v}" for c, values in self.categories.items() for v in values]

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        numbers = (sign_log(table[self.numbers].fillna(self.fill).to_numpy(dtype=float)) - self.mean) / self.std
        one_hots = [
            (table[c].fillna(self.fill[c]).astype(str).to_numpy()[:, None] == np.array(values)[None, :]).astype(float)
            for c, values in self.categories.items()
        ]
        return np.concatenate([numbers, *one_hots], axis=1)


def modality_vectors(scaler: ModalityScaler, table: pd.DataFrame, stay_ids: pd.Series) -> np.ndarray:
    """The scaled rows of one modality's table in `stay_ids` order; zeros for stays without it."""
    row = pd.Index(table["stay_id"]).get_indexer(stay_ids)
    vectors = np.zeros((len(stay_ids), len(scaler.names)))
    if (row >= 0).any():
        vectors[row >= 0] = scaler.transform(table.iloc[row[row >= 0]])
    return vectors


@dataclass
class FeatureMoments:
    """Per-feature mean and std of vectors added in parts (the training split's embeddings, streamed
    shard by shard), for `models.standardize.Standardize`; std 1 where a feature is constant. Parts
    combine by Chan et al.'s pairwise update: no sum of squares to cancel, so a constant feature's
    spread is exactly 0 whatever its value."""

    features: int
    count: int = 0
    mean: np.ndarray | None = None
    squared_deviations: np.ndarray | None = None  # sum of (x - mean)^2

    @classmethod
    def of(cls, x: np.ndarray) -> "FeatureMoments":
        """The moments of `x` (N, ...), each row one vector."""
        moments = cls(int(np.prod(x.shape[1:])))
        moments.add(x)
        return moments

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1, self.features)
        if not len(x):
            return
        mean = x.mean(axis=0)
        deviations = np.square(x - mean).sum(axis=0)
        if not self.count:
            self.count, self.mean, self.squared_deviations = len(x), mean, deviations
            return
        count = self.count + len(x)
        delta = mean - self.mean
        self.mean = self.mean + delta * (len(x) / count)
        self.squared_deviations = self.squared_deviations + deviations + delta ** 2 * (self.count * len(x) / count)
        self.count = count

    def stats(self) -> tuple[list[float], list[float]]:
        if not self.count:
            return [0.0] * self.features, [1.0] * self.features
        std = np.sqrt(self.squared_deviations / self.count)
        return self.mean.tolist(), np.where(std > 1e-6, std, 1.0).tolist()
