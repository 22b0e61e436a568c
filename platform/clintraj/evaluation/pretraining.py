"""What pretraining learned, for people: the paper's Table 1 layout of the retrieval scores and the
2-D projection plot of the latent space (appendix A.8)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from clintraj.metrics.retrieval import modality_names_of, present_points


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
    z, stays, modalities = present_points(z, present, max_points, seed)
    names = modality_names_of(modality_names, z.shape[1])
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
