"""The morphism interface and weight transformations.

A morphism answers two questions (Optuna's ``samplers/_base.py`` is the model for so small an
interface):

* :meth:`Morphism.sites` -- where can I apply in this architecture?
* :meth:`Morphism.apply` -- apply here, drawing any parameter from this generator.

:meth:`Morphism.apply` is :meth:`Morphism.propose` (draw a :class:`~nni_nas_ext.core.architecture.Step`
holding every random choice) followed by :meth:`Morphism.realize` (a deterministic function of the
parent and the step). Replaying a recorded lineage therefore rebuilds the same child and the same weight
transformation, which is how a trial process turns its parent's checkpoint into its own starting weights.

Most operators are *network morphisms* (function-preserving); the compressions of :mod:`.shrink` and
:mod:`.remove` are LEMONADE's *approximate network morphisms* (Elsken, Metzen, Hutter, ICLR 2019), which shrink
the network and change its function. :attr:`Morphism.exact` tells them apart and :meth:`Morphism.is_exact`
judges one recorded step.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, Lineage, Node, Step
from ..errors import MorphismError

__all__ = ["Morphism", "MorphismResult", "Site", "StateDict", "WeightTransform", "SYMMETRY_MODES", "check_noise_mode",
           "insert_after", "rewire", "symmetry_noise"]

StateDict = Mapping[str, Tensor]
Site = Mapping[str, Any]


class WeightTransform:
    """A pure function from a parent's state_dict to its child's.

    It never changes its input; tensors it does not touch are shared between the two dicts.

    Parameters
    ----------
    fn
        ``fn(state_dict, calibration) -> state_dict``.
    needs_calibration
        Whether ``fn`` needs a calibration batch (the BatchNorm identity of deepen does).
    description
        What it does, for messages.
    """

    def __init__(self, fn: Callable[[StateDict, Tensor | None], dict[str, Tensor]], *,
                 needs_calibration: bool = False, description: str = "") -> None:
        self._fn = fn
        self.needs_calibration = needs_calibration
        self.description = description

    def __call__(self, state_dict: StateDict, calibration: Tensor | None = None) -> dict[str, Tensor]:
        """Transform ``state_dict``; ``calibration`` is a batch of network inputs ``(N, C, H, W)``."""
        if self.needs_calibration and calibration is None:
            raise MorphismError(
                f"{self.description or 'this weight transformation'} needs a calibration batch of inputs "
                "(the BatchNorm identity of deepen is set from data statistics); pass calibration=<tensor>")
        return self._fn(state_dict, calibration)

    @classmethod
    def compose(cls, transforms: Sequence[WeightTransform]) -> WeightTransform:
        """Apply ``transforms`` in order: the composition of a chain of morphisms."""
        transforms = tuple(transforms)

        def run(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            out = dict(state)
            for t in transforms:
                out = t(out, calibration)
            return out

        return cls(run, needs_calibration=any(t.needs_calibration for t in transforms),
                   description=" then ".join(t.description for t in transforms) or "identity")


@dataclass(frozen=True)
class MorphismResult:
    """A child architecture (whose lineage names the parent and the steps) and its weight transformation."""

    child: Architecture
    transform: WeightTransform

    @property
    def steps(self) -> tuple[Step, ...]:
        assert self.child.lineage is not None
        return self.child.lineage.steps


class Morphism(abc.ABC):
    """A network transformation with its weight transformation (see each subclass for the paper it follows).

    Subclasses set :attr:`name` and implement :meth:`check`, :meth:`candidates`, :meth:`propose` and
    :meth:`realize`. Configuration (noise, allowed kernels...) lives in the instance and only affects
    :meth:`propose`; :meth:`realize` depends on the step alone, so that any instance can replay it.
    """

    name: ClassVar[str]
    #: The keys of a site of this morphism.
    site_keys: ClassVar[tuple[str, ...]] = ("node",)
    #: Whether the operator preserves the network's function (a network morphism, in eval mode, up to float
    #: rounding). ``False`` for LEMONADE's approximate network morphisms, the compressions, whose children are
    #: trained by knowledge distillation from their parent.
    exact: ClassVar[bool] = True

    # ---- to implement ---------------------------------------------------------------------------

    @abc.abstractmethod
    def candidates(self, arch: Architecture) -> list[Site]:
        """Sites worth checking (cheap superset of :meth:`sites`)."""

    @abc.abstractmethod
    def check(self, arch: Architecture, site: Site) -> str | None:
        """``None`` if the morphism applies at ``site``, else the reason why not."""

    @abc.abstractmethod
    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        """Draw the step's random parameters (the site is assumed valid)."""

    @abc.abstractmethod
    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        """Build the child and its weight transformation; deterministic in ``(arch, step)``."""

    # ---- provided -------------------------------------------------------------------------------

    @classmethod
    def is_exact(cls, step: Step) -> bool:
        """Whether replaying ``step`` (a step of this operator) preserves the function.

        :attr:`exact`, unless the step records symmetry noise: widen and branch drawn in ``"noise"`` mode store
        ``params["noise"] > 0`` and preserve the function only approximately (EAS' noise, Cai et al. 2018).
        """
        noise = step.params.get("noise", 0)
        noisy = isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise > 0
        return cls.exact and not noisy

    def sites(self, arch: Architecture) -> list[Site]:
        """Every site at which the morphism applies, in a deterministic order."""
        return [site for site in self.candidates(arch) if self.check(arch, site) is None]

    def apply(self, arch: Architecture, site: Site, rng: np.random.Generator) -> MorphismResult:
        """Apply at ``site``; the child's lineage is ``(arch.id, [step])``."""
        self.require(arch, site)
        step = self.propose(arch, site, rng)
        child, transform = self.realize(arch, step)
        return MorphismResult(child.with_lineage(Lineage(arch.id, (step,))), transform)

    def require(self, arch: Architecture, site: Site,
                check: Callable[[Architecture, Site], str | None] | None = None) -> None:
        """Raise :class:`MorphismError` naming the reason if the morphism does not apply at ``site``.

        ``check`` replaces :meth:`check` (after the site's keys and nodes are checked): :meth:`realize` may pass
        the part of it that does not depend on the instance's configuration, so that a step drawn by an instance
        configured otherwise still replays.
        """
        keys = set(self.site_keys)
        if not isinstance(site, Mapping) or set(site) != keys:
            raise MorphismError(f"{self.name}: a site is an object with keys {sorted(keys)}, but got {site!r}")
        for key, value in site.items():
            if not isinstance(value, str) or (value not in arch and value != "input"):
                raise MorphismError(f"{self.name}: site {key}={value!r} is not a node of the architecture; "
                                    f"nodes are {sorted(n.id for n in arch.nodes)}")
        reason = (check or self.check)(arch, site)
        if reason is not None:
            raise MorphismError(f"{self.name} does not apply at {dict(site)}: {reason}")

    def __repr__(self) -> str:
        fields = getattr(self, "__dataclass_fields__", {})
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in fields)
        return f"{type(self).__name__}({args})"


def rewire(nodes: Sequence[Node], old: str, new: str, *, skip: frozenset[str] = frozenset()) -> list[Node]:
    """Make every node that reads ``old`` read ``new`` instead (nodes in ``skip`` excepted)."""
    return [n if n.id in skip or old not in n.inputs else
            n.replace(inputs=[new if i == old else i for i in n.inputs]) for n in nodes]


def insert_after(nodes: Sequence[Node], anchor: str, new_nodes: Sequence[Node]) -> list[Node]:
    """``nodes`` with ``new_nodes`` placed right after ``anchor`` (at the front for ``"input"``)."""
    out = list(nodes)
    at = 0 if anchor == "input" else next(i for i, n in enumerate(out) if n.id == anchor) + 1
    out[at:at] = list(new_nodes)
    return out


#: the modes of the morphisms that add units or paths (widen, branch):
#: ``exact`` function-preserving and symmetry-breaking (new units start different from the old ones),
#: ``replicate`` function-preserving copies (Net2Net without noise: copies stay copies under SGD),
#: ``noise`` copies plus EAS' noise (approximately function-preserving)
SYMMETRY_MODES = ("exact", "replicate", "noise")


def check_noise_mode(owner: str, mode: str, noise: float) -> None:
    """Validate the ``mode``/``noise`` pair of a morphism that can break symmetry with noise."""
    if mode not in SYMMETRY_MODES:
        raise ValueError(f"{owner}: mode must be one of {', '.join(map(repr, SYMMETRY_MODES))}, but got {mode!r}")
    if not noise >= 0:
        raise ValueError(f"{owner}: noise must be >= 0, but got {noise!r}")


def symmetry_noise(reference: Tensor, shape: Sequence[int], scale: float, seed: int) -> Tensor:
    """``N(0, (scale * std(reference))^2)`` noise of ``shape``, reproducible from ``seed`` (EAS, sec. 3.1)."""
    std = float(reference.double().std()) if reference.numel() > 1 else 0.0
    gen = torch.Generator().manual_seed(int(seed))
    return (torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * scale * std).to(reference.dtype)
