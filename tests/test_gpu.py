"""The GPU path for real: capability checks on CUDA, and QLoRA (4-bit NF4 weights on the GPU,
LoRA, bitsandbytes' CUDA 8-bit AdamW) under DeepSpeed ZeRO-2 over NCCL in bf16, learning a
planted signal and reloading exactly. CI has no GPU: these skip there, saying so; on a GPU
host run them with `pytest -m gpu` (Ray is not needed: the process group is made here, as
Ray Train makes it on each worker)."""

from __future__ import annotations

import importlib.util
import os
import socket

import numpy as np
import pytest
import torch

from clintraj.artifacts.sequences import Sequences
from clintraj.data.sequences import bucketed, collate
from clintraj.metrics.prediction import binary_metrics
from clintraj.training import capabilities, decoder
from clintraj.training import sequential as seq
from planted import LATENT, write_planted

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (CI has none)")]
FLASH = importlib.util.find_spec("flash_attn") is not None


def test_auto_switches_pick_the_gpu_path_and_say_what_is_off():
    runtime = capabilities.resolve("auto", "auto", "nf4", "adamw8bit", 2, use_gpu=True)
    assert runtime.backend == "nccl"
    assert runtime.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    if FLASH:
        assert runtime.attention == "flash_attention_2" and not any("Flash" in n for n in runtime.notes)
    else:
        assert runtime.attention == "sdpa"
        assert any("flash-attn package is not installed" in note for note in runtime.notes)
        with pytest.raises(RuntimeError, match="flash-attn"):
            capabilities.resolve("flash_attention_2", "auto", "nf4", "adamw8bit", 2, use_gpu=True)
    assert not any("CPU" in note for note in runtime.notes)


@pytest.fixture
def nccl_group():
    """A one-process NCCL group, as Ray Train's TorchConfig(backend="nccl") makes on each worker."""
    import torch.distributed as dist

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
    yield
    dist.destroy_process_group()


def test_qlora_under_deepspeed_zero2_on_nccl_learns_and_reloads_exactly(tmp_path, nccl_group):
    sequences = write_planted(tmp_path / "sequences")
    facts = decoder.SequenceFacts.of(Sequences(sequences).info)
    config = seq.SequentialTrainConfig(
        task="mortality", backbone="llama3-8b", weights="tiny", tiny_root=str(tmp_path / "tiny"),
        quantization="nf4", optimizer="adamw8bit", deepspeed_stage=2, use_gpu=True, batch_size=16, lr=2e-3,
        modality_dropout=0.1)
    runtime = capabilities.resolve(config.attention, config.precision, config.quantization, config.optimizer,
                                   config.deepspeed_stage, use_gpu=True)
    device = torch.device("cuda", 0)
    torch.manual_seed(0)
    model = decoder.build_model(config, facts, runtime, device)
    four_bit = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    assert four_bit and all(m.weight.device.type == "cuda" and m.weight.dtype == torch.uint8 for m in four_bit)

    forward, step = seq.distribute(model, seq.make_optimizer(model, config), config, runtime, world=1)
    assert type(forward).__name__ == "DeepSpeedEngine" and forward.zero_optimization_stage() == 2
    assert forward.bfloat16_enabled() == (runtime.precision == "bf16")
    pos_weight = torch.tensor(facts.pos_weight, device=device)
    train = Sequences(sequences).split("train")
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(3):
        for batch in bucketed([train], config.batch_size, shuffle=True, rng=rng):
            loss = seq.training_loss(forward, collate(batch, LATENT, config.modality_dropout, rng, device),
                                     config, pos_weight)
            step(loss)
            losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    # bitsandbytes' 8-bit state lives under ZeRO's fp32 partitions, on the GPU
    inner = forward.optimizer.optimizer
    states = [s for s in inner.state.values() if "state1" in s]
    assert states and all(s["state1"].dtype == torch.uint8 and s["state1"].is_cuda for s in states)

    test = Sequences(sequences).split("test")
    predictions = seq.predict(model, bucketed([test], 16, shuffle=False), LATENT, device)
    auroc = binary_metrics(*seq.outputs(predictions))["auroc"]
    print(f"GPU QLoRA + ZeRO-2 ({runtime.attention}, {runtime.precision}): test AUROC {auroc:.3f}, "
          f"loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}")
    assert auroc >= 0.7

    decoder.save_checkpoint(tmp_path / "checkpoint", model, config, facts, runtime)
    reloaded, record = decoder.load_checkpoint(tmp_path / "checkpoint", device="cuda")
    assert (record["attention"], record["precision"]) == (runtime.attention, runtime.precision)
    again = seq.predict(reloaded, bucketed([test], 16, shuffle=False), LATENT, device)
    first, second = np.stack(predictions["output"]), np.stack(again["output"])
    print("reload max |difference|:", float(np.abs(first - second).max()))
    assert np.array_equal(first, second)


def test_attention_kernels_agree_on_a_padded_batch(tmp_path):
    """sdpa (and Flash Attention 2 where installed) against eager attention, bf16, with padding."""
    from clintraj.models import backbones

    location = backbones.weights_location("llama3-8b", "tiny", tiny_root=tmp_path / "tiny")
    torch.manual_seed(0)
    hidden = backbones.tiny_config("llama3-8b").hidden_size
    embeds = torch.randn(4, 24, hidden, device="cuda", dtype=torch.bfloat16)
    mask = torch.ones(4, 24, dtype=torch.long, device="cuda")
    mask[1, 17:], mask[3, 5:] = 0, 0
    outputs = {}
    for attention in ["eager", "sdpa"] + (["flash_attention_2"] if FLASH else []):
        model = backbones.load_backbone(location, attention=attention, dtype=torch.bfloat16).to("cuda").eval()
        with torch.no_grad():
            outputs[attention] = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state.float()
    kept = mask.bool()
    for attention, out in outputs.items():
        difference = (out - outputs["eager"])[kept].abs().max().item()
        print(f"{attention} vs eager: max |difference| {difference:.4f}")
        assert difference < 0.05
