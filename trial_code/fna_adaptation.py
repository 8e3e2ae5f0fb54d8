"""FNA's architecture adaptation, its training loop: alternating weight and architecture steps on the target task.

Fang et al., *Fast Neural Network Adaptation via Parameter Remapping and Architecture Search*, ICLR 2020,
sec. 3.3 (and FNA++, 2020). :func:`adapt` learns the super-network's architecture parameters with the loss,
the binary gates and the derivation of :mod:`nni_nas_ext.trial_code.fna_gates`, alternating, step by
step, a *weight step* (SGD, lr 0.02, momentum, on one split of the target training set; one path per layer
sampled from ``softmax(alpha)``) and an *architecture step* (Adam, lr 3e-4, on the other split, two-path
binary gates). Before the first architecture epoch, ``warmup_epochs`` of weight steps with uniformly sampled
paths (FNA's code: "search stage 0", ``sample_policy='uniform'``). After the search each layer takes its
``argmax alpha`` op.

Tensors in, an :class:`AdaptationResult` out; no files, no ``nni``. All randomness (the splits, the path
samples, the initial alphas, dropout) comes from ``config.seed``; the caller's global torch generator is
left as it was. Each epoch's record carries its wall-clock seconds.

Deviations and choices (marked **[dev]**):

* Defaults (:class:`AdaptationConfig`) from FNA's detection search configs (``fna_retinanet_fpn_search.py``):
  lambda 0.02 with log base 10, weight SGD lr 0.02 momentum 0.9 weight decay 1e-4, architecture Adam lr
  3e-4 betas (0.5, 0.999) weight decay 1e-3, gradient clipping at norm 35, half of the training set for each
  kind of step, initial alphas ``1e-3 * N(0, 1)``, 8 of 14 epochs weight-only. Epoch counts here are small
  CPU defaults.
* **[dev]** Weight learning rate: one cosine cycle from ``weight_lr`` to 0 over the whole search
  (ProxylessNAS's weight schedule); the FNA detection configs use a step schedule with warm-up.
* **[dev]** The per-epoch validation accuracy is measured on the super-network with the argmax path set, in
  eval mode, after re-estimating BatchNorm running statistics for that path on ``bn_batches`` training
  batches (Once-for-All's ``set_running_statistics``; statistics accumulated over sampled paths describe no
  single path). This only affects what is reported, never the search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nni_nas_ext.core.config import Config, ConfigError, option

from .fna_gates import AdaptationSpace, BinaryGateMixer, derive_choice, expected_madds, rescale_pair

__all__ = ["AdaptationConfig", "AdaptationEpoch", "AdaptationResult", "adapt"]


@dataclass(frozen=True)
class AdaptationConfig(Config):
    """Settings of :func:`adapt` (NNI ``classArgs`` of the FNA pipeline share these keys).

    Defaults are the FNA paper's / authors' configuration where known (see the module docstring), except
    the epoch counts, which are small for CPU runs.
    """

    config_name: ClassVar[str] = "adaptation"

    epochs: int = option(4, minimum=1, maximum=100_000,
                         doc="epochs of architecture adaptation, each one pass over the weight split (FNA "
                             "detection: 14)")
    warmup_epochs: int = option(1, minimum=0, maximum=100_000,
                                doc="first epochs with weight steps only, paths sampled uniformly (FNA "
                                    "detection: 8 of 14)")
    cost_lambda: float = option(0.02, minimum=0.0, maximum=1e6,
                                doc="lambda in loss = CE + lambda * log_base(expected MAdds) (FNA detection: 0.02)")
    log_base: float = option(10.0, minimum=1.0001, maximum=1e6,
                             doc="base tau of the logarithm of the MAdds term (FNA: 10)")
    weight_lr: float = option(0.02, minimum=1e-6, maximum=10.0,
                              doc="SGD learning rate of the weight steps, annealed by a cosine to 0 (FNA: 0.02)")
    weight_momentum: float = option(0.9, minimum=0.0, maximum=0.999, doc="SGD momentum of the weight steps (FNA: 0.9)")
    search_weight_decay: float = option(1e-4, minimum=0.0, maximum=1.0,
                                        doc="weight decay of the weight steps, not on biases or BatchNorm (FNA "
                                            "detection: 1e-4)")
    arch_lr: float = option(3e-4, minimum=0.0, maximum=10.0,
                            doc="Adam learning rate of the architecture parameters (FNA: 3e-4)")
    arch_beta1: float = option(0.5, minimum=0.0, maximum=0.999, doc="Adam beta1 of the architecture steps (FNA: 0.5)")
    arch_beta2: float = option(0.999, minimum=0.0, maximum=0.99999,
                               doc="Adam beta2 of the architecture steps (FNA: 0.999)")
    arch_weight_decay: float = option(1e-3, minimum=0.0, maximum=1.0,
                                      doc="Adam weight decay of the architecture parameters (FNA: 1e-3)")
    arch_fraction: float = option(0.5, minimum=0.05, maximum=0.95,
                                  doc="share of the target training set used by the architecture steps; the rest "
                                      "trains the weights (FNA: 0.5)")
    batch_size: int = option(64, minimum=2, maximum=65536, doc="batch size of both kinds of steps")
    grad_clip: Optional[float] = option(35.0, minimum=1e-6,
                                        doc="gradient norm clipping of both kinds of steps; null: none (FNA: 35)")
    bn_batches: int = option(8, minimum=0, maximum=100_000,
                             doc="training batches that re-estimate BatchNorm statistics of the argmax path before "
                                 "each epoch's validation (0: none; not in FNA, as Once-for-All)")
    alpha_init_std: float = option(1e-3, minimum=0.0, maximum=10.0,
                                   doc="initial architecture parameters ~ N(0, std^2) (FNA: 1e-3)")
    seed: int = option(0, minimum=0, maximum=2**31 - 1,
                       doc="seed of the splits, path sampling, initial alphas and dropout")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"adaptation: warmup_epochs < epochs must hold (at least one epoch updates the "
                              f"architecture), but got warmup_epochs={self.warmup_epochs}, epochs={self.epochs}; "
                              "lower warmup_epochs or raise epochs", key="warmup_epochs", value=self.warmup_epochs)


@dataclass(frozen=True)
class AdaptationEpoch:
    """What one epoch of :func:`adapt` did (plain values, JSON-able through :meth:`to_dict`)."""

    epoch: int  # 1-based
    arch_updates: bool  # whether architecture steps ran in this epoch (False during warm-up)
    weight_loss: float  # mean CE of the weight steps
    arch_loss: float | None  # mean total loss of the architecture steps
    val_acc: float  # the argmax path on the validation split
    expected_madds: float  # fixed + sum p * op MAdds at the epoch's end
    derived_madds: int  # MAdds of the argmax architecture at the epoch's end
    choice: dict[str, int]  # argmax op per layer label
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "arch_updates": self.arch_updates, "weight_loss": self.weight_loss,
                "arch_loss": self.arch_loss, "val_acc": self.val_acc, "expected_madds": self.expected_madds,
                "derived_madds": self.derived_madds, "choice": dict(self.choice), "seconds": self.seconds}


@dataclass(frozen=True)
class AdaptationResult:
    """The outcome of :func:`adapt`: the derived choice and architecture, final alphas and the history."""

    choice: dict[str, int]
    architecture: Any  # MBConvArchitecture
    probabilities: dict[str, list[float]]
    history: list[AdaptationEpoch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"choice": dict(self.choice), "architecture": self.architecture.to_dict(),
                "probabilities": {k: list(v) for k, v in self.probabilities.items()},
                "history": [h.to_dict() for h in self.history]}


def _searchable_layers(supernet: nn.Module, space: AdaptationSpace) -> list[nn.Module]:
    layers = list(supernet.searchable)
    slots = space.layer_slots()
    if len(layers) != len(slots):
        raise ValueError(f"the super-network has {len(layers)} searchable layers but its space has {len(slots)} "
                         "slots: build the super-network from the same SuperNetSpace")
    for (s, l), layer in zip(slots, layers):
        n_ops, n_layer = len(space.ops(s, l)), len(layer.ops)  # type: ignore[arg-type]
        if n_layer != n_ops:
            raise ValueError(f"layer {space.label(s, l)} has {n_layer} ops in the super-network but {n_ops} in the "
                             "space")
    return layers


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=generator)
    out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out.pop()  # BatchNorm cannot normalise a batch of one over a 1x1 map
    return out


@torch.no_grad()
def _accuracy(module: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    was = module.training
    module.eval()
    correct = 0
    try:
        for i in range(0, len(x), batch_size):
            correct += int((module(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    finally:
        module.train(was)
    return correct / len(x) if len(x) else 0.0


def adapt(supernet: nn.Module, space: AdaptationSpace, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor,
          config: AdaptationConfig | None = None, *,
          on_epoch: Callable[[AdaptationEpoch], None] | None = None) -> AdaptationResult:
    """Run FNA's architecture adaptation on ``supernet`` (trained in place) and derive the target architecture.

    Parameters
    ----------
    supernet
        An :class:`~nni_nas_ext.search_spaces.mbconv_supernet.MBConvSuperNet` of ``space``, usually holding
        the seed's remapped parameters (:func:`nni_nas_ext.search_spaces.mbconv_supernet.remap_to_supernet`);
        its ``searchable`` layers follow ``space.layer_slots()``.
    space
        The :class:`~nni_nas_ext.search_spaces.mbconv_space.SuperNetSpace`.
    train_x, train_y
        The target training set; split by ``config.arch_fraction`` into the architecture steps' part and
        the weight steps' part (a seeded permutation).
    val_x, val_y
        Validation data for the per-epoch accuracy of the argmax path (never used for any update).
    config
        :class:`AdaptationConfig` (default: its defaults).
    on_epoch
        Called after every epoch with its :class:`AdaptationEpoch`.

    Returns
    -------
    AdaptationResult
        ``choice`` (argmax op index per layer label), ``architecture`` = ``space.derive(choice)``, the final
        op probabilities and the per-epoch history.
    """
    config = config or AdaptationConfig()
    n = len(train_x)
    if len(train_y) != n:
        raise ValueError(f"train_x and train_y must have the same length, but got {n} and {len(train_y)}")
    n_arch = int(round(config.arch_fraction * n))
    if n_arch < 2 or n - n_arch < 2:
        raise ValueError(f"the training set of {n} examples is too small to split into architecture ({n_arch}) and "
                         f"weight ({n - n_arch}) parts of at least 2 examples each: give more data or change "
                         f"arch_fraction={config.arch_fraction}")
    layers = _searchable_layers(supernet, space)
    slots = space.layer_slots()
    device = next(supernet.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # dropout; the caller's generator is restored on exit
        return _adapt(supernet, space, layers, slots, train_x, train_y, val_x, val_y, config, n_arch, device,
                      on_epoch)


def _adapt(supernet: nn.Module, space: AdaptationSpace, layers: list[nn.Module], slots: list[tuple[int, int]],
           train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, config: AdaptationConfig, n_arch: int,
           device: torch.device, on_epoch: Callable[[AdaptationEpoch], None] | None) -> AdaptationResult:
    gen = torch.Generator().manual_seed(config.seed)
    perm = torch.randperm(len(train_x), generator=gen)
    arch_idx, weight_idx = perm[:n_arch], perm[n_arch:]
    arch_x, arch_y = train_x[arch_idx], train_y[arch_idx]
    weight_x, weight_y = train_x[weight_idx], train_y[weight_idx]

    alphas = [torch.nn.Parameter((torch.randn(len(space.ops(s, l)), generator=gen) * config.alpha_init_std)
                                 .to(device)) for s, l in slots]
    tables = [torch.tensor([float(m) for m in space.op_madds(s, l)], dtype=torch.float64, device=device)
              for s, l in slots]
    fixed = float(space.fixed_madds())
    log_base = math.log(config.log_base)

    weights = [p for p in supernet.parameters() if p.requires_grad]
    decay = [p for p in weights if p.dim() > 1]
    no_decay = [p for p in weights if p.dim() <= 1]
    weight_opt = torch.optim.SGD([{"params": decay, "weight_decay": config.search_weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=config.weight_lr,
                                 momentum=config.weight_momentum)
    arch_opt = torch.optim.Adam(alphas, lr=config.arch_lr, betas=(config.arch_beta1, config.arch_beta2),
                                weight_decay=config.arch_weight_decay)
    mixer = BinaryGateMixer(layers, alphas)

    steps_per_epoch = len(_batches(len(weight_x), config.batch_size, torch.Generator().manual_seed(0)))
    total_steps = steps_per_epoch * config.epochs
    arch_batches: list[Tensor] = []
    history: list[AdaptationEpoch] = []
    step = 0
    supernet.train()
    try:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            searching = epoch > config.warmup_epochs
            w_losses: list[float] = []
            a_losses: list[float] = []
            for batch in _batches(len(weight_x), config.batch_size, gen):
                # ---- weight step: one path per layer (uniform during warm-up, else from softmax(alpha)) ----
                for layer, alpha in zip(layers, alphas):
                    layer.mixer = None  # type: ignore[attr-defined]
                    probs = torch.ones(len(alpha)) if not searching else torch.softmax(alpha.detach().cpu().double(), 0)
                    layer.active = int(torch.multinomial(probs, 1, generator=gen))  # type: ignore[attr-defined]
                lr = 0.5 * config.weight_lr * (1 + math.cos(math.pi * step / total_steps))
                for group in weight_opt.param_groups:
                    group["lr"] = lr
                logits = supernet(weight_x[batch])
                loss = F.cross_entropy(logits, weight_y[batch])
                weight_opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(weights, config.grad_clip)
                weight_opt.step()
                w_losses.append(float(loss.detach()))
                _check_finite(w_losses[-1], "weight", epoch, step)
                step += 1
                if not searching:
                    continue
                # ---- architecture step: two-path binary gates on the architecture split ----
                if not arch_batches:
                    arch_batches = _batches(len(arch_x), config.batch_size, gen)
                abatch = arch_batches.pop(0)
                a_losses.append(_arch_step(supernet, layers, alphas, tables, fixed, log_base, mixer, arch_opt,
                                           weights, arch_x[abatch], arch_y[abatch], config, gen))
                _check_finite(a_losses[-1], "architecture", epoch, step)
            # ---- end of epoch: the argmax path on the validation split ----
            choice = derive_choice(space, alphas)
            _set_path(layers, [choice[space.label(s, l)] for s, l in slots])
            _recalibrate_batchnorm(supernet, weight_x, config, torch.Generator().manual_seed(config.seed + epoch))
            val_acc = _accuracy(supernet, val_x, val_y)
            with torch.no_grad():
                exp_madds = float(expected_madds(alphas, tables, fixed))
            record = AdaptationEpoch(
                epoch=epoch, arch_updates=searching, weight_loss=sum(w_losses) / max(1, len(w_losses)),
                arch_loss=(sum(a_losses) / len(a_losses)) if a_losses else None, val_acc=val_acc,
                expected_madds=exp_madds, derived_madds=int(space.derive(choice).num_madds()), choice=choice,
                seconds=time.perf_counter() - started)
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
    finally:
        for layer in layers:
            layer.mixer = None  # type: ignore[attr-defined]
    choice = derive_choice(space, alphas)
    _set_path(layers, [choice[space.label(s, l)] for s, l in slots])
    probabilities = {space.label(s, l): [float(p) for p in torch.softmax(a.detach().double(), 0)]
                     for (s, l), a in zip(slots, alphas)}
    return AdaptationResult(choice=choice, architecture=space.derive(choice), probabilities=probabilities,
                            history=history)


@torch.no_grad()
def _recalibrate_batchnorm(supernet: nn.Module, x: Tensor, config: AdaptationConfig, gen: torch.Generator) -> None:
    """Recompute BatchNorm running statistics for the path set now, on ``bn_batches`` training batches.

    Running statistics accumulated over sampled paths do not describe any single path; like Once-for-All's
    ``set_running_statistics`` this re-estimates them (cumulative average) before the path is evaluated.
    """
    if config.bn_batches == 0:
        return
    norms = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    was = supernet.training
    supernet.train()
    try:
        for batch in _batches(len(x), config.batch_size, gen)[:config.bn_batches]:
            supernet(x[batch])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        supernet.train(was)


def _set_path(layers: list[nn.Module], indices: list[int]) -> None:
    for layer, index in zip(layers, indices):
        layer.mixer = None  # type: ignore[attr-defined]
        layer.active = index  # type: ignore[attr-defined]


def _arch_step(supernet: nn.Module, layers: list[nn.Module], alphas: list[torch.nn.Parameter], tables: list[Tensor],
               fixed: float, log_base: float, mixer: BinaryGateMixer, arch_opt: torch.optim.Optimizer,
               weights: list[Tensor], x: Tensor, y: Tensor, config: AdaptationConfig,
               gen: torch.Generator) -> float:
    mixer.sample(gen)
    for layer in layers:
        layer.mixer = mixer  # type: ignore[attr-defined]
    for p in weights:  # the weights are not updated here: no gradients for them (FNA's set_param_grad_state)
        p.requires_grad_(False)
    try:
        logits = supernet(x)
        ce = F.cross_entropy(logits, y)
        cost = expected_madds(alphas, tables, fixed)
        loss = ce + config.cost_lambda * torch.log(cost).to(ce.dtype) / log_base
        arch_opt.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        for p in weights:
            p.requires_grad_(True)
        for layer in layers:
            layer.mixer = None  # type: ignore[attr-defined]
    mixer.accumulate()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(alphas, config.grad_clip)
    before = [alpha.detach()[list(pair)].clone() if len(pair) == 2 else None
              for alpha, pair in zip(alphas, mixer.pairs)]
    arch_opt.step()
    for alpha, pair, old in zip(alphas, mixer.pairs, before):
        if old is not None:
            rescale_pair(alpha.data, pair, old)
    return float(loss.detach())


def _check_finite(value: float, what: str, epoch: int, step: int) -> None:
    if not math.isfinite(value):
        raise FloatingPointError(f"the {what} loss became {value} in epoch {epoch} (weight step {step}): lower "
                                 "weight_lr / arch_lr or check the inputs for NaN/inf")
