"""The trial of NNI's ``NetworkMorphism`` tuner: build its JSON graph with NNI's code, train it with ours.

Run by nnictl as the experiment's ``trialCommand``::

    .venv/bin/python -m nni_nas_ext.nni.baselines.network_morphism_trial --epochs 2 --dataset fashion-mnist --threads 1

Each trial gets one JSON graph from ``nni.get_next_parameter()`` (what
:class:`~nni_nas_ext.nni.baselines.network_morphism.NetworkMorphismTuner` proposed), builds the network with
NNI's own graph code (:func:`~nni_nas_ext.nni.baselines.network_morphism.build_network_morphism_model`,
a fresh initialisation: NNI's graphs carry no weights), and trains it exactly as our trials train a
candidate: the same data and validation split (:mod:`nni_nas_ext.trial_code.datasets`), SGD with one cosine
cycle from ``lr`` (:func:`nni_nas_ext.trial_code.training.train`,
:meth:`nni_nas_ext.trial_code.trial.TaskConfig.schedule`), validation accuracy after every epoch. It
reports ``{"default": val_acc, "epoch": e}`` per epoch and a final ``{"default": val_acc, "params": ...,
"graph": <the JSON graph>, ...}`` from which the benchmark can rebuild the network.

The options are ``--epochs`` and every key of :class:`~nni_nas_ext.trial_code.trial.TaskConfig` but the
checkpoint ones, as ``--key-with-dashes VALUE`` (the value read as JSON when it parses, else as a string:
``--limit null``, ``--dataset digits``). ``nni`` is imported by :func:`main` only; :func:`train_graph` takes a reporter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch

from nni_nas_ext.trial_code.datasets import Splits
from nni_nas_ext.trial_code.scratch import train_from_scratch
from nni_nas_ext.trial_code.trial import Reporter, TaskConfig

__all__ = ["main", "parse_arguments", "train_graph"]

#: TaskConfig keys a NetworkMorphism trial does not use (it keeps no checkpoints, measures no preservation and
#: trains from scratch: no parent to distil from)
_UNUSED = frozenset({"checkpoint_dir", "calibration_size", "distill_weight", "distill_temperature"})


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
    from .network_morphism import build_network_morphism_model, check_fits

    def build(data: Splits) -> torch.nn.Module:
        check_fits(graph_json, tuple(data.input_shape), data.num_classes)
        return build_network_morphism_model(graph_json)

    return train_from_scratch(build, task, epochs, reporter, sequence=sequence, rebuild={"graph": graph_json},
                              what="NetworkMorphism graph", data=data)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_arguments(argv: Sequence[str] | None = None) -> tuple[int, TaskConfig]:
    """``(epochs, task)`` from the command line; a bad value exits with the message of :class:`TaskConfig`."""
    parser = argparse.ArgumentParser(prog="python -m nni_nas_ext.nni.baselines.network_morphism_trial",
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


def main(argv: Sequence[str] | None = None) -> int:
    """The trial: one graph from NNI, trained and reported."""
    import nni

    from ..evaluator import NniReporter

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    epochs, task = parse_arguments(argv)
    graph_json = nni.get_next_parameter()
    if graph_json is None:
        raise SystemExit("no parameter from NNI: run this module as the trialCommand of a NetworkMorphism experiment")
    train_graph(graph_json, task, epochs, NniReporter(), sequence=int(nni.get_sequence_id()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
