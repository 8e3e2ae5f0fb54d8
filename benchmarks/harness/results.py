"""The results file of a comparison (``<out>/results.json``) and resume: which runs are still to do.

``results.json`` is written atomically after every finished run; the same command again skips the finished
runs and does the rest (see ``benchmarks/compare.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nni_nas_ext.atomic import atomic_write

from .machine import timestamp
from .settings import Settings

RESULTS_FORMAT = "nni-nas-ext-compare"
RESULTS_VERSION = 1


def run_key(contestant: str, seed: int) -> str:
    return f"{contestant}-seed{seed}"


def new_results(settings: Settings) -> dict[str, Any]:
    return {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "settings": settings.to_dict(),
            "budget_s": settings.budget_s, "created": timestamp(), "invocations": [], "runs": {}, "in_progress": None,
            "unavailable": {}}


def load_results(path: Path) -> dict[str, Any] | None:
    """The results file, or None when there is none.

    Raises
    ------
    ValueError
        When the file is not a results file of this harness (named, with the remedy).
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); move it away or give another --out") from exc
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a results file of benchmarks/compare.py (format "
                         f"{data.get('format') if isinstance(data, dict) else None!r}, expected "
                         f"{RESULTS_FORMAT!r}); give another --out")
    return data


def save_results(path: Path, results: Mapping[str, Any]) -> None:
    text = json.dumps(results, indent=1, sort_keys=False, allow_nan=False, default=str)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), mode=0o644)


def pending_runs(results: Mapping[str, Any], contestants: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """The (contestant, seed) pairs still to run: those without a finished run in ``results``, in order."""
    runs = results.get("runs") or {}
    return [(c, s) for c in contestants for s in seeds
            if (runs.get(run_key(c, s)) or {}).get("status") != "finished"]
