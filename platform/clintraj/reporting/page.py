"""The report folder of an experiment: the paper's tables beside ours (Markdown, CSV, LaTeX),
figures, and one self-contained HTML page (images inlined) that shows all of it."""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj import disclosure
from clintraj.reporting import tables

TITLES = {"table2": "Table 2: MIMIC-IV mortality and phenotyping", "table3": "Table 3: eICU mortality and length of stay",
          "calibration_mimic": "Appendix C: MIMIC-IV calibration", "calibration_eicu": "Appendix C: eICU calibration"}


def performance_by_length(predictions: dict[str, pd.DataFrame], path: Path,
                          lengths=(1, 2, 4, 8, 16, 32, 64)) -> Path | None:
    """AUROC of the prediction after the k-th event, over stays with at least k events (appendix A.11-A.16)."""
    from sklearn.metrics import roc_auc_score

    from clintraj.evaluation.plots import _save, plt

    figure, axis = plt.subplots(figsize=(6, 4))
    drawn = False
    for name, frame in predictions.items():
        points = []
        for k in lengths:
            rows = frame[frame["n_events"] >= k]
            y = np.array([np.asarray(v).ravel()[0] for v in rows["y"]])
            if len(rows) >= 10 and 0 < y.sum() < len(y):
                score = np.array([np.asarray(v)[k - 1] for v in rows["output_by_event"]])
                points.append((k, roc_auc_score(y, score)))
        if points:
            axis.plot(*zip(*points), "o-", label=name)
            drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axis.set(xscale="log", xlabel="events seen", ylabel="AUROC", title="mortality AUROC by events seen")
    axis.legend(fontsize=6)
    return _save(figure, path)


def robustness_curves(curves: dict[str, dict[str, float]], path: Path) -> Path | None:
    """Test metric vs the number of modalities removed per stay (contrastive solid, scratch dashed)."""
    from clintraj.evaluation.plots import _save, plt

    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(6, 4))
    for label, metrics in curves.items():
        points = sorted((int(key.rsplit("_", 1)[1]), value) for key, value in metrics.items())
        axis.plot(*zip(*points), "--" if "scratch" in label else "-", marker="o", label=label)
    metric = next(iter(next(iter(curves.values())))).split("_")[1]
    axis.set(xlabel="modalities removed per stay at test time", ylabel=metric.upper(), title="robustness to missing modalities")
    axis.legend(fontsize=6)
    return _save(figure, path)


def build(tracking_uri: str, experiment: str, out: Path) -> Path:
    """Write the report folder; return the HTML page."""
    from mlflow.tracking import MlflowClient

    out = Path(out)
    ours, paper = tables.our_results(tracking_uri, experiment), tables.published()
    retrieval = tables.table1(ours, paper)
    tables.write(retrieval, out / "tables", "table1")
    sections = ["<h2>Table 1: cross-modal retrieval of the pretrained encoders</h2>\n"
                + retrieval.to_html(index=False, na_rep="", border=0)]
    for name, title in TITLES.items():
        table = tables.side_by_side(ours, paper, name)
        tables.write(table, out / "tables", name)
        seen = tables.windows_seen(ours, name)
        note = f"<p>What each task saw: {html.escape(seen)}.</p>\n" if seen else ""
        sections.append(f"<h2>{html.escape(title)}</h2>\n{note}" + table.to_html(index=False, na_rep="", border=0))
    client = MlflowClient(tracking_uri)
    figures, predictions, curves = [], {}, {}
    for run_id in ours.loc[ours["model"].isin(tables.MODEL_ORDER[2:]), "run_id"].unique():
        run = client.get_run(run_id)
        label = f"{run.data.tags['backbone']} {run.data.tags['initialisation']} {run.data.tags['task']}"
        robust = {k: v for k, v in run.data.metrics.items() if k.startswith("robust_")}
        if robust and run.data.tags["task"] == "mortality":
            curves[label] = robust
        with tempfile.TemporaryDirectory() as scratch:
            for artifact in client.list_artifacts(run_id, "figures"):
                local = Path(client.download_artifacts(run_id, artifact.path, scratch))
                target = out / "figures" / f"{label.replace(' ', '_')}_{local.name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(local.read_bytes())
                figures.append((label, target))
            if run.data.tags["task"] == "mortality":
                local = client.download_artifacts(run_id, "test_predictions.parquet", scratch)
                predictions[label] = pd.read_parquet(local)
    by_length = performance_by_length(predictions, out / "figures" / "by_length.png")
    if by_length:
        figures.append(("performance by events seen", by_length))
    robust = robustness_curves(curves, out / "figures" / "robustness.png")
    if robust:
        figures.append(("robustness to missing modalities", robust))
    images = "\n".join(f"<figure><img alt='{html.escape(label)}' src='data:image/png;base64,"
                       f"{base64.b64encode(path.read_bytes()).decode()}'><figcaption>{html.escape(label)}"
                       "</figcaption></figure>" for label, path in figures)
    page = out / "report.html"
    page.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>clintraj report: {html.escape(experiment)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px}} figure{{display:inline-block;margin:8px}} img{{max-width:520px}}</style></head>
<body><h1>clintraj report: {html.escape(experiment)}</h1>
<p>Ours: test metrics with 95% bootstrap CIs from MLflow. Paper: the published values; diff = ours - paper.</p>
{''.join(sections)}
<h2>Figures</h2>
{images}
<script>/* for headless checks: how many tables and decoded images the browser rendered */
window.addEventListener("load", () => {{
  document.body.dataset.tables = document.querySelectorAll("table").length;
  document.body.dataset.images = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
}});</script>
</body></html>
""")
    return page


def build_and_log(tracking, experiment: str, out: Path) -> Path:
    """`build`, then log the folder to a "report" run of the experiment."""
    import mlflow

    html_page = build(tracking.uri, experiment, out)
    mlflow.set_tracking_uri(tracking.uri)
    with mlflow.start_run(experiment_id=tracking.experiment(experiment), run_name="report") as run:
        mlflow.set_tag("stage", "report")
        disclosure.log_artifacts(mlflow.tracking.MlflowClient(), run.info.run_id, out, "report")
    return html_page
