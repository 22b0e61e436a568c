"""Time-series ETL benchmark: the library's MIMIC-IV time-series step against a
straightforward pandas implementation, on synthetic chartevents of 1 M and 10 M rows.

    .venv/bin/python bench/etl.py                      # 1 M and 10 M rows
    .venv/bin/python bench/etl.py --quick              # ~200 k rows, one repeat (smoke run)
    .venv/bin/python bench/etl.py --rows 1000000,3000000 --repeats 5
    .venv/bin/python bench/etl.py --density 4500 --rows 10000000,100000000 --repeats 2

`--density N`: MIMIC-IV's real chart density, N chart rows a stay, nearly all of items
outside the 17 variables (the generator's `chart_rows_per_stay`; real MIMIC-IV: 314 M rows,
73 k stays). The pandas baselines hold the whole table in memory (2.3 to 6.2 GiB at 10 M
rows), so they run only up to `PANDAS_MAX_ROWS`; above it the library's step runs alone, and the
run ends with its linear extrapolation to MIMIC-IV's 314 M rows (an extrapolation, not a
measurement) against the goal of 15 minutes and 2 GiB on 2 cores.

Setup (not measured): a synthetic raw MIMIC-IV folder per size, written once by
`clintraj.data.synthetic.generate` and cached under `--workdir` (default
`bench/.cache`, git-ignored by a `.gitignore` inside it), and the cohort's ICU stays.

Measured: the time-series step from the raw `icu/chartevents.csv.gz` to the hourly
events (17 variables, carry-forward, normal values, masks), chartevents only
(`use_labevents=False`; the baseline reads no labevents either):

* pandas: what a notebook does: `pd.read_csv` of the whole file, filter items and
  stays, parse charttime, clean values and units, drop duplicates, GCS total, bin to
  hours, groupby mean (categorical: last), unstack, carry forward.
* pandas-fmt: the same, told charttime's format (`pd.to_datetime(..., format=...)`), a
  tuned baseline.
* clintraj: `clintraj.data.mimic.measurements.time_series` (it also computes the per-stay summary).

Every run is a fresh spawned child process, the implementations alternating, so its peak
RSS (VmHWM, reset after the setup) is that implementation's alone; its wall and CPU
seconds are measured inside it. Two cohorts per size: `all` (every stay: the output
grows with the table) and `fixed` (the first stays, as many as the smallest size has: a
growing raw table for one cohort, the case of the paper's 16.7 k-stay cohort in the
330 M-row chartevents). The speed-up is pandas' best run over this one's best (the best
of a few runs estimates a program's speed on a shared machine, where others' load only
adds time); the ratios of the medians and of the CPU seconds are printed beside it. The
outputs are compared on the smallest size. The last line is the headline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clintraj.data.mimic import tables as mt

ROWS_PER_STAY = 86  # synthetic chartevents rows per stay with presence time_series=1.0 (measured)
PANDAS_MAX_ROWS = 20_000_000  # the baselines hold the table in memory: 2.3 to 6.2 GiB at 10 M rows; 24 GiB here
MIMIC_IV_CHART_ROWS = 314_000_000
GOAL_MINUTES, GOAL_GIB = 15, 2
PRESENCE = {"time_series": 1.0, "cxr": 0.0, "discharge_note": 0.0, "radiology_note": 0.0}
SEED = 11
IMPLEMENTATIONS = ("pandas", "pandas-fmt", "clintraj")


# --- setup --------------------------------------------------------------------------------


def dataset(workdir: Path, rows: int, density: int = 0) -> tuple[Path, int]:
    """(raw folder, chartevents rows) of a synthetic MIMIC-IV folder with about `rows` rows;
    `density` > 0: that many chart rows a stay (other items fill up to it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = workdir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    raw = workdir / (f"mimic-{rows}-density{density}" if density else f"mimic-{rows}")
    done = raw / "bench.json"
    if not done.is_file():
        from clintraj.data.synthetic import generate

        n_stays = max(rows // (density or ROWS_PER_STAY), 10)
        print(f"generating {raw} ({n_stays} stays, about {rows:,} chartevents rows) ...", flush=True)
        start = time.perf_counter()
        written = generate("mimic", raw, n_stays, SEED, presence=PRESENCE, progress=False,
                           chart_rows_per_stay=density)
        for bulky in ("mimic-cxr-jpg/files",):  # JPEGs: not needed here
            _remove_tree(raw / bulky)
        done.write_text(json.dumps({"chartevents_rows": written[mt.CHARTEVENTS.path], "stays": n_stays}))
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return raw, json.loads(done.read_text())["chartevents_rows"]


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()


def cohort_stays(raw: Path, limit: int | None) -> pd.DataFrame:
    """The valid ICU stays (sorted by stay_id), the first `limit` of them when given."""
    from clintraj.data.mimic.stays import load_stays
    from clintraj.data.rawio import Quarantine

    stays, _ = load_stays(raw, Quarantine())
    return stays if limit is None else stays.head(limit).reset_index(drop=True)


# --- the two implementations -----------------------------------------------------------------------


def pandas_time_series(raw: Path, stays: pd.DataFrame, datetime_format: str | None = None) -> pd.DataFrame:
    """Hourly events of the 17 variables, the straightforward pandas way (whole file in memory).
    `datetime_format`: None parses charttime as a notebook does (`pd.to_datetime(column)`)."""
    df = pd.read_csv(raw / mt.CHARTEVENTS.path)
    df = df[df["itemid"].isin(list(mt.ITEMID_TO_VARIABLE)) & df["stay_id"].isin(stays["stay_id"])]
    df = df.merge(stays[["stay_id", "intime", "outtime"]], on="stay_id")
    df["charttime"] = pd.to_datetime(df["charttime"], format=datetime_format)
    df = df[(df["charttime"] >= df["intime"]) & (df["charttime"] <= df["outtime"])]
    df["variable"] = df["itemid"].map(mt.ITEMID_TO_VARIABLE)

    # values: valuenum; GCS answers and capillary refill from the text
    value = pd.to_numeric(df["valuenum"], errors="coerce")
    for name, answers in mt.GCS_TEXT_TO_NUMERIC.items():
        rows = (df["variable"] == name) & value.isna()
        value[rows] = df.loc[rows, "value"].map(dict(answers))
    rows = df["variable"] == "Capillary refill rate"
    value[rows] = df.loc[rows, "value"].map(dict(mt.CAPILLARY_REFILL_TEXT_TO_NUMERIC))
    df["value"] = value
    df = df[np.isfinite(df["value"])]
    df = df.sort_values(["stay_id", "charttime"], kind="stable")
    df = df.drop_duplicates(["stay_id", "charttime", "itemid", "value"])

    # units
    df.loc[df["itemid"].isin(mt.FAHRENHEIT_ITEMIDS), "value"] = (df["value"] - 32) * 5 / 9
    df.loc[df["itemid"].isin(mt.POUND_ITEMIDS), "value"] = df["value"] * 0.45359237
    df.loc[df["itemid"].isin(mt.INCH_ITEMIDS), "value"] = df["value"] * 2.54
    df.loc[(df["variable"] == "Fraction inspired oxygen") & (df["value"] > 1), "value"] = df["value"] / 100
    df.loc[(df["variable"] == "Oxygen saturation") & (df["value"] <= 1), "value"] = df["value"] * 100

    # mimic3-benchmarks' bounds: outliers removed, the rest clipped to the valid range
    from clintraj.data.mimic.ranges import load_ranges

    bounds = pd.DataFrame(load_ranges(), index=list(mt.VARIABLES)).reindex(df["variable"]).to_numpy()
    inside = ((df["value"] >= bounds[:, 0]) & (df["value"] <= bounds[:, 3])).to_numpy()
    df, bounds = df[inside], bounds[inside]
    df["value"] = df["value"].clip(bounds[:, 1], bounds[:, 2])

    # GCS total: eye + motor + verbal charted at the same time
    gcs = df[df["variable"].str.startswith("Glascow")]
    parts = gcs.pivot_table(index=["stay_id", "charttime"], columns="variable", values="value", aggfunc="last")
    total = parts.dropna().sum(axis=1).rename("value").reset_index()
    total["variable"] = "Glascow coma scale total"
    total = total.merge(stays[["stay_id", "intime", "outtime"]], on="stay_id")
    df = pd.concat([df, total], ignore_index=True).sort_values(["stay_id", "charttime"], kind="stable")

    # hourly bins from intime (a value at outtime goes to the last bin), mean / last per bin
    df["hours"] = (df["charttime"] - df["intime"]) / pd.Timedelta(hours=1)
    last_bin = np.maximum(np.ceil((df["outtime"] - df["intime"]) / pd.Timedelta(hours=1)) - 1, 0)
    df["bin"] = np.floor(np.minimum(df["hours"], last_bin)).astype(int)
    categorical = df["variable"].isin(mt.CATEGORICAL_VARIABLES)
    means = df[~categorical].groupby(["stay_id", "bin", "variable"])["value"].mean()
    lasts = df[categorical].groupby(["stay_id", "bin", "variable"])["value"].last()
    wide = pd.concat([means, lasts]).unstack("variable").reindex(columns=list(mt.VARIABLES)).sort_index()
    mask = wide.notna()
    from clintraj.data.mimic.measurements import normal_values

    events = wide.groupby(level="stay_id").ffill().fillna(normal_values()).reset_index()
    events = events.rename(columns={"bin": "time_hours"}).astype({"time_hours": "float64"})
    for name in mt.VARIABLES:
        events[f"mask:{name}"] = mask[name].to_numpy()
    events.columns.name = None
    return events


def clintraj_time_series(raw: Path, stays: pd.DataFrame) -> pd.DataFrame:
    """The library's time-series step (chartevents only), its bins by start time as the baseline's."""
    from clintraj.data.mimic.config import MimicConfig
    from clintraj.data.mimic.measurements import discretize, load_measurements
    from clintraj.data.rawio import Quarantine

    config = MimicConfig(use_labevents=False, progress=False)
    measurements, _ = load_measurements(raw, stays, config, Quarantine())
    return discretize(measurements, config.bin_hours)


def _implementation(name: str):
    return {"pandas": pandas_time_series, "clintraj": clintraj_time_series,
            "pandas-fmt": lambda raw, stays: pandas_time_series(raw, stays, "%Y-%m-%d %H:%M:%S")}[name]


# --- measuring in child processes --------------------------------------------------------------------


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Start the peak over from the current resident size (Linux >= 4.0), so the peak is the step's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _child(name: str, raw: str, limit: int | None, save: str | None, queue) -> None:
    stays = cohort_stays(Path(raw), limit)
    _reset_peak_rss()
    setup = _peak_rss_mib()
    cpu, start = time.process_time(), time.perf_counter()
    events = _implementation(name)(Path(raw), stays)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _peak_rss_mib()
    if save:
        events.to_pickle(save)
    queue.put({"seconds": seconds, "cpu": cpu, "peak_mib": peak, "setup_mib": setup, "bins": len(events),
               "load": _load()})


def measure(name: str, raw: Path, limit: int | None, save: Path | None = None) -> dict:
    """Run one implementation in a fresh spawned process: wall and CPU seconds, peak RSS."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, str(raw), limit, str(save) if save else None, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"{name} child failed with exit code {process.exitcode}")
    return result


def compare(baseline: pd.DataFrame, ours: pd.DataFrame) -> str:
    """Bins and values of the two outputs: equal (within 1e-9) or an AssertionError."""
    keys = ["stay_id", "time_hours"]
    baseline = baseline.sort_values(keys).reset_index(drop=True)
    ours = ours.sort_values(keys).reset_index(drop=True)
    assert len(baseline) == len(ours), f"bins: pandas {len(baseline)} vs clintraj {len(ours)}"
    assert (baseline[keys].to_numpy() == ours[keys].to_numpy()).all(), "different (stay_id, time_hours) bins"
    masks = [f"mask:{v}" for v in mt.VARIABLES]
    assert (baseline[masks].to_numpy() == ours[masks].to_numpy()).all(), "different masks"
    values = list(mt.VARIABLES)
    difference = np.abs(baseline[values].to_numpy(float) - ours[values].to_numpy(float)).max()
    assert difference <= 1e-9, f"values differ by up to {difference}"
    return f"{len(ours):,} bins, {int(ours[masks].to_numpy().sum()):,} measured values, max |diff| {difference:.1e}"


# --- main --------------------------------------------------------------------------------------------


def _label(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows / 1e3:g}k"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="chartevents sizes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="one small size (~200 k rows), one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation and size (median kept)")
    parser.add_argument("--density", type=int, default=0,
                        help="chart rows per stay, other items included (MIMIC-IV: ~4,300); 0: the 17 variables only")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache")
    args = parser.parse_args(argv)
    sizes = [200_000] if args.quick else [int(r) for r in args.rows.split(",")]
    repeats = 1 if args.quick else args.repeats

    folders = {size: dataset(args.workdir, size, args.density) for size in sizes}
    smallest = min(sizes)
    fixed_stays = len(cohort_stays(folders[smallest][0], None))
    print(f"load average before measuring: {_load()}", flush=True)

    # same output: every implementation on the smallest size
    if folders[smallest][1] <= PANDAS_MAX_ROWS:
        saved = {name: args.workdir / f"events-{name}.pkl" for name in IMPLEMENTATIONS}
        for name in IMPLEMENTATIONS:
            measure(name, folders[smallest][0], None, saved[name])
        outputs = {name: pd.read_pickle(path) for name, path in saved.items()}
        for path in saved.values():
            path.unlink()
        checks = [compare(outputs["pandas"], outputs[name]) for name in IMPLEMENTATIONS[1:]]
        print(f"outputs equal at {folders[smallest][1]:,} rows: {checks[-1]}", flush=True)
        del outputs

    results = []
    for size in sizes:
        raw, rows = folders[size]
        cohorts = [("all", None)] + ([("fixed", fixed_stays)] if size != smallest else [])
        names = IMPLEMENTATIONS if rows <= PANDAS_MAX_ROWS else ("clintraj",)
        if rows > PANDAS_MAX_ROWS:
            print(f"  {rows:,} rows: the pandas baselines skipped (they hold the whole table in memory: 2.3 to "
                  f"6.2 GiB at 10 M rows)")
        for cohort, limit in cohorts:
            runs = {name: [] for name in names}
            for k in range(repeats):
                for name in (names if k % 2 == 0 else names[::-1]):  # alternate the order
                    runs[name].append(measure(name, raw, limit))
                    run = runs[name][-1]
                    print(f"  {rows:>11,} {cohort:5} {name:10} {run['seconds']:7.2f} s {run['cpu']:7.2f} s CPU "
                          f"{run['peak_mib']:7,.0f} MiB  load {run['load']}", flush=True)
            results += summary(rows, cohort, runs)

    print()
    print(f"{'rows':>11} {'cohort':6} {'impl':10} {'best s':>7} {'median':>7} {'CPU s':>7} {'rows/s':>11} "
          f"{'peak RSS MiB':>12} {'(before)':>8} {'speed-up':>8} {'median':>7} {'CPU':>6}")
    for r in results:
        ratios = (f"{r['speedup']:7.1f}x {r['speedup_median']:6.1f}x {r['speedup_cpu']:5.1f}x" if "speedup" in r
                  else f"{'-':>8} {'-':>7} {'-':>6}")
        print(f"{r['rows']:>11,} {r['cohort']:6} {r['impl']:10} {r['best']:7.2f} {r['median']:7.2f} {r['cpu']:7.2f} "
              f"{r['rows'] / r['best']:11,.0f} {r['peak_mib']:12,.0f} {r['setup_mib']:8,.0f} {ratios}")
    largest = folders[max(sizes)][1]
    if largest > PANDAS_MAX_ROWS:
        extrapolate(results, largest, _label(max(sizes)), repeats, args.density)
        return
    ours = next(r for r in results if (r["impl"], r["cohort"], r["rows"]) == ("clintraj", "all", largest))
    tuned = next(r for r in results if (r["impl"], r["cohort"], r["rows"]) == ("pandas-fmt", "all", largest))
    print(f"best of {repeats} runs each (speed-up: pandas' best / this one's best; median: of the medians; CPU: of "
          f"the median CPU seconds). clintraj vs pandas-fmt (charttime format given) at {_label(max(sizes))} rows: "
          f"{tuned['best'] / ours['best']:.1f}x")
    print(f"headline: time-series ETL speed-up vs pandas at {_label(max(sizes))} rows = {ours['speedup']:.1f}x")


def extrapolate(results: list[dict], largest: int, label: str, repeats: int, density: int) -> None:
    """The library's step at MIMIC-IV's 314 M chart rows, linear in the rows read (every row is
    decompressed and parsed; the time per row is flat from 10 M to 100 M rows at this density):
    an extrapolation, printed as one, with the goal beside it."""
    scale = MIMIC_IV_CHART_ROWS / largest
    print(f"\nextrapolation to MIMIC-IV's {MIMIC_IV_CHART_ROWS / 1e6:.0f} M chart rows (linear in rows read; "
          f"not measured; goal < {GOAL_MINUTES} min, < {GOAL_GIB} GiB on 2 cores):")
    for r in (r for r in results if r["rows"] == largest):
        grown = r["setup_mib"] + (r["peak_mib"] - r["setup_mib"]) * (scale if r["cohort"] == "all" else 1)
        print(f"  {r['cohort']:6} {r['best'] * scale / 60:6.1f} min (best), {r['median'] * scale / 60:6.1f} min "
              f"(median), {r['cpu'] * scale / 60:6.1f} CPU min, peak {grown / 1024:4.2f} GiB "
              + ("(memory grows with the cohort: x" + f"{scale:.2f} stays)" if r["cohort"] == "all"
                 else "(memory flat in rows read for one cohort)"))
    ours = next(r for r in results if (r["impl"], r["cohort"], r["rows"]) == ("clintraj", "all", largest))
    print(f"headline: time-series step seconds at {label} chart rows, {density or ROWS_PER_STAY} a stay "
          f"(best of {repeats}) = "
          f"{ours['best']:.0f}")


def _load() -> str:
    """The 1-minute load average (others' work on this shared machine), for the record."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def summary(rows: int, cohort: str, runs: dict[str, list[dict]]) -> list[dict]:
    """Per implementation: best and median wall seconds, median CPU seconds, peak RSS, and
    the speed-ups over pandas. The best of a few runs is the estimate of a program's speed on
    a shared machine (others' load only ever adds time); the median and the CPU-time ratio
    are printed next to it."""
    base = runs.get("pandas")
    out = []
    for name, own in runs.items():
        best = min(r["seconds"] for r in own)
        median = statistics.median(r["seconds"] for r in own)
        cpu = statistics.median(r["cpu"] for r in own)
        out.append({
            "rows": rows, "cohort": cohort, "impl": name, "best": best, "median": median, "cpu": cpu,
            "peak_mib": max(r["peak_mib"] for r in own), "setup_mib": max(r["setup_mib"] for r in own),
        })
        if base:
            out[-1].update({
                "speedup": min(r["seconds"] for r in base) / best,
                "speedup_median": statistics.median(r["seconds"] for r in base) / median,
                "speedup_cpu": statistics.median(r["cpu"] for r in base) / cpu,
            })
    return out


if __name__ == "__main__":
    sys.exit(main())
