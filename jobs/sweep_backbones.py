"""The main job. Today it runs the end-to-end slice that exists (raw eICU -> cohort ->
static MLP on Ray Train -> MLflow); the backbone sweep replaces the training step.

    python jobs/sweep_backbones.py                       # embedded default: local Ray, synthetic data
    ray job submit --working-dir . -- python jobs/sweep_backbones.py --raw /data/eicu-crd/2.0
"""

import argparse
import logging
from pathlib import Path

from clintraj.config import load
from clintraj.runtime import init_ray, shutdown_ray
from clintraj.tracking import Tracking
from clintraj.workflows.end_to_end import EndToEndConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML over the defaults of EndToEndConfig")
    parser.add_argument("--raw", type=Path, help="a raw eICU v2.0 folder (default: synthetic data, made once)")
    parser.add_argument("--workdir", type=Path, default=Path("clintraj-work"), help="data, checkpoints, local MLflow")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in --workdir)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    config = load(EndToEndConfig, args.config)
    tracking = Tracking.resolve(args.tracking_uri, args.workdir / "mlflow")
    init_ray(args.ray_address)
    try:
        results = run(config, args.workdir, tracking, raw=args.raw)
    finally:
        shutdown_ray()
    print("\nTest metrics of the best checkpoints:")
    for task, metrics in results.items():
        names = ("auroc", "auprc", "ace", "bss") if task == "mortality" else ("mse", "mae", "pearson", "spearman")
        shown = ", ".join(f"{n}={metrics[f'test_{n}']:.3f} [{metrics[f'test_{n}_low']:.3f}, "
                          f"{metrics[f'test_{n}_high']:.3f}]" for n in names)
        print(f"  {task}: {shown}")
    print(f"\nMLflow experiment '{config.experiment}'. Open it with:\n  {tracking.ui_command()}")


if __name__ == "__main__":
    main()
