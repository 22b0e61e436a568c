"""Synthetic MIMIC-IV (+CXR-JPG, Note) and eICU files in the exact PhysioNet layouts.

`generate("mimic" | "eicu", out, n_stays, seed)` writes a raw folder that a
loader cannot tell from the real one; one hidden state per stay
(`latent.py`) drives every modality and every label.
"""

from __future__ import annotations

from pathlib import Path

DATASETS = ("mimic", "eicu")


def generate(dataset: str, out: Path, n_stays: int, seed: int, **options) -> dict[str, int]:
    """Write the raw files of `dataset` under `out`; return rows written per table."""
    if dataset == "mimic":
        from clintraj.data.synthetic import mimic as module
    elif dataset == "eicu":
        from clintraj.data.synthetic import eicu as module
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    return module.generate(Path(out), n_stays=n_stays, seed=seed, **options)
