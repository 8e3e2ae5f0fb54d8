"""The comparison harness behind ``benchmarks/compare.py`` (and ``compare_v2.py``), one job per module.

* :mod:`harness.settings`: the fixed settings of a comparison and the check that a results file shares them;
* :mod:`harness.contestants`: every contestant as an ``nnictl`` experiment config (a literal registry);
* :mod:`harness.trials`: reading a finished experiment's REST records, best-so-far curves, mean +- std;
* :mod:`harness.results`: the results file and resume;
* :mod:`harness.machine`: the machine, the versions and the git commit of a run;
* :mod:`harness.retrain`: the common final training of a run's best architecture;
* :mod:`harness.runner`: one (contestant, seed) run through a private ``nnictl`` experiment;
* :mod:`harness.report`: ``results.csv``, ``summary.md`` and the plots;
* :mod:`harness.locks`: the file lock of the scripts whose ``--jobs`` processes share one results file;
* :mod:`harness.curves`: per-episode curves, mean +- std over seeds (the RL benchmarks' plots).

Importable as ``harness`` with ``benchmarks/`` on ``sys.path`` (as for ``python benchmarks/compare.py``).
"""

from __future__ import annotations

from pathlib import Path

#: the repository's root: the trials' code directory and the git checkout recorded with every run
ROOT = Path(__file__).resolve().parents[2]
