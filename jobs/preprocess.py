"""Raw PhysioNet files -> a versioned dataset folder (cohort, labels, splits, modality tables, report).

    python jobs/preprocess.py --dataset eicu --raw /data/eicu-crd/2.0 --out data/eicu-v1
    python jobs/preprocess.py --dataset mimic --raw /data/mimiciv/2.2 \
        --cxr /data/mimic-cxr-jpg/2.0.0 --notes /data/mimic-iv-note/2.2 --out data/mimic-v1
    python jobs/preprocess.py --dataset eicu --raw s3://BUCKET/eicu-crd/2.0 --out data/eicu-v1

--raw, --cxr and --notes also take URIs (s3://, gs://, file://, ...): each is copied once into
--workdir/staged and read from there.
"""

import argparse
import dataclasses
import logging
import os
from pathlib import Path

from clintraj.cli import LOCATION, location, stage_arguments
from clintraj.config import load
from clintraj.data.prepare import PrepareConfig, log_dataset, prepare
from clintraj.tracking import Tracking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["eicu", "mimic"], required=True)
    parser.add_argument("--raw", type=location, required=True,
                        help=f"eICU folder, or MIMIC-IV folder (hosp/, icu/): {LOCATION}")
    parser.add_argument("--cxr", type=location,
                        help=f"MIMIC-CXR-JPG root (metadata + files/); absent: no CXR modality. {LOCATION}")
    parser.add_argument("--notes", type=location,
                        help=f"MIMIC-IV-Note root (note/); absent: no note modalities. {LOCATION}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("CLINTRAJ_WORKDIR", "clintraj-work")),
                        help="staged inputs, local MLflow (default: $CLINTRAJ_WORKDIR, else ./clintraj-work)")
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PrepareConfig")
    parser.add_argument("--experiment", help="also record the dataset (funnel, report, figures) in this MLflow experiment")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else local sqlite)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = dataclasses.replace(load(PrepareConfig, args.config), dataset=args.dataset)
    stage_arguments(args, "raw", "cxr", "notes")
    report = prepare(args.raw, args.out, config, cxr=args.cxr, notes=args.notes)
    if args.experiment:
        log_dataset(args.out, Tracking.resolve(args.tracking_uri, args.workdir / "mlflow"), args.experiment)
    print((args.out / "report.md").read_text())
    print(f"{report['stays']} stays written to {args.out}")


if __name__ == "__main__":
    main()
