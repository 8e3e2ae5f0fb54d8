"""nni-nas-ext: network-transformation NAS (Net2Net, NASH, EAS, FNA) for Microsoft NNI 3.0.

The package is layered so that dependencies point one way:

* :mod:`nni_nas_ext.core` -- pure architecture core: frozen architecture values, validation with shape
  inference, the torch builder, function-preserving morphisms and their weight transformations.
  It imports neither ``nni`` nor touches files.
* :mod:`nni_nas_ext.search_spaces` -- seed networks and search spaces over the core.
* :mod:`nni_nas_ext.strategies` -- search strategies over the core.
* :mod:`nni_nas_ext.trial_code` -- what runs inside an NNI trial.
"""

from __future__ import annotations

__version__ = "0.1.0"
