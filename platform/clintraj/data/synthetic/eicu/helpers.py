"""Small helpers of the eICU generator: draws, rows per stay, and numbers and blanks as
eICU writes them."""

from __future__ import annotations

import numpy as np
import pandas as pd

YEAR = 525_600  # minutes
DAY = 1_440


def pick(rng: np.random.Generator, options, n: int, p=None) -> np.ndarray:
    """n draws from `options` as an object array."""
    return np.array(options, dtype=object)[rng.choice(len(options), n, p=p)]


def blank(values, mask: np.ndarray) -> np.ndarray:
    """`values` as objects with None (an empty CSV field) where `mask`."""
    out = np.asarray(values, dtype=object).copy()
    out[mask] = None
    return out


def fixed(values: np.ndarray, decimals) -> np.ndarray:
    """'%.{d}f' text per value, `decimals` a scalar or per value (eICU's labresulttext keeps the zeros)."""
    values = np.asarray(values, dtype=float)
    decimals = np.broadcast_to(decimals, values.shape)
    out = np.empty(values.shape, dtype=object)
    for d in np.unique(decimals):
        mask = decimals == d
        out[mask] = np.char.mod(f"%.{d}f", np.round(values[mask], d) + 0.0)  # + 0.0 turns -0.0 into 0.0
    return out


def shortest(values: np.ndarray, decimals) -> np.ndarray:
    """Numbers as eICU's numeric columns print them: rounded, no trailing zeros ("7.4", "31", "1.04")."""
    text = fixed(values, decimals).astype(str)
    stripped = np.char.rstrip(np.char.rstrip(text, "0"), ".")
    return np.where(np.char.find(text, ".") >= 0, stripped, text).astype(object)


def during_stay(rng: np.random.Generator, los: np.ndarray, early: float) -> np.ndarray:
    """Event offsets: a share `early` in the first hours (some just before unit admission), the rest uniform."""
    uniform = rng.random(len(los)) * los
    return np.where(rng.random(len(los)) < early, rng.integers(-60, 240, len(los)), uniform).astype(np.int64)


def rows_per_stay(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stay position, rank within the stay) of each row when stay i has counts[i] rows."""
    stay = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(len(stay)) - np.repeat(np.cumsum(counts) - counts, counts)
    return stay, rank


def ordered(frame: pd.DataFrame, offset_column: str) -> pd.DataFrame:
    """Rows by stay then time (callers number their ids after this)."""
    return frame.sort_values(["patientunitstayid", offset_column], kind="stable").reset_index(drop=True)
