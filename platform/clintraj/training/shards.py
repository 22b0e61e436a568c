"""How a Ray Train run's datasets reach its workers: a held (materialised) dataset is cut once into
one fixed shard per worker; any other streams through Ray Data's `streaming_split`, as Ray Train's
default does.

`streaming_split` runs a coordinator actor that hands each worker its next block, one actor call at a
time, every epoch: for a dataset that is already in the object store that is a process (1.6-2.0% of
the 2 cores beside a pretraining run's workers, bench/README's `scaling.py`) and a round trip per
block for nothing, and which worker gets which block depends on who asks first. Fixed contiguous
shards (`split_at_indices`, rows in order) give each worker the same rows in the same order every
epoch and every run, and no actor. (`split(equal=True)` would not: its shards' rows, and their
order, change from run to run.)"""

from __future__ import annotations

import logging

from ray.data.dataset import MaterializedDataset
from ray.train import DataConfig

logger = logging.getLogger(__name__)


class HeldShards(DataConfig):
    """`DataConfig` whose split datasets, where materialised, are split once into fixed shards."""

    def __init__(self, datasets_to_split="all", **options):
        super().__init__(datasets_to_split=datasets_to_split, **options)
        self.split_names = datasets_to_split

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        held = {name: dataset for name, dataset in datasets.items()
                if isinstance(dataset, MaterializedDataset) and (self.split_names == "all" or name in self.split_names)}
        output = super().configure({name: dataset for name, dataset in datasets.items() if name not in held},
                                   world_size, worker_handles, worker_node_ids, **kwargs)
        for name, dataset in held.items():
            dataset.set_name(dataset.name or name)
            rows = dataset.count()
            if left_out := rows % world_size:  # a warning: Ray's workers log nothing under it (no handler)
                logger.warning("%s: %d of its %d rows left out of each epoch (%d workers step on equal shards)",
                               name, left_out, rows, world_size)
            for rank, shard in enumerate(contiguous_shards(dataset, world_size)):
                output[rank][name] = shard.iterator()
        return output


def contiguous_shards(dataset: MaterializedDataset, count: int) -> list[MaterializedDataset]:
    """`count` shards of consecutive rows, equal as `streaming_split(equal=True)` makes them (DDP's
    workers must step alike): the last `rows % count` rows are left out."""
    size = dataset.count() // count
    return dataset.split_at_indices([size * rank for rank in range(1, count + 1)])[:count]
