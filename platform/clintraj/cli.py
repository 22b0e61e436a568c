"""What every job shares: its run arguments (named, defaulted and documented the same way in every
job), the staging of input URIs, and one `main` that sets up logging and starts and stops Ray
around the job's work."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from clintraj.storage import is_uri, stage_in
from clintraj.tasks import DATASET_TASKS

LOCATION = "a folder or a URI (s3://, gs://, file://, ...), staged in under --workdir/staged"
DATASETS = tuple(DATASET_TASKS)  # eicu, mimic, meds


def location(value: str) -> str | Path:
    """An argparse type for input flags: a URI stays a string, a local path becomes a Path."""
    return value if is_uri(value) else Path(value)


def parser(doc: str) -> argparse.ArgumentParser:
    """A job's parser: its module docstring as the description, examples kept as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--data", type=location, required=True,
                        help=f"a dataset folder written by jobs/preprocess.py: {LOCATION}")


def add_run_arguments(parser: argparse.ArgumentParser, experiment: str | None = None, ray: bool = True,
                      storage: bool = True, local_ray: bool = True) -> None:
    """--workdir (data, staged inputs, the local MLflow store), --experiment, --tracking-uri and, for
    jobs that run Ray, --ray-address and --storage: the same names and defaults in every job.
    `local_ray` False: a job that runs in one process unless given a cluster (`ray_address`)."""
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("CLINTRAJ_WORKDIR", "clintraj-work")),
                        help="work folder: staged inputs, stages' outputs, the local MLflow store under "
                             "mlflow/ (default: $CLINTRAJ_WORKDIR, else ./clintraj-work)")
    parser.add_argument("--experiment", default=experiment,
                        help="MLflow experiment" + (f" (default: {experiment})" if experiment else ""))
    parser.add_argument("--tracking-uri",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under --workdir/mlflow)")
    parser.add_argument("--verbose", action="store_true",
                        help="also print every log line (ours, Ray's, the libraries') to the console; by default "
                             "they go to the job's log file under --workdir/logs and the console shows stages, "
                             "progress and results")
    if ray:
        otherwise = "a local Ray" if local_ray else "no Ray: this process does the work"
        parser.add_argument("--ray-address", help=f"Ray cluster address (default: $RAY_ADDRESS, else {otherwise})")
    if storage:
        parser.add_argument("--storage", default=os.environ.get("CLINTRAJ_STORAGE") or None,
                            help="Ray Train/Tune storage for checkpoints, adapters and sweep state: a folder or a "
                                 "URI such as s3://BUCKET/clintraj (default: $CLINTRAJ_STORAGE, else under --workdir)")


def ray_address(args: argparse.Namespace) -> str | None:
    """The Ray cluster the job was given: --ray-address, else $RAY_ADDRESS (None: none)."""
    return args.ray_address or os.environ.get("RAY_ADDRESS") or None


def add_meds_arguments(parser: argparse.ArgumentParser) -> None:
    """--codes, --splits and --labels: how a MEDS dataset (--dataset meds) is read."""
    group = parser.add_argument_group("MEDS input (--dataset meds)")
    group.add_argument("--codes", help="the code map: a shipped preset (mimic_iv, eicu) or a YAML file (default: the "
                                       "config's prepare.meds.codes, mimic_iv)")
    group.add_argument("--splits", choices=["platform", "meds"],
                       help="meds: the dataset's metadata/subject_splits.parquet (train, tuning -> val, held_out -> "
                            "test); platform: the missingness-aware patient split (default: the config's)")
    group.add_argument("--labels", nargs="+", metavar="TASK=PATH", default=[],
                       help="ACES / MEDS label files (a Parquet file or folder) for tasks, e.g. mortality=labels/ "
                            "(default: labels from the dataset's codes)")


def meds_config(args: argparse.Namespace, config):
    """`config` (a MedsConfig) with the MEDS flags that were given."""
    changes = {k: getattr(args, k) for k in ("codes", "splits") if getattr(args, k, None)}
    labels = dict(config.labels)
    for item in getattr(args, "labels", None) or []:
        task, _, path = item.partition("=")
        if not task or not path:
            raise SystemExit(f"--labels: expected TASK=PATH, got {item!r}")
        labels[task] = path
    return dataclasses.replace(config, **changes, labels=labels)


def tracking(args: argparse.Namespace):
    """The MLflow store of a job: --tracking-uri, else $MLFLOW_TRACKING_URI, else under --workdir."""
    from clintraj.tracking import Tracking

    return Tracking.resolve(args.tracking_uri, args.workdir / "mlflow")


def stage_arguments(args: argparse.Namespace, *names: str) -> None:
    """Replace each named input flag's value by a local path, copying a URI once into
    --workdir/staged (see `clintraj.storage.stage_in`). Unset flags stay None."""
    for name in names:
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, stage_in(value, Path(args.workdir) / "staged"))


def check_dataset(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fail early, through the parser, when --data is no prepared dataset of the current format, or
    holds another dataset than --dataset names."""
    from clintraj.artifacts.dataset import Dataset

    try:
        dataset = Dataset(args.data).name
    except (FileNotFoundError, ValueError) as error:
        parser.error(f"--data: {error}")
    if dataset != args.dataset:
        parser.error(f"--data holds a {dataset} dataset, not {args.dataset}")


def main(job: Callable[[argparse.Namespace], None], args: argparse.Namespace, ray: bool = True) -> None:
    """Run a job: the console and the log file set up (`clintraj.console`), then `job(args)` inside a
    Ray the job connects to (--ray-address, $RAY_ADDRESS) or starts, stopped again whatever happens;
    a Ray this process already runs (a job run in a notebook or a test) is used and left running."""
    from clintraj import console
    from clintraj.runtime import init_ray, shutdown_ray

    name = Path(sys.argv[0]).stem or "job"
    log_file = console.setup(args.workdir, name, verbose=args.verbose)
    console.say(f"{name}: the full log is {log_file}")
    started = False
    try:
        if ray:
            started = init_ray(args.ray_address, workdir=args.workdir)
        job(args)
    except BaseException as error:
        logging.getLogger(__name__).exception("%s failed", name)
        console.say(f"{name} failed: {type(error).__name__}: {error}\n(the traceback is in {log_file})")
        raise SystemExit(1) from error
    finally:
        if started:
            shutdown_ray()
        console.teardown()
