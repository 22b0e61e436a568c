"""Retrieval Recall@K and the modality silhouette against brute force and sklearn."""

from __future__ import annotations

import numpy as np
import torch
import pytest
from sklearn.metrics import silhouette_samples, silhouette_score

from clintraj.evaluation.pretraining import projection_plot, retrieval_table
from clintraj.metrics.retrieval import modality_silhouette, recall_at_k, silhouette_per_modality


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(z, present, ks):
    """For each ordered pair and query: sort every candidate by cosine, ties against the query."""
    N, M, _ = z.shape
    out = {}
    for a in range(M):
        for b in range(M):
            if a == b:
                continue
            candidates = [j for j in range(N) if present[j, b]]
            hits, queries = {k: 0 for k in ks}, 0
            for i in range(N):
                if not (present[i, a] and present[i, b]):
                    continue
                queries += 1
                own = float(_unit(z[i, a]) @ _unit(z[i, b]))
                better = sum(1 for j in candidates if j != i and float(_unit(z[i, a]) @ _unit(z[j, b])) >= own)
                for k in ks:
                    hits[k] += better < k
            if queries:
                out[(a, b)] = {k: hits[k] / queries for k in ks} | {"n": len(candidates), "q": queries}
    return out


def test_recall_matches_brute_force():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(15, 3, 4))
    present = rng.random((15, 3)) < 0.7
    ks = (1, 3, 5)
    names = ["ts", "cxr", "demo"]
    result = recall_at_k(z, present, ks=ks, modality_names=names)
    expected = brute_force(z, present, ks)
    assert len(result["pairs"]) == len(expected) == 6
    for (a, b), values in expected.items():
        pair = result["pairs"][f"{names[a]}->{names[b]}"]
        assert pair["n_candidates"] == values["n"] and pair["n_queries"] == values["q"]
        for k in ks:
            assert pair[f"recall_at_{k}"] == pytest.approx(values[k])
            assert pair[f"random_at_{k}"] == pytest.approx(min(k, values["n"]) / values["n"])
    for k in ks:
        assert result["mean"][f"recall_at_{k}"] == pytest.approx(np.mean([v[k] for v in expected.values()]))
    assert recall_at_k(z, present, ks=ks, modality_names=names, chunk=2) == result


def test_aligned_embeddings_retrieve_perfectly():
    rng = np.random.default_rng(1)
    z = np.repeat(rng.normal(size=(50, 1, 8)), 4, axis=1) * rng.uniform(0.5, 2, size=(50, 4, 1))  # scale-free
    present = rng.random((50, 4)) < 0.8
    result = recall_at_k(z, present)
    assert len(result["pairs"]) == 4 * 3  # every ordered pair of the four modalities
    assert all(p["recall_at_1"] == 1.0 for p in result["pairs"].values())
    assert result["mean"]["recall_at_1"] == 1.0


def test_random_embeddings_score_the_random_baseline():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(1000, 3, 16))
    present = rng.random((1000, 3)) < 0.9
    mean = recall_at_k(z, present, ks=(1, 5, 10))["mean"]
    for k in (1, 5, 10):
        assert mean[f"recall_at_{k}"] == pytest.approx(mean[f"random_at_{k}"], abs=0.01)


def test_collapsed_embeddings_score_zero_not_one():
    z = np.ones((20, 2, 4))
    result = recall_at_k(z, np.ones((20, 2), dtype=bool), ks=(1, 10))
    assert result["mean"]["recall_at_1"] == 0.0 and result["mean"]["recall_at_10"] == 0.0


def test_pairs_without_queries_are_left_out():
    z = np.random.default_rng(3).normal(size=(6, 2, 3))
    present = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1]], dtype=bool)
    result = recall_at_k(z, present)
    assert result["pairs"] == {} and np.isnan(result["mean"]["recall_at_1"])


def test_silhouette_equals_sklearn():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(30, 3, 5))
    present = rng.random((30, 3)) < 0.6
    stays, modalities = np.nonzero(present)
    expected = silhouette_score(z[stays, modalities], modalities, metric="cosine")
    assert modality_silhouette(z, present, ["a", "b", "c"]) == pytest.approx(expected)


def test_silhouette_separated_vs_mixed_and_subsampling():
    rng = np.random.default_rng(5)
    centres = np.eye(4)[:3] * 10
    separated = centres[None] + rng.normal(size=(400, 3, 4))
    mixed = rng.normal(size=(400, 3, 4))
    present = np.ones((400, 3), dtype=bool)
    assert modality_silhouette(separated, present, max_points=300) > 0.5
    assert abs(modality_silhouette(mixed, present, max_points=300)) < 0.05
    assert modality_silhouette(mixed, present, max_points=300, seed=1) == modality_silhouette(
        mixed, present, max_points=300, seed=1)
    assert np.isnan(modality_silhouette(mixed, np.eye(3, dtype=bool)[[0] * 10]))  # one modality only


# ---------------------------------------------------------------- Table 1 layout, per-modality silhouette, plot

def _partly_aligned(n=120, M=3, D=8, seed=6):
    rng = np.random.default_rng(seed)
    z = np.repeat(rng.normal(size=(n, 1, D)), M, axis=1) + 0.7 * rng.normal(size=(n, M, D))
    present = rng.random((n, M)) < 0.75
    return z, present


def test_retrieval_table_layout_and_improvement_factor():
    z, present = _partly_aligned()
    names = ["ts", "cxr", "notes"]
    ks = (1, 5, 10)
    result = recall_at_k(z, present, ks=ks, modality_names=names)
    table = retrieval_table(result, ks=ks)
    pairs = [f"{a}->{b}" for a in names for b in names if a != b]
    assert list(table.index) == pairs + ["mean"] and table.index.name == "pair"
    assert list(table.columns) == [c for k in ks for c in (f"R@{k}", f"random@{k}", f"improvement@{k}")] + [
        "n_queries", "n_candidates"]
    for pair in pairs:
        scores = result["pairs"][pair]
        assert table.loc[pair, "n_queries"] == scores["n_queries"]
        assert table.loc[pair, "n_candidates"] == scores["n_candidates"]
        for k in ks:
            assert table.loc[pair, f"R@{k}"] == scores[f"recall_at_{k}"]
            assert table.loc[pair, f"random@{k}"] == scores[f"random_at_{k}"]
    for k in ks:
        assert np.allclose(table[f"improvement@{k}"], table[f"R@{k}"] / table[f"random@{k}"])  # mean row too
        assert table.loc["mean", f"R@{k}"] == pytest.approx(result["mean"][f"recall_at_{k}"])
        assert table.loc["mean", f"random@{k}"] == pytest.approx(result["mean"][f"random_at_{k}"])
        assert table.loc[pairs, f"improvement@{k}"].gt(1).all()  # aligned views beat chance
    pair_rows = table.loc[pairs]
    for column in [c for c in table.columns if not c.startswith("improvement@")]:
        assert table.loc["mean", column] == pytest.approx(pair_rows[column].mean())


def test_retrieval_table_subset_of_ks_and_no_pairs():
    z, present = _partly_aligned()
    table = retrieval_table(recall_at_k(z, present, ks=(1, 5, 10)), ks=(5,))
    assert list(table.columns) == ["R@5", "random@5", "improvement@5", "n_queries", "n_candidates"]
    empty = retrieval_table(recall_at_k(z[:4, :2], np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=bool)))
    assert list(empty.index) == ["mean"] and empty.loc["mean"].isna().all()


def test_silhouette_per_modality_matches_sklearn_and_overall():
    rng = np.random.default_rng(7)
    z = rng.normal(size=(40, 3, 5)) + np.eye(5)[:3][None] * 1.5
    present = rng.random((40, 3)) < 0.6
    names = ["a", "b", "c"]
    scores = silhouette_per_modality(z, present, names)
    assert list(scores) == names + ["overall"]
    assert scores["overall"] == pytest.approx(modality_silhouette(z, present, names))
    stays, modalities = np.nonzero(present)
    values = silhouette_samples(z[stays, modalities], modalities, metric="cosine")
    for m, name in enumerate(names):
        assert scores[name] == pytest.approx(values[modalities == m].mean())
    # subsampling: the same points as modality_silhouette
    big_z = rng.normal(size=(300, 3, 4))
    big_present = np.ones((300, 3), dtype=bool)
    sub = silhouette_per_modality(big_z, big_present, names, max_points=200, seed=3)
    assert sub["overall"] == pytest.approx(modality_silhouette(big_z, big_present, max_points=200, seed=3))


def test_silhouette_per_modality_degenerate_cases():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(10, 3, 4))
    one = silhouette_per_modality(z, np.eye(3, dtype=bool)[[0] * 10], ["a", "b", "c"])
    assert list(one) == ["a", "b", "c", "overall"]
    assert all(np.isnan(v) for v in one.values())
    present = np.zeros((10, 3), dtype=bool)
    present[:, :2] = True  # "c" absent everywhere
    two = silhouette_per_modality(z, present, ["a", "b", "c"])
    assert np.isnan(two["c"]) and not np.isnan(two["a"]) and not np.isnan(two["overall"])
    with pytest.raises(ValueError):
        silhouette_per_modality(z, present, ["a", "b"])


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_plot_writes_a_png(tmp_path, method):
    z, present = _partly_aligned(n=80 if method == "tsne" else 300)
    path = projection_plot(z, present, ["ts", "cxr", "notes"], tmp_path / "sub" / f"latent_{method}.png",
                           method=method, max_points=200)
    assert path.exists() and path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_projection_pca_is_deterministic_and_rejects_unknown_method(tmp_path):
    z, present = _partly_aligned()
    first = projection_plot(z, present, None, tmp_path / "a.png").read_bytes()
    second = projection_plot(z, present, None, tmp_path / "b.png").read_bytes()
    assert first == second
    with pytest.raises(ValueError):
        projection_plot(z, present, None, tmp_path / "c.png", method="umap")


def test_pooled_recall_scores_full_pools_only_and_adds_up_across_workers():
    """Stays whose two modalities coincide are retrieved at rank 0 within their pool; a partial
    last pool is left out (its chance level would differ); all stays form one pool when fewer."""
    from clintraj.metrics.retrieval import pooled_recall

    rng = np.random.default_rng(0)
    base = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(25, 8)), dtype=torch.float32), dim=-1)
    z = torch.stack([base, base], dim=1)  # modality a == modality b: every query finds its own first
    present = torch.ones(25, 2, dtype=torch.bool)
    assert pooled_recall(z, present, k=1, pool=10) == (2.0, 2)  # pools 0-9, 10-19; 20-24 left out
    assert pooled_recall(z[:7], present[:7], k=1, pool=10) == (1.0, 1)  # fewer than a pool: one pool
    shuffled = torch.stack([base, base[torch.randperm(25, generator=torch.Generator().manual_seed(1))]], dim=1)
    total, pools = pooled_recall(shuffled, present, k=1, pool=10)
    assert pools == 2 and total / pools < 0.5  # misaligned: near chance (1/10)
    assert pooled_recall(z[:0], present[:0], k=1, pool=10) == (0.0, 0)
