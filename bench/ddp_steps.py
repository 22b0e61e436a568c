"""Where a pretraining step's time goes on this machine, without Ray: `scaling.py`'s MGA steps in 1
process, then in 2 processes under DDP over gloo, each with one torch thread, with the gradients'
all-reduce (DDP's step) and without it (`no_sync`). The 2-process step without the all-reduce
against the 1-process step is what sharing the cores costs; with it, what the all-reduce adds.

Batches are slices of the training split (each process its own), collated once before the clock
starts; the median of `--steps` steps after 4 left out, the two 2-process modes alternating.

    .venv/bin/python bench/ddp_steps.py                 # the demo's configuration
    .venv/bin/python bench/ddp_steps.py --heavy         # scaling.py --heavy's
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scaling import HEAVY, setup  # puts the platform on the path

from clintraj.config import from_dict, load, recipe, to_dict  # noqa: E402
from clintraj.data.stay_inputs import collate  # noqa: E402
from clintraj.models.mga import mga_loss  # noqa: E402
from clintraj.training import pretrain  # noqa: E402

WARMUP = 4


def steps(rank: int, world: int, port: int, inputs_dir: Path, meta: dict, config: pretrain.PretrainConfig,
          count: int, out: dict) -> None:
    """Time `count` steps of this process (rank of world): (step, forward, backward) ms medians per mode."""
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(config.seed)
    model = pretrain.build_model(meta, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if world > 1:  # as ray.train.torch.prepare_model wraps it in training.pretrain.train_loop
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    table = pq.read_table(inputs_dir / "train")
    batches = []
    for index in range(WARMUP):
        part = table.slice((index * world + rank) * config.batch_size, config.batch_size)
        batches.append(collate({name: part.column(name).to_numpy(zero_copy_only=False) for name in part.column_names},
                               meta["feature_dims"]))
    modes = ("DDP step", "no all-reduce") if world > 1 else ("alone",)
    times = {mode: [] for mode in modes}
    for index in range(len(modes) * (WARMUP + count)):  # the modes alternate: others' load falls on both
        mode, batch = modes[index % len(modes)], batches[index // len(modes) % WARMUP]
        began = time.perf_counter()
        with model.no_sync() if mode == "no all-reduce" else contextlib.nullcontext():
            output = model(batch)
            loss, _ = mga_loss(output["z"], output["present"], output["tau"], config.missing_tokens_in_context)
            forward = time.perf_counter()
            optimizer.zero_grad()
            loss.backward()
            backward = time.perf_counter()
        optimizer.step()
        times[mode].append((time.perf_counter() - began, forward - began, backward - forward))
    if rank == 0:
        out.update({mode: [1000 * statistics.median(t[i] for t in timed[WARMUP:]) for i in range(3)]
                    for mode, timed in times.items()})
    if rank == 0:
        out["parameters"] = sum(p.numel() for p in model.parameters())
    if world > 1:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    from clintraj.workflows.end_to_end import EndToEndConfig

    demo = load(EndToEndConfig, recipe("demo")).pretrain
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=demo.batch_size, help="stays per step of each process")
    parser.add_argument("--latent-dim", type=int, default=demo.latent_dim)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--heavy", action="store_true", help=f"scaling.py's heavier steps: {HEAVY}, each unless given")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache")
    if parser.parse_known_args()[0].heavy:
        parser.set_defaults(**HEAVY)
    args = parser.parse_args()
    config = from_dict(pretrain.PretrainConfig, {**to_dict(demo), "batch_size": args.batch_size,
                                                 "latent_dim": args.latent_dim})
    inputs_dir, meta = setup(args.workdir.resolve(), args.stays, config)
    with mp.Manager() as manager:
        out = manager.dict()
        for world in (1, 2):
            mp.spawn(steps, args=(world, free_port(), inputs_dir, meta, config, args.steps, out), nprocs=world)
        out = dict(out)
    print(f"MGA step, batch {config.batch_size} per process, latent {config.latent_dim} ({out['parameters']:,} "
          f"parameters), one torch thread per process; median of {args.steps} steps after {WARMUP}, ms")
    for label, mode in (("1 process", "alone"), ("2 processes, no all-reduce", "no all-reduce"),
                        ("2 processes, DDP step", "DDP step")):
        step, forward, backward = out[mode]
        print(f"   {label:<27} {step:>7.1f}  (forward {forward:.1f}, backward {backward:.1f}, "
              f"optimizer {step - forward - backward:.1f})")
    alone, shared, synced = (out[mode][0] for mode in ("alone", "no all-reduce", "DDP step"))
    print(f"   sharing the cores: {shared / alone - 1:+.0%} a step; the all-reduce: {synced - shared:+.1f} ms "
          f"({(synced - shared) / synced:.0%} of the DDP step); 2 processes' samples/s against 1: "
          f"{2 * alone / synced:.2f}x (without the all-reduce {2 * alone / shared:.2f}x)")


if __name__ == "__main__":
    main()
