"""Ray Tune sweep of MGA pretraining over search_spaces/pretrain_<dataset>.yaml.

    python jobs/sweep_pretrain.py --dataset eicu --data data/eicu-v1
    python jobs/sweep_pretrain.py --dataset eicu --data data/eicu-v1 --resume   # continue a stopped sweep
    python jobs/sweep_pretrain.py --dataset eicu --data s3://BUCKET/eicu-v1 --storage s3://BUCKET/clintraj

--data takes a URI too (copied once into --workdir/staged); --storage (default $CLINTRAJ_STORAGE)
puts checkpoints and Tune state in cluster storage, where --resume finds them. The sweep works
under --workdir/sweep-pretrain.
"""

import json
from pathlib import Path

from clintraj import cli, console
from clintraj.config import load
from clintraj.training.pretrain import PretrainConfig
from clintraj.tuning import load_search_space
from clintraj.workflows import sweep_pretrain

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def main() -> None:
    parser = cli.parser(__doc__)
    cli.add_dataset_arguments(parser)
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PretrainConfig (the base of every trial)")
    parser.add_argument("--search-space", type=Path, help="default: search_spaces/pretrain_<dataset>.yaml")
    parser.add_argument("--name", default="mga-sweep",
                        help="sweep name (its folder under --workdir/sweep-pretrain/tune, or --storage/sweep-pretrain/tune)")
    parser.add_argument("--resume", action="store_true", help="restore a stopped sweep of this name")
    cli.add_run_arguments(parser, experiment="clintraj-pretrain")
    args = parser.parse_args()
    cli.stage_arguments(args, "data")
    cli.check_dataset(parser, args)
    base = load(PretrainConfig, args.config)
    space = load_search_space(args.search_space or SPACES / f"pretrain_{args.dataset}.yaml", PretrainConfig)

    def job(args) -> None:
        summary = sweep_pretrain.run(args.data, args.workdir / "sweep-pretrain", base, space, cli.tracking(args),
                                     args.experiment, name=args.name, resume=args.resume, storage=args.storage)
        console.say(json.dumps(summary, indent=2, default=str))
        console.say(f"MLflow: {cli.tracking(args).ui_command()}")

    cli.main(job, args)


if __name__ == "__main__":
    main()
