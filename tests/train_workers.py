"""Killing a Ray Train worker from a test, once a run's checkpoint shows it is mid-run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil


def kill_newest_worker_once(storage: Path, checkpoint_file: str) -> tuple[threading.Event, list[int]]:
    """Start a thread that SIGKILLs the newest Ray Train worker once a checkpoint of a run under
    `storage` holds `checkpoint_file`; returns (an event that stops the thread, the killed pids)."""
    done, killed = threading.Event(), []

    def watch() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not done.is_set():
            if list(storage.glob(f"*/checkpoint_*/{checkpoint_file}")):
                workers = [p for p in psutil.process_iter(["cmdline", "create_time"])
                           if any("RayTrainWorker" in part for part in (p.info["cmdline"] or []))]
                if workers:  # the newest: one of this run's workers
                    newest = max(workers, key=lambda p: p.info["create_time"])
                    newest.kill()
                    killed.append(newest.pid)
                    return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    return done, killed
