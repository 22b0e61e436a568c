"""Final-layer attention of fine-tuned backbones under modality ablation, per stay and across the cohort.

    python jobs/interpret.py --run-id RUN [--compare-run-id RUN] --remove lab --stay-id 141009 --out out/
    python jobs/interpret.py --run-id RUN --compare-run-id RUN --remove lab --cohort --out out/

RUN is a trial of the backbone sweep (its MLflow run id); with a second run (the same backbone
with the other initialisation) the figures and tests compare the two. Everything is written
under --out and logged to the runs' MLflow artifacts ("interpretation/"). The stay's raw events
go to the output folder only; logs name stays by their index in the test split.
"""

import argparse
import json
import logging
import os
from pathlib import Path

from clintraj.runtime import init_ray, shutdown_ray
from clintraj.storage import stage_in
from clintraj.tracking import Tracking
from clintraj.workflows import interpret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", required=True, help="an MLflow run of the backbone sweep")
    parser.add_argument("--compare-run-id", help="a second run (e.g. the scratch twin) to compare with")
    parser.add_argument("--remove", required=True, help="the modality to remove (e.g. lab, demographics)")
    parser.add_argument("--stay-id", type=int, help="one test stay to explain (its figures and event table)")
    parser.add_argument("--cohort", action="store_true", help="every test stay with the modality (Ray Data)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("CLINTRAJ_WORKDIR", "clintraj-work")))
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in --workdir)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    args = parser.parse_args()
    if args.stay_id is None and not args.cohort:
        parser.error("give --stay-id, --cohort, or both")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from mlflow.tracking import MlflowClient

    tracking = Tracking.resolve(args.tracking_uri, args.workdir / "mlflow")
    client = MlflowClient(tracking.uri)
    runs = [client.get_run(r) for r in (args.run_id, args.compare_run_id) if r]
    # a checkpoint in cluster run storage (s3://...) is copied once under --workdir/staged
    checkpoints = {run.data.tags.get("initialisation", run.info.run_id):
                   stage_in(run.data.tags["checkpoint"], args.workdir / "staged") for run in runs}
    if len(checkpoints) < len(runs):
        parser.error("the two runs have the same initialisation; compare a contrastive and a scratch run")
    sequences = {Path(run.data.params["sequences"]) for run in runs}
    if len(sequences) > 1 and args.stay_id is not None:
        log_note = "the runs were trained on different timelines; the stay is read from the first run's"
        logging.getLogger(__name__).warning(log_note)
    sequences = Path(runs[0].data.params["sequences"])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stay_id is not None:
        summary = interpret.explain_stay(checkpoints, sequences, args.stay_id, args.remove, args.out / "stay")
        for name, model in summary["models"].items():
            print(f"{name}: demographics share of the last [PREDICT]'s attention "
                  f"{model['demographics_share_full']:.3f} -> {model['demographics_share_ablated']:.3f} "
                  f"without {args.remove}; final logit {model['prediction_full']:.3f} -> {model['prediction_ablated']:.3f}")
    if args.cohort:
        init_ray(args.ray_address)
        try:
            frames = {name: interpret.cohort(checkpoint, sequences, args.remove) for name, checkpoint in checkpoints.items()}
        finally:
            shutdown_ray()
        for name, frame in frames.items():
            frame.to_csv(args.out / f"cohort_{name}.csv", index=False)
        summary = interpret.summarise(frames)
        (args.out / "cohort_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        interpret.cohort_figure(frames, args.remove, args.out / "cohort.png")
        print(json.dumps(summary.get("paired_wilcoxon", {}), indent=2))
    for run in runs:
        client.log_artifacts(run.info.run_id, str(args.out), "interpretation")
    print(f"written to {args.out} and logged to MLflow run(s) {', '.join(r.info.run_id for r in runs)}")


if __name__ == "__main__":
    main()
