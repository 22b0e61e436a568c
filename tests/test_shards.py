"""How a 2-worker Ray Train run's datasets reach its workers (`training.shards.HeldShards`): a held
(materialised) dataset as fixed shards, the same rows for a worker every epoch and every run, with
no streaming-split coordinator; a dataset still to execute through Ray Data's `streaming_split`."""

from __future__ import annotations

import json

from clintraj.training.loop import make_trainer

# marked slow by tests/conftest.py, as every test that uses ray_local

ROWS = 101  # odd: equal shards leave one row out, as streaming_split(equal=True) does


def record_rows(folder):
    def loop(config: dict) -> None:
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        seen = {name: [] for name in ("held", "streamed")}
        for _ in range(2):
            for name, epochs in seen.items():
                shard = ray.train.get_dataset_shard(name)
                epochs.append([int(row["id"]) for row in shard.iter_rows()])
        seen["held_iterator"] = type(ray.train.get_dataset_shard("held")).__name__
        (folder / f"rank{rank}.json").write_text(json.dumps(seen))
        ray.train.report({"done": 1})

    return loop


def fit(folder, name):
    import ray.data

    folder.mkdir()
    held = ray.data.range(ROWS, override_num_blocks=3).materialize()
    make_trainer(record_rows(folder), None, name=name, storage=folder / "ray", workers=2, cpus_per_worker=0.5,
                 use_gpu=False, datasets={"held": held, "streamed": ray.data.range(ROWS, override_num_blocks=3)}).fit()
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_a_held_dataset_reaches_each_worker_as_the_same_fixed_shard(tmp_path, ray_local):
    first, second = fit(tmp_path / "first", "shards-a"), fit(tmp_path / "second", "shards-b")
    assert {rank["held_iterator"] for rank in first} != {"StreamSplitDataIterator"}  # the held path ran
    for rank in first:
        assert rank["held"][0] == rank["held"][1]  # the same rows every epoch
        assert len(rank["held"][0]) == ROWS // 2
    assert set(first[0]["held"][0]).isdisjoint(first[1]["held"][0])
    assert len(set(first[0]["held"][0]) | set(first[1]["held"][0])) == ROWS - 1
    assert [rank["held"] for rank in first] == [rank["held"] for rank in second]  # and every run
    for epoch in range(2):  # the streamed one is still split between the workers, every epoch
        rows = [set(rank["streamed"][epoch]) for rank in first]
        assert rows[0].isdisjoint(rows[1]) and len(rows[0]) == len(rows[1]) == ROWS // 2
