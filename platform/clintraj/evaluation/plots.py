"""Evaluation figures (PNG). Of one model's test predictions: ROC and PR curves, reliability diagram,
and predicted vs true length of stay; curves come from scikit-learn, and phenotyping pools its labels
(micro average) so one figure shows all 25. Across the models of one dataset and task: AUROC by
events seen, and the test metric as modalities are removed. Each figure carries the title it is given."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve  # noqa: E402


def roc_pr(y: np.ndarray, logit: np.ndarray, path: Path, title: str) -> Path:
    y, score = np.ravel(y), np.ravel(logit)
    fpr, tpr, _ = roc_curve(y, score)
    precision, recall, _ = precision_recall_curve(y, score)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.plot(fpr, tpr, label=f"AUROC {auc(fpr, tpr):.3f}")
    left.plot([0, 1], [0, 1], "k--", lw=0.8)
    left.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    right.plot(recall, precision, label=f"AUPRC {auc(recall, precision):.3f}")
    right.axhline(y.mean(), color="k", ls="--", lw=0.8, label=f"prevalence {y.mean():.3f}")
    right.set(xlabel="recall", ylabel="precision", title="precision-recall")
    for axis in (left, right):
        axis.legend(loc="best")
    figure.suptitle(_wrapped(f"ROC and precision-recall: {title}", 90), fontsize=10)
    return _save(figure, path)


def reliability(y: np.ndarray, logit: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    """Observed rate vs mean predicted probability over equal-mass bins (as ACE bins them)."""
    y, prob = np.ravel(y), expit(np.ravel(logit))
    observed, predicted = calibration_curve(y, prob, n_bins=bins, strategy="quantile")
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    axis.plot(predicted, observed, "o-", label="model")
    axis.set(xlabel="mean predicted probability", ylabel="observed rate")
    axis.set_title(_wrapped(f"Reliability: {title}"), fontsize=9)
    axis.legend(loc="best")
    return _save(figure, path)


def regression(hours_true: np.ndarray, hours_pred: np.ndarray, path: Path, title: str) -> Path:
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(hours_true, hours_pred, s=6, alpha=0.5)
    top = float(max(np.max(hours_true), np.max(hours_pred)))
    axis.plot([0, top], [0, top], "k--", lw=0.8)
    axis.set(xlabel="true length of stay (h)", ylabel="predicted (h)", xscale="log", yscale="log")
    for ticks in (axis.xaxis, axis.yaxis):  # decades only: minor labels of a log axis overlap
        ticks.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_title(_wrapped(f"Length of stay: {title}"), fontsize=9)
    return _save(figure, path)


def task_figures(task: str, y: np.ndarray, output: np.ndarray, folder: Path, title: str) -> list[Path]:
    """The figures for a task's test predictions (output: logits, or log(1 + hours) for LoS)."""
    folder = Path(folder)
    if task == "los":
        return [regression(np.expm1(y), np.expm1(output), folder / "los_scatter.png", title)]
    return [roc_pr(y, output, folder / "roc_pr.png", title), reliability(y, output, folder / "reliability.png", title)]


def performance_by_length(predictions: dict, path: Path, title: str,
                          lengths=(1, 2, 4, 8, 16, 32, 64)) -> Path | None:
    """AUROC of the prediction after the k-th event, over stays with at least k events (appendix
    A.11-A.16), one line per model ({label: test predictions with y, n_events, output_by_event});
    None when no model has 10 such stays of both classes at any k."""
    figure, axis = plt.subplots(figsize=(6, 4))
    drawn = False
    for label, frame in predictions.items():
        points = []
        for k in lengths:
            rows = frame[frame["n_events"] >= k]
            y = np.array([np.asarray(v).ravel()[0] for v in rows["y"]])
            if len(rows) >= 10 and 0 < y.sum() < len(y):
                score = np.array([np.asarray(v)[k - 1] for v in rows["output_by_event"]])
                points.append((k, roc_auc_score(y, score)))
        if points:
            axis.plot(*zip(*points), "o-", label=label)
            drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axis.set(xscale="log", xlabel="events seen", ylabel="AUROC")
    axis.set_title(_wrapped(title, 60), fontsize=9)
    axis.legend(fontsize=7)
    return _save(figure, path)


def robustness_curves(curves: dict[str, dict[str, float]], metric: str, path: Path, title: str) -> Path | None:
    """Test metric vs the number of modalities removed per stay, one line per model ({label:
    {"robust_<metric>_<removed>": value}}; scratch dashed, contrastive solid)."""
    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(6, 4))
    for label, metrics in curves.items():
        points = sorted((int(key.rsplit("_", 1)[1]), value) for key, value in metrics.items())
        axis.plot(*zip(*points), "--" if "scratch" in label else "-", marker="o", label=label)
    axis.set(xlabel="modalities removed per stay at test time", ylabel=metric)
    axis.set_title(_wrapped(title, 60), fontsize=9)
    axis.legend(fontsize=7)
    return _save(figure, path)


def _wrapped(title: str, width: int = 48) -> str:
    return textwrap.fill(title, width)


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
