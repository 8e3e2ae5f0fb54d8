"""The experiment report: ``python -m nni_nas_ext report <experiment id or folder>``.

Reads an experiment's folder (NNI's database, our dispatcher's state file; never the REST API, so it works after
the experiment stopped) and writes a self-contained folder: ``index.html`` (no JavaScript, nothing from the
network; the figures inline as SVG) beside each figure as PNG and SVG.

* :mod:`.experiment` -- finding the folder and reading it into plain dataclasses (JSON only; nothing unpickled);
* :mod:`.figures` -- accuracy against time, accuracy against parameters / MACs / latency with the Pareto front,
  hypervolume against time (matplotlib, no pyplot);
* :mod:`.graphs` -- the lineage tree and the winner's architecture (matplotlib + networkx, layered layouts);
* :mod:`.html` -- ``index.html``, every string from the folder escaped;
* :mod:`.command` -- the command line.

Layering: imports the core and the results readers, never ``nni`` nor the adapters (``.importlinter``).
Importing this package imports nothing heavy; :func:`write_report` does.
"""

from __future__ import annotations

from .command import FIGURE_NAMES, run_report, write_report

__all__ = ["FIGURE_NAMES", "run_report", "write_report"]
