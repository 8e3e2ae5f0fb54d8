"""Benchmark of a trial's speed: our training loop against a bare PyTorch loop, and where a trial's time goes.

Two measurements, one run (absolute times are noisy on shared machines; the ratios are what to compare):

1. **Loop.** Images per second of our training loop (``nni_nas_ext.trial_code.training.train``: cosine
   learning rate set every step, weight decay off for biases and BatchNorm, NaN check, loss and accuracy
   bookkeeping, fused SGD) against the simplest correct hand-written loop: ``torch.optim.SGD`` with
   torch's defaults over ``module.parameters()``, ``x[idx]``, forward, cross-entropy, ``zero_grad``,
   ``backward``, ``step``. Same model (the trial's network, same initial weights), same data tensors,
   same batch size, same number of steps, same shuffled order, and ``train``'s default precision and layout
   on the device for both (on a CPU with native bfloat16: bfloat16 autocast and channels-last, see
   ``bench_cpu_formats.py``); the two alternate ``--repeats`` times
   after one warm-up each. On the CPU the rates are images per CPU-second of this process
   (``time.process_time``): on a shared machine wall time measures the neighbours' load as much as the
   loop (runs of the same loop were seen 2x apart), CPU time what the loop costs. On CUDA they are wall
   time, synchronised. The table gives medians; the JSON every run, wall rates included.
   Target: ours >= 0.9x bare.

2. **Trial.** One real trial process, end to end, as NNI's local training service starts it: the trial
   command with NNI's environment variables, talking over NNI 3.0's HTTP trial command channel to a small
   server in this process that speaks the NNI manager's protocol (``nni_node/common/command_channel/
   http.js``: PUT a command, GET the next one, 408 when none is ready). Both trial commands are run, one
   after the other: NNI's ``python -m nni.nas.execution.training_service trial`` (``standard``) and ours,
   ``python -m nni_nas_ext.nni.trial_entry`` (``lean``). The parameter is what each gets from a search: NNI's
   ``nni.dump`` of the frozen ``SimplifiedModelSpace`` of a :class:`MorphismModelSpace` with our
   ``FunctionalEvaluator`` (``standard``), or our dispatcher's signed JSON payload of it (``lean``), for a
   child candidate 3 morphisms away from the NASH seed, whose (untrained)
   parent checkpoint this script writes first, so the trial really transforms weights. The trial's
   ``limit`` (training pool) is chosen from the loop's measured speed so that its training lasts about
   0.85 x ``--trial-seconds`` for ``--trial-epochs``. Its wall time, from ``Popen`` to exit, is split into
   process start and imports (until the trial asks for its parameter), NNI parameter to ``run_candidate``
   (decoding it, and the imports that pulls in), data load, weight transform, training steps,
   evaluation (validation every epoch, before training, and the test set of final trainings),
   checkpoint, reports and the rest, and process exit. Target: training steps >= 80 % of a 60-second
   trial on the CPU.

Run:  ``.venv/bin/python benchmarks/bench_trial_loop.py [--quick] [--json PATH] [--dataset fashion-mnist]
[--widths 16 32 64] [--batch-size 128] [--steps 20] [--repeats 7] [--trial-seconds 60] [--trial-epochs 3]
[--entry standard|lean|both] [--threads 1] [--device cpu|cuda] [--no-trial]``; ``--quick`` is a smoke
test (digits, a tiny network, one ~2-second lean trial: about 15 s in all, mostly the trial's imports).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOOP_TARGET = 0.9
TRIAL_TARGET = 0.8
ENTRIES = {
    "standard": ["-m", "nni.nas.execution.training_service", "trial"],
    "lean": ["-m", "nni_nas_ext.nni.trial_entry"],
}


# --------------------------------------------------------------------------------------------------
# 1. the loop
# --------------------------------------------------------------------------------------------------


def bare_loop(module: Any, x: Any, y: Any, order: Any, batch_size: int, lr: float = 0.05, *,
              amp: Any = None, channels_last: bool = False) -> None:
    """The simplest correct SGD loop over ``order`` (torch's default optimiser, one parameter group).

    ``amp`` (a dtype) wraps forward and loss in autocast, ``channels_last`` converts the module and every
    batch to NHWC: the numerics :func:`train` uses by default on the device, so the two loops compare
    bookkeeping, not formats."""
    import torch
    from torch import nn

    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    if channels_last:
        module.to(memory_format=torch.channels_last)
    device_type = x.device.type
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        xb = x[idx].contiguous(memory_format=torch.channels_last) if channels_last else x[idx]
        with torch.autocast(device_type, dtype=amp, enabled=amp is not None):
            loss = loss_fn(module(xb), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def compare_loops(arch: Any, x: Any, y: Any, *, batch_size: int, steps: int, repeats: int,
                  device: str = "cpu") -> dict[str, Any]:
    """Images/s of :func:`train` and of :func:`bare_loop` on the same model, data, batches and steps."""
    import torch

    from nni_nas_ext.core import build_module
    from nni_nas_ext.trial_code.training import Schedule, autocast_dtype, memory_format_of, train

    n = steps * batch_size
    if len(x) < n:
        raise ValueError(f"{steps} steps of {batch_size} need {n} images, but the data has {len(x)}: lower "
                         "--steps or --batch-size")
    x, y = x[:n].to(device), y[:n].to(device)
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in build_module(arch).state_dict().items()}
    schedule = Schedule(epochs=1, batch_size=batch_size, seed=0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(schedule.seed)).to(device)  # train's order
    amp = autocast_dtype("auto", torch.device(device))  # train's defaults on this device, given to both loops
    channels_last = memory_format_of("auto", torch.device(device), amp) == torch.channels_last

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def once(kind: str) -> tuple[float, float]:
        module = build_module(arch, initial).to(device)
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        if kind == "ours":
            train(module, x, y, schedule)
        else:
            bare_loop(module, x, y, order, batch_size, amp=amp, channels_last=channels_last)
        sync()
        return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)

    once("bare"), once("ours")  # warm-up: first-call costs (allocator, kernels) paid by neither
    wall: dict[str, list[float]] = {"bare": [], "ours": []}
    cpu: dict[str, list[float]] = {"bare": [], "ours": []}
    for r in range(repeats):
        for kind in (("bare", "ours") if r % 2 == 0 else ("ours", "bare")):
            w, c = once(kind)
            wall[kind].append(w)
            cpu[kind].append(c)
    # on the CPU, images per CPU-second: what the loop costs, whatever the neighbours on the machine do
    rates, clock = (wall, "wall") if device.startswith("cuda") else (cpu, "cpu")
    ratios = [o / b for o, b in zip(rates["ours"], rates["bare"])]
    median = {kind: statistics.median(values) for kind, values in rates.items()}
    return {
        "images_per_step": batch_size, "steps": steps, "repeats": repeats, "device": device, "clock": clock,
        "autocast": str(amp).removeprefix("torch.") if amp is not None else None, "channels_last": channels_last,
        "bare_images_per_s": median["bare"], "ours_images_per_s": median["ours"],
        "ratio": median["ours"] / median["bare"], "median_pair_ratio": statistics.median(ratios),
        "ratios": ratios, "cpu_rates": cpu, "wall_rates": wall,
        "wall_median_images_per_s": {kind: statistics.median(v) for kind, v in wall.items()},
        "target_ratio": LOOP_TARGET,
    }


# --------------------------------------------------------------------------------------------------
# 2. one real trial, over NNI's HTTP trial command channel
# --------------------------------------------------------------------------------------------------


class TrialChannelServer:
    """The NNI manager's side of one trial's HTTP command channel (``nni_node``'s ``HttpChannelServer``).

    The trial PUTs commands (``request_parameter``, ``metric``) and GETs the next command for it; a GET
    with nothing to send waits up to a second and answers 408, as NNI's does. Every command received is
    kept with the time it arrived.
    """

    def __init__(self, parameter: str) -> None:
        self.parameter = parameter
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._outgoing: queue.Queue[dict[str, Any]] = queue.Queue()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                command = json.loads(body)
                server.received.append((time.time(), command))
                if command.get("type") == "request_parameter":
                    server._outgoing.put({"type": "parameter", "parameter": server.parameter})
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                try:
                    command = server._outgoing.get(timeout=1.0)
                except queue.Empty:
                    self.send_response(408)
                    self.end_headers()
                    return
                payload = json.dumps(command).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/trial/bench"

    def __enter__(self) -> TrialChannelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def first(self, kind: str) -> tuple[float, dict[str, Any]] | None:
        return next(((t, c) for t, c in self.received if c.get("type") == kind), None)

    def metrics(self) -> list[tuple[float, dict[str, Any]]]:
        """``(arrival time, metric record)`` with the metric value decoded as the trial reported it."""
        out = []
        for t, command in self.received:
            if command.get("type") == "metric":  # plain JSON (nni.dump of plain values); never unpickled
                record = json.loads(command["metric"])
                from nni_nas_ext.results import decode_metric

                record["value"] = decode_metric(record["value"])  # JSON, and a final result's portal form undone
                out.append((t, record))
        return out


def child_of_seed(seed: Any, n_morphisms: int = 3) -> Any:
    """The child a NASH step could propose: ``n_morphisms`` random morphisms (fixed rng) from the seed."""
    import numpy as np

    from nni_nas_ext.core import create_morphism, random_chain

    morphisms = [create_morphism(n) for n in ("deepen", "widen", "add_skip", "concat_skip")]
    return random_chain(seed, morphisms, n_morphisms, np.random.default_rng(0)).child


def trial_payload(seed: Any, child: Any, task: dict[str, Any], store: Path, epochs: int,
                  key_file: Path | None = None) -> str:
    """The parameter record NNI hands the trial of ``child`` (serial 1), after writing its parent's checkpoint.

    With ``key_file`` (our trial command): the signed JSON payload our dispatcher sends (``nni_nas_ext.wire``),
    under the key in that file (created if missing; the trial finds it through ``NNI_NAS_EXT_TRIAL_KEY_FILE``).
    Without: NNI's own format, ``nni.dump`` of the frozen model, for NNI's trial command."""
    import nni
    import torch
    from nni.common.version import version_dump
    from nni.nas.space import SimplifiedModelSpace

    from nni_nas_ext.core import build_module
    from nni_nas_ext.nni.evaluator import make_evaluator
    from nni_nas_ext.nni.space import MorphismModelSpace, seed_candidate
    from nni_nas_ext.core.jobs import Candidate, candidate_id
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore

    parent = seed_candidate(seed)
    torch.manual_seed(0)
    CheckpointStore(store).save(parent.id, seed, build_module(seed).state_dict(), meta={"bench": "untrained"})
    cand = Candidate(candidate_id(child, 1), child, parent.id, epochs, "train", False, "child", 1)
    space = SimplifiedModelSpace.from_model(MorphismModelSpace(seed), make_evaluator(task))
    frozen = space.freeze({"architecture": cand.to_dict()})
    if key_file is not None:
        from nni_nas_ext.nni.evaluator import trial_payload_of
        from nni_nas_ext.wire import encode_trial, load_or_create_key

        signed = encode_trial(trial_payload_of(frozen), 0, load_or_create_key(key_file))
        return json.dumps({"parameter_id": 0, "parameters": signed, "parameter_source": "algorithm",
                           "parameter_index": 0, "version_info": version_dump()})
    return nni.dump({"parameter_id": 0, "parameters": frozen, "parameter_source": "algorithm",
                     "parameter_index": 0, "version_info": version_dump()})


def run_trial(payload: str, workdir: Path, entry: str, threads: int, timeout: float,
              key_file: Path | None = None) -> dict[str, Any]:
    """Run one trial process as NNI's local training service would; return its time, split by phase."""
    output = workdir / "trial"
    output.mkdir(parents=True, exist_ok=True)
    with TrialChannelServer(payload) as server:
        env = dict(os.environ)
        env.update({
            "NNI_PLATFORM": "local", "NNI_EXP_ID": "benchexp", "NNI_TRIAL_JOB_ID": "bench0",
            "NNI_TRIAL_SEQ_ID": "0", "NNI_SYS_DIR": str(output), "NNI_OUTPUT_DIR": str(output),
            "NNI_CODE_DIR": str(ROOT), "NNI_TRIAL_COMMAND_CHANNEL": server.url,
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1",
        })
        if key_file is not None:
            env["NNI_NAS_EXT_TRIAL_KEY_FILE"] = str(key_file)
        log = (output / "trial.log").open("w")
        start = time.time()
        proc = subprocess.Popen([sys.executable, *ENTRIES[entry]], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the trial ran over {timeout} s; its log: {output / 'trial.log'}") from None
        end = time.time()
        log.close()
        metrics = server.metrics()
        request = server.first("request_parameter")
    text = (output / "trial.log").read_text(errors="replace")
    finals = [(t, m["value"]) for t, m in metrics if m["type"] == "FINAL"]
    if code != 0 or request is None or not finals or "failed" in finals[-1][1]:
        raise RuntimeError(f"the trial failed (exit {code}); the last lines of its log:\n"
                           + "\n".join(text.strip().splitlines()[-30:]))
    final_at, result = finals[-1]
    clock = result["timings"]
    wall = end - start
    to_request = request[0] - start
    # run_candidate reports its final result right after reading its clock: it was entered `total` s before
    to_entry = final_at - clock["total"] - start
    phases = {
        "process start + imports (until NNI's parameter is asked for)": to_request,
        "NNI parameter -> run_candidate (decoding the parameter, imports)": max(0.0, to_entry - to_request),
        "data load": clock["data"],
        "weight transform (parent checkpoint -> child)": clock["transform"],
        "optimizer set-up (the first torch optimizer imports torch._dynamo)": clock["train_setup"],
        "training steps": clock["train_steps"],
        "evaluation (every epoch's validation + final)": clock["validation"] + clock["evaluate"]
        + clock.get("start_evaluate", 0.0),
        "checkpoint": clock["checkpoint"],
    }
    phases["reports, logging, the rest of run_candidate"] = max(0.0, clock["total"] - sum(
        v for k, v in phases.items() if not k.startswith(("process", "NNI"))))
    phases["final report -> process exit"] = max(0.0, end - final_at)
    return {
        "entry": entry, "command": " ".join(["python", *ENTRIES[entry]]), "wall_s": wall, "phases_s": phases,
        "unaccounted_s": wall - sum(phases.values()), "training_share": clock["train_steps"] / wall,
        "target_share": TRIAL_TARGET, "val_acc": result["default"], "preservation_error": result["preservation_error"],
        "epochs": result["epochs"], "params": result["params"], "timings": clock,
        "intermediate_reports": sum(1 for _, m in metrics if m["type"] == "PERIODICAL"),
    }


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


def environment(threads: int) -> dict[str, Any]:
    import nni
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "nni": nni.__version__,
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": threads, "cuda": torch.cuda.is_available(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nni_nas_ext.search_spaces import nash_seed
    from nni_nas_ext.trial_code.datasets import DatasetSpec, load_dataset

    torch.set_num_threads(args.threads)
    data = load_dataset(DatasetSpec(args.dataset, val_fraction=0.1))
    seed = nash_seed(data.input_shape, data.num_classes, widths=tuple(args.widths))
    child = child_of_seed(seed)
    out: dict[str, Any] = {"environment": environment(args.threads), "argv": sys.argv[1:],
                           "dataset": args.dataset, "widths": list(args.widths), "child": child.id,
                           "child_params": child.num_parameters()}
    out["loop"] = compare_loops(child, data.train_x, data.train_y, batch_size=args.batch_size, steps=args.steps,
                                repeats=args.repeats, device=args.device)
    print_loop(out["loop"])
    if args.no_trial:
        return out
    rate = out["loop"]["wall_median_images_per_s"]["ours"]
    pool = round(args.trial_seconds * 0.85 * rate / args.trial_epochs / 0.9)  # train = 0.9 of the pool
    limit = max(2 * args.batch_size, min(pool, len(data.train_y) + len(data.val_y)))
    task = {"dataset": args.dataset, "val_fraction": 0.1, "limit": limit, "batch_size": args.batch_size,
            "threads": args.threads, "device": args.device}
    out["trials"] = []
    for entry in (["standard", "lean"] if args.entry == "both" else [args.entry]):
        with tempfile.TemporaryDirectory(prefix="bench-trial-") as tmp:
            store = Path(tmp) / "checkpoints"
            key_file = Path(tmp) / "trial-key" if entry == "lean" else None
            payload = trial_payload(seed, child, {**task, "checkpoint_dir": str(store)}, store, args.trial_epochs,
                                    key_file)
            trial = run_trial(payload, Path(tmp), entry, args.threads, timeout=max(600.0, 10 * args.trial_seconds),
                              key_file=key_file)
        trial["task"] = task
        out["trials"].append(trial)
        print_trial(trial)
    return out


def print_loop(loop: dict[str, Any]) -> None:
    verdict = "ok" if loop["ratio"] >= LOOP_TARGET else "BELOW TARGET"
    print(f"\nTraining loop: {loop['steps']} steps of {loop['images_per_step']} images on {loop['device']}, "
          f"median of {loop['repeats']} alternating runs, images per {loop['clock']}-second (median ratio of the "
          f"pairs: {loop['median_pair_ratio']:.2f})")
    print(f"| {'loop':<40} | {'images/s':>10} | {'x bare':>7} |")
    print(f"| {'-' * 40} | {'-' * 10}:| {'-' * 6}:|")
    print(f"| {'bare PyTorch loop':<40} | {loop['bare_images_per_s']:>10.0f} | {1.0:>7.2f} |")
    print(f"| {'ours (trial_code.training.train)':<40} | {loop['ours_images_per_s']:>10.0f} | "
          f"{loop['ratio']:>7.2f} |")
    print(f"target: ours >= {LOOP_TARGET:.1f}x bare -> {verdict}", flush=True)


def print_trial(trial: dict[str, Any]) -> None:
    wall = trial["wall_s"]
    verdict = "ok" if trial["training_share"] >= TRIAL_TARGET else "BELOW TARGET"
    print(f"\nOne trial process end to end ({trial['command']}; {trial['epochs']} epochs, limit "
          f"{trial['task']['limit']}, {trial['params']} parameters): {wall:.1f} s wall")
    print(f"| {'phase':<75} | {'seconds':>8} | {'share':>6} |")
    print(f"| {'-' * 75} | {'-' * 7}:| {'-' * 5}:|")
    for name, seconds in trial["phases_s"].items():
        print(f"| {name:<75} | {seconds:>8.2f} | {100 * seconds / wall:>5.1f}% |")
    print(f"| {'(unaccounted)':<75} | {trial['unaccounted_s']:>8.2f} | {100 * trial['unaccounted_s'] / wall:>5.1f}% |")
    print(f"| {'total (Popen -> exit)':<75} | {wall:>8.2f} | {100.0:>5.1f}% |")
    print(f"training steps: {100 * trial['training_share']:.1f}% of the trial (target >= {100 * TRIAL_TARGET:.0f}%) "
          f"-> {verdict}; validation accuracy {trial['val_acc']:.4f}, preservation error "
          f"{trial['preservation_error']:.2g}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: digits, a tiny net, a ~2 s trial")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--widths", type=int, nargs=3, default=[16, 32, 64], help="the NASH seed's conv widths")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="training steps per loop run")
    parser.add_argument("--repeats", type=int, default=7, help="alternating runs of each loop")
    parser.add_argument("--trial-seconds", type=float, default=60.0, help="about how long the trial should last")
    parser.add_argument("--trial-epochs", type=int, default=3)
    parser.add_argument("--entry", choices=[*sorted(ENTRIES), "both"], default=None,
                        help="the trial command: NNI's (standard), ours (lean) or both, one after the other "
                             "(default: both; lean with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a trial's default: 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the loop comparison")
    parser.add_argument("--no-trial", action="store_true", help="only the loop comparison")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.widths, args.steps, args.repeats = "digits", [4, 8, 8], 10, 2
        args.trial_seconds, args.trial_epochs = 2.0, 2
    if args.entry is None:
        args.entry = "lean" if args.quick else "both"
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print(f"bench_trial_loop: {' '.join(sys.argv[1:]) or '(defaults)'}", flush=True)
    out = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
