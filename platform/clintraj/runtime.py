"""Where a job runs: an existing Ray cluster, or a local Ray the job starts itself."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from clintraj import console
from clintraj.tracking import OWNER_TAG, owner_gone, owner_tags

log = logging.getLogger(__name__)

# Warnings of our making, errors wherever our code runs when $CLINTRAJ_STRICT_WARNINGS is set (the
# test suite sets it; pyproject.toml's pytest filterwarnings say the same for the test process):
# any warning raised from our modules, and the library deprecations our calls once triggered.
STRICT_WARNINGS = (
    {"module": r"clintraj\."},
    {"message": r"Passing a function to `iter_torch_batches", "category": DeprecationWarning},
    {"message": r"`?gradient_checkpointing_enable`? is deprecated", "category": FutureWarning},
)
# ... and those a library reports through logging, which warning filters never see: (the logger
# that says it, exactly: Ray Data resets the handlers of its "ray.data" logger, not its children's)
STRICT_LOG_LINES = (
    ("ray.data._internal.util", r"The argument ``concurrency`` is deprecated"),  # map_batches: use compute=
    ("transformers.modeling_utils", r"`torch_dtype` is deprecated"),  # from_pretrained: use dtype=
    ("transformers.configuration_utils", r"`torch_dtype` is deprecated"),
)

# Set before Ray starts so that workers inherit them.
_QUIET_ENV = {
    "RAY_DEDUP_LOGS": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    # Ray Data's bars, one per dataset of every trial's workers, bury the job's own output;
    # the job's own progress lines (clintraj.console) report progress instead.
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", ""),
}

# For a Ray this job starts on one machine only: Ray's defaults are sized for clusters, and
# each of these spends processes that a laptop pays for in CPU. Measured on 2 cores, the
# demo's backbone sweep (4 trials at once) took 409 CPU-s and 203 s with Ray's defaults,
# 272 CPU-s and 134 s with these (bench/README.md; bench/local_ray.py repeats it on a minimal sweep).
LOCAL_RAY_ENV = {
    # Ray Data reads parquet footers through a pool of 32 actors per read_parquet, each a
    # process importing Ray Data: meant for thousands of files, and our reads are a few.
    "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "1",
    # Train V2 watches for node preemption (spot instances) with one actor per run.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # Idle worker processes, started ahead of demand and killed when unused, churn through
    # imports as trials start and end; actors start their own process when created.
    "RAY_enable_worker_prestart": "0",
    "RAY_prestart_worker_first_driver": "0",
}


class _RaiseOnLine(logging.Handler):
    def __init__(self, pattern: str):
        super().__init__(logging.WARNING)
        self.pattern = re.compile(pattern)

    def emit(self, record: logging.LogRecord) -> None:
        if self.pattern.search(record.getMessage()):  # raised through the library's logger call
            raise DeprecationWarning(f"{record.name}: {record.getMessage()}")


def strict_warnings() -> None:
    """Make STRICT_WARNINGS and STRICT_LOG_LINES errors in this process. A Ray this job starts or
    joins runs it in every worker when $CLINTRAJ_STRICT_WARNINGS is set (`worker_process_setup_hook`)."""
    for spec in STRICT_WARNINGS:
        warnings.filterwarnings("error", **spec)
    for name, pattern in STRICT_LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _RaiseOnLine) and h.pattern.pattern == pattern for h in logger.handlers):
            logger.addHandler(_RaiseOnLine(pattern))


def init_ray(address: str | None = None, num_cpus: int | None = None, workdir: str | Path | None = None) -> bool:
    """Connect to `address` (or $RAY_ADDRESS), else start a local Ray; False (and nothing done)
    when this process already has a Ray (a notebook's, a test session's): the caller uses it and
    leaves it running.

    Locally, Ray is told about at least 4 logical CPUs: Ray Data's map tasks
    need a CPU that Train workers have not taken, or the pipeline waits forever
    on a 2-core machine. Workers ask for fractional CPUs (the stage configs' `cpus_per_worker`).
    A local Ray also gets `LOCAL_RAY_ENV` (each key unless already set). Workers' output reaches
    the driver's console only with `--verbose` (`clintraj.console`); it stays in Ray's session
    logs, which a local Ray started for a job keeps under `workdir` (they hold worker output):
    in workdir/ray while it runs when that path is short enough for Ray's sockets, else in a
    short private folder whose logs `shutdown_ray` moves to workdir/logs/ray-<session>/ (a job
    killed before it could is cleaned up after by the next job over the same work folder).
    With $CLINTRAJ_STRICT_WARNINGS set, our warnings are errors here and in every Ray worker.
    """
    import ray

    if ray.is_initialized():
        return False
    strict = {}
    if os.environ.get("CLINTRAJ_STRICT_WARNINGS"):
        strict_warnings()
        strict = {"runtime_env": {"worker_process_setup_hook": f"{__name__}.strict_warnings"}}
    for key, value in _QUIET_ENV.items():
        if value:
            os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=console.verbose(), **strict)
        console.quiet_ray_loggers()  # ray.init sets its own console handlers up again
        coordinator_on_head()
        return True
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)
    cpus = num_cpus or max(4, os.cpu_count() or 1)
    log.info("starting a local Ray with %d logical CPUs", cpus)
    temp = {"_temp_dir": str(_session_root(Path(workdir).resolve()))} if workdir is not None else {}
    # address="local": a new Ray of this job's own, even where `ray start` left one running on this
    # machine (ray.init() with no address would connect to that and refuse num_cpus)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=console.verbose(), **temp,
             **strict)
    console.quiet_ray_loggers()
    return True


def coordinator_on_head() -> None:
    """Start Ray's cluster-wide AutoscalingCoordinator (a detached actor Ray Train and Ray Data
    share) on the head node. Ray 2.60 starts it on the node of whoever asks first, pinned there:
    a Train controller on a GPU worker, which then never counts as idle and is never scaled down
    (ray-project/ray#58481; the fix proposed in ray-project/ray#62260 pins it to the head, as
    Ray already does for Train's placement-group cleaner). Started here first, from a task on
    the head, it lives there and every later caller gets that one. A Ray without it: nothing to do."""
    import ray

    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:
        return

    def create() -> None:
        get_or_create_autoscaling_coordinator()

    head = {"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}
    ray.get(ray.remote(create).options(**head).remote())


# Ray's socket paths (<temp>/session_<date>_<time>_<pid>/sockets/plasma_store) must fit the 107
# bytes of a Unix socket address: about 45 are left for the temporary folder.
_MAX_TEMP_DIR = 40
_moved_logs: dict[str, Path] = {}  # a private temporary folder -> where its session logs go


def _session_root(workdir: Path) -> Path:
    inside = workdir / "ray"
    if len(str(inside)) <= _MAX_TEMP_DIR:
        inside.mkdir(parents=True, exist_ok=True)
        return inside
    _collect_orphans(workdir / "logs")
    private = Path(tempfile.mkdtemp(prefix="clintraj-ray-"))
    (private / _OWNER).write_text(json.dumps({"logs": str(workdir / "logs"), **owner_tags()}))
    _moved_logs[str(private)] = workdir / "logs"
    return private


_OWNER = "clintraj-owner.json"  # in a private folder: whose it is, where its logs go


def _collect_orphans(logs: Path) -> None:
    """Move into `logs` the session logs a killed job left in its private folder (it could not
    move them itself), and remove that folder."""
    for private in Path(tempfile.gettempdir()).glob("clintraj-ray-*"):
        try:
            owner = json.loads((private / _OWNER).read_text())
        except (OSError, ValueError):
            continue
        if owner["logs"] == str(logs) and owner_gone(owner[OWNER_TAG]):
            _move_session_logs(private, logs)


def _move_session_logs(private: Path, logs: Path) -> None:
    for session in Path(private).glob("session_2*"):
        if (session / "logs").is_dir():
            logs.mkdir(parents=True, exist_ok=True)
            shutil.move(session / "logs", logs / f"ray-{session.name}")
    shutil.rmtree(private, ignore_errors=True)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    for private, logs in list(_moved_logs.items()):
        _move_session_logs(Path(private), logs)
        del _moved_logs[private]


def ray_is_up() -> bool:
    """Whether this process has a Ray (without importing Ray to find out)."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def run_each(calls: Sequence[Callable[[], object]], what: str = "tasks") -> list:
    """The result of each call, in order: as Ray tasks spread over the cluster's nodes
    (`_placements`) when this process has Ray (`init_ray`: --ray-address, $RAY_ADDRESS), else one
    after the other here.
    The calls must not depend on each other, and what they read must be where every node sees
    it (shared storage). An error of a call is raised as itself, as it would be here, once every
    call has ended: none writes on while the caller cleans up after it. The others are waited
    for, not cancelled: a cancel that races a task's end stops Ray 2.60's driver on a failed
    internal check ("it != submissible_tasks_.end()", ray-project/ray#54798; it killed a CI run)."""
    if not ray_is_up():
        return [call() for call in calls]
    import ray

    task = ray.remote(_on_node)
    running = [task.options(num_cpus=1, scheduling_strategy=where).remote(call)
               for call, where in zip(calls, _placements(len(calls)))]
    ray.wait(running, num_returns=len(running))
    try:
        done = ray.get(running)
    except ray.exceptions.RayTaskError as error:
        raise error.cause from error
    nodes = [node for _, node in done]
    log.info("%s: %d Ray tasks on %d nodes", what, len(calls), len(set(nodes)))
    log.debug("%s ran on nodes %s", what, nodes)
    return [result for result, _ in done]


def _placements(count: int) -> list:
    """Where each of `count` tasks goes: in turn to each node with a CPU when there are several
    (pinned softly: elsewhere if that node goes away), else Ray's SPREAD, which lets an
    autoscaler add nodes. SPREAD alone is best effort: on two nodes it put all five eICU readers
    on one in one of two runs here."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1)
    if len(nodes) < 2:
        return ["SPREAD"] * count
    return [NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=True) for i in range(count)]


def _on_node(call: Callable[[], object]) -> tuple[object, str]:
    import ray

    return call(), ray.get_runtime_context().get_node_id()
