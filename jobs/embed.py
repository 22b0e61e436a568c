"""Embed every task stay with frozen encoders: one vector per modality over the task's window (the
learned missing token where absent) and one per timeline event.

    python jobs/embed.py --data data/eicu-v1 --encoders clintraj-work/pretrain/.../checkpoint_... --out emb/contrastive
    python jobs/embed.py --data data/eicu-v1 --encoders scratch --seed 0 --out emb/scratch
    python jobs/embed.py --data s3://BUCKET/eicu-v1 --encoders s3://BUCKET/clintraj/pretrain/.../checkpoint_... --out emb/c

--data and --encoders take URIs too (s3://, gs://, file://, ...): copied once into --workdir/staged.
The job works under --workdir/embed.
"""

from pathlib import Path

from clintraj import cli, console
from clintraj.config import load
from clintraj.training.pretrain import PretrainConfig
from clintraj.workflows import embed


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--data", type=cli.location, required=True,
                        help=f"a dataset folder written by jobs/preprocess.py: {cli.LOCATION}")
    parser.add_argument("--encoders", required=True, help="an MGA checkpoint folder or URI, or 'scratch'")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", nargs="+", help="the tasks whose stays to embed (default: every task of the dataset)")
    parser.add_argument("--config", type=Path, help="scratch only: YAML over PretrainConfig (latent size, ...)")
    parser.add_argument("--seed", type=int, default=0, help="scratch only: the initialisation seed (recorded)")
    parser.add_argument("--actors", type=int, default=1, help="embedding actors (each loads the encoders once)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per actor")
    cli.add_run_arguments(parser, storage=False)
    args = parser.parse_args()
    cli.stage_arguments(args, "data")
    config = load(PretrainConfig, args.config) if args.encoders == "scratch" else None

    def job(args) -> None:
        record = embed.run(args.data, args.out, args.encoders, args.workdir / "embed", config, seed=args.seed,
                           actors=args.actors, use_gpu=args.gpu, tasks=args.tasks)
        console.say(f"{record['encoders']} embeddings of {len(record['modalities'])} modalities for the tasks "
              f"{', '.join(record['tasks'])} written to {args.out}")

    cli.main(job, args)


if __name__ == "__main__":
    main()
