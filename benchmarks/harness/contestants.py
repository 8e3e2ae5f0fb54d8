"""The contestants: one ``nnictl`` experiment config each (a literal registry), and whether one can run here.

Every contestant is a function ``(seed, settings) -> nnictl experiment config`` in :data:`CONTESTANTS`; all
share the task settings of :func:`task_args`, the budget as ``maxExperimentDuration`` and NNI's local
training service. The tuner of a contestant that runs a search is the registry of searches' (its ``className``
and the ``classArgs`` that select it: :func:`nni_nas_ext.registry.search_of_contestant` with script
``"compare"``); the contestants that are not searches are :data:`NOT_SEARCHES`, with the reason.
:func:`contestant_problem` says why a contestant cannot run on this machine.
"""

from __future__ import annotations

import importlib
import importlib.util
import shlex
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from _nnictl import lean_trial_command, nas_trial_command, venv_python

from nni_nas_ext.registry import search_of_contestant

from . import ROOT
from .retrain import load_data
from .settings import Settings


def task_args(seed: int, s: Settings) -> dict[str, Any]:
    """The trial settings every contestant shares (TaskConfig keys)."""
    args: dict[str, Any] = {
        "dataset": s.dataset, "val_fraction": s.val_fraction, "split_seed": s.split_seed, "lr": s.lr,
        "lr_min": s.lr_min, "batch_size": s.batch_size, "momentum": s.momentum, "weight_decay": s.weight_decay,
        "threads": s.threads, "device": s.device, "seed": seed,
    }
    if s.dataset_root is not None:
        args["dataset_root"] = s.dataset_root
    if s.limit is not None:
        args["limit"] = s.limit
    return args


def seed_net_args(s: Settings) -> dict[str, Any]:
    """The seed network the growing methods start from."""
    return {"seed_network": "nash", "seed_widths": list(s.seed_widths)}


def experiment_config(name: str, seed: int, s: Settings, class_name: str, class_args: Mapping[str, Any], *,
                      trial_command: str | None = None) -> dict[str, Any]:
    """An NNI v2 config: local training service, ``maxExperimentDuration`` = the budget, no trial limit.

    The trial command is what a user of each method would run: our lean entry for our tuners (as in
    ``examples/benchmark``), NNI's own for NNI's strategies, whose trials unpickle an ``nni.nas`` model."""
    return {
        "experimentName": f"compare-{name}-seed{seed}",
        "searchSpace": {},
        "trialCommand": trial_command or lean_trial_command(),
        "trialCodeDirectory": str(ROOT),
        "trialConcurrency": s.concurrency,
        "maxExperimentDuration": f"{s.budget_s}s",
        "tuner": {"className": class_name, "codeDirectory": str(ROOT), "classArgs": dict(class_args)},
        "trainingService": {"platform": "local", "useActiveGpu": False},
    }


#: NASH's search settings here (the paper: n_neigh 8, n_NM 5); n_steps so large that the budget ends it
_NASH = {"n_steps": 10_000, "n_neighbours": 4, "n_morphisms": 3,
         "morphisms": ["deepen", "widen", "add_skip", "concat_skip"], "morphism_mode": "exact"}
#: EAS's (the paper: 10 children per episode, 4 wider + 5 deeper actions); episodes: the budget ends it
_EAS = {"episodes": 100_000, "children_per_episode": 4, "n_wider": 2, "n_deeper": 2, "max_width": 256,
        "morphism_mode": "noise"}

#: random samples of the morphism space: k in [1, 9] morphisms from the seed (NASH's 3 steps x 3 morphisms reach
#: as far); n_samples: the budget ends it
_RANDOM_MORPHISM = {"max_morphisms": 9, "n_samples": 1_000_000, "morphisms": _NASH["morphisms"],
                    "morphism_mode": "exact"}


def _nash(seed: int, s: Settings, **extra: Any) -> dict[str, Any]:
    args = {**_NASH, "epochs_seed": s.candidate_seed_epochs, "epochs_neighbour": s.epochs,
            "epochs_final": s.final_epochs, **task_args(seed, s), **seed_net_args(s), **extra}
    name = "nash" if not extra else "nash_scratch"
    return experiment_config(name, seed, s, search_of_contestant("compare", name).class_name, args)


def nash(seed: int, s: Settings) -> dict[str, Any]:
    """NASH hill climbing, children inheriting their parents' weights (ours)."""
    return _nash(seed, s)


def nash_scratch(seed: int, s: Settings) -> dict[str, Any]:
    """NASH without inheritance: every child trained from scratch with the same schedule (the ablation)."""
    return _nash(seed, s, inherit_weights=False)


def _eas_args(seed: int, s: Settings) -> dict[str, Any]:
    return {**_EAS, "epochs": s.epochs, "epochs_start": s.candidate_seed_epochs, "epochs_final": s.final_epochs,
            **task_args(seed, s), **seed_net_args(s)}


def eas(seed: int, s: Settings) -> dict[str, Any]:
    """EAS: the REINFORCE meta-controller over Net2Net actions (ours)."""
    return experiment_config("eas", seed, s, search_of_contestant("compare", "eas").class_name, _eas_args(seed, s))


def net2net_random(seed: int, s: Settings) -> dict[str, Any]:
    """EAS's episodes with uniformly random Net2Net actions (EAS's baseline)."""
    return experiment_config("net2net_random", seed, s, search_of_contestant("compare", "net2net_random").class_name,
                             _eas_args(seed, s))


def random_morphism(seed: int, s: Settings) -> dict[str, Any]:
    """Random architectures of the morphism space, each trained from scratch (NASH's own baseline)."""
    args = {**_RANDOM_MORPHISM, "epochs": s.epochs, "epochs_final": s.final_epochs, "max_in_flight": s.concurrency,
            **task_args(seed, s), **seed_net_args(s)}
    return experiment_config("random_morphism", seed, s, search_of_contestant("compare", "random_morphism").class_name,
                             args)


def nni_network_morphism(seed: int, s: Settings) -> dict[str, Any]:
    """NNI's built-in NetworkMorphism tuner (its algorithm unchanged, made to run on numpy 2)."""
    data = load_data(s)
    args = {"optimize_mode": "maximize", "task": "cv", "input_width": data.input_shape[1],
            "input_channel": data.input_shape[0], "n_output_node": data.num_classes}
    trial = (f"{venv_python()} -m nni_nas_ext.nni.baselines.network_morphism_trial "
             + " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in _trial_cli_args(seed, s).items()))
    return experiment_config("nni_network_morphism", seed, s,
                             "nni_nas_ext.nni.baselines.network_morphism.NetworkMorphismTuner", args,
                             trial_command=trial)


def nni_strategy_config(name: str, seed: int, s: Settings, *, script: str = "compare", **extra: Any) -> dict[str, Any]:
    """One of NNI's strategies, the registry's search of contestant ``name`` of benchmark ``script``, through its
    tuner (``NniStrategyTuner``, the ``classArgs`` that select the strategy, its ``extra`` arguments), NNI's trials."""
    search = search_of_contestant(script, name)
    args = {**search.class_args, "epochs": s.epochs, **extra, **task_args(seed, s)}
    return experiment_config(name, seed, s, search.class_name, args, trial_command=nas_trial_command())


#: RegularizedEvolution's population and tournament, scaled to the tens of trials a CPU budget trains (NNI's
#: defaults, 100 and 25 as in Real et al. 2019, would leave it sampling at random for its first 100 trials)
REGULARIZED_EVOLUTION = {"population_size": 10, "sample_size": 3}


def nni_regularized_evolution(seed: int, s: Settings) -> dict[str, Any]:
    """NNI's RegularizedEvolution strategy over our comparable ``nni.nas`` CNN space."""
    return nni_strategy_config("nni_regularized_evolution", seed, s, **REGULARIZED_EVOLUTION)


def nni_random(seed: int, s: Settings) -> dict[str, Any]:
    """NNI's Random strategy over our comparable ``nni.nas`` CNN space."""
    return nni_strategy_config("nni_random", seed, s)


#: The contestants that are not a search of the registry of searches, with the reason.
NOT_SEARCHES: Mapping[str, str] = {
    "nni_network_morphism": "NNI's NetworkMorphism tuner (Auto-Keras, Jin et al. 2019): one of NNI's HPO tuners, "
                            "run by nnictl with script trials (nni_nas_ext/nni/baselines/network_morphism.py), not a "
                            "search of the registry",
}

#: Every contestant: name -> function(seed, settings) -> nnictl experiment config. A literal dict.
CONTESTANTS: dict[str, Callable[[int, Settings], dict[str, Any]]] = {
    "nash": nash,
    "nash_scratch": nash_scratch,
    "eas": eas,
    "net2net_random": net2net_random,
    "random_morphism": random_morphism,
    "nni_network_morphism": nni_network_morphism,
    "nni_regularized_evolution": nni_regularized_evolution,
    "nni_random": nni_random,
}


def _trial_cli_args(seed: int, s: Settings) -> dict[str, Any]:
    """The task settings as command-line options of a script trial (NNI NetworkMorphism's trials)."""
    out = {k: v for k, v in task_args(seed, s).items()}
    out["epochs"] = s.epochs
    return {k.replace("_", "-"): v for k, v in out.items()}


def contestant_problem(config: Mapping[str, Any]) -> str | None:
    """Why the contestant of ``config`` cannot run here, or None.

    Checks that the tuner class and a script trial's module import, and runs the tuner's own ``classArgs``
    validator when it has one (our bridges do), so a wrong key shows before any experiment starts.
    """
    with warnings.catch_warnings():  # importing nni.nas.nn.pytorch warns about torch classes (harmless)
        warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module", category=RuntimeWarning)
        return _contestant_problem(config)


def _contestant_problem(config: Mapping[str, Any]) -> str | None:
    tuner = config.get("tuner") or {}
    class_name = str(tuner.get("className", ""))
    module_name, _, attr = class_name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        return f"tuner {class_name} is not available here: module {exc.name!r} not found"
    except (ImportError, AttributeError, ValueError) as exc:
        return f"tuner {class_name} is not available here: {type(exc).__name__}: {exc}"
    words = shlex.split(str(config.get("trialCommand", "")))
    if "-m" in words[:-1]:
        trial_module = words[words.index("-m") + 1]
        try:
            found = importlib.util.find_spec(trial_module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"trial module {trial_module} is not available here"
    # the tuner's validator: its `class_args_validator`, else `<Name>ClassArgsValidator` beside `<Name>Tuner`
    validator = getattr(cls, "class_args_validator", None)
    if validator is None and attr.endswith("Tuner"):
        validator = getattr(sys.modules[cls.__module__], attr[: -len("Tuner")] + "ClassArgsValidator", None)
    if isinstance(validator, type):
        try:
            validator().validate_class_args(**dict(tuner.get("classArgs") or {}))
        except ModuleNotFoundError as exc:
            return f"tuner {class_name} is not available here: module {exc.name!r} not found"
        except Exception as exc:  # noqa: BLE001 - any refusal makes the contestant unavailable, with the reason
            return f"tuner {class_name} refuses the harness's classArgs: {type(exc).__name__}: {exc}"
    return None
