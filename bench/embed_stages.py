"""Where should the embedding job tokenise notes and decode images on CPU: in actors of their own, or
inside the embedding actors? MIMIC-IV with notes and CXR, scratch encoders, on this machine.

`workflows.embed.run` makes one Ray Data pass per input (the task stays, then the events' vectors,
each note kind and the images), each pass an actor pool. With the map stages as actors of their
own (`stage_actors=True`, the GPU default: CPU actors feeding the GPU one) a pass with notes and
images starts three actors, each a process importing torch and transformers; inside the embedding
actor (the CPU default) it starts one. Both write the same embeddings (checked here).

Per variant: the job's wall time and the machine's CPU seconds over it (the machine otherwise idle:
every process counts, Ray's workers included). Headline: wall time, stage actors / inside.

    .venv/bin/python bench/embed_stages.py                 # 300 stays, 2 rounds (~6 min; its data built once)
    .venv/bin/python bench/embed_stages.py --stays 1800 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clintraj.config import from_dict, load, recipe, to_dict  # noqa: E402
from clintraj.training import pretrain  # noqa: E402
from pretrain_data import synthetic_mimic  # noqa: E402


def machine_cpu_s() -> float:
    """CPU seconds the machine was busy (Ray's workers run niced: `nice` time counts too)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def timed(data: Path, out: Path, config, stage_actors: bool) -> dict:
    from clintraj.workflows import embed

    shutil.rmtree(out, ignore_errors=True)
    cpu, started = machine_cpu_s(), time.perf_counter()
    embed.run(data, out / "embeddings", "scratch", out / "work", config=config, stage_actors=stage_actors)
    return {"wall_s": time.perf_counter() - started, "cpu_s": machine_cpu_s() - cpu}


def same_embeddings(first: Path, second: Path) -> bool:
    """Every static and event embedding equal, row for row (in key order)."""
    for sub in ("static", "events"):
        frames = []
        for root in (first, second):
            frame = pd.concat([pd.read_parquet(f) for f in sorted((root / "embeddings" / sub).rglob("*.parquet"))])
            keys = [c for c in ("task", "stay_id", "time_hours", "modality", "tie") if c in frame]
            frames.append(frame.sort_values(keys).reset_index(drop=True))
        for column in frames[0]:
            left, right = frames[0][column].to_numpy(), frames[1][column].to_numpy()
            if left.dtype == object and isinstance(left[0], np.ndarray):
                left, right = np.stack(left), np.stack(right)
            equal = np.allclose(left, right) if np.issubdtype(left.dtype, np.number) else np.array_equal(left, right)
            if not equal:
                return False
    return True


def main() -> None:
    from clintraj.workflows.end_to_end import EndToEndConfig

    demo = load(EndToEndConfig, recipe("demo"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    from clintraj.runtime import init_ray, shutdown_ray

    config = from_dict(pretrain.PretrainConfig, to_dict(demo.pretrain))
    data = synthetic_mimic(args.workdir.resolve(), args.stays, demo.prepare)
    scratch = args.workdir.resolve() / "embed_stages" / "runs"
    init_ray(num_cpus=4)
    runs: dict[str, list[dict]] = {"stage actors": [], "inside": []}
    try:
        for round_ in range(args.rounds):
            for stage_actors in ((True, False) if round_ % 2 == 0 else (False, True)):
                name = "stage actors" if stage_actors else "inside"
                runs[name].append(timed(data, scratch / name.replace(" ", "-"), config, stage_actors))
                print(f"round {round_}, {name}: {runs[name][-1]['wall_s']:.1f} s, "
                      f"{runs[name][-1]['cpu_s']:.0f} CPU-s", flush=True)
    finally:
        shutdown_ray()
    same = same_embeddings(scratch / "stage-actors", scratch / "inside")
    print()
    print(f"MIMIC-IV embedding job, {args.stays} synthetic stays with notes and CXR, scratch encoders; "
          f"{args.rounds} round(s), the best of each; the same embeddings both ways: {same}")
    print(f"   {'map stages':>13} {'wall s':>7} {'machine CPU-s':>13}")
    best = {name: min(rows, key=lambda row: row["wall_s"]) for name, rows in runs.items()}
    for name, row in best.items():
        print(f"   {name:>13} {row['wall_s']:>7.1f} {row['cpu_s']:>13.0f}")
    print(f"headline: MIMIC-IV embedding wall time, stage actors / inside = "
          f"{best['stage actors']['wall_s'] / best['inside']['wall_s']:.2f}x")
    if not same:
        raise SystemExit("the two ways wrote different embeddings")


if __name__ == "__main__":
    main()
