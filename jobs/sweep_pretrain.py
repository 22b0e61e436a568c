"""Ray Tune sweep of MGA pretraining over search_spaces/pretrain_<dataset>.yaml.

    python jobs/sweep_pretrain.py --dataset eicu --data data/eicu-v1
    python jobs/sweep_pretrain.py --dataset eicu --data data/eicu-v1 --resume   # continue a stopped sweep
    python jobs/sweep_pretrain.py --dataset eicu --data s3://BUCKET/eicu-v1 --storage s3://BUCKET/clintraj

--data takes a URI too (copied once into --workdir/staged); --storage (default $CLINTRAJ_STORAGE)
puts checkpoints and Tune state in cluster storage, where --resume finds them.
"""

import argparse
import json
import logging
from pathlib import Path

from clintraj.cli import add_dataset_arguments, add_run_arguments, check_dataset, stage_arguments
from clintraj.config import load
from clintraj.runtime import init_ray, shutdown_ray
from clintraj.tracking import Tracking
from clintraj.training.pretrain import PretrainConfig
from clintraj.tuning import load_search_space
from clintraj.workflows.sweep_pretrain import run

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PretrainConfig (the base of every trial)")
    parser.add_argument("--search-space", type=Path, help="default: search_spaces/pretrain_<dataset>.yaml")
    parser.add_argument("--name", default="mga-sweep", help="sweep name (its folder under --workdir/tune, or --storage/sweep-pretrain/tune)")
    parser.add_argument("--resume", action="store_true", help="restore a stopped sweep of this name")
    add_run_arguments(parser, "clintraj-work/sweep-pretrain", "clintraj-pretrain")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage_arguments(args, "data")
    check_dataset(parser, args)
    base = load(PretrainConfig, args.config)
    space = load_search_space(args.search_space or SPACES / f"pretrain_{args.dataset}.yaml", PretrainConfig)
    tracking = Tracking.resolve(args.tracking_uri, Path("clintraj-work/mlflow"))
    init_ray(args.ray_address)
    try:
        summary = run(args.data, args.workdir, base, space, tracking, args.experiment,
                      name=args.name, resume=args.resume, storage=args.storage)
    finally:
        shutdown_ray()
    print(json.dumps({k: v for k, v in summary.items() if k != "trial_id"}, indent=2, default=str))
    print(f"MLflow: {tracking.ui_command()}")


if __name__ == "__main__":
    main()
