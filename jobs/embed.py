"""Embed every stay with frozen encoders: one vector per modality (the learned missing token where absent).

    python jobs/embed.py --data data/eicu-v1 --encoders clintraj-work/pretrain/.../checkpoint_... --out emb/contrastive
    python jobs/embed.py --data data/eicu-v1 --encoders scratch --seed 0 --out emb/scratch
    python jobs/embed.py --data s3://BUCKET/eicu-v1 --encoders s3://BUCKET/clintraj/pretrain/.../checkpoint_... --out emb/c

--data and --encoders take URIs too (s3://, gs://, file://, ...): copied once into --workdir/staged.
"""

import argparse
import logging
from pathlib import Path

from clintraj.cli import LOCATION, location, stage_arguments
from clintraj.config import load
from clintraj.runtime import init_ray, shutdown_ray
from clintraj.training.pretrain import PretrainConfig
from clintraj.workflows.embed import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=location, required=True,
                        help=f"a dataset folder written by jobs/preprocess.py: {LOCATION}")
    parser.add_argument("--encoders", required=True, help="an MGA checkpoint folder or URI, or 'scratch'")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="scratch only: YAML over PretrainConfig (latent size, ...)")
    parser.add_argument("--seed", type=int, default=0, help="scratch only: the initialisation seed (recorded)")
    parser.add_argument("--actors", type=int, default=1, help="embedding actors (each loads the encoders once)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per actor")
    parser.add_argument("--workdir", type=Path, default=Path("clintraj-work/embed"))
    parser.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage_arguments(args, "data")
    config = load(PretrainConfig, args.config) if args.encoders == "scratch" else None
    init_ray(args.ray_address)
    try:
        record = run(args.data, args.out, args.encoders, args.workdir, config, seed=args.seed,
                     actors=args.actors, use_gpu=args.gpu)
    finally:
        shutdown_ray()
    print(f"{record['encoders']} embeddings of {len(record['modalities'])} modalities written to {args.out}")


if __name__ == "__main__":
    main()
