"""Pretraining metrics: cross-modal retrieval Recall@K and the modality silhouette (paper §3.5, §4.1),
the paper's Table 1 layout of the retrieval scores, per-modality silhouettes and the 2-D
projection plot of the latent space (appendix A.8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
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
    z, stays, modalities = _present_points(z, present, max_points, seed)
    n_labels = len(np.unique(modalities))
    if n_labels < 2 or n_labels >= len(stays):
        return float("nan")
    return float(silhouette_score(z[stays, modalities], modalities, metric="cosine"))


def _present_points(z, present, max_points: int | None, seed: int):
    """(z as numpy, stays, modalities) of the present slots; above `max_points` a fixed random
    subset (numpy seed `seed`), kept in (stay, modality) order."""
    z = _as_tensor(z).float().numpy()
    present = _as_tensor(present).bool().numpy()
    stays, modalities = np.nonzero(present)
    if max_points is not None and len(stays) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(stays), size=max_points, replace=False))
        stays, modalities = stays[keep], modalities[keep]
    return z, stays, modalities


def _names(modality_names, M: int) -> list[str]:
    names = list(modality_names) if modality_names is not None else [str(m) for m in range(M)]
    if len(names) != M:
        raise ValueError(f"{len(names)} modality names for {M} modalities")
    return names


def retrieval_table(result: dict, ks: Sequence[int] = (1, 5, 10)) -> pd.DataFrame:
    """The scores of `recall_at_k` laid out like the paper's Table 1, one row per ordered pair.

    Index "pair": the pairs ("a->b", in `result` order) then "mean". Columns, for each K in
    `ks`: "R@K" and "random@K" (fractions, not percent) and "improvement@K" = R@K / random@K
    (the paper's improvement factor); then "n_queries" and "n_candidates".

    The "mean" row holds the unweighted mean over the pair rows of R@K, random@K, n_queries and
    n_candidates (so R@K and random@K equal `result["mean"]`); its improvement@K is, as in
    Table 1, mean R@K / mean random@K, not the mean of the pairs' factors. With no pair, the
    table has only a NaN "mean" row. Every K in `ks` must have been scored by `recall_at_k`.
    """
    columns = [c for k in ks for c in (f"R@{k}", f"random@{k}", f"improvement@{k}")] + ["n_queries", "n_candidates"]
    rows = {}
    for pair, scores in result["pairs"].items():
        row = {}
        for k in ks:
            recall, random = scores[f"recall_at_{k}"], scores[f"random_at_{k}"]
            row |= {f"R@{k}": recall, f"random@{k}": random, f"improvement@{k}": recall / random}
        rows[pair] = row | {"n_queries": scores["n_queries"], "n_candidates": scores["n_candidates"]}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=float)
    mean = table.mean(axis=0) if len(table) else pd.Series(np.nan, index=columns)
    for k in ks:
        mean[f"improvement@{k}"] = mean[f"R@{k}"] / mean[f"random@{k}"]
    table.loc["mean"] = mean
    table.index.name = "pair"
    return table


def silhouette_per_modality(z, present, modality_names: Sequence[str] | None, max_points: int = 5000,
                            seed: int = 0) -> dict[str, float]:
    """Per-modality silhouettes (cosine) of the present embeddings labelled by their modality.

    The points (and the `max_points` / `seed` subsample) are those of `modality_silhouette`;
    each point gets sklearn's `silhouette_samples` value, and a modality's score is the mean
    over its points. Returns {name: score for each modality, "overall": mean over all points}
    ("overall" equals `modality_silhouette`). NaN everywhere when fewer than two modalities or
    too few points, and for a modality with no point in the (sub)sample.
    """
    z, stays, modalities = _present_points(z, present, max_points, seed)
    names = _names(modality_names, z.shape[1])
    n_labels = len(np.unique(modalities))
    if n_labels < 2 or n_labels >= len(stays):
        return {name: float("nan") for name in names} | {"overall": float("nan")}
    values = silhouette_samples(z[stays, modalities], modalities, metric="cosine")
    out = {name: float(values[modalities == m].mean()) if np.any(modalities == m) else float("nan")
           for m, name in enumerate(names)}
    return out | {"overall": float(values.mean())}


def _pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA by SVD of the centred data; each axis's sign is fixed so that its largest
    loading is positive (deterministic). Returns (coords (n, 2), explained variance ratios (2,))."""
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:2]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    coords = centred @ vt.T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    variance = s ** 2
    ratios = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return coords, np.pad(ratios, (0, 2 - len(ratios)))


def projection_plot(z, present, modality_names: Sequence[str] | None, path, method: str = "pca",
                    max_points: int = 3000, seed: int = 0, normalize: bool = True,
                    title: str | None = None) -> Path:
    """A 2-D projection of the present modality embeddings coloured by modality (appendix A.8).

    Points: every present (stay, modality) embedding (above `max_points` a fixed random subset,
    numpy seed `seed`), L2-normalised first when `normalize` (the latent space the loss sees).
    method "pca": numpy SVD, deterministic; "tsne": sklearn's TSNE (cosine metric, PCA init,
    `random_state=seed`). Drawn with matplotlib's Agg canvas (no pyplot state, no display) and
    saved as a PNG at `path` (parent folders created). Returns the path.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if method not in ("pca", "tsne"):
        raise ValueError(f"unknown projection method {method!r} (pca or tsne)")
    z, stays, modalities = _present_points(z, present, max_points, seed)
    names = _names(modality_names, z.shape[1])
    if len(stays) == 0:
        raise ValueError("no present embedding to plot")
    x = z[stays, modalities].astype(np.float64)
    if normalize:
        x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    if method == "pca":
        coords, ratios = _pca_2d(x)
        labels = (f"PC1 ({100 * ratios[0]:.1f}% var.)", f"PC2 ({100 * ratios[1]:.1f}% var.)")
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
        coords = TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
                      random_state=seed).fit_transform(x)
        labels = ("t-SNE 1", "t-SNE 2")

    figure = Figure(figsize=(6.5, 5.5), dpi=150)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    for m, name in enumerate(names):
        mask = modalities == m
        if mask.any():
            ax.scatter(coords[mask, 0], coords[mask, 1], s=6, alpha=0.6, color=cmap(m % cmap.N),
                       label=f"{name} (n={int(mask.sum())})", linewidths=0)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title or f"Latent modality embeddings ({method.upper() if method == 'pca' else 't-SNE'})")
    ax.legend(markerscale=3, fontsize=8, loc="best", frameon=False)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
