"""The paper's tables and figures regenerated from an MLflow experiment, ours beside the published values.

    python jobs/report.py --experiment clintraj-demo --out report/

Writes tables/ (Markdown, CSV, LaTeX), figures/ and report.html (self-contained), and logs
the folder to a "report" run of the experiment.
"""

import argparse
import logging
import os
from pathlib import Path

from clintraj.reporting.page import build_and_log
from clintraj.tracking import Tracking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("CLINTRAJ_WORKDIR", "clintraj-work")))
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in --workdir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    tracking = Tracking.resolve(args.tracking_uri, args.workdir / "mlflow")
    page = build_and_log(tracking, args.experiment, args.out)
    print(f"report written to {page}")


if __name__ == "__main__":
    main()
