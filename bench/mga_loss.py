"""MGA loss benchmark: forward + backward of the vectorised `clintraj.models.mga.mga_loss`
against a straightforward loop reference, at B=256 stays, M=6 modalities, D=128.

    .venv/bin/python bench/mga_loss.py               # 4 rounds (~1 min; more on a loaded machine)
    .venv/bin/python bench/mga_loss.py --quick       # 2 rounds (smoke run)
    .venv/bin/python bench/mga_loss.py --rounds 7 --threads 2

Inputs: z (B, M, D) unit vectors (leaf, requires grad), a learnable temperature (log-tau
leaf, tau = 0.07), a random presence mask (each slot present with p=0.6, every stay has
at least one modality, ~15% of stays forced to exactly one modality so the g[j] fallback
and the n[i] >= 2 anchor filter are exercised).

Reference (`loop_loss`): the equations of METHOD.md §1 written as in `tests/test_mga.py`'s
`reference_loss`, with explicit Python loops over stays, modalities and context members,
but with torch ops on D-vectors so autograd works. The one concession to speed: the B
negative targets of a modality are built once per modality rather than once per anchor
(the test's reference recomputes them per anchor, which is O(M B^2) centroid sums and
would take minutes here); the per-anchor InfoNCE terms are still a loop.

Before timing, for both `missing_tokens_in_context` options the two losses must agree to
rtol 1e-5 and their gradients w.r.t. z and log-tau to allclose(rtol 1e-4, atol 1e-6).

Measured: one forward + backward (grads zeroed in between, not timed). The two
implementations alternate in the same process, round by round; the vectorised one is run
`inner` times per round (it takes milliseconds) and its per-call time is the round's mean.
Reported: the median over rounds of wall-clock time (the speed-up and headline use it), and
for reference the ratio of the medians of thread CPU time, which a loaded machine disturbs less. Torch runs single-threaded by default (`--threads`), which
keeps timings stable on a shared machine. The last line is the headline: the smaller of the
two options' speed-ups.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from clintraj.models.mga import mga_loss  # noqa: E402

B, M, D = 256, 6, 128


# ---------------------------------------------------------------- loop reference

def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp(min=1e-12)  # same epsilon as F.normalize


def loop_loss(z: torch.Tensor, d: list[list[int]], tau: torch.Tensor, tokens_in_context: bool = False) -> torch.Tensor:
    """METHOD.md §1 with loops over stays and modalities (see the module docstring)."""
    B_, M_ = len(d), len(d[0])
    n = [sum(d[i]) for i in range(B_)]
    w = [[1 if tokens_in_context else d[i][k] for k in range(M_)] for i in range(B_)]

    def centroid(i, m):  # eq. 2
        total = torch.zeros_like(z[i, m])
        for k in range(M_):
            if k != m and w[i][k]:
                total = total + z[i, k]
        return _unit(total)

    def glob(i):  # eq. 3
        total = torch.zeros_like(z[i, 0])
        for k in range(M_):
            if w[i][k]:
                total = total + z[i, k]
        return _unit(total)

    per_modality = []
    for m in range(M_):
        anchors = [i for i in range(B_) if d[i][m] == 1 and n[i] >= 2]
        if not anchors:
            continue
        # eq. 4: the B negative targets of modality m (positive of anchor i = targets[i] = c[i,m])
        targets = torch.stack([centroid(j, m) if n[j] - d[j][m] >= 1 else glob(j) for j in range(B_)])
        terms = []
        for i in anchors:  # eq. 5
            logits = targets @ z[i, m] / tau
            terms.append(torch.logsumexp(logits, dim=0) - logits[i])
        per_modality.append(torch.stack(terms).mean())
    if not per_modality:
        return z.sum() * 0.0
    return torch.stack(per_modality).mean()


# ---------------------------------------------------------------- setup

def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(B, M, D, generator=g), dim=-1).requires_grad_()
    present = torch.rand(B, M, generator=g) < 0.6
    present[torch.arange(B), torch.randint(M, (B,), generator=g)] = True      # at least one each
    single = torch.rand(B, generator=g) < 0.15                                 # some with exactly one
    keep = torch.randint(M, (B,), generator=g)
    present[single] = False
    present[single.nonzero(as_tuple=True)[0], keep[single]] = True
    log_tau = torch.tensor(math.log(0.07)).requires_grad_()
    return z, present, log_tau


def run_vectorised(z, present, log_tau, option):
    loss, _ = mga_loss(z, present, log_tau.exp(), option)
    loss.backward()
    return loss


def run_loop(z, d, log_tau, option):
    loss = loop_loss(z, d, log_tau.exp(), option)
    loss.backward()
    return loss


def _zero(*tensors):
    for t in tensors:
        t.grad = None


def check(z, present, d, log_tau, option):
    _zero(z, log_tau)
    vec = run_vectorised(z, present, log_tau, option).item()
    gz, gt = z.grad.clone(), log_tau.grad.clone()
    _zero(z, log_tau)
    ref = run_loop(z, d, log_tau, option).item()
    if not math.isclose(vec, ref, rel_tol=1e-5):
        raise SystemExit(f"loss mismatch (missing_tokens_in_context={option}): vectorised {vec!r} vs loop {ref!r}")
    if not (torch.allclose(gz, z.grad, rtol=1e-4, atol=1e-6) and torch.allclose(gt, log_tau.grad, rtol=1e-4, atol=1e-6)):
        raise SystemExit(f"gradient mismatch (missing_tokens_in_context={option}): "
                         f"max |dz| {float((gz - z.grad).abs().max()):.3g}, dtau {float(gt)!r} vs {float(log_tau.grad)!r}")
    _zero(z, log_tau)
    return vec, ref


def time_option(z, present, d, log_tau, option, rounds, inner):
    loop_times, vec_times, loop_cpu, vec_cpu = [], [], [], []
    run_vectorised(z, present, log_tau, option)  # warm-up
    _zero(z, log_tau)
    for r in range(rounds):
        order = ("loop", "vec") if r % 2 == 0 else ("vec", "loop")
        for which in order:
            if which == "loop":
                start, cpu = time.perf_counter(), time.thread_time()
                run_loop(z, d, log_tau, option)
                loop_times.append(time.perf_counter() - start)
                loop_cpu.append(time.thread_time() - cpu)
                _zero(z, log_tau)
            else:
                elapsed = elapsed_cpu = 0.0
                for _ in range(inner):
                    start, cpu = time.perf_counter(), time.thread_time()
                    run_vectorised(z, present, log_tau, option)
                    elapsed += time.perf_counter() - start
                    elapsed_cpu += time.thread_time() - cpu
                    _zero(z, log_tau)
                vec_times.append(elapsed / inner)
                vec_cpu.append(elapsed_cpu / inner)
    return (statistics.median(loop_times), statistics.median(vec_times),
            statistics.median(loop_cpu), statistics.median(vec_cpu))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 5 inner calls (smoke run)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per option (default 4)")
    parser.add_argument("--inner", type=int, default=20, help="vectorised calls per round (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    rounds, inner = (2, 5) if args.quick else (args.rounds, args.inner)
    torch.set_num_threads(args.threads)

    z, present, log_tau = make_inputs()
    d = present.int().tolist()
    n = present.sum(1)
    print(f"MGA loss forward+backward, B={B} M={M} D={D}, float32, {args.threads} thread(s), "
          f"{rounds} alternating rounds (vectorised: {inner} calls/round); "
          f"stays with one modality: {int((n == 1).sum())}/{B}, present slots: {int(present.sum())}/{B * M}")

    rows = []
    for option in (False, True):
        vec, ref = check(z, present, d, log_tau, option)
        loop_med, vec_med, loop_cpu, vec_cpu = time_option(z, present, d, log_tau, option, rounds, inner)
        rows.append((option, vec, ref, loop_cpu / vec_cpu, loop_med, vec_med))

    print()
    print(f"{'missing_tokens_in_context':<26} {'loss (vec)':>11} {'loss (loop)':>11} {'rel diff':>9} "
          f"{'loop ms':>9} {'vec ms':>8} {'speed-up':>9} {'(cpu-time)':>10}")
    for option, vec, ref, cpu_ratio, loop_med, vec_med in rows:
        print(f"{str(option):<26} {vec:>11.6f} {ref:>11.6f} {abs(vec - ref) / abs(ref):>9.1e} "
              f"{loop_med * 1e3:>9.1f} {vec_med * 1e3:>8.2f} {loop_med / vec_med:>8.1f}x {cpu_ratio:>9.1f}x")
    headline = min(loop_med / vec_med for *_, loop_med, vec_med in rows)
    print()
    print(f"headline: MGA loss forward+backward speed-up vs loop reference (B={B}, M={M}, D={D}) = {headline:.1f}x")


if __name__ == "__main__":
    main()
