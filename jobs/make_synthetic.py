"""Write synthetic raw files in the exact PhysioNet layouts.

    python jobs/make_synthetic.py --dataset mimic --stays 2000 --seed 0 --out data/raw/mimic-synthetic
    python jobs/make_synthetic.py --dataset eicu  --stays 200000 --seed 1 --out data/raw/eicu-synthetic
    python jobs/make_synthetic.py --dataset mimic --stays 22000 --chart-rows-per-stay 4500 --out data/raw/mimic-dense
"""

import argparse
import json
from pathlib import Path

from clintraj.data.synthetic import DATASETS, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--stays", type=int, required=True, help="number of ICU stays")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--presence", type=json.loads, default=None,
                        help='missingness profile, e.g. \'{"cxr": 0.5}\' (P(present) per modality)')
    parser.add_argument("--chart-rows-per-stay", type=int, default=0,
                        help="MIMIC-IV only: fill chartevents with other items up to this many rows a stay "
                             "(real MIMIC-IV: about 4,300); 0: the 17 variables' items only")
    args = parser.parse_args()
    if args.chart_rows_per_stay and args.dataset != "mimic":
        parser.error("--chart-rows-per-stay is for --dataset mimic")
    options = {"presence": args.presence} if args.presence else {}
    if args.chart_rows_per_stay:
        options["chart_rows_per_stay"] = args.chart_rows_per_stay
    rows = generate(args.dataset, args.out, n_stays=args.stays, seed=args.seed, **options)
    for table, count in sorted(rows.items()):
        print(f"{count:>12,d}  {table}")


if __name__ == "__main__":
    main()
