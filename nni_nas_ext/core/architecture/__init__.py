"""Architectures as frozen, JSON-serialisable values.

An :class:`Architecture` is a directed acyclic graph of typed :class:`Node` s over one image input of
shape ``(channels, height, width)`` and one output node that produces ``num_classes`` logits. It is a
value: constructing one validates it (shape inference included), morphisms return new ones and never
mutate their parent, and :meth:`Architecture.to_dict` / :meth:`Architecture.from_dict` round-trip
exactly. The genotype is kept apart from the ``torch`` module (see :mod:`nni_nas_ext.core.builder`), as
in DARTS' ``genotypes.py``.

Node types and their attributes (defaults in brackets):

========== ===================================================================== ===========
op          attributes                                                            shape
========== ===================================================================== ===========
conv        out_channels, kernel, stride [1], padding [kernel // 2], groups [1],  (C, H, W)
            bias [true]
bn          --                                                                    any
relu        --                                                                    any
maxpool     kernel, stride [kernel], padding [0]                                  (C, H, W)
avgpool     kernel, stride [kernel], padding [0]                                  (C, H, W)
gap         -- (global average pooling)                                           (C,H,W)->(C,)
linear      out_features, bias [true]                                             (F,)
dropout     p [0.5]                                                               any
identity    -- (no-op; marks a place, e.g. a cell's boundary for path-level EAS)  any
add         weights [all 1.0]: the merge is ``sum_i weights[i] * inputs[i]``       same shapes
concat      -- (along channels / features)                                        same H, W
========== ===================================================================== ===========

The graph input is the reserved id ``"input"``.

* :mod:`.ops` -- the operator vocabulary (:data:`OPS`, attributes and defaults);
* :mod:`.values` -- :class:`Node`, :class:`Step`, :class:`Lineage` and their JSON helpers;
* :mod:`.parsing` -- a node's dict form, checked;
* :mod:`.validation` -- topological order, shape inference, the output's reach;
* :mod:`.graph` -- :class:`Architecture`: queries, costs, content id, dict form;
* :mod:`.graph_builder` -- :class:`GraphBuilder`, architectures written as code.
"""

from __future__ import annotations

from .graph import FORMAT_VERSION, Architecture
from .graph_builder import GraphBuilder
from .ops import INPUT, OPS, Shape
from .values import Lineage, Node, Step

__all__ = ["FORMAT_VERSION", "INPUT", "OPS", "Architecture", "GraphBuilder", "Lineage", "Node", "Shape", "Step"]
