"""What an experiment ran, read back from its MLflow runs for the top of the report: per dataset,
where its data came from, its stays and splits, its tasks and their prediction times, pretraining,
the static baselines and the backbones with their epochs, and how many trials finished."""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from clintraj import names

WEIGHTS = {"tiny": "tiny random-weight models", "hub": "Hugging Face weights", "local": "local weights",
           "packaged": "weights shipped in a package", "random": "random weights"}
DATA_SOURCE_TAG = "data_source"  # on a dataset's run: synthetic, or real files (set by the main job)


def _listed(values) -> str:
    return ", ".join(sorted({str(v) for v in values if v is not None})) or "none"


def _epochs(runs) -> str:
    """'; up to 3 epochs' (each value the runs' `epochs` param took), or nothing when none recorded one."""
    epochs = {r.data.params["epochs"] for r in runs if "epochs" in r.data.params}
    return f"; up to {_listed(epochs)} epochs" if epochs else ""


def what_ran(runs) -> pd.DataFrame:
    """One row per dataset the runs name (MLflow Run objects of one experiment)."""
    by_dataset = defaultdict(lambda: defaultdict(list))
    for run in runs:
        tags = run.data.tags
        if tags.get("dataset"):
            by_dataset[tags["dataset"]][tags.get("stage")].append(run)
    rows = []
    for dataset in sorted(by_dataset, key=lambda d: (d not in names.DATASETS, d)):
        stages = by_dataset[dataset]
        prepared = stages["dataset"][:1]
        metrics = prepared[0].data.metrics if prepared else {}
        splits = [metrics.get(f"stays_{s}") for s in ("train", "val", "test")]
        trials = stages["static-baseline"] + stages["sequential"]
        windows = {(r.data.tags.get("task"), r.data.tags.get("window")) for r in trials}
        status = Counter(r.info.status.lower() for r in trials)
        static, backbones = stages["static-baseline"], stages["sequential"]
        weights = _listed(WEIGHTS.get(w, w) for w in (r.data.params.get("weights") for r in backbones) if w)
        rows.append({
            "dataset": names.dataset(dataset),
            "data": prepared[0].data.tags.get(DATA_SOURCE_TAG, "not recorded") if prepared else "not recorded",
            "stays (train / val / test)": (" / ".join(f"{v:.0f}" for v in splits) if all(v is not None for v in splits)
                                           else "not recorded"),
            "tasks, predicted at": "; ".join(f"{names.task(t)} at {w}" for t, w in sorted(windows, key=str)) or "none",
            "pretraining": f"MGA{_epochs(stages['pretrain'])}" if stages["pretrain"] else "none",
            "static baselines": (f"{_listed(names.model(r.data.tags.get('architecture')) for r in static)}"
                                 f"{_epochs(static)}") if static else "none",
            "backbones": (f"{_listed(r.data.tags.get('backbone') for r in backbones)} ({weights})"
                          f"{_epochs(backbones)}") if backbones else "none",
            "trials": ", ".join(f"{n} {state}" for state, n in sorted(status.items())) or "none",
        })
    return pd.DataFrame(rows)
