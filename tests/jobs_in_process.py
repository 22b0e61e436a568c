"""Run a job of jobs/ in this process, as its command line runs it: `sys.argv` set, its console
captured, and this process's logging, streams and environment put back afterwards (a job's
`console.setup` takes them over). A Ray the test session already runs is used and left running."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")


def load_job(name: str):
    """The module jobs/<name>.py (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def restored_logging():
    """console.setup reconfigures this process's logging: put pytest's back afterwards."""
    from clintraj import console

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    ray_loggers = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
                   for name in RAY_LOGGERS}
    state = dict(console._state)
    try:
        yield
    finally:
        console.teardown()
        logging.captureWarnings(False)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers, root.level = handlers, level
        for name, (saved, propagate) in ray_loggers.items():
            logging.getLogger(name).handlers, logging.getLogger(name).propagate = saved, propagate
        console._state.update(state)


def run_job(name: str, *arguments: str) -> str:
    """`python jobs/<name>.py ARGUMENTS` in this process; its console output. A job that fails
    fails the test with its console and the end of its log file."""
    from clintraj import console

    job = load_job(name)
    out = io.StringIO()
    environment = dict(os.environ)
    argv = sys.argv
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # each job's store: its --workdir's
    sys.argv = [f"jobs/{name}.py", *arguments]
    try:
        with restored_logging(), contextlib.redirect_stdout(out):
            try:
                job.main()
            except SystemExit as exit_:
                log_file = console.log_file()
                log = Path(log_file).read_text()[-6000:] if log_file and Path(log_file).is_file() else ""
                raise AssertionError(f"jobs/{name}.py exited with {exit_.code}:\n{out.getvalue()[-3000:]}\n{log}") \
                    from exit_
    finally:
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environment)
    return out.getvalue()


# The paper's splits, not the demo's larger task cohorts (sized for test CIs): smaller runs.
PAPER_SPLITS = {"fractions": [0.70, 0.15, 0.15], "task_fractions": [0.70, 0.15, 0.15]}


def small_config(experiment: str, dataset: str, task: str, prepare: dict) -> dict:
    """The demo recipe cut to one task, one backbone, one epoch and a one-trial pretraining sweep,
    on the paper's splits."""
    return {
        "base": "demo", "experiment": experiment, "datasets": [dataset], "seed": 0,
        "tasks": [task], "sequential_tasks": [task], "prepare": {**PAPER_SPLITS, **prepare},
        "pretrain": {"latent_dim": 16, "epochs": 1, "patience": 1, "num_workers": 1},
        "pretrain_search": {dataset: {"metric": "val_recall_at_10", "mode": "max", "num_samples": 1,
                                      "max_concurrent_trials": 1, "scheduler": "fifo",
                                      "params": {"missing_tokens_in_context": {"grid": [True]}}}},
        "static": {"epochs": 2, "patience": 2, "num_workers": 1},
        "static_search": {"metric": "val_score", "mode": "max", "num_samples": 1, "max_concurrent_trials": 2,
                          "params": {"architecture": {"grid": ["mlp"]}}},
        "sequential": {"weights": "tiny", "epochs": 1, "patience": 1, "max_events": 32, "batch_size": 16,
                       "lr": 1.0e-3, "deepspeed_stage": 0, "loss_on": "last_predict"},
        "backbone_search": {"metric": "val_score", "mode": "max", "num_samples": 1, "max_concurrent_trials": 2,
                            "params": {"backbone": {"grid": ["llama3-8b"]}}},
    }
