"""Frozen encoders turn every stay into one embedding per modality (the static view).

A Ray Data pipeline: the stay table, the tokenisation / image map stages
(no augmentation), then `EmbedStays` in an actor pool, so each actor builds
the encoders once (on a GPU when the pool asks for one). An absent modality
gets the learned missing token. "contrastive" encoders come from an MGA
checkpoint; "scratch" encoders are the same architecture randomly
initialised with a recorded seed. `embeddings.json` records which.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from clintraj.config import from_dict
from clintraj.data.stay_inputs import collate
from clintraj.training import pretrain
from clintraj.workflows.pretrain import prepare_inputs

log = logging.getLogger(__name__)


class EmbedStays:
    """Ray Data actor: builds the encoders once, then embeds batches of stays."""

    def __init__(self, meta: dict, config: dict, checkpoint: str | None, seed: int, use_gpu: bool):
        import torch

        torch.manual_seed(seed)
        self.device = "cuda" if use_gpu else "cpu"
        model = pretrain.load_model(Path(checkpoint), meta, config) if checkpoint else pretrain.build_model(meta, config)
        self.model = model.to(self.device).eval()
        self.meta = meta

    def __call__(self, batch: dict) -> dict:
        import torch

        from clintraj.models.mga import embed

        tensors = {k: (v.float() if v.dtype == torch.float64 else v).to(self.device)
                   for k, v in collate(batch, self.meta["feature_dims"]).items()}
        h, present = embed(self.model, tensors)
        out = {"stay_id": np.asarray(batch["stay_id"]), "split": np.asarray(batch["split"]),
               "present": present.cpu().numpy()}
        for index, name in enumerate(self.meta["modalities"]):
            out[f"{name}.h"] = h[:, index].float().cpu().numpy()
        return out


def run(dataset: Path, out: Path, encoders: str, workdir: Path, config: pretrain.PretrainConfig | None = None,
        seed: int = 0, actors: int = 1, use_gpu: bool = False) -> dict:
    """Embed every stay of `dataset` with `encoders` ("scratch" or an MGA checkpoint folder)."""
    checkpoint = None if encoders == "scratch" else str(Path(encoders).resolve())
    if checkpoint:
        saved = json.loads((Path(checkpoint) / "config.json").read_text())
        config = from_dict(pretrain.PretrainConfig, {k: v for k, v in saved.items()
                                                     if k in pretrain.PretrainConfig.__dataclass_fields__})
        text_model = json.loads((Path(checkpoint) / "meta.json").read_text()).get("text_model")
        config.text_model = text_model or config.text_model
    config = config or pretrain.PretrainConfig()
    inputs_dir, meta = prepare_inputs(Path(dataset), Path(workdir).resolve(), config, image_root=None)
    model_config = {**asdict(config), "text_max_length": config.inputs.text_max_length}
    model_config.pop("inputs")
    splits = pretrain.datasets(inputs_dir, meta, config, splits=("train", "val", "test"), augment=False)
    stays = splits["train"].union(splits["val"], splits["test"])
    embedded = stays.map_batches(
        EmbedStays, fn_constructor_kwargs={"meta": meta, "config": model_config, "checkpoint": checkpoint,
                                           "seed": seed, "use_gpu": use_gpu},
        batch_size=256, concurrency=actors, num_gpus=1 if use_gpu else 0, num_cpus=0.5)
    out = Path(out)
    embedded.write_parquet(str(out / "static"))
    record = {"encoders": "contrastive" if checkpoint else "scratch", "checkpoint": checkpoint,
              "seed": None if checkpoint else seed, "dataset": str(Path(dataset).resolve()),
              "modalities": meta["modalities"], "latent_dim": config.latent_dim}
    (out / "embeddings.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("embedded the stays of %s with %s encoders into %s", dataset, record["encoders"], out)
    return record


def read_static(out: Path):
    """(frame with stay_id, split, present, <m>.h columns; the record) of an embedding folder."""
    import pandas as pd

    out = Path(out)
    frame = pd.read_parquet(out / "static").sort_values("stay_id", kind="stable").reset_index(drop=True)
    return frame, json.loads((out / "embeddings.json").read_text())
