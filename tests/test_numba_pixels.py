"""numba's forward on tiles of output pixels times output channels (``_numba_pixels``): which calls
take it, and every edge of its work (strides, dilations, groups and output channels past whole
panels and half panels, pixels past whole tiles and blocks, input channels in several chunks,
padding on any side or cut, one image over several slots, non-finite values, the memory budget)
against a longdouble reference."""

import numpy as np
import pytest

import fastconv
from fastconv.geometry import Geometry
from tests.nrt_count import array_wrappers
from tests.quiet import ran_parts

pytest.importorskip("numba")
numba_jit = fastconv.backends.get("numba")
from fastconv.backends import _numba_gemm as gemm  # noqa: E402  (needs numba)
from fastconv.backends import _numba_pixels as pixels  # noqa: E402
from tests.test_numba_gemm import _rand, tiles  # noqa: E402  (the same tiles, the same skips)


@pytest.fixture
def on(monkeypatch):
    """The kernel on, on any CPU with the register tiles (``PIXELS`` holds it to the CPUs measured),
    for every call that no other tiled kernel takes (its limits are where it pays, not where it
    works)."""
    for name, value in (("PIXELS", True), ("PIXELS_MIN_FILL", 0), ("PIXELS_MIN_STEPS", 0),
                        ("PIXELS_MAX_WIDTH", 10**9), ("PIXELS_HALF_WIDTH", False)):
        monkeypatch.setattr(numba_jit, name, value)
    numba_jit.forget_kernels()
    yield
    numba_jit.forget_kernels()


def _windows(x, geom):
    """``(group, ky, kx, window)`` for each group and tap: the strided window of the zero-padded x
    (longdouble) that the tap reads, of the group's input channels."""
    (pt, pb), (pl, pr) = geom.padding
    xp = np.pad(x.astype(np.longdouble), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    cg = geom.c_in_g
    for g in range(geom.groups):
        for ky in range(geom.kh):
            for kx in range(geom.kw):
                y0, x0 = ky * geom.dil_h, kx * geom.dil_w
                yield g, ky, kx, xp[:, g * cg:(g + 1) * cg, y0:y0 + (geom.oh - 1) * geom.sh + 1:geom.sh,
                                    x0:x0 + (geom.ow - 1) * geom.sw + 1:geom.sw]


def _expected(x, w, b, geom):
    """y in longdouble: the weight's products with each tap's window."""
    y = np.zeros(geom.y_shape, np.longdouble) + (0 if b is None else b.astype(np.longdouble)[:, None, None])
    kg = geom.c_out_g
    for g, ky, kx, window in _windows(x, geom):
        y[:, g * kg:(g + 1) * kg] += np.einsum("kc,nchw->nkhw", w[g * kg:(g + 1) * kg, :, ky, kx].astype(
            np.longdouble), window)
    return y


# (x shape, w shape, hyper-parameters) that no other tiled kernel takes: output channels in one
# panel, a panel and a half (the half tile), past two panels; pixels past whole tiles, an image
# in two blocks of tiles (20x20: 400 pixels, 50 tiles); input channels in several chunks (96 of a
# 5x5 kernel: 3 channels a chunk in float32); strides, dilation, padding on one side, cut rows and
# columns (stride 3 leaves the last ones unread), one image over every slot, a 1x1 kernel padded
CASES = [
    pytest.param((3, 24, 7, 7), (32, 24, 5, 5), dict(padding=2), id="one-panel-7x7"),
    pytest.param((2, 16, 9, 9), (48, 16, 3, 3), dict(padding=1, stride=2), id="panel-and-half"),
    pytest.param((2, 8, 9, 8), (70, 8, 3, 3), dict(padding=1, stride=2), id="past-two-panels"),
    pytest.param((2, 12, 40, 40), (16, 12, 3, 3), dict(padding=1, stride=2), id="two-blocks"),
    pytest.param((2, 96, 6, 6), (24, 96, 5, 5), dict(padding=2), id="chunks"),
    pytest.param((2, 10, 11, 13), (20, 10, 3, 3), dict(stride=(2, 3), padding=((2, 0), (0, 1))), id="uneven"),
    pytest.param((2, 10, 13, 14), (20, 10, 3, 3), dict(stride=3), id="cut"),
    pytest.param((2, 8, 14, 14), (24, 8, 5, 5), dict(padding=4, dilation=2, stride=2), id="dilated"),
    pytest.param((2, 16, 8, 8), (40, 8, 3, 3), dict(padding=1, groups=2), id="groups"),
    pytest.param((1, 16, 24, 24), (24, 16, 3, 3), dict(padding=1, stride=2), id="one-image"),
    pytest.param((2, 8, 5, 5), (16, 8, 1, 1), dict(padding=1, stride=2), id="1x1-padded"),
]


@tiles
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES)
def test_pixel_tiles_match_longdouble(on, monkeypatch, xs, ws, kwargs, dtype, bias):
    x, w, b = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, ws[:1])))
    b = b if bias else None
    geom = Geometry.from_args(xs, ws, **kwargs)
    want = _expected(x, w, b, geom)
    ran = ran_parts(monkeypatch)
    eps, terms = np.finfo(dtype).eps, np.prod(ws[1:]) + 1
    for threads in (1, 2, 3):  # 3: units that do not split evenly
        with fastconv.threads(threads):
            y = fastconv.conv2d(x, w, b, backend="numba", **kwargs)
        assert np.abs(y - want).max() <= 4 * terms * eps * np.abs(want).max(), threads
    assert ran and set(ran) == {pixels.part}


@tiles
@pytest.mark.parametrize("conv, xs, ws, kwargs", [
    (fastconv.conv1d, (3, 16, 40), (24, 16, 5), dict(stride=2, padding=2)),
    (fastconv.conv3d, (2, 8, 3, 6, 6), (16, 8, 2, 3, 3), dict(padding=(0, 1, 1), stride=(1, 2, 2))),
])
def test_one_and_three_axes_run_on_pixel_tiles_too(on, monkeypatch, conv, xs, ws, kwargs):
    x, w = _rand(xs, np.float64, 0), _rand(ws, np.float64, 1)
    ran = ran_parts(monkeypatch)
    got = conv(x, w, backend="numba", **kwargs)
    assert pixels.part in ran
    want = conv(x, w, backend="reference", **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@tiles
def test_the_bits_are_the_same_on_any_number_of_threads(on):
    # a pixel's sums run over the same chunks in the same order whichever slot holds its tile
    x, w = _rand((3, 40, 15, 15), np.float32, 0), _rand((48, 40, 3, 3), np.float32, 1)
    runs = []
    for threads in (1, 2, 3, 4):
        with fastconv.threads(threads):
            runs.append(fastconv.conv2d(x, w, padding=1, stride=2, backend="numba"))
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


@tiles
@pytest.mark.parametrize("where", ["x", "w-padding-tap", "w"])
def test_non_finite_values_go_where_the_packed_kernels_put_them(on, monkeypatch, where):
    # each tile sums its own pixels' taps only (the repeated last pixel and the zero columns past
    # the channels are dropped), so inf and NaN go where the direct sum puts them; a weight's inf
    # times the padding is numba's padding rule (padding_products)
    x, w = _rand((2, 8, 9, 9), np.float64, 0), _rand((20, 8, 3, 3), np.float64, 1)
    if where == "x":
        x[1, 7, 4, 8] = np.inf
    else:
        w[3, 1, 0, 0 if where == "w-padding-tap" else 1] = np.nan
    got = fastconv.conv2d(x, w, padding=1, stride=2, backend="numba")
    monkeypatch.setattr(numba_jit, "PIXELS", False)
    numba_jit.forget_kernels()
    want = fastconv.conv2d(x, w, padding=1, stride=2, backend="numba")
    same = np.isfinite(want)
    assert np.array_equal(got[~same], want[~same], equal_nan=True) and (~same).any() and same.any()
    np.testing.assert_allclose(got[same], want[same], rtol=1e-12, atol=1e-12)


@tiles
def test_which_forwards_take_pixel_tiles(monkeypatch):
    monkeypatch.setattr(numba_jit, "PIXELS", True)
    # the full-width units' limits: not half-width ones' (below), nor their implicit forward of many channels
    monkeypatch.setattr(numba_jit, "PIXELS_HALF_WIDTH", False)
    monkeypatch.setattr(gemm, "NARROW", False)
    numba_jit.forget_kernels()

    def kernel(xs, ws, budget=2**40, item=4, **kwargs):
        geom = Geometry.from_args(xs, ws, **kwargs)
        return numba_jit._forward_kernel(numba_jit._forward_call(geom, item), budget)
    assert kernel((4, 96, 7, 7), (32, 96, 5, 5), padding=2) == "pixels"
    assert kernel((4, 96, 7, 7), (32, 96, 5, 5), budget=1000, padding=2) == "packed"  # scratch past the budget
    assert kernel((4, 96, 9, 9), (7, 96, 3, 3), stride=2) == "packed"  # 7 output channels: under a quarter panel
    assert kernel((4, 96, 9, 9), (7, 96, 3, 3), stride=2, item=8) == "pixels"  # ... of float32's, not float64's
    assert kernel((4, 10, 9, 9), (16, 10, 3, 3), stride=2) == "packed"  # 90 taps a pixel
    assert kernel((4, 192, 40, 33), (40, 96, 3, 3), padding=1, groups=2) == "packed"  # rows of 33 at stride 1 ...
    assert kernel((4, 192, 40, 32), (40, 96, 3, 3), padding=1, groups=2) == "pixels"  # ... of 32
    assert kernel((4, 96, 40, 40), (16, 96, 3, 3), padding=2, dilation=2) == "pixels"  # ... dilated, 16 channels
    assert kernel((4, 96, 40, 40), (15, 96, 3, 3), padding=2, dilation=2) == "packed"
    assert kernel((4, 16, 7, 7), (16, 1, 3, 3), padding=1, groups=16).startswith("depthwise")
    assert kernel((4, 16, 7, 7), (16, 16, 1, 1)) != "pixels"  # the 1x1 products
    with numba_jit.choosing_as(numba_jit.Choices("packed", False, ())):  # a whole array's choice holds
        assert numba_jit._forward_kernel(numba_jit._forward_call(Geometry.from_args(
            (4, 96, 7, 7), (32, 96, 5, 5), padding=2), 4), 2**40, "packed") == "packed"


@tiles
def test_half_width_units_take_pixel_tiles_for_2d_forwards_of_many_channels_and_images(monkeypatch):
    """``PIXELS_HALF_WIDTH``: on Zen 4's half-width units the tiles take 2-D forwards in one group
    (in several at a stride) of 32+ input channels over 4+ images (a chunk of such a call too,
    whatever its images), not the input gradient's phases nor the weight gradient."""
    monkeypatch.setattr(numba_jit, "PIXELS", True)
    monkeypatch.setattr(numba_jit, "PIXELS_HALF_WIDTH", True)
    numba_jit.forget_kernels()

    def fits(xs, ws, by_size=None, **kwargs):
        geom = Geometry.from_args(xs, ws, **kwargs)
        return numba_jit._pixels_fit(numba_jit._forward_call(geom, 4), 2**40, by_size)
    try:
        assert fits((4, 32, 7, 7), (16, 32, 5, 5), padding=2)
        assert fits((4, 96, 14, 14), (16, 96, 3, 3), stride=2, padding=1)
        assert not fits((4, 31, 7, 7), (16, 31, 5, 5), padding=2)  # input channels
        assert not fits((3, 32, 7, 7), (16, 32, 5, 5), padding=2)  # images ...
        assert fits((3, 32, 7, 7), (16, 32, 5, 5), True, padding=2)  # ... but a chunk of a call that takes them
        assert not fits((4, 64, 7, 7), (32, 32, 5, 5), padding=2, groups=2)  # groups at stride 1 ...
        assert fits((4, 64, 13, 13), (32, 32, 5, 5), stride=2, padding=2, groups=2)  # ... but at a stride
        assert not fits((4, 16, 13, 13), (32, 8, 5, 5), stride=2, padding=2, groups=2)  # 16 input channels
        assert not fits((4, 64, 1, 200), (16, 64, 1, 5), stride=2)  # a 1-D call
        assert not fits((4, 64, 20, 40), (16, 64, 3, 3), padding=2, dilation=2)  # dilated rows past 32
        strided = Geometry.from_args((8, 96, 14, 14), (16, 96, 3, 3), stride=2, padding=1)
        assert numba_jit.whole_choices(strided, np.float32).forward == "pixels"
        assert all(kernel != "pixels" for _, _, kernel in numba_jit._input_gradient_plan(
            strided, 4, 2**40, None, 2))
        assert not numba_jit._pixels_gw_fit(strided, 4)
    finally:
        numba_jit.forget_kernels()


def _expected_gw(gy, x, geom):
    """gw in longdouble: gy's products with each tap's window."""
    g64 = gy.astype(np.longdouble)
    gw = np.zeros(geom.w_shape, np.longdouble)
    kg = geom.c_out_g
    for g, ky, kx, window in _windows(x, geom):
        gw[g * kg:(g + 1) * kg, :, ky, kx] = np.einsum("nkhw,nchw->kc", g64[:, g * kg:(g + 1) * kg], window)
    return gw


# The weight gradient's edges besides the forward's: blocks of images (256 pixels: 7x7 takes 6
# images a block, the last one short), taps past whole tiles of 8, a group's block split by its
# taps over the slots (two images of 13x13: one block), output channels past a panel (the half
# tile), groups, strides, dilation, uneven and cut padding
GW_CASES = [
    pytest.param((13, 24, 7, 7), (32, 24, 5, 5), dict(padding=2), id="blocks-7x7"),
    pytest.param((2, 10, 13, 13), (40, 10, 3, 3), dict(padding=1), id="taps-split"),
    pytest.param((3, 16, 9, 9), (48, 8, 3, 3), dict(padding=1, stride=2, groups=2), id="groups-strided"),
    pytest.param((4, 8, 14, 14), (24, 8, 5, 5), dict(padding=4, dilation=2), id="dilated"),
    pytest.param((3, 10, 11, 13), (20, 10, 3, 3), dict(stride=(2, 3), padding=((2, 0), (0, 1))), id="uneven"),
    pytest.param((2, 10, 13, 14), (20, 10, 3, 3), dict(stride=3), id="cut"),
]


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", GW_CASES)
def test_the_weight_gradient_on_pixel_tiles_matches_longdouble(on, monkeypatch, xs, ws, kwargs, dtype):
    geom = Geometry.from_args(xs, ws, **kwargs)
    x, w, gy = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, geom.y_shape)))
    want = _expected_gw(gy, x, geom)
    ran = ran_parts(monkeypatch)
    eps, terms = np.finfo(dtype).eps, geom.n * geom.oh * geom.ow
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            gw = numba_jit.grad_weight(gy, x, geom)
            again = numba_jit.grad_weight(gy, x, geom)
        assert np.abs(gw - want).max() <= 4 * terms * eps * np.abs(want).max(), threads
        assert np.array_equal(gw, again)  # the same bits for a given number of threads
    assert pixels.gw_part in ran


@tiles
@pytest.mark.parametrize("where", ["x", "gy", "gy-padding"])
def test_weight_gradient_non_finite_values_go_where_the_packed_kernels_put_them(on, monkeypatch, where):
    x, w = _rand((3, 8, 9, 9), np.float64, 0), _rand((20, 8, 3, 3), np.float64, 1)
    geom = Geometry.from_args(x.shape, w.shape, padding=1, stride=2)
    gy = _rand(geom.y_shape, np.float64, 2)
    if where == "x":
        x[1, 7, 4, 8] = np.inf
    else:
        gy[1, 3, 0 if where == "gy-padding" else 2, 2] = np.nan
    got = numba_jit.grad_weight(gy, x, geom)
    monkeypatch.setattr(numba_jit, "PIXELS", False)
    numba_jit.forget_kernels()
    want = numba_jit.grad_weight(gy, x, geom)
    same = np.isfinite(want)
    assert np.array_equal(got[~same], want[~same], equal_nan=True) and (~same).any()
    np.testing.assert_allclose(got[same], want[same], rtol=1e-12, atol=1e-12)


@tiles
def test_which_weight_gradients_take_pixel_tiles(monkeypatch):
    monkeypatch.setattr(numba_jit, "PIXELS", True)
    monkeypatch.setattr(numba_jit, "PIXELS_HALF_WIDTH", False)  # (half-width units: none)

    def takes(xs, ws, **kwargs):
        return numba_jit._pixels_gw_fit(Geometry.from_args(xs, ws, **kwargs), 4)
    assert takes((4, 96, 7, 7), (32, 96, 5, 5), padding=2)
    assert not takes((1, 96, 7, 7), (32, 96, 5, 5), padding=2)  # one image: the packed path
    assert takes((4, 96, 7, 7), (96, 96, 5, 5), padding=2)
    assert not takes((4, 96, 7, 7), (97, 96, 5, 5), padding=2)  # past PIXELS_GW_MAX_CHANNELS
    assert not takes((4, 96, 9, 9), (7, 96, 3, 3), stride=2)  # where the forward does not either


def test_pixel_tiles_are_held_to_the_cpus_measured():
    """Full-width AVX-512 (an Intel Xeon) and half-width (Zen 4), the latter within its own limits."""
    assert numba_jit.PIXELS == gemm.WIDE
    assert numba_jit.PIXELS_HALF_WIDTH == gemm.NARROW


@tiles
def test_the_scratch_is_the_packed_weight_and_a_padded_group_a_slot():
    nfloat, nint = pixels.scratch(96, 32, 5, 5, 1, 11, 11, 4, 4)
    nr = gemm.tile_cols(4)
    weight = 96 * 25 * nr
    per_slot = 96 * 11 * 11 + pixels.BLOCK_TILES * pixels.MR * nr
    assert weight + 4 * per_slot <= nfloat <= weight + 4 * per_slot + 5 * 16  # (64-byte lines)
    assert nint == 4 * (pixels.BLOCK_TILES * pixels.MR + pixels.chunk(96, 25, nr, 4) * 25)


@tiles
def test_pixel_tiles_leave_their_inputs_alone_and_allocate_nothing_when_warm(on):
    geom = Geometry.from_args((16, 64, 7, 7), (32, 64, 3, 3), padding=1, stride=2)
    assert geom.macs >= numba_jit.SERIAL_MAX_MACS
    x, w, b = _rand(geom.x_shape, np.float32, 0), _rand(geom.w_shape, np.float32, 1), _rand((32,), np.float32, 2)
    copies = x.copy(), w.copy(), b.copy()
    with fastconv.threads(2):
        numba_jit.forward(x, w, geom, b)  # warm: compiled, workspaces grown
        counts = array_wrappers(((numba_jit.forward, (x, w, geom, b)),))
    # the wrappers of the 6 array arguments of prepare and of each slot (PIECES a thread)
    assert counts == [6 * (1 + 2 * gemm.PIECES)]
    assert all(np.array_equal(a, c) for a, c in zip((x, w, b), copies))
