"""Evaluation figures of one model's test predictions (PNG): ROC and PR curves, reliability diagram,
and predicted vs true length of stay. Curves come from scikit-learn; phenotyping pools its labels
(micro average) so one figure shows all 25."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import expit  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import auc, precision_recall_curve, roc_curve  # noqa: E402


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
    figure.suptitle(title)
    return _save(figure, path)


def reliability(y: np.ndarray, logit: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    """Observed rate vs mean predicted probability over equal-mass bins (as ACE bins them)."""
    y, prob = np.ravel(y), expit(np.ravel(logit))
    observed, predicted = calibration_curve(y, prob, n_bins=bins, strategy="quantile")
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    axis.plot(predicted, observed, "o-", label="model")
    axis.set(xlabel="mean predicted probability", ylabel="observed rate", title=title)
    axis.legend(loc="best")
    return _save(figure, path)


def regression(hours_true: np.ndarray, hours_pred: np.ndarray, path: Path, title: str) -> Path:
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(hours_true, hours_pred, s=6, alpha=0.5)
    top = float(max(np.max(hours_true), np.max(hours_pred)))
    axis.plot([0, top], [0, top], "k--", lw=0.8)
    axis.set(xlabel="true length of stay (h)", ylabel="predicted (h)", xscale="log", yscale="log", title=title)
    return _save(figure, path)


def task_figures(task: str, y: np.ndarray, output: np.ndarray, folder: Path, title: str) -> list[Path]:
    """The figures for a task's test predictions (output: logits, or log(1 + hours) for LoS)."""
    folder = Path(folder)
    if task == "los":
        return [regression(np.expm1(y), np.expm1(output), folder / "los_scatter.png", title)]
    return [roc_pr(y, output, folder / "roc_pr.png", title), reliability(y, output, folder / "reliability.png", title)]


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
