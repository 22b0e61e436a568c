"""What a sweep's trials cost a laptop in Ray's own processes: Ray's defaults vs `LOCAL_RAY_ENV`.

Every trial of our sweeps is Train V2's composition: a Tune function trainable that fits
a `TorchTrainer` (one worker) on a Parquet split streamed through `streaming_split`,
reporting a checkpoint each epoch to Tune through `TuneReportCallback`. Here the worker
does a token amount of torch work, so what is measured is what Ray spends around it:
the controller, worker and helper actors, Ray Data's reads, idle worker processes.

The same sweep runs twice in this process, each on its own local Ray: first with Ray's
defaults, then with `clintraj.runtime.LOCAL_RAY_ENV` (what `init_ray` sets when it
starts Ray itself). CPU seconds are summed over every process of the machine that
started after the run began or ran during it (sampled every 0.2 s, so a process shorter
than that can be missed), wall seconds from the sweep's start to its end.

    .venv/bin/python bench/local_ray.py               # 4 trials, 4 at once (~4 min on 2 cores)
    .venv/bin/python bench/local_ray.py --trials 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))


def train_loop(config: dict) -> None:
    import ray.train
    import torch

    shard = ray.train.get_dataset_shard("train")
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(config["epochs"]):
        for batch in shard.iter_torch_batches(batch_size=256):
            x = torch.stack([batch[f"x{i}"] for i in range(8)], dim=1)
            loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), batch["y"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with tempfile.TemporaryDirectory() as directory:
            torch.save(model.state_dict(), Path(directory) / "model.pt")
            ray.train.report({"epoch": epoch, "val_score": -float(loss)},
                             checkpoint=ray.train.Checkpoint.from_directory(directory))


def make_trial(table: str, storage: str, epochs: int):
    def trial(sampled: dict) -> None:
        import ray.data
        import ray.train
        from ray import tune
        from ray.train.torch import TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback

        TorchTrainer(
            train_loop, train_loop_config={"epochs": epochs},
            scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
            datasets={"train": ray.data.read_parquet(table).materialize()},
            dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
            run_config=ray.train.RunConfig(name=f"trial-{tune.get_context().get_trial_id()}", storage_path=storage,
                                           callbacks=[TuneReportCallback()]),
        ).fit()

    return trial


class CpuMeter:
    """CPU seconds of every process on the machine between start and stop, sampled in a thread."""

    def __init__(self):
        self.base, self.last, self.stopped = {}, {}, threading.Event()

    def _sample(self) -> dict[int, float]:
        seconds = {}
        for process in psutil.process_iter():
            try:
                times = process.cpu_times()
                seconds[process.pid] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return seconds

    def __enter__(self):
        self.base = self._sample()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stopped.wait(0.2):
            self.last.update(self._sample())

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()
        self.last.update(self._sample())

    @property
    def seconds(self) -> float:
        return sum(cpu - self.base.get(pid, 0.0) for pid, cpu in self.last.items())


def sweep(label: str, tuned: bool, table: str, workdir: Path, trials: int, epochs: int) -> dict:
    import ray
    from ray import tune

    from clintraj.runtime import LOCAL_RAY_ENV, init_ray
    from clintraj.tuning import SearchSpace, tuner

    if tuned:
        init_ray(num_cpus=4)
    else:
        for key in LOCAL_RAY_ENV:
            os.environ.pop(key, None)
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    space = SearchSpace(metric="val_score", mode="max", num_samples=1, max_concurrent_trials=4, params={})
    storage = str(workdir / label)
    try:
        with CpuMeter() as meter:
            started = time.perf_counter()
            results = tuner(make_trial(table, storage, epochs), {"seed": tune.grid_search(list(range(trials)))},
                            space, epochs, "bench", storage).fit()
            wall = time.perf_counter() - started
    finally:
        ray.shutdown()
    if results.errors:
        raise RuntimeError(f"{label}: {len(results.errors)} trials failed: {results.errors[0]}")
    return {"settings": label, "trials": trials, "wall_s": wall, "cpu_s": meter.seconds,
            "cpu_s_per_trial": meter.seconds / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4096, 8)).astype(np.float32)
        table = str(workdir / "train.parquet")
        pd.DataFrame({**{f"x{i}": x[:, i] for i in range(8)}, "y": x.sum(1)}).to_parquet(table)
        rows = [sweep("ray defaults", False, table, workdir, args.trials, args.epochs),
                sweep("LOCAL_RAY_ENV", True, table, workdir, args.trials, args.epochs)]
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    base, tuned = rows
    print(f"wall: {base['wall_s'] / tuned['wall_s']:.2f}x faster")
    print(f"headline: CPU seconds per trial, Ray's defaults / LOCAL_RAY_ENV = "
          f"{base['cpu_s_per_trial'] / tuned['cpu_s_per_trial']:.2f}x")


if __name__ == "__main__":
    main()
