"""Does a pretraining epoch wait for its data? MIMIC-IV's splits held in the object store against
streamed, one Ray Train worker, on this machine.

The demo's MIMIC-IV pretraining (`configs/demo.yaml`: latent 32, batches of 32, 64-pixel crops
of 72-pixel images, 64-token notes, the tiny BERT) on synthetic MIMIC-IV (`--stays`, default
1,800, the demo's size, with the demo's splits), through `training.pretrain`'s own loop on a
`TorchTrainer` (`scaling.run`). "held": `pretrain.datasets` as the platform runs it, each
split's tokens and decoded images materialised once before training; "streamed": the same
datasets left as streams (`pretrain.fits_object_store` answering no, as it does for splits whose
images would take over half the object store), so every epoch starts a Ray Data execution whose
actors load the tokenizer and decode and resize every image anew (the augmentations are drawn in
the worker either way, `data.images.EpochAugment`). Both give the same batches
(tests/test_pretrain_ray.py). `--rounds` rounds alternate the order.

Per run: its wall time from building the datasets to the end of training (materialising
included), and per steady-state epoch (the first left out) the training pass's samples/s and
`data_wait_share`. Headline: the whole run's wall time, streamed / held (the best of each over
the rounds: others' load only ever adds time).

    .venv/bin/python bench/pretrain_data.py                  # 2 rounds x (held, streamed) x 4 epochs (~7 min; its data built once)
    .venv/bin/python bench/pretrain_data.py --rounds 1 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clintraj.config import from_dict, load, recipe, to_dict  # noqa: E402
from clintraj.training import pretrain  # noqa: E402
from scaling import cache_folder, run  # noqa: E402


def synthetic_mimic(workdir: Path, stays: int, prepare_section) -> Path:
    """`stays` synthetic MIMIC-IV stays with notes and CXR (seed 0), prepared once under `workdir`:
    the dataset folder (also `embed_stages.py`'s)."""
    from clintraj.data.prepare import prepare
    from clintraj.data.synthetic import generate

    base = cache_folder(workdir, "synthetic", f"mimic-{stays}")
    if not (base / "data").is_dir():
        print(f"building {stays} synthetic MIMIC-IV stays under {base} ...", flush=True)
        generate("mimic", base / "raw", n_stays=stays, seed=0, progress=False)
        prepare(base / "raw", base / "data", from_dict(type(prepare_section), {**to_dict(prepare_section),
                                                                                "dataset": "mimic"}),
                cxr=base / "raw" / "mimic-cxr-jpg", notes=base / "raw" / "mimic-iv-note")
    return base / "data"


def setup(workdir: Path, stays: int, config: pretrain.PretrainConfig, prepare_section) -> tuple[Path, dict]:
    """The demo's MIMIC-IV pretraining inputs (stay table, tokenizer, image root), built once."""
    from clintraj.workflows.pretrain import prepare_inputs

    data = synthetic_mimic(workdir, stays, prepare_section)
    return prepare_inputs(data, cache_folder(workdir, "pretrain_data", f"mimic-{stays}", "work"), config, None)


def timed_run(held: bool, inputs_dir: Path, meta: dict, config, scratch: Path, train_stays: int) -> dict:
    """One run's wall time (datasets built and materialised, then trained) and steady epochs."""
    keep = pretrain.fits_object_store
    if not held:
        pretrain.fits_object_store = lambda *split: False
    try:
        started = time.perf_counter()
        epochs = run(1, inputs_dir, meta, config, scratch, train_stays)
        return {"wall_s": time.perf_counter() - started, "epochs": epochs}
    finally:
        pretrain.fits_object_store = keep


def main() -> None:
    from clintraj.workflows.end_to_end import EndToEndConfig

    demo = load(EndToEndConfig, recipe("demo"))
    mimic = {key: values["grid"][0] for key, values in demo.pretrain_search["mimic"].params.items()
             if key != "missing_tokens_in_context"}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=demo.synthetic_stays["mimic"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    from clintraj.runtime import init_ray, shutdown_ray

    config = from_dict(pretrain.PretrainConfig, {**to_dict(demo.pretrain), **mimic, "epochs": args.epochs,
                                                 "patience": args.epochs, "num_workers": 1,
                                                 "cpus_per_worker": 0.5, "max_failures": 0})
    inputs_dir, meta = setup(args.workdir.resolve(), args.stays, config, demo.prepare)
    train_stays = pq.read_table(inputs_dir / "train", columns=["stay_id"]).num_rows
    scratch = args.workdir.resolve() / "pretrain_data" / "runs"
    scratch.mkdir(parents=True, exist_ok=True)
    init_ray(num_cpus=4)
    runs: dict[str, list[dict]] = {"held": [], "streamed": []}
    try:
        for round_ in range(args.rounds):
            for held in ((True, False) if round_ % 2 == 0 else (False, True)):
                name = "held" if held else "streamed"
                runs[name].append(timed_run(held, inputs_dir, meta, config, scratch, train_stays))
                print(f"round {round_}, {name}: {runs[name][-1]['wall_s']:.1f} s", flush=True)
    finally:
        shutdown_ray()
    print()
    print(f"MIMIC-IV pretraining, {train_stays} training stays, batch {config.batch_size}, {args.epochs} epochs, "
          f"1 worker; {args.rounds} round(s); epoch figures: the medians of the steady-state epochs")
    print(f"   {'splits':>8} {'run s (best)':>12} {'samples/s':>9} {'data wait':>9}")
    best = {}
    for name, rows in runs.items():
        epochs = [epoch for row in rows for epoch in row["epochs"]]
        best[name] = min(row["wall_s"] for row in rows)
        print(f"   {name:>8} {best[name]:>12.1f} {statistics.median(e['train_samples_per_s'] for e in epochs):>9.0f} "
              f"{statistics.median(e['data_wait_share'] for e in epochs) * 100:>8.1f}%")
    print(f"headline: MIMIC-IV pretraining run time, streamed / held = {best['streamed'] / best['held']:.2f}x")


if __name__ == "__main__":
    main()
