"""What a sweep's trial costs in CPU beyond its model: Ray Train worker actors vs the trial's own process.

Every trial of our sweeps is a Tune function trainable that trains one run on a Parquet split
(`training.loop.make_trainer`), reporting a checkpoint each epoch. Here the model is a token
amount of torch work, so what is measured is what Ray spends around it. The same sweep runs
twice in this process, each on its own local Ray started as the jobs start it
(`clintraj.runtime.init_ray`, so with `LOCAL_RAY_ENV`):

* worker actors (before): each trial fits a one-worker `TorchTrainer` (a Train controller, the
  worker, Ray Train's helper actors, Ray Data's split coordinator, Tune's result queue), the
  trial itself asking Tune for 0.1 CPU and the worker for 0.5;
* in process (after: `clintraj.tuning.tuner` over a one-worker CPU config, as the sweeps run
  now, `training.in_process`): the trial runs the same loop itself, asks for the worker's 0.5
  CPU, and Tune reuses a finished trial's process for the next trial (`reuse_actors`).

CPU seconds are summed over this process and every process it started (Ray's own, the
trials', the workers'), sampled every 0.2 s (a process that ends loses at most its last
0.2 s, which only flatters the worker-actor run); wall seconds from the sweep's start to its
end. Other sessions' processes on the machine are not counted, but their load still stretches
wall times.

    .venv/bin/python bench/local_ray.py               # 16 trials, 4 at once (~11 min on 2 busy cores)
    .venv/bin/python bench/local_ray.py --trials 8 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))


def save(directory: Path, model) -> None:
    import torch

    torch.save(model.state_dict(), directory / "model.pt")


def train_loop(args: dict) -> None:
    """A token model on the whole split, a checkpoint each epoch, through the loops' own API."""
    import torch

    from clintraj.training import loop

    shard = loop.dataset_shard("train")
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(args["run"]):
        for batch in shard.iter_torch_batches(batch_size=256):
            x = torch.stack([batch[f"x{i}"] for i in range(8)], dim=1)
            loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), batch["y"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loop.report({"epoch": epoch, "val_score": -loss.item()}, partial(save, model=model))


def make_trial(table: str, storage: str, epochs: int, in_process: bool):
    def trial(sampled: dict) -> None:
        import ray.data
        from ray import tune

        from clintraj.training.loop import make_trainer

        make_trainer(train_loop, epochs, name=f"trial-{tune.get_context().get_trial_id()}", storage=storage,
                     datasets={"train": ray.data.read_parquet(table).materialize()}, split=("train",), workers=1,
                     cpus_per_worker=0.5, use_gpu=False, keep=2, score=("val_score", "max"), tune=True,
                     in_process=in_process).fit()

    return trial


class CpuMeter:
    """CPU seconds of this process and its descendants between start and stop, sampled in a thread,
    and by kind of process (Ray's process title: `ray::TrainController`, `ray::trial`, ...)."""

    def __init__(self):
        self.root = psutil.Process(os.getpid())
        self.base, self.last, self.kinds, self.stopped = {}, {}, {}, threading.Event()

    def _kind(self, process: psutil.Process) -> str:
        if process.pid == self.root.pid:
            return "driver (Tune)"
        title = (process.cmdline() or [process.name()])[0]
        if title.startswith("ray::"):
            return title.split(".")[0].split(" ")[0]
        return Path(title).name.split(" ")[0]

    def _sample(self) -> dict[int, float]:
        seconds = {}
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                seconds[process.pid] = times.user + times.system
                kind = self._kind(process)
                if kind != "ray::IDLE" or process.pid not in self.kinds:
                    self.kinds[process.pid] = kind
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

    def by_kind(self) -> dict[str, tuple[float, int]]:
        """Kind of process -> (CPU seconds, processes). A title read while the process was starting
        or ending can be its 15-character name: counted with the full title it begins."""
        titles = set(self.kinds.values())
        out: dict[str, tuple[float, int]] = {}
        for pid, cpu in self.last.items():
            kind = self.kinds.get(pid, "?")
            kind = next((title for title in sorted(titles) if title != kind and title.startswith(kind)
                         and len(kind) == 15), kind)
            seconds, count = out.get(kind, (0.0, 0))
            out[kind] = (seconds + cpu - self.base.get(pid, 0.0), count + 1)
        return out


def sweep(label: str, in_process: bool, table: str, workdir: Path, trials: int, epochs: int) -> tuple[dict, dict]:
    """One sweep on its own local Ray: (its row, CPU seconds and processes by kind of process)."""
    import ray
    from ray import tune

    from clintraj.runtime import init_ray, shutdown_ray
    from clintraj.training.static import StaticTrainConfig
    from clintraj.tuning import SearchSpace, tuner

    init_ray(num_cpus=4)
    storage = str(workdir / label.replace(" ", "-"))
    trial = make_trial(table, storage, epochs, in_process)
    grid = {"seed": tune.grid_search(list(range(trials)))}
    space = SearchSpace(metric="val_score", mode="max", num_samples=1, max_concurrent_trials=4)
    try:
        with CpuMeter() as meter:
            started = time.perf_counter()
            if in_process:  # what the sweeps do now: one CPU worker per trial
                base = StaticTrainConfig(epochs=epochs, num_workers=1, cpus_per_worker=0.5)
                results = tuner(trial, grid, space, base, "bench", storage).fit()
            else:  # what clintraj.tuning.tuner did before: 0.1 CPU per trial, its worker's apart, no reuse
                results = tune.Tuner(
                    tune.with_resources(trial, {"cpu": 0.1}), param_space=grid,
                    tune_config=tune.TuneConfig(metric=space.metric, mode=space.mode,
                                                max_concurrent_trials=space.max_concurrent_trials),
                    run_config=tune.RunConfig(name="bench", storage_path=storage)).fit()
            wall = time.perf_counter() - started
    finally:
        shutdown_ray()
    assert not ray.is_initialized()
    if results.errors:
        raise RuntimeError(f"{label}: {len(results.errors)} trials failed: {results.errors[0]}")
    reported = sum(len(r.metrics_dataframe) for r in results)
    if reported != trials * epochs:
        raise RuntimeError(f"{label}: Tune saw {reported} epochs, expected {trials * epochs}")
    return ({"trials": label, "count": trials, "wall_s": wall, "cpu_s": meter.seconds,
             "cpu_s_per_trial": meter.seconds / trials}, meter.by_kind())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4096, 8)).astype(np.float32)
        table = str(workdir / "train.parquet")
        pd.DataFrame({**{f"x{i}": x[:, i] for i in range(8)}, "y": x.sum(1)}).to_parquet(table)
        runs = [sweep("worker actors", False, table, workdir, args.trials, args.epochs),
                sweep("in process", True, table, workdir, args.trials, args.epochs)]
    rows = [row for row, _ in runs]
    kinds = pd.DataFrame({row["trials"]: {kind: f"{cpu:6.1f} ({count})" for kind, (cpu, count) in by_kind.items()}
                          for row, by_kind in runs}).fillna("")
    print("CPU seconds (processes) by kind of process, all trials:")
    print(kinds.sort_index().to_string())
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    before, after = rows
    print(f"wall: {before['wall_s'] / after['wall_s']:.2f}x faster")
    print(f"headline: per-trial CPU seconds, before / after = {before['cpu_s_per_trial'] / after['cpu_s_per_trial']:.1f}x")


if __name__ == "__main__":
    main()
