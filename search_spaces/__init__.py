"""Seed networks and search spaces grown by function-preserving morphisms (``nni_nas_ext.search_spaces``)."""

from __future__ import annotations

from .seeds import SEEDS, create_seed, list_seeds, nash_seed, plain_cnn

__all__ = ["SEEDS", "create_seed", "list_seeds", "nash_seed", "plain_cnn"]
