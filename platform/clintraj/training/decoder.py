"""The fine-tuned decoder of a sequential run, built and kept (paper appendix B.2): the backbone's
weights (4-bit NF4 when `quantization: nf4`), LoRA on its family's projections, the projection,
[PREDICT] embedding and head (`models.sequential.SequentialModel`); its checkpoints (the adapter,
head.pt, sequential.json), their exact reload, and the state a restarted worker resumes from.

A checkpoint holds the LoRA adapter (`adapter/`, for `PeftModel.from_pretrained`), `head.pt`
(projection with the training events' statistics it standardises with, [PREDICT] embedding,
head) and `sequential.json` (what rebuilds the base model, the
dtypes it computed in), never a copy of the base model; an epoch checkpoint adds
`trainer_state.json` and `best.pt` (the best epoch's trainable weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clintraj.tasks import task as task_named


@dataclass(frozen=True)
class SequenceFacts:
    """What the model and the loss need to know of a task's sequences (`artifacts.sequences` info)."""

    latent_dim: int
    out_features: int
    modalities: list[str]
    pos_weight: list[float] | None
    train_prevalence: list[float]
    # the training events' (mean, std) per latent feature, which the model standardises with
    event_stats: tuple[list[float], list[float]] | None = None

    @classmethod
    def of(cls, info: dict) -> "SequenceFacts":
        return cls(info["latent_dim"], info["out_features"], list(info["modalities"]), info["pos_weight"],
                   list(info["train_prevalence"]),
                   (info["event_mean"], info["event_std"]) if "event_mean" in info else None)  # older sequences: none


def weights_location(record) -> str:
    """`backbones.weights_location` of a config or a checkpoint's record (anything with backbone,
    weights, model_dir, tiny_root and weights_cache): the backbone's own "@source" or `weights`,
    written once when the source is materialised (tiny, packaged, random)."""
    from clintraj.models import backbones

    get = record.get if isinstance(record, dict) else lambda key, default=None: getattr(record, key, default)
    return backbones.weights_location(get("backbone"), get("weights"), get("model_dir"),
                                      Path(get("tiny_root")) if get("tiny_root") else None, get("weights_cache"))


def build_model(config, facts: SequenceFacts, runtime, device: torch.device | str):
    """Backbone (quantised or not) + LoRA + projection, [PREDICT] and head, on `device`, in train
    mode. `config`: a `training.sequential.SequentialTrainConfig`; `runtime`: its resolved switches."""
    from clintraj.models import backbones
    from clintraj.models.sequential import SequentialModel

    quantized = config.quantization == "nf4"
    base = backbones.load_backbone(weights_location(config), attention=runtime.attention,
                                   quantization=config.quantization, dtype=runtime.dtype,
                                   device_map={"": device} if quantized else None)
    if not quantized:
        base = base.to(device)
    peft_model = backbones.apply_lora(base, backbones.spec(config.backbone), r=config.lora_r, alpha=config.lora_alpha,
                                      dropout=config.lora_dropout, quantized=quantized,
                                      gradient_checkpointing=config.gradient_checkpointing)
    model = SequentialModel(peft_model, facts.latent_dim, base.config.hidden_size, facts.out_features,
                            facts.event_stats)
    if task_named(config.task).kind == "regression":  # start at the training mean of log(1 + hours), not 0 hours
        torch.nn.init.constant_(model.head.bias, float(np.mean(facts.train_prevalence)))
    # from_pretrained returns the decoder in eval mode, where transformers skips activation
    # checkpointing: without this the first epoch (until `predict` sets train mode) kept every
    # layer's activations.
    return place_small_modules(model, device).train()


def place_small_modules(model, device):
    """Move the projection, [PREDICT] embedding and head to `device`, never the backbone: a 4-bit
    backbone already sits on its device, and `.to()` on bitsandbytes weights may quantise them again."""
    for part in model.small_modules().values():
        if isinstance(part, torch.nn.Module):
            part.to(device)
    model.predict_embedding.data = model.predict_embedding.data.to(device)
    return model


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, model, config, facts: SequenceFacts, runtime) -> None:
    """adapter/ (PEFT), head.pt (projection, [PREDICT], head) and sequential.json."""
    directory = Path(directory)
    model.backbone.save_pretrained(directory / "adapter")
    torch.save({name: (part.detach().cpu() if isinstance(part, torch.Tensor) else part.state_dict())
                for name, part in model.small_modules().items()}, directory / "head.pt")
    record = {**{k: getattr(config, k) for k in ("backbone", "weights", "model_dir", "tiny_root", "weights_cache",
                                                 "quantization", "task")},
              "latent_dim": facts.latent_dim, "out_features": facts.out_features, "modalities": facts.modalities,
              "attention": runtime.attention, "precision": runtime.precision, "dtypes": float_dtypes(model)}
    (directory / "sequential.json").write_text(json.dumps(record, indent=2) + "\n")


def _parameter_group(name: str) -> str:
    return "trainable" if "lora_" in name or not name.startswith("backbone.") else "frozen"


def float_dtypes(model) -> dict[str, str]:
    """The dtype the trained model computed in, per group: "trainable" (LoRA, projection, [PREDICT],
    head) and "frozen" (the backbone's unquantised weights: norms, embeddings). k-bit preparation
    makes the frozen ones fp32, and DeepSpeed's bf16 mode casts both groups to bf16 (keeping fp32
    master copies in the optimizer): a reloaded model must compute in the same dtypes."""
    found = {}
    for name, parameter in model.named_parameters():
        if parameter.is_floating_point():
            found.setdefault(_parameter_group(name), str(parameter.dtype).removeprefix("torch."))
    return found


def cast_float_parameters(model, dtypes: dict[str, str]) -> None:
    for name, parameter in model.named_parameters():
        group = _parameter_group(name)
        if parameter.is_floating_point() and group in dtypes:
            parameter.data = parameter.data.to(getattr(torch, dtypes[group]))


def load_head_file(model, directory: Path) -> None:
    """Projection, [PREDICT] embedding and head from a checkpoint's head.pt, into `model`'s own tensors."""
    state = torch.load(Path(directory) / "head.pt", weights_only=True)
    model.projection.load_state_dict(state["projection"])
    model.head.load_state_dict(state["head"])
    model.predict_embedding.data.copy_(state["predict_embedding"])


def load_checkpoint(directory: Path, device: str = "cpu", attention: str | None = None):
    """(model, record) of a checkpoint: base weights + `PeftModel.from_pretrained(adapter)` + head.pt.
    `attention="eager"` for attention maps."""
    from peft import PeftModel

    from clintraj.models import backbones
    from clintraj.models.sequential import SequentialModel
    from clintraj.training.capabilities import Resolved

    directory = Path(directory)
    record = json.loads((directory / "sequential.json").read_text())
    dtype = Resolved("sdpa", record["precision"], "gloo").dtype
    quantized = record["quantization"] == "nf4"
    base = backbones.load_backbone(weights_location(record), attention=attention or record["attention"],
                                   quantization=record["quantization"], dtype=dtype,
                                   device_map={"": device} if quantized else None)
    peft_model = PeftModel.from_pretrained(base, directory / "adapter")
    model = SequentialModel(peft_model, record["latent_dim"], base.config.hidden_size, record["out_features"])
    load_head_file(model, directory)
    cast_float_parameters(model, record.get("dtypes", {}))
    if not quantized:
        model.backbone.to(device)
    return place_small_modules(model, device).eval(), record


def save_trainer_state(directory: Path, state: dict, best_state: dict[str, torch.Tensor]) -> None:
    (Path(directory) / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    torch.save(best_state, Path(directory) / "best.pt")


def resume(model, directory: Path) -> tuple[dict, dict] | None:
    """Load an epoch checkpoint's weights into `model` (adapter, head file); return its trainer state
    and the best epoch's weights, or None for a final checkpoint (nothing to resume)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / "trainer_state.json").is_file():
        return None
    set_peft_model_state_dict(model.backbone, load_file(directory / "adapter" / "adapter_model.safetensors"))
    load_head_file(model, directory)
    state = json.loads((directory / "trainer_state.json").read_text())
    return state, torch.load(directory / "best.pt", weights_only=True)
