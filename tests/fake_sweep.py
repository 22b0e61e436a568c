"""Run by tests/test_autoscaling.py as the driver of a sweep on a fake autoscaling cluster (its
head already started): the nodes before, during and after the sweep, and where each trial's
worker ran. Prints one JSON line.

    python tests/fake_sweep.py ADDRESS STORAGE TRIALS
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from types import SimpleNamespace

os.environ["RAY_AUTH_MODE"] = "disabled"  # the test's head runs without Ray's token

import ray
from ray import tune

from clintraj.runtime import init_ray
from clintraj.training.loop import make_trainer, trial_resources


def workers() -> list[dict]:
    """The live worker nodes (the head is the one with node:__internal_head__)."""
    return [{"id": n["NodeID"], "gpus": n["Resources"].get("GPU", 0), "cpus": n["Resources"].get("CPU", 0)}
            for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"]]


def loop(config: dict) -> None:
    """A Train worker: where it runs and on which GPU, held long enough to overlap other trials."""
    start = time.time()
    time.sleep(config["run"]["seconds"])
    ray.train.report({"node": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                      "start": start, "end": time.time()})


def trial(config: dict) -> None:
    """A GPU trial as the platform runs one (`loop.make_trainer`): a TorchTrainer of one worker
    asking for one GPU, reporting to Tune. gloo: a fake node's GPU is a count, not a device."""
    name = f"trial-{tune.get_context().get_trial_id()}"
    make_trainer(loop, {"seconds": config["seconds"]}, name=name, storage=config["storage"], datasets={},
                 workers=1, cpus_per_worker=0.5, use_gpu=True, backend="gloo", tune=True).fit()


def main(address: str, storage: str, trials: int) -> None:
    init_ray(address)  # as a job given --ray-address connects
    seen = {"before": workers(), "peak": 0, "nodes": {}}

    def watch(stop: threading.Event) -> None:
        while not stop.wait(0.5):
            now = workers()
            seen["peak"] = max(seen["peak"], len(now))
            seen["nodes"].update({n["id"]: n for n in now})

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    gpu_trial = SimpleNamespace(num_workers=1, use_gpu=True)  # a stage config with use_gpu: its trial's request
    tuner = tune.Tuner(tune.with_resources(trial, trial_resources(gpu_trial)),
                       param_space={"seconds": 5, "storage": storage, "index": tune.grid_search(list(range(trials)))},
                       run_config=tune.RunConfig(name="fake-sweep", storage_path=storage, verbose=0))
    results = tuner.fit()
    swept = time.time()
    stop.set()
    watcher.join()
    seen["trials"] = [{k: r.metrics[k] for k in ("node", "gpu_ids", "start", "end")} for r in results]
    seen["errors"] = [str(e)[:2000] for e in results.errors]
    seen["after_sweep"] = len(workers())
    deadline = time.time() + 120
    while workers() and time.time() < deadline:
        time.sleep(1)
    seen["after_idle"] = len(workers())
    seen["idle_seconds"] = time.time() - swept
    ray.shutdown()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
