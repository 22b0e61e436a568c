"""Arguments the jobs share, so every job names them and documents them the same way."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=["eicu", "mimic"], required=True)
    parser.add_argument("--data", type=Path, required=True, help="a dataset folder written by jobs/preprocess.py")


def add_run_arguments(parser: argparse.ArgumentParser, workdir: str, experiment: str) -> None:
    parser.add_argument("--workdir", type=Path, default=Path(workdir))
    parser.add_argument("--experiment", default=experiment)
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else local sqlite)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")


def check_dataset(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fail early, through the parser, when --data holds another dataset than --dataset names."""
    report = args.data / "report.json"
    if not report.is_file():
        parser.error(f"--data {args.data}: no report.json (write the folder with jobs/preprocess.py)")
    dataset = json.loads(report.read_text())["dataset"]
    if dataset != args.dataset:
        parser.error(f"--data holds a {dataset} dataset, not {args.dataset}")
