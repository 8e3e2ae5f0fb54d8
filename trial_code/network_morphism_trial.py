"""The trial of NNI's ``NetworkMorphism`` tuner: build its JSON graph with NNI's code, train it with ours.

Run by nnictl as the experiment's ``trialCommand``::

    .venv/bin/python -m nni_nas_ext.trial_code.network_morphism_trial --epochs 2 --dataset fashion-mnist --threads 1

Each trial gets one JSON graph from ``nni.get_next_parameter()`` (what
:class:`~nni_nas_ext.nni.baselines.network_morphism.NetworkMorphismTuner` proposed), builds the network with
NNI's own graph code (:func:`~nni_nas_ext.nni.baselines.network_morphism.build_network_morphism_model`,
a fresh initialisation: NNI's graphs carry no weights), and trains it exactly as our trials train a
candidate: the same data and validation split (:mod:`.datasets`), SGD with one cosine cycle from ``lr``
(:func:`.training.train`, :meth:`.trial.TaskConfig.schedule`), validation accuracy after every epoch. It
reports ``{"default": val_acc, "epoch": e}`` per epoch and a final ``{"default": val_acc, "params": ...,
"graph": <the JSON graph>, ...}`` from which the benchmark can rebuild the network.

The options are ``--epochs`` and every key of :class:`.trial.TaskConfig` but the checkpoint ones, as
``--key-with-dashes VALUE`` (the value read as JSON when it parses, else as a string: ``--limit null``,
``--dataset digits``). ``nni`` is imported by :func:`main` only; :func:`train_graph` takes a reporter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from .datasets import Splits, load_dataset
from .training import EpochResult, evaluate, train
from .trial import Reporter, TaskConfig

__all__ = ["main", "parse_arguments", "train_graph"]

_log = logging.getLogger(__name__)

#: TaskConfig keys a NetworkMorphism trial does not use (it keeps no checkpoints and measures no preservation)
_UNUSED = frozenset({"checkpoint_dir", "calibration_size"})


def train_graph(graph_json: str, task: TaskConfig, epochs: int, reporter: Reporter, *, sequence: int = 0,
                data: Splits | None = None) -> dict[str, Any]:
    """Build ``graph_json`` with NNI's graph code, train it ``epochs`` epochs on the train split, report.

    ``sequence`` (NNI's trial sequence number) seeds the initialisation and the shuffling with
    ``task.seed``, as a candidate's serial does in our trials. Returns the final result it reported.

    Raises
    ------
    ValueError
        If the graph is not a NetworkMorphism graph or does not fit the dataset (the message says which
        classArgs to set).
    """
    from nni_nas_ext.nni.baselines.network_morphism import build_network_morphism_model, check_fits, count_parameters

    clock: dict[str, float] = {}
    t_enter = time.time()
    if task.threads:
        torch.set_num_threads(task.threads)
    device = torch.device("cuda" if task.device == "cuda" or (task.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    t = time.time()
    if data is None:
        data = load_dataset(task.dataset_spec())
        _log.info("%s", data.describe())
    clock["data"] = round(time.time() - t, 4)
    check_fits(graph_json, tuple(data.input_shape), data.num_classes)
    seed = task.seed * 100_003 + sequence
    torch.manual_seed(seed)
    module = build_network_morphism_model(graph_json).to(device)
    params = count_parameters(module)
    _log.info("NetworkMorphism graph: %d parameters, %d epochs on %s", params, epochs, device)

    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    x, y = data.train_x.to(device), data.train_y.to(device)

    def on_epoch(r: EpochResult) -> None:
        _log.info("epoch %d/%d: loss %.4f, train acc %.4f, val acc %.4f (%.2f s)", r.epoch, epochs, r.train_loss,
                  r.train_accuracy, r.val_accuracy if r.val_accuracy is not None else math.nan, r.seconds)
        reporter.intermediate({"default": r.val_accuracy, "epoch": r.epoch, "train_loss": round(r.train_loss, 6)})

    t = time.time()
    history = train(module, x, y, task.schedule(epochs, seed=seed), validation=(val_x, val_y), on_epoch=on_epoch)
    clock["train"] = round(time.time() - t, 4)
    val_acc = evaluate(module, val_x, val_y)
    clock["total"] = round(time.time() - t_enter, 4)
    result: dict[str, Any] = {
        "default": val_acc,
        "params": params,
        "graph": graph_json,
        "epochs": epochs,
        "train_on": "train",
        "train_loss": round(history[-1].train_loss, 6) if history else None,
        "sequence": sequence,
        "normalisation": {"mean": list(data.mean), "std": list(data.std)},
        "timings": clock,
    }
    _log.info("final: val acc %.4f, %d parameters; timings %s", val_acc, params, clock)
    reporter.final(result)
    return result


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_arguments(argv: Sequence[str] | None = None) -> tuple[int, TaskConfig]:
    """``(epochs, task)`` from the command line; a bad value exits with the message of :class:`TaskConfig`."""
    parser = argparse.ArgumentParser(prog="python -m nni_nas_ext.trial_code.network_morphism_trial",
                                     description="Train one NetworkMorphism graph proposed by NNI's tuner.")
    parser.add_argument("--epochs", type=int, required=True, help="epochs of the one cosine cycle")
    keys = [f.name for f in dataclasses.fields(TaskConfig) if f.init and f.name not in _UNUSED]
    for key in keys:
        parser.add_argument("--" + key.replace("_", "-"), dest=key, type=_value, default=dataclasses.MISSING,
                            help=f"TaskConfig.{key} (JSON value or string)")
    args = parser.parse_args(argv)
    if args.epochs < 0:
        parser.error(f"--epochs must be an integer >= 0, but got {args.epochs}")
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not dataclasses.MISSING}
    try:
        task = TaskConfig.from_dict(given)
    except ValueError as exc:
        parser.error(str(exc))
    return args.epochs, task


class _NniReporter:
    def __init__(self, nni: Any) -> None:
        self._nni = nni

    def intermediate(self, metric: dict[str, Any]) -> None:
        self._nni.report_intermediate_result(metric)

    def final(self, metric: dict[str, Any]) -> None:
        self._nni.report_final_result(metric)


def main(argv: Sequence[str] | None = None) -> int:
    """The trial: one graph from NNI, trained and reported."""
    import nni

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    epochs, task = parse_arguments(argv)
    graph_json = nni.get_next_parameter()
    if graph_json is None:
        raise SystemExit("no parameter from NNI: run this module as the trialCommand of a NetworkMorphism experiment")
    train_graph(graph_json, task, epochs, _NniReporter(nni), sequence=int(nni.get_sequence_id()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
