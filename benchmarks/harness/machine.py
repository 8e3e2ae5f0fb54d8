"""The machine and the code of a run: versions, CPU, memory, GPUs and the git commit; the records' time stamps."""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import ROOT


def timestamp() -> str:
    """Now, in local time with its UTC offset, to the second (ISO 8601): the records' time stamps."""
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # noqa: BLE001
        return None


def environment() -> dict[str, Any]:
    """Versions, machine (CPU model, cores, memory, GPUs) and the git commit with its dirty flag."""
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        pass
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        porcelain = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=10)
        dirty = bool(porcelain.stdout.strip()) if porcelain.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    return {
        "python": platform.python_version(), "torch": _version("torch"), "torchvision": _version("torchvision"),
        "nni": _version("nni"), "numpy": _version("numpy"), "nni_nas_ext": _version("nni_nas_ext"),
        "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "cores_usable": affinity,
        "memory_gb": memory_gb, "gpus": gpus or None, "git_commit": commit, "git_dirty": dirty,
    }


def other_machines(results: Mapping[str, Any], cpu: str | None) -> list[str]:
    """The CPU models, other than ``cpu``, that measured finished runs of ``results`` (a run's time budget buys a
    different amount of training on another CPU, so one table must not mix machines)."""
    return sorted({str(r.get("environment", {}).get("cpu")) for r in results.get("runs", [])
                   if r.get("status") == "finished" and r.get("environment", {}).get("cpu") != cpu})


def cpu_tag(cpu: str | None) -> str:
    """A short folder suffix for a CPU model: ``AMD EPYC`` -> ``amd-epyc``."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in str(cpu).lower()).split()
             if w not in ("r", "tm", "processor", "cpu")]
    return "-".join(words[:3]) or "cpu"
