"""Ray Train callbacks that run on the Train controller."""

from __future__ import annotations

import math
import time

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
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        reported = metrics[0] if metrics else {}
        if reported.get("final"):  # a closing report repeats the best epoch: not a new epoch
            return
        step, now = int(reported.get("epoch", 0)), int(time.time() * 1000)
        logged = [Metric(key, float(value), now, step) for key, value in reported.items()
                  if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value)]
        MlflowClient(self.tracking_uri).log_batch(self.run_id, metrics=logged)  # all of the epoch, or none

    def catch_up(self, reported: dict) -> None:
        """Log a resumed run's last persisted report unless it is logged: its process can die after
        persisting the checkpoint and before logging the epoch, which the resumed run does not redo."""
        from mlflow.tracking import MlflowClient

        key = next((k for k, v in reported.items() if k != "epoch" and isinstance(v, (int, float))
                    and math.isfinite(v)), None)
        if key is None or reported.get("final"):
            return
        history = MlflowClient(self.tracking_uri).get_metric_history(self.run_id, key)
        if int(reported.get("epoch", 0)) not in {m.step for m in history}:
            self.after_report(None, [reported], None)
