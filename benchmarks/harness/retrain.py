"""The common final training: the best trial's architecture rebuilt and trained on train+val, then tested once.

The final protocol, the same for everyone (time reported apart from the budget): the best architecture is
rebuilt and trained FROM SCRATCH on train+val for ``final_epochs`` with the trials' schedule, then the test
set is evaluated once ("test acc (retrained)"). When the best trial left its weights (a ``checkpoint``), the
same final schedule also continues from them ("test acc (inherited weights)").
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .settings import Settings
from .trials import REBUILD_KEYS

#: the dataset loaded last, by its ``DatasetSpec`` fields (one at a time)
_DATA: dict[tuple[Any, ...], Any] = {}


def load_data(s: Settings) -> Any:
    """The task's dataset with the trials' own split (loaded once, then kept for the same settings)."""
    from nni_nas_ext.trial_code.datasets import DatasetSpec, load_dataset

    spec = DatasetSpec(s.dataset, s.dataset_root, s.val_fraction, s.split_seed, s.limit)
    key = dataclasses.astuple(spec)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_dataset(spec)
    return _DATA[key]


def _device(s: Settings) -> Any:
    from nni_nas_ext.trial_code.training import select_device

    return select_device(s.device)


def final_schedule(s: Settings, seed: int) -> Any:
    """The trials' own schedule (TaskConfig.schedule) with ``final_epochs``."""
    from nni_nas_ext.trial_code.trial import TaskConfig

    task = TaskConfig(dataset=s.dataset, dataset_root=s.dataset_root, val_fraction=s.val_fraction,
                      split_seed=s.split_seed, limit=s.limit, lr=s.lr, lr_min=s.lr_min, batch_size=s.batch_size,
                      momentum=s.momentum, weight_decay=s.weight_decay, seed=seed)
    return task.schedule(s.final_epochs, seed=seed)


def rebuild(metric: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int,
            ) -> tuple[Callable[[], Any], Callable[[], Any] | None, str]:
    """Builders of the best trial's architecture: ``(fresh, with inherited weights or None, description)``.

    Raises
    ------
    ValueError
        When the metric has none of the rebuild keys, or the builder it needs is not available.
    """
    from nni_nas_ext.core import build_module

    if metric.get("checkpoint"):
        from nni_nas_ext.trial_code.checkpoints import CheckpointStore

        path = Path(str(metric["checkpoint"]))
        checkpoint = CheckpointStore(path.parent).load(path.stem)
        arch = checkpoint.architecture
        return (lambda: build_module(arch), lambda: build_module(arch, checkpoint.state_dict),
                f"checkpoint {path.name} (architecture {arch.id})")
    if metric.get("sample") is not None:
        from nni_nas_ext.search_spaces.cnn_space import build_cnn_space_model

        sample = metric["sample"]
        return lambda: build_cnn_space_model(sample, input_shape, num_classes), None, "nni.nas sample"
    if metric.get("graph") is not None:
        from nni_nas_ext.nni.baselines.network_morphism import build_network_morphism_model

        graph = metric["graph"]
        return lambda: build_network_morphism_model(graph), None, "NetworkMorphism graph"
    raise ValueError(f"the best trial's final metric has none of the rebuild keys {list(REBUILD_KEYS)} "
                     f"(keys: {sorted(metric)}): the contestant's trials break the harness's contract")


def train_and_test(make: Callable[[], Any], s: Settings, seed: int, threads: int | None = None) -> dict[str, Any]:
    """Train ``make()`` on train+val for ``final_epochs`` with the trials' schedule, then test it once."""
    import torch

    from nni_nas_ext.trial_code.training import evaluate, train

    threads = threads or s.final_threads
    data = load_data(s)
    device = _device(s)
    schedule = final_schedule(s, seed)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t = time.time()
    module = make().to(device)
    x = torch.cat([data.train_x, data.val_x]).to(device)
    y = torch.cat([data.train_y, data.val_y]).to(device)
    with warnings.catch_warnings():  # NNI's NetworkMorphism graphs apply dropout2d to flat features
        warnings.filterwarnings("ignore", message="dropout2d: Received a 2-D input", category=UserWarning)
        train(module, x, y, schedule)
        test_acc = evaluate(module, data.test_x.to(device), data.test_y.to(device))
    return {"test_acc": test_acc, "epochs": s.final_epochs, "seconds": round(time.time() - t, 2),
            "params": int(sum(p.numel() for p in module.parameters())), "train_size": len(x),
            "device": str(device), "threads": threads}


def _train_and_test_child(make: Callable[[], Any], s: Settings, seed: int, threads: int, queue: Any) -> None:
    try:
        queue.put(("ok", train_and_test(make, s, seed, threads)))
    except BaseException as exc:  # noqa: BLE001 -- carried to the parent, which raises it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _answer(proc: Any, queue: Any) -> tuple[str, Any]:
    """A child's result, or why there is none (killed, say, by the OOM killer) rather than waiting forever."""
    import queue as queue_module

    while True:
        try:
            return queue.get(timeout=2)
        except queue_module.Empty:
            if not proc.is_alive():
                try:
                    return queue.get(timeout=2)
                except queue_module.Empty:
                    return "error", f"the process ended with exit code {proc.exitcode} and no result"


def train_and_test_pair(fresh: Callable[[], Any], inherited: Callable[[], Any], s: Settings,
                        seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both final trainings at once, each in a forked process with half the threads.

    Small CPU networks barely use a second intra-op thread (measured: one core busy with two threads), so two
    single-thread processes finish the pair in about half the wall time. Forked, so the rebuild closures need
    no pickling; CUDA (not fork-safe) or a single thread runs them one after the other."""
    import multiprocessing

    if s.final_threads < 2 or _device(s).type != "cpu" or "fork" not in multiprocessing.get_all_start_methods():
        return train_and_test(fresh, s, seed), train_and_test(inherited, s, seed)
    ctx = multiprocessing.get_context("fork")
    threads = s.final_threads // 2
    queues = [ctx.Queue(), ctx.Queue()]
    procs = [ctx.Process(target=_train_and_test_child, args=(make, s, seed, threads, q), daemon=True)
             for make, q in zip((fresh, inherited), queues)]
    for proc in procs:
        proc.start()
    try:
        answers = [_answer(proc, q) for proc, q in zip(procs, queues)]  # before join: a child waits to be read
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    for what, (status, value) in zip(("from scratch", "from inherited weights"), answers):
        if status != "ok":
            raise RuntimeError(f"the final training {what} failed: {value}")
    return answers[0][1], answers[1][1]


def final_training(best: Mapping[str, Any], s: Settings, seed: int) -> dict[str, Any]:
    """The common final protocol on the best trial: retrained from scratch, and from inherited weights."""
    data = load_data(s)
    fresh, inherited, what = rebuild(best["metric"], data.input_shape, data.num_classes)
    if inherited is None:
        return {"rebuilt_from": what, "retrained": train_and_test(fresh, s, seed), "inherited": None}
    retrained, from_weights = train_and_test_pair(fresh, inherited, s, seed)
    return {"rebuilt_from": what, "retrained": retrained, "inherited": from_weights}
