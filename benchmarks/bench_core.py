"""Benchmark of the architecture core on CPU, side by side with NNI 3.0's own network-morphism graph code.

For a plain CNN of 20 and of 60 weight layers (``plain_cnn(depth)``, CIFAR-sized input) it prints, in
milliseconds, median and p90 over ``--repeats`` runs (one warm-up run per cell is discarded):

* every morphism of ``MORPHISMS``: **plan** = ``sites()`` + ``propose`` + ``realize`` (the child
  architecture, validated), then **transform** = the weight transformation ``transform(state, batch)``
  on a calibration batch of 32 inputs (``--calibration``); each run picks a random site (fixed seeds).
  The parent's weights are a random initialisation with BatchNorm statistics set from that batch. The
  sanity column is the largest relative output difference parent -> child over the runs
  (``preservation_error(...).relative`` on 8 of the inputs, untimed);
* **build** = ``build_module(arch)``; **validate** = ``Architecture.from_dict(arch.to_dict())``.

The baseline, measured in the same run, is NNI 3.0's ``nni.algorithms.hpo.networkmorphism_tuner``:
a ``CnnGenerator`` graph with as many conv layers, and its operators ``to_deeper_model``,
``to_wider_model``, ``to_add_skip_model``, ``to_concat_skip_model`` applied as its tuner does (site list,
``deepcopy`` of the graph, the in-place operator), ``produce_torch_model()`` for build and its JSON round
trip for validate. Absolute times are noisy on shared machines: compare the ratios (column ``x ours``).
The target: a morphism (plan + transform) of the slowest operator under 50 ms (median) on the 60-layer net.
Torch keeps its own thread count unless ``--threads`` is given; on a loaded machine, 2 OpenMP threads can
be several times slower than 1 (oversubscription), which inflates every forward pass (deepen, build).

Run:  ``make bench``  or  ``.venv/bin/python benchmarks/bench_core.py [--repeats N] [--seed S] [--threads T]
[--calibration N] [--depths 20 60] [--json benchmarks/out/bench_core.json]``
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nni_nas_ext.core import MORPHISMS, Architecture, Morphism, build_module, preservation_error
from nni_nas_ext.search_spaces import plain_cnn

TARGET_MS = 50.0
INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
CHECK = 8  # inputs on which parent and child outputs are compared (untimed)
NNI_WIDTH = 32  # NNI's generator has one width for every conv; ours go 16 -> 32 -> 64 over 3 stages
NNI_OPS = {"deepen": "to_deeper_model", "widen": "to_wider_model",
           "add_skip": "to_add_skip_model", "concat_skip": "to_concat_skip_model"}
Row = dict[str, Any]
StateDict = Mapping[str, torch.Tensor]


def _ms(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter_ns()
    out = fn()
    return out, (time.perf_counter_ns() - start) / 1e6


def _stats(values: list[float]) -> tuple[float, float]:
    return float(np.median(values)), float(np.percentile(values, 90))


Once = Callable[[int], "tuple[dict[str, float], int | None, float | None]"]  # run r -> timings, sites, error


def _measure(depth: int, op: str, impl: str, repeats: int, once: Once) -> Row:
    """Run ``once(r)`` for r = -1 (warm-up, discarded), 0 .. repeats-1 and summarise; never raises."""
    parts: dict[str, list[float]] = {}
    errors: list[float] = []
    n_sites: int | None = None
    try:
        for r in range(-1, repeats):
            gc.collect()
            timings, n_sites, err = once(r)
            if r >= 0:
                for k, v in timings.items():
                    parts.setdefault(k, []).append(v)
                if err is not None:
                    errors.append(err)
    except Exception as exc:  # noqa: BLE001 - a failing cell (e.g. NNI on a newer numpy) is reported, not fatal
        return {"depth": depth, "op": op, "impl": impl, "failed": f"{type(exc).__name__}: {exc}"}
    med, p90 = _stats(parts["total"])
    return {"depth": depth, "op": op, "impl": impl, "n_sites": n_sites, "total_med": med, "total_p90": p90,
            **{f"{k}_med": _stats(v)[0] for k, v in parts.items() if k != "total"},
            "max_rel_err": max(errors, default=None)}


def _calibrate_bn(module: torch.nn.Module, batch: torch.Tensor) -> torch.nn.Module:
    """BatchNorm running statistics from ``batch`` (one train-mode pass), as in a trained net.

    With the initial mean 0, var 1 the activations fade with depth and hide every rounding error.
    """
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NNI applies Dropout2d to a 2-D tensor (a deprecation warning)
        module.train()(batch)
    return module.eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    diff, scale = float((a.double() - b.double()).abs().max()), float(a.double().abs().max())
    return diff / scale if scale > 0 else diff


def ours_cells(arch: Architecture, state: StateDict, batch: torch.Tensor, check: torch.Tensor,
               seed: int, depth: int) -> dict[str, Once]:
    def morphism_cell(morphism: Morphism) -> Once:
        def once(r: int) -> tuple[dict[str, float], int, float]:
            rng = np.random.default_rng((seed, depth, r + 1))
            sites, t_sites = _ms(lambda: morphism.sites(arch))
            site = sites[int(rng.integers(len(sites)))]
            (child, transform), t_real = _ms(lambda: morphism.realize(arch, morphism.propose(arch, site, rng)))
            child_state, t_xf = _ms(lambda: transform(state, batch))
            err = preservation_error(arch, state, child, child_state, check).relative
            return ({"sites": t_sites, "realize": t_real, "transform": t_xf, "total": t_sites + t_real + t_xf},
                    len(sites), err)
        return once

    cells = {name: morphism_cell(cls()) for name, cls in MORPHISMS.items()}
    cells["build"] = lambda r: ({"total": _ms(lambda: build_module(arch))[1]}, None, None)
    cells["validate"] = lambda r: ({"total": _ms(lambda: Architecture.from_dict(arch.to_dict()))[1]}, None, None)
    return cells


def nni_cells(depth: int, seed: int, batch: torch.Tensor, check: torch.Tensor) -> dict[tuple[str, str], Once]:
    """NNI's operators as ``graph_transformer.to_*_graph`` apply them, on a deep copy; raises if NNI fails."""
    from nni.algorithms.hpo.networkmorphism_tuner.graph import json_to_graph
    from nni.algorithms.hpo.networkmorphism_tuner.graph_transformer import create_new_layer
    from nni.algorithms.hpo.networkmorphism_tuner.layers import is_layer
    from nni.algorithms.hpo.networkmorphism_tuner.nn import CnnGenerator
    c, h, w = INPUT_SHAPE
    plain = CnnGenerator(NUM_CLASSES, (h, w, c)).generate(depth - 1, NNI_WIDTH)  # NNI is channels-last
    weighted = copy.deepcopy(plain)
    torch.manual_seed(seed)  # graph.weighted = True, numpy weights on the stubs, BatchNorm calibrated as ours
    _calibrate_bn(weighted.produce_torch_model(), batch).set_weight_to_graph()

    def sites(g: Any, op: str) -> list[Any]:  # what graph_transformer.to_*_graph sample from
        if op == "deepen":
            return g.deep_layer_ids()
        if op == "widen":
            return [i for i in g.wide_layer_ids() if g.layer_list[i].output.shape[-1]]
        ids = g.skip_connection_layer_ids()
        return [(ids[a], ids[b]) for a in range(len(ids)) for b in range(a + 1, len(ids))]

    def apply(g: Any, op: str, site: Any) -> None:
        layer = g.layer_list[site] if op in ("deepen", "widen") else None
        if op == "deepen":
            g.to_deeper_model(site, create_new_layer(layer, g.n_dim))
        elif op == "widen":
            g.to_wider_model(site, layer.filters if is_layer(layer, "Conv") else layer.units)
        else:
            getattr(g, NNI_OPS[op])(*site)

    def output(g: Any) -> torch.Tensor:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return g.produce_torch_model().eval()(check)

    def cell(graph: Any, op: str) -> Once:
        def once(r: int) -> tuple[dict[str, float], int, float | None]:
            random.seed(seed + r + 1)  # NNI draws from the global generators
            np.random.seed(seed + r + 1)
            child, t_copy = _ms(lambda: copy.deepcopy(graph))
            found, t_sites = _ms(lambda: sites(child, op))
            site = found[random.randrange(len(found))]
            _, t_op = _ms(lambda: apply(child, op, site))
            err = _relative(output(graph), output(child)) if graph.weighted else None
            return {"sites": t_sites, "realize": t_copy + t_op, "total": t_copy + t_sites + t_op}, len(found), err
        return once

    cells = {(op, impl): cell(g, op) for op in NNI_OPS for g, impl in ((plain, "nni"), (weighted, "nni weighted"))}
    cells["build", "nni"] = lambda r: ({"total": _ms(plain.produce_torch_model)[1]}, None, None)
    cells["validate", "nni"] = lambda r: (
        {"total": _ms(lambda: json_to_graph(json.dumps(plain.produce_json_model())))[1]}, None, None)
    return cells


def sensitivity(arch: Architecture, state: StateDict, check: torch.Tensor) -> float:
    """Relative output change of the parent itself for a 1e-7 relative input perturbation (float32 scale)."""
    module = build_module(arch, state).eval()
    noisy = check * (1 + 1e-7 * torch.randn(check.shape, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        return _relative(module(check), module(noisy))


def _environment() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import nni
        nni_version = nni.__version__
    except Exception as exc:  # noqa: BLE001
        nni_version = f"unavailable ({type(exc).__name__})"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "nni": nni_version, "cpu": cpu, "cpus_usable": affinity, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}


def _fmt(value: Any, spec: str = "9.2f") -> str:
    width = int(spec.rstrip("dfe").split(".")[0])
    return f"{value:{spec}}" if isinstance(value, float) else f"{'-' if value is None else value:>{width}}"


def print_table(rows: list[Row]) -> None:
    head = (f"{'depth':>5} {'op':<12} {'impl':<13} {'sites':>6} {'sites_ms':>9} {'realize':>9} {'xform':>9}"
            f" {'total_med':>9} {'total_p90':>9} {'x ours':>7} {'max_rel_err':>11}")
    print(head)
    print("-" * len(head))
    ours = {(r["depth"], r["op"]): r.get("total_med") for r in rows if r["impl"] == "ours"}
    for r in rows:
        prefix = f"{r['depth']:>5} {r['op']:<12} {r['impl']:<13}"
        if "failed" in r:
            print(f"{prefix} SKIPPED: {r['failed'][:120]}")
            continue
        xform = r.get("transform_med", "in op" if r["impl"] == "nni weighted" else None)
        base = ours.get((r["depth"], r["op"]))
        ratio = r["total_med"] / base if base else None
        err = f"{r['max_rel_err']:11.1e}" if r["max_rel_err"] is not None else f"{'-':>11}"
        print(f"{prefix} {_fmt(r['n_sites'], '6d')} {_fmt(r.get('sites_med'))} {_fmt(r.get('realize_med'))}"
              f" {_fmt(xform)} {_fmt(r['total_med'])} {_fmt(r['total_p90'])} {_fmt(ratio, '7.2f')} {err}")


LEGEND = """\
Times in ms (per-part columns: medians; total_med/total_p90: median and 90th percentile of the run total).
ours morphisms: sites_ms = sites(); realize = propose + realize (child validated); xform = transform(state,
  batch) -- deepen's runs the parent straight from its state_dict (functional_forward, no module built,
  channels-last) on the calibration batch up to the site (BatchNorm identity from data);
  total = plan + transform = all three.
nni: sites_ms = the layer (pair) list its graph_transformer samples from; realize = deepcopy of the graph +
  the in-place operator. The graph is unweighted, as its tuner uses it (trials train from scratch): NO
  weights are transformed ('-'). nni weighted: the same on a graph holding weights (set_weight_to_graph);
  its operators then also change the numpy weights, inside the operator ('in op'). Its deeper inserts ONE
  random conv, BN or ReLU layer (a ReLU after a conv or BN is no identity) and its operators add noise.
max_rel_err: max over runs of max|child(x) - parent(x)| / max|parent(x)|, 8 inputs, eval mode (untimed).
build: ours build_module(arch), nni produce_torch_model(), both a fresh initialisation. validate: ours
  Architecture.from_dict(arch.to_dict()) (parse + validation with shape inference); nni json_to_graph(
  json.dumps(produce_json_model())), a JSON round trip (NNI has no validation).
x ours: this row's median / ours' for the same depth and op. widen_kernel, branch: no NNI peer."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per cell (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sites, parameters and weights")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 60], help="weight layers (default 20 60)")
    parser.add_argument("--calibration", type=int, default=32, help="calibration batch size (default 32)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.calibration < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats, --calibration and --threads must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    env = _environment()
    print("bench_core: nni-nas-ext core vs NNI 3.0 networkmorphism_tuner graph code, CPU")
    print(" | ".join(f"{k} {v}" for k, v in env.items()))
    print(f"repeats {args.repeats} (+1 warm-up) | seed {args.seed} | calibration batch {args.calibration}x"
          f"{'x'.join(map(str, INPUT_SHAPE))} | NNI CnnGenerator(model_len=depth-1, model_width={NNI_WIDTH})")
    batch = torch.randn(args.calibration, *INPUT_SHAPE, generator=torch.Generator().manual_seed(args.seed))
    check = batch[:CHECK]  # the inputs of the max_rel_err column
    gc.collect()
    gc.freeze()  # the imported libraries' objects: keeps the collections between runs short
    rows: list[Row] = []
    started = time.perf_counter()
    for depth in args.depths:
        arch = plain_cnn(depth=depth, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES)
        torch.manual_seed(args.seed)
        state = _calibrate_bn(build_module(arch), batch).state_dict()
        print(f"depth {depth}: ours {len(arch.nodes)} nodes, {arch.num_parameters() / 1e6:.2f} M parameters; "
              f"the parent's own output changes by {sensitivity(arch, state, check):.1e} (relative) for a 1e-7 "
              "relative input change: the scale of float32 rounding in max_rel_err", flush=True)
        ours = ours_cells(arch, state, batch, check, args.seed, depth)
        try:
            nni = nni_cells(depth, args.seed, batch, check)
        except Exception as exc:  # noqa: BLE001 - no baseline, but our own figures still come
            nni = {}
            rows.append({"depth": depth, "op": "*", "impl": "nni", "failed": f"{type(exc).__name__}: {exc}"})
        for op in ours:  # each op: ours, then NNI's, close in time
            rows.append(_measure(depth, op, "ours", args.repeats, ours[op]))
            rows += [_measure(depth, op, impl, args.repeats, nni[op, impl])
                     for impl in ("nni", "nni weighted") if (op, impl) in nni]
    print()
    print_table(rows)
    print(f"\n{LEGEND}\n\nwall time {time.perf_counter() - started:.0f} s")
    verdicts = []
    for depth in args.depths:
        cells = [r for r in rows if r["depth"] == depth and r["impl"] == "ours" and r["op"] in MORPHISMS]
        failed = [r["op"] for r in cells if "failed" in r]
        worst = max((r for r in cells if "failed" not in r), key=lambda r: r["total_med"], default=None)
        met = worst is not None and worst["total_med"] < TARGET_MS and not failed
        verdicts.append({"depth": depth, "slowest": worst and worst["op"], "met": met, "failed": failed,
                         "median_ms": worst and worst["total_med"], "p90_ms": worst and worst["total_p90"]})
        line = (f"slowest morphism {worst['op']}, median plan+transform {worst['total_med']:.1f} ms "
                f"(p90 {worst['total_p90']:.1f})" if worst else "no morphism ran")
        print(f"target depth {depth}: {line} -> < {TARGET_MS:.0f} ms {'MET' if met else 'NOT MET'}"
              + (f"; FAILED: {failed}" if failed else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "repeats": args.repeats, "seed": args.seed,
                                         "calibration": args.calibration, "target_ms": TARGET_MS,
                                         "rows": rows, "verdicts": verdicts}, indent=1))
    return 1 if any("failed" in r for r in rows if r["impl"] == "ours") else 0


if __name__ == "__main__":
    sys.exit(main())
