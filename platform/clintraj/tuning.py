"""Ray Tune search spaces from YAML (`search_spaces/*.yaml`), and the Tune run around a trainer.

A search space file:

    metric: val_loss          # what the trials report
    mode: min
    num_samples: 8
    max_concurrent_trials: 1
    scheduler: asha           # asha | fifo
    grace_period: 5           # ASHA: epochs before a trial may be stopped
    params:                   # keys of the stage's config; one distribution each
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      batch_size: {choice: [64, 128]}
      modality_dropout: {uniform: [0.0, 0.3]}

Trials follow Ray Train V2's Tune composition: a Tune function trainable
builds and fits a `TorchTrainer` whose `TuneReportCallback` passes each
epoch's metrics back to Tune; `MLflowLoggerCallback` on Tune's `RunConfig`
records one MLflow run per trial, nested under a parent run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clintraj.config import ConfigError, from_dict

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")


@dataclass
class SearchSpace:
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    num_samples: int = 4
    max_concurrent_trials: int = 1
    scheduler: Literal["asha", "fifo"] = "fifo"
    grace_period: int = 5
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_search_space(path: Path, config_cls: type) -> SearchSpace:
    """Read and check a search space: each param must be a field of `config_cls`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space file not found: {path}")
    space = from_dict(SearchSpace, yaml.safe_load(path.read_text()) or {}, str(path))
    fields = set(config_cls.__dataclass_fields__)
    for name, spec in space.params.items():
        if name not in fields:
            raise ConfigError(f"{path}: key 'params.{name}': not a field of {config_cls.__name__}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(f"{path}: key 'params.{name}': expected one of {DISTRIBUTIONS} "
                              f"with its arguments, got {spec!r}")
    return space


def param_space(space: SearchSpace) -> dict:
    from ray import tune

    def sample(spec: dict):
        (kind, args), = spec.items()
        if kind in ("choice", "grid"):
            return getattr(tune, "grid_search" if kind == "grid" else "choice")(list(args))
        return getattr(tune, kind)(*args)

    return {name: sample(spec) for name, spec in space.params.items()}


def scheduler(space: SearchSpace, max_epochs: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=max_epochs,
                             grace_period=min(space.grace_period, max_epochs), reduction_factor=2)
    return FIFOScheduler()
