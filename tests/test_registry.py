"""The one registry of searches (nni_nas_ext/registry.py): every reference resolves, every reader agrees with it.

The readers: ``create_strategy``/``list_strategies``/``describe_strategy`` (strategies), ``TUNERS`` and
``register_all`` (nnictl tuners), the settings splitter, the benchmark harnesses' contestants, the example configs
and ``python -m nni_nas_ext searches``. Unknown names get close matches; ``resolve`` imports nothing but the
registry's own references.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nni_nas_ext.core.config import Config, describe_config
from nni_nas_ext.registry import (
    SEARCHES, Search, get_search, list_searches, resolve, search_of_contestant, search_of_tuner,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _benchmarks() -> dict[str, Any]:
    """Benchmark script name (as the registry names it) -> the module that holds its CONTESTANTS and NOT_SEARCHES."""
    return {"compare": importlib.import_module("harness.contestants"),
            "compare_v2": importlib.import_module("compare_v2"),
            "compare_pareto": importlib.import_module("compare_pareto"),
            "fna_compare": importlib.import_module("fna_compare")}


# ---- the table -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SEARCHES))
def test_every_reference_resolves_to_the_right_kind_of_class(name: str) -> None:
    from nni_nas_ext.nni.dispatcher import BridgeClassArgsValidator, StrategyBridge
    from nni_nas_ext.nni.tuners import SearchClassArgsValidator, SearchTuner

    search = get_search(name)
    assert search.name == name and search.title and search.tuner
    bridge, validator, settings = resolve(search.bridge), resolve(search.validator), resolve(search.settings)
    assert issubclass(bridge, StrategyBridge) and issubclass(validator, BridgeClassArgsValidator)
    assert bridge.class_args_validator is validator  # the bridge judges its classArgs with the registry's validator
    assert issubclass(settings, Config)
    assert search.class_name == f"{bridge.__module__}.{bridge.__qualname__}"
    if issubclass(bridge, SearchTuner):  # one bridge per search of ours: it names the search it runs
        assert bridge.search_name == name and issubclass(validator, SearchClassArgsValidator)
        assert validator.search_name == name
    if search.ours:
        strategy = resolve(search.strategy)
        assert strategy.__module__.startswith("nni_nas_ext.strategies.")
        for member in ("ask", "tell", "state_dict", "load_state_dict", "summary", "finished"):  # SearchStrategy's
            assert hasattr(strategy, member), (name, member)
        assert not search.class_args
    else:
        assert search.strategy is None and search.class_args
    for ref in search.references():
        assert re.fullmatch(r"nni_nas_ext(\.\w+)+:\w+", ref), ref


def test_the_table_is_read_only_and_names_are_unique() -> None:
    with pytest.raises(TypeError):
        SEARCHES["x"] = SEARCHES["nash"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        SEARCHES["nash"].tuner = "X"  # type: ignore[misc]
    keys = [(s.tuner, tuple(sorted(s.class_args.items()))) for s in SEARCHES.values()]
    assert len(set(keys)) == len(keys)  # a tuner name and its classArgs choose one search
    for search in SEARCHES.values():
        assert search_of_tuner(search.tuner, dict(search.class_args)) is search


def test_resolve_imports_only_the_registrys_own_references() -> None:
    for bad in ["os:system", "nni_nas_ext.nni.tuners:NashTuner ", "nni_nas_ext.nni.tuners.NashTuner",
                "nni_nas_ext.nni.tuners:register_all", "builtins:eval", ""]:
        with pytest.raises(ValueError, match="is not a reference of the registry of searches"):
            resolve(bad)
    from nni_nas_ext.nni.tuners import NashTuner

    assert resolve("nni_nas_ext.nni.tuners:NashTuner") is NashTuner


def test_unknown_names_get_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown search 'nahs': known are \[.*\]; did you mean 'nash'\?"):
        get_search("nahs")
    with pytest.raises(ValueError, match="unknown search None"):
        get_search(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown tuner 'NashHillClimbin'.*did you mean 'NashHillClimbing'"):
        search_of_tuner("NashHillClimbin")
    with pytest.raises(ValueError, match=r"tuner 'NniNasStrategy' runs \['nni_random', 'nni_regularized_evolution'\]"
                                         r": the classArgs \['strategy'\] choose one \(nni_random: \{'strategy': "
                                         r"'random'\}; .*\), but got \{'strategy': None\}"):
        search_of_tuner("NniNasStrategy")
    with pytest.raises(ValueError, match=r"but got \{'strategy': 'bogus'\}"):
        search_of_tuner("NniNasStrategy", {"strategy": "bogus"})
    with pytest.raises(ValueError, match=r"unknown contestant of compare 'nsah'.*did you mean 'nash'"):
        search_of_contestant("compare", "nsah")
    with pytest.raises(ValueError, match=r"unknown contestant of compare_v2 'seed_only'"):
        search_of_contestant("compare_v2", "seed_only")  # not a search
    assert list_searches() == list(SEARCHES)
    assert set(list_searches(ours=True)) | set(list_searches(ours=False)) == set(SEARCHES)
    assert list_searches(ours=False) == ["nni_random", "nni_regularized_evolution"]


# ---- the readers -----------------------------------------------------------------------------------------


def test_strategies_are_our_conforming_searches() -> None:
    from nni_nas_ext.strategies import (
        NONCONFORMING, FnaPipeline, create_strategy, describe_strategy, list_strategies, strategy_classes,
    )

    conforming = []
    for name in list_searches(ours=True):
        cls = resolve(get_search(name).strategy)
        first = next(iter(inspect.signature(cls).parameters))
        if first == "seed_architecture":
            conforming.append(name)
            assert strategy_classes(name) == (resolve(get_search(name).settings), cls)
            assert describe_strategy(name) == describe_config(resolve(get_search(name).settings))
        else:
            assert name in NONCONFORMING, name
    assert list_strategies() == conforming
    assert set(NONCONFORMING) == set(list_searches(ours=True)) - set(conforming) == {"fna"}
    # what NONCONFORMING says of FNA holds: no seed architecture, and ask() proposes FnaJob values
    assert "seed_architecture" not in inspect.signature(FnaPipeline).parameters
    assert "FnaJob" in str(inspect.signature(FnaPipeline.ask).return_annotation)
    with pytest.raises(ValueError, match="'fna' does not follow the SearchStrategy interface: FnaPipeline"):
        create_strategy("fna", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'nni_random' is NNI's own strategy, run inside NNI by the nnictl tuner "
                                         "'NniNasStrategy'"):
        describe_strategy("nni_random")
    with pytest.raises(ValueError, match=r"unknown strategy 'eass'.*did you mean 'eas'"):
        create_strategy("eass", None)  # type: ignore[arg-type]


def test_settings_splitting_reads_the_registry() -> None:
    from nni_nas_ext.nni.search import split_settings
    from nni_nas_ext.strategies import list_strategies

    for name in list_strategies():
        assert type(split_settings({}, name)[0]) is resolve(get_search(name).settings)
    with pytest.raises(ValueError, match="'fna' does not follow the SearchStrategy interface"):
        split_settings({}, "fna")
    with pytest.raises(ValueError, match="did you mean 'nash_async'"):
        split_settings({}, "nash_asyn")


def test_tuners_are_the_registrys(monkeypatch: pytest.MonkeyPatch) -> None:
    from nni_nas_ext.nni import dispatcher
    from nni_nas_ext.nni.baselines.nni_strategies import NNI_STRATEGIES
    from nni_nas_ext.nni.tuners import TUNERS, register_all

    expected = {s.tuner: (resolve(s.bridge), resolve(s.validator)) for s in SEARCHES.values()}
    assert TUNERS == expected
    assert list(TUNERS) == list(dict.fromkeys(s.tuner for s in SEARCHES.values()))
    assert set(NNI_STRATEGIES) == {s.class_args["strategy"] for s in SEARCHES.values() if not s.ours}
    registered: list[tuple[str, type, type]] = []
    monkeypatch.setattr(dispatcher, "register_with_nnictl", lambda *a: registered.append(a) or "registered")
    lines = register_all()
    assert registered == [(name, *classes) for name, classes in expected.items()]
    assert len(lines) == len(expected) and all(line.endswith(": registered") for line in lines)


def test_benchmark_contestants_are_registry_contestants_or_not_searches() -> None:
    scripts = _benchmarks()
    assert set(scripts) == {script for s in SEARCHES.values() for script in s.contestants}
    for script, module in scripts.items():
        searches = {c for s in SEARCHES.values() for c in s.contestants.get(script, ())}
        not_searches = set(module.NOT_SEARCHES)
        assert not searches & not_searches, script
        assert set(module.CONTESTANTS) == searches | not_searches, script  # and vice versa
        for name, why in module.NOT_SEARCHES.items():
            assert isinstance(why, str) and len(why) > 30, (script, name)


def test_benchmark_configs_name_the_registrys_tuner_and_class_args() -> None:
    from harness.settings import Settings

    v2 = _benchmarks()["compare_v2"]
    harness = _benchmarks()["compare"]
    pareto = _benchmarks()["compare_pareto"]
    for script, contestants, settings in [("compare", harness.CONTESTANTS, Settings(dataset="digits")),
                                          ("compare_v2", v2.CONTESTANTS, v2.SettingsV2(dataset="digits")),
                                          ("compare_pareto", pareto.CONTESTANTS,
                                           pareto.SettingsPareto(dataset="digits"))]:
        for name, make in contestants.items():
            if name in _benchmarks()[script].NOT_SEARCHES:
                continue
            search = search_of_contestant(script, name)
            tuner = make(0, settings)["tuner"]
            assert tuner["className"] == search.class_name, (script, name)
            assert {k: tuner["classArgs"][k] for k in search.class_args} == dict(search.class_args)
            assert search_of_tuner(search.tuner, tuner["classArgs"]) is search


def test_example_configs_name_the_registrys_tuners() -> None:
    paths = [ROOT / "config.yml", *sorted((ROOT / "examples").rglob("*.yml"))]
    seen = set()
    for path in paths:
        tuner = yaml.safe_load(path.read_text())["tuner"]
        if "name" not in tuner:  # NNI's own NetworkMorphism tuner, not a search of the registry
            assert tuner["className"] not in {s.class_name for s in SEARCHES.values()}, path
            continue
        search = search_of_tuner(tuner["name"], tuner.get("classArgs") or {})
        seen.add(search.name)
        named = re.findall(r"className: ([\w.]+)", path.read_text())  # the comment's way without registering
        assert named and all(n == search.class_name for n in named), path
    assert seen == set(SEARCHES) - {"nash_async"}  # NASH's asynchronous variant runs in the v2 benchmark only


def test_cli_lists_the_registry_and_shows_a_search(capsys: pytest.CaptureFixture[str]) -> None:
    from nni_nas_ext.cli import main

    assert main(["searches"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "tuner", "strategy", "contestants", "title"]
    assert [line.split()[0] for line in out[1:]] == list(SEARCHES)
    for line, search in zip(out[1:], SEARCHES.values()):
        assert search.tuner in line and search.title in line and ("ours" if search.ours else "NNI's") in line
        assert all(c in line for names in search.contestants.values() for c in names)
    assert main(["searches", "nash"]) == 0
    out = capsys.readouterr().out
    assert "NashHillClimbing" in out and "nni_nas_ext.nni.tuners.NashTuner" in out
    for row in describe_config(resolve(get_search("nash").settings)):
        assert re.search(rf"^\s+{row.name}\s+{re.escape(row.type)}\s+{re.escape(row.default)}", out, re.M), row
    assert main(["searches", "nni_random"]) == 0
    assert "classArgs that select it: strategy: random" in capsys.readouterr().out
    assert main(["searches", "nahs"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "error: unknown search 'nahs'" in captured.err
    assert "did you mean 'nash'" in captured.err


def test_search_is_a_frozen_value() -> None:
    s = Search(name="x", title="t", tuner="T", bridge="m:B", validator="m:V", settings="m:S")
    assert not s.ours and s.class_name == "m.B" and s.references() == ("m:B", "m:V", "m:S")
