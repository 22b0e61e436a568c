"""clintraj: clinical sequence modeling with missing modalities, on Ray."""

__version__ = "0.1.0"
