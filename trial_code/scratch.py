"""Training a freshly initialised network as every benchmark contestant is trained: the trials of NNI's own
searches (:mod:`nni_nas_ext.nni.baselines`) run :func:`train_from_scratch`, our morphism trials
:func:`~.trial.run_candidate`."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .checkpoints import CheckpointStore
from .datasets import Splits, load_dataset
from .latency import measure_latency
from .training import EpochResult, evaluate, select_device, train
from .trial import Reporter, TaskConfig

__all__ = ["train_from_scratch"]

_log = logging.getLogger(__name__)


def train_from_scratch(build: Callable[[Splits], torch.nn.Module], task: TaskConfig, epochs: int, reporter: Reporter, *,
                       sequence: int, rebuild: Mapping[str, Any], what: str, data: Splits | None = None,
                       store: CheckpointStore | None = None, weights_id: str | None = None) -> dict[str, Any]:
    """Train a freshly initialised network on the train split as every benchmark contestant is trained; report it.

    The trials of NNI's own searches (``nni_nas_ext.nni.baselines``) share this: torch is seeded with
    ``task.seed`` and ``sequence`` (NNI's trial sequence number, as a candidate's serial in our trials), then
    ``build(data)`` returns the network (raising when it does not fit the data), which trains one cosine cycle
    of ``epochs`` epochs with per-epoch validation reports. The final result is ``{"default": val_acc,
    "params": ..., **rebuild, ...}``: ``rebuild`` holds what rebuilds the network (``sample``, ``graph``);
    with ``task.measure_latency``, ``latency_ms`` and ``latency_device`` as in :func:`run_candidate`.
    ``what`` names the network in the logs. With a ``store``, the trained weights are kept as ``weights_id``
    (:meth:`~.checkpoints.CheckpointStore.save_weights`, ``rebuild`` in their meta) before the final report,
    which names the file as ``weights``. Returns the final result it reported.
    """
    if store is not None and weights_id is None:
        raise ValueError("train_from_scratch: a store needs a weights_id (the file's name in the store)")
    clock: dict[str, float] = {}
    t_enter = time.time()
    if task.threads:
        torch.set_num_threads(task.threads)
    device = select_device(task.device)
    t = time.time()
    if data is None:
        data = load_dataset(task.dataset_spec())
        _log.info("%s", data.describe())
    clock["data"] = round(time.time() - t, 4)
    seed = task.seed * 100_003 + sequence
    torch.manual_seed(seed)
    module = build(data).to(device)
    params = int(sum(p.numel() for p in module.parameters()))
    _log.info("%s: %d parameters, %d epochs on %s", what, params, epochs, device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    x, y = data.train_x.to(device), data.train_y.to(device)

    def on_epoch(r: EpochResult) -> None:
        _log.info("epoch %d/%d: loss %.4f, train acc %.4f, val acc %.4f (%.2f s)", r.epoch, epochs, r.train_loss,
                  r.train_accuracy, r.val_accuracy if r.val_accuracy is not None else math.nan, r.seconds)
        reporter.intermediate({"default": r.val_accuracy, "epoch": r.epoch, "train_loss": round(r.train_loss, 6)})

    t = time.time()
    history = train(module, x, y, task.schedule(epochs, seed=seed), validation=(val_x, val_y), on_epoch=on_epoch,
                    precision=task.precision, memory_format=task.memory_format)
    clock["train"] = round(time.time() - t, 4)
    val_acc = evaluate(module, val_x, val_y)
    latency = None
    if task.measure_latency:
        t = time.time()
        latency = measure_latency(module, data.input_shape, device, warmup=task.latency_warmup,
                                  repeats=task.latency_repeats)
        clock["latency"] = round(time.time() - t, 4)
    clock["total"] = round(time.time() - t_enter, 4)
    result: dict[str, Any] = {
        "default": val_acc,
        "params": params,
        **rebuild,
        "epochs": epochs,
        "train_on": "train",
        "train_loss": round(history[-1].train_loss, 6) if history else None,
        "sequence": sequence,
        "normalisation": data.preprocessing(),
        "timings": clock,
    }
    if latency is not None:
        result["latency_ms"] = round(latency.median_ms, 4)
        result["latency_device"] = latency.device_name
    if store is not None:
        t = time.time()
        cpu_state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        meta = {"rebuild": dict(rebuild), "params": params}
        result["weights"] = str(store.save_weights(str(weights_id), cpu_state, meta=meta))
        clock["checkpoint"] = round(time.time() - t, 4)
    _log.info("final: val acc %.4f, %d parameters; timings %s", val_acc, params, clock)
    reporter.final(result)
    return result
