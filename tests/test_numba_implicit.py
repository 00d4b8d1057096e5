"""numba's weight gradient of stride-1 convolutions, and its forward of few input channels, as
implicit matrix products on the register tiles (``_numba_implicit``): which calls take them, and
every edge of their work (padding on any side, dilation, kernels of any size, channels past whole
tiles, groups of small images and blocks of large ones, rows that spill, slots, non-finite values,
the memory budget) against a longdouble reference."""

import numpy as np
import pytest

import fastconv
from fastconv.geometry import Geometry
from tests.nrt_count import array_wrappers
from tests.quiet import ran_parts

pytest.importorskip("numba")
numba_jit = fastconv.backends.get("numba")
from fastconv.backends import _numba_gemm as gemm  # noqa: E402  (needs numba)
from fastconv.backends import _numba_implicit as implicit  # noqa: E402
from fastconv.backends import _numba_kernels as packed  # noqa: E402
from tests.test_numba_gemm import _rand, tiles, wide  # noqa: E402  (the same tiles, the same skips)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, takes", [
    ((32, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), True),
    ((2, 32, 9, 9), (64, 32, 5, 5), dict(padding=2, dilation=2), True),
    ((2, 32, 9, 9), (64, 32, 1, 1), dict(padding=1), True),  # padded 1x1: not the 1x1 products
    ((2, 31, 9, 9), (64, 31, 3, 3), dict(padding=1), False),  # input channels
    ((2, 32, 9, 9), (63, 32, 3, 3), dict(padding=1), False),  # output channels: one thread's panel
    ((2, 32, 9, 9), (64, 32, 3, 3), dict(stride=2), False),
    ((2, 64, 9, 9), (64, 32, 3, 3), dict(groups=2), False),
    ((0, 32, 9, 9), (64, 32, 3, 3), {}, False),  # nothing to sum
])
def test_which_weight_gradients_take_the_implicit_product(x_shape, w_shape, kwargs, takes):
    assert implicit.applies(Geometry.from_args(x_shape, w_shape, **kwargs)) == (takes and gemm.TILES)


def _expected(gy, x, geom):
    """gw in longdouble: for each tap, the products of gy with the window of the padded x it reads."""
    (pt, pb), (pl, pr) = geom.padding
    xp = np.pad(x.astype(np.longdouble), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    g = gy.astype(np.longdouble)
    gw = np.empty(geom.w_shape, np.longdouble)
    for ky in range(geom.kh):
        for kx in range(geom.kw):
            y0, x0 = ky * geom.dil_h, kx * geom.dil_w
            gw[:, :, ky, kx] = np.einsum("nkhw,nchw->kc", g, xp[:, :, y0:y0 + geom.oh, x0:x0 + geom.ow])
    return gw


# (x shape, w shape, hyper-parameters): channels past whole tiles of rows (8) and of columns (two
# vectors), images in groups (the last one short) and images in several blocks, padding on one side
# only or none, dilation, kernels of other sizes and shapes, calls small enough for one slot
CASES = [
    pytest.param((3, 40, 7, 7), (70, 40, 3, 3), dict(padding=1), id="r7-ragged-channels"),
    pytest.param((37, 32, 5, 5), (64, 32, 3, 3), dict(padding=1), id="groups-ragged"),
    pytest.param((2, 32, 30, 31), (72, 32, 3, 3), dict(padding=1), id="blocks"),
    pytest.param((3, 33, 8, 11), (64, 33, 3, 3), dict(padding=((2, 0), (1, 3))), id="uneven-padding"),
    pytest.param((2, 32, 10, 9), (96, 32, 3, 3), dict(padding=2, dilation=2), id="dilated"),
    pytest.param((2, 36, 12, 12), (64, 36, 5, 5), dict(padding=2), id="5x5"),
    pytest.param((4, 32, 6, 13), (65, 32, 1, 3), dict(padding=(0, 1)), id="1x3"),
    pytest.param((4, 32, 13, 6), (64, 32, 3, 1), dict(padding=(1, 0)), id="3x1"),
    pytest.param((2, 48, 9, 8), (64, 48, 2, 2), {}, id="2x2-valid"),
    pytest.param((1, 32, 3, 3), (64, 32, 3, 3), dict(padding=1), id="one-slot"),
    pytest.param((3, 32, 50), (64, 32, 3), dict(padding=1), id="1d"),
]


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES)
def test_implicit_product_matches_longdouble(monkeypatch, xs, ws, kwargs, dtype):
    geom = Geometry.from_args(xs, ws, **kwargs)
    x, w, gy = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, geom.y_shape)))
    want = _expected(gy.reshape(geom.n, geom.c_out, -1, geom.y_shape[-1]),
                     x.reshape(geom.n, geom.c_in, -1, xs[-1]), Geometry.from_args(
                         (geom.n, geom.c_in, 1, xs[-1]) if len(xs) == 3 else xs,
                         (ws[0], ws[1], 1, ws[-1]) if len(ws) == 3 else ws,
                         **({"padding": ((0, 0), geom.padding[0])} if len(xs) == 3 else kwargs))).reshape(ws)
    monkeypatch.setattr(numba_jit, "IMAGES", False)  # (the small images' own kernel: test_numba_images)
    numba_jit.forget_kernels()
    ran = ran_parts(monkeypatch)
    eps, reduction = np.finfo(dtype).eps, gy.size // geom.c_out
    for threads in (1, 2, 3):  # 3: panels that do not split evenly
        with fastconv.threads(threads):
            _, gw, _ = BACKWARD[len(xs)](gy, x, w, backend="numba", **kwargs)
        # each element is one sum of `reduction` products, bounded as test_numba_gemm's are
        assert np.abs(gw - want).max() <= 4 * reduction * eps * np.abs(want).max(), threads
    assert implicit.gw_part in ran and packed._grad_weight_part not in ran
    numba_jit.forget_kernels()


@tiles
def test_the_bits_are_the_same_on_any_number_of_threads():
    # every sum runs over the same units in the same order, whichever slot holds its panel
    geom = Geometry.from_args((9, 64, 14, 14), (128, 64, 3, 3), padding=1)
    x, gy = _rand(geom.x_shape, np.float32, 0), _rand(geom.y_shape, np.float32, 1)
    runs = []
    for threads in (1, 2, 3, 4):
        with fastconv.threads(threads):
            runs.append(numba_jit.grad_weight(gy, x, geom))
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["x-last-column", "x-inside", "gy"])
def test_non_finite_values_give_the_packed_kernels_result(monkeypatch, where, dtype):
    # x's last column is read past the output's width by the taps of kx = 0, where gy's zeros meet
    # it: inf * 0 would put NaN where the sum has none, so such a call is redone by the packed kernels.
    geom = Geometry.from_args((3, 32, 7, 9), (64, 32, 3, 3), padding=1)
    x, gy = _rand(geom.x_shape, dtype, 0), _rand(geom.y_shape, dtype, 1)
    if where == "x-last-column":
        x[1, 5, 3, 8] = np.inf
    elif where == "x-inside":
        x[2, 7, 4, 4] = -np.inf
    else:
        gy[0, 9, 2, 2] = np.nan
    got = numba_jit.grad_weight(gy, x, geom)
    monkeypatch.setattr(implicit, "MIN_CHANNELS", 10**9)
    want = numba_jit.grad_weight(gy, x, geom)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isfinite(got).sum() > 0


# (x, w, groups, the pass, the kernel it takes within its budget, that kernel's scratch in elements,
# the kernels that run instead where that was checked exactly, the results' absolute tolerance)
BUDGET_CASES = [
    pytest.param((4, 64, 14, 14), (128, 64, 3, 3), 1, "grad_weight", "gw_part",
                 lambda geom, nslots: implicit.Plan(geom, 4, nslots).scratch(nslots)[0],
                 [packed._grad_weight_part], 1e-4, id="weight-gradient", marks=tiles),
    pytest.param((4, 8, 64, 64), (16, 8, 3, 3), 1, "forward", "fw_part",
                 lambda geom, _: implicit.fw_scratch(16, 8, 9, 66 * 66, numba_jit._slots(geom.macs, gemm.PIECES)[1],
                                                     4)[0], None, 1e-4, id="forward", marks=tiles),
    pytest.param((4, 64, 30, 30), (64, 8, 3, 3), 8, "forward", "gfw_part",
                 lambda geom, nslots: implicit.gfw_scratch(8, 8, 8, 9, 32 * 32, 2, nslots, 4)[0], None, 1e-4,
                 id="grouped-forward", marks=wide),
    pytest.param((4, 64, 30, 30), (64, 8, 3, 3), 8, "grad_weight", "ggw_part",
                 lambda geom, nslots: implicit.ggw_scratch(8, 8, 8, 3, 3, 30, 32, 32 * 32, nslots, 4)[0], None, 1e-3,
                 id="grouped-weight-gradient", marks=wide),
]


@pytest.mark.parametrize("x_shape, w_shape, groups, pass_, part, need, fallback, atol", BUDGET_CASES)
def test_a_call_whose_scratch_passes_the_budget_takes_another_kernel(budget, monkeypatch, x_shape, w_shape, groups,
                                                                      pass_, part, need, fallback, atol):
    geom = Geometry.from_args(x_shape, w_shape, padding=1, groups=groups)
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    nbytes = need(geom, numba_jit._slots(geom.macs)[1]) * 4 + numba_jit.PARTS_BYTES  # (see ``numba_jit._budget``)
    kernel = getattr(implicit, part)

    def call():
        return numba_jit.forward(x, w, geom) if pass_ == "forward" else numba_jit.grad_weight(gy, x, geom)

    ran = ran_parts(monkeypatch)
    budget(nbytes - 1)
    low = call()
    assert kernel not in ran
    if fallback is not None:  # the kernels that ran instead, exactly
        assert ran == fallback
    before = len(ran)
    budget(nbytes)
    high = call()
    assert ran[-1] == kernel
    if fallback is not None:
        assert ran[before:] == [kernel]
    np.testing.assert_allclose(low, high, rtol=1e-4, atol=atol)


@tiles
def test_the_implicit_forward_is_judged_against_the_budget_it_is_given():
    # an input gradient's phase is a forward over gy whose Geometry has a budget of its own (that of
    # gy's size): the chooser holds the implicit forward to the call's, the one it is passed
    geom = Geometry.from_args((4, 8, 64, 64), (16, 8, 3, 3), padding=1)
    nbytes = implicit.fw_scratch(16, 8, 9, 66 * 66, numba_jit._slots(geom.macs, gemm.PIECES)[1], 4)[0] * 4
    call = numba_jit._forward_call(geom, 4)
    assert numba_jit._forward_kernel(call, nbytes) == "implicit"
    assert numba_jit._forward_kernel(call, nbytes - 1) != "implicit"


@tiles
def test_the_scratch_is_gw_and_a_few_images_per_slot():
    # C (gw transposed, channels rounded up to 8 and panels to whole ones), and per slot a group of
    # padded images (about GROUP_PIXELS pixels of every channel) and their panels of gy (at most
    # GROUP_BYTES): within gw's size and 4 MiB per slot on these layers
    for xs, ws in (((32, 512, 7, 7), (512, 512, 3, 3)), ((32, 64, 56, 56), (64, 64, 3, 3)),
                   ((32, 256, 14, 14), (256, 256, 3, 3))):
        geom = Geometry.from_args(xs, ws, padding=1)
        for nslots in (1, 2, 4):
            nfloat, nint = implicit.Plan(geom, 4, nslots).scratch(nslots)
            assert nint == nslots and nfloat * 4 <= 4 * np.prod(ws) + nslots * 4 * 2**20, (xs, nslots)


@tiles
def test_the_implicit_product_leaves_its_inputs_alone_and_allocates_nothing_when_warm():
    geom = Geometry.from_args((4, 64, 16, 16), (96, 64, 3, 3), padding=1)
    assert geom.macs >= numba_jit.SERIAL_MAX_MACS
    x, gy = _rand(geom.x_shape, np.float32, 0), _rand(geom.y_shape, np.float32, 1)
    copies = x.copy(), gy.copy()
    calls = ((numba_jit.grad_weight, (gy, x, geom)),)
    with fastconv.threads(2):
        numba_jit.grad_weight(gy, x, geom)  # warm: compiled, workspaces grown
        counts = array_wrappers(calls)
    assert counts == [5 * 2]  # the wrappers of the kernel's 5 array arguments, once per slot
    assert np.array_equal(x, copies[0]) and np.array_equal(gy, copies[1])


# -- the forward ------------------------------------------------------------------------------------


NARROW = not gemm.WIDE  # the forwards that AVX2's limits take and AVX-512's do not
FULL = gemm.FULL_WIDTH  # ... and those that full-width AVX-512's take (an Intel Xeon)
HALF = gemm.NARROW  # ... and half-width AVX-512's (Zen 4)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, takes", [
    ((64, 1, 28, 28), (32, 1, 5, 5), {}, True),  # MNIST's first layer: 24-pixel rows, one 32-column tile
    ((32, 3, 32, 32), (64, 3, 3, 3), dict(padding=1), True),
    ((2, 8, 48, 48), (8, 8, 3, 3), dict(padding=2, dilation=2), True),
    # (without AVX-512 the limits are wider: ``FW_NARROW_LIMITS``; on full-width AVX-512 rows of
    # up to ``FW_FULL_WIDTH_MAX_CHANNELS`` over an image a thread, on half-width ones up to
    # ``FW_HALF_WIDTH_MAX_CHANNELS``, and as many over wide pixels that waste at most 0.13)
    ((2, 9, 32, 32), (64, 9, 3, 3), dict(padding=1), NARROW or FULL or HALF),  # input channels, over rows
    ((2, 32, 32, 32), (64, 32, 3, 3), dict(padding=1), NARROW or FULL or HALF),
    ((2, 33, 32, 32), (64, 33, 3, 3), dict(padding=1), FULL or HALF),
    ((2, 128, 32, 32), (64, 128, 3, 3), dict(padding=1), FULL or HALF),
    ((2, 129, 32, 32), (64, 129, 3, 3), dict(padding=1), HALF),
    ((2, 256, 32, 32), (64, 256, 3, 3), dict(padding=1), HALF),
    ((2, 257, 32, 32), (64, 257, 3, 3), dict(padding=1), False),
    ((1, 33, 32, 32), (64, 33, 3, 3), dict(padding=1), False),  # one image: one thread's
    ((2, 128, 17, 17), (64, 128, 7, 1), dict(padding=(3, 0)), HALF),  # 304 columns for 289 pixels: 0.05
    ((2, 96, 14, 14), (64, 96, 3, 3), dict(padding=1), False),  # 224 for 196: 0.14
    ((2, 96, 17, 17), (64, 96, 1, 7), dict(padding=(0, 3)), False),  # 400 for 289: 0.38
    ((1, 96, 17, 17), (64, 96, 7, 1), dict(padding=(3, 0)), False),  # one image

    ((2, 3, 32, 32), (5, 3, 3, 3), dict(padding=1), False),  # output channels: under one tile's rows
    ((2, 3, 14, 14), (64, 3, 3, 3), dict(padding=1), True),  # 14-pixel rows: 222 wide pixels in 7 tiles
    ((2, 64, 7, 7), (64, 64, 3, 3), dict(padding=1), True),  # 61 wide pixels in 2 tiles, 64 channels
    ((2, 65, 7, 7), (64, 65, 3, 3), dict(padding=1), NARROW),  # ... 65
    ((2, 16, 5, 5), (16, 16, 3, 3), {}, NARROW),  # 13 wide pixels for 9: a half tile wastes 0.78
    ((2, 16, 9, 9), (16, 16, 3, 3), dict(padding=2, dilation=2), NARROW),  # 113 for 81: 0.58
    ((2, 16, 3, 3), (16, 16, 3, 3), {}, False),  # 1 pixel in a half tile: 15
    ((2, 3, 32, 32), (64, 3, 3, 3), dict(stride=2), False),
    ((2, 4, 32, 32), (64, 2, 3, 3), dict(groups=2), False),
    ((0, 3, 32, 32), (64, 3, 3, 3), {}, False),
    # one-row images (1-D signals): on full-width AVX-512 any channels, an image's input within 1 MiB
    ((2, 192, 1, 1024), (64, 192, 1, 3), dict(padding=(0, 1)), FULL or HALF),
    ((2, 512, 1, 512), (64, 512, 1, 3), dict(padding=(0, 1)), FULL),
    ((2, 512, 1, 1024), (64, 512, 1, 3), dict(padding=(0, 1)), False),  # 2 MiB an image
    ((1, 192, 1, 1024), (64, 192, 1, 3), dict(padding=(0, 1)), False),  # one image
    ((2, 8, 8, 1024), (8, 8, 3, 1), dict(padding=(1, 0)), None),  # k x 1 over long rows: the columns kernels'
    # 1x1, 8+ channels each side: the 1x1 products' (AVX-512 only)
    ((2, 8, 32, 32), (16, 8, 1, 1), {}, None if gemm.WIDE else True),
])
def test_which_forwards_take_the_implicit_product(monkeypatch, x_shape, w_shape, kwargs, takes):
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    with fastconv.threads(2):  # (full-width AVX-512's rows need an image a thread)
        assert implicit.forward_applies(geom, 4) == ((takes is not False) and gemm.TILES)
        ran = ran_parts(monkeypatch)
        fastconv.conv2d(np.ones(x_shape, np.float32), np.ones(w_shape, np.float32), backend="numba", **kwargs)
    assert (implicit.fw_part in ran) == (bool(takes) and gemm.TILES)


def _expected_y(x, w, b, geom):
    """y in longdouble: for each tap, the weight's products with the window of the padded x."""
    (pt, pb), (pl, pr) = geom.padding
    xp = np.pad(x.astype(np.longdouble), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    y = np.zeros(geom.y_shape, np.longdouble) + (0 if b is None else b.astype(np.longdouble)[:, None, None])
    for ky in range(geom.kh):
        for kx in range(geom.kw):
            y0, x0 = ky * geom.dil_h, kx * geom.dil_w
            y += np.einsum("kc,nchw->nkhw", w[:, :, ky, kx].astype(np.longdouble),
                           xp[:, :, y0:y0 + geom.oh, x0:x0 + geom.ow])
    return y


# Rows that spill into the next (24 and 30 pixels of 32 columns), several tiles per row, output
# channels past whole tiles (the last panel through the scratch tile), padding on one side, dilation,
# a single input channel and the most, rows of one image split over slots, a 1-D call; a row's
# last tile narrower than a whole one (``_row_tile``: float32 rows of 52 end in three quarters of a
# tile on Zen 4, of 80 in a half; float64 rows of 24 and 52 in a half)
FORWARD_CASES = [
    pytest.param((5, 1, 28, 28), (32, 1, 5, 5), {}, id="mnist"),
    pytest.param((2, 2, 10, 54), (12, 2, 3, 3), {}, id="narrow-last-tile"),
    pytest.param((2, 1, 6, 82), (8, 1, 3, 3), {}, id="half-last-tile"),
    pytest.param((3, 3, 30, 32), (20, 3, 3, 3), dict(padding=1), id="ragged-channels"),
    pytest.param((2, 2, 9, 60), (8, 2, 3, 2), dict(padding=((2, 0), (1, 0))), id="two-tiles-uneven-padding"),
    pytest.param((2, 8, 16, 30), (16, 8, 3, 3), dict(padding=2, dilation=2), id="dilated"),
    pytest.param((1, 3, 5, 24), (9, 3, 1, 1), {}, id="1x1"),  # (3 channels: not the 1x1 products' call)
    pytest.param((3, 4, 50), (16, 4, 5), dict(padding=2), id="1d"),
    # wide pixels: two tiles (the second masked) with output channels past whole tiles, a half
    # tile, uneven padding
    pytest.param((3, 24, 7, 7), (20, 24, 3, 3), dict(padding=1), id="wide"),
    pytest.param((2, 8, 3, 4), (8, 8, 3, 3), dict(padding=1), id="wide-half-tile"),
    pytest.param((2, 16, 7, 8), (16, 16, 3, 3), dict(padding=((2, 0), (1, 1))), id="wide-uneven-padding"),
]
FORWARD = {3: fastconv.conv1d, 4: fastconv.conv2d}


@tiles
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", FORWARD_CASES)
def test_implicit_forward_matches_longdouble(monkeypatch, xs, ws, kwargs, dtype, bias):
    x, w, b = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, ws[:1])))
    b = b if bias else None
    x4, w4 = (a.reshape(*a.shape[:2], 1, -1) if a.ndim == 3 else a for a in (x, w))
    geom = Geometry.from_args(x4.shape, w4.shape, **({"padding": ((0, 0), (2, 2))} if len(xs) == 3 else kwargs))
    want = _expected_y(x4, w4, b, geom).reshape(*xs[:1], ws[0], *([-1] if len(xs) == 3 else geom.y_shape[2:]))
    ran = ran_parts(monkeypatch)
    eps, terms = np.finfo(dtype).eps, np.prod(ws[1:]) + 1
    for threads in (1, 2, 3):  # 3: images that do not split evenly
        with fastconv.threads(threads):
            y = FORWARD[len(xs)](x, w, b, backend="numba", **kwargs)
        assert np.abs(y - want).max() <= 4 * terms * eps * np.abs(want).max(), threads
    assert ran and set(ran) == {implicit.fw_part}


# Calls that only AVX2's limits (``FW_NARROW_LIMITS``) give the implicit forward: wide pixels of 80
# channels past whole tiles with 0.63 of the columns wasted (both dtypes), the most waste taken
# (0.78), rows of 32 input channels (float32's limit)
NARROW_FORWARD_CASES = [
    pytest.param((2, 80, 7, 7), (20, 80, 5, 5), dict(padding=2), (np.float32, np.float64), id="wide-80-channels"),
    pytest.param((3, 16, 5, 5), (16, 16, 3, 3), {}, (np.float32, np.float64), id="wide-most-waste"),
    pytest.param((2, 32, 6, 30), (16, 32, 3, 3), dict(padding=1), (np.float32,), id="rows-32-channels"),
]


@tiles
@pytest.mark.skipif(gemm.WIDE, reason="AVX-512's limits: the cases above")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("xs, ws, kwargs, dtypes", NARROW_FORWARD_CASES)
def test_implicit_forward_without_avx512_matches_longdouble(monkeypatch, xs, ws, kwargs, dtypes, bias):
    for dtype in dtypes:
        test_implicit_forward_matches_longdouble(monkeypatch, xs, ws, kwargs, dtype, bias)


# Calls that only full-width AVX-512's limits give the implicit forward (float32 rows of up to 128
# input channels over an image a thread: three images for the three threads tried), past whole
# tiles of rows and columns
FULL_FORWARD_CASES = [
    pytest.param((3, 128, 6, 30), (20, 128, 3, 3), dict(padding=1), id="rows-128-channels"),
    pytest.param((4, 33, 9, 40), (16, 33, 5, 5), dict(padding=((2, 1), (0, 2))), id="rows-33-channels"),
    pytest.param((3, 40, 70), (24, 40, 5), dict(padding=2), id="1d-40-channels"),
    pytest.param((3, 300, 64), (20, 300, 5), dict(padding=2), id="1d-300-channels"),  # a signal's rows
]


# ... and that only half-width AVX-512's give it (rows and thrifty wide pixels of up to 256 input
# channels over an image a thread; both dtypes): past whole tiles of rows and columns
HALF_FORWARD_CASES = [
    pytest.param((3, 200, 6, 30), (20, 200, 5, 5), dict(padding=2), id="rows-200-channels"),
    pytest.param((3, 72, 17, 17), (24, 72, 7, 1), dict(padding=(3, 0)), id="wide-72-channels"),
    pytest.param((4, 100, 64), (16, 100, 5), dict(padding=2), id="1d-100-channels"),
]


@tiles
@pytest.mark.skipif(not HALF, reason="half-width AVX-512's limits (Zen 4's)")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", HALF_FORWARD_CASES)
def test_implicit_forward_on_half_width_avx512_matches_longdouble(monkeypatch, xs, ws, kwargs, dtype, bias):
    test_implicit_forward_matches_longdouble(monkeypatch, xs, ws, kwargs, dtype, bias)


@tiles
@pytest.mark.skipif(not FULL, reason="full-width AVX-512's limits (an Intel Xeon's)")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("xs, ws, kwargs", FULL_FORWARD_CASES)
def test_implicit_forward_on_full_width_avx512_matches_longdouble(monkeypatch, xs, ws, kwargs, bias):
    test_implicit_forward_matches_longdouble(monkeypatch, xs, ws, kwargs, np.float32, bias)


# The implicit forward (few input channels) and the grouped one: (x, w, padding, groups, and the
# limit and value that send the call to the packed kernels)
IMPLICIT_FORWARDS = [
    pytest.param((7, 3, 32, 32), (24, 3, 5, 5), 2, 1, ("_fw_limits", lambda itemsize, images=0: (0, 0, 0.0)),
                 id="implicit"),
    pytest.param((5, 64, 14, 14), (64, 8, 3, 3), 1, 8, ("GROUPED_MAX_CHANNELS", 0), id="grouped"),
]


@tiles
@pytest.mark.parametrize("xs, ws, padding, groups, limit", IMPLICIT_FORWARDS)
def test_the_forward_bits_are_the_same_on_any_number_of_threads(xs, ws, padding, groups, limit):
    x, w = _rand(xs, np.float32, 0), _rand(ws, np.float32, 1)
    runs = []
    for threads in (1, 2, 3, 4):
        with fastconv.threads(threads):
            runs.append(fastconv.conv2d(x, w, padding=padding, groups=groups, backend="numba"))
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


@tiles
@pytest.mark.parametrize("where", ["x", "w-padding-tap", "w"])
@pytest.mark.parametrize("xs, ws, padding, groups, limit", IMPLICIT_FORWARDS)
def test_the_forward_with_non_finite_values_matches_the_packed_kernels(monkeypatch, where, xs, ws, padding, groups,
                                                                       limit):
    # every column of the tile sums its own pixel's taps only, so inf and NaN go where the direct
    # sum puts them; a weight's inf times the padding is numba's padding rule (padding_products)
    x, w = _rand((2, xs[1], 10, 30), np.float64, 0), _rand((ws[0], ws[1], 3, 3), np.float64, 1)
    if where == "x":
        x[1, xs[1] - 1, 4, 29] = np.inf
    else:
        w[3, 1, 0, 0 if where == "w-padding-tap" else 1] = np.nan
    got = fastconv.conv2d(x, w, padding=1, groups=groups, backend="numba")
    monkeypatch.setattr(implicit, *limit)
    fastconv.backends.get("numba").forget_kernels()
    want = fastconv.conv2d(x, w, padding=1, groups=groups, backend="numba")
    same = np.isfinite(want)
    assert np.array_equal(got[~same], want[~same], equal_nan=True) and same.sum() > 0  # (sums in another order)
    np.testing.assert_allclose(got[same], want[same], rtol=1e-12, atol=1e-12)


@tiles
def test_the_implicit_forward_leaves_its_inputs_alone_and_allocates_nothing_when_warm():
    geom = Geometry.from_args((64, 1, 28, 28), (32, 1, 5, 5))
    assert geom.macs >= numba_jit.SERIAL_MAX_MACS
    x, w, b = _rand(geom.x_shape, np.float32, 0), _rand(geom.w_shape, np.float32, 1), _rand((32,), np.float32, 2)
    copies = x.copy(), w.copy(), b.copy()
    with fastconv.threads(2):
        numba_jit.forward(x, w, geom, b)  # warm: compiled, workspaces grown
        counts = array_wrappers(((numba_jit.forward, (x, w, geom, b)),))
    # the wrappers of the 6 array arguments of prepare and of each slot (PIECES a thread)
    assert counts == [6 * (1 + 2 * gemm.PIECES)]
    assert all(np.array_equal(a, c) for a, c in zip((x, w, b), copies))


# -- the input gradient of stride-1 layers: one forward of gy by the flipped kernel -----------------


@pytest.mark.parametrize("x_shape, w_shape, kwargs, takes", [
    ((2, 16, 7, 7), (16, 16, 3, 3), dict(padding=1), True),  # wide pixels: 16 -> 16 channels
    ((2, 64, 32, 32), (8, 64, 3, 3), dict(padding=1), True),  # by rows: 8 -> 64
    ((2, 64, 32, 32), (9, 64, 3, 3), dict(padding=1), NARROW or FULL or HALF),  # 9 over rows (``FW_NARROW_LIMITS``: 32)
    ((2, 64, 32, 32), (33, 64, 3, 3), dict(padding=1), FULL or HALF),
    ((2, 64, 32, 32), (129, 64, 3, 3), dict(padding=1), HALF),
    ((2, 64, 32, 32), (257, 64, 3, 3), dict(padding=1), False),
    ((2, 16, 7, 7), (65, 16, 3, 3), dict(padding=1), NARROW),  # 65 over wide pixels
    ((2, 5, 7, 7), (16, 5, 3, 3), dict(padding=1), False),  # gx's 5 channels: under one tile's rows
    ((2, 16, 7, 7), (16, 16, 3, 3), dict(padding=3), False),  # padded past the kernel's reach
    ((2, 16, 14, 14), (16, 16, 3, 3), dict(padding=1, stride=2), False),
    ((2, 32, 7, 7), (32, 16, 3, 3), dict(padding=1, groups=2), False),
])
def test_which_input_gradients_take_the_implicit_forward(monkeypatch, x_shape, w_shape, kwargs, takes):
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    with fastconv.threads(2):  # (full-width AVX-512's rows need an image a thread)
        chosen = dict(numba_jit.whole_choices(geom, np.float32).phases).get((0, 0))
        assert (chosen == "implicit") == (takes and gemm.TILES)
        ran = ran_parts(monkeypatch)
        numba_jit.grad_input(np.ones(geom.y_shape, np.float32), np.ones(w_shape, np.float32), geom)
    assert (implicit.fw_part in ran) == (takes and gemm.TILES)


def _expected_gx(gy, w, geom):
    """gx in longdouble: each tap's products of the weight with gy, added into the padded input."""
    (pt, _), (pl, _) = geom.padding
    gxp = np.zeros((geom.n, geom.c_in, *geom.padded_size), np.longdouble)
    for ky in range(geom.kh):
        for kx in range(geom.kw):
            y0, x0 = ky * geom.dil_h, kx * geom.dil_w
            gxp[:, :, y0:y0 + geom.oh, x0:x0 + geom.ow] += np.einsum(
                "kc,nkhw->nchw", w[:, :, ky, kx].astype(np.longdouble), gy.astype(np.longdouble))
    return gxp[:, :, pt:pt + geom.ih, pl:pl + geom.iw]


# wide pixels (gx's channels past whole tiles, a half tile, no padding), rows (uneven padding, two
# tiles a row, dilation), a 1-D call
GX_CASES = [
    pytest.param((3, 20, 7, 7), (24, 20, 3, 3), dict(padding=1), id="wide-ragged-channels"),
    pytest.param((2, 8, 3, 4), (8, 8, 3, 3), dict(padding=1), id="wide-half-tile"),
    pytest.param((2, 16, 7, 7), (16, 16, 3, 3), {}, id="wide-unpadded"),
    pytest.param((2, 16, 9, 60), (8, 16, 3, 2), dict(padding=((2, 0), (1, 0))), id="rows-uneven-padding"),
    pytest.param((2, 16, 16, 30), (8, 16, 3, 3), dict(padding=2, dilation=2), id="rows-dilated"),
    pytest.param((3, 16, 50), (4, 16, 5), dict(padding=2), id="1d"),
]


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", GX_CASES)
def test_implicit_input_gradient_matches_longdouble(monkeypatch, xs, ws, kwargs, dtype):
    x4s, w4s = ((*s[:2], 1, s[2]) if len(s) == 3 else s for s in (xs, ws))
    geom = Geometry.from_args(x4s, w4s, **({"padding": ((0, 0), (2, 2))} if len(xs) == 3 else kwargs))
    w, gy = _rand(ws, dtype, 1), _rand(geom.y_shape, dtype, 2)
    want = _expected_gx(gy, w.reshape(w4s), geom).reshape(xs)
    gy = gy.reshape(*gy.shape[:2], -1) if len(xs) == 3 else gy
    ran = ran_parts(monkeypatch)
    eps, terms = np.finfo(dtype).eps, np.prod(ws) // ws[1]
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            gx = BACKWARD[len(xs)](gy, np.zeros(xs, dtype), w, backend="numba", **kwargs).input
        assert np.abs(gx - want).max() <= 4 * terms * eps * np.abs(want).max(), threads
    assert implicit.fw_part in ran


# -- the forward of grouped layers of few channels a group -------------------------------------------


@pytest.mark.parametrize("x_shape, w_shape, kwargs, takes", [
    ((32, 256, 14, 14), (256, 8, 3, 3), dict(padding=1, groups=32), True),  # ResNeXt's 32x8d
    ((2, 64, 9, 9), (64, 32, 3, 3), dict(padding=1, groups=2), True),  # 32 a group each side
    ((2, 66, 9, 9), (66, 33, 3, 3), dict(padding=1, groups=2), False),  # 33
    ((2, 128, 9, 9), (128, 4, 3, 3), dict(padding=1, groups=32), False),  # 4 output channels: half a tile
    ((2, 64, 9, 9), (64, 8, 3, 3), dict(padding=1, groups=8, stride=2), False),
    ((2, 64, 9, 9), (64, 8, 3, 3), dict(padding=2, groups=8, dilation=(2, 1)), False),  # dilated rows
    ((2, 64, 9, 9), (64, 8, 3, 3), dict(padding=2, groups=8, dilation=(1, 2)), True),  # ... columns: any
    ((2, 64, 9, 9), (64, 64, 3, 3), dict(padding=1), False),  # one group
])
def test_which_forwards_take_the_grouped_tiles(x_shape, w_shape, kwargs, takes):
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    got = implicit.grouped_applies(geom.sh, geom.sw, geom.dil_h, geom.groups, geom.c_in, geom.c_out)
    assert got == (takes and gemm.WIDE)


# Output rows of a whole tile and a ragged half (40), a ragged one over half (20), a ragged half
# (14), padding on one side, dilated columns, 16 output channels a group, 32 input channels a
# group, 16 input channels to 8 output ones a group (its input gradient 8 to 16), a 1-D call
GROUPED_CASES = [
    pytest.param((3, 16, 7, 40), (16, 8, 3, 3), dict(padding=1, groups=2), id="whole-and-half"),
    pytest.param((2, 24, 9, 20), (24, 8, 3, 3), dict(padding=1, groups=3), id="ragged"),
    pytest.param((3, 32, 14, 14), (64, 4, 3, 3), dict(padding=((2, 0), (0, 1)), groups=8), id="uneven-padding"),
    pytest.param((2, 16, 10, 21), (32, 8, 2, 3), dict(padding=2, groups=2, dilation=(1, 2)), id="dilated-columns"),
    pytest.param((2, 64, 5, 6), (32, 32, 3, 3), dict(padding=1, groups=2), id="32-input-channels"),
    pytest.param((2, 32, 6, 19), (16, 16, 3, 3), dict(padding=1, groups=2), id="16-in-8-out"),
    pytest.param((3, 16, 50), (16, 8, 5), dict(padding=2, groups=2), id="1d"),
]


BACKWARD = {3: fastconv.conv1d_backward, 4: fastconv.conv2d_backward}


@wide
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", GROUPED_CASES)
def test_grouped_forward_and_input_gradient_match_float64(monkeypatch, xs, ws, kwargs, dtype, bias):
    # the input gradient of a stride-1 layer is a stride-1 grouped forward too (the flipped,
    # transposed kernel over gy), so it takes these tiles where its channels do
    x, w, b = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, ws[:1])))
    b = b if bias else None
    fn, bwd = FORWARD[len(xs)], BACKWARD[len(xs)]
    want = fn(*(a if a is None else a.astype(np.float64) for a in (x, w, b)), backend="im2col", **kwargs)
    gy = _rand(want.shape, dtype, 5)
    want_gx = bwd(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), bias=False, backend="im2col",
                  **kwargs).input
    ran = ran_parts(monkeypatch)
    eps = np.finfo(dtype).eps
    for threads in (1, 2, 3):  # 3: (image, group) pairs that do not split evenly
        with fastconv.threads(threads):
            y = fn(x, w, b, backend="numba", **kwargs)
            gx = bwd(gy, x, w, bias=False, backend="numba", **kwargs).input
        assert np.abs(y - want).max() <= 4 * (np.prod(ws[1:]) + 1) * eps * np.abs(want).max(), threads
        assert np.abs(gx - want_gx).max() <= 4 * ws[0] * np.prod(ws[2:]) * eps * np.abs(want_gx).max(), threads
    assert implicit.gfw_part in ran


@wide
def test_the_grouped_forward_leaves_its_inputs_alone_and_allocates_nothing_when_warm():
    geom = Geometry.from_args((32, 64, 14, 14), (64, 8, 3, 3), padding=1, groups=8)
    assert geom.macs >= numba_jit.SERIAL_MAX_MACS
    x, w, b = _rand(geom.x_shape, np.float32, 0), _rand(geom.w_shape, np.float32, 1), _rand((64,), np.float32, 2)
    copies = x.copy(), w.copy(), b.copy()
    with fastconv.threads(2):
        numba_jit.forward(x, w, geom, b)  # warm: compiled, workspaces grown
        counts = array_wrappers(((numba_jit.forward, (x, w, geom, b)),))
    assert counts == [6 * 3]  # the wrappers of the 6 array arguments of prepare and of each slot (2)
    assert all(np.array_equal(a, c) for a, c in zip((x, w, b), copies))


@wide
def test_warmup_compiles_the_grouped_forward_and_weight_gradient():
    # auto's first grouped call must not wait for a compile: the forward, the input gradient (a
    # grouped forward of gy) and the weight gradient of a ResNeXt layer find every kernel compiled
    numba_jit.warmup(np.float32)
    kernels = (implicit.gfw_part, implicit.gfw_prepare, implicit.gfw_serial, implicit.ggw_part)
    before = [len(k.signatures) for k in kernels]
    assert all(before)
    for n in (1, 8):  # one thread (serial) and two
        geom = Geometry.from_args((n, 64, 14, 14), (64, 8, 3, 3), padding=1, groups=8)
        x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
        with fastconv.threads(2):
            numba_jit.forward(x, w, geom)
            numba_jit.grad_input(gy, w, geom)
            numba_jit.grad_weight(gy, x, geom)
    assert [len(k.signatures) for k in kernels] == before


# -- the grouped weight gradient (ggw_part) ------------------------------------------------------


@pytest.mark.parametrize("x_shape, w_shape, kwargs, takes", [
    ((32, 256, 14, 14), (256, 8, 3, 3), dict(padding=1, groups=32), True),  # ResNeXt's 32x8d
    ((2, 64, 9, 9), (64, 32, 3, 3), dict(padding=1, groups=2), True),  # 32 a group each side
    ((2, 64, 9, 9), (64, 32, 3, 3), dict(padding=2, groups=2, dilation=(2, 1)), True),  # dilated rows
    ((2, 32, 9, 9), (2, 16, 3, 3), dict(padding=1, groups=2), True),  # one output channel a group
    ((2, 66, 9, 9), (66, 33, 3, 3), dict(padding=1, groups=2), False),  # 33 input channels a group
    ((2, 128, 9, 9), (128, 4, 3, 3), dict(padding=1, groups=32), False),  # 4: half a tile's rows
    ((2, 64, 9, 9), (128, 8, 3, 3), dict(padding=1, groups=8), True),  # 16 output channels a group
    ((2, 32, 9, 9), (132, 8, 3, 3), dict(padding=1, groups=4), False),  # 33
    ((2, 64, 9, 9), (64, 8, 3, 3), dict(padding=1, groups=8, stride=2), False),
    ((2, 64, 9, 9), (64, 8, 3, 3), dict(padding=2, groups=8, dilation=(1, 2)), False),  # dilated columns
    ((2, 64, 9, 9), (64, 64, 3, 3), dict(padding=1), False),  # one group
])
def test_which_weight_gradients_take_the_grouped_tiles(x_shape, w_shape, kwargs, takes):
    assert implicit.grouped_gw_applies(Geometry.from_args(x_shape, w_shape, **kwargs)) == (takes and gemm.WIDE)


# 8 channels a group (24 columns: one panel), 16 (48: a panel and a half), 32 (96: three), one
# output channel a group, 8 in to 16 out, rows dilated, padding on one side, a wide
# image (a tile call's steps past KC), a 1-D call, a 1x1 kernel
GROUPED_GW_CASES = [
    pytest.param((3, 16, 7, 11), (16, 8, 3, 3), dict(padding=1, groups=2), id="8"),
    pytest.param((2, 32, 9, 10), (32, 16, 3, 3), dict(padding=1, groups=2), id="16"),
    pytest.param((2, 64, 5, 6), (64, 32, 3, 3), dict(padding=1, groups=2), id="32"),
    pytest.param((2, 24, 6, 7), (3, 8, 3, 3), dict(padding=1, groups=3), id="one-out"),
    pytest.param((2, 16, 6, 9), (32, 8, 3, 3), dict(padding=1, groups=2), id="8-in-16-out"),
    pytest.param((2, 16, 10, 12), (32, 8, 2, 3), dict(padding=2, groups=2, dilation=(3, 1)), id="dilated-rows"),
    pytest.param((3, 16, 14, 14), (16, 8, 3, 3), dict(padding=((2, 0), (0, 1)), groups=2), id="uneven-padding"),
    pytest.param((2, 16, 3, 300), (16, 8, 3, 5), dict(padding=1, groups=2), id="wide-image"),
    pytest.param((3, 16, 50), (16, 8, 5), dict(padding=2, groups=2), id="1d"),
    pytest.param((2, 16, 5, 7), (32, 8, 1, 1), dict(padding=1, groups=2), id="1x1-padded"),
]


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", GROUPED_GW_CASES)
def test_grouped_weight_gradient_matches_float64(monkeypatch, xs, ws, kwargs, dtype):
    x, w = _rand(xs, dtype, 0), _rand(ws, dtype, 1)
    fn, bwd = FORWARD[len(xs)], BACKWARD[len(xs)]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    gy = _rand(fn(x64, w64, backend="im2col", **kwargs).shape, dtype, 5)
    want = bwd(gy.astype(np.float64), x64, w64, bias=False, backend="im2col", **kwargs).weight
    ran = ran_parts(monkeypatch)
    bound = 4 * np.prod(gy.shape) // ws[0] * np.finfo(dtype).eps * np.abs(want).max()
    for threads in (1, 2, 3):  # 3: groups that do not split evenly
        with fastconv.threads(threads):
            got = bwd(gy, x, w, bias=False, backend="numba", **kwargs).weight
        assert got.dtype == dtype and np.abs(got - want).max() <= bound, threads
    assert implicit.ggw_part in ran


@wide
def test_the_grouped_weight_gradient_bits_are_the_same_on_any_number_of_threads():
    geom = Geometry.from_args((5, 64, 14, 14), (64, 8, 3, 3), padding=1, groups=8)
    x, gy = _rand(geom.x_shape, np.float32, 0), _rand(geom.y_shape, np.float32, 1)
    runs = []
    for threads in (1, 2, 3, 4):
        with fastconv.threads(threads):
            runs.append(numba_jit.grad_weight(gy, x, geom))
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


@wide
@pytest.mark.parametrize("where", ["x", "gy"])
def test_the_grouped_weight_gradient_with_non_finite_values_matches_another_kernel(monkeypatch, where):
    # an inf in x meets gy's zeros at the wide pixels (NaN in the tiles' sums where the direct sum
    # has inf): the call goes to another kernel, as it does for a NaN in gy
    geom = Geometry.from_args((2, 16, 10, 30), (16, 8, 3, 3), padding=1, groups=2)
    x, gy = _rand(geom.x_shape, np.float64, 0), _rand(geom.y_shape, np.float64, 1)
    if where == "gy":
        gy[1, 9, 4, 29] = np.nan
    else:
        x[0, 3, 2, 29] = np.inf
    got = numba_jit.grad_weight(gy, x, geom)
    monkeypatch.setattr(implicit, "GROUPED_MAX_CHANNELS", 0)
    want = numba_jit.grad_weight(gy, x, geom)
    same = np.isfinite(want)
    assert np.array_equal(got[~same], want[~same], equal_nan=True) and same.sum() > 0
    np.testing.assert_allclose(got[same], want[same], rtol=1e-12, atol=1e-12)


@wide
def test_the_grouped_weight_gradient_leaves_its_inputs_alone_and_allocates_nothing_when_warm():
    geom = Geometry.from_args((32, 64, 14, 14), (64, 8, 3, 3), padding=1, groups=8)
    assert geom.macs >= numba_jit.SERIAL_MAX_MACS
    x, gy = _rand(geom.x_shape, np.float32, 0), _rand(geom.y_shape, np.float32, 1)
    copies = x.copy(), gy.copy()
    with fastconv.threads(2):
        numba_jit.grad_weight(gy, x, geom)  # warm: compiled, workspaces grown
        counts = array_wrappers(((numba_jit.grad_weight, (gy, x, geom)),))
    assert counts == [5 * 2]  # the wrappers of the 5 array arguments of each slot (2)
    assert all(np.array_equal(a, c) for a, c in zip((x, gy), copies))


# -- strided forwards of few input channels: their stride phases stacked as channels ------------
# (``numba_jit.PHASES``: measured on an Intel AVX-512 CPU only, so forced on here wherever the
# tiles run)


@pytest.fixture
def phases(monkeypatch):
    """The stacked phases taken on any CPU with register tiles, by the rules of full-width AVX-512
    (few stacked channels too); the kernels chosen afresh."""
    monkeypatch.setattr(numba_jit, "PHASES", True)
    monkeypatch.setattr(numba_jit, "PHASES_FEW", True)
    numba_jit.forget_kernels()
    yield
    numba_jit.forget_kernels()


@tiles
@pytest.mark.parametrize("x_shape, w_shape, kwargs, takes", [
    ((2, 3, 64, 64), (64, 3, 7, 7), dict(stride=2, padding=3), True),  # a network's first layer: 12 stacked
    ((2, 1, 1, 300), (32, 1, 1, 9), dict(stride=(1, 2), padding=(0, 4)), True),  # 10 taps for 9
    ((2, 4, 32, 32), (32, 4, 7, 7), dict(stride=2), True),  # 16 stacked channels: the most ...
    ((2, 6, 16, 16), (32, 6, 3, 3), dict(stride=(1, 3)), False),  # 18 stacked, 3x1 taps
    ((2, 32, 32, 32), (32, 32, 7, 7), dict(stride=2), True),  # ... but 128 where 3x3 taps or more stack
    ((2, 33, 32, 32), (32, 33, 7, 7), dict(stride=2), False),  # 132
    ((2, 3, 64, 64), (64, 3, 11, 11), dict(stride=4, padding=2), True),  # AlexNet's first layer: 48, 3x3
    ((2, 3, 64, 64), (64, 3, 8, 8), dict(stride=4, padding=2), False),  # 48 stacked, 2x2 taps
    ((2, 3, 64, 64), (64, 3, 5, 5), dict(stride=2, padding=2), False),  # 36 taps for 25
    ((2, 3, 64, 64), (64, 3, 3, 3), dict(stride=2, padding=1), False),  # 16 for 9
    ((2, 3, 64, 64), (24, 3, 7, 7), dict(stride=2, padding=3), False),  # output channels
    ((2, 4, 64, 64), (64, 2, 7, 7), dict(stride=2, groups=2), False),
    ((2, 3, 64, 64), (64, 3, 7, 7), dict(stride=2, dilation=2), False),
    ((2, 3, 64, 64), (64, 3, 7, 7), dict(padding=3), False),  # no stride: the implicit forward's own
])
def test_which_strided_forwards_take_the_stacked_phases(phases, monkeypatch, x_shape, w_shape, kwargs, takes):
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    call = numba_jit._forward_call(geom, 4)
    assert (numba_jit._forward_kernel(call, 2**40) == "phases") == takes
    ran = ran_parts(monkeypatch)
    fastconv.conv2d(np.ones(x_shape, np.float32), np.ones(w_shape, np.float32), backend="numba", **kwargs)
    assert (ran == [implicit.fw_part]) == takes or not takes and geom.stride == (1, 1)  # (its own implicit forward)


@tiles
@pytest.mark.parametrize("x_shape, w_shape, kwargs, takes", [
    ((2, 3, 64, 64), (64, 3, 7, 7), dict(stride=2, padding=3), False),  # 12 stacked: the packed kernels'
    ((2, 3, 64, 64), (64, 3, 11, 11), dict(stride=4, padding=2), True),  # 48 stacked, 3x3 taps: patches' else
    ((2, 16, 32, 32), (64, 16, 7, 7), dict(stride=2, padding=3), True),  # 64 stacked
    ((2, 6, 64, 64), (32, 6, 11, 11), dict(stride=4, padding=2), False),  # 32 outputs: the packed kernels'
])
def test_half_width_units_take_the_phases_of_many_stacked_channels_only(phases, monkeypatch, x_shape, w_shape,
                                                                       kwargs, takes):
    """Zen 4's rule (``PHASES_FEW`` False): phases only where numba's patches would run the call."""
    monkeypatch.setattr(numba_jit, "PHASES_FEW", False)
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    assert (numba_jit._forward_kernel(numba_jit._forward_call(geom, 4), 2**40) == "phases") == takes


@tiles
def test_one_image_on_two_threads_leaves_the_phases_unless_pinned(phases):
    """The implicit forward's slots take whole images: one image would run on one thread. A chunk
    of a call that took the phases (``choosing_as``, by size) keeps them."""
    geom = Geometry.from_args((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    call = numba_jit._forward_call(geom, 4)
    with fastconv.threads(2):
        assert numba_jit._forward_kernel(call, 2**40) != "phases"
        assert numba_jit._forward_kernel(call, 2**40, pinned="phases") == "phases"
    with fastconv.threads(1):
        assert numba_jit._forward_kernel(call, 2**40) == "phases"


@pytest.mark.parametrize("kernel, stride, channels, split", [
    (7, 2, 3, True),  # 147 steps in 4 calls against 192 in one
    (5, 2, 3, True),
    (11, 4, 3, False),  # 363 in 16 against 432 in one
    (11, 4, 8, True),  # 968 in 16 against 1152
    (12, 4, 3, False),  # none past the kernel
    (4, 2, 3, False),
])
def test_each_phase_runs_its_own_taps_where_that_pays(monkeypatch, kernel, stride, channels, split):
    monkeypatch.setattr(numba_jit, "PHASE_OWN_TAPS", True)  # (measured on half-width units only)
    geom = Geometry.from_args((2, channels, 64, 64), (64, channels, kernel, kernel), stride=stride)
    taps = numba_jit._phase_taps(geom)
    assert (taps is not None) == split
    if split:
        assert len(taps) == stride * stride and taps[:, :2].sum(axis=0).tolist() == [kernel * stride] * 2
        assert (taps[:, 0] * taps[:, 1]).sum() == kernel * kernel
        assert taps[:, 2].tolist() == np.cumsum([0, *(taps[:-1, 0] * taps[:-1, 1])]).tolist()  # the blocks' places


@tiles
def test_more_stacked_channels_take_the_phases_in_float32_only(phases):
    geom = Geometry.from_args((2, 3, 64, 64), (64, 3, 11, 11), stride=4, padding=2)  # 48 stacked, 3x3 taps
    assert numba_jit._forward_kernel(numba_jit._forward_call(geom, 4), 2**40) == "phases"
    assert numba_jit._forward_kernel(numba_jit._forward_call(geom, 8), 2**40) != "phases"


@tiles
def test_the_stacked_phases_need_their_copy_and_scratch_within_the_budget(phases):
    geom = Geometry.from_args((2, 3, 64, 64), (64, 3, 7, 7), stride=2, padding=3)
    g = geom.stride_as_channels()
    held = g.n * g.c_in * np.prod(g.in_size) * 4
    wide = implicit.forward_wide(g, 4)
    nbytes = held + numba_jit._implicit_scratch(g, 4, wide, 2**40)[0] * 4
    call = numba_jit._forward_call(geom, 4)
    assert numba_jit._forward_kernel(call, nbytes) == "phases"
    assert numba_jit._forward_kernel(call, nbytes - 1) != "phases"


# Every phase's edge: padding on one side or none (phases that start past the input, or end short
# of the stacked plane), strides that do not divide the kernel, different strides per axis, a
# stride of 3, a kernel smaller than its stride along an axis, an odd-sized image, a 1-D call
PHASES_CASES = [
    pytest.param((3, 3, 29, 31), (32, 3, 7, 7), dict(stride=2, padding=3), id="stem-odd"),
    pytest.param((2, 2, 17, 13), (40, 2, 7, 6), dict(stride=(2, 3), padding=((3, 0), (1, 2))), id="uneven"),
    pytest.param((2, 1, 20, 19), (32, 1, 6, 6), dict(stride=3, padding=((0, 2), (2, 0))), id="stride-3"),
    pytest.param((2, 3, 16, 18), (33, 3, 2, 4), dict(stride=2, padding=(1, 0)), id="no-waste"),
    pytest.param((1, 2, 9, 40), (32, 2, 1, 7), dict(stride=(1, 2), padding=(0, 3)), id="1xk"),
    pytest.param((3, 1, 101), (32, 1, 9), dict(stride=2, padding=4), id="1d"),
    pytest.param((2, 3, 30, 27), (32, 3, 11, 11), dict(stride=4, padding=2), id="11x11-s4"),  # 48 stacked: float32
]


@tiles
@pytest.mark.parametrize("own_taps", [True, False])  # a tile call a phase over its own taps, or one
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", PHASES_CASES)
def test_the_stacked_phases_match_longdouble(phases, monkeypatch, xs, ws, kwargs, dtype, bias, own_taps):
    monkeypatch.setattr(numba_jit, "PHASE_OWN_TAPS", own_taps)
    monkeypatch.setattr(numba_jit, "PHASE_CALL_STEPS", -10**9)
    x, w, b = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, ws[:1])))
    b = b if bias else None
    x4, w4 = (a.reshape(*a.shape[:2], 1, -1) if a.ndim == 3 else a for a in (x, w))
    kw4 = dict(stride=(1, kwargs["stride"]), padding=((0, 0), (kwargs["padding"],) * 2)) if len(xs) == 3 else kwargs
    geom = Geometry.from_args(x4.shape, w4.shape, **kw4)
    if dtype == np.float64 and geom.stride_as_channels().c_in > numba_jit.PHASES_MAX_CHANNELS:
        pytest.skip("more stacked channels than PHASES_MAX_CHANNELS take the phases in float32 only")
    assert numba_jit._forward_kernel(numba_jit._forward_call(geom, x.itemsize), 2**40) == "phases"
    (pt, pb), (pl, pr) = geom.padding
    xp = np.pad(x4.astype(np.longdouble), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    want = np.zeros(geom.y_shape, np.longdouble) + (0 if b is None else b.astype(np.longdouble)[:, None, None])
    for ky in range(geom.kh):
        for kx in range(geom.kw):
            win = xp[:, :, ky:ky + geom.sh * (geom.oh - 1) + 1:geom.sh, kx:kx + geom.sw * (geom.ow - 1) + 1:geom.sw]
            want += np.einsum("kc,nchw->nkhw", w4[:, :, ky, kx].astype(np.longdouble), win)
    want = want.reshape(*xs[:1], ws[0], *([-1] if len(xs) == 3 else geom.y_shape[2:]))
    ran = ran_parts(monkeypatch)
    monkeypatch.setattr(numba_jit, "PHASES_THREAD_BYTES", 1)  # the copy split by images over 2 and 3 threads
    eps, terms = np.finfo(dtype).eps, np.prod(ws[1:]) + 1
    copies = x.copy(), w.copy()
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            y = FORWARD[len(xs)](x, w, b, backend="numba", **kwargs)
        assert y.shape == want.shape and y.dtype == dtype
        assert np.abs(y - want).max() <= 4 * terms * eps * np.abs(want).max(), threads
    assert ran and set(ran) == {implicit.fw_part}
    assert np.array_equal(x, copies[0]) and np.array_equal(w, copies[1])


@tiles
@pytest.mark.parametrize("where", ["x", "w-padding-tap", "w"])
def test_the_stacked_phases_leave_non_finite_values_to_the_packed_kernels(phases, monkeypatch, where):
    # the split kernel's zero taps would multiply an inf of x into NaN where no product is
    x, w = _rand((2, 3, 20, 21), np.float64, 0), _rand((32, 3, 7, 7), np.float64, 1)
    if where == "x":
        x[1, 2, 5, 6] = np.inf
    else:
        w[3, 1, 0, 0 if where == "w-padding-tap" else 1] = np.nan
    ran = ran_parts(monkeypatch)
    got = fastconv.conv2d(x, w, stride=2, padding=3, backend="numba")
    assert implicit.fw_part not in ran
    monkeypatch.setattr(numba_jit, "PHASES", False)
    monkeypatch.setattr(numba_jit, "PIXELS", False)  # (which would take the call then)
    numba_jit.forget_kernels()
    want = fastconv.conv2d(x, w, stride=2, padding=3, backend="numba")
    assert np.array_equal(got, want, equal_nan=True) and not np.isfinite(got).all()
