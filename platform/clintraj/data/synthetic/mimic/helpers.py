"""Small helpers of the MIMIC generator: draws, and times and numbers rendered as MIMIC
writes them."""

from __future__ import annotations

import numpy as np
import pandas as pd

HOUR = 3600
DAY = 86400


def floor_minute(seconds) -> np.ndarray:
    seconds = np.asarray(seconds).astype(np.int64)
    return seconds - seconds % 60


def ceil_minute(seconds) -> np.ndarray:
    return -floor_minute(-np.asarray(seconds).astype(np.int64))


def pick(rng: np.random.Generator, options, n: int) -> np.ndarray:
    """`n` draws from ((value, probability), ...)."""
    values = np.array([v for v, _ in options], dtype=object)
    p = np.array([w for _, w in options], dtype=float)
    return values[rng.choice(len(values), size=n, p=p / p.sum())]


def categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One draw per row of unnormalised `weights`."""
    cumulative = np.cumsum(weights, axis=1)
    return (rng.random(len(weights))[:, None] * cumulative[:, -1:] > cumulative).sum(axis=1)


def provider_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ids like 'P03YMR'."""
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    letters = alphabet[rng.integers(0, len(alphabet), (n, 5))]
    return np.array(["P" + "".join(row) for row in letters], dtype=object)


def fmt_datetime(seconds: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DD HH:MM:SS'; negative seconds (missing) become blank."""
    return _fmt_time(seconds, "%Y-%m-%d %H:%M:%S")


def fmt_date(seconds: np.ndarray) -> np.ndarray:
    return _fmt_time(seconds, "%Y-%m-%d")


def _fmt_time(seconds: np.ndarray, pattern: str) -> np.ndarray:
    seconds = np.asarray(seconds, dtype=np.int64)
    stamps = seconds.astype("datetime64[s]")
    stamps[seconds < 0] = np.datetime64("NaT")
    return np.asarray(pd.DatetimeIndex(stamps).strftime(pattern), dtype=object)


def fmt_number(values: np.ndarray, decimals: int) -> np.ndarray:
    """Numbers as MIMIC prints them: at most `decimals` decimals, no trailing '.0'."""
    rounded = np.round(np.asarray(values, dtype=float), decimals)
    if decimals == 0:
        return rounded.astype(np.int64).astype(str).astype(object)
    text = pd.Series(rounded).astype(str).str.replace(r"\.0$", "", regex=True)
    return text.to_numpy(dtype=object)
