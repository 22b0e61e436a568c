"""Final-layer attention of fine-tuned backbones under modality ablation, per stay and across the cohort.

    python jobs/interpret.py --run-id RUN [--compare-run-id RUN] --remove lab --stay-id 141009 --out out/
    python jobs/interpret.py --run-id RUN --compare-run-id RUN --remove lab --cohort --out out/

RUN is a trial of the backbone sweep (its MLflow run id); with a second run (the same backbone
with the other initialisation) the figures and tests compare the two. Everything is written
under --out and logged to the runs' MLflow artifacts ("interpretation/"). The stay's events go
to the output folder only; logs name stays by their index in the test split.
"""

import json
from pathlib import Path

from clintraj import cli, console
from clintraj.workflows import interpret


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--run-id", required=True, help="an MLflow run of the backbone sweep")
    parser.add_argument("--compare-run-id", help="a second run (e.g. the scratch twin) to compare with")
    parser.add_argument("--remove", required=True, help="the modality to remove (e.g. lab, demographics)")
    parser.add_argument("--stay-id", type=int, help="one test stay to explain (its figures and event table)")
    parser.add_argument("--cohort", action="store_true", help="every test stay with the modality (Ray Data)")
    parser.add_argument("--out", type=Path, required=True)
    cli.add_run_arguments(parser, storage=False)
    args = parser.parse_args()
    if args.stay_id is None and not args.cohort:
        parser.error("give --stay-id, --cohort, or both")

    def job(args) -> None:
        results = interpret.run(cli.tracking(args), args.run_id, args.compare_run_id, args.remove, args.out,
                                args.workdir, stay_id=args.stay_id, whole_cohort=args.cohort)
        for name, model in results.get("stay", {}).get("models", {}).items():
            console.say(f"{name}: demographics share of the last [PREDICT]'s attention "
                  f"{model['demographics_share_full']:.3f} -> {model['demographics_share_ablated']:.3f} "
                  f"without {args.remove}; final logit {model['prediction_full']:.3f} -> "
                  f"{model['prediction_ablated']:.3f}")
        if "cohort" in results:
            console.say(json.dumps(results["cohort"].get("paired_wilcoxon", {}), indent=2))
        console.say(f"written to {args.out} and logged to the MLflow run(s)")

    cli.main(job, args, ray=args.cohort)


if __name__ == "__main__":
    main()
