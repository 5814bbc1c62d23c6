"""The inference helpers (flowsr.inference: padding, tiling, the model-level API) and comparison grids
(flowsr.visualize). Tiling is tested on its arithmetic (tile sizes, coverage, weights) and against
whole-image decoding, never on timings.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from cli_helpers import make_files, smooth

from flowsr import inference as inf
from flowsr.data import read_image
from flowsr.models import IRN, SRFlow, irn_spec, load, make_srflow_spec
from flowsr.visualize import comparison_grid, save_grid


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return make_files(tmp_path_factory)


def test_two_channel_tensor_is_refused_by_the_helpers(files) -> None:
    model = load(files["sr"])
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\), got \(1, 2, 8, 8\)") as info:
        inf.super_resolve(model, torch.rand(1, 2, 8, 8), 0.0)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not a rescaling model"):
        inf.downscale(model, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="temperature"):
        inf.super_resolve(model, torch.rand(1, 3, 8, 8), -1.0)


# -- inference helpers ------------------------------------------------------------------------------


def test_pad_to_multiple_and_crop_back() -> None:
    x = torch.rand(2, 3, 7, 5)
    y, size = inf.pad_to_multiple(x, 4)
    assert y.shape == (2, 3, 8, 8) and size == (7, 5)
    torch.testing.assert_close(inf.crop_to(y, size), x, rtol=0, atol=0)
    torch.testing.assert_close(y[..., 7, :5], x[..., 5, :])  # reflection
    same, _ = inf.pad_to_multiple(x, 1)
    assert same is x
    tiny, _ = inf.pad_to_multiple(torch.rand(3, 1, 2), 4)  # reflection impossible: replicate
    assert tiny.shape == (3, 4, 4)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [(100, 32, 8, 1), (33, 16, 8, 1), (64, 64, 16, 1), (10, 32, 8, 1), (96, 32, 16, 4), (2048, 512, 64, 4)],
)
def test_tile_starts_cover_overlap_and_align(length, tile, overlap, align) -> None:
    starts = inf.tile_starts(length, tile, overlap, align)
    ends = [min(s + tile, length) for s in starts]
    assert starts[0] == 0 and ends[-1] == length
    assert all(s % align == 0 for s in starts)
    assert all(e - s <= tile for s, e in zip(starts, ends))  # no tile is larger than asked
    for i in range(len(starts) - 1):
        assert ends[i] - starts[i + 1] >= (overlap if length > tile else 0)  # neighbours overlap enough
        assert starts[i + 1] > starts[i]
    if length > tile:  # no more tiles than needed
        assert len(starts) == 1 + math.ceil((length - tile) / (tile - overlap))


def test_tiled_peak_memory_is_bounded_by_the_tile() -> None:
    """The 2048x2048 x4 SR target: a 512x512 LR in 128-pixel tiles never hands the model more than
    128x128 LR pixels (512x512 HR), whatever the image size; the arithmetic, without a model."""
    seen = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape[2:]))
        return torch.nn.functional.interpolate(t, scale_factor=4, mode="nearest")

    x = torch.rand(1, 3, 512, 512)
    y = inf.tiled(fn, x, 128, 16, 4)
    assert y.shape == (1, 3, 2048, 2048)
    assert max(h * w for h, w in seen) <= 128 * 128 and len(seen) == 25
    torch.testing.assert_close(y, torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest"))
    boxes = inf.tile_boxes((512, 512), 128, 16)
    cover = torch.zeros(512, 512)
    for r0, r1, c0, c1 in boxes:
        cover[r0:r1, c0:c1] += 1
    assert cover.min() >= 1 and cover.max() <= 4  # every pixel covered, at most 2 tiles per axis


def test_feathered_weights_sum_to_one() -> None:
    """A function without border effects is reproduced exactly by tiling, for any scale and margin."""
    x = torch.rand(2, 3, 37, 29)
    for margin in (0, 2, None):
        torch.testing.assert_close(inf.tiled(lambda t: t * 2, x, 12, 5, margin=margin), x * 2)
    x4 = torch.rand(1, 3, 40, 36)
    pooled = inf.tiled(lambda t: torch.nn.functional.avg_pool2d(t, 4), x4, 16, 8, 0.25, align=4)
    torch.testing.assert_close(pooled, torch.nn.functional.avg_pool2d(x4, 4))
    w = inf.ramp(10, 4, 4)
    torch.testing.assert_close(w[:4] + w[-4:], torch.ones(4))  # the previous tile fades out as this one fades in
    w = inf.ramp(10, 4, 0, margin=1)
    assert w[0] == 0 and w[-1] == 1


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_tiled_sr_matches_the_whole_image(files, temperature) -> None:
    model = load(files["sr"])
    lr = smooth(32, 28, seed=5)[None]
    whole = inf.super_resolve(model, lr, temperature, torch.Generator().manual_seed(0))
    sample = model.sample(lr, temperature, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(whole, sample, rtol=0, atol=0)  # the whole-image path is model.sample
    tiles = inf.super_resolve(model, lr, temperature, torch.Generator().manual_seed(0), tile=16, overlap=8)
    assert tiles.shape == whole.shape
    assert (tiles - whole).abs().mean() < 1 / 255  # no visible seams (latents shared by the tiles)


def test_tiled_rescaling_matches_the_whole_image(files) -> None:
    model = load(files["rs"])
    hr = smooth(136, 126, seed=6)[None]  # 126: padded to 128 for the x4 model
    lr = inf.downscale(model, hr)
    lr_tiled = inf.downscale(model, hr, tile=64, overlap=32)
    assert lr.shape == (1, 3, 34, 32)
    assert (lr - lr_tiled).abs().mean() < 1 / 255
    torch.testing.assert_close(lr, torch.round(lr * 255) / 255)  # 8-bit
    up = inf.upscale(model, lr, 0.0)
    up_tiled = inf.upscale(model, lr, 0.0, tile=16, overlap=8)
    assert (up - up_tiled).abs().mean() < 1 / 255


def test_other_families_pad_and_tile() -> None:
    torch.manual_seed(0)
    srflow = SRFlow(make_srflow_spec(4, K=1, extra_steps=0, hidden=8, nf=8, nb=2, gc=4, blocks=(0, 1)))
    irn = IRN(irn_spec(2, block_num=1, gc=4))
    assert srflow.lr_multiple == 2 and irn.lr_multiple == 1
    assert inf.hr_multiple(srflow) == 8 and inf.hr_multiple(irn) == 2
    assert srflow.task == "sr" and irn.task == "rescaling"
    lr = smooth(9, 7, seed=7)[None]  # odd: SRFlow needs an even LR, padded and cropped
    for model in (srflow.eval(), irn.eval()):
        out = inf.super_resolve(model, lr, 0.5, torch.Generator().manual_seed(0), tile=6, overlap=2)
        assert out.shape == (1, 3, 9 * model.scale, 7 * model.scale)
    assert inf.downscale(irn.eval(), smooth(9, 7)[None]).shape == (1, 3, 5, 4)


# -- grids ------------------------------------------------------------------------------------------


def test_comparison_grid_layout_and_save(tmp_path) -> None:
    lr, hr = torch.rand(3, 8, 8), torch.rand(3, 32, 32)
    grid = comparison_grid([[lr, hr, None], [hr]], ["LR", "HR", "empty"], pad=2, label_height=10)
    assert grid.shape == (3, 2 + 10 + 2 * (32 + 2), 2 + 3 * (32 + 2))
    assert grid.min() >= 0 and grid.max() <= 1
    # the LR image is shown with nearest-neighbour pixels: a 4x4 block is constant
    cell = grid[:, 12:44, 2:34]
    torch.testing.assert_close(cell[:, :4, :4], lr[:, :1, :1].expand(3, 4, 4))
    path = save_grid(tmp_path / "g" / "grid.png", [[lr, hr]], [["a", "b"]], row_labels=["row"])
    assert read_image(path).shape[0] == 3
    with pytest.raises(ValueError, match="no images"):
        comparison_grid([[]])


def test_api_gaps_give_one_line_value_errors(files) -> None:
    """Issue 14, defect 12: bad arguments to the inference helpers are clear ValueErrors, not raw
    TypeError / RuntimeError, and never silently 1-pixel tiles."""
    model, rs = load(files["sr"]), load(files["rs"])
    lr = smooth(8, 8)[None]
    cases = [
        (lambda: inf.super_resolve(model, torch.rand(1, 3, 0, 0), 0.0), "empty"),
        (lambda: inf.super_resolve(model, lr, 0.0, tile=0), "tile"),
        (lambda: inf.super_resolve(model, lr, 0.0, tile=-3), "tile"),
        (lambda: inf.downscale(rs, smooth(16, 16)[None], tile=0), "tile"),
        (lambda: inf.downscale(rs, smooth(16, 16)[None], tile=-3), "tile"),
        (lambda: inf.super_resolve(model, lr, 0.5, generator="seed"), "torch.Generator"),
        (lambda: inf.draw_latents(model, (-4, 8), 0.5), "positive"),
        (lambda: inf.draw_latents(model, (8, 8), 0.5, batch=0), "batch"),
        (lambda: inf.super_resolve(model, lr, float("nan")), "temperature"),
        (lambda: model.sample(lr, 0.5, n=2.5), "n must be an int"),
    ]
    for call, needle in cases:
        with pytest.raises(ValueError, match=needle) as info:
            call()
        assert "\n" not in str(info.value)
