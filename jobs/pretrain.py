"""Masked Global Alignment pretraining of the modality encoders (one run, Ray Train, MLflow).

    python jobs/pretrain.py --dataset eicu --data data/eicu-v1 [--config pretrain.yaml]
    python jobs/pretrain.py --dataset eicu --data s3://BUCKET/eicu-v1 --storage s3://BUCKET/clintraj

--data and --cxr take URIs too (copied once into --workdir/staged); --storage (default
$CLINTRAJ_STORAGE) puts the checkpoints in cluster storage. The run works under --workdir/pretrain.
"""

from pathlib import Path

from clintraj import cli, console
from clintraj.config import load
from clintraj.training.pretrain import PretrainConfig
from clintraj.workflows import pretrain


def main() -> None:
    parser = cli.parser(__doc__)
    cli.add_dataset_arguments(parser)
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PretrainConfig")
    parser.add_argument("--cxr", type=cli.location,
                        help=f"MIMIC-CXR-JPG root (default: the one the dataset was prepared from): {cli.LOCATION}")
    cli.add_run_arguments(parser, experiment="clintraj-pretrain")
    args = parser.parse_args()
    cli.stage_arguments(args, "data", "cxr")
    cli.check_dataset(parser, args)
    config = load(PretrainConfig, args.config)

    def job(args) -> None:
        summary = pretrain.run(args.data, args.workdir / "pretrain", config, cli.tracking(args), args.experiment,
                               image_root=args.cxr, storage=args.storage)
        console.say(f"best epoch {summary['best_epoch']}, validation MGA loss {summary['best_val_loss']:.4f}")
        console.say(f"best checkpoint: {summary['checkpoint']}")
        console.say(f"test Recall@K (mean over modality pairs): {summary['retrieval']['mean']}")
        console.say(f"modality silhouette: {summary['silhouette']:.3f}")
        console.say(f"MLflow: {cli.tracking(args).ui_command()}")

    cli.main(job, args)


if __name__ == "__main__":
    main()
