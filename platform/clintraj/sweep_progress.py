"""A sweep's console progress line, drawn by a Tune callback in the driver: trials ended of all,
the best result so far and which trial had it (`clintraj.console.Progress`)."""

from __future__ import annotations

from ray import tune

from clintraj.console import Progress


class SweepProgress(tune.Callback):
    def __init__(self, label: str, total: int, metric: str, mode: str):
        self.progress, self.metric, self.mode = Progress(label, total, "trials"), metric, mode
        self.best: tuple[float, str] | None = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and (
                self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])):
            self.best = (float(value), describe(trial.config))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.show(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.show(trials)

    def on_experiment_end(self, trials, **info):
        self.show(trials)
        self.progress.close()

    def show(self, trials) -> None:
        ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        failed = sum(t.status == "ERROR" for t in trials)
        notes = [f"best {self.metric} {self.best[0]:.3f} ({self.best[1]})"] if self.best else []
        notes += [f"{failed} failed"] if failed else []
        self.progress.update(ended, ", ".join(notes))


def describe(config: dict) -> str:
    """A trial's sampled settings, short: 'llama3-8b, contrastive, mortality'."""
    return ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in config.values()
                     if not isinstance(v, (dict, list)))
