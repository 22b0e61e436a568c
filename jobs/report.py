"""The paper's tables and figures regenerated from an MLflow experiment, ours beside the published values.

    python jobs/report.py --experiment clintraj-demo --out report/

Writes tables/ (Markdown, CSV, LaTeX), figures/ and report.html (self-contained), and logs
the folder to a "report" run of the experiment.
"""

from pathlib import Path

from clintraj import cli, console
from clintraj.reporting.page import build_and_log


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    cli.add_run_arguments(parser, experiment="clintraj-demo", ray=False, storage=False)
    args = parser.parse_args()
    cli.main(lambda args: console.say(f"report written to {build_and_log(cli.tracking(args), args.experiment, args.out)}"),
             args, ray=False)


if __name__ == "__main__":
    main()
