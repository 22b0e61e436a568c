"""Task metrics shared by every model (paper §3.5 and appendix C; METHOD.md §5).

* Mortality (binary) and phenotyping (25 labels): AUROC, AUPRC, ACE, BSS; for
  phenotyping each is the macro mean over the labels.
* Length of stay (regression, in hours): MSE, MAE, Pearson r, Spearman rho.
* Every metric gets a percentile bootstrap CI (default 95%) from resampling
  stays (rows) with replacement, seeded.

Definitions
-----------
AUROC, AUPRC
    Equal to scikit-learn's ``roc_auc_score`` and ``average_precision_score``
    (tied scores included), computed here with one sort per label so that a
    thousand bootstrap replicates stay cheap.
Evaluated label
    A label is evaluated only when the split holds at least one positive AND one
    negative for it. Otherwise it is skipped: its per-label values are NaN, it
    is left out of every macro mean, and ``skipped_labels`` counts it. Nothing
    raises, and a macro mean is NaN only when every label was skipped (then
    ``skipped_labels`` equals the number of labels).
ACE (adaptive calibration error, equal-mass bins; Nixon et al. 2019, binary case)
    Sort stays by predicted probability, split them into ``B = min(n_bins, N)``
    bins of near-equal count (``np.array_split``: the first ``N % B`` bins hold
    one stay more), then ``ACE = (1/B) * sum_b |mean(y in b) - mean(p in b)|``;
    every bin weighs the same. Tied probabilities are ordered by score, then by
    input row. The paper does not state the bin count; the default is 15.
Brier, BSS
    ``Brier = mean((p - y)^2)``. ``BSS = 1 - Brier / Brier_ref`` where the
    reference predicts the training-split prevalence ``pi`` for every stay:
    ``Brier_ref = mean((pi - y)^2)``. Positive BSS beats the prevalence.

Probabilities vs logits: ACE, Brier and BSS need probabilities. The models
output logits, so callers of ``classification_metrics``/``multilabel_metrics``
pass ``sigmoid(logits)``; ``evaluate_task`` takes the logits and applies the
sigmoid itself (and ranks by the logits, which avoids float ties from a
saturated sigmoid).
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from scipy import special, stats

CLASSIFICATION_KEYS = ("auroc", "auprc", "ace", "bss", "brier")
Task = Literal["mortality", "phenotyping", "los"]


# ---------------------------------------------------------------------------
# Per-label core: (N, L) arrays sorted once; weights are per-stay counts
# ---------------------------------------------------------------------------


class _Sorted:
    """(N, L) labels and probabilities sorted ascending by score, once per evaluation.

    ``prob`` must be a non-decreasing function of ``score`` (its sigmoid, or the
    score itself), so one sort serves the ranking metrics and the ACE bins.
    :meth:`metrics` takes per-stay weights: ones give the metrics of the split,
    the counts of a bootstrap draw give the metrics of that resample exactly
    (a stay drawn k times is k copies of it), with no re-sorting.
    """

    def __init__(self, y: np.ndarray, score: np.ndarray, prob: np.ndarray, prevalence, n_bins: int):
        self.n, self.labels = y.shape
        self.order = np.argsort(score, axis=0, kind="stable")
        self.y, self.p = np.take_along_axis(y, self.order, 0), np.take_along_axis(prob, self.order, 0)
        self.prevalence = np.broadcast_to(np.asarray(prevalence, float), (self.labels,))
        # Tie groups (one threshold each): first and last sorted row of every row's group.
        s_up = np.take_along_axis(score, self.order, 0)
        rows = np.arange(self.n)[:, None]
        last = np.ones_like(s_up, bool)
        last[:-1] = s_up[:-1] != s_up[1:]
        first = np.ones_like(s_up, bool)
        first[1:] = last[:-1]
        self.start = np.maximum.accumulate(np.where(first, rows, 0), axis=0)
        self.end = np.minimum.accumulate(np.where(last, rows, self.n)[::-1], axis=0)[::-1]
        self.tied = not last.all()
        # Equal-mass ACE bins over the N (resampled) stays: np.array_split sizes.
        bins = max(min(n_bins, self.n), 1)
        self.sizes = np.full(bins, self.n // bins)
        self.sizes[: self.n % bins] += 1
        self.bounds = np.concatenate([[0], np.cumsum(self.sizes)])

    def _prefix(self, cum_w: np.ndarray, cum_wv: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over the first k stays of the expanded sorted sequence, for k in bounds: (B+1, L)."""
        offsets = np.arange(self.labels) * (self.n + 1)  # searchsorted every column at once
        flat = np.searchsorted((cum_w + offsets).T.ravel(), (self.bounds[:, None] + offsets).ravel())
        col, row = np.divmod(flat, self.n)
        k = np.repeat(self.bounds, self.labels)
        return (cum_wv[row, col] - (cum_w[row, col] - k) * values[row, col]).reshape(len(self.bounds), -1)

    def metrics(self, w: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """{metric: (L,) array} (NaN for skipped labels) and the evaluated-label mask."""
        w = np.ones_like(self.y) if w is None else w
        pos_w = w * self.y
        neg_w = w - pos_w
        cum_pos, cum_neg = np.cumsum(pos_w, 0), np.cumsum(neg_w, 0)  # ascending score
        pos, neg = cum_pos[-1], cum_neg[-1]
        valid = (pos > 0) & (neg > 0)
        out = {key: np.full(self.labels, np.nan) for key in CLASSIFICATION_KEYS}
        if not valid.any():
            return out, valid
        if self.tied:  # counts below my tie group, and through its end
            pos_below = np.take_along_axis(cum_pos - pos_w, self.start, 0)
            neg_below = np.take_along_axis(cum_neg - neg_w, self.start, 0)
            neg_through = np.take_along_axis(cum_neg, self.end, 0)
        else:
            pos_below, neg_below, neg_through = cum_pos - pos_w, cum_neg - neg_w, cum_neg
        with np.errstate(divide="ignore", invalid="ignore"):
            # AUROC: each positive counts the negatives below it, plus half of those tied with it.
            auroc = (pos_w * 0.5 * (neg_below + neg_through)).sum(0) / (pos * neg)
            # AP: each positive adds 1/P times the precision at its threshold (stays scored >= its own).
            at_or_above = self.n - pos_below - neg_below
            precision = np.divide(pos - pos_below, at_or_above, out=np.zeros_like(w), where=at_or_above > 0)
            auprc = (pos_w * precision).sum(0) / pos
            # ACE: |mean(y) - mean(p)| per equal-mass bin, bins weighted equally.
            cum_w = cum_pos + cum_neg
            bin_y = np.diff(self._prefix(cum_w, cum_pos, self.y), axis=0)
            bin_p = np.diff(self._prefix(cum_w, np.cumsum(w * self.p, 0), self.p), axis=0)
            ace = np.mean(np.abs(bin_y - bin_p) / self.sizes[:, None], 0)
            brier = (w * (self.p - self.y) ** 2).sum(0) / self.n
            reference = (w * (self.prevalence - self.y) ** 2).sum(0) / self.n  # > 0: both classes present
            bss = 1.0 - brier / reference
        for key, value in zip(("auroc", "auprc", "ace", "brier", "bss"), (auroc, auprc, ace, brier, bss)):
            out[key][valid] = value[valid]
        return out, valid

    def bootstrap_weights(self, index: np.ndarray) -> np.ndarray:
        return np.bincount(index, minlength=self.n)[self.order].astype(float)


def _as_columns(*arrays) -> list[np.ndarray]:
    out = [np.asarray(a, float) for a in arrays]
    out = [a.reshape(-1, 1) if a.ndim == 1 else a for a in out]
    if any(a.ndim != 2 or a.shape != out[0].shape for a in out):
        raise ValueError(f"expected equal (N,) or (N, L) shapes, got {[np.shape(a) for a in arrays]}")
    if not all(np.isfinite(a).all() for a in out):
        raise ValueError("labels and predictions must be finite")
    if not np.isin(out[0], (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1")
    return out


def _macro(per_label: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, float]:
    """Means over the evaluated labels, and the count of skipped ones."""
    summary = {key: float(np.mean(per_label[key][valid])) if valid.any() else float("nan")
               for key in CLASSIFICATION_KEYS}
    return summary | {"skipped_labels": float((~valid).sum())}


# ---------------------------------------------------------------------------
# Public metric functions
# ---------------------------------------------------------------------------


def binary_metrics(y_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC of any monotone score (logits are fine).

    One class only: both NaN and ``skipped_labels`` 1.0 (never an exception).
    Returns {"auroc", "auprc", "skipped_labels"}.
    """
    y, s = _as_columns(y_true, score)
    summary = _macro(*_Sorted(y, s, s, 0.5, 1).metrics())
    return {key: summary[key] for key in ("auroc", "auprc", "skipped_labels")}


def classification_metrics(y_true: np.ndarray, prob: np.ndarray, train_prevalence: float,
                           n_bins: int = 15) -> dict[str, float]:
    """One binary label from probabilities (pass sigmoid(logits)).

    Returns {"auroc", "auprc", "ace", "bss", "brier", "skipped_labels"}; with one
    class only every metric is NaN and ``skipped_labels`` is 1.0.
    """
    y, p = _as_columns(y_true, prob)
    if y.shape[1] != 1:
        raise ValueError("classification_metrics takes one label; use multilabel_metrics")
    return _macro(*_Sorted(y, p, p, train_prevalence, n_bins).metrics())


def multilabel_metrics(y_true: np.ndarray, prob: np.ndarray, train_prevalence: np.ndarray,
                       n_bins: int = 15) -> dict:
    """Macro means over the evaluated labels of (N, L) labels and probabilities.

    Returns {"auroc", "auprc", "ace", "bss", "brier"} (macro means, floats),
    "skipped_labels" (float count), "evaluated_labels" (int count) and
    "per_label": {metric: (L,) array, NaN where skipped}.
    """
    y, p = _as_columns(y_true, prob)
    per_label, valid = _Sorted(y, p, p, train_prevalence, n_bins).metrics()
    return _macro(per_label, valid) | {"evaluated_labels": int(valid.sum()), "per_label": per_label}


def _correlation(x: np.ndarray, y: np.ndarray, fn) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:  # undefined: NaN without SciPy's warning
        return float("nan")
    return float(fn(x, y)[0])


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """{"mse", "mae", "pearson", "spearman"}; correlations are NaN for constant input. Pass hours for LoS."""
    y_true, y_pred = np.asarray(y_true, float).ravel(), np.asarray(y_pred, float).ravel()
    error = y_pred - y_true
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "pearson": _correlation(y_true, y_pred, stats.pearsonr),
        "spearman": _correlation(y_true, y_pred, stats.spearmanr),
    }


# ---------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------


def _draws(n: int, n_boot: int, seed: int):
    """The stays of each replicate: N draws with replacement, seeded."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot if n else 0):
        yield rng.integers(0, n, n)


def _intervals(point: dict[str, float], replicates: list[dict[str, float]], n_boot: int,
               alpha: float) -> dict[str, dict[str, float]]:
    result = {}
    for key, value in point.items():
        values = np.array([r[key] for r in replicates], float)
        defined = values[np.isfinite(values)]
        low, high = np.percentile(defined, [50 * alpha, 100 - 50 * alpha]) if len(defined) else (np.nan, np.nan)
        result[key] = {"value": float(value), "low": float(low), "high": float(high),
                       "n_boot": n_boot, "skipped": n_boot - len(defined)}
    return result


def bootstrap(metric_fn: Callable[..., dict[str, float]], *arrays, n_boot: int = 1000, seed: int = 0,
              alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """Percentile bootstrap CIs for every entry of ``metric_fn(*arrays)``.

    Each replicate draws N rows (stays) with replacement, the same rows from
    every array, from ``np.random.default_rng(seed)``. A replicate where a
    metric is undefined (NaN, e.g. one class) is skipped for that metric and
    counted. Returns {name: {"value", "low", "high", "n_boot", "skipped"}}:
    "value" is the metric on the full arrays; low/high are NaN when no
    replicate was defined.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap arrays must have the same number of rows")
    replicates = [metric_fn(*(a[index] for a in arrays)) for index in _draws(n, n_boot, seed)]
    return _intervals(metric_fn(*arrays), replicates, n_boot, alpha)


def bootstrap_ci(metric_fn: Callable[..., float], *arrays, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, float]:
    """:func:`bootstrap` for a scalar metric: {"value", "low", "high", "n_boot", "skipped"}."""
    return bootstrap(lambda *a: {"metric": metric_fn(*a)}, *arrays, n_boot=n_boot, seed=seed, alpha=alpha)["metric"]


# ---------------------------------------------------------------------------
# One entry point for trainers
# ---------------------------------------------------------------------------


def evaluate_task(task: Task, y_true: np.ndarray, output: np.ndarray, train_prevalence=None,
                  n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, n_bins: int = 15) -> dict[str, float]:
    """Flat, all-float metrics of one task with bootstrap CIs, MLflow-ready.

    * "mortality": ``y_true`` (N,) 0/1, ``output`` (N,) logits, ``train_prevalence`` a float.
    * "phenotyping": ``y_true`` (N, L) 0/1, ``output`` (N, L) logits, ``train_prevalence`` (L,).
      Both return auroc, auprc, ace, bss (macro for phenotyping), each with
      ``<m>_low``/``<m>_high``, plus ``skipped_labels`` (labels with one class
      only in this split). The sigmoid is applied here.
    * "los": ``y_true`` and ``output`` in HOURS; returns mse, mae, pearson,
      spearman, each with ``<m>_low``/``<m>_high``.

    ``boot_skipped`` is the most replicates any metric had to skip. The
    replicates are those of :func:`bootstrap` with the same seed (classification
    reweights the once-sorted stays instead of re-sorting each resample).
    """
    if task in ("mortality", "phenotyping"):
        if train_prevalence is None:
            raise ValueError(f"{task}: train_prevalence (training-split positive rate) is required for the BSS")
        y, logits = _as_columns(y_true, output)
        if (task == "mortality") != (y.shape[1] == 1):
            raise ValueError(f"{task}: unexpected label shape {np.shape(y_true)}")
        names = ("auroc", "auprc", "ace", "bss")
        data = _Sorted(y, logits, special.expit(logits), train_prevalence, n_bins)

        def summary(w=None):
            return {key: value for key, value in _macro(*data.metrics(w)).items() if key in names}

        point, extra = summary(), {"skipped_labels": _macro(*data.metrics())["skipped_labels"]}
        replicates = [summary(data.bootstrap_weights(index)) for index in _draws(len(y), n_boot, seed)]
        cis = _intervals(point, replicates, n_boot, alpha)
    elif task == "los":
        extra = {}
        cis = bootstrap(regression_metrics, np.asarray(y_true, float).ravel(), np.asarray(output, float).ravel(),
                        n_boot=n_boot, seed=seed, alpha=alpha)
    else:
        raise ValueError(f"unknown task {task!r}")
    flat = {}
    for key, ci in cis.items():
        flat |= {key: ci["value"], f"{key}_low": ci["low"], f"{key}_high": ci["high"]}
    return flat | {"boot_skipped": float(max(ci["skipped"] for ci in cis.values()))} | extra


def why_undefined(kind: Literal["binary", "multilabel", "regression"], y_true: np.ndarray,
                  values: dict[str, float]) -> dict[str, str]:
    """Why each NaN metric of `values` (one task's test metrics) is undefined, with the counts
    behind it, e.g. {"auroc": "undefined: n = 9, no positive"}. CI bounds (`_low`/`_high`) are left
    out: a bound is NaN whenever its metric is. For length of stay only the spread of `y_true` matters."""
    y = np.asarray(y_true, float)
    n = len(y)
    if kind == "binary":
        positives = int(y.sum())
        detail = f"n = {n}, " + ("no positive" if positives == 0 else "no negative" if positives == n
                                 else f"{positives} positive")
    elif kind == "multilabel":
        both = int(((y.sum(0) > 0) & (y.sum(0) < n)).sum()) if n else 0
        detail = f"n = {n}, {both} of {y.shape[1] if y.ndim == 2 else 0} labels with both classes"
    else:
        detail = f"n = {n}" + ("" if n < 2 else ", constant true value" if np.ptp(y) == 0 else ", constant prediction")
    return {key: f"undefined: {detail}" for key, value in values.items()
            if isinstance(value, float) and np.isnan(value) and not key.endswith(("_low", "_high"))}
