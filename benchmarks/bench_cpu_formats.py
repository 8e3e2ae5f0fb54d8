"""Channels-last and bfloat16 autocast on the CPU for our trial loop, side by side with the current loop.

One run measures four variants of ``trial_code.training.train`` on the same networks, data, batches and
initial weights:

* ``fp32`` -- the loop as it was: float32, contiguous NCHW (``precision="fp32", memory_format="contiguous"``);
* ``channels_last`` -- the module's conv weights and every batch in NHWC (``memory_format="channels_last"``);
* ``bf16`` -- ``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward and loss (``precision="bf16"``;
  the weights, the gradients and the SGD step stay float32);
* ``channels_last+bf16`` -- both.

The networks are the NASH seed for Fashion-MNIST (``nash_seed((1, 28, 28), 10, widths=(32, 64, 128))``) and
two children of it, 3 and 5 random morphisms away (``bench_trial_loop.child_of_seed``).

1. **Speed.** ``--steps`` training steps of ``--batch-size`` images per measurement; after one warm-up of
   each variant, ``--repeats`` rounds in which each variant runs once, the order rotated every round. Rates
   are images per CPU-second of this process (``time.process_time``: on a shared machine what the loop
   costs, not what the neighbours do); the table gives the median and its ratio to ``fp32``.
2. **Accuracy.** A short but real training: ``--epochs`` epochs (one cosine cycle) on a fixed
   ``--train-images`` subset of Fashion-MNIST's training pool, from the same initial weights and the same
   shuffling seed for every variant, then the accuracy on ``--val-images`` validation images of the same
   pool (never the test set), evaluated in float32 NCHW as a trial does. Trained: the seed and the first
   child. As a noise reference the ``fp32`` baseline is trained once more from another seed (initial
   weights and shuffling).

**Decision criterion, fixed before the first measurement.** A variant becomes the CPU default of
``train`` only if both hold:

* *faster by a clear margin*: on every network measured its median images per CPU-second is at least
  ``MIN_SPEEDUP`` = 1.10 x the ``fp32`` baseline's;
* *no accuracy loss beyond noise*: on every network trained its validation accuracy is at least the
  baseline's minus two standard errors of a difference of two accuracies on ``n`` validation images,
  ``2 * sqrt(2 * p * (1 - p) / n)`` with ``p`` the baseline's accuracy (1.3 points at p = 0.85, n = 6,000).

Among the variants that pass, the one with the highest smallest speed-up over the networks is adopted;
if none passes, nothing changes. Whether the CPU has native bfloat16 (``avx512_bf16`` / ``amx_bf16`` in
``/proc/cpuinfo``) is recorded with the result: without it, bfloat16 is emulated and expected slower.

Run:  ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cpu_formats.py [--quick] [--out DIR]
[--dataset fashion-mnist] [--widths 32 64 128] [--steps 10] [--repeats 5] [--epochs 2]
[--train-images 6000] [--val-images 6000] [--threads 1]``. The full run takes about 3-4 CPU-minutes and
writes ``cpu_formats.json`` and ``summary.md`` to ``--out`` (default ``benchmarks/results/cpu-formats``);
``--quick`` is a smoke test on digits with a small seed (a few seconds; writes only with ``--out``). If
Fashion-MNIST is missing (Debian's ``dataset-fashion-mnist`` puts it in ``/usr/share/datasets``), the run
falls back to digits and says so in its output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_trial_loop import child_of_seed  # noqa: E402 - the helpers of the trial-loop benchmark

#: The variants: (precision, memory_format) of ``train``; the first is the baseline.
VARIANTS: dict[str, tuple[str, str]] = {
    "fp32": ("fp32", "contiguous"),
    "channels_last": ("fp32", "channels_last"),
    "bf16": ("bf16", "contiguous"),
    "channels_last+bf16": ("bf16", "channels_last"),
}
BASELINE = "fp32"
MIN_SPEEDUP = 1.10
NOISE_SE = 2.0  # standard errors of a difference of two accuracies tolerated
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "cpu-formats"


# --------------------------------------------------------------------------------------------------
# the pure parts: order, summaries, criterion, tables
# --------------------------------------------------------------------------------------------------


def rotated(names: Sequence[str], round_: int) -> list[str]:
    """The order of round ``round_``: ``names`` rotated left by ``round_`` (each name leads once per cycle)."""
    k = round_ % len(names)
    return [*names[k:], *names[:k]]


def summarise_speed(rates: Mapping[str, Sequence[float]], baseline: str = BASELINE) -> dict[str, dict[str, float]]:
    """Median rate of each variant, its ratio to the baseline's median, and the median of the per-round ratios.

    ``rates[variant][r]`` is the variant's rate in round ``r`` (the rounds interleave the variants, so round
    ``r`` of two variants ran close in time).
    """
    if baseline not in rates or not rates[baseline]:
        raise ValueError(f"the rates must hold the baseline {baseline!r} with at least one round, but got "
                         f"variants {sorted(rates)}")
    base = statistics.median(rates[baseline])
    out = {}
    for name, values in rates.items():
        if len(values) != len(rates[baseline]):
            raise ValueError(f"every variant needs one rate per round: {baseline!r} has {len(rates[baseline])}, "
                             f"{name!r} has {len(values)}")
        out[name] = {"median": statistics.median(values), "ratio": statistics.median(values) / base,
                     "median_round_ratio": statistics.median(v / b for v, b in zip(values, rates[baseline]))}
    return out


def accuracy_tolerance(p: float, n: int, k: float = NOISE_SE) -> float:
    """``k`` standard errors of the difference of two accuracies near ``p``, each on ``n`` examples."""
    if n < 1 or not 0.0 <= p <= 1.0:
        raise ValueError(f"0 <= p <= 1 and n >= 1 must hold, but got p={p!r}, n={n!r}")
    return k * math.sqrt(2.0 * p * (1.0 - p) / n)


def decide(speed: Mapping[str, Mapping[str, Mapping[str, float]]], accuracy: Mapping[str, Mapping[str, float]],
           n_val: int, *, baseline: str = BASELINE, min_speedup: float = MIN_SPEEDUP) -> dict[str, Any]:
    """Apply the criterion of the module docstring.

    ``speed[network][variant]["ratio"]``: median speed relative to the baseline, per network measured;
    ``accuracy[network][variant]``: validation accuracy, per network trained. Returns, for every variant but
    the baseline, whether it passes and why, and ``adopt``: the passing variant with the highest smallest
    speed-up, or None.
    """
    variants = [v for v in next(iter(speed.values())) if v != baseline]
    verdicts: dict[str, Any] = {}
    for v in variants:
        slowest = min(speed[net][v]["ratio"] for net in speed)
        drops = {net: acc[baseline] - acc[v] for net, acc in accuracy.items()}
        tolerances = {net: accuracy_tolerance(acc[baseline], n_val) for net, acc in accuracy.items()}
        fast = slowest >= min_speedup
        accurate = all(drops[net] <= tolerances[net] for net in drops)
        reasons = []
        if not fast:
            reasons.append(f"smallest speed-up {slowest:.2f}x < {min_speedup:.2f}x")
        for net in drops:
            if drops[net] > tolerances[net]:
                reasons.append(f"{net}: accuracy {100 * drops[net]:.2f} points below {baseline} "
                               f"(tolerance {100 * tolerances[net]:.2f})")
        verdicts[v] = {"min_speedup": slowest, "accuracy_drop": drops, "tolerance": tolerances,
                       "faster": fast, "accurate": accurate, "passes": fast and accurate, "reasons": reasons}
    passing = [v for v in variants if verdicts[v]["passes"]]
    adopt = max(passing, key=lambda v: verdicts[v]["min_speedup"]) if passing else None
    return {"criterion": {"min_speedup": min_speedup, "noise_standard_errors": NOISE_SE, "n_val": n_val},
            "variants": verdicts, "adopt": adopt}


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """The summary table: one row per network and variant (speed, ratio, accuracy and its difference)."""
    rows = []
    for net in result["networks"]:
        name = net["name"]
        speed = result["speed"][name]["summary"]
        acc = result["accuracy"].get(name, {}).get("val_accuracy")
        for v in VARIANTS:
            s = speed[v]
            a = f"{acc[v]:.4f}" if acc else ""
            d = f"{100 * (acc[v] - acc[BASELINE]):+.2f}" if acc and v != BASELINE else ""
            rows.append([name, f"{net['params']:,}", v, f"{s['median']:.0f}", f"{s['ratio']:.2f}",
                         f"{s['median_round_ratio']:.2f}", a, d])
    return rows


HEADER = ["network", "params", "variant", "images/CPU-s", "x fp32", "x fp32 (rounds)", "val acc", "diff (points)"]


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(result: Mapping[str, Any]) -> str:
    env, dec = result["environment"], result["decision"]
    acc = result["accuracy_setup"]
    noise = result.get("noise_reference")
    lines = [
        "# Channels-last and bfloat16 autocast on the CPU: our trial loop",
        "",
        f"Machine: {env['cpu_model']}, {env['cpus']} cores (shared), {env['torch_threads']} torch thread(s); "
        f"native bfloat16: {'yes' if env['native_bf16'] else 'no'} (flags: {', '.join(env['bf16_flags']) or 'none'}; "
        f"torch CPU capability {env['cpu_capability']}); torch {env['torch']}, Python {env['python']}.",
        "",
        f"Command: `OMP_NUM_THREADS={env['torch_threads']} .venv/bin/python benchmarks/bench_cpu_formats.py "
        f"{' '.join(result['argv'])}".rstrip() + "`",
        "",
        f"Speed: {result['steps']} steps of {result['batch_size']} images per measurement, median of "
        f"{result['repeats']} interleaved rounds, images per CPU-second. Accuracy: {acc['epochs']} epochs on "
        f"{acc['train_images']:,} {result['dataset']} training images, validation accuracy on "
        f"{acc['val_images']:,} images of the training pool, same initial weights and shuffling per variant."
        + (f" Dataset note: {result['dataset_note']}" if result.get("dataset_note") else ""),
        "",
        markdown_table(table_rows(result)),
        "",
    ]
    if noise:
        lines += [f"Noise reference: the fp32 baseline of `{noise['network']}` trained from another seed reached "
                  f"{noise['val_accuracy']:.4f} ({100 * noise['difference']:+.2f} points).", ""]
    lines += [f"Criterion (fixed before measuring): >= {dec['criterion']['min_speedup']:.2f}x on every network, "
              f"and accuracy no more than {dec['criterion']['noise_standard_errors']:g} standard errors of a "
              f"difference below fp32 on every network trained.", ""]
    for v, verdict in dec["variants"].items():
        state = "passes" if verdict["passes"] else "fails: " + "; ".join(verdict["reasons"])
        lines.append(f"- `{v}`: smallest speed-up {verdict['min_speedup']:.2f}x; {state}")
    lines += ["", f"Decision: {'adopt `' + dec['adopt'] + '`' if dec['adopt'] else 'keep fp32 NCHW'}."]
    return "\n".join(lines) + "\n"


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))))


# --------------------------------------------------------------------------------------------------
# the measurements
# --------------------------------------------------------------------------------------------------


def cpu_environment(threads: int) -> dict[str, Any]:
    """The machine: CPU model and bfloat16 flags (``/proc/cpuinfo``), torch's view of the CPU, versions."""
    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    bf16_flags = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return {
        "cpu_model": model, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "requested_threads": threads,
        "bf16_flags": bf16_flags, "native_bf16": bool(bf16_flags),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "torch_amx_tile": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
        "torch": torch.__version__, "python": platform.python_version(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def measure_speed(arch: Any, x: Any, y: Any, *, batch_size: int, steps: int, repeats: int) -> dict[str, Any]:
    """Images per CPU-second (and per wall-second) of every variant on ``arch``, interleaved rounds."""
    import torch

    from nni_nas_ext.core import build_module
    from nni_nas_ext.trial_code.training import Schedule, train

    n = steps * batch_size
    if len(x) < n:
        raise ValueError(f"{steps} steps of {batch_size} need {n} images, but the data has {len(x)}")
    x, y = x[:n], y[:n]
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in build_module(arch).state_dict().items()}
    schedule = Schedule(epochs=1, batch_size=batch_size, seed=0)

    def once(variant: str) -> tuple[float, float]:
        precision, memory_format = VARIANTS[variant]
        module = build_module(arch, initial)
        wall, cpu = time.perf_counter(), time.process_time()
        train(module, x, y, schedule, precision=precision, memory_format=memory_format)
        return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)

    names = list(VARIANTS)
    for v in names:
        once(v)  # warm-up: first-call costs (oneDNN primitives, allocator) paid by none of the rounds
    cpu: dict[str, list[float]] = {v: [] for v in names}
    wall: dict[str, list[float]] = {v: [] for v in names}
    for r in range(repeats):
        for v in rotated(names, r):
            c, w = once(v)
            cpu[v].append(c)
            wall[v].append(w)
    return {"cpu_rates": cpu, "wall_rates": wall, "summary": summarise_speed(cpu),
            "wall_summary": summarise_speed(wall)}


def train_for_accuracy(arch: Any, data: Any, *, train_images: int, val_images: int, epochs: int, batch_size: int,
                       seed: int, variants: Sequence[str]) -> dict[str, Any]:
    """Validation accuracy after ``epochs`` epochs of each variant, from the same weights and shuffling."""
    import torch

    from nni_nas_ext.core import build_module
    from nni_nas_ext.trial_code.training import Schedule, evaluate, train

    x, y = data.train_x[:train_images], data.train_y[:train_images]
    vx, vy = data.val_x[:val_images], data.val_y[:val_images]
    torch.manual_seed(seed)
    initial = {k: v.clone() for k, v in build_module(arch).state_dict().items()}
    schedule = Schedule(epochs=epochs, batch_size=batch_size, seed=seed)
    out: dict[str, Any] = {"val_accuracy": {}, "train_loss": {}, "train_cpu_s": {}, "images_per_cpu_s": {}}
    for v in variants:
        precision, memory_format = VARIANTS[v]
        module = build_module(arch, initial)
        cpu = time.process_time()
        history = train(module, x, y, schedule, precision=precision, memory_format=memory_format)
        spent = time.process_time() - cpu
        out["val_accuracy"][v] = evaluate(module, vx, vy)
        out["train_loss"][v] = history[-1].train_loss
        out["train_cpu_s"][v] = spent
        out["images_per_cpu_s"][v] = epochs * len(x) / spent
        print(f"  {v:<20} val acc {out['val_accuracy'][v]:.4f}  train loss {history[-1].train_loss:.4f}  "
              f"{out['images_per_cpu_s'][v]:.0f} images/CPU-s", flush=True)
    return out


def load_data(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The dataset split (training pool: ``train_images`` + ``val_images``), falling back to digits."""
    from nni_nas_ext.trial_code.datasets import DatasetError, DatasetSpec, load_dataset

    def spec(name: str) -> Any:
        pool = args.train_images + args.val_images
        return DatasetSpec(name, val_fraction=min(0.5, args.val_images / pool), limit=pool)

    try:
        return load_dataset(spec(args.dataset)), None
    except DatasetError as exc:
        if args.dataset == "digits":
            raise
        note = f"{args.dataset} could not be loaded ({str(exc).splitlines()[0]}); fell back to digits (8x8)"
        print(f"NOTE: {note}", flush=True)
        args.dataset = "digits"
        return load_dataset(spec("digits")), note


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nni_nas_ext.search_spaces import nash_seed

    torch.set_num_threads(args.threads)
    data, note = load_data(args)
    seed = nash_seed(data.input_shape, data.num_classes, widths=tuple(args.widths))
    nets = {"seed": seed, "child-3": child_of_seed(seed, 3), "child-5": child_of_seed(seed, 5)}
    n_train = min(args.train_images, len(data.train_y))
    n_val = min(args.val_images, len(data.val_y))
    result: dict[str, Any] = {
        "environment": cpu_environment(args.threads), "argv": sys.argv[1:] if args.argv is None else args.argv,
        "dataset": args.dataset, "dataset_note": note, "widths": list(args.widths), "steps": args.steps,
        "batch_size": args.batch_size, "repeats": args.repeats, "variants": {k: list(v) for k, v in VARIANTS.items()},
        "networks": [{"name": k, "id": a.id, "params": a.num_parameters()} for k, a in nets.items()],
        "accuracy_setup": {"epochs": args.epochs, "train_images": n_train, "val_images": n_val,
                           "networks": list(nets)[:2], "seed": 0},
        "speed": {}, "accuracy": {},
    }
    env = result["environment"]
    print(f"{env['cpu_model']}; native bf16: {env['native_bf16']} ({', '.join(env['bf16_flags']) or 'no flags'}); "
          f"torch {env['torch']}, capability {env['cpu_capability']}, {env['torch_threads']} thread(s)", flush=True)
    start = time.process_time()
    for name, arch in nets.items():
        print(f"speed: {name} ({arch.num_parameters():,} parameters)", flush=True)
        result["speed"][name] = measure_speed(arch, data.train_x, data.train_y, batch_size=args.batch_size,
                                              steps=args.steps, repeats=args.repeats)
    for name in result["accuracy_setup"]["networks"]:
        print(f"accuracy: {name}, {args.epochs} epochs on {n_train} images, {n_val} validation images", flush=True)
        result["accuracy"][name] = train_for_accuracy(nets[name], data, train_images=n_train, val_images=n_val,
                                                      epochs=args.epochs, batch_size=args.batch_size, seed=0,
                                                      variants=list(VARIANTS))
    print("noise reference: fp32 seed network from another seed", flush=True)
    other = train_for_accuracy(nets["seed"], data, train_images=n_train, val_images=n_val, epochs=args.epochs,
                               batch_size=args.batch_size, seed=1, variants=[BASELINE])
    acc = other["val_accuracy"][BASELINE]
    result["noise_reference"] = {"network": "seed", "seed": 1, "val_accuracy": acc,
                                 "difference": acc - result["accuracy"]["seed"]["val_accuracy"][BASELINE]}
    result["cpu_seconds"] = time.process_time() - start
    result["decision"] = decide({k: v["summary"] for k, v in result["speed"].items()},
                                {k: v["val_accuracy"] for k, v in result["accuracy"].items()}, n_val)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: digits, a small seed, a few seconds")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for cpu_formats.json and summary.md (default {DEFAULT_OUT.relative_to(ROOT)}; "
                             "none with --quick)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--widths", type=int, nargs=3, default=[32, 64, 128], help="the NASH seed's conv widths")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="training steps per speed measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the speed measurement")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the accuracy training")
    parser.add_argument("--train-images", type=int, default=6000, help="training images of the accuracy training")
    parser.add_argument("--val-images", type=int, default=6000, help="validation images (from the training pool)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a trial's default: 1)")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.dataset, args.widths, args.steps, args.repeats = "digits", [8, 16, 16], 4, 2
        args.train_images, args.val_images = 700, 700
    elif args.out is None:
        args.out = DEFAULT_OUT
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    result = run(args)
    print()
    print_table(table_rows(result))
    noise = result["noise_reference"]
    print(f"noise reference: fp32 seed network from seed 1: {noise['val_accuracy']:.4f} "
          f"({100 * noise['difference']:+.2f} points)")
    for v, verdict in result["decision"]["variants"].items():
        print(f"{v}: {'passes' if verdict['passes'] else 'fails: ' + '; '.join(verdict['reasons'])}")
    print(f"decision: {result['decision']['adopt'] or 'keep fp32 NCHW'} ({result['cpu_seconds']:.0f} CPU-s)")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cpu_formats.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        (args.out / "summary.md").write_text(summary_markdown(result), encoding="utf-8")
        print(f"written: {args.out / 'cpu_formats.json'}, {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
