"""Interpretation of fine-tuned sequential models (paper §3.6, §4.3, appendix D), per stay and
across the cohort.

Per stay: the final layer's attention of the full and the ablated sequence (one
modality removed), side by side, for one model or a contrastive / scratch pair
(the paper's Figures 4-5), the prediction after each event, each modality's share
of the last [PREDICT]'s attention and the sink. The stay's raw events go into
the output folder only (appendix D's table), never to logs.

Across the cohort (beyond the paper): for every test stay with the modality,
the change of the final prediction and of each modality's attention share when
it is removed, computed by Ray Data actors (each loads its model once),
summarised with quantiles, and, for a pair of models, a paired Wilcoxon test.

Each model reads the timelines it was trained on: a contrastive and a scratch run hold
the same stays and events, embedded by different encoders.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj.artifacts.dataset import Dataset
from clintraj.artifacts.sequences import Sequences
from clintraj.data import windows
from clintraj.evaluation import attention as attn
from clintraj import disclosure
from clintraj.storage import stage_in
from clintraj.training import decoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    """A fine-tuned model's checkpoint and the timelines it was trained on (its encoders' embeddings)."""

    checkpoint: Path
    sequences: Path


def same_test_stays(models: dict[str, Trained]) -> None:
    """Models compared stay by stay must hold the same test stays in the same order (rows are paired
    by index: stay ids never leave the work folder)."""
    import pyarrow.parquet as pq

    first, *others = [Sequences(m.sequences) for m in models.values()]
    stays = pq.read_table(first.file("test"), columns=["stay_id"]).column("stay_id")
    for other in others:
        if other.info["modalities"] != first.info["modalities"] or other.info["latent_dim"] != first.info["latent_dim"]:
            raise ValueError(f"the runs' timelines have different modalities or widths: {first.path}, {other.path}")
        if not pq.read_table(other.file("test"), columns=["stay_id"]).column("stay_id").equals(stays):
            raise ValueError(f"the runs' test splits hold different stays ({first.path}, {other.path}): "
                             "compare runs of the same dataset and task")


def _load(checkpoint: Path):
    model, record = decoder.load_checkpoint(checkpoint, attention="eager")
    return model, record


def _panel(model, row: dict, latent: int, names: list[str]) -> dict:
    attention, logits = attn.final_layer_attention(model, row, latent)
    labels = attn.position_labels(np.asarray(row["modality"][0]), names)
    times = np.asarray(row["time_hours"][0]) if "time_hours" in row else None
    return {"attention": attention, "logits": logits, "labels": labels, "times": times,
            "shares": attn.modality_shares(attention, labels), "sink": attn.attention_sink(attention, labels)}


def explain_stay(models: dict[str, Trained], stay_id: int, remove: str, out: Path) -> dict:
    """Figures and summary for one test stay; `models` maps a name (e.g. contrastive) to a model and
    its timelines."""
    same_test_stays(models)
    info = Sequences(next(iter(models.values())).sequences).info
    names, latent = info["modalities"], info["latent_dim"]
    if remove not in names:
        raise ValueError(f"unknown modality {remove!r}; the models know {names}")
    panels, summary, row = [], {"removed": remove, "models": {}}, None
    for name, trained in models.items():
        split = Sequences(trained.sequences).split("test")
        where = np.flatnonzero(split["stay_id"] == stay_id)
        if not len(where):
            raise ValueError(f"the stay asked for is not in the test split of {trained.sequences}")
        row = attn.stay_row(split, int(where[0]))
        if names.index(remove) not in np.asarray(row["modality"][0]):
            raise ValueError(f"the stay has no {remove} event to remove")
        summary["stay_index"] = int(where[0])
        model, _ = _load(trained.checkpoint)
        full = _panel(model, row, latent, names)
        cut = _panel(model, attn.remove_modality(row, names.index(remove), latent), latent, names)
        panels.append({"name": name, "full": full, "ablated": cut})
        summary["models"][name] = {
            "prediction_full": float(full["logits"][-1, 0]), "prediction_ablated": float(cut["logits"][-1, 0]),
            "shares_full": full["shares"], "shares_ablated": cut["shares"],
            "demographics_share_full": full["shares"].get("demographics", 0.0),
            "demographics_share_ablated": cut["shares"].get("demographics", 0.0),
            "sink_full": {"position": full["sink"][0], "modality": full["sink"][1], "weight": full["sink"][2]},
            "sink_ablated": {"position": cut["sink"][0], "modality": cut["sink"][1], "weight": cut["sink"][2]}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    label, index = float(np.asarray(row["y"][0])[0]), summary["stay_index"]
    attn.comparison_figure(panels, out / f"attention_stay{index}_{remove}.png", label, info["task"])
    for panel in panels:
        for variant in ("full", "ablated"):
            figure = attn.plt.figure(figsize=(7, 5))
            attn.heatmap(figure.gca(), panel[variant]["attention"], panel[variant]["labels"],
                         panel[variant]["times"], f"{panel['name']}: {variant}")
            figure.tight_layout()
            figure.savefig(out / f"heatmap_{panel['name']}_{variant}.png", dpi=100)
            attn.plt.close(figure)
    if info.get("dataset"):
        raw_events(info["dataset"], stay_id, names, info["task"]).to_csv(out / f"stay{index}_events.csv",
                                                                         index=False)
    else:
        log.warning("the timelines do not name their dataset: no raw events table")
    (out / "stay_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def raw_events(dataset: str, stay_id: int, names: list[str], task: str) -> pd.DataFrame:
    """The stay's events of every modality inside the task's window: what the model saw (appendix D's
    table); for the output folder only."""
    source = Dataset(dataset)
    window = source.task_cohort(task)
    window = window[window["stay_id"] == stay_id]
    frames = []
    for name in names:
        if name not in source.after_stay:
            events = source.events(name, stay_id)
            frames.append(events[windows.select(events, window)].assign(modality=name))
    return pd.concat(frames, ignore_index=True).sort_values(["time_hours", "modality"], kind="stable")


class AblateStays:
    """Ray Data actor: loads one model, then for each stay compares full and ablated inputs."""

    def __init__(self, checkpoint: str, sequences: str, remove: str):
        info = Sequences(sequences).info
        self.names, self.latent = info["modalities"], info["latent_dim"]
        self.remove = self.names.index(remove)
        self.split = Sequences(sequences).split("test")
        self.model, _ = _load(Path(checkpoint))

    def __call__(self, batch: dict) -> dict:
        rows = []
        for index in batch["index"]:
            row = attn.stay_row(self.split, int(index))
            full = _panel(self.model, row, self.latent, self.names)
            cut = _panel(self.model, attn.remove_modality(row, self.remove, self.latent), self.latent, self.names)
            record = {"index": int(index), "prediction_full": float(full["logits"][-1, 0]),
                      "prediction_ablated": float(cut["logits"][-1, 0]), "sink_full": full["sink"][1],
                      "sink_ablated": cut["sink"][1]}
            for name in [*self.names, attn.PREDICT]:
                record[f"share_full:{name}"] = full["shares"].get(name, 0.0)
                record[f"share_ablated:{name}"] = cut["shares"].get(name, 0.0)
            rows.append(record)
        return pd.DataFrame(rows)


def cohort(checkpoint: Path, sequences: Path, remove: str, actors: int = 1) -> pd.DataFrame:
    """Per test stay that has the modality: predictions and attention shares, full and ablated."""
    import ray.data

    info, split = Sequences(sequences).info, Sequences(sequences).split("test")
    index = info["modalities"].index(remove)
    having = [i for i, kinds in enumerate(split["modality"]) if index in np.asarray(kinds)]
    if not having:
        raise ValueError(f"no test stay has a {remove} event")
    frame = ray.data.from_items([{"index": i} for i in having]).map_batches(
        AblateStays, fn_constructor_kwargs={"checkpoint": str(checkpoint), "sequences": str(sequences),
                                            "remove": remove},
        batch_size=16, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=0.5,
    ).to_pandas().sort_values("index").reset_index(drop=True)
    frame["delta_prediction"] = frame["prediction_ablated"] - frame["prediction_full"]
    for name in [*info["modalities"], attn.PREDICT]:
        frame[f"delta_share:{name}"] = frame[f"share_ablated:{name}"] - frame[f"share_full:{name}"]
    return frame


def summarise(frames: dict[str, pd.DataFrame]) -> dict:
    """Mean and quantiles of the changes per model; for two models, paired Wilcoxon tests."""
    from scipy.stats import wilcoxon

    summary = {}
    for name, frame in frames.items():
        columns = ["delta_prediction", *[c for c in frame.columns if c.startswith("delta_share:")],
                   "share_full:demographics"] if "share_full:demographics" in frame else \
            ["delta_prediction", *[c for c in frame.columns if c.startswith("delta_share:")]]
        summary[name] = {"stays": len(frame), **{
            column: {"mean": float(frame[column].mean()),
                     **{f"q{int(q * 100)}": float(frame[column].quantile(q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}}
            for column in columns}}
    if len(frames) == 2:
        (a, first), (b, second) = frames.items()
        paired = first.merge(second, on="index", suffixes=(f"@{a}", f"@{b}"))
        tests = {}
        for column in ("delta_prediction", "share_full:demographics"):
            left, right = paired.get(f"{column}@{a}"), paired.get(f"{column}@{b}")
            if left is None or (left - right).abs().sum() == 0:
                continue
            values = (left.abs(), right.abs()) if column == "delta_prediction" else (left, right)
            statistic, p = wilcoxon(*values)
            tests[column] = {"pairs": len(paired), "median_difference": float((values[0] - values[1]).median()),
                             "statistic": float(statistic), "p_value": float(p)}
        summary["paired_wilcoxon"] = {"models": [a, b], **tests}
    return summary


def cohort_figure(frames: dict[str, pd.DataFrame], remove: str, path: Path) -> Path:
    """Distributions of the prediction change and of the demographics share change per model."""
    figure, (left, right) = attn.plt.subplots(1, 2, figsize=(10, 4))
    names = list(frames)
    left.boxplot([frames[n]["delta_prediction"] for n in names], tick_labels=names)
    left.axhline(0, color="k", lw=0.8)
    left.set(title=f"change of the final logit when {remove} is removed", ylabel="ablated - full")
    column = "delta_share:demographics"
    if all(column in frames[n] for n in names):
        right.boxplot([frames[n][column] for n in names], tick_labels=names)
        right.axhline(0, color="k", lw=0.8)
    right.set(title="change of the demographics attention share", ylabel="ablated - full")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    attn.plt.close(figure)
    return path


def run(tracking, run_id: str, compare_run_id: str | None, remove: str, out: Path, workdir: Path,
        stay_id: int | None = None, whole_cohort: bool = False) -> dict:
    """Explain one test stay and/or the whole test cohort of a backbone-sweep trial (and its twin
    with the other initialisation), write everything under `out` and log it to the runs'
    MLflow artifacts ("interpretation/"). Returns {"stay": summary, "cohort": summary} (those run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.uri)
    runs = [client.get_run(r) for r in (run_id, compare_run_id) if r]
    # a checkpoint in cluster run storage (s3://...) is copied once under workdir/staged
    models = {run.data.tags.get("initialisation", run.info.run_id):
              Trained(stage_in(run.data.tags["checkpoint"], Path(workdir) / "staged"), Path(run.data.params["sequences"]))
              for run in runs}
    if len(models) < len(runs):
        raise ValueError("the two runs have the same initialisation; compare a contrastive and a scratch run")
    same_test_stays(models)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    if stay_id is not None:
        results["stay"] = explain_stay(models, stay_id, remove, out / "stay")
    if whole_cohort:
        frames = {name: cohort(trained.checkpoint, trained.sequences, remove) for name, trained in models.items()}
        for name, frame in frames.items():
            frame.to_csv(out / f"cohort_{name}.csv", index=False)
        results["cohort"] = summarise(frames)
        (out / "cohort_summary.json").write_text(json.dumps(results["cohort"], indent=2) + "\n")
        cohort_figure(frames, remove, out / "cohort.png")
    # the stay's events table (its notes, image paths, times) is for the output folder only
    local_only = tuple(str(p.relative_to(out)) for p in out.glob("stay/stay*_events.csv"))
    for run in runs:
        disclosure.log_artifacts(client, run.info.run_id, out, "interpretation", local_only=local_only)
    return results
