"""Raw PhysioNet files -> a versioned dataset folder (cohort, labels, splits, modality tables, report).

    python jobs/preprocess.py --dataset eicu --raw /data/eicu-crd/2.0 --out data/eicu-v1
    python jobs/preprocess.py --dataset mimic --raw /data/mimiciv/2.2 \
        --cxr /data/mimic-cxr-jpg/2.0.0 --notes /data/mimic-iv-note/2.2 --out data/mimic-v1
"""

import argparse
import dataclasses
import logging
from pathlib import Path

from clintraj.config import load
from clintraj.data.prepare import PrepareConfig, log_dataset, prepare
from clintraj.tracking import Tracking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["eicu", "mimic"], required=True)
    parser.add_argument("--raw", type=Path, required=True, help="eICU folder, or MIMIC-IV folder (hosp/, icu/)")
    parser.add_argument("--cxr", type=Path, help="MIMIC-CXR-JPG root (metadata + files/); absent: no CXR modality")
    parser.add_argument("--notes", type=Path, help="MIMIC-IV-Note root (note/); absent: no note modalities")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="YAML over the defaults of PrepareConfig")
    parser.add_argument("--experiment", help="also record the dataset (funnel, report, figures) in this MLflow experiment")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else local sqlite)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = dataclasses.replace(load(PrepareConfig, args.config), dataset=args.dataset)
    report = prepare(args.raw, args.out, config, cxr=args.cxr, notes=args.notes)
    if args.experiment:
        log_dataset(args.out, Tracking.resolve(args.tracking_uri, Path("clintraj-work/mlflow")), args.experiment)
    print((args.out / "report.md").read_text())
    print(f"{report['stays']} stays written to {args.out}")


if __name__ == "__main__":
    main()
