"""NNI's own NAS algorithms as contestants of the benchmark (issue 6), each runnable by ``nnictl create``.

* :mod:`.network_morphism` -- NNI's built-in ``NetworkMorphism`` tuner (AutoKeras 0.2's Bayesian
  optimisation over network morphisms), made to run on numpy 2 without changing its algorithm, and the
  rebuilder of its JSON graphs;
* :mod:`.network_morphism_trial` -- its trial (``python -m nni_nas_ext.nni.baselines.network_morphism_trial``):
  NNI's graph built by NNI's code, trained with our trainer and schedule;
* :mod:`.cnn_space` -- an ``nni.nas`` model space of conv-BN-ReLU stages built from NNI's own mutables,
  comparable to what our morphism searches reach from the NASH seed, and its evaluator (the stages and their
  network, rebuilt from a sample without NNI: :mod:`nni_nas_ext.search_spaces.cnn_space`);
* :mod:`.nni_strategies` -- NNI's ``Random`` and ``RegularizedEvolution`` strategies over that space, built
  from ``classArgs`` for the bridge tuner :class:`nni_nas_ext.nni.tuners.NniStrategyTuner`.

Import-light: each module imports torch and ``nni.nas`` only when it needs them.
"""

from __future__ import annotations

__all__: list[str] = []
