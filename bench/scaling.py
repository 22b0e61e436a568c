"""Does scaling out still pay? MGA pretraining on 2 Ray Train workers against 1, on this machine.

The demo's pretraining (`configs/demo.yaml`: latent 32, batch 128 per worker, 48 time steps) on
synthetic eICU (`--stays`, default 3000, the demo's size), through `training.pretrain`'s own
loop on a `TorchTrainer`: 1 worker, then 2 (DDP over gloo, each worker its shard of every
split), each worker with 0.5 CPU and so one torch thread (Ray sets OMP_NUM_THREADS=1; each
worker checks and records it). `--rounds` rounds alternate the order, and a run's first epoch
is left out (the pipeline's and the model's start-up), so the figures are steady-state epochs.

Per epoch the loop reports `train_samples_per_s` (stays trained on by all workers / the
training pass's wall time) and `data_wait_share` (rank 0's time blocked on its next batch / the
training pass); a controller callback stamps each report, so an epoch's wall time splits into
the training pass and the rest (validation over each worker's shard, the all-reduce of the
sums, rank 0's checkpoint, the report). A sampler thread records where the machine's cores
went in each training pass: the workers, the rest of this process tree (also by process: Ray's
processes by title), and every other process. Samples/s of the training pass is the headline:
the best epoch of each setting over the rounds (others' load only ever slows an epoch), medians
beside it.

Setup (cached under `--workdir`, default `bench/.cache`): `data.synthetic.generate` ->
`data.prepare` -> the pretraining stay table (`workflows.pretrain.prepare_inputs`).

    .venv/bin/python bench/scaling.py                   # 2 rounds x (1, 2 workers) x 6 epochs (~6 min)
    .venv/bin/python bench/scaling.py --rounds 1 --epochs 3
    .venv/bin/python bench/scaling.py --heavy           # 20,000 stays, latent 128, batch 1,024 per worker

`--batch-size` is per worker, as in DDP: 2 workers step on twice the stays of 1 worker's step,
each worker computing the same per-step work (the MGA loss is contrastive within a worker's
batch, so its cost grows with the square of the per-worker batch, not the global one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from clintraj.config import from_dict, load, recipe, to_dict  # noqa: E402
from clintraj.training import pretrain  # noqa: E402


# The paper's width (PretrainConfig's default latent 128) and 1,024 stays per worker's step: a step
# of ~0.2 s on one core, against the demo's ~8 ms, so the gradients' all-reduce is a small part of it
HEAVY = {"stays": 20000, "latent_dim": 128, "batch_size": 1024}


def setup(workdir: Path, stays: int, config: pretrain.PretrainConfig) -> tuple[Path, dict]:
    """The pretraining inputs (stay table and its description), built once."""
    from clintraj.data.prepare import PrepareConfig, prepare
    from clintraj.data.synthetic import generate
    from clintraj.workflows.pretrain import prepare_inputs

    base = cache_folder(workdir, "scaling", f"eicu-{stays}")
    if not (base / "data").is_dir():
        print(f"building {stays} synthetic eICU stays under {base} ...", flush=True)
        generate("eicu", base / "raw", n_stays=stays, seed=0, progress=False)
        prepare(base / "raw", base / "data", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 500}}))
    return prepare_inputs(base / "data", base / "work", config, None)


def cache_folder(workdir: Path, *parts: str) -> Path:
    """`workdir/<parts>`, `workdir` made a folder git ignores."""
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = workdir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return workdir.joinpath(*parts)


def threads_checked(record: str):
    """The pretraining loop, after writing this worker's torch intra-op threads to `record`."""

    def loop(args: dict) -> None:
        import torch

        from clintraj.training.loop import rank_and_world

        rank, _ = rank_and_world()
        with open(f"{record}.{rank}", "w") as handle:
            handle.write(str(torch.get_num_threads()))
        pretrain.train_loop(args)

    return loop


def epoch_stamps(path: Path):
    """A Train controller callback appending rank 0's report and its time to `path` (JSON lines)."""
    from ray.train import UserCallback

    class Stamps(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            with open(path, "a") as handle:
                handle.write(json.dumps({**metrics[0], "at": time.time()}) + "\n")

    return Stamps()


class CpuUse:
    """Where the machine's cores go during a run, sampled every `interval` s in a thread: the CPU
    seconds of the Train workers, of the rest of this process tree (the driver, Ray's controller,
    raylet and object store) and of every other process (the machine's busy time less ours)."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self.root, self.interval, self.stop = psutil.Process(), interval, threading.Event()
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[bool, float]] = {}
        self.names: dict[int, str] = {}
        self.by_name: list[tuple[float, dict[str, float]]] = []  # time, CPU seconds of each kind of process
        self.samples: list[tuple[float, float, float, float]] = []  # time, workers, ours, the machine's busy
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        import psutil

        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                command = process.cmdline()
                times = process.cpu_times()
                name = process.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            worker = "RayTrainWorker" in " ".join(command)
            self.names[process.pid] = process_kind(command, name)  # a worker process retitles itself
            self.first.setdefault(process.pid, times.user + times.system)
            self.last[process.pid] = (worker, times.user + times.system)
        kinds: dict[str, float] = {}
        for pid, (worker, cpu) in self.last.items():
            if not worker:
                kinds[self.names[pid]] = kinds.get(self.names[pid], 0.0) + cpu - self.first[pid]
        machine = psutil.cpu_times()
        used = {kind: sum(cpu - self.first[pid] for pid, (worker, cpu) in self.last.items() if worker == kind)
                for kind in (True, False)}
        now = time.time()
        self.samples.append((now, used[True], used[False], sum(machine) - machine.idle - machine.iowait))
        self.by_name.append((now, kinds))

    def shares(self, start: float, end: float) -> dict:
        """Each kind's share of the machine's cores between two times (the samples around them)."""
        first, last = around(self.samples, start, end)
        capacity = (last[0] - first[0]) * os.cpu_count()
        workers, ours, busy = (last[i] - first[i] for i in (1, 2, 3))
        return {"workers": workers / capacity, "rest of ours": ours / capacity,
                "others": max(busy - workers - ours, 0.0) / capacity}

    def rest_by_kind(self, start: float, end: float) -> dict[str, float]:
        """The rest of ours between two times, by kind of process (`process_kind`): shares of the cores."""
        first, last = around(self.by_name, start, end)
        capacity = (last[0] - first[0]) * os.cpu_count()
        return {kind: (cpu - first[1].get(kind, 0.0)) / capacity for kind, cpu in last[1].items()}

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def around(samples: list, start: float, end: float) -> tuple:
    """The last sample at or before `start` and the first at or after `end` (time first in each): a
    window that holds the interval, however short it is against the sampling interval."""
    before = [sample for sample in samples if sample[0] <= start] or samples[:1]
    after = [sample for sample in samples if sample[0] >= end] or samples[-1:]
    return before[-1], after[0]


def process_kind(command: list[str], name: str) -> str:
    """A process's kind from its command line and name: Ray's processes by their title
    (`ray::TrainController`, `raylet`, ...)."""
    if command and command[0].startswith("ray::"):
        return command[0].split()[0]
    if any(part.endswith("scaling.py") for part in command[:2]):
        return "driver (this script)"
    if any(part.endswith(".py") for part in command[:3]):
        return next(Path(part).name for part in command[:3] if part.endswith(".py"))
    return name


def run(workers: int, inputs_dir: Path, meta: dict, config: pretrain.PretrainConfig, workdir: Path,
        train_stays: int) -> list[dict]:
    """The steady-state epochs (all but the first) of one run: its reports, with epoch wall seconds
    and the shares of the machine's cores during the training pass (`CpuUse.shares`)."""
    from clintraj.training.loop import make_trainer

    config = from_dict(pretrain.PretrainConfig, {**to_dict(config), "num_workers": workers})
    name = f"scaling-{workers}w-{os.getpid()}-{time.time_ns()}"
    stamps, record = workdir / f"{name}.jsonl", str(workdir / f"{name}.threads")
    started = time.time()
    with CpuUse() as use:
        make_trainer(threads_checked(record), pretrain.PretrainRun(config, meta), name=name, storage=workdir / "ray",
                     datasets=pretrain.datasets(inputs_dir, meta, config), workers=workers,
                     cpus_per_worker=config.cpus_per_worker, use_gpu=False, keep=1,
                     callbacks=[epoch_stamps(stamps)]).fit()
    threads = {Path(f"{record}.{rank}").read_text() for rank in range(workers)}
    if threads != {"1"}:
        raise RuntimeError(f"workers ran {threads} torch threads, not 1")
    reports = [json.loads(line) for line in stamps.read_text().splitlines()]
    previous = started
    for report in reports:  # an epoch's training pass starts as the report before it returns
        window = (previous, previous + train_stays / report["train_samples_per_s"])
        report["cpu"], report["rest"] = use.shares(*window), use.rest_by_kind(*window)
        report["epoch_s"], previous = report["at"] - previous, report["at"]
    return reports[1:]


def summary(epochs: list[dict], train_stays: int) -> dict:
    rates = [e["train_samples_per_s"] for e in epochs]
    train_s = [train_stays / e["train_samples_per_s"] for e in epochs]
    return {"epochs": len(epochs), "best": max(rates), "median": statistics.median(rates),
            "train_s": statistics.median(train_s), "epoch_s": statistics.median(e["epoch_s"] for e in epochs),
            "wait": statistics.median(e["data_wait_share"] for e in epochs),
            "epoch_rate": max(train_stays / e["epoch_s"] for e in epochs),
            "cpu": {kind: statistics.median(e["cpu"][kind] for e in epochs) for kind in epochs[0]["cpu"]},
            "rest": {kind: statistics.median(e["rest"].get(kind, 0.0) for e in epochs)
                     for kind in {kind for e in epochs for kind in e["rest"]}}}


def main() -> None:
    from clintraj.workflows.end_to_end import EndToEndConfig

    demo = load(EndToEndConfig, recipe("demo")).pretrain
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=demo.batch_size,
                        help="stays per step of each worker (DDP's: 2 workers step on twice the stays)")
    parser.add_argument("--latent-dim", type=int, default=demo.latent_dim, help="the model's width")
    parser.add_argument("--heavy", action="store_true",
                        help=f"compute-heavier steps: {HEAVY}, each unless given")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache")
    if parser.parse_known_args()[0].heavy:
        parser.set_defaults(**HEAVY)
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    from clintraj.runtime import init_ray, shutdown_ray

    config = from_dict(pretrain.PretrainConfig, {**to_dict(demo), "epochs": args.epochs, "patience": args.epochs,
                                                 "cpus_per_worker": 0.5, "max_failures": 0,
                                                 "batch_size": args.batch_size, "latent_dim": args.latent_dim})
    inputs_dir, meta = setup(args.workdir.resolve(), args.stays, config)
    train_stays = pq.read_table(inputs_dir / "train", columns=["stay_id"]).num_rows
    scratch = args.workdir.resolve() / "scaling" / "runs"
    scratch.mkdir(parents=True, exist_ok=True)
    init_ray(num_cpus=4)
    epochs: dict[int, list[dict]] = {1: [], 2: []}
    start = time.perf_counter()
    try:
        for round_ in range(args.rounds):
            for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                epochs[workers] += run(workers, inputs_dir, meta, config, scratch, train_stays)
                print(f"round {round_}, {workers} worker(s): done", flush=True)
    finally:
        shutdown_ray()
    table = {workers: summary(rows, train_stays) for workers, rows in epochs.items()}
    print()
    print(f"MGA pretraining, {train_stays} training stays, batch {config.batch_size} per worker, latent "
          f"{config.latent_dim}; {args.rounds} round(s) x {args.epochs} epochs, the first of each run left out "
          f"({time.perf_counter() - start:.0f} s); the controller polls every "
          f"{os.environ.get('RAY_TRAIN_HEALTH_CHECK_INTERVAL_S', '2 (Ray default)')} s")
    print(f"   {'workers':>7} {'epochs':>6} {'samples/s best':>14} {'median':>7} {'train s':>7} {'epoch s':>7} "
          f"{'rest s':>6} {'data wait':>9} {'epoch samples/s':>15}")
    for workers, row in table.items():
        print(f"   {workers:>7} {row['epochs']:>6} {row['best']:>14,.0f} {row['median']:>7,.0f} {row['train_s']:>7.2f} "
              f"{row['epoch_s']:>7.2f} {row['epoch_s'] - row['train_s']:>6.2f} {row['wait'] * 100:>8.1f}% "
              f"{row['epoch_rate']:>15,.0f}")
    print(f"   the {os.cpu_count()} cores in the training pass (median over epochs): "
          + "; ".join(f"{workers} worker(s): " + ", ".join(f"{kind} {share:.0%}" for kind, share in row["cpu"].items())
                      for workers, row in table.items()))
    for workers, row in table.items():
        busiest = sorted(row["rest"].items(), key=lambda item: -item[1])[:6]
        print(f"   the rest of ours beside {workers} worker(s), by process (median share of the cores): "
              + ", ".join(f"{kind} {share:.1%}" for kind, share in busiest))
    one, two = table[1], table[2]
    print(f"   2 / 1 workers: training samples/s {two['best'] / one['best']:.2f}x (median "
          f"{two['median'] / one['median']:.2f}x), whole epochs {two['epoch_rate'] / one['epoch_rate']:.2f}x")
    print(f"headline: pretraining samples/s, 2 workers / 1 = {two['best'] / one['best']:.2f}x")


if __name__ == "__main__":
    main()
