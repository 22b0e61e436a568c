"""Where a job runs: an existing Ray cluster, or a local Ray the job starts itself."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

# Set before Ray starts so that workers inherit them.
_QUIET_ENV = {
    "RAY_DEDUP_LOGS": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    # Ray Data's bars, one per dataset of every trial's workers, bury the job's own output;
    # Tune's status table and the job's log lines report progress instead.
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", ""),
}


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` (or $RAY_ADDRESS), else start a local Ray.

    Locally, Ray is told about at least 4 logical CPUs: Ray Data's map tasks
    need a CPU that Train workers have not taken, or the pipeline waits forever
    on a 2-core machine. Workers ask for fractional CPUs (see `worker_cpus`).
    """
    import ray

    if ray.is_initialized():
        return
    for key, value in _QUIET_ENV.items():
        if value:
            os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
        return
    cpus = num_cpus or max(4, os.cpu_count() or 1)
    log.info("starting a local Ray with %d logical CPUs", cpus)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=True)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
