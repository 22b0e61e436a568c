"""A versioned dataset folder from a raw folder: cohort, splits, task cohorts with their windows,
per-stay tables, events, report (the folder's layout: `clintraj.artifacts.dataset`).

A task sees the events of its window only (`data.windows`): its per-stay tables here and its
timelines later are cut by the same rule, at the prediction time fixed here and recorded in
report.json. Pretraining reads the whole-stay view of the pretraining stays; the task cohorts come
from the others.
"""

from __future__ import annotations

import errno
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj import __version__
from clintraj.artifacts.dataset import Dataset, DatasetWriter
from clintraj.config import to_dict
from clintraj.data import eicu, meds, mimic, windows
from clintraj.data.cohort import CohortTables
from clintraj.data.modalities import (Modality, TermRule, event_frames, event_stays, fit_vocabulary, stay_slices,
                                     stay_tables)
from clintraj.data.splits import GIVEN_SPLIT, given_split, presence_combination, split_around_test, split_stays
from clintraj.tasks import TASKS, dataset_tasks, prediction_hours, window_text

log = logging.getLogger(__name__)


@dataclass
class PrepareConfig:
    dataset: str = "eicu"
    seed: int = 0
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)  # pretraining's train / val / test
    # Each task cohort's, out of the pretraining val + test pool (the paper's 70/15/15 both times).
    # A small cohort may want a larger test share: the demo's, for CIs that mean something.
    task_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    min_units_per_stratum: int = 10
    rows_per_shard: int = 200_000
    # Hours after ICU admission at which each task predicts (null: the whole ICU stay); a task left
    # out takes its default (clintraj.tasks.DEFAULT_PREDICTION_HOURS: eICU 12 h, MIMIC-IV
    # mortality 48 h, phenotyping the ICU stay).
    prediction_hours: dict[str, float | None] = field(default_factory=dict)
    lookback_hours: float = 0.0  # events before ICU admission a task may see (0: none)
    eicu: eicu.EicuConfig = field(default_factory=eicu.EicuConfig)
    mimic: mimic.MimicConfig = field(default_factory=mimic.MimicConfig)
    meds: meds.MedsConfig = field(default_factory=meds.MedsConfig)

    def __post_init__(self):
        for key in ("fractions", "task_fractions"):
            shares = getattr(self, key)
            if len(shares) != 3 or min(shares) < 0 or not np.isclose(sum(shares), 1.0):
                raise ValueError(f"{key}: three shares (train, val, test), each >= 0, summing to 1; got {list(shares)}")

    def windows(self) -> dict[str, float | None]:
        """Each of the dataset's tasks' prediction time (hours, or None for the whole stay)."""
        return prediction_hours(self.dataset, self.prediction_hours)


def build_cohort(raw: Path, config: PrepareConfig, scratch: Path, cxr: Path | None = None,
                 notes: Path | None = None) -> CohortTables:
    """The dataset's reader; `scratch`, an empty folder, for what a reader keeps on disk."""
    if config.dataset == "eicu":
        return eicu.build(Path(raw), config.eicu, scratch)
    if config.dataset == "mimic":
        return mimic.build(Path(raw), cxr, notes, config.mimic, scratch)
    if config.dataset == "meds":
        return meds.build(Path(raw), config.meds, config.windows(), config.lookback_hours)
    raise ValueError(f"unknown dataset {config.dataset!r}; choose eicu, mimic or meds")


def term_rule(config: PrepareConfig) -> TermRule:
    return config.eicu.terms if config.dataset == "eicu" else TermRule()


def values_rule(config: PrepareConfig) -> TermRule | None:
    """Which names of a values modality become features: a MEDS dataset's numeric codes by the
    paper's rule (present in 5% of training stays); None: every name the reader kept (the eICU
    and MIMIC-IV readers choose their lab names themselves)."""
    return config.meds.values if config.dataset == "meds" else None


def fit_vocabularies(tables: CohortTables, train_ids, rule: TermRule,
                     values: TermRule | None = None) -> dict[str, list[str]]:
    """Per terms / values modality, the names that become features: terms by `rule` on the
    training stays; values (labs) by `values` when given, else every name the reader kept."""
    vocabularies = {}
    for modality in tables.modalities:
        events = tables.events[modality.name]
        if modality.kind == "terms" or (modality.kind == "values" and values is not None):
            vocabularies[modality.name] = fit_vocabulary(events, train_ids, rule if modality.kind == "terms" else values)
        elif modality.kind == "values":
            names = {str(n) for part in event_frames(events) for n in part["name"].dropna().unique()}
            vocabularies[modality.name] = sorted(names)
    return vocabularies


def modality_table(tables: CohortTables, modality: Modality, vocabularies: dict, rule: TermRule,
                   window: pd.DataFrame | None = None) -> Iterator[pd.DataFrame]:
    """A modality's per-stay table from its events, in slices of stays (`modalities.stay_tables`):
    over all of them (the whole-stay view), or those inside `window` (a task's: `data.windows`)."""
    inside = None if window is None else lambda events: windows.select(events, window, modality.after_stay)
    return stay_tables(modality, tables.events[modality.name], inside, tables.static.get(modality.name),
                       vocabularies.get(modality.name), rule)


def _with_stays(frames: Iterable[pd.DataFrame], seen: list) -> Iterator[pd.DataFrame]:
    """`frames`, their stay ids added to `seen` as they pass."""
    for frame in frames:
        seen.append(frame["stay_id"].to_numpy())
        yield frame


def task_cohort(name: str, number: int, stays: pd.DataFrame, tables: CohortTables, vocabularies: dict,
                config: PrepareConfig, writer: DatasetWriter) -> dict:
    """The task's cohort: stays of the pretraining val + test pool with the label, still in the ICU at
    the prediction time; their window's tables, written as they are made; re-split by the window's
    modality presence. Returns the task's report."""
    task, hours = TASKS[name], config.windows()[name]
    pool = stays[stays["split"].isin(["val", "test"])]
    labelled = pool[task.has_label(pool)]
    members = labelled[windows.long_enough(labelled, hours)]
    window = windows.bounds(members, hours, config.lookback_hours)
    presence_columns = {}
    for modality in tables.modalities:  # has_<modality>: the stay has a row in the window's table
        seen = []
        writer.task_table(name, modality.name,
                          _with_stays(modality_table(tables, modality, vocabularies, term_rule(config), window), seen))
        presence_columns[f"has_{modality.name}"] = members["stay_id"].isin(np.concatenate(seen)).to_numpy()
    presence_columns = pd.DataFrame(presence_columns, index=members.index)
    split_options = {"seed": config.seed + number, "fractions": config.task_fractions,
                     "min_units_per_stratum": config.min_units_per_stratum}
    if GIVEN_SPLIT in members:  # the dataset's held-out stays stay the test split
        split, split_report = split_around_test(members.assign(**presence_columns), list(presence_columns.columns),
                                                members[GIVEN_SPLIT].eq("test"), **split_options)
    else:
        split, split_report = split_stays(members.assign(**presence_columns), list(presence_columns.columns),
                                          **split_options)
    cohort = window.assign(split=split.to_numpy(),
                           prediction_hours=pd.array([hours] * len(window), dtype="Float64"))
    writer.task_cohort(name, cohort[["stay_id", "split", "prediction_hours", "start_hours", "end_hours"]]
                       .reset_index(drop=True))
    with_unit = window.assign(unit_hours=members["unit_hours"].to_numpy())
    return {
        "prediction_hours": hours, "window": window_text(hours), "lookback_hours": config.lookback_hours,
        "stays_with_label": int(len(labelled)),
        "excluded_icu_stay_shorter_than_window": int(len(labelled) - len(members)),
        "stays": int(len(members)),
        "events": {m.name: _relations(tables.events[m.name], with_unit, m.after_stay) for m in tables.modalities},
        "presence_share": {m: float(presence_columns[f"has_{m}"].mean()) if len(members) else 0.0
                           for m in tables.modality_names},
        **_split_summary(split_report),
    }


def prepare(raw: Path, out: Path, config: PrepareConfig, cxr: Path | None = None, notes: Path | None = None) -> dict:
    """Build the dataset folder `out` from `raw`; return the report. Same input, same bytes. The
    readers' scratch folder (eICU's events and MIMIC-IV's notes on disk) is a sibling of `out`, so
    on a Ray cluster it is where `out` is, on storage every node reaches; it goes when `out` is
    written."""
    config.windows()  # a misnamed task or a bad window fails before any reading
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{Path(out).name}.scratch-", dir=Path(out).parent) as scratch:
        return _prepare(raw, out, config, Path(scratch), cxr, notes)


def _prepare(raw: Path, out: Path, config: PrepareConfig, scratch: Path, cxr: Path | None,
             notes: Path | None) -> dict:
    try:
        tables = build_cohort(raw, config, scratch, cxr, notes)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        raise OSError(error.errno, f"writing the dataset {out} failed in the readers' scratch folder "
                                   f"({error.strerror or error}); nothing was written there") from error
    stays = tables.stays.drop(columns=[c for c in tables.stays.columns
                                       if pd.api.types.is_datetime64_any_dtype(tables.stays[c])])
    names = list(tables.modality_names)
    for name in names:  # the pretraining view: a modality is present when the stay has any event of it
        stays[f"has_{name}"] = stays["stay_id"].isin(event_stays(tables.events[name]))
    presence_columns = [f"has_{m}" for m in names]
    if GIVEN_SPLIT in stays:  # the dataset's own split (a MEDS dataset's subject_splits)
        stays["split"], split_report = given_split(stays, presence_columns)
    else:
        stays["split"], split_report = split_stays(
            stays, presence_columns, seed=config.seed, fractions=config.fractions,
            min_units_per_stratum=config.min_units_per_stratum)
    train_ids = stays.loc[stays["split"] == "train", "stay_id"]
    rule = term_rule(config)
    vocabularies = fit_vocabularies(tables, train_ids, rule, values_rule(config))
    task_reports, windows_hours = {}, {}
    with DatasetWriter(out, config.rows_per_shard) as writer:  # one per-stay table in memory at a time
        writer.stays(stays)
        for modality in tables.modalities:  # the whole-stay view
            events = (part.drop(columns="row", errors="ignore") for part in event_frames(tables.events[modality.name]))
            writer.modality(modality.name, modality_table(tables, modality, vocabularies, rule), events)
        for number, name in enumerate(dataset_tasks(config.dataset), start=1):
            task_reports[name] = task_cohort(name, number, stays, tables, vocabularies, config, writer)
            windows_hours[name] = task_reports[name]["prediction_hours"]
        report = {
            "clintraj_version": __version__,
            "dataset": config.dataset,
            "config": to_dict(config),
            "sources": {"raw": str(Path(raw).resolve()), "cxr": str(Path(cxr).resolve()) if cxr else None,
                        "notes": str(Path(notes).resolve()) if notes else None},
            "modalities": names,
            "modality_kinds": {m.name: m.kind for m in tables.modalities},
            "after_stay": [m.name for m in tables.modalities if m.after_stay],
            "labels": list(tables.label_columns),
            "funnel": [{k: v for k, v in step.items() if k in ("step", "removed", "remaining")}
                       for step in tables.funnel],
            "stays": len(stays),
            "presence_share": {m: float(stays[f"has_{m}"].mean()) for m in names},
            "modalities_per_stay": _per_split_counts(stays, presence_columns),
            "splits": _split_summary(split_report),
            "windows": windows_hours,
            "lookback_hours": config.lookback_hours,
            "tasks": task_reports,
            "vocabulary_sizes": {m: len(v) for m, v in vocabularies.items()},
            "events": {m: int(len(tables.events[m])) for m in names},
            "quarantine": tables.quarantine.summary(),
            "accounts": tables.quarantine.accounts(),
            **({"reading": tables.reading} if tables.reading else {}),
        }
        for account in report["accounts"]:  # a row in no bucket, or in two, is a reader's bug: say so
            if account["unaccounted"]:
                log.warning("%s: %d raw rows not accounted for (rows != used + filtered + quarantined)",
                            account["table"], account["unaccounted"])
        writer.quarantine(tables.quarantine.frame())
        writer.report(report, render_report(report))
        plot_missingness(stays, presence_columns, writer.figure)
    log.info("dataset written to %s: %d stays", out, len(stays))
    return Dataset(out).report


def _relations(events: pd.DataFrame, window: pd.DataFrame, after_stay: bool) -> dict[str, int]:
    """`windows.relations` of all the events, counted a slice of stays at a time."""
    counts = [windows.relations(part, window, after_stay) for part in stay_slices(events)]
    return {relation: sum(count[relation] for count in counts) for relation in windows.RELATIONS}


def _split_summary(report) -> dict:
    return {"strata": report.strata, "pooled_strata": report.pooled_strata,
            "units": report.units, "split_stays": report.stays}


def _per_split_counts(stays: pd.DataFrame, presence: list[str]) -> dict:
    count = stays[presence].sum(axis=1)
    return {split: {int(k): int(v) for k, v in count[stays["split"] == split].value_counts().sort_index().items()}
            for split in ("train", "val", "test")}


def plot_missingness(stays: pd.DataFrame, presence: list[str], path: Path, top: int = 15) -> None:
    """Paper appendix A.1-A.7 style: the most common modality combinations, and stays by
    number of modalities present, per split. Drawn on a `Figure` of its own (no pyplot: no global
    figure state, and 0.7 s less of imports in a process that plots nothing else)."""
    from matplotlib.figure import Figure

    names = [p.removeprefix("has_") for p in presence]
    codes = presence_combination(stays, presence)
    labels = {code: " + ".join(n for n, bit in zip(names, code) if bit == "1") or "none" for code in codes.unique()}
    figure = Figure(figsize=(14, 5))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    counts = codes.map(labels).value_counts().head(top)[::-1]
    left.barh(counts.index, counts.to_numpy(), color="tab:blue")
    left.set_xlabel("stays")
    left.set_title("modality combinations (most common)")
    left.tick_params(axis="y", labelsize=7)
    present = stays[presence].sum(axis=1)
    table = pd.crosstab(present, stays["split"], normalize="columns").reindex(columns=["train", "val", "test"])
    table.plot.bar(ax=right, rot=0)
    right.set_xlabel("modalities present")
    right.set_ylabel("share of stays in split")
    right.set_title("modalities per stay, by split")
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})


def render_report(report: dict) -> str:
    lines = [f"# {report['dataset']} dataset", "", "## Cohort funnel", "",
             "| step | removed | remaining |", "|---|---:|---:|"]
    lines += [f"| {s['step']} | {s['removed']} | {s['remaining']} |" for s in report["funnel"]]
    lines += ["", "## Modality presence (whole stay: the pretraining view)", "",
              "| modality | share of stays | events |", "|---|---:|---:|"]
    lines += [f"| {m} | {share:.3f} | {report['events'][m]} |" for m, share in report["presence_share"].items()]
    lines += ["", "| modalities present | train | val | test |", "|---:|---:|---:|---:|"]
    counts = report["modalities_per_stay"]
    for k in sorted({k for split in counts.values() for k in split}):
        lines.append(f"| {k} | " + " | ".join(str(counts[s].get(k, 0)) for s in ("train", "val", "test")) + " |")
    lines += ["", "## What each task sees", "",
              "Each task sees only the events of its window: from ICU admission (minus the lookback) to its "
              "prediction time, never after ICU discharge. Stays whose ICU stay ends before the prediction "
              "time leave the task.", "",
              "| task | prediction time | lookback | stays with a label | excluded: ICU stay shorter | cohort | "
              "events in window | before the window | after the prediction time | after ICU discharge |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, task in report["tasks"].items():
        total = {r: sum(counts[r] for counts in task["events"].values()) for r in windows.RELATIONS}
        lines.append(f"| {name} | {task['window']} | {task['lookback_hours']:g} h | {task['stays_with_label']} | "
                     f"{task['excluded_icu_stay_shorter_than_window']} | {task['stays']} | "
                     + " | ".join(str(total[r]) for r in windows.RELATIONS) + " |")
    for title, splits in [("Pretraining splits", report["splits"]),
                          *[(f"Task cohort: {task}", s) for task, s in report["tasks"].items()]]:
        lines += ["", f"## {title}", "",
                  f"{splits['strata']} presence strata, {splits['pooled_strata']} too small to split (pooled).", "",
                  "| split | units | stays |", "|---|---:|---:|"]
        lines += [f"| {s} | {splits['units'][s]} | {splits['split_stays'][s]} |" for s in splits["split_stays"]]
    lines += ["", "## Quarantine", ""]
    kept = " (rows used, the field read as missing)"
    lines += [f"- {q['table']}: {q['reason']}: {q['rows']} rows{kept if q.get('field_only') else ''}"
              for q in report["quarantine"]] or ["- none"]
    if "reading" in report:
        lines += ["", *meds.render_reading(report["reading"])]
    lines += ["", "## Every raw row", "", "Each data row of each raw table is used, filtered (not the cohort's "
              "data) or quarantined, once: rows = used + filtered + quarantined.", "",
              "| table | rows | used | filtered | quarantined | unaccounted |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {a['table']} | {a['rows']} | {a['used']} | {sum(a['filtered'].values())} | "
              f"{sum(a['quarantined'].values())} | {a['unaccounted']} |" for a in report.get("accounts", [])]
    return "\n".join(lines) + "\n"


def log_dataset(out: Path, tracking, experiment: str) -> str:
    """One MLflow run for a prepared dataset: the funnel and split sizes as metrics, the windows as
    params, the report, its JSON and the missingness figure as artifacts (counts only: no
    identifiers, no dates)."""
    import mlflow

    from clintraj import disclosure
    from clintraj.tracking import owner_tags
    from clintraj.names import stage_run
    from clintraj.tasks import window_param

    out = Path(out)
    report = Dataset(out).report
    mlflow.set_tracking_uri(tracking.uri)
    with mlflow.start_run(experiment_id=tracking.experiment(experiment), tags=owner_tags(),
                          run_name=stage_run("dataset", report["dataset"])) as run:
        mlflow.set_tags({"dataset": report["dataset"], "stage": "dataset"})
        mlflow.log_params({"seed": report["config"]["seed"], "stays": report["stays"],
                           "lookback_hours": report["lookback_hours"],
                           **{f"prediction_hours.{t}": window_param(h) for t, h in report["windows"].items()}})
        for index, step in enumerate(report["funnel"]):
            mlflow.log_metric("funnel_remaining", step["remaining"], step=index)
            mlflow.log_metric("funnel_removed", step["removed"], step=index)
        mlflow.log_metrics({f"stays_{split}": n for split, n in report["splits"]["split_stays"].items()})
        mlflow.log_metrics({f"presence_{m}": share for m, share in report["presence_share"].items()})
        mlflow.log_metrics({f"task_stays_{t}": r["stays"] for t, r in report["tasks"].items()})
        mlflow.log_metric("quarantined_rows", sum(q["rows"] for q in report["quarantine"] if not q.get("field_only")))
        for name in ("report.md", "report.json", "missingness.png"):
            disclosure.log_artifact(mlflow.tracking.MlflowClient(), run.info.run_id, out / name, "dataset")
        return run.info.run_id
