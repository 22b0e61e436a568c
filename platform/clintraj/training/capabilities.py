"""What the sequential trainer's switches resolve to on this machine, and why.

Every GPU-only feature (Flash Attention 2, fast bf16, NCCL) is a config
switch. "auto" picks it where the machine has it; otherwise the trainer
runs the documented alternative and says so once, with the reason. An
explicit request the machine cannot honour is an error naming the fix,
never a silent change of results.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass
class Resolved:
    attention: str
    precision: str  # "bf16" | "fp32"
    backend: str  # torch.distributed backend of the Train workers
    notes: list[str] = field(default_factory=list)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32


def resolve(attention: str, precision: str, quantization: str, optimizer: str, deepspeed_stage: int,
            use_gpu: bool) -> Resolved:
    """Check the requested switches against this process's machine (call it on the worker)."""
    cuda = use_gpu and torch.cuda.is_available()
    notes = []
    flash = importlib.util.find_spec("flash_attn") is not None
    if attention == "auto":
        if cuda and flash:
            attention = "flash_attention_2"
        else:
            why = "no CUDA GPU" if not cuda else "the flash-attn package is not installed (the [gpu] extra builds it with nvcc)"
            attention = "sdpa"
            notes.append(f"Flash Attention 2 off: {why}; using PyTorch sdpa attention "
                         "(its flash kernel on unpadded batches, memory-efficient or cuDNN kernels on padded ones)")
    elif attention == "flash_attention_2" and not (cuda and flash):
        raise RuntimeError("attention 'flash_attention_2' needs a CUDA GPU and flash-attn (pip install "
                           "'clintraj[gpu]' on a CUDA host, nvcc required); or set attention: sdpa")
    if precision == "auto":
        if cuda and torch.cuda.is_bf16_supported():
            precision = "bf16"
        else:
            precision = "fp32"
            notes.append("bf16 off: " + ("the GPU has no bf16 support" if cuda else "no CUDA GPU")
                         + "; training in fp32")
    elif precision == "bf16" and not cuda:
        notes.append("bf16 requested on CPU: it runs, but slowly (no fast bf16 kernels)")
    if quantization == "nf4" or optimizer == "adamw8bit":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError("4-bit NF4 loading and 8-bit AdamW need bitsandbytes: pip install bitsandbytes, "
                               "or set quantization: none and optimizer: adamw")
        if not cuda:
            notes.append("4-bit NF4 weights / 8-bit AdamW on CPU: bitsandbytes' CPU backend (same math, slower)")
    if deepspeed_stage not in (0, 1, 2, 3):
        raise ValueError(f"deepspeed_stage must be 0 (off), 1, 2 or 3, got {deepspeed_stage}")
    if deepspeed_stage == 3 and quantization == "nf4":
        raise ValueError("DeepSpeed ZeRO-3 partitions parameters, and 4-bit bitsandbytes weights cannot be "
                         "partitioned (a long-standing PEFT/DeepSpeed/bitsandbytes failure): use "
                         "deepspeed_stage: 2 with quantization: nf4, or quantization: none for ZeRO-3")
    if deepspeed_stage == 3:
        raise ValueError("deepspeed_stage 3 is not supported here: LoRA trains a few million parameters, "
                         "which ZeRO-2 already shards; use deepspeed_stage: 2")
    backend = "nccl" if cuda else "gloo"
    if not cuda:
        notes.append("distributed backend gloo (no CUDA GPU for NCCL)")
    return Resolved(attention, precision, backend, notes)
