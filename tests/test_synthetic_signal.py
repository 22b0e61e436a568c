"""The planted signal of the synthetic eICU data, learned through the platform's own stages.

Masked Global Alignment pretraining on the generator's raw files (through `prepare` and the
stay table) retrieves a stay's modalities from each other at least 10x above chance on the test
split (issue 4), while the same encoders untrained stay near chance; the static MLP on the
frozen embeddings (embedding job, Ray Train) predicts mortality and length of stay from the first
12 h of the unit stay (the tasks' default window), CIs clear of chance. Issue 5 asked AUROC 0.75
and Spearman 0.5 of whole-stay inputs, which saw the end of the stay (the number of events alone
then tracks its length); at 12 h the same pipeline reaches about 0.75 and 0.45 here. The
pretraining runs in process through the worker loop's own epoch function (`pretrain.train_epoch`),
to keep the fast test fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.embeddings import Embeddings
from clintraj.config import from_dict
from clintraj.data.prepare import PrepareConfig, prepare
from clintraj.data.stay_inputs import build_stay_table, collate
from clintraj.data.synthetic import generate
from clintraj.metrics.retrieval import recall_at_k
from clintraj.models.mga import embed
from clintraj.training import pretrain

STAYS, EPOCHS = 5000, 10


def _split(inputs: Path, split: str) -> dict:
    table = pa.concat_tables([pq.read_table(f) for f in sorted((inputs / split).glob("*.parquet"))])
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


def _batches(split: dict, meta: dict, batch_size: int, rng: np.random.Generator | None = None):
    order = np.arange(len(split["stay_id"]))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield collate({name: column[rows] for name, column in split.items()}, meta["feature_dims"])


def _test_retrieval(model, test: dict, meta: dict) -> dict:
    model.eval()
    zs, presents = [], []
    with torch.no_grad():
        for batch in _batches(test, meta, 256):
            h, present = embed(model, batch)
            zs.append(torch.nn.functional.normalize(h, dim=-1))
            presents.append(present)
    return recall_at_k(torch.cat(zs), torch.cat(presents), modality_names=meta["modalities"])["mean"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    generate("eicu", root / "raw", n_stays=STAYS, seed=0, progress=False)
    prepare(root / "raw", root / "data", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 100}}))
    config = pretrain.PretrainConfig(latent_dim=32)
    meta = build_stay_table(Dataset(root / "data"), root / "inputs", config.inputs)
    train, test = _split(root / "inputs", "train"), _split(root / "inputs", "test")
    torch.manual_seed(0)
    model = pretrain.build_model(meta, config)
    initial_tokens = model.missing_tokens.detach().clone()
    untrained = _test_retrieval(model, test, meta)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(0)
    for _ in range(EPOCHS):  # the Ray Train worker's own epoch, on batches read here
        pretrain.train_epoch(model, optimizer, _batches(train, meta, config.batch_size, rng), config)
    return {"root": root, "model": model, "optimizer": optimizer, "run": pretrain.PretrainRun(config, meta),
            "initial_tokens": initial_tokens, "untrained": untrained, "trained": _test_retrieval(model, test, meta)}


def test_pretraining_retrieves_stays_across_modalities_10x_above_chance(pretrained):
    trained, untrained = pretrained["trained"], pretrained["untrained"]
    factor = trained["recall_at_1"] / trained["random_at_1"]
    print(f"test mean R@1 {trained['recall_at_1']:.4f} = {factor:.1f}x random "
          f"(untrained {untrained['recall_at_1'] / untrained['random_at_1']:.1f}x)")
    assert factor >= 10
    assert trained["recall_at_10"] >= 5 * trained["random_at_10"]
    assert untrained["recall_at_1"] < 3 * untrained["random_at_1"]  # the alignment is learned, not built in


def test_the_missing_tokens_are_learned_by_default(pretrained):
    """METHOD.md §1, ambiguity A: by default the tokens sit in the centroids, get
    gradient and move; each modality's token moved by more than its initial size."""
    assert pretrained["run"].config.missing_tokens_in_context is True  # the PretrainConfig default
    before, after = pretrained["initial_tokens"], pretrained["model"].missing_tokens.detach()
    moved = (after - before).norm(dim=1) / before.norm(dim=1)
    print(f"missing tokens moved by {moved.numpy().round(2)} x their initial norm")
    assert (moved > 1.0).all()


# slow: tests/conftest.py marks every test that uses ray_local
def test_static_mlp_on_the_embeddings_learns_mortality_and_length_of_stay(pretrained, ray_local):
    from clintraj.training import static
    from clintraj.workflows import embed as embed_job
    from clintraj.workflows.static_baselines import task_splits

    root = pretrained["root"]
    checkpoint = root / "checkpoint"
    checkpoint.mkdir()
    pretrain.save(checkpoint, pretrained["model"], pretrained["optimizer"], {"epoch": EPOCHS - 1}, pretrained["run"])
    embed_job.run(root / "data", root / "embeddings", str(checkpoint), root / "embed-work")
    assert Embeddings(root / "embeddings").record["encoders"] == "contrastive"
    results = {}
    for task in ("mortality", "los"):
        splits, modalities = task_splits(root / "data", root / "embeddings", task)
        config = static.StaticTrainConfig(task=task, architecture="mlp", epochs=6, patience=3, num_workers=1,
                                          cpus_per_worker=1)
        results[task] = static.fit(splits, config, root / "static", f"planted-{task}", modalities)
    print({task: {k: v for k, v in r.items() if k.startswith("test_") and not k.endswith(("_low", "_high"))}
           for task, r in results.items()})
    assert results["mortality"]["test_auroc"] >= 0.70 and results["mortality"]["test_auroc_low"] > 0.5
    assert results["los"]["test_spearman"] >= 0.35 and results["los"]["test_spearman_low"] > 0.0
    assert results["los"]["test_spearman_low"] <= results["los"]["test_spearman"] <= results["los"]["test_spearman_high"]
