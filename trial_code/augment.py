"""Data augmentation as batched tensor ops on the training device: random shifts and horizontal flips.

For small datasets the whole training set lives on the device (:mod:`.training`), so augmentation runs
there too, on a whole batch at once: no per-image Python loop, no data-loader processes, no host copy.

``"crop"`` is the standard "pad and random crop" of CIFAR training (He et al., *Deep residual learning for
image recognition*, CVPR 2016, sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image"), i.e. torchvision's ``RandomCrop(size, padding=p)``; ``"crop+flip"`` adds
the horizontal flip that paper uses with it (``RandomHorizontalFlip``). Both are written here as one
``gather`` per batch: output pixel ``(r, c)`` reads input pixel ``(r - dy, c' - dx)`` with
``c' = W - 1 - c`` for a flipped image, where ``dy, dx`` are uniform in ``[-p, p]``; pixels that fall
outside the image take the padding value. Cropping a ``p``-padded image at offset ``(oy, ox)`` is the
same map with ``dy = p - oy`` and ``dx = p - ox``.

Deviation, marked: the padding is *black in the raw image*, not zero in the normalised one. The trial's
images are normalised by the training set's mean and standard deviation (:mod:`.datasets`), where a raw
0 becomes ``-mean / std``; torchvision pads before normalising, so its border is black too. A normalised
0 would be a grey border that the raw data never has (e.g. Fashion-MNIST's background is black).

The random draws come from a :class:`torch.Generator` on the CPU that the caller seeds and passes in:
the same seed gives the same shifts and flips on every device, and drawing them for a whole epoch at
once costs one small host-to-device copy per epoch.

Which to choose: ``"crop"`` for digits and characters (a flipped 2 or 7 is no longer the same glyph, so
flips are never a default anywhere), ``"crop+flip"`` for natural images and clothing (CIFAR-10,
Fashion-MNIST, whose classes are left-right symmetric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AUGMENTATIONS", "Augmentation", "default_padding", "shift_and_flip"]

#: Every augmentation by name.
AUGMENTATIONS = ("none", "crop", "crop+flip")


def default_padding(height: int, width: int) -> int:
    """Padding (pixels per side) of ``"crop"`` when none is given: an eighth of the shorter side, in 1..4.

    4 for 32x32 (CIFAR's usual value, He et al. 2016), 3 for 28x28 (MNIST, Fashion-MNIST), 1 for 8x8
    (digits).
    """
    return max(1, min(4, min(height, width) // 8))


def shift_and_flip(x: Tensor, params: Tensor, fill: Tensor | float = 0.0) -> Tensor:
    """Shift every image of ``x`` by its own offset (and flip it horizontally if asked), in one gather.

    Parameters
    ----------
    x
        Images ``N x C x H x W`` on any device.
    params
        ``N x 3`` integers on ``x``'s device: ``dy, dx, flip`` per image. Output pixel ``(r, c)`` is input
        pixel ``(r - dy, c' - dx)`` where ``c' = W - 1 - c`` if ``flip`` else ``c``; positions outside the
        image read ``fill``.
    fill
        The value of pixels shifted in from outside: a number or one value per channel (shape ``C``).

    Returns
    -------
    Tensor
        A new tensor shaped like ``x`` (``x`` is not modified).
    """
    if x.dim() != 4:
        raise ValueError(f"shift_and_flip needs images N x C x H x W, but got a tensor of shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if tuple(params.shape) != (n, 3):
        raise ValueError(f"params must be N x 3 (dy, dx, flip) with N={n}, but got shape {tuple(params.shape)}")
    dy, dx, flip = params[:, 0:1], params[:, 1:2], params[:, 2:3] != 0
    rows = torch.arange(h, device=x.device).unsqueeze(0) - dy  # N x H: source row of each output row
    cols = torch.arange(w, device=x.device).unsqueeze(0)
    cols = torch.where(flip, (w - 1) - cols, cols) - dx  # N x W: source column of each output column
    inside = ((rows >= 0) & (rows < h)).unsqueeze(2) & ((cols >= 0) & (cols < w)).unsqueeze(1)  # N x H x W
    flat = rows.clamp(0, h - 1).unsqueeze(2) * w + cols.clamp(0, w - 1).unsqueeze(1)  # N x H x W
    out = x.reshape(n, c, h * w).gather(2, flat.reshape(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    if isinstance(fill, Tensor):
        if fill.numel() not in (1, c):
            raise ValueError(f"fill needs 1 or C={c} values, but got {fill.numel()}")
        fill = fill.to(device=x.device, dtype=x.dtype).reshape(1, -1, 1, 1)
    else:
        fill = float(fill)
    return torch.where(inside.unsqueeze(1), out, fill)


@dataclass(frozen=True)
class Augmentation:
    """One of :data:`AUGMENTATIONS` with its padding and padding value, ready to use on batches.

    Parameters
    ----------
    mode
        ``"none"`` (the identity), ``"crop"`` (random shifts by up to ``padding`` pixels, i.e. pad and
        random crop) or ``"crop+flip"`` (also a horizontal flip with probability 1/2).
    padding
        Largest shift in pixels, per side (``>= 1`` for the crop modes; ignored by ``"none"``).
    fill
        Value of the padding per channel (empty: 0). :meth:`for_data` gives raw black.

    Raises
    ------
    ValueError
        Naming the field, the rule and the value.
    """

    mode: str = "none"
    padding: int = 0
    fill: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in AUGMENTATIONS:
            raise ValueError(f"Augmentation: mode must be one of {', '.join(AUGMENTATIONS)}, but got "
                             f"mode={self.mode!r}")
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"Augmentation: padding must be an integer >= 0, but got padding={self.padding!r}")
        if self.mode != "none" and self.padding < 1:
            raise ValueError(f"Augmentation: mode={self.mode!r} needs padding >= 1 (pixels of shift), but got "
                             f"padding={self.padding!r}")
        object.__setattr__(self, "fill", tuple(float(v) for v in self.fill))

    @classmethod
    def for_data(cls, mode: str, input_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 padding: int | None = None) -> Augmentation:
        """The augmentation ``mode`` for normalised images of ``input_shape`` (``C, H, W``).

        The padding value is raw black, ``-mean / std`` per channel; ``padding=None`` takes
        :func:`default_padding`.
        """
        if len(input_shape) != 3:
            raise ValueError(f"augmentation needs images (C, H, W), but got input_shape={tuple(input_shape)}")
        if len(mean) != input_shape[0] or len(std) != input_shape[0]:
            raise ValueError(f"mean and std need one value per channel ({input_shape[0]}), but got mean={mean}, "
                             f"std={std}")
        if mode == "none":
            return cls("none")
        pad = default_padding(input_shape[1], input_shape[2]) if padding is None else padding
        return cls(mode, pad, tuple(-m / s for m, s in zip(mean, std)))

    @property
    def is_identity(self) -> bool:
        """True for ``"none"``: :meth:`apply` returns its input."""
        return self.mode == "none"

    def sample(self, n: int, generator: torch.Generator) -> Tensor | None:
        """Random ``N x 3`` parameters (``dy, dx, flip``, int64, on the CPU) for ``n`` images; None for "none".

        Draws come from ``generator`` only (a CPU generator), in a fixed order: shifts, then flips.
        """
        if self.is_identity:
            return None
        params = torch.zeros(n, 3, dtype=torch.int64)
        params[:, :2] = torch.randint(-self.padding, self.padding + 1, (n, 2), generator=generator)
        if self.mode == "crop+flip":
            params[:, 2] = torch.randint(0, 2, (n,), generator=generator)
        return params

    def fill_on(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Tensor | float:
        """The padding value as :func:`shift_and_flip` takes it, made once per device (no copy per batch)."""
        return torch.tensor(self.fill, dtype=dtype, device=device) if self.fill else 0.0

    def apply(self, x: Tensor, params: Tensor | None, fill: Tensor | float | None = None) -> Tensor:
        """Augment the batch ``x`` with ``params`` from :meth:`sample` (rows matching ``x``'s images).

        ``fill`` may be given as :meth:`fill_on` made it for ``x``'s device (a training loop does, to avoid
        a host-to-device copy per batch).
        """
        if self.is_identity or params is None:
            return x
        if self.fill and len(self.fill) != x.shape[1]:
            raise ValueError(f"Augmentation: fill has {len(self.fill)} value(s) but the images have {x.shape[1]} "
                             "channel(s); build it with Augmentation.for_data")
        return shift_and_flip(x, params, self.fill_on(x.device, x.dtype) if fill is None else fill)
