"""Arguments the jobs share, so every job names them and documents them the same way."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from clintraj.storage import is_uri, stage_in

LOCATION = "a folder or a URI (s3://, gs://, file://, ...), staged in under --workdir/staged"


def location(value: str) -> str | Path:
    """An argparse type for input flags: a URI stays a string, a local path becomes a Path."""
    return value if is_uri(value) else Path(value)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=["eicu", "mimic"], required=True)
    parser.add_argument("--data", type=location, required=True,
                        help=f"a dataset folder written by jobs/preprocess.py: {LOCATION}")


def add_storage_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default=os.environ.get("CLINTRAJ_STORAGE") or None,
                        help="Ray Train/Tune storage for checkpoints, adapters and sweep state: a folder or a "
                             "URI such as s3://BUCKET/clintraj (default: $CLINTRAJ_STORAGE, else under --workdir)")


def stage_arguments(args: argparse.Namespace, *names: str) -> None:
    """Replace each named input flag's value by a local path, copying a URI once into
    --workdir/staged (see `clintraj.storage.stage_in`). Unset flags stay None."""
    for name in names:
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, stage_in(value, Path(args.workdir) / "staged"))


def add_run_arguments(parser: argparse.ArgumentParser, workdir: str, experiment: str) -> None:
    parser.add_argument("--workdir", type=Path, default=Path(workdir))
    parser.add_argument("--experiment", default=experiment)
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else local sqlite)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    add_storage_argument(parser)


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
