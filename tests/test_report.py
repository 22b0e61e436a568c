"""The report: the paper's published values transcribed exactly, ours beside them from MLflow,
as Markdown / CSV / LaTeX tables and one self-contained HTML page."""

import numpy as np
import pandas as pd
import pytest

from clintraj.reporting import page, tables


def cell(paper, source, dataset, task, model, init, metric):
    rows = paper[(paper["source"] == source) & (paper["dataset"] == dataset) & (paper["task"] == task)
                 & (paper["model"] == model) & (paper["initialisation"] == init) & (paper["metric"] == metric)]
    assert len(rows) == 1
    return rows["value"].iloc[0]


def test_published_values_are_the_papers():
    paper = tables.published()
    assert len(paper) == 16 * (4 + 6 + 4 + 2) + 2 * 9  # Tables 2, 3, appendix C (two), Table 1
    # checked by hand against ../shared/paper/paper.txt
    assert cell(paper, "Table 2", "mimic", "mortality", "deepseek-7b", "contrastive", "auroc") == "0.8409"
    assert cell(paper, "Table 2", "mimic", "phenotyping", "biomistral-7b", "contrastive", "auprc") == "0.5783"
    assert cell(paper, "Table 3", "eicu", "mortality", "mistral-7b", "scratch", "auroc") == "0.9223"
    assert cell(paper, "Table 3", "eicu", "los", "llama3-8b", "scratch", "spearman") == "0.7537"
    assert cell(paper, "Table 3", "eicu", "los", "lstm", "scratch", "mse") == "14799.3"
    assert cell(paper, "Appendix C", "mimic", "mortality", "phi3-mini", "scratch", "ace") == "0.2012"
    assert cell(paper, "Appendix C", "eicu", "mortality", "mlp", "scratch", "bss") == "0.3178"
    assert cell(paper, "Table 1", "eicu", "pretraining", "mga", "contrastive", "improvement_at_1") == "600.00"
    assert cell(paper, "Table 1", "mimic", "pretraining", "mga", "contrastive", "recall_at_10") == "8.41%"
    assert cell(paper, "Table 1", "mimic", "pretraining", "mga", "contrastive", "random_at_5") == "0.70%"


def test_side_by_side_keeps_the_papers_row_order_and_differences():
    ours = pd.DataFrame([
        {"dataset": "eicu", "task": "mortality", "model": "llama3-8b", "initialisation": "contrastive",
         "metric": "auroc", "value": 0.9, "low": 0.85, "high": 0.95, "run_id": "r1"},
        {"dataset": "eicu", "task": "los", "model": "mlp", "initialisation": "scratch",
         "metric": "mse", "value": 13000.0, "low": None, "high": None, "run_id": "r2"}])
    table = tables.side_by_side(ours, tables.published(), "table3")
    paper = tables.published()
    printed_order = paper.loc[paper["source"] == "Table 3", ["model", "initialisation"]].drop_duplicates()
    assert list(zip(table["model"], table["initialisation"])) == list(printed_order.itertuples(index=False, name=None))
    assert list(zip(table["model"], table["initialisation"]))[:4] == [
        ("mlp", "scratch"), ("lstm", "scratch"), ("mlp", "contrastive"), ("lstm", "contrastive")]
    llama = table[(table["model"] == "llama3-8b") & (table["initialisation"] == "contrastive")].iloc[0]
    assert llama["mortality auroc ours"] == "0.900 (0.850-0.950)"
    assert llama["mortality auroc paper"] == "0.9082" and llama["mortality auroc diff"] == "-0.008"
    mlp = table.iloc[0]
    assert mlp["los mse ours"] == "13000.000" and mlp["los mse diff"] == "-356.100"
    assert table.iloc[2]["mortality auroc ours"] == ""  # no run of ours: empty, never invented
    assert r"mortality auroc ours" in tables.latex(table) and r"\toprule" in tables.latex(table)
    assert tables.latex(pd.DataFrame({"a_b": ["50%"]})).splitlines()[2] == r"a\_b \\"


def test_report_page_from_an_mlflow_store(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from clintraj.evaluation.plots import roc_pr
    from clintraj.tracking import Tracking

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    experiment = tracking.experiment("report-test")
    client = MlflowClient(tracking.uri)
    rng = np.random.default_rng(0)
    y = rng.random(80) < 0.3
    predictions = pd.DataFrame({"stay_id": range(80), "y": [np.array([float(v)]) for v in y],
                                "output": [np.array([float(v) + rng.normal()]) for v in y],
                                "n_events": rng.integers(2, 30, 80),
                                "output_by_event": [np.full(30, float(v)) + rng.normal(size=30) for v in y]})
    predictions.to_parquet(tmp_path / "test_predictions.parquet")
    figure = roc_pr(y, predictions["output"].map(lambda a: a[0]).to_numpy(), tmp_path / "roc_pr.png", "t")
    for init, auroc in (("scratch", 0.8), ("contrastive", 0.85)):
        run = client.create_run(experiment, tags={"stage": "sequential", "dataset": "eicu", "task": "mortality",
                                                  "backbone": "phi3-mini", "initialisation": init,
                                                  "window": "12 h after ICU admission"})
        for key, value in {"test_auroc": auroc, "test_auroc_low": auroc - 0.05, "test_auroc_high": auroc + 0.05,
                           "test_auprc": 0.5, "robust_auroc_0": auroc, "robust_auroc_1": auroc - 0.1}.items():
            client.log_metric(run.info.run_id, key, value)
        client.log_artifact(run.info.run_id, str(figure), "figures")
        client.log_artifact(run.info.run_id, str(tmp_path / "test_predictions.parquet"))
        client.set_terminated(run.info.run_id)
    pretraining = client.create_run(experiment, tags={"stage": "pretrain", "dataset": "eicu"})
    for k, recall in ((1, 0.02), (5, 0.06), (10, 0.1)):
        client.log_metric(pretraining.info.run_id, f"test_recall_at_{k}", recall)
        client.log_metric(pretraining.info.run_id, f"test_random_at_{k}", 0.001 * k)
    client.set_terminated(pretraining.info.run_id)
    mlflow.set_tracking_uri(tracking.uri)
    html = page.build(tracking.uri, "report-test", tmp_path / "report").read_text()
    assert "Table 3: eICU mortality and length of stay" in html and "0.9154" in html  # phi3 scratch, paper
    assert "0.800 (0.750-0.850)" in html and "-0.115" in html
    assert "What each task saw: mortality at 12 h after ICU admission." in html
    retrieval = pd.read_csv(tmp_path / "report" / "tables" / "table1.csv", dtype=str)
    eicu = retrieval[retrieval["dataset"] == "eicu"].set_index("metric")
    assert eicu.loc["R@1", "masked global ours"] == "2.000%" and eicu.loc["R@1", "improvement ours"] == "20.00"
    assert eicu.loc["R@1", "improvement paper"] == "600.00" and eicu.loc["R@10", "random paper"] == "0.034%"
    assert html.count("data:image/png;base64,") == 4  # two runs' ROC/PR, by length, robustness
    for name in ("table1", "table2", "table3", "calibration_mimic", "calibration_eicu"):
        for suffix in (".md", ".csv", ".tex"):
            assert (tmp_path / "report" / "tables" / f"{name}{suffix}").is_file()
    with pytest.raises(ValueError, match="no MLflow experiment"):
        tables.our_results(tracking.uri, "missing")
    rendered = render(tmp_path / "report" / "report.html")
    assert 'data-tables="5"' in rendered and 'data-images="4"' in rendered


def render(path) -> str:
    """The DOM after headless Chromium loaded the page (Debian's chromium package)."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
