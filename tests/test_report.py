"""The report: the paper's published values transcribed exactly, ours beside them from MLflow,
as Markdown / CSV / LaTeX tables and one self-contained HTML page."""

import re

import numpy as np
import pandas as pd
import pytest
from browser import dump_dom

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
    assert table.iloc[2]["mortality auroc ours"] == tables.NOT_IN_SWEEP  # no run of ours: said, never invented
    assert r"mortality auroc ours" in tables.latex(table) and r"\toprule" in tables.latex(table)
    assert tables.latex(pd.DataFrame({"a_b": ["50%"]})).splitlines()[2] == r"a\_b \\"


def test_report_page_from_an_mlflow_store(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

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
    window = "12 h after ICU admission"

    def trial(tags: dict, metrics: dict, status: str = "FINISHED") -> str:
        run = client.create_run(experiment, tags={"dataset": "eicu", "window": window, **tags})
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    dataset = trial({"stage": "dataset", "data_source": "synthetic: 3000 generated stays, seed 0"},
                    {"stays_train": 56, "stays_val": 12, "stays_test": 12})
    client.log_param(dataset, "stays", 80)
    for init, auroc in (("scratch", 0.8), ("contrastive", 0.85)):
        run_id = trial({"stage": "sequential", "task": "mortality", "backbone": "phi3-mini", "initialisation": init},
                       {"test_auroc": auroc, "test_auroc_low": auroc - 0.05, "test_auroc_high": auroc + 0.05,
                        "test_auprc": 0.5, "robust_auroc_0": auroc, "robust_auroc_1": auroc - 0.1})
        client.log_param(run_id, "epochs", 3)
        client.log_param(run_id, "weights", "tiny")
        client.log_artifact(run_id, str(tmp_path / "test_predictions.parquet"))
    # a test split without a death: its metrics undefined, the reason a tag (as the trials record it)
    trial({"stage": "static-baseline", "task": "mortality", "architecture": "mlp", "initialisation": "scratch",
           **{f"undefined.test_{m}": "undefined: n = 9, no positive" for m in ("auroc", "auprc", "ace", "bss")}}, {})
    trial({"stage": "sequential", "task": "mortality", "backbone": "llama3-8b", "initialisation": "scratch"}, {},
          status="FAILED")
    wide = {f"test_{m}{end}": value * scale for m, value in (("mse", 8436.503), ("mae", 60.259), ("pearson", 0.4),
                                                              ("spearman", 0.36))
            for end, scale in (("", 1.0), ("_low", 0.59), ("_high", 1.497))}  # the widest cells of a report
    trial({"stage": "static-baseline", "task": "los", "architecture": "lstm", "initialisation": "contrastive"}, wide)
    pretraining = trial({"stage": "pretrain"}, {f"test_{kind}_at_{k}": value * k for k in (1, 5, 10)
                                                for kind, value in (("recall", 0.02), ("random", 0.001))})
    assert pretraining
    mlflow.set_tracking_uri(tracking.uri)
    html = page.build(tracking.uri, "report-test", tmp_path / "report").read_text()

    # what ran, then each table by task with a line on how to read it
    assert "synthetic: 3000 generated stays, seed 0" in html and "56 / 12 / 12" in html
    assert "phi3-mini (tiny random-weight models); up to 3 epochs" in html
    assert "<h3>eICU · in-hospital mortality, predicted at 12 h after ICU admission</h3>" in html
    assert html.count("How to read:") == 1 + 1 + 2 + 1  # what ran, Table 1, Table 3's two tasks, eICU calibration
    assert "0.9154" in html and "0.800<br><small>(0.750-0.850)</small>" in html and "-0.115" in html  # phi3 scratch
    assert "undefined: n = 9, no positive" in html and "trial failed" in html
    assert ("Left out, not in this run's sweep: MLP contrastive, LSTM, biomistral-7b, deepseek-7b, meditron-7b, "
            "llama3-8b contrastive, mistral-7b; their published values are in tables/table3.csv.") in html
    assert "MIMIC-IV in-hospital mortality was not in this run" in html
    assert "<td>not recorded</td>" not in html and "not recorded" in html  # phi3-mini logged no ACE: said so
    table3 = pd.read_csv(tmp_path / "report" / "tables" / "table3.csv", dtype=str).fillna("").set_index(
        ["model", "initialisation"])
    assert table3.loc[("mlp", "scratch"), "mortality auroc ours"] == "undefined: n = 9, no positive"
    assert table3.loc[("mlp", "scratch"), "mortality auroc diff"] == ""
    assert table3.loc[("llama3-8b", "scratch"), "mortality auprc ours"] == "trial failed"
    assert table3.loc[("biomistral-7b", "scratch"), "mortality auroc ours"] == tables.NOT_IN_SWEEP
    assert table3.loc[("lstm", "contrastive"), "los mse ours"] == "8436.503 (4977.537-12629.445)"
    retrieval = pd.read_csv(tmp_path / "report" / "tables" / "table1.csv", dtype=str)
    eicu = retrieval[retrieval["dataset"] == "eicu"].set_index("metric")
    assert eicu.loc["R@1", "masked global ours"] == "2.000%" and eicu.loc["R@1", "improvement ours"] == "20.00"
    assert eicu.loc["R@1", "improvement paper"] == "600.00" and eicu.loc["R@10", "random paper"] == "0.034%"
    assert set(retrieval.loc[retrieval["dataset"] == "mimic", "masked global ours"]) == {tables.NOT_PRETRAINED}
    for name in ("table1", "table2", "table3", "calibration_mimic", "calibration_eicu"):
        for suffix in (".md", ".csv", ".tex"):
            assert (tmp_path / "report" / "tables" / f"{name}{suffix}").is_file()

    # figures: titled and captioned with dataset, task, window, model, initialisation and the counts
    died = int(y.sum())
    for init in ("scratch", "contrastive"):
        subject = f"eICU in-hospital mortality at 12 h after ICU admission, phi3-mini, {init} initialisation"
        assert f"ROC and precision-recall curves: {subject}. Test split: n = 80 stays, {died} died." in html
        assert f"Reliability diagram (calibration): {subject}." in html
    assert "eICU in-hospital mortality: AUROC by events seen" in html
    assert "eICU in-hospital mortality: test AUROC with modalities removed" in html
    assert html.count("data:image/png;base64,") == 6  # two runs' ROC/PR and reliability, by length, robustness
    with pytest.raises(ValueError, match="no MLflow experiment"):
        tables.our_results(tracking.uri, "missing")

    rendered = render(tmp_path / "report" / "report.html")
    body = dict(re.findall(r'data-([a-z-]+)="(\d+)"', re.search(r"<body[^>]*>", rendered).group(0)))
    assert body["window-width"] == "1400"  # the check below ran in a 1,400-pixel window
    assert int(body["scroll-width"]) <= 1400  # nothing wider than the window
    assert body["images"] == body["captions"] == "6" and body["tables"] == "5"  # what ran, Table 1, three by task


def render(path) -> str:
    """The DOM after headless Chromium loaded the page in a 1,400-pixel-wide window."""
    return dump_dom(path.as_uri(), 5000, window=(1400, 900))


def test_console_tables_split_by_task_and_say_why_a_cell_is_empty():
    from clintraj.evaluation.comparison import NOT_RUN, comparison_table, console_tables, markdown

    sequential = pd.DataFrame([  # as tuning.child_results reads trial runs: tags, test metrics, reasons
        {"backbone": "llama3-8b", "initialisation": "scratch", "task": "mortality", "test_auroc": 0.71,
         "test_auroc_low": 0.6, "test_auroc_high": 0.8, "test_auprc": 0.3},
        {"backbone": "llama3-8b", "initialisation": "contrastive", "task": "mortality",
         **{f"undefined.test_{m}": "undefined: n = 9, no positive" for m in ("auroc", "auprc")}},
        {"backbone": "llama3-8b", "initialisation": "scratch", "task": "los", "test_mse": 812.5, "test_mae": 20.25,
         "test_pearson": 0.5, "test_spearman": 0.4}])
    static = pd.DataFrame([{"architecture": "mlp", "initialisation": "scratch", "task": "mortality",
                            "test_auroc": 0.65, "test_auprc": 0.25}])
    table = comparison_table(sequential, static)
    assert list(zip(table["model"], table["initialisation"])) == [
        ("MLP", "scratch"), ("llama3-8b", "scratch"), ("llama3-8b", "contrastive")]
    rows = table.set_index(["model", "initialisation"])
    assert rows.loc[("llama3-8b", "scratch"), "mortality auroc"] == "0.710 (0.600-0.800)"
    assert rows.loc[("llama3-8b", "contrastive"), "mortality auroc"] == "undefined: n = 9, no positive"
    assert rows.loc[("MLP", "scratch"), "los mse"] == NOT_RUN  # the baseline never ran length of stay
    by_task = console_tables(table)  # one headline metric per task, initialisations side by side
    assert list(by_task) == ["mortality", "los"]
    metric, mortality = by_task["mortality"]
    assert metric == "AUROC" and list(mortality.columns) == ["model", "scratch", "contrastive"]
    assert mortality.values.tolist() == [["MLP", "0.650", NOT_RUN],
                                         ["llama3-8b", "0.710 (0.600-0.800)", "undefined: n = 9, no positive"]]
    metric, los = by_task["los"]
    assert metric == "MAE (h)" and los.values.tolist() == [["llama3-8b", "20.250"]]  # only what ran
    assert "| llama3-8b | 0.710 (0.600-0.800) | undefined: n = 9, no positive |" in markdown(mortality)


def test_what_ran_counts_the_pretraining_sweep_the_main_job_runs():
    from types import SimpleNamespace

    from clintraj.reporting.summary import what_ran

    def run(stage: str, epochs: int | None = None):
        params = {"epochs": str(epochs)} if epochs else {}
        return SimpleNamespace(data=SimpleNamespace(tags={"dataset": "mimic", "stage": stage}, params=params, metrics={}),
                               info=SimpleNamespace(status="FINISHED"))

    swept = what_ran([run("dataset"), run("pretrain-sweep"), run("pretrain-trial", 5), run("pretrain-trial", 3)])
    assert swept["pretraining"].item() == "MGA, a sweep of 2 trials; up to 3, 5 epochs"
    assert what_ran([run("dataset"), run("pretrain", 4)])["pretraining"].item() == "MGA; up to 4 epochs"
    assert what_ran([run("dataset")])["pretraining"].item() == "none"
