"""A trial reporter for tests: keeps what a trial reports, checked to be plain JSON as NNI needs it."""

from __future__ import annotations

import json
from typing import Any


class ListReporter:
    def __init__(self) -> None:
        self.intermediates: list[dict[str, Any]] = []
        self.finals: list[dict[str, Any]] = []

    def intermediate(self, metric: dict[str, Any]) -> None:
        json.dumps(metric)  # what NNI does with it: it must be plain JSON
        self.intermediates.append(metric)

    def final(self, metric: dict[str, Any]) -> None:
        json.dumps(metric)
        self.finals.append(metric)
