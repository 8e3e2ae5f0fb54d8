"""Test helpers shared by the MobileNetV2-family tests (test_mbconv.py, test_mbconv_supernet.py, test_remap.py)."""

from __future__ import annotations

import random

import torch
from torch import nn

from nni_nas_ext.core.mbconv import MBConvArchitecture, mobilenet_v2
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace


def random_choice(space: SuperNetSpace, rng: random.Random) -> dict[str, int]:
    """A uniformly random choice of ``space``, keyed by slot labels."""
    return {space.label(*slot): rng.randrange(len(space.ops(*slot))) for slot in space.layer_slots()}


def small_seed(num_classes: int = 10) -> MBConvArchitecture:
    """A small MobileNetV2 seed: width 0.35, 32x32 inputs."""
    return mobilenet_v2(num_classes=num_classes, width_mult=0.35, input_size=32)


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and random BatchNorm statistics (so that BN is no identity), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
    return module.eval()
