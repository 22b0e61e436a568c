"""Task metrics against scikit-learn/SciPy and hand-worked ACE/BSS; bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats
from sklearn.metrics import average_precision_score, roc_auc_score

from clintraj.metrics.prediction import (
    binary_metrics,
    bootstrap,
    bootstrap_ci,
    classification_metrics,
    evaluate_task,
    multilabel_metrics,
    regression_metrics,
    why_undefined,
)


def _fixed_binary(n=300, seed=0, decimals=1):
    """Labels and scores rounded so that many scores tie (within and across classes)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return y, np.round(rng.normal(size=n) + 1.2 * y, decimals)


# --- AUROC / AUPRC --------------------------------------------------------


def test_small_example_matches_sklearn():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.2, 0.9])  # a three-way tie across classes
    out = binary_metrics(y, s)
    assert out["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("decimals", [0, 1, 6])
def test_auroc_auprc_match_sklearn_with_ties(decimals):
    y, s = _fixed_binary(decimals=decimals)
    out = binary_metrics(y, s)
    assert out["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert out["skipped_labels"] == 0.0
    prob = special.expit(s)
    full = classification_metrics(y, prob, train_prevalence=0.3)
    assert full["auroc"] == pytest.approx(roc_auc_score(y, prob), abs=1e-12)
    assert full["auprc"] == pytest.approx(average_precision_score(y, prob), abs=1e-12)


def test_one_class_is_nan_and_counted_never_raises():
    for y in (np.zeros(10), np.ones(10)):
        out = binary_metrics(y, np.linspace(0, 1, 10))
        assert math.isnan(out["auroc"]) and math.isnan(out["auprc"]) and out["skipped_labels"] == 1.0
        full = classification_metrics(y, np.linspace(0, 1, 10), train_prevalence=0.2)
        assert all(math.isnan(full[k]) for k in ("auroc", "auprc", "ace", "bss")) and full["skipped_labels"] == 1.0


# --- ACE / BSS worked by hand ----------------------------------------------


def test_ace_and_bss_by_hand():
    # Six stays, given out of order; sorted by p: 0.1 0.2 0.3 | 0.6 0.7 0.9 (2 equal-mass bins of 3)
    #   bin 1: mean p = 0.6/3 = 0.2,  mean y = (0+1+0)/3 = 1/3  -> |1/3 - 0.2| = 2/15
    #   bin 2: mean p = 2.2/3,        mean y = 3/3 = 1          -> |1 - 2.2/3| = 4/15
    #   ACE = (2/15 + 4/15) / 2 = 0.2
    # Brier = mean((p - y)^2) = (0.01 + 0.64 + 0.09 + 0.16 + 0.09 + 0.01) / 6 = 1/6
    # Reference (training prevalence 0.5 for every stay) = mean(0.25) = 0.25
    #   BSS = 1 - (1/6) / 0.25 = 1/3
    p = np.array([0.7, 0.1, 0.9, 0.3, 0.6, 0.2])
    y = np.array([1, 0, 1, 0, 1, 1])
    out = classification_metrics(y, p, train_prevalence=0.5, n_bins=2)
    assert out["ace"] == pytest.approx(0.2, abs=1e-12)
    assert out["brier"] == pytest.approx(1 / 6, abs=1e-12)
    assert out["bss"] == pytest.approx(1 / 3, abs=1e-12)


def test_ace_unequal_bins_follow_array_split():
    # Seven stays, 3 bins -> sizes 3, 2, 2 (np.array_split: the first bin takes the extra stay)
    #   bin 1: p 0.05 0.10 0.15 -> mean 0.10; y 0 0 1 -> 1/3; gap 7/30
    #   bin 2: p 0.40 0.50      -> mean 0.45; y 0 1   -> 1/2; gap 1/20
    #   bin 3: p 0.80 0.90      -> mean 0.85; y 1 1   -> 1;   gap 3/20
    #   ACE = (7/30 + 1/20 + 3/20) / 3 = (13/30) / 3 = 13/90
    # BSS against prevalence 0.25: Brier = (0.0025+0.01+0.7225+0.16+0.25+0.04+0.01)/7 = 1.195/7
    #   reference = (3*0.0625 + 4*0.5625)/7 = 2.4375/7;  BSS = 1 - 1.195/2.4375
    p = np.array([0.05, 0.1, 0.15, 0.4, 0.5, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1, 1])
    out = classification_metrics(y, p, train_prevalence=0.25, n_bins=3)
    assert out["ace"] == pytest.approx(13 / 90, abs=1e-12)
    assert out["bss"] == pytest.approx(1 - 1.195 / 2.4375, abs=1e-12)


def test_ace_bins_capped_by_stays_and_perfect_calibration():
    out = classification_metrics([0, 1], [0.0, 1.0], train_prevalence=0.5, n_bins=15)  # 2 bins of 1
    assert out["ace"] == 0.0 and out["brier"] == 0.0 and out["bss"] == 1.0
    # Prevalence as the prediction: BSS 0 when the training prevalence equals the split's.
    y = np.array([0, 0, 0, 1])
    assert classification_metrics(y, np.full(4, 0.25), train_prevalence=0.25)["bss"] == pytest.approx(0.0, abs=1e-12)


# --- phenotyping -----------------------------------------------------------


def test_multilabel_skips_labels_without_positives():
    rng = np.random.default_rng(3)
    n, labels = 200, 5
    Y = (rng.random((n, labels)) < 0.25).astype(int)
    Y[:, 2] = 0  # no positives in this split
    P = special.expit(rng.normal(size=(n, labels)) + 1.5 * Y)
    prevalence = np.full(labels, 0.25)
    out = multilabel_metrics(Y, P, prevalence)
    kept = [0, 1, 3, 4]
    assert out["skipped_labels"] == 1.0 and out["evaluated_labels"] == 4
    assert out["auroc"] == pytest.approx(np.mean([roc_auc_score(Y[:, j], P[:, j]) for j in kept]), abs=1e-12)
    assert out["auprc"] == pytest.approx(np.mean([average_precision_score(Y[:, j], P[:, j]) for j in kept]), abs=1e-12)
    single = [classification_metrics(Y[:, j], P[:, j], 0.25) for j in kept]
    for key in ("ace", "bss", "brier"):
        assert out[key] == pytest.approx(np.mean([s[key] for s in single]), abs=1e-12)
    assert all(math.isnan(out["per_label"][key][2]) for key in ("auroc", "auprc", "ace", "bss"))
    assert np.isfinite(out["per_label"]["auroc"][kept]).all()

    Y[:, 4] = 1  # every stay positive: skipped as well
    assert multilabel_metrics(Y, P, prevalence)["skipped_labels"] == 2.0
    nothing = multilabel_metrics(np.zeros((4, 3)), np.full((4, 3), 0.5), np.full(3, 0.1))
    assert nothing["skipped_labels"] == 3.0 and math.isnan(nothing["auroc"])


# --- regression ------------------------------------------------------------


def test_regression_matches_scipy():
    rng = np.random.default_rng(4)
    y = np.round(rng.gamma(2.0, 40.0, 150))  # hours, with ties
    pred = np.round(y + rng.normal(0, 30, 150))
    out = regression_metrics(y, pred)
    assert set(out) == {"mse", "mae", "pearson", "spearman"}
    assert out["pearson"] == pytest.approx(stats.pearsonr(y, pred)[0], abs=1e-12)
    assert out["spearman"] == pytest.approx(stats.spearmanr(y, pred)[0], abs=1e-12)
    assert out["mse"] == pytest.approx(np.mean((pred - y) ** 2)) and out["mae"] == pytest.approx(np.mean(abs(pred - y)))
    constant = regression_metrics(y, np.full_like(y, 5.0))
    assert math.isnan(constant["pearson"]) and math.isnan(constant["spearman"])


# --- bootstrap ---------------------------------------------------------------


def _auroc(y, s):
    return binary_metrics(y, s)["auroc"]


def test_bootstrap_ci_contains_point_is_seeded_and_narrows():
    y, s = _fixed_binary(n=2000, decimals=3)
    small = bootstrap_ci(_auroc, y[:200], s[:200], n_boot=300, seed=1)
    large = bootstrap_ci(_auroc, y, s, n_boot=300, seed=1)
    assert set(large) == {"value", "low", "high", "n_boot", "skipped"}
    for ci in (small, large):
        assert ci["low"] <= ci["value"] <= ci["high"] and ci["n_boot"] == 300 and ci["skipped"] == 0
    assert large["high"] - large["low"] < small["high"] - small["low"]
    assert bootstrap_ci(_auroc, y, s, n_boot=300, seed=1) == large
    assert bootstrap_ci(_auroc, y, s, n_boot=300, seed=2) != large


def test_bootstrap_skips_and_counts_undefined_replicates():
    y = np.zeros(30)
    y[0] = 1  # one positive: about a third of resamples hold none
    s = np.linspace(0, 1, 30)
    ci = bootstrap_ci(_auroc, y, s, n_boot=200, seed=0)
    assert 0 < ci["skipped"] < 200 and np.isfinite([ci["low"], ci["high"]]).all()
    never = bootstrap_ci(_auroc, np.zeros(30), s, n_boot=50, seed=0)
    assert math.isnan(never["value"]) and math.isnan(never["low"]) and never["skipped"] == 50


# --- evaluate_task -------------------------------------------------------------


def test_evaluate_mortality_matches_generic_bootstrap():
    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.15).astype(int)
    logits = rng.normal(size=400) + 1.5 * y - 1.0
    out = evaluate_task("mortality", y, logits, train_prevalence=0.15, n_boot=200, seed=7)
    assert all(isinstance(v, float) for v in out.values())
    reference = bootstrap(lambda a, b: classification_metrics(a, special.expit(b), 0.15), y, logits, n_boot=200, seed=7)
    for key in ("auroc", "auprc", "ace", "bss"):
        for suffix, field in (("", "value"), ("_low", "low"), ("_high", "high")):
            assert out[key + suffix] == pytest.approx(reference[key][field], abs=1e-12)
        assert out[key + "_low"] <= out[key] <= out[key + "_high"]
    assert out["auroc"] == pytest.approx(roc_auc_score(y, logits), abs=1e-12)
    assert out["skipped_labels"] == 0.0 and out["boot_skipped"] == 0.0


def test_evaluate_phenotyping_matches_generic_bootstrap_and_counts_skips():
    rng = np.random.default_rng(6)
    Y = (rng.random((300, 6)) < 0.2).astype(int)
    Y[:, 1] = 0
    logits = rng.normal(size=(300, 6)) + 2.0 * Y - 1.0
    prevalence = np.full(6, 0.2)
    out = evaluate_task("phenotyping", Y, logits, train_prevalence=prevalence, n_boot=100, seed=3)
    assert out["skipped_labels"] == 1.0
    reference = bootstrap(lambda a, b: {k: v for k, v in multilabel_metrics(a, special.expit(b), prevalence).items()
                                        if k in ("auroc", "auprc", "ace", "bss")}, Y, logits, n_boot=100, seed=3)
    for key in ("auroc", "auprc", "ace", "bss"):
        assert out[key] == pytest.approx(reference[key]["value"], abs=1e-12)
        assert out[key + "_low"] == pytest.approx(reference[key]["low"], abs=1e-12)
        assert out[key + "_high"] == pytest.approx(reference[key]["high"], abs=1e-12)


def test_evaluate_los_in_hours():
    rng = np.random.default_rng(8)
    hours = rng.gamma(2.0, 40.0, 250)
    pred = hours + rng.normal(0, 20, 250)
    out = evaluate_task("los", hours, pred, n_boot=100, seed=0)
    assert set(out) == {f"{m}{s}" for m in ("mse", "mae", "pearson", "spearman") for s in ("", "_low", "_high")} | {
        "boot_skipped"}
    assert out["spearman"] == pytest.approx(stats.spearmanr(hours, pred)[0], abs=1e-12)
    assert out["mse_low"] <= out["mse"] <= out["mse_high"]


def test_evaluate_task_errors_are_explicit():
    with pytest.raises(ValueError, match="train_prevalence"):
        evaluate_task("mortality", [0, 1], [0.0, 1.0])
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_task("sepsis", [0, 1], [0.0, 1.0])
    one_class = evaluate_task("mortality", np.zeros(20), np.linspace(-2, 2, 20), train_prevalence=0.1, n_boot=20)
    assert one_class["skipped_labels"] == 1.0 and math.isnan(one_class["auroc"]) and one_class["boot_skipped"] == 20


def test_an_undefined_metric_says_why_with_its_counts():
    no_death = evaluate_task("mortality", np.zeros(9), np.linspace(-2, 2, 9), train_prevalence=0.1, n_boot=20)
    reasons = why_undefined("binary", np.zeros(9), {f"test_{k}": v for k, v in no_death.items()})
    assert reasons == {f"test_{m}": "undefined: n = 9, no positive" for m in ("auroc", "auprc", "ace", "bss")}
    assert why_undefined("binary", np.ones(4), {"auroc": float("nan")}) == {"auroc": "undefined: n = 4, no negative"}
    assert why_undefined("binary", np.array([0, 1, 1]), {"auroc": 0.5, "auroc_low": float("nan")}) == {}
    flat = evaluate_task("los", [10.0, 20.0, 30.0], [5.0, 5.0, 5.0], n_boot=10)  # one predicted value for all
    assert why_undefined("regression", np.log1p([10.0, 20.0, 30.0]), flat) == {
        "pearson": "undefined: n = 3, constant prediction", "spearman": "undefined: n = 3, constant prediction"}
    labels = np.array([[0, 1], [0, 1], [0, 0]])  # the first label never positive, the second has both
    assert why_undefined("multilabel", labels, {"auroc": float("nan")}) == {
        "auroc": "undefined: n = 3, 1 of 2 labels with both classes"}
