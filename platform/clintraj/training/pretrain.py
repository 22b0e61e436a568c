"""Masked Global Alignment pretraining on Ray Train (DDP), fed by Ray Data, recorded in MLflow.

Every epoch each worker trains on its shard (`train_epoch`), the validation MGA loss and the
validation retrieval score (`val_recall_at_10`: mean Recall@10 within pools of a fixed number
of stays, comparable across batch sizes and losses, which the sweeps select by) are summed over
all workers (`validate`), and rank 0 saves a checkpoint (model, optimizer, epoch, early-stopping
state). Ray Train keeps the best checkpoints by validation loss and, when a worker dies,
restarts the group from the last checkpoint, so no epoch is counted twice. Early stopping
follows appendix B.2: patience 10 on the validation MGA loss.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from clintraj.config import from_dict, to_dict
from clintraj.data.images import EpochAugment
from clintraj.data.stay_inputs import InputConfig, StayCollate, decodes_images, with_map_stages
from clintraj.metrics.retrieval import pooled_recall
from clintraj.models.mga import mga_loss
from clintraj.storage import join, list_dirs, read_text
from clintraj.training.loop import (Prefetch, TimedBatches, dataset_shard, is_rank_zero, make_trainer, prepare_model,
                                    report, resume_state, save_state, trains_in_process)

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    latent_dim: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    epochs: int = 100
    patience: int = 10
    modality_dropout: float = 0.2
    missing_tokens_in_context: bool = True  # METHOD.md §1 ambiguity A: the tokens sit in the centroids, so they learn
    retrieval_pool: int = 128  # val_recall_at_10 is the mean Recall@10 within pools of this many validation stays
    text_model: str | None = None  # a BERT-family dir or hub id, or "tiny"; None: the offline MiniLM, else tiny
    image_weights: str | None = None  # ImageNet state_dict of the CNN; None: random init (said once)
    image_arch: str = "resnet18"
    num_workers: int = 2  # a Tune trial's 1 CPU worker is the trial's own process (loop.trains_in_process)
    cpus_per_worker: float = 0.5  # fractional: leaves CPUs to Ray Data's map stages
    use_gpu: bool = False
    max_failures: int = 2  # worker failures Ray Train recovers from (in process: Tune's retries of the trial)
    seed: int = 0
    inputs: InputConfig = field(default_factory=InputConfig)


@dataclass(frozen=True)
class PretrainRun:
    """What a worker needs: the config and the inputs' description (`data.stay_inputs.input_meta`)."""

    config: PretrainConfig
    meta: dict


def build_model(meta: dict, config: PretrainConfig):
    from clintraj.models.encoders import build_encoders
    from clintraj.models.mga import MGAModel

    encoders = build_encoders(meta["dataset"], meta["feature_dims"], config.latent_dim,
                              text_model=meta.get("text_model") or config.text_model,
                              image_weights=config.image_weights, image_arch=config.image_arch,
                              text_max_length=config.inputs.text_max_length, kinds=meta.get("modality_kinds"))
    return MGAModel(encoders, meta["modalities"], config.latent_dim, modality_dropout=config.modality_dropout,
                    missing_tokens_in_context=config.missing_tokens_in_context)


def train_epoch(model, optimizer, batches, config: PretrainConfig,
                augment=None) -> tuple[torch.Tensor, float, float]:
    """One pass over the training batches (each through `augment` first, when given: this epoch's
    image augmentations, `data.images.EpochAugment`): (loss sum, batches, empty batches, stays), sums
    that add up across workers; and this worker's seconds waiting for the next batch, and in all."""
    model.train()
    totals, timed = torch.zeros(4), TimedBatches(batches)
    for batch in timed:
        out = model(augment(batch) if augment else batch)
        loss, info = mga_loss(out["z"], out["present"], out["tau"], config.missing_tokens_in_context)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals += torch.tensor([loss.item(), 1.0, float(info.get("empty_batch", False)), len(batch["present"])])
    return totals, timed.waited, timed.elapsed


def validate(model, batches, config: PretrainConfig) -> torch.Tensor:
    """(loss sum over non-empty batches, their count, pooled Recall@10 sum, pools) of the validation
    batches, in eval mode (no modality dropout): sums that add up across workers."""
    model.eval()
    val = torch.zeros(4)
    zs, presents = [], []
    with torch.no_grad():
        for batch in batches:
            out = model(batch)
            loss, info = mga_loss(out["z"], out["present"], out["tau"], config.missing_tokens_in_context)
            if not info.get("empty_batch", False):
                val += torch.tensor([loss.item(), 1.0, 0.0, 0.0])
            zs.append(out["z"].cpu())
            presents.append(out["present"].cpu())
    if zs:
        val[2:] = torch.tensor(pooled_recall(torch.cat(zs), torch.cat(presents), 10, config.retrieval_pool))
    return val


def save(directory: Path, model, optimizer, state: dict, run: PretrainRun) -> None:
    """model.pt + optimizer.pt + state.json, and the model's config and input description
    (config.json, meta.json), so a checkpoint folder alone rebuilds the encoders."""
    save_state(directory, model, optimizer, state)
    (directory / "meta.json").write_text(json.dumps(run.meta))
    (directory / "config.json").write_text(json.dumps(to_dict(run.config)))


def train_loop(args: dict) -> None:
    """Ray Train worker loop of a `PretrainRun`."""
    import torch.distributed as dist

    run: PretrainRun = args["run"]
    config, meta = run.config, run.meta
    torch.manual_seed(config.seed)
    model = build_model(meta, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stopping, first = resume_state(model, optimizer, "min", config.patience)
    # An absent modality's encoder is not run, so some parameters get no gradient in a step.
    model = prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
    batches = StayCollate(meta["feature_dims"])
    augment = EpochAugment(config.inputs, config.seed)

    def epoch_batches(split: str) -> Prefetch:
        """The split's batches for one epoch, their pipeline started now (while the previous epoch
        is scored and saved; the validation split's while this epoch trains)."""
        return Prefetch(lambda: dataset_shard(split).iter_torch_batches(
            batch_size=config.batch_size, collate_fn=batches))

    upcoming = epoch_batches("train")
    for epoch in range(first, config.epochs):
        val_batches = epoch_batches("val")
        totals, waited, elapsed = train_epoch(model, optimizer, upcoming, config, partial(augment, epoch=epoch))
        if epoch + 1 < config.epochs:
            upcoming = epoch_batches("train")
        val = validate(model, val_batches, config)
        if dist.is_initialized():
            dist.all_reduce(totals)
            dist.all_reduce(val)
        val_loss = float(val[0] / val[1]) if val[1] > 0 else math.inf
        stopping.update(val_loss, epoch)
        module = model.module if hasattr(model, "module") else model
        metrics = {"epoch": epoch, "train_loss": float(totals[0] / max(totals[1], 1)), "val_loss": val_loss,
                   "val_recall_at_10": float(val[2] / val[3]) if val[3] > 0 else float("nan"),
                   "tau": module.tau.item(), "empty_batches": int(totals[2]), "stale_epochs": stopping.stale,
                   "train_samples_per_s": float(totals[3]) / max(elapsed, 1e-9),
                   "data_wait_share": waited / max(elapsed, 1e-9)}
        state = {"epoch": epoch, "val_loss": val_loss, "stopping": stopping.state()}
        report(metrics, partial(save, model=model, optimizer=optimizer, state=state, run=run) if is_rank_zero()
               else None)
        if stopping.stop:
            break


def datasets(inputs_dir: Path, meta: dict, config: PretrainConfig, splits=("train", "val"),
             augment: bool = True, hold: bool = True) -> dict:
    """Ray Datasets of the stay table; tokenisation and image decoding run as Ray Data map stages
    (images of the training split augmented when `augment`). `hold`: each split held in the object
    store for the epochs that read it again (below); off for a split read once."""
    import ray.data

    out = {}
    for split in splits:
        rows = ray.data.read_parquet(str(Path(inputs_dir) / split))
        augmented = augment and split == "train"
        staged = with_map_stages(rows, meta, config.inputs, augment=augmented)
        # Rows in the same order every run, so the same batches: by default the map stages' blocks
        # come out as they finish, and two seeded runs differed after one epoch.
        staged.context.execution_options.preserve_order = True
        # Each split's output is the same every epoch (the training images' augmentations are drawn
        # in the worker, `data.images.EpochAugment`), so it is held once in the object store and each
        # epoch reads its blocks, instead of starting a Ray Data execution and its actors: MIMIC-IV's
        # demo epochs waited 71% of their time for that (bench/README). Streamed only where its
        # images would take over half the object store.
        held = hold and fits_object_store(rows, meta, config, augmented)
        out[split] = staged.materialize() if held else staged
    return out


def fits_object_store(rows, meta: dict, config: PretrainConfig, augmented: bool = False) -> bool:
    """Whether a split's decoded images, one per row at most, take at most half of the cluster's
    object store (float32 3 x crop x crop; for `augmented` training rows, uint8 3 x resize x resize,
    `data.images.LoadImages`); a split without images always does."""
    import ray

    if not decodes_images(rows, meta):
        return True
    stays = rows.count()
    image_bytes = stays * 3 * (config.inputs.image_resize ** 2 if augmented else config.inputs.image_crop ** 2 * 4)
    fits = image_bytes <= ray.cluster_resources().get("object_store_memory", 0) / 2
    if not fits:
        log.info("the %s stays' decoded images (%.1f GB) would take over half the object store: streamed "
                 "and decoded anew each epoch", stays, image_bytes / 1e9)
    return fits


def trainer(inputs_dir: Path, meta: dict, config: PretrainConfig, storage: str | Path, name: str,
            tracking_uri: str | None = None, mlflow_run_id: str | None = None, callbacks=(), tune: bool = False):
    """The trainer of one pretraining run (used alone, or as a Tune trial when `tune`: then in the
    trial's process with one CPU worker, `loop.trains_in_process`); checkpoints go under `storage`,
    a folder or a URI (`clintraj.storage.storage_path`)."""
    return make_trainer(train_loop, PretrainRun(config, meta), name=name, storage=storage,
                        datasets=datasets(inputs_dir, meta, config), workers=config.num_workers,
                        cpus_per_worker=config.cpus_per_worker, use_gpu=config.use_gpu,
                        max_failures=config.max_failures, keep=3, score=("val_loss", "min"),
                        tracking_uri=tracking_uri, mlflow_run_id=mlflow_run_id, callbacks=callbacks, tune=tune,
                        in_process=trains_in_process(config, tune))


def best_checkpoint(result):
    """(checkpoint, metrics) with the lowest validation MGA loss."""
    return min(result.best_checkpoints, key=lambda pair: pair[1]["val_loss"])


def best_saved_checkpoint(run_dir: str | Path) -> dict | None:
    """The lowest-validation-loss checkpoint saved under a TorchTrainer run folder (local or a URI),
    read from the checkpoints themselves (so it works for runs a Tune scheduler stopped early)."""
    saved = [{"checkpoint": str(checkpoint), **json.loads(state)}
             for checkpoint in list_dirs(run_dir, "checkpoint_")
             for state in [read_text(join(checkpoint, "state.json"))] if state is not None]
    return min(saved, key=lambda s: s["val_loss"]) if saved else None


def saved_config(checkpoint_dir: Path) -> PretrainConfig:
    """The config a checkpoint was trained with (its text model: the one it used)."""
    checkpoint_dir = Path(checkpoint_dir)
    saved = json.loads((checkpoint_dir / "config.json").read_text())
    config = from_dict(PretrainConfig, {k: v for k, v in saved.items() if k in PretrainConfig.__dataclass_fields__},
                       str(checkpoint_dir / "config.json"))
    text_model = json.loads((checkpoint_dir / "meta.json").read_text()).get("text_model")
    config.text_model = text_model or config.text_model
    return config


def load_model(checkpoint_dir: Path, meta: dict | None = None, config: PretrainConfig | None = None):
    """The MGA model of a checkpoint folder (its own meta.json / config.json unless given)."""
    checkpoint_dir = Path(checkpoint_dir)
    meta = meta or json.loads((checkpoint_dir / "meta.json").read_text())
    model = build_model(meta, config or saved_config(checkpoint_dir))
    model.load_state_dict(torch.load(checkpoint_dir / "model.pt", weights_only=True))
    return model.eval()
