"""NNI's built-in ``NetworkMorphism`` tuner on numpy 2, unchanged in its algorithm; and its graphs as modules.

NNI's tuner (``nni/algorithms/hpo/networkmorphism_tuner``) is AutoKeras 0.2's search: Jin, Song, Hu,
*Auto-Keras: An Efficient Neural Architecture Search System*, KDD 2019 (arXiv 1806.10282), Sec. 3-4 --
Bayesian optimisation with a Gaussian process over an edit distance between networks, the acquisition
``mean + beta * std`` (UCB) optimised by simulated annealing over morphed neighbours of the networks
trained so far ("tree-structured acquisition function optimisation"). Every child is trained from scratch
(its JSON graphs say ``"weighted": false``; field notes, bug 5).

What this module changes, and nothing else (field notes, bug 5):

* **numpy >= 2**: ``BayesianOptimizer.acq`` returns ``mean + beta * std`` as a shape-(1,) array, and
  ``BayesianOptimizer.generate`` passes it through ``math.exp``, which numpy 2.4 refuses ("only 0-dimensional
  arrays can be converted to Python scalars"); the tuner dies on its second proposal and the experiment
  stays RUNNING for ever. :class:`Numpy2BayesianOptimizer` returns the same value as a Python float.
  Nothing in NNI's installed files is edited.
* **Where its files go**: NNI's tuner writes one JSON file per model into ``path`` relative to the
  dispatcher's working directory (the code directory); here the default is the experiment's own folder.
* Its ``classArgs`` are checked (:class:`NetworkMorphismConfig`) with errors that name the key and the value,
  and the time each proposal takes is logged and kept in :attr:`NetworkMorphismTuner.proposal_seconds`.

The trials run :mod:`nni_nas_ext.nni.baselines.network_morphism_trial`, which builds the network with NNI's own
graph code (:func:`build_network_morphism_model`) and trains it with our trainer and schedule.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
from nni.algorithms.hpo.networkmorphism_tuner.bayesian import BayesianOptimizer
from nni.algorithms.hpo.networkmorphism_tuner.networkmorphism_tuner import NetworkMorphismTuner as _NniTuner
from nni.algorithms.hpo.networkmorphism_tuner.utils import Constant
from nni.utils import ClassArgsValidator

from nni_nas_ext.core.config import Config, ConfigError, option, parse_config

__all__ = [
    "NetworkMorphismClassArgsValidator", "NetworkMorphismConfig", "NetworkMorphismTuner", "Numpy2BayesianOptimizer",
    "build_network_morphism_model", "check_fits", "count_parameters", "input_shape_of",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkMorphismConfig(Config):
    """The ``classArgs`` of NNI's ``NetworkMorphism`` tuner, typed; the defaults are NNI's."""

    config_name: ClassVar[str] = "network_morphism"

    task: str = option("cv", choices=("cv",),
                       doc="NNI's task: 'cv' (CNNs on images; NNI's 'common' MLPs are not an image contestant)")
    input_width: int = option(32, minimum=1, maximum=4096, doc="input height = width in pixels (28: Fashion-MNIST)")
    input_channel: int = option(3, minimum=1, maximum=4096, doc="input channels (1: Fashion-MNIST)")
    n_output_node: int = option(10, minimum=2, maximum=100_000, doc="classes")
    algorithm_name: str = option("Bayesian", choices=("Bayesian",), doc="NNI's only algorithm")
    optimize_mode: str = option("maximize", choices=("maximize", "minimize"),
                                doc="maximize: the trials report validation accuracy as 'default'")
    path: Optional[str] = option(None, doc="folder of the tuner's model JSON files; None: <experiment folder>/"
                                           "network_morphism (NNI's own default: 'model_path' in the working folder)")
    verbose: bool = option(True, doc="NNI's tuner logs what it does")
    beta: float = option(Constant.BETA, minimum=0.0, maximum=1e6,
                         doc="UCB acquisition: mean + beta * std (NNI/AutoKeras: 2.576)")
    t_min: float = option(Constant.T_MIN, minimum=1e-12, maximum=0.99,
                          doc="simulated annealing stops below this temperature (t *= 0.9 from 1; NNI: 1e-4)")
    max_model_size: int = option(Constant.MAX_MODEL_SIZE, minimum=1,
                                 doc="NNI's maximum model size (unused by NNI 3.0's search)")
    default_model_len: int = option(Constant.MODEL_LEN, minimum=1, maximum=100,
                                    doc="conv layers of the initial CNN (NNI: 3)")
    default_model_width: int = option(Constant.MODEL_WIDTH, minimum=1, maximum=4096,
                                      doc="channels of the initial CNN's convolutions (NNI: 64)")


class NetworkMorphismClassArgsValidator(ClassArgsValidator):
    """Checks ``classArgs`` as :class:`NetworkMorphismTuner` does (usable in an ``nnictl algo`` meta file)."""

    def validate_class_args(self, **kwargs: Any) -> None:
        parse_config(NetworkMorphismConfig, kwargs)


class Numpy2BayesianOptimizer(BayesianOptimizer):
    """NNI's ``BayesianOptimizer`` whose acquisition value is a Python float (numpy >= 2; field notes, bug 5).

    ``acq`` is NNI's ``mean + beta * std`` (or ``mean - beta * std`` when minimising) for one graph: the same
    number, as a 0-dimensional value that ``math.exp`` and every comparison in ``generate`` accept.
    """

    def acq(self, graph: Any) -> float:
        value = np.asarray(super().acq(graph), dtype=float)
        if value.size != 1:
            raise ValueError(f"the acquisition of one graph must be one number, but got shape {value.shape}")
        return float(value.reshape(()))


def _default_path() -> Path:
    """``<experiment folder>/network_morphism`` in an nnictl dispatcher, else a new temporary folder."""
    log_dir = os.environ.get("NNI_LOG_DIRECTORY")
    if log_dir:
        return Path(log_dir).resolve().parent / "network_morphism"
    return Path(tempfile.mkdtemp(prefix="nni-network-morphism-"))


class NetworkMorphismTuner(_NniTuner):
    """NNI's ``NetworkMorphismTuner`` with the numpy-2 fix (:class:`Numpy2BayesianOptimizer`); same algorithm.

    Parameters are NNI's (see :class:`NetworkMorphismConfig`), validated first. In a config::

        tuner:
          codeDirectory: .
          className: nni_nas_ext.nni.baselines.network_morphism.NetworkMorphismTuner
          classArgs: {optimize_mode: maximize, task: cv, input_width: 28, input_channel: 1, n_output_node: 10}

    Raises
    ------
    ConfigError
        Naming the key, the value and what is allowed, for a bad argument.
    """

    def __init__(self, **class_args: Any) -> None:
        config = parse_config(NetworkMorphismConfig, class_args)
        path = Path(config.path) if config.path is not None else _default_path()
        path.mkdir(parents=True, exist_ok=True)
        super().__init__(task=config.task, input_width=config.input_width, input_channel=config.input_channel,
                         n_output_node=config.n_output_node, algorithm_name=config.algorithm_name,
                         optimize_mode=config.optimize_mode, path=str(path), verbose=config.verbose,
                         beta=config.beta, t_min=config.t_min, max_model_size=config.max_model_size,
                         default_model_len=config.default_model_len, default_model_width=config.default_model_width)
        self.path = str(path.resolve())  # NNI joins a relative path to the working folder; ours may be absolute
        self.config = config
        self.bo = Numpy2BayesianOptimizer(self, self.t_min, self.optimize_mode, self.beta)
        #: seconds each ``generate_parameters`` call took, in order (the first one only builds the initial CNN)
        self.proposal_seconds: list[float] = []

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> str:
        start = time.perf_counter()
        graph_json: str = super().generate_parameters(parameter_id, **kwargs)
        seconds = time.perf_counter() - start
        self.proposal_seconds.append(seconds)
        _log.info("NetworkMorphism: proposal for parameter %s took %.2f s (model %s, %d models so far)",
                  parameter_id, seconds, self.total_data[parameter_id][2], self.model_count)
        return graph_json


def build_network_morphism_model(graph_json: str) -> Any:
    """The ``torch.nn.Module`` of a NetworkMorphism JSON graph, freshly initialised, built by NNI's own code.

    ``graph_json`` is what the tuner sends a trial (``nni.get_next_parameter()``) and what its trial reports
    back as ``graph``. The module takes ``(N, C, H, W)`` images. Weights come from torch's global generator
    (seed it for reproducible initialisation); NNI's graphs never carry weights.

    Raises
    ------
    ValueError
        If ``graph_json`` is not a NetworkMorphism graph (the message says what was found).
    """
    import json

    from nni.algorithms.hpo.networkmorphism_tuner.graph import json_to_graph

    if not isinstance(graph_json, str):
        raise ValueError(f"graph_json must be the JSON string of a NetworkMorphism graph, but got "
                         f"{type(graph_json).__name__}")
    try:
        data = json.loads(graph_json)
    except ValueError as exc:
        raise ValueError(f"graph_json is not JSON ({exc}); pass the 'graph' string a NetworkMorphism trial "
                         "reported") from None
    needed = {"input_shape", "node_list", "layer_list", "adj_list", "reverse_adj_list"}
    if not isinstance(data, dict) or not needed <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"graph_json is not a NetworkMorphism graph: it needs the keys {sorted(needed)}, "
                         f"but has {found}")
    return json_to_graph(graph_json).produce_torch_model()


def count_parameters(module: Any) -> int:
    """Trainable and frozen parameters of a module (the ``params`` every contestant reports)."""
    return int(sum(p.numel() for p in module.parameters()))


def input_shape_of(graph_json: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of a graph (NNI stores ``(width, width, channels)``)."""
    import json

    width, height, channels = json.loads(graph_json)["input_shape"]
    return int(channels), int(height), int(width)


def check_fits(graph_json: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise :class:`ConfigError` when a graph does not take the dataset's images and classes."""
    import json

    data = json.loads(graph_json)
    shape = input_shape_of(graph_json)
    # layer_list: [layer id, [type, input node, output node, *arguments]]; StubDense's are (units in, units out)
    outputs = [layer[1] for layer in data["layer_list"] if layer[1][0] == "StubDense"]
    classes = int(outputs[-1][-1]) if outputs else None
    if shape != tuple(input_shape) or (classes is not None and classes != num_classes):
        raise ConfigError(
            f"the NetworkMorphism graph takes {shape} images and {classes} classes, but the dataset has "
            f"{tuple(input_shape)} and {num_classes}: set the tuner's classArgs input_width={input_shape[-1]}, "
            f"input_channel={input_shape[0]}, n_output_node={num_classes}", key="graph", value=shape)
