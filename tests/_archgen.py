"""Random valid architectures and randomised weights for property tests.

The generator covers every node type: conv (1/3/5 kernels, strides, depthwise), BatchNorm (2d and 1d),
ReLU, max/avg pooling, residual adds (identity and projection), concatenations, dropout, global pooling
and hidden linear layers.
"""

from __future__ import annotations

import numpy as np
import torch

from nni_nas_ext.core import Architecture, GraphBuilder, build_module


def random_architecture(rng: np.random.Generator) -> Architecture:
    channels = int(rng.choice([1, 3]))
    size = int(rng.choice([8, 12]))
    g = GraphBuilder((channels, size, size), num_classes=int(rng.integers(2, 11)))
    x, c, h = g.input, channels, size
    for stage in range(int(rng.integers(1, 4))):
        if stage > 0 and h >= 4:
            x = (g.maxpool if rng.random() < 0.5 else g.avgpool)(x, 2)
            h //= 2
        for _ in range(int(rng.integers(1, 4))):
            kind = rng.choice(["conv_bn_relu", "conv_relu", "residual", "concat", "depthwise", "strided"])
            w = int(rng.choice([4, 6, 8]))
            k = int(rng.choice([1, 3, 5])) if h >= 5 else int(rng.choice([1, 3]))
            if kind == "conv_bn_relu" or c == 0:
                x, c = g.conv_bn_relu(x, w, k), w
            elif kind == "conv_relu":
                x, c = g.relu(g.conv(x, w, k)), w
            elif kind == "strided" and h >= 4:
                x, c = g.relu(g.bn(g.conv(x, w, 3, stride=2))), w
                h = (h + 2 - 3) // 2 + 1
            elif kind == "depthwise":
                x = g.relu(g.bn(g.conv(x, c, 3, groups=c)))
            elif kind == "residual":
                y = g.bn(g.conv(g.conv_bn_relu(x, w, k), w, 3))
                skip = x if c == w else g.bn(g.conv(x, w, 1, bias=False))
                x, c = g.relu(g.add(y, skip)), w
            else:  # concat
                a = g.conv_bn_relu(x, w, k)
                b = g.relu(g.conv(x, w, 1))
                x, c = g.concat(a, b), 2 * w
        if rng.random() < 0.3:
            x = g.dropout(x, p=0.1)
    x = g.gap(x)
    if rng.random() < 0.5:
        x = g.relu(g.linear(x, int(rng.choice([8, 16]))))
        if rng.random() < 0.5:
            x = g.dropout(x, p=0.2)
        if rng.random() < 0.5:
            x = g.bn(x)
    return g.build(g.linear(x, g.num_classes))


def random_state(arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
    """Random weights with non-trivial BatchNorm statistics (so that a wrong BN rule shows)."""
    torch.manual_seed(seed)
    module = build_module(arch)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return {k: v.clone() for k, v in module.state_dict().items()}


def distinct_state(arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
    """Weights whose entries all differ within each tensor, so that an entry of a child's tensor names the one
    position of its parent's it came from: a random permutation of evenly spaced values, in (-0.5, 0.5), and
    in (0.5, 1.5) for BatchNorm scales and variances. Integer buffers are left as they are."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in random_state(arch, seed).items():
        if not value.is_floating_point():
            out[key] = value
            continue
        n = value.numel()
        ranks = (torch.randperm(n, generator=gen).double() + 0.5) / n  # distinct, in (0, 1), 1/n apart
        node_id, name = key.split(".")[1:3]
        positive = arch.node(node_id).op == "bn" and name in ("weight", "running_var")
        out[key] = (ranks + 0.5 if positive else ranks - 0.5).view(value.shape).to(value.dtype)
    return out


def random_batch(arch: Architecture, seed: int, n: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n, *arch.input_shape), generator=gen)
