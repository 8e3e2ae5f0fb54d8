"""The EAS actor calls as plain values: Net2Wider and Net2Deeper actions, the steps and trajectories of a child.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Sec. 3. A :class:`WiderAction` says, per layer, whether Net2Wider widens it; a
:class:`DeeperAction` names a block, a layer in it and a kernel for Net2Deeper's identity layer. A
:class:`Step` is one actor call (the network's tokens, the action, and the mask or blocks it was sampled
under) and a :class:`Trajectory` the calls that built one child: what REINFORCE re-scores
(:meth:`~.controller.EasController.update`). Everything round-trips through JSON (``to_dict`` /
``from_dict``); construction checks that an action is possible under its mask or blocks.

:func:`check_tokens`, :func:`check_mask` and :func:`check_blocks` validate the actors' inputs (the controller
uses them too) and raise ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

__all__ = [
    "Action", "DeeperAction", "Step", "Trajectory", "WiderAction", "action_from_dict", "check_blocks",
    "check_mask", "check_tokens",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class WiderAction:
    """A Net2Wider decision: ``decisions[i]`` is whether layer ``i`` (token ``i``) is widened."""

    decisions: tuple[bool, ...]

    def __post_init__(self) -> None:
        if isinstance(self.decisions, (str, bytes)) or not isinstance(self.decisions, Sequence):
            raise TypeError(f"WiderAction.decisions must be a sequence of bools, but got {self.decisions!r}")
        bad = [d for d in self.decisions if not isinstance(d, bool)]
        if bad:
            raise TypeError(f"WiderAction.decisions must hold bools only, but got {bad[0]!r}")
        object.__setattr__(self, "decisions", tuple(self.decisions))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "wider", "decisions": list(self.decisions)}

    @classmethod
    def from_dict(cls, data: Any) -> WiderAction:
        action = action_from_dict(data)
        if not isinstance(action, cls):
            raise ValueError(f"expected a wider action, but got {data!r}")
        return action


@dataclass(frozen=True)
class DeeperAction:
    """A Net2Deeper decision: insert an identity layer with kernel ``kernel`` after token ``layer``.

    ``block`` indexes the ``blocks`` the actor was given; ``layer`` is an index into the tokens (one of
    ``blocks[block]``); ``kernel`` is the kernel size itself (one of ``ControllerConfig.kernels``).
    """

    block: int
    layer: int
    kernel: int

    def __post_init__(self) -> None:
        for name in ("block", "layer", "kernel"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise TypeError(f"DeeperAction.{name} must be an int >= 0, but got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "deeper", "block": self.block, "layer": self.layer, "kernel": self.kernel}

    @classmethod
    def from_dict(cls, data: Any) -> DeeperAction:
        action = action_from_dict(data)
        if not isinstance(action, cls):
            raise ValueError(f"expected a deeper action, but got {data!r}")
        return action


Action = Union[WiderAction, DeeperAction]


def action_from_dict(data: Any) -> Action:
    """A :class:`WiderAction` or :class:`DeeperAction` from its ``to_dict`` form (``kind`` tells which).

    Raises
    ------
    ValueError
        For anything else, naming what was wrong.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"an action must be a JSON object, but got {type(data).__name__}")
    kind = data.get("kind")
    keys = {"wider": {"kind", "decisions"}, "deeper": {"kind", "block", "layer", "kernel"}}
    if kind not in keys:
        raise ValueError(f"an action's 'kind' must be 'wider' or 'deeper', but got {kind!r}")
    if set(data) != keys[kind]:
        raise ValueError(f"a {kind} action has exactly the keys {sorted(keys[kind])}, but got {sorted(map(str, data))}")
    try:
        if kind == "wider":
            decisions = data["decisions"]
            if not isinstance(decisions, list):
                raise TypeError(f"'decisions' must be a list, but got {decisions!r}")
            return WiderAction(tuple(decisions))
        return DeeperAction(data["block"], data["layer"], data["kernel"])
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def check_tokens(tokens: Any) -> tuple[str, ...]:
    """``tokens`` as a non-empty tuple of strings (one per layer); ``ValueError`` otherwise."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise ValueError(f"tokens must be a sequence of strings (one per layer), but got {tokens!r}")
    tokens = tuple(tokens)
    if not tokens:
        raise ValueError("tokens must not be empty: the network needs at least one layer")
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        raise ValueError(f"tokens must be strings, but got {bad[0]!r}")
    return tokens


def check_mask(mask: Any, n_tokens: int) -> tuple[bool, ...]:
    """``mask`` as a tuple of one bool per token; ``ValueError`` otherwise."""
    if isinstance(mask, (str, bytes)) or not isinstance(mask, Sequence):
        raise ValueError(f"mask must be a sequence of bools (one per token), but got {mask!r}")
    mask = tuple(mask)
    if len(mask) != n_tokens:
        raise ValueError(f"mask must have one entry per token (len(mask) == {n_tokens}), but has {len(mask)}")
    bad = [m for m in mask if not isinstance(m, bool)]
    if bad:
        raise ValueError(f"mask must hold bools only, but got {bad[0]!r}")
    return mask


def check_blocks(blocks: Any, n_tokens: int) -> tuple[tuple[int, ...], ...]:
    """``blocks`` as tuples of token indices, each index in one block at most and some block non-empty."""
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence):
        raise ValueError(f"blocks must be a sequence of sequences of token indices, but got {blocks!r}")
    out = []
    seen: set[int] = set()
    for k, block in enumerate(blocks):
        if isinstance(block, (str, bytes)) or not isinstance(block, Sequence):
            raise ValueError(f"blocks[{k}] must be a sequence of token indices, but got {block!r}")
        for j in block:
            if not _is_int(j) or not 0 <= j < n_tokens:
                raise ValueError(f"blocks[{k}] must hold token indices in [0, {n_tokens - 1}], but holds {j!r}")
            if j in seen:
                raise ValueError(f"a token index may appear in one block only, but {j} appears twice (blocks[{k}])")
            seen.add(j)
        out.append(tuple(block))
    if not seen:
        raise ValueError(f"no block has a layer to deepen after (blocks={[list(b) for b in out]}); "
                         "give at least one non-empty block")
    return tuple(out)


def _check_action(action: Any, tokens: tuple[str, ...], mask: tuple[bool, ...] | None,
                  blocks: tuple[tuple[int, ...], ...] | None) -> None:
    """The action is possible under the mask (wider) or the blocks (deeper); the kernel is checked later."""
    if isinstance(action, WiderAction):
        if mask is None:
            raise ValueError("a wider action needs its mask")
        if len(action.decisions) != len(tokens):
            raise ValueError(f"a wider action has one decision per token ({len(tokens)}), "
                             f"but got {len(action.decisions)}")
        masked = [i for i, (d, m) in enumerate(zip(action.decisions, mask)) if d and not m]
        if masked:
            raise ValueError(f"a wider action cannot widen masked layers, but widens {masked}")
    elif isinstance(action, DeeperAction):
        if blocks is None:
            raise ValueError("a deeper action needs its blocks")
        if action.block >= len(blocks) or not blocks[action.block]:
            raise ValueError(f"a deeper action's block must index a non-empty block of {len(blocks)}, "
                             f"but got block {action.block}")
        if action.layer not in blocks[action.block]:
            raise ValueError(f"a deeper action's layer must be in its block {list(blocks[action.block])}, "
                             f"but got layer {action.layer}")
    else:
        raise TypeError(f"an action must be a WiderAction or a DeeperAction, but got {type(action).__name__}")


@dataclass(frozen=True)
class Step:
    """One actor call made while building a child: the network's tokens, the action, and its mask or blocks.

    A wider step carries ``mask`` (one bool per token) and no ``blocks``; a deeper step carries ``blocks``
    (token indices per block) and no ``mask``. Construction checks that the action is possible under them.
    """

    tokens: tuple[str, ...]
    action: Action
    mask: Optional[tuple[bool, ...]] = None
    blocks: Optional[tuple[tuple[int, ...], ...]] = None

    def __post_init__(self) -> None:
        tokens = check_tokens(self.tokens)
        mask = blocks = None
        if isinstance(self.action, WiderAction):
            if self.blocks is not None:
                raise ValueError("a wider step has a mask, not blocks")
            mask = check_mask(self.mask, len(tokens)) if self.mask is not None else None
        elif isinstance(self.action, DeeperAction):
            if self.mask is not None:
                raise ValueError("a deeper step has blocks, not a mask")
            blocks = check_blocks(self.blocks, len(tokens)) if self.blocks is not None else None
        _check_action(self.action, tokens, mask, blocks)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "blocks", blocks)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tokens": list(self.tokens), "action": self.action.to_dict()}
        if self.mask is not None:
            out["mask"] = list(self.mask)
        if self.blocks is not None:
            out["blocks"] = [list(b) for b in self.blocks]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Step:
        if not isinstance(data, Mapping):
            raise ValueError(f"a trajectory step must be a JSON object, but got {type(data).__name__}")
        extra = set(data) - {"tokens", "action", "mask", "blocks"}
        if extra or "tokens" not in data or "action" not in data:
            raise ValueError(f"a trajectory step has the keys tokens, action and mask or blocks, but got "
                             f"{sorted(map(str, data))}")
        mask, blocks = data.get("mask"), data.get("blocks")
        if blocks is not None:
            if not isinstance(blocks, list) or not all(isinstance(b, list) for b in blocks):
                raise ValueError(f"a step's 'blocks' must be a list of lists, but got {blocks!r}")
            blocks = tuple(tuple(b) for b in blocks)
        if mask is not None and not isinstance(mask, list):
            raise ValueError(f"a step's 'mask' must be a list, but got {mask!r}")
        tokens = data["tokens"]
        if not isinstance(tokens, list):
            raise ValueError(f"a step's 'tokens' must be a list, but got {tokens!r}")
        try:
            return cls(tuple(tokens), action_from_dict(data["action"]),
                       tuple(mask) if mask is not None else None, blocks)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Trajectory:
    """The actor calls (wider and deeper, in order) that produced one child network."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if isinstance(self.steps, (str, bytes)) or not isinstance(self.steps, Sequence):
            raise TypeError(f"Trajectory.steps must be a sequence of Step, but got {self.steps!r}")
        bad = [s for s in self.steps if not isinstance(s, Step)]
        if bad:
            raise TypeError(f"Trajectory.steps must hold Step values, but got {type(bad[0]).__name__}")
        object.__setattr__(self, "steps", tuple(self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: Any) -> Trajectory:
        if not isinstance(data, Mapping) or set(data) != {"steps"} or not isinstance(data["steps"], list):
            raise ValueError(f"a trajectory must be a JSON object {{'steps': [...]}}, but got {data!r:.80}")
        return cls(tuple(Step.from_dict(s) for s in data["steps"]))
