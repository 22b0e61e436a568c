"""The main job. Today it runs the pipeline that exists end to end: raw eICU -> cohort and
splits -> MGA pretraining -> contrastive and scratch embeddings -> static MLP / LSTM baselines
(Ray Tune over Ray Train), all in MLflow. The sequential backbone sweep joins it when it lands.

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
    print("\nTest metrics of the static baselines (best checkpoint of each trial):")
    columns = [c for c in ("test_auroc", "test_auprc", "test_ace", "test_bss", "test_mae", "test_spearman")
               if c in results]
    print(results[["task", "architecture", "initialisation", *columns]].to_string(index=False, float_format="%.3f"))
    print(f"\nMLflow experiment '{config.experiment}'. Open it with:\n  {tracking.ui_command()}")


if __name__ == "__main__":
    main()
