"""MEDS reading benchmark: the library's MEDS reader against a straightforward pandas reading of
the same folder, on the MIMIC-IV demo's MEDS stream tiled to a few million rows.

    .venv/bin/python bench/meds_reader.py                        # 10 and 20 copies (9.2 M and 18.3 M rows)
    .venv/bin/python bench/meds_reader.py --quick                # 2 copies (1.8 M rows), one run (smoke)
    .venv/bin/python bench/meds_reader.py --copies 5,10 --repeats 5

Setup (not measured): two MEDS folders per size, written once under `--workdir` (default
`bench/.cache`, git-ignored by a `.gitignore` inside it): the demo's 916 k-row stream
(`../shared/data`, PROVENANCE.md) `copies` times, each copy's subject ids shifted, one shard
per copy (the MEDS ETLs shard by subject), row groups of 100 k rows. Cohort `all`: every copy
keeps its ICU stays (every demo subject has one, so nearly every row is the cohort's). Cohort
`fixed`: only the first copy does (the others' ICU codes renamed WARD_...): one cohort in a raw
folder that grows, as the paper's ICU cohorts are a minority of a hospital's patients.

Measured, from the folder to the ICU stays with their mortality labels and the events of each
stay's modalities (the `mimic_iv` code map: lab values, medications, diagnoses, procedures,
the static demographics):

* pandas: what a notebook does: `pd.read_parquet` of every shard (the whole dataset in
  memory), the codes matched with `str.match`, admissions and discharges paired per subject,
  the events merged on subject_id with the stays and kept inside each stay.
* clintraj: `clintraj.data.meds.build` (two streamed passes, schema checks, every row's fate
  counted, the modality tables).

Every run is a fresh spawned child process, the implementations alternating, so its peak RSS
(VmHWM, reset after the imports) is that implementation's alone. rows/s is the folder's rows
over the best run's wall seconds (the best of a few runs estimates a program's speed on a shared
machine, where others' load only adds time). The stays, labels and event counts of the two
are compared. The last line is the headline.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from etl import _peak_rss_mib, _reset_peak_rss  # noqa: E402  (the ETL bench's process measures)

IMPLEMENTATIONS = ("pandas", "clintraj")
ROW_GROUP = 100_000


def folder(workdir: Path, copies: int, cohort: str) -> tuple[Path, int]:
    """(MEDS folder, rows) of the demo stream tiled `copies` times; with cohort "fixed" only the
    first copy has ICU stays."""
    import meds
    import pyarrow as pa
    import pyarrow.parquet as pq
    from meds_folders import quickstart_events, write_meds

    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / ".gitignore").exists():
        (workdir / ".gitignore").write_text("*\n")
    root = workdir / f"meds-demo-x{copies}-{cohort}"
    if not (root / "metadata" / "dataset.json").is_file():
        print(f"writing {root} ...", flush=True)
        events = quickstart_events()
        write_meds(events, root, shards=1, row_group_size=ROW_GROUP)
        shard = pq.read_table(root / "data" / "0.parquet")
        ward = shard.set_column(2, "code", pa.compute.replace_substring_regex(shard["code"], "^ICU_", "WARD_"))
        for copy in range(1, copies):
            source = ward if cohort == "fixed" else shard
            shifted = source.set_column(0, "subject_id", pa.compute.add(source["subject_id"], copy * 10**9))
            pq.write_table(meds.DataSchema.align(shifted), root / "data" / f"{copy}.parquet", row_group_size=ROW_GROUP)
    rows = sum(pq.read_metadata(f).num_rows for f in (root / "data").glob("*.parquet"))
    return root, rows


def pandas_reading(root: Path) -> dict:
    """Stays, mortality and the stays' events, the straightforward pandas way (all rows in memory)."""
    from clintraj.data.meds.config import any_of, load_code_map

    code_map = load_code_map("mimic_iv")
    df = pd.concat([pd.read_parquet(f) for f in sorted((root / "data").rglob("*.parquet"))], ignore_index=True)

    def matching(patterns):
        return df["code"].str.match(any_of(patterns), flags=re.DOTALL)

    def intervals(admission, discharge):
        rows = df.loc[matching(admission) | matching(discharge), ["subject_id", "time", "code"]]
        rows = rows.assign(opens=matching(admission)[rows.index]).sort_values(["subject_id", "time", "opens"])
        after = rows.shift(-1)
        paired = rows["opens"] & ~after["opens"].astype(bool) & (after["subject_id"] == rows["subject_id"])
        return pd.DataFrame({"subject_id": rows["subject_id"][paired], "start": rows["time"][paired],
                             "end": after["time"][paired], "code": after["code"][paired]})

    stays = intervals(code_map.stays.admission, code_map.stays.discharge).reset_index(drop=True)
    outcomes = intervals(code_map.outcome.admission, code_map.outcome.discharge)
    pairs = stays.reset_index(names="stay").merge(outcomes, on="subject_id", suffixes=("", "_outcome"))
    pairs["overlap"] = pairs[["end", "end_outcome"]].min(axis=1) - pairs[["start", "start_outcome"]].max(axis=1)
    best = pairs[pairs["overlap"] > pd.Timedelta(0)].sort_values("overlap").groupby("stay").tail(1).set_index("stay")
    stays["died"] = best["code_outcome"].reindex(stays.index).str.match(any_of(code_map.death)).astype(float)
    events = {}
    for name, modality in code_map.modalities.items():
        if modality.kind == "static":
            continue
        rows = df[matching(modality.codes) & df["time"].notna()]
        if modality.kind == "text":
            rows = rows[rows["text_value"].notna()] if "text_value" in rows else rows.iloc[:0]
        joined = rows.merge(stays.reset_index(names="stay")[["stay", "subject_id", "start", "end"]], on="subject_id")
        joined = joined[(joined["time"] >= joined["start"]) & (joined["time"] <= joined["end"])]
        joined["time_hours"] = (joined["time"] - joined["start"]) / pd.Timedelta(hours=1)
        if len(joined):
            events[name] = len(joined)
    return {"stays": len(stays), "died": int(stays["died"].sum()), "events": events}


def clintraj_reading(root: Path) -> dict:
    from clintraj.data import meds

    cohort = meds.build(root)
    fates = cohort.reading["row_fates"]
    events = {name: len(frame) for name, frame in cohort.events.items() if name != "demographics"}
    events["lab"] += fates.get("quarantined: numeric code without a numeric_value", 0)  # kept out, counted
    return {"stays": len(cohort.stays), "died": int(cohort.stays["died"].sum()), "events": events}


def _child(name: str, root: str, queue) -> None:
    import clintraj.data.meds  # noqa: F401  (imports are not the reading)
    import pyarrow.dataset  # noqa: F401

    _reset_peak_rss()
    start, cpu = time.perf_counter(), time.process_time()
    result = {"pandas": pandas_reading, "clintraj": clintraj_reading}[name](Path(root))
    queue.put({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "peak": _peak_rss_mib(),
               "result": result})


def run(name: str, root: Path) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(name, str(root), queue))
    child.start()
    out = queue.get()
    child.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", default="10,20", help="sizes: copies of the 916 k-row demo stream")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 copies, one run")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache")
    args = parser.parse_args()
    sizes = [2] if args.quick else [int(c) for c in args.copies.split(",")]
    repeats = 1 if args.quick else args.repeats
    print(f"{'rows':>11} {'cohort':6} {'impl':9} {'best s':>7} {'median':>7} {'CPU s':>7} {'rows/s':>11} "
          f"{'peak RSS MiB':>12} {'speed-up':>8} {'memory':>7}")
    summary = {}
    for copies, cohort in [(c, k) for c in sizes for k in ("all", "fixed")]:
        root, rows = folder(args.workdir, copies, cohort)
        runs = {name: [] for name in IMPLEMENTATIONS}
        for _ in range(repeats):
            for name in IMPLEMENTATIONS:
                runs[name].append(run(name, root))
        results = {name: runs[name][0]["result"] for name in IMPLEMENTATIONS}
        if results["pandas"] != results["clintraj"]:
            raise SystemExit(f"the two readings differ at {rows:,} rows: {results}")
        best = {name: min(r["seconds"] for r in runs[name]) for name in IMPLEMENTATIONS}
        peak = {name: max(r["peak"] for r in runs[name]) for name in IMPLEMENTATIONS}
        for name in IMPLEMENTATIONS:
            median = float(np.median([r["seconds"] for r in runs[name]]))
            cpu = min(r["cpu"] for r in runs[name])
            print(f"{rows:>11,} {cohort:6} {name:9} {best[name]:7.2f} {median:7.2f} {cpu:7.2f} {rows / best[name]:>11,.0f} "
                  f"{peak[name]:>12,.0f} {best['pandas'] / best[name]:>7.1f}x {peak['pandas'] / peak[name]:>6.1f}x")
        summary[cohort] = (rows, best["pandas"] / best["clintraj"], peak["pandas"] / peak["clintraj"])
        print(f"  same stays ({results['clintraj']['stays']:,}), deaths and events per modality", flush=True)
    for cohort, (rows, speed, memory) in summary.items():
        print(f"cohort {cohort} at {rows / 1e6:.1f}M rows: clintraj {speed:.1f}x pandas' rows/s, "
              f"{memory:.1f}x less peak RSS")
    rows, speed, _ = summary["all"]
    print(f"headline: MEDS reading speed-up vs pandas at {rows / 1e6:.1f}M rows (every row the cohort's) = {speed:.1f}x")


if __name__ == "__main__":
    main()
