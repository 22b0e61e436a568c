"""How a 2-worker Ray Train run's datasets reach its workers (`training.shards.HeldShards`): a held
(materialised) dataset as fixed shards of consecutive rows, the same for a worker every epoch and
every run, with no streaming-split coordinator; a dataset still to execute through Ray Data's
`streaming_split`."""

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
    ranks = fit(tmp_path / "run", "shards")
    assert all(rank["held_iterator"] != "StreamSplitDataIterator" for rank in ranks)  # the held path ran
    half = ROWS // 2
    for rank, rows in enumerate(ranks):  # consecutive rows in order, the same every epoch: so every run
        assert rows["held"] == [list(range(rank * half, (rank + 1) * half))] * 2
    for epoch in range(2):  # the streamed one is still split between the workers, every epoch
        rows = [set(rank["streamed"][epoch]) for rank in ranks]
        assert rows[0].isdisjoint(rows[1]) and len(rows[0]) == len(rows[1]) == half


def test_the_rows_equal_shards_leave_out_are_counted_in_the_log(ray_local, caplog):
    import ray.data

    from clintraj.training.shards import HeldShards

    held = ray.data.range(ROWS, override_num_blocks=3).materialize()
    with caplog.at_level("WARNING", logger="clintraj.training.shards"):
        shards = HeldShards().configure({"held": held}, 2, None, None)
    assert [len(list(shard["held"].iter_rows())) for shard in shards] == [50, 50]
    assert "held: 1 of its 101 rows left out of each epoch (2 workers step on equal shards)" in caplog.messages
