"""Masked Global Alignment pretraining of the modality encoders (one run, Ray Train, MLflow).

    python jobs/pretrain.py --dataset eicu --data data/eicu-v1 [--config pretrain.yaml]
    python jobs/pretrain.py --dataset eicu --data s3://BUCKET/eicu-v1 --storage s3://BUCKET/clintraj

--data and --cxr take URIs too (copied once into --workdir/staged); --storage (default
$CLINTRAJ_STORAGE) puts the checkpoints in cluster storage.
"""

import argparse
import logging
from pathlib import Path

from clintraj.cli import LOCATION, add_dataset_arguments, add_run_arguments, check_dataset, location, stage_arguments
from clintraj.config import load
from clintraj.runtime import init_ray, shutdown_ray
from clintraj.tracking import Tracking
from clintraj.training.pretrain import PretrainConfig
from clintraj.workflows.pretrain import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PretrainConfig")
    parser.add_argument("--cxr", type=location,
                        help=f"MIMIC-CXR-JPG root (default: the one the dataset was prepared from): {LOCATION}")
    add_run_arguments(parser, "clintraj-work/pretrain", "clintraj-pretrain")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage_arguments(args, "data", "cxr")
    check_dataset(parser, args)
    config = load(PretrainConfig, args.config)
    tracking = Tracking.resolve(args.tracking_uri, Path("clintraj-work/mlflow"))
    init_ray(args.ray_address)
    try:
        summary = run(args.data, args.workdir, config, tracking, args.experiment, image_root=args.cxr,
                      storage=args.storage)
    finally:
        shutdown_ray()
    print(f"best epoch {summary['best_epoch']}, validation MGA loss {summary['best_val_loss']:.4f}")
    print(f"best checkpoint: {summary['checkpoint']}")
    print(f"test Recall@K (mean over modality pairs): {summary['retrieval']['mean']}")
    print(f"modality silhouette: {summary['silhouette']:.3f}")
    print(f"MLflow: {tracking.ui_command()}")


if __name__ == "__main__":
    main()
