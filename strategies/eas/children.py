"""A child of EAS' start net: the actions of one episode applied in turn, as the core's morphisms.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Sec. 3-4. Actions as morphisms, so that a trial replays them on the parent's weights:

* a Net2Wider action widens every chosen layer to the next width of the ladder (one ``widen`` step each,
  ``morphism_mode`` exact or with EAS' symmetry-breaking noise);
* a Net2Deeper action ``(block, layer, kernel)`` inserts an identity ``conv(kernel)-BN-ReLU`` after the
  chosen layer's ReLU (one ``deepen`` step; after a fully connected layer an identity ``linear-ReLU``, the
  kernel being ignored there, as in the authors' code).

A child's lineage holds all its steps from the start net (:func:`nni_nas_ext.core.replay` rebuilds it).
"""

from __future__ import annotations

import numpy as np

from nni_nas_ext.core.architecture import Architecture, Lineage, Step
from nni_nas_ext.core.morphisms import Deepen, Widen

from .actions import DeeperAction, Trajectory, WiderAction
from .actions import Step as ActorCall
from .config import EasConfig
from .encoding import LayerSequence, layer_sequence
from .policies import Policy

__all__ = ["draw_child"]


def draw_child(start: Architecture, config: EasConfig, policy: Policy, widen: Widen, rng: np.random.Generator,
               ) -> tuple[Architecture, Trajectory, list[str], list[str]]:
    """A child of ``start``: the episode's actions applied in turn; its trajectory, actions and notes.

    ``config`` gives the number and order of the actions, ``max_width`` and the kernels; ``policy`` chooses
    each action; ``widen`` is the Net2Wider morphism (its mode and ladder); ``rng`` draws its mappings and
    feeds the policy.
    """
    kinds = ["deeper"] * config.n_deeper + ["wider"] * config.n_wider
    if config.wider_first:
        kinds = ["wider"] * config.n_wider + ["deeper"] * config.n_deeper
    arch, steps, calls, actions, notes = start, [], [], [], []
    for i, kind in enumerate(kinds):
        seq = layer_sequence(arch, config.max_width)
        if kind == "wider":
            if not seq.can_widen:
                notes.append(f"action {i} (wider) skipped: no layer can be widened")
                continue
            wider = policy.wider(seq, rng)
            calls.append(ActorCall(seq.tokens, wider, mask=seq.wider_mask))  # checks the action
            arch, new_steps = _apply_wider(arch, seq, wider, widen, rng)
            actions.append(f"wider({', '.join(s.site['node'] for s in new_steps)})")
        else:
            if not seq.can_deepen:
                notes.append(f"action {i} (deeper) skipped: no layer can be deepened after")
                continue
            deeper = policy.deeper(seq, rng)
            calls.append(ActorCall(seq.tokens, deeper, blocks=seq.blocks))  # checks the action
            if deeper.kernel not in config.kernels:
                raise ValueError(f"a deeper action's kernel must be one of {list(config.kernels)}, "
                                 f"but got {deeper.kernel}")
            arch, step = _apply_deeper(arch, seq, deeper)
            new_steps = [step]
            actions.append(f"deeper(block={deeper.block}, after={seq.nodes[deeper.layer]}, "
                           f"kernel={step.params.get('kernel', '-')})")
        steps.extend(new_steps)
    return arch.with_lineage(Lineage(start.id, tuple(steps))), Trajectory(tuple(calls)), actions, notes


def _apply_wider(arch: Architecture, seq: LayerSequence, action: WiderAction, widen: Widen,
                 rng: np.random.Generator) -> tuple[Architecture, list[Step]]:
    """Widen every chosen layer to its next width; a layer already widened along with another is kept."""
    widths = {nid: arch.shape(nid)[0] for nid in seq.nodes}
    steps = []
    for i, chosen in enumerate(action.decisions):
        nid = seq.nodes[i]
        if not (chosen and seq.wider_mask[i]) or arch.shape(nid)[0] != widths[nid]:
            continue
        site = {"node": nid}
        if widen.check(arch, site) is not None:
            continue
        step = widen.propose(arch, site, rng)
        arch = widen.realize(arch, step)[0]
        steps.append(step)
    return arch, steps


def _apply_deeper(arch: Architecture, seq: LayerSequence, action: DeeperAction) -> tuple[Architecture, Step]:
    """Insert an identity layer after the chosen layer's ReLU (the kernel is ignored after a linear layer)."""
    site = seq.deepen_sites[action.layer]
    params = {} if len(arch.shape(site)) == 1 else {"kernel": action.kernel}
    step = Step("deepen", {"node": site}, params)
    return Deepen().realize(arch, step)[0], step
