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
epoch's metrics back to Tune; a trial with one CPU worker trains in its own
process instead (`training.in_process`), and Tune retries it when it fails.
Each trial opens its MLflow child run under the sweep's parent run.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clintraj import names
from clintraj.config import ConfigError, from_dict
from clintraj.storage import join, read_text, storage_path, write_text
from clintraj.tracking import OWNER_TAG, owner_tags

log = logging.getLogger(__name__)

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
    check_params(space, config_cls, str(path))
    return space


def check_params(space: SearchSpace, config_cls: type, source: str) -> None:
    """Each param of `space` must be a field of `config_cls`, with one known distribution."""
    fields = set(config_cls.__dataclass_fields__)
    for name, spec in space.params.items():
        if name not in fields:
            raise ConfigError(f"{source}: key 'params.{name}': not a field of {config_cls.__name__}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(f"{source}: key 'params.{name}': expected one of {DISTRIBUTIONS} "
                              f"with its arguments, got {spec!r}")


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


def grid(space: SearchSpace, **axes) -> dict:
    """The space's sampled params, crossed with a grid over each named axis (e.g. initialisation, task)."""
    from ray import tune

    return {**param_space(space), **{name: tune.grid_search(list(values)) for name, values in axes.items()}}


def tuner(trial, param_grid: dict, space: SearchSpace, base, name: str, storage: str | Path, resume: bool = False,
          label: str | None = None):
    """A Tuner over a function trainable (Train V2's composition), or the restored one of an
    interrupted sweep at storage/name when `resume`; `storage` is a folder or a URI. `base`, the
    stage's config, sizes the trials: its epochs, and when a trial trains in its own process
    (`loop.trains_in_process`), the worker's CPUs and Tune's retries of a failed trial. A finished
    trial's process runs the next trial (`reuse_actors`): its imports and Ray Data are warm. Its
    progress is one console line (`label`: trials done, the best so far, the time left), Tune's
    own status tables only with --verbose."""
    from ray import tune

    from clintraj import console
    from clintraj.sweep_progress import SweepProgress
    from clintraj.training.loop import trial_resources, trial_retries

    trainable = tune.with_resources(trial, trial_resources(base))
    path = storage_path(join(storage, name))
    if resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    progress = SweepProgress(label or name, trial_count(param_grid, space.num_samples), space.metric, space.mode)
    return tune.Tuner(
        trainable, param_space=param_grid,
        tune_config=tune.TuneConfig(metric=space.metric, mode=space.mode, num_samples=space.num_samples,
                                    max_concurrent_trials=space.max_concurrent_trials,
                                    scheduler=scheduler(space, base.epochs), reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=storage_path(storage), callbacks=[progress],
                                  failure_config=tune.FailureConfig(max_failures=trial_retries(base)),
                                  verbose=2 if console.verbose() else 0))


def fit(tuner, what: str):
    """Run a sweep. One whose every trial failed is an error naming the first trial's (the whole
    traceback is in the job's log); a sweep some of whose trials failed goes on, saying how many."""
    results = tuner.fit()
    errors = results.errors
    if errors and len(errors) == len(results):
        raise RuntimeError(f"every trial of the {what} failed ({len(errors)}); the first: {first_line(errors[0])}")
    if errors:
        log.warning("%d of %d trials of the %s failed; the first: %s", len(errors), len(results), what,
                    first_line(errors[0]))
    return results


def first_line(error: BaseException) -> str:
    """What went wrong in a trial, in one line: the innermost cause Ray and Tune wrapped."""
    while getattr(error, "cause", None) is not None or error.__cause__ is not None:
        error = getattr(error, "cause", None) or error.__cause__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def trial_count(param_grid: dict, num_samples: int) -> int:
    """How many trials Tune makes of a param space: each grid's values crossed, times num_samples."""
    count = num_samples
    for value in param_grid.values():
        if isinstance(value, dict) and "grid_search" in value:
            count *= len(value["grid_search"])
    return count


def finished_trial(client, experiment_id: str, parent_run_id: str, trial_id: str) -> dict | None:
    """The metrics a trial ended with when an earlier attempt finished it, else None. Tune saves a
    sweep's state every few seconds, so a driver killed just after a trial finished restores that
    trial as unfinished: its trial function then reports these and returns instead of training
    again (the trial's run, checkpoints and figures stay those of the attempt that finished)."""
    earlier = _trial_runs(client, experiment_id, parent_run_id, trial_id, " and attributes.status = 'FINISHED'")
    return dict(earlier[0].data.metrics) if earlier else None


def _trial_runs(client, experiment_id: str, parent_run_id: str, trial_id: str, more: str = "") -> list:
    """The runs attempts of one trial of a sweep opened (one, or none)."""
    return client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                               f"and tags.trial_id = '{trial_id}'{more}")


@contextmanager
def trial_run(client, experiment_id: str, run_name: str, tags: dict):
    """A trial's MLflow child run (its parent: tags["mlflow.parentRunId"], its trial:
    tags["trial_id"]), yielded by id: the run an earlier attempt of the trial opened (Tune retried
    the trial, or a resumed sweep runs it again), reopened, else a new one. It inherits its
    parent's owner (`tracking.OWNER_TAG`: the job's driver) and ends FINISHED when the block
    completes, KILLED when Tune stops the trial, FAILED when it raises (a trial whose process is
    killed outright is ended by `end_stopped_trials`, or by the next job: `Tracking.experiment`)."""
    owner = client.get_run(tags["mlflow.parentRunId"]).data.tags.get(OWNER_TAG)
    tags = {**tags, OWNER_TAG: owner} if owner else tags
    earlier = _trial_runs(client, experiment_id, tags["mlflow.parentRunId"], tags["trial_id"])
    if earlier:
        run_id = earlier[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    else:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        yield run_id
    except (SystemExit, KeyboardInterrupt):  # Tune stops a trial (its scheduler) with sys.exit in its thread
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)


def child_results(tracking_uri: str, experiment_id: str, parent_run_id: str, tags: tuple[str, ...]):
    """One row per finished child run of a sweep: the given tags, its test_* metrics, why any of
    them is undefined (its `undefined.*` tags) and its run id."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    children = MlflowClient(tracking_uri).search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")
    rows = [{**{k: r.data.tags.get(k) for k in tags},
             **{k: v for k, v in r.data.metrics.items() if k.startswith("test_")},
             **{k: v for k, v in r.data.tags.items() if k.startswith(names.undefined_tag(""))},  # why one is not
             "run_id": r.info.run_id}
            for r in children if r.info.status == "FINISHED"]
    table = pd.DataFrame(rows, columns=None if rows else [*tags, "run_id"])
    return table.sort_values(["task", *[t for t in tags if t != "task"]]).reset_index(drop=True)


@contextmanager
def sweep_parent_run(tracking, experiment: str, name: str, dataset_name: str, stage: str, storage: str | Path,
                     resume: bool = False):
    """The MLflow parent run of a sweep, tagged with dataset and stage; a resumed sweep reopens the
    parent run it had (recorded beside its Tune state, a folder or a URI) so old and new trials stay
    its children. Yields (parent run, experiment id)."""
    import mlflow

    mlflow.set_tracking_uri(tracking.uri)
    experiment_id = tracking.experiment(experiment)
    marker = join(storage, f"{name}.parent_run")
    recorded = read_text(marker) if resume else None
    previous = recorded.strip() if recorded else None
    with mlflow.start_run(run_id=previous, experiment_id=experiment_id, tags=owner_tags(),
                          run_name=None if previous else names.stage_run(stage, dataset_name)) as parent:
        write_text(marker, parent.info.run_id)
        mlflow.set_tags({"dataset": dataset_name, "stage": stage})
        yield parent, experiment_id
