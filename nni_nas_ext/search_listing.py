"""The registry of searches for people: what ``python -m nni_nas_ext searches [NAME]`` prints.

:func:`searches_table` lists every search of :data:`nni_nas_ext.registry.SEARCHES` (name, nnictl tuner, ours or
NNI's, the benchmark contestants that run it, title); :func:`search_settings_table` shows one search: its tuner, its
``className``, the ``classArgs`` that select it, and the keys of its typed settings (the ``describe_config`` rows
of its settings class).
"""

from __future__ import annotations

from collections.abc import Sequence

from .core.config import describe_config
from .registry import SEARCHES, Search, get_search, resolve

__all__ = ["searches_table", "search_settings_table"]


def _contestants(search: Search) -> str:
    return "; ".join(f"{script}: {', '.join(names)}" for script, names in search.contestants.items()) or "-"


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left as it is."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(r, widths)), r[-1]]).rstrip() for r in [header, *rows]]


def searches_table() -> list[str]:
    """One line per search of the registry, under a header: name, tuner, ours/NNI's, contestants, title."""
    rows = [(s.name, s.tuner, "ours" if s.ours else "NNI's", _contestants(s), s.title) for s in SEARCHES.values()]
    return _aligned(("name", "tuner", "strategy", "contestants", "title"), rows)


def search_settings_table(name: str) -> list[str]:
    """The search ``name``: its title, tuner, ``classArgs`` that select it, and its settings, one key a row.

    Raises
    ------
    ValueError
        For an unknown name, with the close matches.
    """
    search = get_search(name)
    settings = resolve(search.settings)
    strategy = search.strategy.replace(":", ".") if search.strategy else "NNI's own"
    head = [f"{search.name}: {search.title}",
            f"  tuner: {search.tuner} (className: {search.class_name}); strategy: {strategy}"]
    if search.class_args:
        head.append("  classArgs that select it: " + ", ".join(f"{k}: {v}" for k, v in search.class_args.items()))
    head.append(f"  settings ({settings.__module__}.{settings.__qualname__}; the trials' settings come beside them, "
                "see the README):")
    rows = [(r.name, r.type, r.default, r.range, r.doc) for r in describe_config(settings)]
    return head + ["    " + line for line in _aligned(("key", "type", "default", "range", "doc"), rows)]
