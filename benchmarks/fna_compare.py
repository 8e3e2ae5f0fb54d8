"""FNA against its baselines and NNI's Random strategy at the same cost (issue 5's comparison).

Runs, in this process (one CPU thread; CPU time by ``time.process_time``):

1. the FNA pipeline of a config's ``classArgs`` (seed -> architecture adaptation -> parameter adaptation) with
   its baselines: (a) the seed fine-tuned as it is and (b) the derived architecture from scratch, same schedule;
2. (c) NNI's ``Random`` strategy (``nni.nas.strategy.Random``, sequential engine) over the same space as an
   ``nni.nas`` ModelSpace (:class:`nni_nas_ext.nni.mbconv_space.MBConvModelSpace`), each sample trained from
   scratch on the target with the same schedule as the parameter adaptation, as many samples as fit in FNA's
   total CPU time (seed + adaptation + parameter adaptation), the per-sample cost measured by the scratch
   baseline; the best sample by validation accuracy is tested once.

Prints a table (target test accuracy, parameters, MAdds, CPU seconds) and writes it as JSON (settings, every
phase, every Random sample, versions, machine, git commit) and as a markdown table beside it; NNI's and the
checkpoints' files go to ``work/`` beside them (not committed).

    .venv/bin/python benchmarks/fna_compare.py --config examples/fna-fashion-to-mnist.yml \
        --out benchmarks/results/fna-fashion-to-mnist/seed0.json --set seed=0
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: The contestants of this comparison: ``fna``, the registry of searches' search of that contestant (its strategy class
#: is the registry's; the baselines (a) and (b) are jobs of that search), and those of :data:`NOT_SEARCHES`.
CONTESTANTS = ("fna", "nni_random_mbconv")
#: The contestants that are not a search of the registry, with the reason.
NOT_SEARCHES = {
    "nni_random_mbconv": "(c): NNI's Random strategy over FNA's MBConv space, run in this process by nni.nas's "
                         "sequential engine for as many samples as fit in FNA's CPU time; not the registry's "
                         "nni_random, which searches the CNN-stage space through nnictl",
}


class _Reporter:
    def __init__(self) -> None:
        self.finals: list[dict[str, Any]] = []

    def intermediate(self, metric: dict[str, Any]) -> None:
        pass

    def final(self, metric: dict[str, Any]) -> None:
        self.finals.append(metric)


def run_fna(settings: dict[str, Any], checkpoint_dir: Path, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from nni_nas_ext.nni.fna import split_fna_settings
    from nni_nas_ext.registry import resolve, search_of_contestant
    from nni_nas_ext.trial_code.fna_trial import run_fna_job

    fna, task, adaptation = split_fna_settings({**settings, "baselines": True, "checkpoint_dir": str(checkpoint_dir)})
    pipeline = resolve(search_of_contestant("fna_compare", "fna").strategy)(fna)  # FnaPipeline
    results: dict[str, dict[str, Any]] = {}
    while not pipeline.finished:
        for job in pipeline.ask():
            reporter = _Reporter()
            result = run_fna_job(job, task, adaptation, reporter, data=data)
            print(f"FNA {job.id}: val {result['default']:.4f} test {result.get('test_acc')} "
                  f"cpu {result['cpu_seconds']:.1f} s", flush=True)
            results[job.kind] = result
            pipeline.tell(job.id, result)
    return results


def run_random(settings: dict[str, Any], n_samples: int, data: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import nni
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.strategy import Random

    from nni_nas_ext.nni.fna import split_fna_settings
    from nni_nas_ext.nni.mbconv_space import MBConvModelSpace
    from nni_nas_ext.trial_code.training import evaluate, train

    fna, task, _ = split_fna_settings(settings)
    target = data["target"]
    c, h, _w = target.input_shape
    space = MBConvModelSpace(num_classes=target.num_classes, width_mult=task.width_mult, input_size=h, in_channels=c,
                             max_layers=task.max_layers, kernels=task.kernels, expansions=task.expansions)
    records: list[dict[str, Any]] = []

    def evaluate_sample(model: MBConvModelSpace) -> None:
        cpu = time.process_time()
        torch.manual_seed(task.seed * 100_003 + len(records))
        net = model  # a frozen MBConvModelSpace: the sample's network, fresh weights
        train(net, target.train_x, target.train_y, task.schedule(fna.epochs_param, seed=task.seed + len(records)))
        val = evaluate(net, target.val_x, target.val_y)
        arch = model.architecture
        records.append({"val_acc": val, "arch": arch.to_dict(), "params": arch.num_parameters(),
                        "madds": arch.num_madds(), "cpu_seconds": time.process_time() - cpu, "model": net})
        print(f"Random sample {len(records)}: val {val:.4f}, {arch.num_madds()} MAdds", flush=True)
        nni.report_final_result(val)

    config = NasExperimentConfig("sequential", "raw", "local")
    config.max_trial_number = n_samples
    config.experiment_working_directory = str(workdir)
    experiment = NasExperiment(space, FunctionalEvaluator(evaluate_sample), Random(dedup=True, seed=task.seed), config)
    try:
        experiment.run(wait_completion=True)
    finally:
        experiment.stop()
    best = max(records, key=lambda r: r["val_acc"])  # selection on validation; the test set once, below
    test = evaluate(best["model"], target.test_x, target.test_y)
    return {"samples": len(records), "best_val_acc": best["val_acc"], "test_acc": test, "params": best["params"],
            "madds": best["madds"], "cpu_seconds": sum(r["cpu_seconds"] for r in records),
            "every_sample": [{k: v for k, v in r.items() if k != "model"} for r in records]}


def markdown(rows: dict[str, dict[str, Any]], settings: dict[str, Any]) -> str:
    lines = [f"FNA {settings.get('source_dataset')} -> {settings.get('target_dataset')}, seed {settings.get('seed')}, "
             f"width {settings.get('width_mult')}; CPU seconds by time.process_time, one thread",
             "", "| on the target | test acc | params | MAdds | CPU s |", "| --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['test_acc']:.4f} | {r['params']:,} | {r['madds'] / 1e6:.2f}M "
                     f"| {r['cpu_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "fna-fashion-to-mnist.yml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a classArgs key, e.g. --set epochs_adapt=2")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "fna_compare.json"),
                        help="the JSON report; a .md table is written beside it, NNI's files under work/ there")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    settings = dict(yaml.safe_load(Path(args.config).read_text())["tuner"]["classArgs"])
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = json.loads(value)
    settings["threads"] = 1
    out = Path(args.out).resolve()  # the trials need absolute checkpoint paths
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / "work" / out.stem
    data: dict[str, Any] = {}
    t0 = time.time()
    fna = run_fna(settings, work / "checkpoints", data)
    fna_cost = sum(fna[k]["cpu_seconds"] for k in ("seed", "adapt", "param") if k in fna)
    per_sample = fna["scratch"]["cpu_seconds"]
    n = max(1, int(fna_cost // per_sample))
    print(f"FNA pipeline CPU {fna_cost:.1f} s; one from-scratch training {per_sample:.1f} s -> {n} Random samples",
          flush=True)
    random = run_random(settings, n, data, work / "nni")
    rows = {
        "FNA (param adaptation)": {k: fna["param"][k] for k in ("test_acc", "params", "madds")}
        | {"cpu_seconds": fna_cost},
        "(a) seed fine-tuned as is": {k: fna["seed_finetune"][k] for k in ("test_acc", "params", "madds")}
        | {"cpu_seconds": fna["seed"]["cpu_seconds"] + fna["seed_finetune"]["cpu_seconds"]},
        "(b) derived arch from scratch": {k: fna["scratch"][k] for k in ("test_acc", "params", "madds")}
        | {"cpu_seconds": fna["scratch"]["cpu_seconds"]},
        f"(c) NNI Random, {random['samples']} samples": {k: random[k] for k in ("test_acc", "params", "madds",
                                                                               "cpu_seconds")},
    }
    table = markdown(rows, settings)
    print("\n" + table)
    from harness.machine import environment

    report = {"settings": settings, "rows": rows, "environment": environment(), "argv": sys.argv[1:],
              "fna": {k: {kk: vv for kk, vv in v.items() if kk != "history"}
                                                          for k, v in fna.items()},
              "random": random, "wall_seconds": time.time() - t0}
    out.write_text(json.dumps(report, indent=1, default=str))
    out.with_suffix(".md").write_text(table)
    print(f"written {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
