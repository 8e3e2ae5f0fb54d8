"""Network-transformation search strategies: NASH hill climbing, EAS, FNA (``nni_nas_ext.strategies``)."""

from __future__ import annotations
