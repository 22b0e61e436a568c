"""The report folder of an experiment: the paper's tables beside ours (Markdown, CSV, LaTeX),
figures, and one self-contained HTML page (images inlined) that shows all of it: first what ran,
then each table split by task with a line on how to read it, then the figures by dataset and task.

The page is sized for a 1,400-pixel-wide window: wide tables are split by task, a confidence
interval wraps below its value, and images scale to their column. Rows of the paper's tables that
this run did not train are left out of the page with a note (the CSV files keep every row)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from clintraj import disclosure, names
from clintraj.reporting import figures as report_figures, summary, tables
from clintraj.tracking import owner_tags

TITLES = {"table2": "Table 2: MIMIC-IV mortality and phenotyping", "table3": "Table 3: eICU mortality and length of stay",
          "calibration_mimic": "Appendix C: MIMIC-IV calibration", "calibration_eicu": "Appendix C: eICU calibration"}
HOW_TO_READ = {
    "table1": "Recall@K: the share of test stays whose embedding from one modality finds the same stay's "
              "embedding from another among its K nearest (mean over modality pairs); random: what chance "
              "gives with this many candidates; improvement = ours / random. Higher is better.",
    "classification": "One row per model and how its encoders were initialised (scratch: random; contrastive: "
                      "MGA-pretrained). Ours: the test-split value, its 95% bootstrap interval below; paper: as "
                      "published; Δ = ours − paper. AUROC (0.5 = chance) and AUPRC (chance = the share of "
                      "positives): higher is better.",
    "los": "One row per model and initialisation, as above. MSE (h²) and MAE (h) of the predicted length of "
           "stay: lower is better; Pearson r and Spearman ρ with the true one: higher is better.",
    "calibration": "One row per model and initialisation, as above. ACE (adaptive calibration error over "
                   "equal-mass bins): lower is better. BSS (Brier skill score against predicting the training "
                   "prevalence): higher is better, 0 is no better than the prevalence.",
}
STYLE = """body{font-family:sans-serif;margin:0 auto;padding:1em 2em;max-width:1320px;font-size:14px}
table{border-collapse:collapse;font-size:12px;margin:.4em 0 1em}
td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;overflow-wrap:anywhere}
th{background:#f4f4f4;text-align:left} table.what th{white-space:nowrap}
td small{color:#555} .why{color:#8a4b00;font-style:italic}
p.how,p.note{max-width:1100px} p.how{color:#333} p.note{color:#8a4b00}
.figures{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:12px} figure.wide{grid-column:span 2}
figure{margin:0} img{max-width:100%;height:auto;border:1px solid #eee} figcaption{font-size:12px}"""


def _ours(text: str) -> str:
    """A cell of ours for the page: the interval on its own line, a reason set apart."""
    if text.startswith(("undefined", "trial", "not ")):
        return f"<span class='why'>{html.escape(text)}</span>"
    value, _, interval = text.partition(" (")
    return html.escape(value) + (f"<br><small>({html.escape(interval)}</small>" if interval else "")


def task_section(side: pd.DataFrame, table: str, task: str, metrics: tuple[str, ...], window: str | None) -> str:
    """One task's part of one of tables.TABLES: the rows this run trained, metrics grouped over
    (ours, paper, Δ), a how-to-read line, and a note on the rows left out."""
    dataset = tables.TABLES[table][0]
    heading = f"<h3>{html.escape(names.section(dataset, task, window))}</h3>\n"
    ran = (side[[f"{task} {m} ours" for m in metrics]] != tables.NOT_IN_SWEEP).any(axis=1)
    if not ran.any():
        return (heading + f"<p class='note'>{names.dataset(dataset)} {names.task(task)} was not in this run: the "
                f"published values alone are in tables/{table}.csv.</p>\n")
    shown = side[ran]
    frame = pd.DataFrame({(names.metric(m), part): shown[f"{task} {m} {column}"].map(render)
                          for m in metrics for part, column, render in (("ours", "ours", _ours),
                                                                        ("paper", "paper", html.escape),
                                                                        ("Δ", "diff", html.escape))})
    frame.index = pd.MultiIndex.from_arrays([shown["model"].map(names.model), shown["initialisation"]],
                                            names=["model", "initialisation"])
    kind = "calibration" if table.startswith("calibration") else "los" if task == "los" else "classification"
    left = side[~ran].groupby("model")["initialisation"].agg(list)
    left = left.reindex([model for model in tables.MODEL_ORDER if model in left.index])
    rows = [names.model(model) + ("" if len(inits) == len(tables.INIT_ORDER) else f" {inits[0]}")
            for model, inits in left.items()]
    note = (f"<p class='note'>Left out, not in this run's sweep: {html.escape(', '.join(rows))}; their published "
            f"values are in tables/{table}.csv.</p>\n") if rows else ""
    return (heading + f"<p class='how'>How to read: {HOW_TO_READ[kind]}</p>\n"
            + frame.to_html(escape=False, border=0, na_rep="") + "\n" + note)


def _windows(ours: pd.DataFrame) -> dict[tuple[str, str], str]:
    seen = ours.dropna(subset=["window"]).drop_duplicates(["dataset", "task"])
    return {(row.dataset, row.task): row.window for row in seen.itertuples()}


def _image(figure: report_figures.Figure, number: int) -> str:
    data = base64.b64encode(figure.path.read_bytes()).decode()
    caption = html.escape(figure.caption)
    return (f"<figure{' class=wide' if figure.wide else ''}><img alt='{caption}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>Figure {number}.</b> {caption}</figcaption></figure>")


def build(tracking_uri: str, experiment: str, out: Path) -> Path:
    """Write the report folder; return the HTML page."""
    from mlflow.tracking import MlflowClient

    out = Path(out)
    client = MlflowClient(tracking_uri)
    ours, paper = tables.our_results(tracking_uri, experiment), tables.published()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    ran = summary.what_ran(client.search_runs([experiment_id]))
    windows = _windows(ours)
    sections = ["<h2>What ran</h2>\n<p class='how'>How to read: one row per dataset; the data's source, its stays "
                "per split, each task with the time its predictions are made, and each stage's models. Every model "
                "ran twice, on scratch and on contrastive (MGA-pretrained) encoders.</p>\n"
                + ran.to_html(index=False, border=0, classes="what", justify="left")]
    retrieval = tables.table1(ours, paper)
    tables.write(retrieval, out / "tables", "table1")
    sections.append("<h2>Table 1: cross-modal retrieval of the pretrained encoders (test split)</h2>\n"
                    f"<p class='how'>How to read: {HOW_TO_READ['table1']}</p>\n"
                    + retrieval.assign(dataset=retrieval["dataset"].map(names.dataset)).to_html(index=False, border=0))
    for name, title in TITLES.items():
        side = tables.side_by_side(ours, paper, name)
        tables.write(side, out / "tables", name)
        dataset, tasks = tables.TABLES[name]
        sections.append(f"<h2>{html.escape(title)}</h2>\n" + "".join(
            task_section(side, name, task, metrics, windows.get((dataset, task))) for task, metrics in tasks.items()))
    found = report_figures.collect(client, experiment_id, out)
    backbones = ours[~ours["model"].isin(tables.MODEL_ORDER[:2]) & (ours["task"] != "pretraining")]
    tried = set(zip(backbones["dataset"], backbones["task"]))  # a backbone ran, or failed to
    groups = [g for g in report_figures.SECTIONS if g in tried] + sorted(tried - set(report_figures.SECTIONS), key=str)
    number, parts = 0, []
    for group in groups:
        images = []
        for figure in (f for f in found if f.group == group):
            number += 1
            images.append(_image(figure, number))
        shown = (f"<div class='figures'>{''.join(images)}</div>" if images
                 else "<p class='note'>No backbone run of this task finished: no figures.</p>")
        parts.append(f"<h3>{html.escape(names.section(*group, windows.get(group)))}</h3>\n{shown}")
    figures_html = "\n".join(parts) or "<p class='note'>No backbone ran: no figures.</p>"
    page = out / "report.html"
    title = f"clintraj report: {html.escape(experiment)}"
    page.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head>
<body><h1>{title}</h1>
<p>Ours: test metrics with 95% bootstrap intervals, read from MLflow. Paper: the published values.
A value of ours that is missing says why: undefined on this test split (with its counts), a failed trial,
or not in this run.</p>
{''.join(sections)}
<h2>Figures</h2>
{figures_html}
<script>/* for headless checks: what the browser rendered, and how wide */
window.addEventListener("load", () => {{
  const data = document.body.dataset;
  data.tables = document.querySelectorAll("table").length;
  data.images = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  data.captions = document.querySelectorAll("figure figcaption").length;
  data.scrollWidth = document.documentElement.scrollWidth;
  data.windowWidth = window.innerWidth;
}});</script>
</body></html>
""")
    return page


def build_and_log(tracking, experiment: str, out: Path) -> Path:
    """`build`, then log the folder to a "report" run of the experiment."""
    import mlflow

    html_page = build(tracking.uri, experiment, out)
    mlflow.set_tracking_uri(tracking.uri)
    with mlflow.start_run(experiment_id=tracking.experiment(experiment), run_name="report", tags=owner_tags()) as run:
        mlflow.set_tag("stage", "report")
        disclosure.log_artifacts(mlflow.tracking.MlflowClient(), run.info.run_id, out, "report")
    return html_page
