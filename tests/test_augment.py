"""On-device augmentation: shapes, determinism, that a crop really shifts content, flips, and the identity."""

from __future__ import annotations

import pytest
import torch

from nni_nas_ext.trial_code.augment import AUGMENTATIONS, Augmentation, default_padding, shift_and_flip


def reference(x: torch.Tensor, params: torch.Tensor, pad: int, fill: torch.Tensor) -> torch.Tensor:
    """torchvision's recipe, one image at a time: pad with ``fill``, crop at offset ``pad - (dy, dx)``, flip."""
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        padded = fill.view(c, 1, 1).expand(c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, pad:pad + h, pad:pad + w] = x[i]
        dy, dx, flip = (int(v) for v in params[i])
        crop = padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]
        out[i] = crop.flip(-1) if flip else crop
    return out


def test_default_padding_is_an_eighth_of_the_side_within_1_to_4() -> None:
    assert [default_padding(s, s) for s in (8, 16, 28, 32, 64, 224)] == [1, 2, 3, 4, 4, 4]
    assert default_padding(28, 8) == 1


def test_none_is_the_identity() -> None:
    aug = Augmentation.for_data("none", (1, 8, 8), (0.3,), (0.2,))
    x = torch.randn(5, 1, 8, 8)
    assert aug.is_identity and aug.sample(5, torch.Generator().manual_seed(0)) is None
    assert aug.apply(x, None) is x


@pytest.mark.parametrize("mode", ["crop", "crop+flip"])
def test_shape_range_and_determinism(mode: str) -> None:
    aug = Augmentation.for_data(mode, (3, 32, 32), (0.5, 0.4, 0.3), (0.25, 0.2, 0.1))
    assert aug.padding == 4 and aug.fill == pytest.approx((-2.0, -2.0, -3.0))
    a = aug.sample(1000, torch.Generator().manual_seed(7))
    b = aug.sample(1000, torch.Generator().manual_seed(7))
    c = aug.sample(1000, torch.Generator().manual_seed(8))
    assert a.shape == (1000, 3) and a.dtype == torch.int64 and torch.equal(a, b) and not torch.equal(a, c)
    assert int(a[:, :2].min()) == -4 and int(a[:, :2].max()) == 4  # every shift in [-p, p] occurs
    flips = a[:, 2]
    if mode == "crop":
        assert int(flips.abs().sum()) == 0
    else:
        assert set(flips.tolist()) == {0, 1} and 400 < int(flips.sum()) < 600
    x = torch.randn(1000, 3, 32, 32)
    y1, y2 = aug.apply(x, a), aug.apply(x, b)
    assert y1.shape == x.shape and y1.dtype == x.dtype and torch.equal(y1, y2)


@pytest.mark.parametrize("mode", ["crop", "crop+flip"])
def test_matches_pad_crop_flip_done_image_by_image(mode: str) -> None:
    aug = Augmentation.for_data(mode, (2, 12, 10), (0.2, 0.6), (0.5, 0.3), padding=3)
    x = torch.randn(64, 2, 12, 10)
    params = aug.sample(64, torch.Generator().manual_seed(3))
    expected = reference(x, params, 3, torch.tensor(aug.fill))
    assert torch.equal(aug.apply(x, params), expected)


def test_a_crop_moves_a_pixel_by_its_shift_and_pads_with_raw_black() -> None:
    x = torch.zeros(4, 1, 8, 8)
    x[:, 0, 3, 5] = 1.0
    params = torch.tensor([[1, -1, 0], [-2, 2, 0], [0, 0, 0], [0, 0, 1]])
    out = shift_and_flip(x, params, fill=-7.0)
    assert out[0, 0, 4, 4] == 1 and out[1, 0, 1, 7] == 1 and out[2, 0, 3, 5] == 1
    assert out[3, 0, 3, 2] == 1  # flipped: column 5 -> 8 - 1 - 5
    assert int((out == 1).sum()) == 4
    assert (out[0, 0, 0, :] == -7).all() and (out[0, 0, :, 7] == -7).all()  # rows/columns shifted in
    assert (out[1, 0, 6:, :] == -7).all() and (out[1, 0, :, :2] == -7).all()
    assert not (out[2] == -7).any() and not (out[3] == -7).any()  # no shift: nothing padded
    assert x[0, 0, 3, 5] == 1  # the input is untouched


def test_for_data_pads_with_the_normalised_value_of_black() -> None:
    aug = Augmentation.for_data("crop", (1, 28, 28), (0.2862,), (0.3531,))
    assert aug.padding == 3 and aug.fill == pytest.approx((-0.2862 / 0.3531,))
    x = torch.full((1, 1, 28, 28), 5.0)
    out = aug.apply(x, torch.tensor([[3, 0, 0]]))
    assert torch.allclose(out[0, 0, :3], torch.tensor(-0.2862 / 0.3531)) and (out[0, 0, 3:] == 5).all()


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"mode": "rotate"}, "mode='rotate'"),
    ({"mode": "crop", "padding": 0}, "padding >= 1"),
    ({"mode": "crop", "padding": -1}, "padding=-1"),
    ({"mode": "crop", "padding": True}, "padding=True"),
])
def test_bad_settings_are_named(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match="Augmentation: ") as info:
        Augmentation(**kwargs)
    assert fragment in str(info.value)
    assert set(AUGMENTATIONS) == {"none", "crop", "crop+flip"}


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match=r"N x C x H x W, but got a tensor of shape \(3, 8, 8\)"):
        shift_and_flip(torch.zeros(3, 8, 8), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"N x 3 .* N=2, but got shape \(3, 3\)"):
        shift_and_flip(torch.zeros(2, 1, 8, 8), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="one value per channel"):
        Augmentation.for_data("crop", (3, 8, 8), (0.1,), (0.2,))
    with pytest.raises(ValueError, match="3 channel"):
        Augmentation("crop", 1, (0.0,)).apply(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result() -> None:
    aug = Augmentation.for_data("crop+flip", (3, 32, 32), (0.5, 0.4, 0.3), (0.25, 0.2, 0.1))
    x = torch.randn(256, 3, 32, 32)
    params = aug.sample(256, torch.Generator().manual_seed(0))
    on_gpu = aug.apply(x.cuda(), params.cuda(), aug.fill_on("cuda"))
    assert torch.equal(on_gpu.cpu(), aug.apply(x, params))
