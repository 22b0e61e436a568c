"""Ray Train callbacks that run on the Train controller."""

from __future__ import annotations

import math

from ray.train import UserCallback


class MlflowEpochLogger(UserCallback):
    """Logs rank 0's reported metrics to an MLflow run, step = the reported `epoch`.

    It runs after all workers have reported and the checkpoint is persisted, so
    an epoch that a worker failure interrupts is never logged, and the epoch
    redone after the restart is logged once. A report marked `final` (the
    sequential trainer's closing one, which repeats the best epoch) is skipped.
    """

    def __init__(self, tracking_uri: str, run_id: str):
        self.tracking_uri = tracking_uri
        self.run_id = run_id

    def after_report(self, run_context, metrics, checkpoint) -> None:
        from mlflow.tracking import MlflowClient

        reported = metrics[0] if metrics else {}
        if reported.get("final"):  # a closing report repeats the best epoch: not a new epoch
            return
        step = int(reported.get("epoch", 0))
        client = MlflowClient(self.tracking_uri)
        for key, value in reported.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                client.log_metric(self.run_id, key, float(value), step=step)
