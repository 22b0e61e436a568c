"""The MEDS reader's counts for the dataset report ("MEDS reading" in report.md): every row's
fate, the codes that map to no modality (by prefix: a code is vocabulary, but some ETLs fold
free text into codes, so only prefixes are listed), the codes missing from
metadata/codes.parquet, how stays and labels were found. Counts only: no subject ids, times,
values or note text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data.meds.codes import CodeRouter
from clintraj.data.meds.config import MedsConfig
from clintraj.data.meds.events import Reading
from clintraj.data.meds.layout import MedsFolder

TOP_PREFIXES = 20  # in report.md
KEPT_PREFIXES = 100  # in report.json; the rest summed under OTHER
OTHER = "(other prefixes)"


def reading_report(metadata: dict, folder: MedsFolder, router: CodeRouter, reading: Reading, counts: dict,
                    label_counts: dict, static_counts: dict, empty: list[str], config: MedsConfig) -> dict:
    """Counts only: no subject ids, times or values."""
    unmapped = np.flatnonzero(reading.unmapped_rows)
    by_prefix = pd.DataFrame({"prefix": [router.prefix(i) for i in unmapped],
                              "rows": reading.unmapped_rows[unmapped]}).groupby("prefix")["rows"].agg(["size", "sum"])
    by_prefix = by_prefix.sort_values("sum", ascending=False, kind="stable")
    if len(by_prefix) > KEPT_PREFIXES:
        rest = by_prefix.iloc[KEPT_PREFIXES:].sum()
        by_prefix = pd.concat([by_prefix.iloc[:KEPT_PREFIXES], rest.to_frame(OTHER).T])
    listed = pd.Series(router.codes)
    known = folder.codes()
    seen = np.flatnonzero(reading.code_rows)
    coverage = None
    if known is not None:
        absent = ~listed.iloc[seen].isin(set(known["code"].to_pylist())).to_numpy()
        coverage = {"codes": int(absent.sum()), "rows": int(reading.code_rows[seen][absent].sum())}
    return {
        "dataset": {k: metadata.get(k) for k in ("dataset_name", "dataset_version", "etl_name", "etl_version",
                                                  "meds_version")},
        "code_map": config.codes, "splits": config.splits,
        "files": len(reading.files), "rows": reading.rows,
        "row_fates": dict(sorted(reading.fates.items())),
        "unmapped_codes": {"codes": int(len(unmapped)), "rows": int(reading.unmapped_rows.sum()),
                           "by_prefix": {p: {"codes": int(r["size"]), "rows": int(r["sum"])}
                                         for p, r in by_prefix.iterrows()}},
        "codes_missing_from_metadata": coverage,  # None: metadata/codes.parquet absent
        "stays": counts, "labels": label_counts or "from the events", "static": static_counts,
        "modalities_without_events": empty,
    }


def render_reading(reading: dict) -> list[str]:
    """report.md's "MEDS reading" section."""
    dataset = ", ".join(f"{k} {v}" for k, v in reading["dataset"].items() if v) or "no metadata/dataset.json"
    lines = ["## MEDS reading", "", f"{dataset}; code map `{reading['code_map']}`; splits: {reading['splits']}.", "",
             f"Every row of the {reading['files']} data files, by what became of it:", "",
             "| rows | count |", "|---|---:|"]
    lines += [f"| {fate} | {count} |" for fate, count in reading["row_fates"].items()]
    lines += [f"| **all** | {reading['rows']} |"]
    unmapped = reading["unmapped_codes"]
    lines += ["", f"Codes that map to no modality: {unmapped['codes']} codes, {unmapped['rows']} rows of the "
              f"cohort's subjects (add them to the code map to use them).", ""]
    if unmapped["by_prefix"]:
        lines += ["| code prefix | codes | rows |", "|---|---:|---:|"]
        prefixes = list(unmapped["by_prefix"].items())
        lines += [f"| {prefix} | {r['codes']} | {r['rows']} |" for prefix, r in prefixes[:TOP_PREFIXES]]
        if len(prefixes) > TOP_PREFIXES:
            rest = prefixes[TOP_PREFIXES:]
            lines.append(f"| {OTHER} | {sum(r['codes'] for _, r in rest)} | {sum(r['rows'] for _, r in rest)} |")
        lines.append("")
    missing = reading["codes_missing_from_metadata"]
    lines.append("metadata/codes.parquet: absent." if missing is None else
                 f"Codes read but missing from metadata/codes.parquet: {missing['codes']} ({missing['rows']} rows).")
    lines += ["", "Stays and outcomes: " + "; ".join(f"{k} {v}" for k, v in reading["stays"].items()) + "."]
    labels = reading["labels"]
    lines.append("Labels: " + (labels if isinstance(labels, str) else "; ".join(
        f"{task} from a label file ({', '.join(f'{k} {v}' for k, v in counts.items())})"
        for task, counts in labels.items())) + ".")
    if reading["static"]:
        lines.append("Static codes: " + "; ".join(f"{k} {v}" for k, v in reading["static"].items()) + ".")
    if reading["modalities_without_events"]:
        lines.append(f"Modalities of the code map with no event (left out): "
                     f"{', '.join(reading['modalities_without_events'])}.")
    return lines
