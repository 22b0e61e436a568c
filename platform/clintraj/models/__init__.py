"""The models, as torch modules and nothing else: modality encoders (`encoders`), Masked Global
Alignment (`mga`), the static baselines (`static`), the decoder backbones and LoRA (`backbones`),
and the sequential model around a backbone (`sequential`). No Ray, no I/O but weights."""
