"""Seed networks: where a morphism search starts.

* :func:`nash_seed` -- NASH's starting network, ``conv-pool-conv-pool-conv-fc`` (Elsken, Metzen, Hutter,
  *Simple and efficient architecture search for CNNs*, arXiv 1711.04528, sec. 5.1), each conv followed by
  BatchNorm and ReLU.
* :func:`plain_cnn` -- a plain CNN of ``depth`` weight layers (conv-BN-ReLU blocks, downsampling by max
  pooling at even intervals), the kind of "plain 20-layer CNN" EAS starts from (Cai et al., AAAI 2018).
* :func:`cell_cnn` -- Path-level EAS' backbone: a stem, then stages of plain cells between ``identity`` markers
  (``cell<i>_in``/``cell<i>_out``, read as trees by :mod:`nni_nas_ext.core.cells`), max pooling between stages.

Seeds are pure functions of their arguments and return validated
:class:`~nni_nas_ext.core.architecture.Architecture` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from nni_nas_ext.core.architecture import Architecture, GraphBuilder
from nni_nas_ext.core.errors import unknown_name

__all__ = ["SEEDS", "cell_cnn", "create_seed", "list_seeds", "nash_seed", "plain_cnn"]


def _check(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, but got {value!r}")


def nash_seed(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
              widths: Sequence[int] = (32, 64, 128), kernel: int = 3) -> Architecture:
    """``conv-pool-conv-pool-conv-gap-fc`` with BatchNorm and ReLU after every conv.

    NASH's seed has widths 32, 64, 128 (recalled in ``ALGORITHMS.md``); pass small ``widths`` for a
    deliberately small start (the demo on 8x8 digits uses 8, 16, 16).
    """
    if len(widths) != 3:
        raise ValueError(f"widths must hold 3 conv widths, but got {list(widths)!r}")
    for w in widths:
        _check("each width", w, 1)
    g = GraphBuilder(input_shape, num_classes)
    x = g.conv_bn_relu(g.input, widths[0], kernel)
    x = g.maxpool(x, 2)
    x = g.conv_bn_relu(x, widths[1], kernel)
    x = g.maxpool(x, 2)
    x = g.conv_bn_relu(x, widths[2], kernel)
    return g.build(g.linear(g.gap(x), num_classes))


def plain_cnn(depth: int = 20, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10,
              width: int = 16, stages: int = 3, kernel: int = 3) -> Architecture:
    """A plain CNN with ``depth`` weight layers: ``depth - 1`` conv-BN-ReLU blocks and a linear classifier.

    The convs are split into ``stages`` equal stages; each stage after the first halves the resolution
    by a 2x2 max pool and doubles the width.
    """
    _check("depth", depth, 2)
    _check("stages", stages, 1)
    convs = depth - 1
    if stages > convs:
        raise ValueError(f"stages must be <= depth - 1 = {convs}, but got stages={stages}")
    g = GraphBuilder(input_shape, num_classes)
    x, w = g.input, width
    per_stage = [convs // stages + (1 if s < convs % stages else 0) for s in range(stages)]
    for s, count in enumerate(per_stage):
        if s > 0:
            x = g.maxpool(x, 2)
            w *= 2
        for _ in range(count):
            x = g.conv_bn_relu(x, w, kernel)
    return g.build(g.linear(g.gap(x), num_classes))


def cell_cnn(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, widths: Sequence[int] = (16, 32, 64),
             cells_per_stage: int = 2, stem_width: int = 16, kernel: int = 3) -> Architecture:
    """Path-level EAS' backbone with plain cells: ``stem -> [cell x cells_per_stage -> maxpool] x stages -> gap -> fc``.

    Every cell starts as one ``conv k x k -> BN -> ReLU`` layer of its stage's width, between identity nodes
    ``cell<i>_in`` and ``cell<i>_out`` (``i`` counts the cells from 0). Cai et al. (ICML 2018, sec. 4) put their tree
    cells in DenseNet and PyramidNet stacks; **this plain stack is a deviation** sized for 28x28 and 32x32 images on a
    CPU budget: no dense or residual connections, so the cells' trees are the only multi-branch structure.
    """
    if not widths:
        raise ValueError("widths must hold at least one stage width, but got an empty list")
    for w in (*widths, stem_width):
        _check("each width", w, 1)
    _check("cells_per_stage", cells_per_stage, 1)
    _check("kernel", kernel, 1)
    g = GraphBuilder(input_shape, num_classes)
    x = g.conv_bn_relu(g.input, stem_width, kernel)
    cell = 0
    for s, width in enumerate(widths):
        if s > 0:
            x = g.maxpool(x, 2)
        for _ in range(cells_per_stage):
            x = g.identity(x, node_id=f"cell{cell}_in")
            x = g.conv_bn_relu(x, width, kernel)
            x = g.identity(x, node_id=f"cell{cell}_out")
            cell += 1
    return g.build(g.linear(g.gap(x), num_classes))


#: Every seed by name (a literal dict, no import-time registration).
SEEDS: dict[str, Callable[..., Architecture]] = {"nash": nash_seed, "plain": plain_cnn, "cells": cell_cnn}


def list_seeds() -> list[str]:
    return list(SEEDS)


def create_seed(name: str, **kwargs: Any) -> Architecture:
    """A seed by name, e.g. ``create_seed("nash", input_shape=(1, 8, 8), widths=(8, 16, 16))``."""
    if name not in SEEDS:
        raise ValueError(unknown_name("seed", name, list(SEEDS)))
    return SEEDS[name](**kwargs)
