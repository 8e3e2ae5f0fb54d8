"""Measured inference latency of a network: one image at a time, on the trial's device.

LEMONADE (Elsken, Metzen, Hutter, ICLR 2019, arXiv 1804.09081) minimises cheap objectives beside the error:
parameters and multiply-adds, which a formula gives, or a measured resource such as inference time. This is
the measurement: :func:`measure_latency` runs the network at batch 1 in eval mode under
``torch.inference_mode``, ``warmup`` untimed passes first (allocator, oneDNN's and cuDNN's kernel choice,
caches), then ``repeats`` passes each timed with ``time.perf_counter`` (on CUDA, after a synchronisation, so
that the time is the kernels', not their launch), and reports the median, which one slow pass (another
process taking the core, a page fault) does not move.

A latency is a property of a network *and a machine*: :attr:`LatencyResult.device_name` says which (e.g.
``"cpu: Intel(R) Xeon(R) Platinum 8480+, 1 thread"``); compare only latencies measured on one machine with
the same threads. The network runs in its default (NCHW) layout and float32, as it is exported.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["LatencyResult", "device_description", "measure_latency"]

_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class LatencyResult:
    """The median time of one forward pass at batch 1, where it was measured and how often.

    Attributes
    ----------
    median_ms
        Median over the timed passes, in milliseconds.
    device_name
        The machine: ``"cpu: <model>, <n> thread(s)"`` or ``"cuda: <GPU name>"``.
    repeats
        How many passes were timed.
    times_ms
        Every timed pass, in order, in milliseconds.
    """

    median_ms: float
    device_name: str
    repeats: int
    times_ms: tuple[float, ...] = ()


def _cpu_model(cpuinfo: Path = _CPUINFO) -> str:
    """The CPU's model name: ``/proc/cpuinfo``'s ``model name`` on Linux, else :func:`platform.processor`,
    else the machine type (``x86_64``); ``"unknown CPU"`` when none says anything."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_description(device: torch.device | str) -> str:
    """Which machine a latency belongs to: the CPU model and torch's threads, or the GPU's name."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu: {_cpu_model()}, {threads} thread{'s' if threads != 1 else ''}"
    return str(device)


def _positive_ints(shape: object) -> bool:
    return isinstance(shape, Sequence) and len(shape) > 0 and all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)


def measure_latency(module: nn.Module, input_shape: Sequence[int], device: torch.device | str, *,
                    warmup: int = 10, repeats: int = 50,
                    clock: Callable[[], float] = time.perf_counter) -> LatencyResult:
    """Time ``module`` on one input of ``input_shape`` (without the batch axis) on ``device``.

    The module is moved to ``device`` if it is elsewhere (it stays there), put in eval mode for the
    measurement and handed back in its own mode; the input is a fixed pseudo-random image (its own
    generator: torch's global one is not touched). ``clock`` is called twice per timed pass and never
    during warm-up (tests pass a fake clock).

    Raises
    ------
    ValueError
        If ``input_shape`` is not a sequence of positive integers, ``warmup`` is not an integer >= 0 or
        ``repeats`` not an integer >= 1.
    """
    if not _positive_ints(input_shape):
        raise ValueError(f"input_shape must be positive integers without the batch axis, e.g. (1, 28, 28), but "
                         f"got input_shape={input_shape!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, but got warmup={warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1 (the median of several is what is reported), but got "
                         f"repeats={repeats!r}")
    device = torch.device(device)
    module.to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, *input_shape), generator=gen).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    was_training = module.training
    module.eval()
    times: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                module(x)
            if sync is not None:
                sync(device)
            for _ in range(repeats):
                start = clock()
                module(x)
                if sync is not None:
                    sync(device)
                times.append((clock() - start) * 1000.0)
    finally:
        module.train(was_training)
    return LatencyResult(float(statistics.median(times)), device_description(device), repeats, tuple(times))
