"""Cost growth with the cohort: synthetic eICU at growing sizes through every stage, time and peak
memory per stage, and the log-log slope of time against stays.

    .venv/bin/python bench/scale.py --quick             # 200 and 600 stays, 8 steps (a smoke run: CI runs it)
    .venv/bin/python bench/scale.py                     # 1,000, 10,000, 100,000 stays
    .venv/bin/python bench/scale.py --stays 1000,3000,10000,30000

Setup (not timed, cached under `--workdir`, default `bench/.cache/scale/`): the raw eICU tables of
each size, written by `data.synthetic.generate` with `lab_draws` 3.8 (about 190 lab rows per stay,
the real database's 39 M rows over 200,859 stays; the generator's default is a third of that).

Stages, in order, each in a fresh spawned process that reads its inputs from the stage before:

* prepare: `data.prepare` (cohort, splits, vocabularies, modality tables, task cohorts), the lab
  names' minimum count scaled with the cohort as the paper's 10,000 results for 196 k stays;
* embed: `workflows.embed.run` with scratch encoders (the demo's: latent 32), every task: the
  stay embeddings, every event embedded, and each task's timelines assembled and written;
* timelines: the timeline assembly of `embed` again, alone (`workflows.embed.write_task_timelines`
  on the embedded events), so its share of `embed` is seen;
* sequences: `data.sequences.task_sequences` for mortality (the decoder's inputs);
* pretrain: one epoch of the demo's MGA pretraining (`workflows.pretrain.prepare_inputs`, then
  `training.pretrain.train_loop` in process, training and validation passes);
* sequential: what a sequential trial does before and during its first epoch, on a fixed number of
  steps (`--steps`): its training split materialised by Ray Data, validation and test read whole,
  the tiny llama3-8b built, then the fixed steps over length-bucketed batches.

`--dataset mimic`: synthetic MIMIC-IV instead (`raw_folder`), its chartevents at the real
density (`chart_rows_per_stay` 4,500: 314 M rows over 73 k stays in MIMIC-IV v2.2, nearly all of
items outside the 17 variables), CXR JPEGs and notes beside them; `prepare` reads them all.

Per stage: wall seconds and the stage process's CPU seconds (from just before the stage's own
work: imports and Ray's start are left out), the stage process's peak RSS (VmHWM, reset at the
start), and the peak of the memory of its whole process tree (the PSS of the stage process and all
its descendants, Ray's raylet, object store and workers included, sampled every 0.25 s). The slope
of log time against log stays is fitted per stage over the sizes (1: linear; the fixed start-up
costs of small sizes pull it below 1), and so is the slope of the tree's peak. The last line is the
headline: the largest time slope of any stage (goal: <= 1.1).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

LAB_DRAWS = 3.8  # synthetic lab panels drawn 3.8 times as often: about 190 rows per stay, as eICU-CRD
TASK = "mortality"
FULL_EICU = 200_859  # unit stays in eICU-CRD v2.0
FULL_MIMIC = 73_181  # ICU stays in MIMIC-IV v2.2
STAGES = ("prepare", "embed", "timelines", "sequences", "pretrain", "sequential")
MIMIC_CHART_ROWS_PER_STAY = 4500  # MIMIC-IV v2.2: 314 M chartevents rows over 73 k ICU stays


# --- setup --------------------------------------------------------------------------------------------


def raw_folder(workdir: Path, stays: int, dataset: str = "eicu", note_chars: dict[str, int] | None = None) -> Path:
    """The synthetic raw tables of `stays` stays at the real density, written once: eICU with
    `LAB_DRAWS`; MIMIC-IV (hosp, icu, CXR-JPG, Note) with `MIMIC_CHART_ROWS_PER_STAY` chart rows,
    and with `note_chars` its notes padded to those lengths (`generate`'s option)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = workdir.parent / ".gitignore" if workdir.parent.name == ".cache" else workdir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    density = {"eicu": (f"labs{LAB_DRAWS:g}", {"lab_draws": LAB_DRAWS}, "lab.csv.gz", "lab"),
               "mimic": (f"chart{MIMIC_CHART_ROWS_PER_STAY}", {"chart_rows_per_stay": MIMIC_CHART_ROWS_PER_STAY},
                         "icu/chartevents.csv.gz", "chart")}
    suffix, options, table, what = density[dataset]
    if note_chars and dataset == "mimic":
        lengths = "-".join(f"{name.split('_')[0]}{length}" for name, length in sorted(note_chars.items()))
        suffix, options = f"{suffix}-notes-{lengths}", {**options, "note_chars": note_chars}
    raw = workdir / f"{dataset}-{stays}-{suffix}" / "raw"
    done = raw / "bench.json"
    if not done.is_file():
        from clintraj.data.synthetic import generate

        print(f"generating {stays:,} synthetic {dataset} stays under {raw} ...", flush=True)
        start = time.perf_counter()
        shutil.rmtree(raw, ignore_errors=True)
        rows = generate(dataset, raw, stays, 0, progress=False, **options)
        done.write_text(json.dumps(rows))
        print(f"  done in {time.perf_counter() - start:.0f} s ({rows[table]:,} {what} rows)", flush=True)
    return raw


def configs():
    """The demo's pretraining (one epoch, one worker) and sequential configs."""
    from clintraj.config import from_dict, load, recipe, to_dict
    from clintraj.training.pretrain import PretrainConfig
    from clintraj.workflows.end_to_end import EndToEndConfig

    demo = load(EndToEndConfig, recipe("demo"))
    pretrain = from_dict(PretrainConfig, {**to_dict(demo.pretrain), "epochs": 1, "patience": 1, "num_workers": 1,
                                          "max_failures": 0})
    return pretrain, demo.sequential


# --- the stages (each runs in its own process; `began()` marks the end of its setup) ------------------


def start_ray() -> None:
    from clintraj.runtime import init_ray

    init_ray(num_cpus=4)


def stage_prepare(base: Path, stays: int, began, options: dict) -> dict:
    from clintraj.config import from_dict
    from clintraj.data.prepare import PrepareConfig, prepare

    raw = base / "raw"
    if options.get("dataset") == "mimic":
        config, extra = from_dict(PrepareConfig, {"dataset": "mimic"}), {
            "cxr": raw / "mimic-cxr-jpg", "notes": raw / "mimic-iv-note"}
    else:
        config = from_dict(PrepareConfig, {"eicu": {"lab_min_count": max(1, round(stays * 10_000 / 196_000))}})
        extra = {}
    shutil.rmtree(base / "data", ignore_errors=True)
    began()
    prepare(raw, base / "data", config, **extra)
    return {}


def stage_embed(base: Path, stays: int, began, options: dict) -> dict:
    from clintraj.workflows import embed

    pretrain, _ = configs()
    start_ray()
    shutil.rmtree(base / "work-embed", ignore_errors=True)
    shutil.rmtree(base / "embeddings", ignore_errors=True)
    began()
    record = embed.run(base / "data", base / "embeddings", "scratch", base / "work-embed", pretrain, seed=0)
    shutil.rmtree(base / "work-embed", ignore_errors=True)
    return {"events": int(sum(record["events"].values()))}


def stage_timelines(base: Path, stays: int, began, options: dict) -> dict:
    from clintraj.artifacts.dataset import Dataset
    from clintraj.artifacts.embeddings import Embeddings
    from clintraj.workflows.embed import write_task_timelines

    target = Embeddings(base / "embeddings")
    source = Dataset(base / "data")
    tasks = list(target.record["tasks"])
    shutil.rmtree(target.path / "timelines", ignore_errors=True)
    began()
    timelines = write_task_timelines(source, target, tasks, target.record["modalities"], base / "work-timelines",
                                     options["shard_stays"])
    if any(timelines[t] != target.record["tasks"][t]["timelines"] for t in tasks):
        raise RuntimeError("the timelines written again differ from the embedding job's")
    return {"timeline_events": sum(t["events"] for t in timelines.values())}


def stage_sequences(base: Path, stays: int, began, options: dict) -> dict:
    from clintraj.data.sequences import task_sequences

    _, sequential = configs()
    shutil.rmtree(base / "sequences", ignore_errors=True)
    began()
    info = task_sequences(base / "data", base / "embeddings", TASK, base / "sequences", sequential.max_events,
                          options["shard_stays"])
    return {"train_stays": info["stays"]["train"]}


def stage_pretrain(base: Path, stays: int, began, options: dict) -> dict:
    from clintraj.training import pretrain
    from clintraj.training.loop import make_trainer
    from clintraj.workflows.pretrain import prepare_inputs

    config, _ = configs()
    start_ray()
    shutil.rmtree(base / "work-pretrain", ignore_errors=True)
    began()
    inputs_dir, meta = prepare_inputs(base / "data", base / "work-pretrain", config, None)
    result = make_trainer(pretrain.train_loop, pretrain.PretrainRun(config, meta), name="scale-pretrain",
                          storage=base / "work-pretrain" / "runs", datasets=pretrain.datasets(inputs_dir, meta, config),
                          workers=1, cpus_per_worker=config.cpus_per_worker, use_gpu=False, keep=1,
                          in_process=True).fit()
    return {"train_loss": round(float(result.metrics["train_loss"]), 4)}


def stage_sequential(base: Path, stays: int, began, options: dict) -> dict:
    import itertools

    import ray.data
    import torch

    from clintraj.artifacts.sequences import Sequences
    from clintraj.config import from_dict, to_dict
    from clintraj.data.sequences import bucketed, collate
    from clintraj.training import capabilities, decoder, sequential

    _, demo = configs()
    config = from_dict(sequential.SequentialTrainConfig, {
        **to_dict(demo), "task": TASK, "tiny_root": str(base.parent / "tiny-backbones"), "epochs": 1})
    source = Sequences(base / "sequences")
    facts = decoder.SequenceFacts.of(source.info)
    decoder.weights_location(config)  # the tiny model, written once
    start_ray()
    torch.set_num_threads(1)  # as in a trial's process with 0.5 CPU
    began()
    train = ray.data.read_parquet(str(source.file("train"))).materialize()  # as `sequential.trainer`
    source.split("val"), source.split("test")  # rank 0 reads them whole (`sequential.train_loop`)
    runtime = capabilities.resolve(config.attention, config.precision, config.quantization, config.optimizer,
                                   0, False)
    torch.manual_seed(config.seed)
    model = decoder.build_model(config, facts, runtime, torch.device("cpu"))
    optimizer = sequential.make_optimizer(model, config)
    rng = np.random.default_rng(config.seed)
    chunks = train.iter_batches(batch_size=config.batch_size * config.bucket_batches, batch_format="numpy")
    done = 0
    for batch in itertools.islice(bucketed(iter(chunks), config.batch_size, shuffle=True, rng=rng), options["steps"]):
        tensors = collate(batch, facts.latent_dim, config.modality_dropout, rng, torch.device("cpu"))
        loss = sequential.training_loss(model, tensors, config, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done += 1
    return {"steps": done}


# --- measuring in a fresh process -----------------------------------------------------------------------


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class TreeUsage:
    """Peak PSS and CPU seconds of this process and all its descendants (Ray's included), sampled
    in a thread; the CPU of a process that exits between two samples is counted to its last one."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self.root, self.interval, self.peak = psutil.Process(), interval, 0.0
        self.cpu_start: dict[int, float] = {}
        self.cpu_last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        import psutil

        total = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.cpu_start.setdefault(process.pid, times.user + times.system if self.thread.is_alive() else 0.0)
            self.cpu_last[process.pid] = times.user + times.system
        return total / 2**20

    @property
    def cpu(self) -> float:
        return sum(last - self.cpu_start[pid] for pid, last in self.cpu_last.items())

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.sample())
            self.stop.wait(self.interval)

    def __enter__(self):
        for process in [self.root, *self.root.children(recursive=True)]:  # what ran before the stage
            times = process.cpu_times()
            self.cpu_start[process.pid] = times.user + times.system
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.sample())


def _child(stage: str, base: str, stays: int, options: dict, result: str) -> None:
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    marks: dict = {}
    tree = TreeUsage()

    def began() -> None:
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts over: the stage's own
        marks.update(start=time.perf_counter(), cpu=time.process_time(), before_mib=_peak_rss_mib())
        tree.__enter__()

    try:
        info = globals()[f"stage_{stage}"](Path(base), stays, began, options)
        seconds, cpu = time.perf_counter() - marks["start"], time.process_time() - marks["cpu"]
        tree.__exit__(None, None, None)
        Path(result).write_text(json.dumps({"seconds": seconds, "cpu": cpu, "peak_mib": _peak_rss_mib(), "before_mib": marks["before_mib"],
                   "tree_mib": tree.peak, "tree_cpu": tree.cpu, **info}))
    finally:
        import ray

        ray.shutdown()


def measure(stage: str, base: Path, stays: int, options: dict) -> dict:
    result = base / f"{stage}.measured.json"
    result.unlink(missing_ok=True)
    process = mp.get_context("spawn").Process(target=_child, args=(stage, str(base), stays, options, str(result)))
    process.start()
    process.join()
    if process.exitcode or not result.is_file():
        raise RuntimeError(f"stage {stage} at {stays} stays failed (exit code {process.exitcode})")
    return json.loads(result.read_text())


# --- main -------------------------------------------------------------------------------------------------


def slope(stays: list[int], values: list[float]) -> float:
    """The slope of log(value) against log(stays): cost ~ stays ** slope (NaN from one size)."""
    if len(stays) < 2:
        return float("nan")
    return float(np.polyfit(np.log(stays), np.log(values), 1)[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stays", default="1000,10000,100000", help="cohort sizes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="200 and 600 stays, 8 sequential steps (a smoke run)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="stages to run (each needs the ones before; none: only write the raw folders)")
    parser.add_argument("--steps", type=int, default=24, help="training steps of the sequential stage")
    parser.add_argument("--train-max-stays", type=int, default=None,
                        help="run pretrain and sequential only up to this many stays (their slope from those sizes)")
    parser.add_argument("--shard-stays", type=int, default=None,
                        help="stays per shard of the timelines and sequences stages (default: "
                             "workflows.embed.TIMELINE_SHARD_STAYS; a huge number: the whole cohort at once)")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="print the table of a finished run (its results-*.json) and exit")
    parser.add_argument("--dataset", choices=("eicu", "mimic"), default="eicu",
                        help="mimic: synthetic MIMIC-IV at the real chart density (up to 10,000 stays here)")
    parser.add_argument("--note-chars", default=None,
                        help="mimic: notes padded to these lengths, 'real' (REAL_NOTE_CHARS: discharge 10,500 "
                             "characters, radiology 1,200) or e.g. 'discharge_note=10500,radiology_note=120000'")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache" / "scale")
    args = parser.parse_args(argv)
    if args.from_json:
        return report({(r["stays"], r["stage"]): r for r in json.loads(args.from_json.read_text())}, args.dataset)
    sizes = [200, 600] if args.quick else sorted(int(s) for s in args.stays.split(","))
    stages = [s for s in STAGES if s in args.stages.split(",")]
    workdir = args.workdir.resolve()
    from clintraj.workflows.embed import TIMELINE_SHARD_STAYS

    options = {"steps": 8 if args.quick else args.steps, "shard_stays": args.shard_stays or TIMELINE_SHARD_STAYS,
               "dataset": args.dataset}

    rows = {}
    record = workdir / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"  # each stage's figures, as they come
    for stays in sizes:
        base = raw_folder(workdir, stays, args.dataset, note_lengths(args.note_chars)).parent
        for stage in stages:
            if stage in ("pretrain", "sequential") and args.train_max_stays and stays > args.train_max_stays:
                continue
            load = os.getloadavg()[0]
            rows[stays, stage] = {**measure(stage, base, stays, options), "load": load}
            r = rows[stays, stage]
            print(f"  {stays:>8,} {stage:10} {r['seconds']:8.1f} s {r['cpu']:8.1f} CPU-s (tree {r['tree_cpu']:.1f}) "
                  f"{r['peak_mib']:7,.0f} MiB (before {r['before_mib']:5,.0f}) tree {r['tree_mib']:7,.0f} MiB  "
                  f"load {load:.1f}", flush=True)
            record.write_text(json.dumps([{"stays": n, "stage": stage, **r} for (n, stage), r in rows.items()], indent=1))

    report(rows, args.dataset)


def note_lengths(spec: str | None) -> dict[str, int] | None:
    """`--note-chars`: 'real', or 'modality=characters,...'."""
    if not spec:
        return None
    if spec == "real":
        from clintraj.data.synthetic.mimic.notes import REAL_NOTE_CHARS

        return REAL_NOTE_CHARS
    return {name: int(length) for name, length in (item.split("=") for item in spec.split(","))}


def report(rows: dict, dataset: str = "eicu") -> None:
    """The table: per stage and size wall seconds, CPU seconds of the process tree, the stage
    process's peak RSS and the tree's peak PSS; the slopes; the extrapolation; the headline."""
    if not rows:  # `--stages none`: the raw folders written, nothing measured
        print("no stage ran (the raw folders are written and cached)")
        return
    sizes = sorted({n for n, _ in rows})
    stages = [s for s in STAGES if any(stage == s for _, stage in rows)]
    cpu = "tree_cpu" if all("tree_cpu" in r for r in rows.values()) else "cpu"
    print()
    full, name = (FULL_MIMIC, "MIMIC-IV") if dataset == "mimic" else (FULL_EICU, "eICU")
    about = (f"MIMIC-IV, {MIMIC_CHART_ROWS_PER_STAY:,} chart rows per stay" if dataset == "mimic"
             else f"eICU, {LAB_DRAWS:g}x lab draws (about 190 lab rows per stay)")
    print(f"synthetic {about}. Per size: wall s, CPU s "
          f"({'the process tree' if cpu == 'tree_cpu' else 'the stage process alone'}), peak MiB of the stage "
          "process (RSS) and of its process tree (PSS)")
    print(f"{'stage':10} " + " ".join(f"{n:>31,}" for n in sizes)
          + f" {'slopes: wall':>12} {'CPU':>5} {'top':>5} {'memory':>6}")
    slopes = {}
    for stage in stages:
        ran = [n for n in sizes if (n, stage) in rows]
        cells = " ".join(f"{rows[n, stage]['seconds']:7.1f} {rows[n, stage][cpu]:7.1f} {rows[n, stage]['peak_mib']:7,.0f} "
                         f"{rows[n, stage]['tree_mib']:7,.0f}" if (n, stage) in rows else f"{'-':>31}" for n in sizes)
        fitted = {key: slope(ran, [rows[n, stage][key] for n in ran]) for key in ("seconds", cpu, "tree_mib")}
        slopes[stage] = slope(ran[-2:], [rows[n, stage][cpu] for n in ran[-2:]])
        print(f"{stage:10} {cells} {fitted['seconds']:12.2f} {fitted[cpu]:5.2f} {slopes[stage]:5.2f} "
              f"{fitted['tree_mib']:6.2f}")
    print("slopes of log cost against log stays, fitted over all sizes: wall s, CPU s, the tree's peak memory; top: "
          "CPU s between the two largest sizes (the growth at scale, the fixed costs of small sizes left behind)")
    print(f"extrapolated to full {name} ({full:,} stays) from the growth between the two largest sizes "
          "(an extrapolation, not a measurement):")
    for stage in stages:
        if len([n for n in sizes if (n, stage) in rows]) < 2:
            continue
        a, b = [n for n in sizes if (n, stage) in rows][-2:]
        grow = {key: slope([a, b], [rows[a, stage][key], rows[b, stage][key]]) for key in (cpu, "tree_mib")}
        scale = {key: (full / b) ** max(grow[key], 0.0) for key in grow}
        print(f"  {stage:10} {rows[b, stage][cpu] * scale[cpu]:9,.0f} CPU s "
              f"{rows[b, stage]['tree_mib'] * scale['tree_mib']:9,.0f} MiB tree peak  (from {a:,} and {b:,} stays)")
    loads = [r["load"] for r in rows.values()]
    print(f"load average (1 min) at the stages' starts: {min(loads):.1f} to {max(loads):.1f}")
    worst = max(slopes, key=lambda stage: -np.inf if np.isnan(slopes[stage]) else slopes[stage])
    print(f"worst: {worst}")
    print(f"headline: worst stage cost-growth slope = {slopes[worst]:.2f}")


if __name__ == "__main__":
    main()
