"""Decoder backbones on tiny stand-ins: real config classes, LoRA targets per family, LoRA and
QLoRA steps on inputs_embeds, adapter round trip, and the weights-location errors."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch
from torch import nn

from clintraj.models import backbones
from clintraj.models.backbones import (
    BACKBONES, apply_lora, load_backbone, materialise_tiny, spec, tiny_config, weights_location,
    wrapped_modules,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

NAMES = list(BACKBONES)
MODEL_TYPE = {"llama": "llama", "mistral": "mistral", "phi3": "phi3"}
CONFIG_CLASS = {"llama": "LlamaConfig", "mistral": "MistralConfig", "phi3": "Phi3Config"}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-backbones")


def batch(seed: int = 0, size: int = 4, length: int = 8):
    """A fixed inputs_embeds batch (last two positions of row 0 padded) and a regression target."""
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(size, length, 64, generator=generator)
    mask = torch.ones(size, length, dtype=torch.long)
    mask[0, -2:] = 0
    target = torch.randn(size, 4, generator=generator)
    return embeds, mask, target


def regression_loss(model, head, embeds, mask, target):
    hidden = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    return nn.functional.mse_loss(head(hidden.mean(dim=1)), target)


def lora_names(model) -> set[str]:
    return {name for name, _ in model.named_parameters() if "lora_" in name}


def base_snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" not in name}


def test_every_family_branch_below_has_a_backbone():
    """The family-specific asserts below run only for backbones of that family: each has one."""
    assert {spec(name).family for name in NAMES} == set(MODEL_TYPE)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_backbone_loads_with_its_family_and_lora_targets(name, tiny_root):
    backbone = spec(name)
    folder = materialise_tiny(name, tiny_root)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["model_type"] == MODEL_TYPE[backbone.family]
    assert type(tiny_config(name)).__name__ == CONFIG_CLASS[backbone.family]

    model = load_backbone(str(folder))
    assert type(model.config).__name__ == CONFIG_CLASS[backbone.family]
    assert not hasattr(model, "lm_head")  # the base decoder: we read hidden states
    assert model.config.hidden_size == 64 and model.config.vocab_size == 256
    expected_theta = {"llama3-8b": 500000.0, "smollm2-135m": 100000.0}.get(name, 10000.0)
    assert model.config.rope_parameters["rope_theta"] == expected_theta
    if backbone.family == "mistral":
        assert model.config.sliding_window == 4096

    leaf_names = {module_name.rsplit(".", 1)[-1] for module_name, _ in model.named_modules()}
    if backbone.family == "phi3":  # fused projections: the paper's names would match nothing
        assert {"qkv_proj", "gate_up_proj"} <= leaf_names
        assert not {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"} & leaf_names

    peft_model = apply_lora(model, backbone)
    assert wrapped_modules(peft_model) == set(backbone.lora_targets)


@pytest.mark.parametrize("name", NAMES)
def test_lora_steps_train_only_adapters(name, tiny_root):
    torch.manual_seed(0)
    model = apply_lora(load_backbone(str(materialise_tiny(name, tiny_root))), spec(name))
    assert model.get_base_model().is_activation_checkpointing  # non-reentrant, on inputs_embeds
    model.train()
    head = nn.Linear(64, 4)
    embeds, mask, target = batch()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == lora_names(model) and trainable
    before_base = base_snapshot(model)
    before_lora = {n: p.detach().clone() for n, p in model.named_parameters() if n in trainable}
    assert before_base and before_lora  # the all() checks below compare something

    optimizer = torch.optim.AdamW([*(p for p in model.parameters() if p.requires_grad), *head.parameters()], lr=1e-2)
    losses = []
    for step in range(8):
        optimizer.zero_grad()
        loss = regression_loss(model, head, embeds, mask, target)
        loss.backward()
        if step == 0:
            with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
            assert with_grad == trainable
            assert all(p.grad is not None for p in head.parameters())
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < losses[0], losses
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], w) for n, w in before_base.items())
    assert all(not torch.equal(after[n], w) for n, w in before_lora.items())


def test_qlora_nf4_steps_on_llama(tiny_root):
    import bitsandbytes as bnb

    torch.manual_seed(0)
    model = load_backbone(str(materialise_tiny("llama3-8b", tiny_root)), quantization="nf4")
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 2 * 7  # 2 layers x q,k,v,o,gate,up,down
    model = apply_lora(model, spec("llama3-8b"), quantized=True)
    assert wrapped_modules(model) == set(spec("llama3-8b").lora_targets)
    model.train()
    head = nn.Linear(64, 4)
    embeds, mask, target = batch()
    before_base = base_snapshot(model)
    before_lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert before_base and before_lora and set(before_lora) == lora_names(model)

    optimizer = bnb.optim.AdamW8bit([*(p for p in model.parameters() if p.requires_grad), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = regression_loss(model, head, embeds, mask, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    after = dict(model.named_parameters())
    assert all(torch.isfinite(after[n]).all() for n in before_lora)
    changed = any(not torch.equal(after[n], w) for n, w in before_lora.items())
    assert losses[-1] < losses[0] or changed, losses
    assert all(torch.equal(after[n], w) for n, w in before_base.items())


@pytest.mark.parametrize("name", ["llama3-8b", "phi3-mini"])
def test_adapter_round_trip(name, tiny_root, tmp_path):
    from peft import PeftModel

    location = str(materialise_tiny(name, tiny_root))
    model = apply_lora(load_backbone(location), spec(name))
    with torch.no_grad():  # a fresh adapter is the identity (lora_B = 0): make it matter
        for parameter_name, parameter in model.named_parameters():
            if "lora_B" in parameter_name:
                parameter.normal_(std=0.05)
    model.eval()
    embeds, mask, _ = batch(seed=1)
    with torch.no_grad():
        expected = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        with model.disable_adapter():
            plain = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    assert not torch.allclose(expected, plain)

    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_backbone(location), tmp_path / "adapter")
    reloaded.eval()
    assert wrapped_modules(reloaded) == set(spec(name).lora_targets)
    with torch.no_grad():
        actual = reloaded(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    assert torch.equal(actual, expected)


def test_apply_lora_names_targets_that_match_nothing(tiny_root):
    phi3 = load_backbone(str(materialise_tiny("phi3-mini", tiny_root)))
    # Llama's unfused names on Phi-3: o_proj and down_proj match, so peft itself stays silent
    with pytest.raises(ValueError, match="q_proj") as error:
        apply_lora(phi3, spec("llama3-8b"), gradient_checkpointing=False)
    assert "gate_proj" in str(error.value) and "o_proj" not in str(error.value)


def test_materialise_tiny_is_idempotent(tiny_root):
    folder = materialise_tiny("mistral-7b", tiny_root)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {"config.json", "model.safetensors"} <= set(stamps)
    assert materialise_tiny("mistral-7b", tiny_root) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert not [p for p in tiny_root.iterdir() if p.name.startswith(".")]  # no staging left over


def test_materialise_tiny_loses_a_race_cleanly(tmp_path, monkeypatch):
    """Another worker renames its copy into place first: ours is dropped, theirs returned."""
    real_rename = backbones.os.rename
    lost = []

    def rival_wins(source, destination):
        shutil.copytree(source, destination)
        try:
            real_rename(source, destination)  # raises: the destination is a non-empty folder
        except OSError:
            lost.append(destination)
            raise

    monkeypatch.setattr(backbones.os, "rename", rival_wins)
    folder = materialise_tiny("deepseek-7b", tmp_path)
    assert lost == [tmp_path / "deepseek-7b"]  # the race happened: our rename failed against theirs
    assert folder == tmp_path / "deepseek-7b" and (folder / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["deepseek-7b"]


def test_weights_location(tiny_root, tmp_path, monkeypatch):
    assert weights_location("meditron-7b", "hub") == "epfl-llm/meditron-7b"
    assert weights_location("meditron-7b", "tiny", tiny_root=tiny_root) == str(tiny_root / "meditron-7b")

    monkeypatch.delenv(backbones.MODEL_DIR_ENV, raising=False)
    with pytest.raises(ValueError, match="CLINTRAJ_MODEL_DIR"):
        weights_location("llama3-8b", "local")
    with pytest.raises(FileNotFoundError, match="CLINTRAJ_MODEL_DIR") as error:
        weights_location("llama3-8b", "local", model_dir=tmp_path)
    assert str(tmp_path / "llama3-8b") in str(error.value)
    (tmp_path / "llama3-8b").mkdir()
    monkeypatch.setenv(backbones.MODEL_DIR_ENV, str(tmp_path))
    assert weights_location("llama3-8b", "local") == str(tmp_path / "llama3-8b")

    with pytest.raises(ValueError, match="unknown weights source"):
        weights_location("llama3-8b", "s3")
    with pytest.raises(ValueError, match="llama3-8b.*mistral-7b.*meditron-7b"):
        weights_location("gpt-5", "hub")
    with pytest.raises(ValueError, match="phi3-mini"):
        spec("phi-3")


def test_a_backbone_name_may_carry_its_own_weight_source(tiny_root):
    assert backbones.split_name("smollm2-135m@random") == ("smollm2-135m", "random")
    assert backbones.split_name("llama3-8b") == ("llama3-8b", None)
    assert spec("llama3-8b@tiny") is spec("llama3-8b")
    assert backbones.weights_source("llama3-8b@tiny", "hub") == "tiny"
    assert backbones.weights_source("llama3-8b", "hub") == "hub"  # the run's default: today's behaviour
    assert weights_location("meditron-7b@tiny", "hub", tiny_root=tiny_root) == str(tiny_root / "meditron-7b")
    assert weights_location("meditron-7b@hub", "tiny", tiny_root=tiny_root) == "epfl-llm/meditron-7b"
    with pytest.raises(ValueError, match="unknown weights source 's3'"):
        weights_location("llama3-8b@s3", "hub")
    with pytest.raises(ValueError, match="unknown backbone 'gpt-5'"):
        weights_location("gpt-5@tiny", "hub")
    for source in ("packaged", "random"):  # only a backbone a package ships has these
        with pytest.raises(ValueError, match="'llama3-8b' has no packaged weights.*smollm2-135m"):
            weights_location(f"llama3-8b@{source}", "hub")


def test_the_smollm2_search_space_compares_weight_sources():
    """search_spaces/smollm2_pretrained_vs_random.yaml: three arms, each a valid config value."""
    from pathlib import Path

    from clintraj.config import from_dict
    from clintraj.training.sequential import SequentialTrainConfig
    from clintraj.tuning import load_search_space

    path = Path(__file__).resolve().parents[1] / "search_spaces" / "smollm2_pretrained_vs_random.yaml"
    space = load_search_space(path, SequentialTrainConfig)
    arms = space.params["backbone"]["grid"]
    resolved = [(spec(arm).name, backbones.weights_source(arm, "hub")) for arm in arms]
    assert resolved == [("smollm2-135m", "packaged"), ("smollm2-135m", "random"), ("llama3-8b", "tiny")]
    assert all(from_dict(SequentialTrainConfig, {"backbone": arm}).backbone == arm for arm in arms)


def test_load_backbone_refuses_what_it_cannot_do(tiny_root):
    location = str(materialise_tiny("llama3-8b", tiny_root))
    with pytest.raises(ValueError, match="nf4"):
        load_backbone(location, quantization="int3")
    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        pytest.skip("flash_attn and CUDA are both present here: flash_attention_2 loads, nothing to refuse")
    with pytest.raises(RuntimeError, match="sdpa"):
        load_backbone(location, attention="flash_attention_2")


def test_4bit_evaluation_uses_the_training_math(tiny_root):
    """bitsandbytes would repack 4-bit weights for a bf16 kernel in CPU inference (AVX512-BF16
    hosts); load_backbone turns that off, so eval outputs equal train-mode outputs, every time."""
    model = load_backbone(str(materialise_tiny("llama3-8b", tiny_root)), quantization="nf4")
    embeds, mask, _ = batch(seed=5)
    model.train()
    training = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state.detach()
    model.eval()
    with torch.no_grad():
        first = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        model.state_dict()  # what saving an adapter does between evaluations
        second = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    assert torch.equal(first, training) and torch.equal(second, training)
