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
from sklearn.preprocessing import StandardScaler


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


def standardisation(scaler: StandardScaler, features: int) -> tuple[list[float], list[float]]:
    """(mean, std) per feature of the vectors `scaler` was fitted on (`partial_fit` part by part:
    the training split's embeddings, streamed shard by shard), for `models.standardize.Standardize`:
    std 1 where a feature is constant (scikit-learn's rule), the identity when it saw no vector."""
    if not hasattr(scaler, "mean_"):
        return [0.0] * features, [1.0] * features
    return scaler.mean_.tolist(), scaler.scale_.tolist()


def training_standardisation(x: np.ndarray) -> tuple[list[float], list[float]]:
    """`standardisation` of the rows of `x` (N, features), the training split's vectors."""
    x = np.asarray(x, np.float64)
    x = x.reshape(len(x), int(np.prod(x.shape[1:])))
    return standardisation(StandardScaler().fit(x) if len(x) else StandardScaler(), x.shape[1])
