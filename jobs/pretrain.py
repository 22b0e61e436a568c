"""Masked Global Alignment pretraining of the modality encoders (one run, Ray Train, MLflow).

    python jobs/pretrain.py --dataset eicu --data data/eicu-v1 [--config pretrain.yaml]
"""

import argparse
import json
import logging
from pathlib import Path

from clintraj.config import load
from clintraj.runtime import init_ray, shutdown_ray
from clintraj.tracking import Tracking
from clintraj.training.pretrain import PretrainConfig
from clintraj.workflows.pretrain import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["eicu", "mimic"], required=True)
    parser.add_argument("--data", type=Path, required=True, help="a dataset folder written by jobs/preprocess.py")
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PretrainConfig")
    parser.add_argument("--cxr", type=Path, help="MIMIC-CXR-JPG root (default: the one the dataset was prepared from)")
    parser.add_argument("--workdir", type=Path, default=Path("clintraj-work/pretrain"))
    parser.add_argument("--experiment", default="clintraj-pretrain")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else local sqlite)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dataset = json.loads((args.data / "report.json").read_text())["dataset"]
    if dataset != args.dataset:
        parser.error(f"--data holds a {dataset} dataset, not {args.dataset}")
    config = load(PretrainConfig, args.config)
    tracking = Tracking.resolve(args.tracking_uri, Path("clintraj-work/mlflow"))
    init_ray(args.ray_address)
    try:
        summary = run(args.data, args.workdir, config, tracking, args.experiment, image_root=args.cxr)
    finally:
        shutdown_ray()
    print(f"best epoch {summary['best_epoch']}, validation MGA loss {summary['best_val_loss']:.4f}")
    print(f"best checkpoint: {summary['checkpoint']}")
    print(f"test Recall@K (mean over modality pairs): {summary['retrieval']['mean']}")
    print(f"modality silhouette: {summary['silhouette']:.3f}")
    print(f"MLflow: {tracking.ui_command()}")


if __name__ == "__main__":
    main()
