"""What a person sees while a job runs, and where everything else goes.

The console shows one line per stage as it starts and ends (with its time), one progress line per
long stage (trials of a sweep done of all, the best result so far, the time left), and the job's
results. Everything else (our own INFO logs, Ray's and the libraries' log records and prints,
Python warnings) goes to the job's log file under the work folder, whose path is printed first;
`--verbose` brings it back to the console. The same holds under `ray job submit`: the driver's console is what
`ray job logs` shows.

On a terminal a progress line redraws itself in place; elsewhere (a job's log, CI) it prints at
each quarter of the work, so a run stays a few dozen lines long.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

_state = {"verbose": False, "log_file": None, "console": None, "streams": None, "redirect": None,
          "native_stderr": None}

# Ray Data's driver-side logs: to the root logger (the job's log file), not to the console.
_RAY_DATA_LOGGING = "version: 1\nloggers:\n  ray.data: {level: INFO, propagate: true}\n"


def verbose() -> bool:
    return _state["verbose"]


def log_file() -> Path | None:
    return _state["log_file"]


def setup(workdir: Path, job: str, verbose: bool = False) -> Path:
    """Send every log record and warning of this process to workdir/logs/<job>-<time>.log (and,
    when `verbose`, to the console too); return the file's path. Call before Ray starts: the
    settings for Ray Data's logger and Tune's output are read from the environment there."""
    folder = Path(workdir) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    if verbose:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(handler.formatter)
        root.addHandler(console)
    else:
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        logging_config = folder / "ray-data-logging.yaml"
        logging_config.write_text(_RAY_DATA_LOGGING)
        # absolute: Ray's trial and worker processes read it from their own working directories
        os.environ["RAY_DATA_LOGGING_CONFIG"] = str(logging_config.resolve())
    logging.captureWarnings(True)
    quiet_ray_loggers()
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow's records go to the root logger too
    _state.update(verbose=verbose, log_file=path, console=sys.stdout, streams=(sys.stdout, sys.stderr))
    if not verbose:  # what libraries print (Tune's tables, progress bars) goes to the log file as well
        sys.stdout = sys.stderr = _state["redirect"] = open(path, "a", buffering=1)
        # and what native code writes to the process's stderr (Ray's core worker logs its C++
        # warnings there, past Python's streams)
        sys.__stderr__.flush()
        _state["native_stderr"] = os.dup(2)
        os.dup2(_state["redirect"].fileno(), 2)
    return path


def teardown() -> None:
    """Give the process its own streams back (the job is over, or a test is)."""
    redirect, native_stderr = _state["redirect"], _state["native_stderr"]
    if native_stderr is not None:
        os.dup2(native_stderr, 2)
        os.close(native_stderr)
    if redirect is not None:
        if sys.stdout is redirect:
            sys.stdout, sys.stderr = _state["streams"]
        redirect.close()
    _state.update(console=None, streams=None, redirect=None, native_stderr=None)


def quiet_ray_loggers() -> None:
    """Ray's loggers print to the console through their own handlers: hand their records to the
    root logger instead (the log file; the console too when verbose)."""
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


def _console():
    return _state["console"] or sys.stdout


def say(message: str) -> None:
    """One line for the person running the job (and the log file)."""
    print(message, file=_console(), flush=True)
    logging.getLogger("clintraj.console").info(message)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


@contextmanager
def stage(name: str):
    """`name ...` as the stage starts, `name: done in 1m 02s` (and what the block adds through the
    yielded list) as it ends, `name: failed after ...` if it raises."""
    say(f"{name} ...")
    started, notes = time.monotonic(), []
    try:
        yield notes
    except BaseException:
        say(f"{name}: failed after {duration(time.monotonic() - started)}")
        raise
    say(f"{name}: done in {duration(time.monotonic() - started)}" + "".join(f"; {note}" for note in notes))


class Progress:
    """A progress line: `label: done/total unit, note, about 3m left`."""

    def __init__(self, label: str, total: int, unit: str = ""):
        self.label, self.total, self.unit = label, max(total, 1), unit
        self.done, self.note, self.started = 0, "", time.monotonic()
        self.tty = _console().isatty()
        self.shown_quarter = 0

    def update(self, done: int, note: str = "") -> None:
        self.done, self.note = min(done, self.total), note or self.note
        quarter = 4 * self.done // self.total
        if self.tty:
            print("\r" + self.line(), end="", file=_console(), flush=True)
        elif quarter > self.shown_quarter and self.done < self.total:
            self.shown_quarter = quarter
            say("  " + self.line())

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        left = (f", about {duration(elapsed / self.done * (self.total - self.done))} left"
                if 0 < self.done < self.total else "")
        note = f", {self.note}" if self.note else ""
        return f"{self.label}: {self.done}/{self.total}{' ' + self.unit if self.unit else ''}{note}{left}"

    def close(self) -> None:
        if self.tty:
            print("\r" + self.line(), file=_console(), flush=True)
            logging.getLogger("clintraj.console").info(self.line())
        else:
            say("  " + self.line())
