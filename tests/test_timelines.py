"""Built a shard of stays at a time, the event inputs (`data.timelines.write_event_inputs`), the
timelines (`workflows.embed.write_task_timelines`) and a task's sequences (`data.sequences.
task_sequences`) equal what the whole cohort gives at once, whatever the shard size: the same stays
in the same order, the same events, times, modalities and vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.preprocessing import StandardScaler

from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.embeddings import Embeddings
from clintraj.config import from_dict
from clintraj.data.prepare import PrepareConfig, prepare
from clintraj.data import sequences
from clintraj.data.sequences import task_sequences
from clintraj.data.synthetic import generate
from clintraj.data.timelines import assemble_timelines, write_event_inputs
from clintraj.workflows.embed import write_task_timelines


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A prepared synthetic eICU dataset and an embeddings folder whose events (two input kinds,
    the vectors in three files) carry, as h, their own (stay, time, modality, row) numbers."""
    root = tmp_path_factory.mktemp("timelines")
    generate("eicu", root / "raw", n_stays=240, seed=5, progress=False)
    prepare(root / "raw", root / "data", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 20}}))
    source = Dataset(root / "data")
    stays = np.unique(np.concatenate([source.task_cohort(t)["stay_id"].to_numpy() for t in source.tasks]))
    files = write_event_inputs(source, root / "inputs", stays)["files"]
    events = pq.read_table(root / "inputs" / files["vectors"]).select(["stay_id", "time_hours", "modality"])
    row = np.arange(events.num_rows)
    h = np.column_stack([events["stay_id"].to_numpy(), events["time_hours"].to_numpy(),
                         events["modality"].to_numpy(), row]).astype(np.float32)
    events = events.append_column("h", pa.FixedSizeListArray.from_arrays(pa.array(h.ravel()), 4))
    order = np.random.default_rng(0).permutation(events.num_rows)  # as Ray Data writes them: any order
    events = events.take(order)
    target = Embeddings(root / "embeddings")
    for name, parts in (("vectors", np.array_split(np.arange(events.num_rows - 50), 3)),
                        ("z-last", [np.arange(events.num_rows - 50, events.num_rows)])):
        target.events_folder(name).mkdir(parents=True)
        for index, rows in enumerate(parts):
            pq.write_table(events.take(rows), target.events_folder(name) / f"part-{index}.parquet")
    return source, target, events


def test_event_inputs_by_shard_equal_the_whole_cohorts_at_once(embedded, tmp_path):
    source, _, _ = embedded
    stays = source.task_cohort("mortality")["stay_id"].to_numpy()
    whole = write_event_inputs(source, tmp_path / "whole", stays, shard_stays=10**9)
    sharded = write_event_inputs(source, tmp_path / "sharded", stays, shard_stays=13)
    assert whole == sharded and whole["files"] == {"vectors": "vectors"}
    assert sum(whole["events"].values()) > 1000
    assert len(list((tmp_path / "sharded" / "vectors").glob("*.parquet"))) == -(-len(set(stays)) // 13)
    keys = ["stay_id", "time_hours", "modality"]
    one, other = (pd.read_parquet(tmp_path / folder / "vectors").sort_values(keys, kind="stable").reset_index(drop=True)
                  for folder in ("whole", "sharded"))
    assert len(one) == sum(whole["events"].values())
    pd.testing.assert_frame_equal(one[keys], other[keys])
    assert all(np.array_equal(a, b) for a, b in zip(one["x"], other["x"]))


def test_timelines_by_shard_equal_the_whole_cohort_at_once(embedded, tmp_path):
    source, target, events = embedded
    modalities = source.modalities
    after_stay = [modalities.index(m) for m in source.after_stay]
    whole = pd.concat([pq.read_table(f).to_pandas() for f in target.event_files()], ignore_index=True)
    assert len(whole) == events.num_rows and len(target.event_files()) == 4
    expected = {task: assemble_timelines(whole, source.task_cohort(task), after_stay).to_pandas()
                for task in source.tasks}
    assert all(len(frame) > 30 for frame in expected.values()), {t: len(f) for t, f in expected.items()}
    stays = np.unique(np.concatenate([source.task_cohort(t)["stay_id"].to_numpy() for t in source.tasks]))
    for shard_stays in (10**9, 37, 1):
        folder = target.path / "timelines"
        counts = write_task_timelines(source, target, source.tasks, modalities, tmp_path / "scratch", shard_stays)
        assert not (tmp_path / "scratch").exists()
        for task in source.tasks:
            shards = np.searchsorted(stays[::shard_stays], expected[task]["stay_id"], side="right")
            assert len(list((folder / task).glob("*.parquet"))) == len(np.unique(shards))
            assert shard_stays == 10**9 or len(np.unique(shards)) > 1
            got = target.timelines(task)
            pd.testing.assert_frame_equal(got.drop(columns=["time_hours", "modality", "h"]),
                                          expected[task].drop(columns=["time_hours", "modality", "h"]))
            for column in ("time_hours", "modality", "h"):
                assert all(np.array_equal(a, b) for a, b in zip(got[column], expected[task][column]))
            lengths = expected[task]["n_events"]
            assert counts[task] == {"stays": len(lengths), "events": int(lengths.sum()),
                                    "median_events": float(np.median(lengths)), "max_events": int(lengths.max())}
        for task in source.tasks:
            for file in (folder / task).glob("*.parquet"):
                file.unlink()


def mortality_timelines(source: Dataset, target: Embeddings, scratch) -> pd.DataFrame:
    """The mortality timelines written to `target` (latent 4), by stay."""
    target.write_record({"modalities": source.modalities, "modality_kinds": source.modality_kinds, "latent_dim": 4})
    write_task_timelines(source, target, ["mortality"], source.modalities, scratch)
    return target.timelines("mortality").set_index("stay_id")


def test_sequences_by_shard_equal_the_whole_task_at_once(embedded, tmp_path):
    source, target, _ = embedded
    timelines = mortality_timelines(source, target, tmp_path / "scratch")
    limit = int(timelines["n_events"].median())  # about half the stays truncated
    whole = task_sequences(source.path, target.path, "mortality", tmp_path / "whole", limit, shard_stays=10**9)
    sharded = task_sequences(source.path, target.path, "mortality", tmp_path / "sharded", limit, shard_stays=7)
    assert {**whole, "embeddings": None} == {**sharded, "embeddings": None}
    assert whole["truncated_stays"] > 10 and whole["stays"]["test"] > 5  # truncation ran, every split has stays
    for split in ("train", "val", "test"):
        one, other = (pq.read_table(tmp_path / folder / f"{split}.parquet") for folder in ("whole", "sharded"))
        assert one.num_rows == whole["stays"][split] and one.equals(other)
        assert pq.ParquetFile(tmp_path / "sharded" / f"{split}.parquet").num_row_groups > 1
    train = pq.read_table(tmp_path / "whole" / "train.parquet").to_pandas().set_index("stay_id")
    events = np.concatenate([np.asarray(h).reshape(-1, 4) for h in train["h"]])  # the kept training events
    assert np.allclose(whole["event_mean"], events.mean(axis=0), atol=1e-6)
    assert np.allclose(whole["event_std"], events.std(axis=0), atol=1e-6)
    short = timelines.index[timelines["n_events"] <= limit].intersection(train.index)
    assert len(short) > 5
    for stay in short:  # untruncated: every event of the timeline, in order
        assert np.array_equal(np.asarray(train.loc[stay, "h"]), np.asarray(timelines.loc[stay, "h"], np.float32))


def test_tied_events_keep_the_datasets_order_whatever_order_they_come_back_in():
    """Two notes of a stay written in the same minute: the timeline holds them in the dataset's
    order (their `tie` rank), not in the order the embedding actors happened to return them."""
    from clintraj.data.timelines import _keyed

    keys = pd.DataFrame({"stay_id": [7, 7, 7, 7, 9], "time_hours": [2.0, 1.0, 2.0, 2.0, 2.0]})
    events = _keyed(keys, 1, content=pa.array([10, 20, 11, 12, 30])).to_pandas()
    assert events["tie"].tolist() == [0, 0, 1, 2, 0]
    events["h"] = [np.full(2, c, np.float32) for c in events.pop("content")]
    cohort = pd.DataFrame({"stay_id": [7, 9], "start_hours": [0.0, 0.0], "end_hours": [48.0, 48.0]})
    for seed in range(5):
        arrived = events.sample(frac=1.0, random_state=seed)
        table = assemble_timelines(arrived, cohort, after_stay=[]).to_pandas()
        assert np.asarray(table.loc[0, "h"]).reshape(-1, 2)[:, 0].tolist() == [20, 10, 11, 12]
        assert table["n_events"].tolist() == [4, 1]


def test_standardisation_blocks_are_the_same_whatever_the_shard(embedded, tmp_path, monkeypatch):
    """The training events go to `StandardScaler.partial_fit` a block of `MOMENT_BLOCK_STAYS` stays at
    a time, the block carried across shards: shards smaller and larger than the block give the very
    same calls, hence the very same event_mean and event_std."""
    source, target, _ = embedded
    timelines = mortality_timelines(source, target, tmp_path / "scratch")
    monkeypatch.setattr(sequences, "MOMENT_BLOCK_STAYS", 5)
    calls = []
    fit = StandardScaler.partial_fit
    monkeypatch.setattr(StandardScaler, "partial_fit", lambda self, x: calls.append(len(x)) or fit(self, x))
    limit = int(timelines["n_events"].median())
    runs = {}
    for shard_stays in (10**9, 7, 3):
        calls.clear()
        info = task_sequences(source.path, target.path, "mortality", tmp_path / str(shard_stays), limit, shard_stays)
        runs[shard_stays] = (info, list(calls))
    info, blocks = runs[10**9]
    assert all({**other, "embeddings": None} == {**info, "embeddings": None} and calls == blocks
               for other, calls in runs.values())
    assert len(blocks) == -(-info["stays"]["train"] // 5) > 3  # every training stay has events; several blocks
    train = pq.read_table(tmp_path / "3" / "train.parquet")
    assert blocks == [sum(train["n_events"].to_numpy()[i:i + 5]) for i in range(0, train.num_rows, 5)]
