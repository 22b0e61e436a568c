"""Pretraining metrics: cross-modal retrieval Recall@K and the modality silhouette (paper §3.5, §4.1)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import silhouette_score


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
    names = list(modality_names) if modality_names is not None else [str(m) for m in range(M)]
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


def modality_silhouette(z, present, modality_names: Sequence[str] | None = None, max_points: int = 5000,
                        seed: int = 0) -> float:
    """Silhouette (cosine) of the present embeddings labelled by their modality; low means mixed.

    Every present (stay, modality) embedding is a point; above `max_points` a fixed random
    subset (numpy seed `seed`) is scored. NaN when fewer than two modalities or too few points.
    `modality_names` only documents the label order (labels are the modality indices).
    """
    z = _as_tensor(z).float().numpy()
    present = _as_tensor(present).bool().numpy()
    stays, modalities = np.nonzero(present)
    if max_points is not None and len(stays) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(stays), size=max_points, replace=False))
        stays, modalities = stays[keep], modalities[keep]
    n_labels = len(np.unique(modalities))
    if n_labels < 2 or n_labels >= len(stays):
        return float("nan")
    return float(silhouette_score(z[stays, modalities], modalities, metric="cosine"))
