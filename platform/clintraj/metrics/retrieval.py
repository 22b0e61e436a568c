"""Pretraining metrics (paper §3.5, §4.1; METHOD.md §1): cross-modal retrieval Recall@K, the pooled
retrieval score the sweeps compare runs by, and the modality silhouette."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import silhouette_samples, silhouette_score


def _as_tensor(x) -> torch.Tensor:
    return x.detach().cpu() if torch.is_tensor(x) else torch.from_numpy(np.asarray(x))


def recall_at_k(z, present, ks: Sequence[int] = (1, 5, 10), modality_names: Sequence[str] | None = None,
                chunk: int = 1024) -> dict:
    """Cross-modal retrieval Recall@K for every ordered pair of modalities (a, b).

    Queries: the stays with both a and b; candidates: every stay with b. A query's rank is the
    number of *other* candidates whose b embedding is at least as similar (cosine) to its a
    embedding as its own b embedding (ties count against it, so a collapsed space scores 0, not
    1); a hit at K when rank < K. Random baseline: min(K, n) / n for n candidates.

    Returns {"pairs": {"a->b": {"n_queries", "n_candidates", "recall_at_K", "random_at_K"}},
    "mean": {"recall_at_K", "random_at_K"}}: the mean is unweighted over the pairs with at
    least one query (NaN when there is none).
    """
    z = torch.nn.functional.normalize(_as_tensor(z).float(), dim=-1)
    present = _as_tensor(present).bool()
    M = z.shape[1]
    names = modality_names_of(modality_names, M)
    pairs = {}
    for a in range(M):
        for b in range(M):
            if a == b:
                continue
            candidates = present[:, b].nonzero(as_tuple=True)[0]
            queries = (present[:, a] & present[:, b]).nonzero(as_tuple=True)[0]
            if len(queries) == 0:
                continue
            # a query's own position among the candidates
            own = torch.searchsorted(candidates, queries)
            keys = z[candidates, b]
            ranks = []
            for start in range(0, len(queries), chunk):
                q, o = queries[start:start + chunk], own[start:start + chunk]
                sims = z[q, a] @ keys.T                                   # (q, n_candidates)
                own_sim = sims.gather(1, o[:, None])
                ranks.append((sims >= own_sim).sum(dim=1) - 1)          # minus itself
            rank = torch.cat(ranks)
            n = len(candidates)
            result = {"n_queries": len(queries), "n_candidates": n}
            for k in ks:
                result[f"recall_at_{k}"] = float((rank < k).float().mean())
                result[f"random_at_{k}"] = min(k, n) / n
            pairs[f"{names[a]}->{names[b]}"] = result
    mean = {}
    for k in ks:
        for metric in (f"recall_at_{k}", f"random_at_{k}"):
            values = [p[metric] for p in pairs.values()]
            mean[metric] = float(np.mean(values)) if values else float("nan")
    return {"pairs": pairs, "mean": mean}


def pooled_recall(z, present, k: int = 10, pool: int = 128) -> tuple[float, int]:
    """(sum, count) of the mean Recall@k of each full pool of `pool` consecutive stays (all stays as
    one pool when there are fewer): a retrieval score whose chance level is fixed by `pool`, so it
    compares runs of any batch size and either reading of METHOD.md's ambiguity A. Sums and
    counts add up across workers."""
    n = len(z)
    starts = range(0, n - pool + 1, pool) if n >= pool else ([0] if n else [])
    total, count = 0.0, 0
    for start in starts:
        scores = recall_at_k(z[start:start + pool], present[start:start + pool], ks=(k,))["mean"][f"recall_at_{k}"]
        if np.isfinite(scores):
            total, count = total + scores, count + 1
    return total, count


def modality_silhouette(z, present, modality_names: Sequence[str] | None = None, max_points: int = 5000,
                        seed: int = 0) -> float:
    """Silhouette (cosine) of the present embeddings labelled by their modality; low means mixed.

    Every present (stay, modality) embedding is a point; above `max_points` a fixed random
    subset (numpy seed `seed`) is scored. NaN when fewer than two modalities or too few points.
    `modality_names` only documents the label order (labels are the modality indices).
    """
    z, stays, modalities = present_points(z, present, max_points, seed)
    n_labels = len(np.unique(modalities))
    if n_labels < 2 or n_labels >= len(stays):
        return float("nan")
    return float(silhouette_score(z[stays, modalities], modalities, metric="cosine"))


def present_points(z, present, max_points: int | None, seed: int):
    """(z as numpy, stays, modalities) of the present slots; above `max_points` a fixed random
    subset (numpy seed `seed`), kept in (stay, modality) order."""
    z = _as_tensor(z).float().numpy()
    present = _as_tensor(present).bool().numpy()
    stays, modalities = np.nonzero(present)
    if max_points is not None and len(stays) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(stays), size=max_points, replace=False))
        stays, modalities = stays[keep], modalities[keep]
    return z, stays, modalities


def modality_names_of(modality_names, M: int) -> list[str]:
    names = list(modality_names) if modality_names is not None else [str(m) for m in range(M)]
    if len(names) != M:
        raise ValueError(f"{len(names)} modality names for {M} modalities")
    return names


def silhouette_per_modality(z, present, modality_names: Sequence[str] | None, max_points: int = 5000,
                            seed: int = 0) -> dict[str, float]:
    """Per-modality silhouettes (cosine) of the present embeddings labelled by their modality.

    The points (and the `max_points` / `seed` subsample) are those of `modality_silhouette`;
    each point gets sklearn's `silhouette_samples` value, and a modality's score is the mean
    over its points. Returns {name: score for each modality, "overall": mean over all points}
    ("overall" equals `modality_silhouette`). NaN everywhere when fewer than two modalities or
    too few points, and for a modality with no point in the (sub)sample.
    """
    z, stays, modalities = present_points(z, present, max_points, seed)
    names = modality_names_of(modality_names, z.shape[1])
    n_labels = len(np.unique(modalities))
    if n_labels < 2 or n_labels >= len(stays):
        return {name: float("nan") for name in names} | {"overall": float("nan")}
    values = silhouette_samples(z[stays, modalities], modalities, metric="cosine")
    out = {name: float(values[modalities == m].mean()) if np.any(modalities == m) else float("nan")
           for m, name in enumerate(names)}
    return out | {"overall": float(values.mean())}
