"""Sequential timelines with a planted mortality signal, in `task_sequences`' layout (shared by
the Ray and GPU tests of the sequential trainer)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LATENT = 8


def write_planted(folder, n_train=320, n_eval=128, seed=0):
    """Timelines in `task_sequences`' layout; dying stays' events lean along one latent direction."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        y = rng.random(n) < 0.3
        lengths = rng.integers(4, 24, n)
        h = [rng.normal(size=(k, LATENT)).astype(np.float32) + 0.6 * label * np.eye(LATENT, dtype=np.float32)[0]
             for k, label in zip(lengths, y)]
        pq.write_table(pa.table({
            "stay_id": pa.array(np.arange(n) + {"train": 0, "val": 10_000, "test": 20_000}[split]),
            "y": pa.FixedSizeListArray.from_arrays(pa.array(y.astype(np.float32)), 1),
            "n_events": pa.array(lengths.astype(np.int32)),
            "modality": pa.array([rng.integers(0, 3, k).astype(np.int8) for k in lengths], type=pa.list_(pa.int8())),
            "h": pa.array([x.ravel() for x in h], type=pa.list_(pa.float32())),
        }), folder / f"{split}.parquet")
    (folder / "sequences.json").write_text(json.dumps({
        "task": "mortality", "latent_dim": LATENT, "modalities": ["demographics", "lab", "diagnosis"],
        "out_features": 1, "pos_weight": [7 / 3], "train_prevalence": [0.3], "truncated_stays": 0}))
    return folder
