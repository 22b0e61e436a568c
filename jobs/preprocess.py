"""Raw PhysioNet files -> a versioned dataset folder (cohort, labels, splits, task cohorts with their
prediction windows, modality tables, events, report).

    python jobs/preprocess.py --dataset eicu --raw /data/eicu-crd/2.0 --out data/eicu-v1
    python jobs/preprocess.py --dataset mimic --raw /data/mimiciv/2.2 \
        --cxr /data/mimic-cxr-jpg/2.0.0 --notes /data/mimic-iv-note/2.2 --out data/mimic-v1
    python jobs/preprocess.py --dataset eicu --raw s3://BUCKET/eicu-crd/2.0 --out data/eicu-v1
    python jobs/preprocess.py --dataset meds --raw /data/mimic-iv-meds --codes mimic_iv --splits meds --out data/meds-v1

--raw, --cxr and --notes also take URIs (s3://, gs://, file://, ...): each is copied once into
--workdir/staged and read from there.

Given a Ray cluster (--ray-address, $RAY_ADDRESS), the raw tables are read by Ray tasks spread over
its nodes (one task per table); the dataset is the same, byte for byte. Every node must then see
the raw folder (or --workdir, where URIs are staged) at the same path: shared storage.
"""

import dataclasses
from pathlib import Path

from clintraj import cli, console
from clintraj.artifacts.dataset import Dataset
from clintraj.config import load
from clintraj.data.prepare import PrepareConfig, log_dataset, prepare


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--dataset", choices=cli.DATASETS, required=True)
    parser.add_argument("--raw", type=cli.location, required=True,
                        help=f"eICU folder, MIMIC-IV folder (hosp/, icu/) or MEDS folder (data/, metadata/): {cli.LOCATION}")
    parser.add_argument("--cxr", type=cli.location,
                        help=f"MIMIC-CXR-JPG root (metadata + files/); absent: no CXR modality. {cli.LOCATION}")
    parser.add_argument("--notes", type=cli.location,
                        help=f"MIMIC-IV-Note root (note/); absent: no note modalities. {cli.LOCATION}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PrepareConfig")
    cli.add_meds_arguments(parser)
    cli.add_run_arguments(parser, storage=False, local_ray=False)
    parser.set_defaults(experiment=None)
    args = parser.parse_args()
    config = dataclasses.replace(load(PrepareConfig, args.config), dataset=args.dataset)
    config.meds = cli.meds_config(args, config.meds)
    cli.stage_arguments(args, "raw", "cxr", "notes")

    def job(args) -> None:
        report = prepare(args.raw, args.out, config, cxr=args.cxr, notes=args.notes)
        if args.experiment:  # also record the dataset (funnel, report, figures) in MLflow
            log_dataset(args.out, cli.tracking(args), args.experiment)
        console.say(Dataset(args.out).summary)
        console.say(f"{report['stays']} stays written to {args.out}")

    cli.main(job, args, ray=cli.ray_address(args) is not None)


if __name__ == "__main__":
    main()
