"""What the shared suite cannot see of the winograd backend: both tile sizes at both precisions,
every padding form at the tiles' edges, its error bounds (API.md's precision levels) on random
and adversarial inputs, its memory budget, its fallbacks, and its refusals through the public API."""



import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import fastconv
from fastconv import _workers
from fastconv._precision import precision
from fastconv.backends import _numba_gemm as _gemm
from fastconv.backends import _winograd_kernels, im2col, numba_jit, winograd
from fastconv.geometry import Geometry

from .oracle import assert_close, extra_bytes

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (x shape, w shape, padding, groups): odd sizes, tiles cut by every edge, per-side padding
# (including more than the kernel's reach, which crops the input gradient), groups.
PROBLEMS = {
    "p1-odd": ((2, 4, 7, 9), (6, 4, 3, 3), 1, 1),
    "valid-13x6": ((2, 5, 13, 6), (3, 5, 3, 3), 0, 1),
    "asym-grouped": ((3, 6, 5, 4), (4, 3, 3, 3), ((2, 0), (1, 3)), 2),
    "pad-beyond-reach": ((2, 5, 11, 6), (3, 5, 3, 3), ((0, 4), (3, 0)), 1),
    "one-pixel": ((1, 3, 1, 1), (2, 3, 3, 3), ((2, 2), (1, 1)), 1),
    "large-tiles-41": ((2, 8, 41, 43), (8, 4, 3, 3), 1, 2),  # F(4x4) at "high": 41 and 43 >= 40
}
LEVELS = ("highest", "high")


def _torch_pad(padding):
    if isinstance(padding, int):
        return (padding,) * 4
    (top, bottom), (left, right) = padding
    return (left, right, top, bottom)


def _arrays(rng, dtype, x_shape, w_shape, padding, groups):
    """``(geom, x, w, b, gy)``: a call's geometry and standard normal arrays in ``dtype``."""
    geom = Geometry.from_args(x_shape, w_shape, padding=padding, groups=groups)
    x, w, gy = (rng.standard_normal(s).astype(dtype) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    return geom, x, w, rng.standard_normal(geom.c_out).astype(dtype), gy


def _each_level(rng, dtype, cases):
    """``(geom, x, w, b, gy)`` of each case ``(x_shape, w_shape, padding, groups)`` under each
    precision level in turn (the level set while the caller's loop body runs)."""
    for x_shape, w_shape, padding, groups in cases:
        arrays = _arrays(rng, dtype, x_shape, w_shape, padding, groups)
        for level in LEVELS:
            with precision(level):
                yield arrays


def _alike_each_way(set_way, ways, passes, arrays):
    """``passes(*arrays)``' results after ``set_way(way)`` for each of ``ways``: the same bits each
    way; returns the first way's."""
    got = []
    for way in ways:
        set_way(way)
        got.append(passes(*arrays))
    for other in got[1:]:
        for first, then in zip(got[0], other):
            np.testing.assert_array_equal(first, then)
    return got[0]


def _forward_and_input_gradient(geom, x, w, b, gy):
    return winograd.forward(x, w, geom, b), winograd.grad_input(gy, w, geom)


def _case(name, dtype, seed=0):
    x_shape, w_shape, padding, groups = PROBLEMS[name]
    return (*_arrays(np.random.default_rng(seed), dtype, x_shape, w_shape, padding, groups), padding, groups)


def _torch_results(x, w, b, gy, padding, groups):
    """float64 torch: y, gx, gw (gradients with the random upstream gy)."""
    tx, tw = (torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (x, w))
    ty = F.conv2d(F.pad(tx, _torch_pad(padding)), tw, torch.from_numpy(b.astype(np.float64)), groups=groups)
    gx, gw = torch.autograd.grad(ty, (tx, tw), torch.from_numpy(gy.astype(np.float64)))
    return ty.detach().numpy(), gx.numpy(), gw.numpy()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", PROBLEMS)
def test_passes_match_torch(monkeypatch, name, dtype, level):
    monkeypatch.setattr(winograd, "_f4_pays", lambda geom, itemsize, split: True)  # "high": F(4x4) on every size
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS", 1)  # the weight gradient's tiles too
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS_BLAS", 1)
    geom, x, w, b, gy, padding, groups = _case(name, dtype)
    saved = [a.copy() for a in (x, w, b, gy)]
    want = _torch_results(x, w, b, gy, padding, groups)
    with precision(level):
        got = (winograd.forward(x, w, geom, b), winograd.grad_input(gy, w, geom), winograd.grad_weight(gy, x, geom))
    assert winograd._winograd_weight(geom, x.itemsize)
    for what, g, ref in zip(("y", "gx", "gw"), got, want):
        assert g.dtype == dtype and g.flags.c_contiguous and g.shape == ref.shape, what
        assert_close(g, ref, what=f"{name} {level} {what}")
    assert all(np.array_equal(a, s) for a, s in zip((x, w, b, gy), saved)), "an input was modified"


# Dilated calls at stride 1 run as undilated ones on their phases (``_phases``): (x shape, w shape,
# padding, dilation, groups). Phases of one geometry (stacked into one call), of several (odd sizes,
# per-side padding), and phases whose input is empty (outputs that read only padding).
DILATED = {
    "d2-stacked": ((2, 4, 12, 10), (6, 4, 3, 3), 2, 2, 1),
    "d23-odd-asym-grouped": ((2, 6, 11, 13), (4, 3, 3, 3), ((3, 1), (0, 4)), (2, 3), 2),
    "d3-valid": ((3, 5, 16, 9), (3, 5, 3, 3), 0, (3, 1), 1),
    "d34-reads-only-padding": ((1, 3, 2, 3), (2, 3, 3, 3), ((5, 5), (4, 4)), (3, 4), 1),
    "d2-large-tiles": ((2, 8, 84, 82), (8, 8, 3, 3), 2, 2, 1),  # phases of 42 and 41: F(4x4) at "high"
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", DILATED)
def test_dilated_passes_match_torch(monkeypatch, name, dtype, level):
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS", 1)  # the weight gradient's tiles too
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS_BLAS", 1)
    x_shape, w_shape, padding, dilation, groups = DILATED[name]
    geom = Geometry.from_args(x_shape, w_shape, padding=padding, dilation=dilation, groups=groups)
    rng = np.random.default_rng(1)
    x, w, gy = (rng.standard_normal(s).astype(dtype) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    b = rng.standard_normal(geom.c_out).astype(dtype)
    saved = [a.copy() for a in (x, w, b, gy)]
    tx, tw = (torch.from_numpy(a.astype(np.float64)).requires_grad_() for a in (x, w))
    ty = F.conv2d(F.pad(tx, _torch_pad(padding)), tw, torch.from_numpy(b.astype(np.float64)), dilation=dilation,
                  groups=groups)
    want = (ty.detach().numpy(), *(t.numpy() for t in torch.autograd.grad(ty, (tx, tw), torch.from_numpy(
        gy.astype(np.float64)))))
    with precision(level):
        got = (winograd.forward(x, w, geom, b), winograd.grad_input(gy, w, geom), winograd.grad_weight(gy, x, geom))
    for what, g, ref in zip(("y", "gx", "gw"), got, want):
        assert g.dtype == dtype and g.flags.c_contiguous and g.shape == ref.shape, what
        assert_close(g, ref, what=f"{name} {level} {what}")
    assert all(np.array_equal(a, s) for a, s in zip((x, w, b, gy), saved)), "an input was modified"


def test_dilated_phases_of_one_geometry_run_as_one_call(monkeypatch):
    """Sizes that the dilation divides at ``padding = dilation``: every phase is the same
    undilated convolution, and the four run stacked along the batch, as one call of 4N images."""
    calls = []
    convolve = winograd._convolve
    monkeypatch.setattr(winograd, "_convolve", lambda src, *a, **k: calls.append(src.shape) or convolve(src, *a, **k))
    geom = Geometry.from_args((3, 4, 12, 10), (6, 4, 3, 3), padding=2, dilation=2)
    x = np.random.default_rng(2).standard_normal(geom.x_shape)
    w = np.random.default_rng(3).standard_normal(geom.w_shape)
    y = winograd.forward(x, w, geom)
    assert calls == [(12, 4, 6, 5)]
    assert_close(y, numba_jit.forward(x, w, geom))
    assert winograd.algorithm(geom, np.float64, "highest") == "F(2x2,3x3)"


def test_dilated_3d_runs_through_the_lift():
    """In-plane dilation: not the native 3-D path (its planes are undilated), the lift's 2-D calls
    on the phases; depth dilation folds into the channels as before."""
    geom = Geometry.from_args((2, 8, 5, 9, 10), (6, 8, 3, 3, 3), padding=2, dilation=(2, 2, 3))
    assert not winograd._native_3d(geom, 8) and winograd.supports(geom, np.dtype(np.float64), "highest") is None
    rng = np.random.default_rng(4)
    x, w, gy = (rng.standard_normal(s) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    for got, want in [(winograd.forward(x, w, geom), numba_jit.forward(x, w, geom)),
                      (winograd.grad_input(gy, w, geom), numba_jit.grad_input(gy, w, geom)),
                      (winograd.grad_weight(gy, x, geom), numba_jit.grad_weight(gy, x, geom))]:
        assert_close(got, want)


def test_empty_batch_gives_empty_results():
    geom = Geometry.from_args((0, 4, 9, 9), (6, 4, 3, 3), padding=1)
    x, w, gy = (np.ones(s) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    assert winograd.forward(x, w, geom).shape == geom.y_shape
    assert winograd.grad_input(gy, w, geom).shape == geom.x_shape


def test_tile_follows_precision_products_and_filter_bytes(use_threads):
    """"high" runs F(4x4) where it saves products enough and its filters are few bytes per tile."""
    use_threads(2)  # F(4x4) by items with more filter bytes is for two threads and more
    big = Geometry.from_args((1, 4, 40, 56), (4, 4, 3, 3), padding=1)
    assert winograd.algorithm(big, np.float32, "highest") == "F(2x2,3x3)"
    assert winograd.algorithm(big, np.float32, "high") == "F(4x4,3x3)"
    padded = Geometry.from_args((32, 4, 14, 14), (4, 4, 3, 3), padding=1)  # 16 4x4 tiles against 49 2x2
    assert winograd.algorithm(padded, np.float32, "high") == "F(2x2,3x3)"
    # 9 MiB of F(4x4) filters: 18, 72 or 144 KiB a tile; from 48 KiB F(4x4) only where the
    # output channels may split (forward, input gradient): by items up to F4_SPLIT_FILTER_BYTES
    # (on the register tiles or NumPy's products), past it by channels (the register tiles only)
    split = "F(4x4,3x3), weight F(2x2,3x3)"
    for n, want in [(32, "F(4x4,3x3)"), (8, split), (4, split if _gemm.TILES else "F(2x2,3x3)")]:
        geom = Geometry.from_args((n, 256, 16, 16), (256, 256, 3, 3), padding=1)
        assert winograd.algorithm(geom, np.float32, "high") == want, n
    geom = Geometry.from_args((16, 256, 16, 16), (256, 256, 3, 3), padding=1)
    assert winograd.algorithm(geom, np.float32, "high") == "F(4x4,3x3)"
    assert winograd.algorithm(geom, np.float64, "high") == "F(2x2,3x3)"  # twice the bytes (a tie by items)


@pytest.mark.skipif(not _gemm.TILES, reason="the register tiles run only on CPUs with AVX-512 or AVX2")
def test_many_filter_bytes_take_f4_where_the_threads_split_the_output_channels(use_threads):
    """36 MiB of F(4x4) filters at 7x7 C=512 (295 KiB a tile at N=32): F(4x4) by channels for
    the forward and input gradient from a panel of tiles (N=8: 32 tiles), F(2x2) for the weight
    gradient; one thread, 16 tiles, or input over BY_CHANNELS_MAX_BYTES: F(2x2). The same at
    14x14, where F(4x4) saves fewer products."""
    use_threads(2)

    def algorithm(n, c=512, size=7):
        geom = Geometry.from_args((n, c, size, size), (c, c, 3, 3), padding=1)
        return winograd.algorithm(geom, np.float32, "high")

    assert algorithm(32) == algorithm(8) == "F(4x4,3x3), weight F(2x2,3x3)"
    assert algorithm(4) == "F(2x2,3x3)"  # 16 tiles: half a panel
    assert algorithm(128) == "F(2x2,3x3)"  # 36 MiB of transformed input (and 72 KiB of filters a tile)
    # 14x14, 0.73x F(2x2)'s products (F4_SPLIT_MAX_PRODUCTS): by channels, or by items with few
    # filter bytes (F4_SPLIT_FILTER_BYTES: 74 KiB a tile at N=8 C=256, 147 at N=4) within L3 (C=512:
    # 36 MiB, too many); 10x10, 0.81x: never
    assert algorithm(8, size=14) == algorithm(2, size=14) == "F(4x4,3x3), weight F(2x2,3x3)"
    assert algorithm(8, c=256, size=14) == algorithm(32, c=64, size=14) == "F(4x4,3x3), weight F(2x2,3x3)"
    assert algorithm(32, size=14) == algorithm(8, size=10) == "F(2x2,3x3)"
    # N=4 C=256: 147 KiB of F(4x4) filters a tile (9 MiB): by channels, whatever the kernel's size
    assert algorithm(4, c=256, size=14) == "F(4x4,3x3), weight F(2x2,3x3)"
    assert algorithm(1, c=256, size=14) == "F(2x2,3x3)"  # 16 tiles: half a panel
    assert algorithm(32, c=32, size=14) == "F(2x2,3x3)"  # few channels: unmeasured
    # C=384: 20.25 MiB of F(4x4) filters: by channels at 7x7 (3.4 MiB of input at N=16); at 14x14
    # N=32 (27 MiB of input) by items, within F4_ITEMS_MAX_FILTER_BYTES
    assert algorithm(16, c=384) == algorithm(32, c=384, size=14) == "F(4x4,3x3), weight F(2x2,3x3)"
    use_threads(1)
    assert algorithm(32) == algorithm(8, size=14) == algorithm(8, c=256, size=14) == "F(2x2,3x3)"


def test_supports_and_refusals():
    ok = Geometry.from_args((1, 4, 8, 8), (4, 2, 3, 3), padding=1, groups=2)
    assert winograd.supports(ok, np.dtype(np.float32), "highest") is None
    assert winograd.supports(ok, np.dtype(np.float64), "high") is None
    for kwargs, w_shape in [({"stride": 2}, (4, 4, 3, 3)), ({"stride": 2, "dilation": 2}, (4, 4, 3, 3)),
                            ({"stride": 2}, (4, 4, 5, 5)), ({}, (4, 4, 1, 1)), ({}, (4, 4, 9, 9)), ({}, (4, 4, 4, 4)),
                            ({}, (4, 4, 3, 1))]:
        geom = Geometry.from_args((1, 4, 9, 9), w_shape, **kwargs)
        assert "7x7 kernels (3, 5 or 7 taps each way) at stride 1 only" in winograd.supports(
            geom, np.dtype(np.float32), "highest")
    for w_shape in [(4, 4, 5, 5), (4, 4, 7, 7), (4, 2, 5, 3), (4, 4, 3, 7)]:  # in 3x3 blocks, on the register tiles
        geom = Geometry.from_args((1, 4, 9, 9), w_shape, padding=2, groups=4 // w_shape[1])
        said = winograd.supports(geom, np.dtype(np.float32), "highest")
        assert said is None if _gemm.TILES else "register tiles" in said
    dilated = Geometry.from_args((1, 4, 9, 9), (4, 4, 3, 3), dilation=(2, 3), padding=1)  # on its phases
    assert winograd.supports(dilated, np.dtype(np.float32), "highest") is None
    depthwise = Geometry.from_args((1, 4, 8, 8), (4, 1, 3, 3), groups=4)
    assert "depthwise" in winograd.supports(depthwise, np.dtype(np.float32), "highest")
    one_d = Geometry.from_args((1, 4, 9), (4, 4, 3), padding=1)
    assert "2-D and 3-D" in winograd.supports(one_d, np.dtype(np.float32), "highest")
    # 3-D runs as 2-D with the kernel's depth folded into the channels: any depth, stride and dilation
    three_d = Geometry.from_args((1, 4, 5, 8, 8), (4, 4, 2, 3, 3), stride=(2, 1, 1), dilation=(2, 1, 1))
    assert winograd.supports(three_d, np.dtype(np.float32), "highest") is None
    flat_strided = Geometry.from_args((1, 4, 5, 8, 8), (4, 4, 3, 3, 3), stride=(1, 2, 1))
    assert "at stride 1 only" in winograd.supports(flat_strided, np.dtype(np.float32), "highest")


@pytest.mark.parametrize("level", LEVELS)
def test_public_api_runs_it_and_refuses_what_it_does_not_support(level):
    geom, x, w, b, gy, padding, groups = _case("asym-grouped", np.float64)
    want = _torch_results(x, w, b, gy, padding, groups)
    with precision(level):
        y = fastconv.conv2d(x, w, b, padding=padding, groups=groups, backend="winograd")
        g = fastconv.conv2d_backward(gy, x, w, padding=padding, groups=groups, backend="winograd")
    assert_close(y, want[0])
    assert_close(g.input, want[1])
    assert_close(g.weight, want[2])
    with pytest.raises(ValueError, match="winograd.*7x7 kernels .* at stride 1 only"):
        fastconv.conv2d(x, w, padding=1, stride=2, groups=groups, backend="winograd")
    with pytest.raises(ValueError, match="winograd.*depthwise"):
        fastconv.conv2d(x, np.ones((6, 1, 3, 3)), groups=6, backend="winograd")


# --------------------------------------------------------------------------- error bounds

F4_BOUND = 16  # F(4x4)'s documented bound: relative RMS error at most 16x a direct sum's (README)


def _exact(x, w, padding):
    """The convolution in a wider type: float64 for float32 data, long double for float64."""
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    xp = np.pad(x.astype(wide), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))
    wd = w.astype(wide)
    out = 0
    for ky in range(w.shape[2]):
        for kx in range(w.shape[3]):  # tensordot: long double has no BLAS, einsum would be slower
            out = out + np.tensordot(wd[:, :, ky, kx], win[..., ky, kx], axes=([1], [1])).transpose(1, 0, 2, 3)
    return out


def _exact_gw(gy, x, padding, kernel=(3, 3)):
    """The weight gradient in a wider type, as ``_exact``."""
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    xp = np.pad(x.astype(wide), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xp, kernel, axis=(2, 3))  # (n, c, oh, ow, ky, kx)
    return np.tensordot(gy.astype(wide), win, axes=([0, 2, 3], [0, 2, 3]))


def _rel_rms(got, exact):
    d = got.astype(exact.dtype) - exact
    return float(np.sqrt(np.mean(d * d) / np.mean(exact * exact)))


def _error_inputs(kind, dtype, n, c, size, seed=0):
    """N(0,1) input and He-scaled weights; "range": each value also scaled by 10^U(-3, 3)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size))
    w = rng.standard_normal((c, c, 3, 3)) * np.sqrt(2 / (9 * c))
    if kind == "range":
        x *= 10.0 ** rng.uniform(-3, 3, x.shape)
        w *= 10.0 ** rng.uniform(-3, 3, w.shape)
    return x.astype(dtype), w.astype(dtype)


@pytest.mark.parametrize(("kind", "n", "c", "size"), [("normal", 2, 32, 16), ("range", 2, 32, 16),
                                                      ("normal", 1, 256, 12)])  # many channels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_within_documented_bounds(monkeypatch, kind, n, c, size, dtype):
    """API.md: "highest" within 2x a direct sum's relative RMS error (im2col: BLAS dot products of
    the same C*9 terms, in the same dtype), "high" within its documented bound; forward, input
    gradient (the same convolution with the flipped, transposed kernel) and weight gradient (its
    adjoint, where the register tiles run it: a sum over N*H*W pixels)."""
    monkeypatch.setattr(winograd, "_f4_pays", lambda geom, itemsize, split: True)  # "high": F(4x4) here too
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS", 1)
    x, w = _error_inputs(kind, dtype, n, c, size)
    gy = _error_inputs(kind, dtype, n, c, size, seed=1)[0]
    geom = Geometry.from_args(x.shape, w.shape, padding=1)
    assert winograd.algorithm(geom, dtype, "high") == "F(4x4,3x3)"
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    for what, run, direct, exact in [
            ("forward", lambda: winograd.forward(x, w, geom), im2col.forward(x, w, geom), _exact(x, w, 1)),
            ("grad_input", lambda: winograd.grad_input(x, w, geom), im2col.grad_input(x, w, geom), _exact(x, wt, 1)),
            ("grad_weight", lambda: winograd.grad_weight(gy, x, geom), im2col.grad_weight(gy, x, geom),
             _exact_gw(gy, x, 1))]:
        direct_error = _rel_rms(direct, exact)
        for level, bound in [("highest", 2), ("high", F4_BOUND)]:
            with precision(level):
                error = _rel_rms(run(), exact)
            assert error <= bound * direct_error, f"{what} {level}: {error:.3g} > {bound} x {direct_error:.3g}"


# ------------------------------------------------------------------- the transforms, against matrices

BT = {2: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
      4: np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                   [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])}
AT = {2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]]),
      4: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])}


def _tiles(x, m, pt, pl, tiles_h, tiles_w):
    """d[R, tc, c] = the (m+2) x (m+2) input tile of tile row R (over the batch), column tc."""
    a = m + 2
    canvas = np.zeros((x.shape[0], x.shape[1], tiles_h * m + 2 + 2 * a, tiles_w * m + 2 + 2 * a))
    canvas[:, :, a + pt:a + pt + x.shape[2], a + pl:a + pl + x.shape[3]] = x  # pt, pl may be negative
    return np.array([[canvas[n, :, a + tr * m:a + tr * m + a, a + tc * m:a + tc * m + a] for tc in range(tiles_w)]
                     for n in range(x.shape[0]) for tr in range(tiles_h)])


def _order(r0, r1, tiles_h, tiles_w, m, cuts):
    """``tile_order``'s (order, spans) for ``cuts`` = (cut_h, cut_w); row order where neither."""
    a, nt = m + 2, (r1 - r0) * tiles_w
    if not any(cuts):
        return np.empty(0, np.int64), np.empty((0, 4), np.int64)
    order, spans = np.full(nt, -1, np.int64), np.full((a * a, 4), -1, np.int64)
    _winograd_kernels.tile_order(r0, r1, tiles_h, tiles_w, m, *cuts, order, spans)
    return order, spans


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("tiles_h", "tiles_w", "r0", "r1"), [(4, 4, 0, 12), (4, 4, 3, 10), (1, 5, 0, 3), (3, 1, 1, 7)])
@pytest.mark.parametrize("cuts", [(True, True), (True, False), (False, True)])
def test_tile_order_spans_the_tiles_each_product_needs(m, tiles_h, tiles_w, r0, r1, cuts):
    """A permutation of the block's tiles; transform point xi's spans hold exactly the tiles that
    are not in an image's last row (where xi is in the alpha x alpha's last row and ``cut_h``)
    nor its last column (last column, ``cut_w``)."""
    a, nt = m + 2, (r1 - r0) * tiles_w
    order, spans = _order(r0, r1, tiles_h, tiles_w, m, cuts)
    assert sorted(order) == list(range(nt))
    where = {int(order[jj * tiles_w + tc]): ((r0 + jj) % tiles_h == tiles_h - 1, tc == tiles_w - 1)
             for jj in range(r1 - r0) for tc in range(tiles_w)}
    for i in range(a):
        for j in range(a):
            lo0, hi0, lo1, hi1 = spans[i * a + j]
            got = set(range(lo0, hi0)) | set(range(lo1, hi1))
            want = {t for t, (last_row, last_col) in where.items()
                    if not (cuts[0] and i == a - 1 and last_row) and not (cuts[1] and j == a - 1 and last_col)}
            assert got == want and hi0 - lo0 + hi1 - lo1 == len(want)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("size", "pt", "pl"), [((7, 7), 1, 1), ((9, 6), 0, 2), ((5, 11), 2, -1), ((1, 3), 2, 2),
                                               ((7, 40), 1, 1), ((4, 33), 0, 2), ((5, 31), 2, -1)])
@pytest.mark.parametrize(("r0", "r1"), [(0, None), (1, 3)])
@pytest.mark.parametrize("cuts", [(False, False), (True, True), (True, False), (False, True)])
def test_input_transform_is_bt_d_b(m, size, pt, pl, r0, r1, cuts):
    """Every tile, at the image's edges and a tile row's end (where the long loops' shift is fixed
    up), and blocks that start and end mid-image; in row order and in ``tile_order``'s. Rows of
    14-20 tiles: F(2x2) in row order runs them a row at a time in vectors (``_input_rows_vec``)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *size))
    a = m + 2
    tiles_h, tiles_w = -(-(size[0] + 2 * pt - 2) // m), -(-(size[1] + 2 * pl - 2) // m)
    r1 = 2 * tiles_h if r1 is None else min(r1, 2 * tiles_h)
    nt = (r1 - r0) * tiles_w
    v = np.full(a * a * 3 * nt, np.nan)
    s, wk = _winograd_kernels.transform_scratch(m, r1 - r0, tiles_w, 8)[1]
    s, wk = np.empty(s), np.empty(wk)
    order = _order(r0, r1, tiles_h, tiles_w, m, cuts)[0]
    _winograd_kernels._input_transform(x, 0, 1, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, 0, 3, order)  # channel 0
    _winograd_kernels._input_transform(x, 1, 2, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, 1, 3, order)  # 1, 2
    d = _tiles(x, m, pt, pl, tiles_h, tiles_w)[r0:r1]  # (rows, tc, c, a, a)
    want = np.einsum("ik,rtckl,jl->ijcrt", BT[m], d, BT[m]).reshape(a * a, 3, nt)
    if order.size:
        want[..., order] = want.copy()
    np.testing.assert_allclose(v, want.reshape(-1), rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "size", "pt", "pl"), [
    (2, (56, 56), 1, 1), (2, (13, 37), 0, 2), (2, (9, 60), 2, 0), (2, (20, 23), 1, -1),
    (4, (56, 56), 1, 1), (4, (13, 37), 0, 2), (4, (9, 90), 2, 0), (4, (20, 33), 1, -1), (4, (30, 30), 1, 1)])
def test_input_rows_in_vectors_give_the_gathered_bits(dtype, m, size, pt, pl):
    """F(2x2)'s and F(4x4)'s transforms a tile row at a time in vectors (rows of
    ``WIDE_ROW_TILES`` / ``WIDE_ROW_TILES_F4`` tiles or more, in row order) against the gathered
    one (which an order, here the identity, keeps): whole blocks, the last one again over the
    row's end, a row shorter than a block's lanes, padding on every side, blocks across images,
    channels in the middle of ``v``, points' planes apart by a gap."""
    x = np.random.default_rng(1).standard_normal((3, 5, *size)).astype(dtype)
    x[0, 1, 2, 3] = np.float32(1e30)  # ... where a float64 sum and a float32 one would round apart
    x[0, 1, 4, 3] = np.float32(1e-30)
    a2 = (m + 2) ** 2
    tiles_h, tiles_w = -(-(size[0] + 2 * pt - 2) // m), -(-(size[1] + 2 * pl - 2) // m)
    assert tiles_w >= (_winograd_kernels.WIDE_ROW_TILES if m == 2 else _winograd_kernels.WIDE_ROW_TILES_F4)
    for r0, r1 in ((0, 3 * tiles_h), (tiles_h - 1, tiles_h + 2)):
        nt = (r1 - r0) * tiles_w
        s, wk = _winograd_kernels.transform_scratch(m, r1 - r0, tiles_w, x.itemsize)[1]
        s, wk = np.empty(s, dtype), np.empty(wk)
        got, want = (np.full(a2 * (7 * nt + 3), np.nan, dtype) for _ in range(2))
        for v, order in ((got, np.empty(0, np.int64)), (want, np.arange(nt, dtype=np.int64))):
            _winograd_kernels._input_transform(x, 1, 3, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, 2, 7, order,
                                               7 * nt + 3)
        np.testing.assert_array_equal(got, want)
        planes = got.reshape(a2, 7 * nt + 3)
        assert np.isnan(planes[:, :7 * nt].reshape(a2, 7, nt)[:, [0, 1, 5, 6]]).all()  # others' places untouched
        assert np.isnan(planes[:, 7 * nt:]).all()  # and the gaps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "out"), [(2, (56, 56)), (2, (27, 27)), (2, (5, 40)), (2, (9, 21)), (2, (20, 33)),
                                        (2, (3, 63)), (2, (14, 14)), (2, (6, 13)), (4, (56, 56)), (4, (27, 27)),
                                        (4, (9, 30)), (4, (3, 63)), (4, (29, 31)), (4, (6, 61))])
def test_output_rows_in_vectors_give_the_bits_of_the_other_ways(dtype, m, out):
    """F(2x2)'s and F(4x4)'s output transforms a tile row at a time in vectors (rows of
    ``OUT_ROW_TILES`` / ``OUT_ROW_TILES_F4`` tiles or more, in row order) against the way an order
    (here the identity) keeps: whole blocks, the last again over the row's end or masked, last
    columns and rows cut by y's edge, with and without a bias, and the inf or NaN it reports;
    blocks across images; points' planes apart by a gap."""
    rng = np.random.default_rng(2)
    a2 = (m + 2) ** 2
    tiles_h, tiles_w = -(-out[0] // m), -(-out[1] // m)
    assert tiles_w >= (_winograd_kernels.OUT_ROW_TILES if m == 2 else _winograd_kernels.OUT_ROW_TILES_F4)
    for r0, r1 in ((0, 2 * tiles_h), (tiles_h - 1, tiles_h + 1)):
        nt = (r1 - r0) * tiles_w
        step = 3 * nt + 1
        mm = rng.standard_normal(a2 * step).astype(dtype)
        mm[5], mm[21] = np.finfo(dtype).max / 64, 3e-30  # sums that round apart in float32 and float64
        wk = np.empty(_winograd_kernels.transform_scratch(m, r1 - r0, tiles_w, 8)[1][1])
        for bias in (np.empty(0, dtype), rng.standard_normal(5).astype(dtype)):
            for bad in (False, True):
                mm[step] = np.inf if bad else 0.5  # point 1, channel 0, the first tile
                got, want = (np.full((2, 5, *out), np.nan, dtype) for _ in range(2))
                flags = [_winograd_kernels._output_transform(mm, 1, 3, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order,
                                                             step)
                         for y, order in ((got, np.empty(0, np.int64)), (want, np.arange(nt, dtype=np.int64)))]
                np.testing.assert_array_equal(got, want)
                assert flags[0] == flags[1] == bad


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("out", [(7, 7), (8, 5), (1, 2), (5, 99)])  # (5, 99): rows of STAGE_TILES or more
@pytest.mark.parametrize(("r0", "r1"), [(0, None), (1, 3)])
@pytest.mark.parametrize("ordered", [False, True])
def test_output_transform_is_at_m_a_cropped(m, out, r0, r1, ordered):
    """Both ways of writing y (staged, and a tile row at a time on wide outputs), from blocks that
    start and end mid-image; ``ordered``: the tiles in ``tile_order``'s order, the products
    outside its spans NaN (no pixel written reads them)."""
    rng = np.random.default_rng(1)
    a, n, kg = m + 2, 2, 3
    tiles_h, tiles_w = -(-out[0] // m), -(-out[1] // m)
    r1 = n * tiles_h if r1 is None else min(r1, n * tiles_h)
    mm = rng.standard_normal((a, a, kg, n * tiles_h, tiles_w))[:, :, :, r0:r1]
    bias = rng.standard_normal(kg + 1)
    y = np.full((n, kg + 1, *out), np.nan)
    wk = np.empty(_winograd_kernels.transform_scratch(m, r1 - r0, tiles_w, 8)[1][1])
    cuts = (out[0] % m != 0, out[1] % m != 0) if ordered else (False, False)
    order, spans = _order(r0, r1, tiles_h, tiles_w, m, cuts)
    flat = mm.reshape(a * a, kg, -1).copy()
    if order.size:
        flat[..., order] = flat.copy()
        for xi, (lo0, hi0, lo1, hi1) in enumerate(spans):
            keep = np.zeros(flat.shape[2], bool)
            keep[lo0:hi0] = keep[lo1:hi1] = True
            flat[xi][:, ~keep] = np.nan
    bad = _winograd_kernels._output_transform(flat.reshape(-1), 1, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk,
                                              order)
    tiles = np.full((kg, n * tiles_h, m, tiles_w, m), np.nan)
    tiles[:, r0:r1] = np.einsum("ik,klcrw,jl->criwj", AT[m], mm, AT[m])
    tiles = tiles.reshape(kg, n, tiles_h * m, tiles_w * m)
    want = tiles[:, :, :out[0], :out[1]].transpose(1, 0, 2, 3) + bias[1:, None, None]
    np.testing.assert_allclose(y[:, 1:], want, rtol=1e-13, atol=1e-12)  # NaN where no tile row of the block
    assert np.isnan(y[:, 0]).all() and not bad  # channels outside k0 .. k0 + kg untouched


G = {2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
     4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])}


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("out", [(7, 7), (8, 5), (1, 2), (6, 9)])
@pytest.mark.parametrize(("r0", "r1"), [(0, None), (1, 3)])
@pytest.mark.parametrize("ordered", [False, True])
def test_grad_output_transform_is_a_dy_at(m, out, r0, r1, ordered):
    """The output transform's adjoint: tiles cut by gy's edges read zeros past them. In
    ``tile_order``'s columns, each point's values outside its spans are zeros: the weight
    gradient's products skip them."""
    rng = np.random.default_rng(2)
    a, n, kg = m + 2, 2, 3
    tiles_h, tiles_w = -(-out[0] // m), -(-out[1] // m)
    r1 = n * tiles_h if r1 is None else min(r1, n * tiles_h)
    nt = (r1 - r0) * tiles_w
    order, spans = np.empty(0, np.int64), np.empty((0, 4), np.int64)
    if ordered:
        order, spans = np.empty(nt, np.int64), np.empty((a * a, 4), np.int64)
        _winograd_kernels.tile_order(r0, r1, tiles_h, tiles_w, m, out[0] % m != 0, out[1] % m != 0, order, spans)
    gy = rng.standard_normal((n, kg + 1, *out))
    dm = np.full(a * a * kg * nt, np.nan)
    wk = np.empty(_winograd_kernels.transform_scratch(m, r1 - r0, tiles_w, 8)[1][1])
    _winograd_kernels._grad_output_transform(gy, 1, kg, r0, r1, tiles_h, tiles_w, m, dm, wk, order)
    canvas = np.zeros((n, kg, tiles_h * m, tiles_w * m))
    canvas[:, :, :out[0], :out[1]] = gy[:, 1:]
    d = canvas.reshape(n, kg, tiles_h, m, tiles_w, m).transpose(0, 2, 4, 1, 3, 5)
    d = d.reshape(n * tiles_h, tiles_w, kg, m, m)  # (tile row over the batch, tc, k, r, q)
    want = np.einsum("ir,Rtkrq,jq->ijkRt", AT[m].T, d[r0:r1], AT[m].T).reshape(a * a, kg, nt)
    if ordered:
        want = want[..., np.argsort(order)]  # tile t in column order[t]
    np.testing.assert_allclose(dm, want.reshape(-1), rtol=1e-13, atol=1e-12)
    for xi, (s0, s1, s2, s3) in enumerate(spans):
        skipped = np.ones(nt, bool)
        skipped[s0:s1] = skipped[s2:s3] = False
        assert not dm.reshape(a * a, kg, nt)[xi][:, skipped].any()


@pytest.mark.parametrize("m", [2, 4])
def test_filter_grad_transform_is_gt_du_g_of_the_summed_slices(m):
    rng = np.random.default_rng(3)
    a, parts_n, groups, kg, cg = m + 2, 3, 2, 4, 5
    parts = rng.standard_normal((parts_n, groups, a * a, kg, cg))
    gw = np.full((groups * kg, cg, 3, 3), np.nan)
    assert not _winograd_kernels._filter_grad_transform(parts, m, 1, groups * kg, gw, 0)
    du = parts.sum(axis=0).reshape(groups, a, a, kg, cg)
    want = np.einsum("iy,gijkc,jx->gkcyx", G[m], du, G[m]).reshape(groups * kg, cg, 3, 3)
    np.testing.assert_allclose(gw[1:], want[1:], rtol=1e-13, atol=1e-12)
    assert np.isnan(gw[0]).all()  # rows outside r0 .. r1 untouched
    parts[1, 1, 0, 2, 3] = np.inf
    assert _winograd_kernels._filter_grad_transform(parts, m, 0, groups * kg, gw, 0)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("cg", [16, 31, 32, 40, 70])
def test_filter_grad_transform_in_float32_is_the_float64_one_rounded_once(m, cg):
    """In float32 a square of lanes of the 9 taps x channels is transposed in registers where a
    vector holds 9 taps (AVX-512), each filter's row stored over the last one's spare values, the
    row's last channels one by one: every value the float64 transform's, rounded once; rows outside
    r0 .. r1 untouched."""
    rng = np.random.default_rng(4)
    a, parts_n, groups, kg = m + 2, 2, 2, 3
    parts = rng.standard_normal((parts_n, groups, a * a, kg, cg)).astype(np.float32)
    wide_, got = (np.full((groups * kg, cg, 3, 3), np.nan, dt) for dt in (np.float64, np.float32))
    assert not _winograd_kernels._filter_grad_transform(parts, m, 1, groups * kg - 1, got, 0)
    assert not _winograd_kernels._filter_grad_transform(parts, m, 1, groups * kg - 1, wide_, 0)
    np.testing.assert_array_equal(got, wide_.astype(np.float32))
    assert np.isnan(got[0]).all() and np.isnan(got[-1]).all()


# --------------------------------------------------------------------------- memory and items

@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("pass_", ["forward", "grad_input", "grad_weight"])
@pytest.mark.parametrize("size", [40, 17])
def test_extra_memory_stays_under_budget(monkeypatch, budget, use_threads, pass_, level, threads, size):
    """Batch 16, 32 channels of 40x40: one block of all tiles would be 4-9x the input (~3.3 MiB);
    the weight gradient's slices hold 64-144 KiB of sums each. At 17x17 F(2x2) runs edge tiles,
    with their extra transformed filters."""
    use_threads(threads)
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS", 1)
    geom = Geometry.from_args((16, 32, size, size), (32, 32, 3, 3), padding=1)
    assert winograd._edges(2, geom.x_shape, (size, size), 1, 1) == (size % 2 == 1,) * 2
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    args = {"forward": (x, w), "grad_input": (gy, w), "grad_weight": (gy, x)}[pass_]
    limit = 512 * 2**10
    budget(limit)
    with precision(level):
        extra, got = extra_bytes(lambda: getattr(winograd, pass_)(*args, geom))
    assert extra <= limit, f"{pass_} {level}: {extra} bytes beyond the output, budget {limit}"
    assert_close(got, getattr(im2col, pass_)(*args, geom))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("pass_", ["forward", "grad_input", "grad_weight"])
def test_dilated_extra_memory_stays_under_budget(monkeypatch, budget, use_threads, pass_, threads):
    """The phases' copies (a quarter of the budget at most, a slice of the batch at a time) and
    the undilated calls' scratch within what the copies leave (``_workers.holding``): batch 16, 32
    channels of 40x40 at dilation 2, as four stacked phases of 20x20."""
    use_threads(threads)
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS", 1)
    geom = Geometry.from_args((16, 32, 40, 40), (32, 32, 3, 3), padding=2, dilation=2)
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    args = {"forward": (x, w), "grad_input": (gy, w), "grad_weight": (gy, x)}[pass_]
    limit = 2 * 2**20  # a fifth of the input: several slices of the batch
    budget(limit)
    extra, got = extra_bytes(lambda: getattr(winograd, pass_)(*args, geom))
    assert extra <= limit, f"{pass_}: {extra} bytes beyond the output, budget {limit}"
    assert_close(got, getattr(numba_jit, pass_)(*args, geom))


@pytest.mark.parametrize("item_tiles", [1, 9, 2**30])  # one tile row per item .. all rows in one
def test_item_sizes_agree(monkeypatch, item_tiles):
    geom, x, w, b, gy, _, _ = _case("large-tiles-41", np.float64)
    want = numba_jit.forward(x, w, geom, b), numba_jit.grad_input(gy, w, geom)
    monkeypatch.setattr(winograd, "ITEM_TILES", item_tiles)
    monkeypatch.setattr(winograd, "ITEM_BYTES", 2**40)
    for level in LEVELS:
        with precision(level):
            assert_close(winograd.forward(x, w, geom, b), want[0])
            assert_close(winograd.grad_input(gy, w, geom), want[1])


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filters_transformed_into_the_packed_layout(m, dtype):
    """The kernel transformed straight into the register tiles' packed layout holds the same bits
    as the transform then ``_pack_a``: two groups, output channels past whole panels (13), input
    channels over two reduction blocks (300), and a flipped, channel-swapped view (the input
    gradient's)."""
    rng = np.random.default_rng(4)
    a2 = (m + 2) ** 2
    for wv in (rng.standard_normal((2, 13, 300, 3, 3)).astype(dtype),
               rng.standard_normal((2, 300, 13, 3, 3)).astype(dtype).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]):
        groups, nr, ns = wv.shape[:3]
        u = np.empty((groups, a2, nr, ns), dtype)
        _winograd_kernels._filter_transform(wv, m, 0, groups * nr, u)
        want = np.empty((groups * a2, _gemm.packed_size(nr, ns)), dtype)
        for i in range(groups * a2):
            _gemm._pack_a(u.reshape(groups * a2, nr, ns)[i], want[i])
        got = np.full_like(want, np.nan)
        panels = -(-nr // _gemm.MR)
        _winograd_kernels._filter_transform_packed(wv, m, 0, 3, got, 0, 0, 3, 3)  # in two parts
        _winograd_kernels._filter_transform_packed(wv, m, 3, groups * panels, got, 0, 0, 3, 3)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("a2", [16, 36])
@pytest.mark.parametrize(("cs", "cd"), [(8, 8), (16, 40), (40, 16), (512, 512)])
def test_products_overwrite_only_input_slots_already_read(a2, cs, cd):
    """``_slots``: in the one buffer, product slot xi (from the start) overlaps no input slot from xi
    on (at the end), which ``_gemm.batch`` reads after it or while it writes xi; and the buffer is
    no larger than that needs: a2 + 1 slots where the channels are alike."""
    total = winograd._slots(a2, cs, cd)
    v0 = total - a2 * cs  # where the input's slots start
    assert all((xi + 1) * cd <= v0 + xi * cs for xi in range(a2))
    assert any((xi + 1) * cd == v0 + xi * cs for xi in range(a2))  # none of it spare
    assert cs != cd or total == (a2 + 1) * cs


@pytest.mark.parametrize("a2", [16, 36])
@pytest.mark.parametrize(("cs", "cd"), [(8, 8), (16, 40), (40, 16), (512, 512)])
@pytest.mark.parametrize(("nt", "itemsize"), [(224, 4), (7, 4), (64, 8)])
def test_planes_with_gaps_keep_the_products_off_unread_input(a2, cs, cd, nt, itemsize):
    """``_planes``: with a gap after every point's plane, product plane xi still ends before input
    plane xi starts (``_gemm.batch`` reads it while writing xi), both fit the buffer, and planes
    are no longer a multiple of 4 KiB apart."""
    total, vo, vstep, mstep = winograd._planes(a2, cs, cd, nt, itemsize)
    assert all(xi * mstep + cd * nt <= vo + xi * vstep for xi in range(a2))
    assert vo + a2 * vstep <= total and a2 * mstep <= total
    assert (vstep * itemsize) % 4096 and (mstep * itemsize) % 4096


def test_items_hold_whole_panels_where_the_threads_stay_even(use_threads):
    """Work items of the products hold whole panels of 32 tiles (float32) where one is near
    ITEM_TILES, unless that leaves one thread much more to do than an even cut would; without a
    panel (3-D, NumPy's products) the sizes still keep the threads' shares even."""
    use_threads(2)
    geom = Geometry.from_args((32, 512, 7, 7), (512, 512, 3, 3), padding=1)

    def plan(rows, tiles_w, panel):
        return winograd._plan(rows, tiles_w, 64, 0, geom, 4, panel=panel)[0]

    assert plan(128, 4, 32) == 64  # 7x7: two items of 256 tiles, one per thread
    assert plan(224, 7, 32) == 32  # 14x14: items of 224 tiles
    assert plan(160, 10, 32) == 32  # 20x20: 320 tiles
    assert plan(160, 10, 1) == 26  # no panels: busiest thread 82 rows (26, 26, 26, 4), not 92 (7 of 23)
    assert plan(100, 7, 32) == 25  # 32 rows would leave one thread 64 of 100 rows: 25 is even
    assert plan(7, 7, 32) == 4  # one image of 14x14: a share per thread, whatever the panels
    assert plan(30, 15, 32) == 15  # 480 tiles (q = 32 rows) is far from ITEM_TILES: no panels, 225 tiles


tiles_only = pytest.mark.skipif(not _gemm.TILES, reason="the register tiles run only on CPUs with AVX-512 or AVX2")


@tiles_only
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_channels_split_over_the_threads_gives_the_same_bits(monkeypatch, use_threads, dtype, threads):
    """Blocks of output channels over the whole batch (``_by_channels``) sum the same products in
    the same order as items of tiles: the same bits, at both tile sizes, with groups, output
    channels past whole panels, odd image sizes, cropped and padded edges, and the input
    gradient's flipped, channel-swapped kernel (a Fortran-ordered one too)."""
    use_threads(threads)
    rng = np.random.default_rng(6)
    ran = []
    real = winograd._by_channels
    monkeypatch.setattr(winograd, "_by_channels", lambda *a: ran.append(a[3]) or real(*a))
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 1)  # one panel a block: many blocks, a short last one
    def passes(geom, x, w, b, gy):  # the input gradient's kernel Fortran-ordered too
        return (*_forward_and_input_gradient(geom, x, w, b, gy), winograd.grad_input(gy, np.asfortranarray(w), geom))

    for geom, x, w, b, gy in _each_level(rng, dtype, [((3, 24, 9, 7), (20, 24, 3, 3), 1, 1),
                                                      ((2, 32, 6, 11), (44, 16, 3, 3), ((2, 0), (1, 3)), 2)]):
        by_channels = _alike_each_way(  # by channels, then by items
            lambda ratio: monkeypatch.setattr(winograd, "BY_CHANNELS_RATIO", ratio), (0.0, 2**60), passes,
            (geom, x, w, b, gy))
        assert_close(by_channels[0], numba_jit.forward(x, w, geom, b))
    assert len(ran) == 2 * 2 * 3 and all(kb == _gemm.MR for kb, _ in ran)


@tiles_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_item_that_waits_past_its_spin_for_the_kernel_gives_the_same_bits(monkeypatch, use_threads, dtype):
    """An item transforms its first group's input, then waits for the kernel's transform spinning
    in its compiled call (``KERNEL_SPIN_S``); past that it returns, waits asleep, and runs again
    without that input transform: the same bits either way, with groups (each later group's input
    transformed in the item), at both tile sizes, and for the input gradient."""
    use_threads(2)
    monkeypatch.setattr(winograd, "BY_CHANNELS_RATIO", 2**60)  # by items
    monkeypatch.setattr(winograd, "KERNEL_SPIN_S", 1e-4)

    class Late(winograd.Shared):
        def __init__(self, *args):
            super().__init__(*args)
            self.state[0] = -2**40  # the compiled wait never sees the parts finished; the Event does
    first_done = []
    real = _winograd_kernels.item
    monkeypatch.setattr(_winograd_kernels, "item", lambda *a: first_done.append(a[20]) or real(*a))
    rng = np.random.default_rng(12)
    for geom, x, w, b, gy in _each_level(rng, dtype, [((3, 16, 9, 7), (24, 16, 3, 3), 1, 1),
                                                      ((2, 32, 8, 11), (16, 16, 3, 3), ((2, 0), (1, 1)), 2)]):
        late = _alike_each_way(lambda shared: monkeypatch.setattr(winograd, "Shared", shared),
                               (Late, winograd.Shared), _forward_and_input_gradient, (geom, x, w, b, gy))
        assert_close(late[0], numba_jit.forward(x, w, geom, b))
    assert True in first_done and False in first_done  # called again after the wait, and not


@tiles_only
def test_the_transformed_input_by_channels_is_kept_between_calls(monkeypatch, use_threads):
    """``_by_channels``' transformed input comes from the calling thread's kept scratch, as the
    transformed kernel does: made afresh, its pages went back to the system after every call and
    were zeroed again at the next one's first touch. A second call gets the same memory, and a
    call on other data over the first call's values gives the same bits as a fresh process would."""
    use_threads(2)
    monkeypatch.setattr(winograd, "BY_CHANNELS_RATIO", 0.0)
    asked = []
    real = winograd.kept

    def recorded(name, *args, **kwargs):
        asked.append((name, real(name, *args, **kwargs)))
        return asked[-1][1]
    monkeypatch.setattr(winograd, "kept", recorded)
    rng = np.random.default_rng(11)
    geom = Geometry.from_args((2, 24, 9, 7), (20, 24, 3, 3), padding=1)
    xs = [rng.standard_normal(geom.x_shape).astype(np.float32) for _ in range(2)]
    w = rng.standard_normal(geom.w_shape).astype(np.float32)
    second = [winograd.forward(x, w, geom) for x in xs][1]
    inputs = [a for name, a in asked if name == "winograd-input"]
    assert len(inputs) == 2 and np.shares_memory(inputs[0], inputs[1])
    _workers.drop_kept()
    np.testing.assert_array_equal(winograd.forward(xs[1], w, geom), second)


@tiles_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_skipping_the_products_of_cropped_pixels_gives_the_same_bits(monkeypatch, use_threads, dtype):
    """Where m does not divide the output, the products that only cropped pixels read are skipped
    (``_cropped``, when it pays): the same bits as every product, by items and by channels, at
    both tile sizes, cut at the bottom, the right or both, with groups and the input gradient."""
    use_threads(2)
    rng = np.random.default_rng(7)
    monkeypatch.setattr(winograd, "_f4_pays", lambda geom, itemsize, split: True)
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 1)
    monkeypatch.setattr(winograd, "EDGE_TAPS", False)  # (their own test: below)
    skipped = []
    real = _winograd_kernels.tile_order
    monkeypatch.setattr(_winograd_kernels, "tile_order", lambda *a: skipped.append(a[5:7]) or real(*a))
    winograd._orders.cache_clear()  # kept between calls: made afresh here, through the spy
    winograd._cropped_rows.cache_clear()
    for geom, x, w, b, gy in _each_level(rng, dtype, [((3, 16, 7, 7), (16, 16, 3, 3), 1, 1),
                                                      ((2, 16, 9, 8), (24, 8, 3, 3), ((1, 0), (1, 1)), 2),
                                                      ((2, 16, 8, 7), (16, 16, 3, 3), 1, 1)]):
        for ratio in (0.0, 2**60):  # by channels, then by items
            monkeypatch.setattr(winograd, "BY_CHANNELS_RATIO", ratio)
            skipping = _alike_each_way(  # skip wherever cropped, then never
                lambda most: monkeypatch.setattr(winograd, "CROP_MAX_PANELS", most), (2**60, -1),
                _forward_and_input_gradient, (geom, x, w, b, gy))
            assert_close(skipping[0], numba_jit.forward(x, w, geom, b))
    assert {(True, True), (True, False), (False, True)} <= set(skipped)


@pytest.mark.parametrize("images", [2, 19])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("size", "pt", "pl", "cuts"), [
    ((7, 7), 1, 1, (True, True)), ((9, 8), 1, 0, (True, False)), ((8, 9), 0, 2, (False, True)),
    ((6, 6), 1, 1, (False, False)), ((5, 11), 2, -1, (True, True)), ((2, 3), 1, 1, (True, True))])
@pytest.mark.parametrize("m", [2, 4])
def test_input_by_images_in_lanes_gives_the_gathered_bits(m, dtype, size, pt, pl, cuts, images):
    """F(2x2)'s and F(4x4)'s input transform by images in lanes (``_input_lanes``, in
    ``tile_order``'s order with lanes) against the gathered one, tile for tile: padding on every
    side or none, more rows than the tiles read, a row of one tile and two, the last column's tiles
    in spans of their own, images from the block's second on, fewer images than a vector's lanes
    (masked) and more (whole vectors, the last one overlapping), channels in the middle of ``v``,
    points' planes apart by a gap; every column of the order once."""
    x = np.random.default_rng(1).standard_normal((images + 2, 5, *size)).astype(dtype)
    x[1, 1, 1, 1] = np.float32(1e30)  # ... where a float64 sum and a float32 one would round apart
    x[1, 1, -1, -1] = np.float32(1e-30)
    a2 = (m + 2) ** 2
    tiles_h, tiles_w = -(-(size[0] + 2 * pt - 2) // m), -(-(size[1] + 2 * pl - 2) // m)
    assert tiles_w < (_winograd_kernels.WIDE_ROW_TILES if m == 2 else _winograd_kernels.WIDE_ROW_TILES_F4)
    r0, r1 = tiles_h, (1 + images) * tiles_h
    nt = (r1 - r0) * tiles_w
    order = np.empty(nt, np.int64)
    _winograd_kernels.tile_order(r0, r1, tiles_h, tiles_w, m, *cuts, order, np.empty((a2, 4), np.int64), images)
    assert sorted(order) == list(range(nt))
    s, wk = _winograd_kernels.transform_scratch(m, r1 - r0, tiles_w, x.itemsize)[1]
    s, wk = np.empty(s, dtype), np.full(wk, np.nan)
    got, want = (np.full(a2 * (7 * nt + 3), np.nan, dtype) for _ in range(2))
    _winograd_kernels._input_transform(x, 1, 3, r0, r1, tiles_h, tiles_w, pt, pl, m, want, s, wk, 2, 7,
                                       np.arange(nt, dtype=np.int64), 7 * nt + 3)
    _winograd_kernels._input_transform(x, 1, 3, r0, r1, tiles_h, tiles_w, pt, pl, m, got, s, wk, 2, 7, order,
                                       7 * nt + 3, images)
    got, want = (v.reshape(a2, 7 * nt + 3) for v in (got, want))
    np.testing.assert_array_equal(got[:, :7 * nt].reshape(a2, 7, nt)[..., order],
                                  want[:, :7 * nt].reshape(a2, 7, nt))
    assert np.isnan(got[:, :7 * nt].reshape(a2, 7, nt)[:, [0, 1, 5, 6]]).all()  # others' places untouched
    assert np.isnan(got[:, 7 * nt:]).all()  # and the gaps


@tiles_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_items_of_whole_images_transform_their_input_in_lanes_to_the_same_bits(monkeypatch, use_threads, dtype):
    """Items of whole small images (``_lanes``) transform their input by images in lanes: the same
    bits as gathered, forward and input gradient, with and without cropped tiles and edge tiles,
    padding on every side, groups; the values a direct sum's."""
    use_threads(2)
    rng = np.random.default_rng(9)
    monkeypatch.setattr(winograd, "EDGE_FILTER_TILES", 0)  # edge tiles on these few images too
    monkeypatch.setattr(winograd, "BY_CHANNELS_RATIO", 2**60)  # by items
    used = []
    real = winograd._lanes
    monkeypatch.setattr(winograd, "_lanes", lambda *a, **k: used.append(real(*a, **k)) or used[-1])

    def lanes(on):
        monkeypatch.setattr(winograd, "INPUT_LANES", on)
        winograd._cropped_rows.cache_clear()
        winograd._orders.cache_clear()
    for geom, x, w, b, gy in _each_level(rng, dtype, [((4, 16, 7, 7), (16, 16, 3, 3), 1, 1),
                                                      ((4, 16, 9, 8), (24, 8, 3, 3), ((1, 0), (1, 1)), 2),
                                                      ((2, 24, 8, 9), (16, 24, 3, 3), ((0, 1), (2, 0)), 1),
                                                      ((4, 16, 6, 6), (16, 16, 3, 3), 1, 1)]):
        y, gx = _alike_each_way(lanes, (True, False), _forward_and_input_gradient, (geom, x, w, b, gy))
        assert_close(y, numba_jit.forward(x, w, geom, b))
        assert_close(gx, numba_jit.grad_input(gy, w, geom))
    assert any(used)


@tiles_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("by_channels", [False, True])
def test_a_vector_of_images_transforms_its_input_in_lanes_at_each_level(monkeypatch, use_threads, dtype,
                                                                        by_channels):
    """F(4x4) (``"high"``) takes the input transform by images in lanes from a vector's lanes of
    images, by items and by channels, and F(2x2) by channels too: the same bits as gathered,
    forward and input gradient, cropped tiles, padding on every side or none, groups; under a
    vector's lanes of images the gathered transform (masked lanes cost more than they save)."""
    use_threads(2)
    rng = np.random.default_rng(11)
    lanes = _gemm.VBITS // (8 * np.dtype(dtype).itemsize)
    monkeypatch.setattr(winograd, "BY_CHANNELS_RATIO", 0.0 if by_channels else 2**60)
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 1)  # blocks of one panel: several a thread
    monkeypatch.setattr(winograd, "_f4_pays", lambda geom, itemsize, split: True)  # "high": F(4x4) here too
    used = []
    real = winograd._lanes
    monkeypatch.setattr(winograd, "_lanes", lambda m, *a, **k: used.append((m, real(m, *a, **k))) or used[-1][1])

    def ways(on):
        for name in ("INPUT_LANES", "INPUT_LANES_F4", "BY_CHANNELS_LANES"):
            monkeypatch.setattr(winograd, name, on)
        winograd._cropped_rows.cache_clear()
        winograd._orders.cache_clear()
    for geom, x, w, b, gy in _each_level(rng, dtype, [((2 * lanes, 8, 7, 7), (8, 8, 3, 3), 1, 1),  # items: a thread's
                                                      ((lanes, 8, 9, 6), (16, 4, 3, 3), ((1, 0), (0, 1)), 2),
                                                      ((lanes - 1, 8, 7, 7), (8, 8, 3, 3), 1, 1)]):
        y, gx = _alike_each_way(ways, (True, False), _forward_and_input_gradient, (geom, x, w, b, gy))
        assert_close(y, numba_jit.forward(x, w, geom, b))
        assert_close(gx, numba_jit.grad_input(gy, w, geom))
    assert {m for m, got in used if got} == {2, 4}
    assert (4, 0) in used  # under a vector's lanes of images: gathered


@tiles_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_weight_gradient_transforms_whole_images_input_in_lanes(monkeypatch, use_threads, dtype):
    """The weight gradient's blocks of whole small images transform their input by images in lanes
    (``WEIGHT_LANES``), their output gradient's tiles and the products' spans in the same order:
    the sums over the tiles in another order, so other bits, as near a direct sum's either way;
    cropped tiles, padding on every side or none, groups, both levels."""
    use_threads(2)
    rng = np.random.default_rng(12)
    monkeypatch.setattr(winograd, "WEIGHT_MIN_CHANNELS", 1)  # on these few channels too
    used = []
    real = winograd._lanes
    monkeypatch.setattr(winograd, "_lanes", lambda m, *a, **k: used.append((m, real(m, *a, **k))) or used[-1][1])
    lanes = _gemm.VBITS // (8 * np.dtype(dtype).itemsize)
    for geom, x, _, _, gy in _each_level(rng, dtype, [((2 * lanes, 8, 7, 7), (8, 8, 3, 3), 1, 1),
                                                      ((6, 8, 9, 6), (16, 4, 3, 3), ((1, 0), (0, 1)), 2)]):
        want = numba_jit.grad_weight(gy, x, geom)
        for on in (True, False):
            monkeypatch.setattr(winograd, "WEIGHT_LANES", on)
            assert_close(winograd.grad_weight(gy, x, geom), want)
    assert any(got for m, got in used)


@tiles_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_tiles_give_the_reference_values_by_items_and_by_channels(monkeypatch, use_threads, dtype):
    """Edge tiles (``_edges``: the last tile row or column keeps one pixel, the padding covers the
    rest of its window) sum two products down that axis: the same bits by items and by channels,
    at the bottom, the right or both, with groups, for the input gradient too; against every
    product of those tiles, other values only in the edge tiles' pixels, and no further from a
    float64 sum."""
    use_threads(2)
    rng = np.random.default_rng(8)
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 1)
    monkeypatch.setattr(winograd, "EDGE_FILTER_TILES", 0)  # on these few images too
    errors = {True: [], False: []}
    # the edges of y and of gx (rows, columns), and whether the two sums differ there: not where the
    # padding covers the kept pixel's second tap too (gx's columns in the third: 2 after), where the
    # products at points 1 and 2 are of zeros either way
    for (x_shape, w_shape, padding, groups), lasts in [
            (((3, 16, 7, 7), (16, 16, 3, 3), 1, 1), ((True, True, True), (True, True, True))),
            (((2, 16, 9, 8), (24, 8, 3, 3), ((1, 1), (1, 0)), 2), ((True, False, True), (True, False, True))),
            (((2, 24, 8, 9), (16, 24, 3, 3), ((0, 1), (2, 0)), 1), ((True, False, True), (False, True, False))),
            (((2, 16, 8, 7), (16, 16, 3, 3), 1, 1), ((False, True, True), (False, True, True)))]:
        geom, x, w, b, gy = _arrays(rng, dtype, x_shape, w_shape, padding, groups)
        got = {}
        for edges in (True, False):
            monkeypatch.setattr(winograd, "EDGE_TAPS", edges)
            winograd._cropped_rows.cache_clear()
            got[edges] = _alike_each_way(  # by channels, then by items
                lambda ratio: monkeypatch.setattr(winograd, "BY_CHANNELS_RATIO", ratio), (0.0, 2**60),
                _forward_and_input_gradient, (geom, x, w, b, gy))
        want = _torch_results(x, w, b, gy, padding, groups)[:2]
        for y, y_all, y_want, (last_h, last_w, differs) in zip(got[True], got[False], want, lasts):
            assert_close(y, y_want.astype(dtype))
            h, w_ = y.shape[2] - last_h, y.shape[3] - last_w
            assert np.array_equal(y[..., :h, :w_], y_all[..., :h, :w_])
            assert np.array_equal(y, y_all) != differs
            for edges, value in ((True, y), (False, y_all)):
                errors[edges].append(np.sqrt(np.mean((value - y_want) ** 2) / np.mean(y_want ** 2)))
    assert np.mean(errors[True]) <= 1.05 * np.mean(errors[False])


@pytest.mark.parametrize(("in_hw", "out_hw", "pads", "edges"), [
    ((7, 7), (7, 7), (1, 1), (True, True)),  # "same": one pixel of the last tiles kept, padding past it
    ((9, 8), (9, 7), (1, 1), (True, False)),  # after the columns no padding: cropped only
    ((8, 7), (8, 7), (1, 1), (False, True)),  # even rows: whole tiles
    ((6, 9), (7, 9), (2, 0), (True, True)),  # padding after: 1 and 2
    ((5, 5), (3, 3), (0, 0), (False, False)),  # unpadded
    ((19, 19), (19, 19), (1, 1), (False, False)),  # 10 tiles a row: the transforms' row order pays more
])
def test_edge_tiles_where_the_padding_covers_their_window(in_hw, out_hw, pads, edges):
    many = winograd.EDGE_FILTERS * winograd.EDGE_FILTER_TILES  # products saved: at least one an image
    assert winograd._edges(2, (many, 8, *in_hw), out_hw, *pads) == edges
    assert winograd._edges(4, (many, 8, *in_hw), out_hw, *pads) == (False, False)  # F(2x2)'s only
    assert winograd._edges(2, (1, 8, *in_hw), out_hw, *pads) == (False, False)  # too few to pay for the filters


def test_edge_tiles_from_products_enough_to_pay_for_their_filters():
    """On 7x7 outputs an image saves 225 - 196 = 29 products (tiles at one point) with edge tiles."""
    least = -(-winograd.EDGE_FILTERS * winograd.EDGE_FILTER_TILES // 29)
    assert winograd._edges(2, (least, 8, 7, 7), (7, 7), 1, 1) == (True, True)
    assert winograd._edges(2, (least - 1, 8, 7, 7), (7, 7), 1, 1) == (False, False)


@pytest.mark.parametrize(("cuts", "edges", "products"), [
    ((True, True), (True, True), 14 * 14), ((True, True), (True, False), 14 * 15),
    ((True, True), (False, False), 15 * 15), ((False, True), (False, True), 16 * 14),
    ((False, False), (False, False), 16 * 16)])
def test_edge_tiles_take_two_products_down_their_edge(cuts, edges, products):
    """``_products_plan`` over two images of 4 x 4 tiles (7x7, 8x7 or 8x8 outputs): 4 + 4 + 4 + 2
    products down an edge axis, 4 + 4 + 4 + 3 down a cropped one, per image and channel pair; each
    tile's products run once or are zeroed (an edge tile's point 2), never both, only edge tiles'
    zeroed."""
    counts = _winograd_kernels.tile_counts(0, 8, 4, 4, *cuts)
    plan = winograd._products_plan(2, counts, cuts, edges)
    run, zeroed = np.zeros((16, 32), int), np.zeros((16, 32), int)
    for xi, entries in enumerate(plan):
        for a, j0, j1, j2, j3 in entries:
            if a != _gemm.UNUSED:
                (run if a >= 0 else zeroed)[xi, np.r_[j0:j1, j2:j3]] += 1
    assert run.max() <= 1 and zeroed.max() <= 1 and not (run & zeroed).any()
    assert run.sum() == 2 * products
    assert not zeroed[:, :counts[0]].any() and zeroed.any() == any(edges)


@pytest.mark.parametrize("m", [2, 4])
def test_tile_orders_kept_between_calls_are_those_of_any_first_row(m):
    """``_tile_spans`` keeps its orders by the rows' place in an image: for any tile rows r0 .. r1,
    what ``tile_order`` makes for them afresh."""
    tiles_h, tiles_w, out = 3, 2, (2 * m + 1, 2 * m - 1)  # both cut
    for r0 in range(7):
        for r1 in range(r0 + 1, r0 + 8):
            order, spans = winograd._tile_spans(m, r0, r1, tiles_h, tiles_w, out)
            fresh, fresh_spans = np.empty_like(order), np.empty_like(spans)
            _winograd_kernels.tile_order(r0, r1, tiles_h, tiles_w, m, True, True, fresh, fresh_spans)
            assert np.array_equal(order, fresh) and np.array_equal(spans, fresh_spans), (r0, r1)


@tiles_only
def test_output_channels_split_where_the_kernel_outweighs_the_input(monkeypatch, budget, use_threads):
    """``_channel_plan``: where the transformed kernel is BY_CHANNELS_RATIO times the batch's
    transformed input or more, whatever its size, in blocks of about BLOCK_BYTES (from
    LARGE_INPUT_BYTES of input on LARGE_BLOCK_BYTES, where the budget holds them) in whole rounds
    of the threads; not on one thread, nor with more input than BY_CHANNELS_MAX_BYTES, nor where
    the two do not fit the budget; and within the budget it is given."""
    use_threads(2)

    def plan(n, c, size, m=2):
        geom = Geometry.from_args((n, c, size, size), (c, c, 3, 3), padding=1)
        tiles_h = -(-size // m)
        return winograd._channel_plan(n * tiles_h, tiles_h, m, c, c, geom, 4)

    assert plan(32, 512, 7) is None  # F(2x2) C=512: 16 MiB of filters against 16 MiB of input
    assert plan(32, 256, 7) is None  # ... C=256: 4 MiB against 8 MiB
    assert plan(4, 384, 7) is not None and plan(2, 64, 7) is not None  # 9 MiB against 1.5; 256 KiB against 32
    # (the blocks are whole panels of MR output channels: 8 with AVX-512, 6 with AVX2)
    mr = _gemm.MR
    # ... against 4 MiB: 2 MiB blocks, 8 panels of 256 KiB (AVX2: 10 of 192 KiB), 8 blocks (9)
    assert plan(8, 512, 7) == ({8: 64, 6: 54}[mr], 2)
    kb, threads = plan(16, 512, 7, m=4)  # F(4x4): 36 MiB against 4.5 MiB of input (N=16)
    assert threads == 2 and kb == 24  # 2 MiB blocks: 3 panels of 590 KiB, 22 blocks (4 of 443 KiB)
    assert plan(32, 512, 7, m=4) == ({8: 128, 6: 132}[mr], 2)  # 9 MiB of input: 12 MiB blocks, 4 blocks
    assert plan(8, 1024, 10)[0] == {8: 176, 6: 174}[mr]  # F(2x2) C=1024: 64 MiB against 12.5 MiB, 6 blocks
    assert plan(16, 1024, 10) is None  # ... against 25 MiB: over BY_CHANNELS_MAX_BYTES
    budget(20 * 2**20)  # the 2 MiB blocks fit, the 12 MiB ones do not
    assert plan(32, 512, 7, m=4) == (24, 2)
    budget(None)
    assert plan(32, 64, 56, m=4) is None  # many tiles, few channels
    use_threads(1)
    assert plan(32, 512, 7, m=4) is None
    use_threads(2)
    budget(8 * 2**20)  # below the input's 9 MiB
    assert plan(32, 512, 7, m=4) is None
    geom = Geometry.from_args((1, 128, 8, 8), (128, 128, 3, 3), padding=1)  # 1 MiB of filters, 128 KiB of input
    x, w = (np.random.default_rng(7).standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape))
    limit = 2 * 2**20
    budget(limit)
    assert winograd._channel_plan(4, 4, 2, 128, 128, geom, 4) is not None
    extra, got = extra_bytes(lambda: winograd.forward(x, w, geom))
    assert extra <= limit, extra
    assert_close(got, numba_jit.forward(x, w, geom))


def test_busiest_thread_as_items_go_to_the_free_thread():
    """``_slowest`` in closed form equals handing items one by one to the least loaded thread."""
    rng = np.random.default_rng(5)
    for _ in range(3000):
        rows, size, threads = (int(v) for v in rng.integers(1, (400, 80, 6)))
        q = int(rng.choice([1, 2, 8, 32]))
        load = [0.0] * threads
        for r0 in range(0, rows, size):
            r = min(size, rows - r0)
            load[load.index(min(load))] += r * (winograd.PART_PANEL_COST if r % q else 1.0)
        assert winograd._slowest(rows, size, threads, q) == pytest.approx(max(load))


def _weight_products(monkeypatch, products):
    """The weight gradient's products on numba's register tiles (skipped without AVX-512) or on
    NumPy's (as without AVX-512); returns the name of the fewest channels they run from."""
    if products == "tiles":
        if not _gemm.WIDE:
            pytest.skip("the weight gradient's tiles run only on CPUs with AVX-512")
        return "WEIGHT_MIN_CHANNELS"
    monkeypatch.setattr(_gemm, "WIDE", False)
    return "WEIGHT_MIN_CHANNELS_BLAS"


@pytest.mark.parametrize("products", ["tiles", "numpy"])
@pytest.mark.parametrize("threads", [1, 3])
def test_weight_gradient_slices_blocks_and_repeats(monkeypatch, use_threads, threads, products):
    """Slices of a few tiles (each summing in blocks of one to nine tile rows) agree with one slice,
    and a call repeats to the bit whichever thread runs which slice; fewer channels than
    WEIGHT_MIN_CHANNELS (or WEIGHT_MIN_CHANNELS_BLAS) take numba's weight gradient, bit for bit."""
    least = _weight_products(monkeypatch, products)
    use_threads(threads)
    geom, x, w, b, gy, _, _ = _case("large-tiles-41", np.float32)
    want = numba_jit.grad_weight(gy, x, geom)
    assert min(geom.c_in_g, geom.c_out_g) < getattr(winograd, least)
    np.testing.assert_array_equal(winograd.grad_weight(gy, x, geom), want)
    monkeypatch.setattr(winograd, least, 1)
    one = winograd.grad_weight(gy, x, geom)
    assert_close(one, want)
    for slice_tiles, item_tiles in [(30, 1), (100, 200), (2**30, 9)]:
        monkeypatch.setattr(winograd, "SLICE_TILES", slice_tiles)
        monkeypatch.setattr(winograd, "GW_ITEM_TILES", item_tiles)
        got = winograd.grad_weight(gy, x, geom)
        assert_close(got, want)
        np.testing.assert_array_equal(winograd.grad_weight(gy, x, geom), got)


# ----------------------------------------------------------------------------- non-finite values

@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_reach_what_a_direct_sum_reaches(bad):
    """Winograd would spread them over whole tiles (inf - inf): the call reruns directly."""
    geom, x, w, b, gy, _, _ = _case("p1-odd", np.float32)
    x[1, 2, 3, 4] = bad
    w[0, 1, 2, 2] = bad
    for level in LEVELS:
        with precision(level):
            np.testing.assert_array_equal(winograd.forward(x, w, geom, b), numba_jit.forward(x, w, geom, b))
            np.testing.assert_array_equal(winograd.grad_input(gy, w, geom), numba_jit.grad_input(gy, w, geom))


@pytest.mark.parametrize("products", ["tiles", "numpy"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_gradients_rerun_directly(monkeypatch, bad, products):
    monkeypatch.setattr(winograd, _weight_products(monkeypatch, products), 1)
    geom, x, w, b, gy, _, _ = _case("p1-odd", np.float32)
    x[1, 2, 3, 4] = bad
    gy[0, 1, 2, 2] = -bad
    for level in LEVELS:
        with precision(level):
            np.testing.assert_array_equal(winograd.grad_weight(gy, x, geom), numba_jit.grad_weight(gy, x, geom))


def test_overflow_to_inf_reruns_directly():
    """Finite float32 inputs whose transformed tiles overflow (B^T d B adds up to 100 values of
    1e38 with signs that line up) while the direct sums, with small weights, stay finite."""
    geom, x, w, b, gy, _, _ = _case("large-tiles-41", np.float32)
    iy, ix = np.indices(geom.x_shape[2:])
    x[...] = np.float32(1e38) * np.where((iy // 2 + ix // 2) % 2, -1, 1)
    w = (w * np.float32(1e-3)).astype(np.float32)
    want = numba_jit.forward(x, w, geom, b)
    assert np.isfinite(want).all()
    for level in LEVELS:
        with precision(level):
            np.testing.assert_array_equal(winograd.forward(x, w, geom, b), want)


# -------------------------------------------------------------------- 3-D: each plane transformed once

# (x shape, w shape, kwargs): depth padding on one side, beyond the kernel, a depth stride (forward
# only runs natively then), and F(4x4)-sized planes; small planes, run natively here (the rule sends
# planes of fewer than ``NATIVE_3D_MIN_TILES`` tiles through the lift)
NATIVE_3D = {
    "k3-p1": ((2, 3, 5, 6, 7), (4, 3, 3, 3, 3), dict(padding=1)),
    "k2-asym": ((1, 4, 6, 9, 8), (5, 4, 2, 3, 3), dict(padding=((1, 0), (1, 1), (0, 2)))),
    "depth-stride-2": ((2, 3, 7, 5, 5), (2, 3, 3, 3, 3), dict(padding=(2, 1, 1), stride=(2, 1, 1))),
    "k2-large-planes": ((1, 2, 4, 44, 41), (3, 2, 2, 3, 3), dict(padding=(0, 1, 1))),
    "depth-pad-beyond": ((1, 2, 3, 6, 6), (3, 2, 3, 3, 3), dict(padding=(4, 0, 0))),
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", NATIVE_3D)
def test_3d_transforms_each_plane_once_and_matches(monkeypatch, name, level):
    x_shape, w_shape, kwargs = NATIVE_3D[name]
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    monkeypatch.setattr(winograd, "NATIVE_3D_MIN_TILES", 1)
    assert winograd._native_3d(geom, 8)
    rng = np.random.default_rng(3)
    x, w, gy = (rng.standard_normal(s) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    b = rng.standard_normal(geom.c_out)
    calls = []
    monkeypatch.setattr(winograd, "_forward_nd", lambda *a: calls.append("lifted"))  # never taken here
    with precision(level):
        got_y = winograd.forward(x, w, geom, b)
        assert_close(got_y, numba_jit.forward(x, w, geom, b))
        if geom.stride[0] == 1:
            assert_close(winograd.grad_input(gy, w, geom), numba_jit.grad_input(gy, w, geom))
    assert not calls


@pytest.mark.parametrize("q, want", [(-1, (1, 3)), (0, (0, 3)), (5, (0, 3)), (6, (0, 2)), (7, (0, 1)),
                                     (8, (0, 0)), (-3, (3, 3)), (-4, (3, 3))])
def test_3d_depth_taps_are_those_inside_the_input(q, want):
    """An output plane whose first tap reads input plane q (of 8), kernel 3 deep: the taps that
    read planes inside; none where all of them read the padding."""
    t0, t1 = winograd._depth_taps(q, 3, 8)
    assert (t0, t1) == want or (t0 == t1 and want[0] == want[1])


# channels enough for the register tiles (the few-channel cases above run NumPy's products):
# depth padding on both sides, beyond the kernel (planes of bias alone), at a depth stride, one plane
NATIVE_3D_TILES = {
    "k3-p1": ((2, 8, 4, 6, 6), (16, 8, 3, 3, 3), dict(padding=1)),
    "one-plane": ((1, 16, 1, 6, 5), (8, 16, 3, 3, 3), dict(padding=1)),
    "pad-beyond": ((1, 8, 2, 6, 6), (8, 8, 3, 3, 3), dict(padding=(4, 1, 1))),
    "depth-stride-2": ((2, 8, 5, 6, 6), (8, 8, 3, 3, 3), dict(padding=(2, 1, 1), stride=(2, 1, 1))),
}


@pytest.mark.skipif(not _gemm.TILES, reason="the register tiles run only on CPUs with AVX-512 or AVX2")
@pytest.mark.parametrize("name", NATIVE_3D_TILES)
def test_3d_products_leave_out_the_depth_padding(monkeypatch, name):
    """An output plane's products run over its depth taps that read the input only: the same bits
    as over all of them (the rest multiply zero planes), and as numba's within the tolerance."""
    x_shape, w_shape, kwargs = NATIVE_3D_TILES[name]
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    monkeypatch.setattr(winograd, "NATIVE_3D_MIN_TILES", 1)
    assert winograd._native_3d(geom, 4) and winograd._on_tiles(8, 8)
    rng = np.random.default_rng(6)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    b = rng.standard_normal(geom.c_out).astype(np.float32)
    taps = []
    real = winograd._depth_taps
    monkeypatch.setattr(winograd, "_depth_taps", lambda *a: taps.append(real(*a)) or real(*a))
    y = winograd.forward(x, w, geom, b)
    gx = winograd.grad_input(gy, w, geom) if geom.stride[0] == 1 else None
    assert any(t != (0, 3) for t in taps)  # some planes left taps out
    assert_close(y, numba_jit.forward(x, w, geom, b))
    monkeypatch.setattr(winograd, "_depth_taps", lambda q, kd, d_in: (0, kd))
    np.testing.assert_array_equal(y, winograd.forward(x, w, geom, b))
    if gx is not None:
        assert_close(gx, numba_jit.grad_input(gy, w, geom))
        np.testing.assert_array_equal(gx, winograd.grad_input(gy, w, geom))


@pytest.mark.parametrize("channels", [2, 8])  # NumPy's products, the register tiles
def test_3d_non_finite_weight_at_a_padding_tap_is_nan_as_in_the_reference(monkeypatch, channels):
    """A non-finite weight at a depth tap that reads only the padding (one input plane) makes NaN
    in its output channel, as the reference's inf * 0: the products keep every tap then."""
    monkeypatch.setattr(winograd, "NATIVE_3D_MIN_TILES", 1)
    geom = Geometry.from_args((1, channels, 1, 6, 6), (channels, channels, 3, 3, 3), padding=1)
    assert winograd._native_3d(geom, 8)
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(geom.x_shape), rng.standard_normal(geom.w_shape)
    w[1, 0, 0, 1, 1] = np.inf
    got, want = winograd.forward(x, w, geom), fastconv.conv3d(x, w, padding=1, backend="reference")
    assert np.isnan(want[0, 1]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert_close(got[0, [0] + list(range(2, channels))], want[0, [0] + list(range(2, channels))])


@pytest.mark.parametrize("geom, native", [
    (Geometry.from_args((2, 8, 4, 16, 16), (8, 8, 3, 3, 3), padding=1), True),  # 64 F(2x2) tiles a plane
    (Geometry.from_args((2, 8, 4, 15, 14), (8, 8, 3, 3, 3), padding=1), False),  # 56
    (Geometry.from_args((2, 8, 4, 44, 41), (8, 8, 1, 3, 3), padding=(0, 1, 1)), False)])  # 1x3x3
def test_3d_small_planes_and_flat_kernels_take_the_lift(geom, native):
    """``_convolve_3d``'s products are one plane's tiles wide: small planes, and kernels one plane
    deep (which the lift copies once too), run the lift's 2-D call over every plane at once."""
    assert winograd._native_3d(geom, 4) is native


def test_3d_non_finite_values_rerun_directly_and_groups_take_the_lift(monkeypatch):
    monkeypatch.setattr(winograd, "NATIVE_3D_MIN_TILES", 1)
    geom = Geometry.from_args((1, 2, 3, 6, 6), (2, 2, 3, 3, 3), padding=1)
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(geom.x_shape), rng.standard_normal(geom.w_shape)
    x[0, 1, 1, 2, 3] = np.inf
    np.testing.assert_array_equal(winograd.forward(x, w, geom), numba_jit.forward(x, w, geom))
    grouped = Geometry.from_args((1, 4, 3, 6, 6), (4, 2, 3, 3, 3), padding=1, groups=2)
    assert not winograd._native_3d(grouped, 8)
    x, w = rng.standard_normal(grouped.x_shape), rng.standard_normal(grouped.w_shape)
    assert_close(winograd.forward(x, w, grouped), numba_jit.forward(x, w, grouped))


@pytest.mark.parametrize("threads", [1, 3])
def test_3d_extra_memory_stays_under_budget(budget, use_threads, threads):
    """The transposed copies of input and output (1.6 MiB each) and each thread's block of
    transformed planes, against an 8 MiB budget; a 2 MiB one sends the call through the lift."""
    use_threads(threads)
    geom = Geometry.from_args((2, 16, 8, 40, 40), (16, 16, 3, 3, 3), padding=1)
    rng = np.random.default_rng(5)
    x, w = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape))
    limit = 8 * 2**20
    budget(limit)
    assert winograd._native_3d(geom, 4)
    extra, got = extra_bytes(lambda: winograd.forward(x, w, geom))
    assert extra <= limit, f"{extra} bytes beyond the output, budget {limit}"
    assert_close(got, numba_jit.forward(x, w, geom))
    budget(2 * 2**20)
    assert not winograd._native_3d(geom, 4)


def test_warmup_compiles_what_a_first_call_runs():
    """After ``warmup``, a call on channels enough for the register tiles compiles nothing more (a
    first call at 64 channels once compiled their kernels for 1.7 s). In a new process: a kernel
    loaded from the on-disk cache also adds a signature to its dispatcher."""
    import subprocess
    import sys

    code = """if True:
        import numpy as np, fastconv
        from fastconv.backends import _numba_gemm, _winograd_kernels, winograd
        def compiled():
            return {(m.__name__, n): len(f.signatures) for m in (_numba_gemm, _winograd_kernels)
                    for n, f in vars(m).items() if hasattr(f, "signatures")}
        winograd.warmup(np.float32)
        before = compiled()
        x, w = np.ones((2, 16, 9, 9), np.float32), np.ones((16, 16, 3, 3), np.float32)
        for level in ("highest", "high"):
            with fastconv.precision(level):
                y = fastconv.conv2d(x, w, padding=1, backend="winograd")
                fastconv.conv2d_backward(y, x, w, padding=1, backend="winograd")
                if _numba_gemm.TILES:  # kernels past 3x3: their blocks' products
                    w5 = np.ones((16, 16, 5, 5), np.float32)
                    y = fastconv.conv2d(x, w5, padding=2, backend="winograd")
                    fastconv.conv2d_backward(y, x, w5, padding=2, backend="winograd")
                    from fastconv.geometry import Geometry  # (and its weight gradient's blocks)
                    winograd._grad_weight_large(y, x, Geometry.from_args(x.shape, w5.shape, padding=2))
        print({k: (before.get(k, 0), v) for k, v in compiled().items() if v != before.get(k, 0)})
    """
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "{}", run.stdout


# ----------------------------------------------------------------- kernels past 3x3, in 3x3 blocks

# (x shape, w shape, padding, groups): 5x5 and 7x7, mixed 5x3 and 3x7, odd sizes, per-side padding
# (beyond the kernel's reach: the input gradient cropped), groups, one pixel, and batches of one,
# two and three images (by channels, by images, by channels again: ``_large_plan``)
LARGE = {
    "5x5-odd": ((2, 4, 9, 11), (6, 4, 5, 5), 2, 1),
    "7x7-valid-one": ((1, 5, 13, 12), (3, 5, 7, 7), 0, 1),
    "5x3-asym-grouped": ((3, 6, 8, 7), (4, 3, 5, 3), ((3, 1), (0, 2)), 2),
    "3x7-pad-beyond-reach": ((2, 5, 10, 9), (3, 5, 3, 7), ((0, 4), (8, 0)), 1),
    "7x7-one-pixel": ((1, 3, 1, 1), (2, 3, 7, 7), 3, 1),
    "5x5-many-channels": ((3, 24, 12, 12), (40, 24, 5, 5), 2, 1),
}
large_tiles = pytest.mark.skipif(not _gemm.TILES, reason="kernels past 3x3 run on the register tiles only")


@large_tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", LARGE)
def test_large_kernels_match_torch_the_same_bits_each_way(monkeypatch, use_threads, name, dtype):
    """Forward and input gradient by items of images and by blocks of output channels (the same
    bits, at both levels), against torch; the weight gradient numba's; the inputs untouched."""
    use_threads(2)
    x_shape, w_shape, padding, groups = LARGE[name]
    geom, x, w, b, gy = _arrays(np.random.default_rng(3), dtype, x_shape, w_shape, padding, groups)
    assert winograd.algorithm(geom, dtype, "highest") == f"F(2x2,{w_shape[2]}x{w_shape[3]}) in 3x3 blocks"
    saved = [a.copy() for a in (x, w, b, gy)]
    want = _torch_results(x, w, b, gy, padding, groups)
    for level in LEVELS:
        with precision(level):
            got = _alike_each_way(lambda way: monkeypatch.setattr(winograd, "LARGE_BY_CHANNELS", way),
                                  (None, True, False), _forward_and_input_gradient, (geom, x, w, b, gy))
            got = (*got, winograd.grad_weight(gy, x, geom))
        for what, g, ref in zip(("y", "gx", "gw"), got, want):
            assert g.dtype == dtype and g.flags.c_contiguous and g.shape == ref.shape, what
            assert_close(g, ref, what=f"{name} {level} {what}")
    assert all(np.array_equal(a, s) for a, s in zip((x, w, b, gy), saved)), "an input was modified"


@large_tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", LARGE)
def test_large_kernel_weight_gradient_by_blocks_matches_torch(monkeypatch, use_threads, name, dtype):
    """The weight gradient by the blocks' adjoint (``_grad_weight_large``, taken here whatever the
    channels) on 1 to 3 threads (slices of whole images: 1 to 3 of them), against torch."""
    monkeypatch.setattr(winograd, "LARGE_WEIGHT_MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "LARGE_WEIGHT_MIN_WORK", 0)
    x_shape, w_shape, padding, groups = LARGE[name]
    geom, x, w, b, gy = _arrays(np.random.default_rng(3), dtype, x_shape, w_shape, padding, groups)
    assert winograd._winograd_weight(geom, x.itemsize) == winograd.large_blocks(geom)
    want = _torch_results(x, w, b, gy, padding, groups)[2]
    saved = [a.copy() for a in (x, gy)]
    for threads in (1, 2, 3):
        use_threads(threads)
        got = winograd._grad_weight_large(gy, x, geom)
        assert got.dtype == dtype and got.flags.c_contiguous and got.shape == want.shape
        assert_close(got, want, what=f"{name} on {threads} threads")
    assert all(np.array_equal(a, s) for a, s in zip((x, gy), saved)), "an input was modified"


@large_tiles
@pytest.mark.parametrize("threads", [1, 3])
def test_large_kernel_weight_gradient_runs_within_the_budget_or_leaves_it_to_numba(budget, use_threads, threads):
    """Slices of whole images, each summing its own sums (64 x 16 x 16 values at 5x5), in blocks of
    images whose transforms fit; where one image of one thread does not fit, numba's runs."""
    use_threads(threads)
    geom = Geometry.from_args((6, 16, 24, 24), (16, 16, 5, 5), padding=2)
    rng = np.random.default_rng(0)
    x, gy = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.y_shape))
    want = numba_jit.grad_weight(gy, x, geom)
    for limit in (1 * 2**20, 3 * 2**20):
        budget(limit)
        extra, got = extra_bytes(lambda: winograd._grad_weight_large(gy, x, geom))
        assert extra <= limit, f"{extra} bytes beyond the result, budget {limit}"
        assert_close(got, want)
    budget(128 * 2**10)
    assert winograd._grad_weight_large(gy, x, geom) is None


@large_tiles
def test_large_kernel_weight_gradient_of_non_finite_values_reruns_directly(monkeypatch):
    monkeypatch.setattr(winograd, "LARGE_WEIGHT_MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "LARGE_WEIGHT_MIN_WORK", 0)
    geom, x, w, b, gy = _arrays(np.random.default_rng(2), np.float32, (2, 8, 9, 9), (8, 8, 5, 5), 2, 1)
    x[0, 3, 4, 4] = np.inf
    assert winograd._grad_weight_large(gy, x, geom) is None
    np.testing.assert_array_equal(np.isnan(winograd.grad_weight(gy, x, geom)),
                                  np.isnan(numba_jit.grad_weight(gy, x, geom)))


@large_tiles
@pytest.mark.parametrize(("kind", "n", "c", "k"), [("normal", 2, 32, 5), ("range", 2, 32, 7), ("normal", 1, 192, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_kernel_error_within_a_direct_sums(kind, n, c, k, dtype):
    """Each 3x3 block's sum is F(2x2,3x3)'s: within 2x a direct sum's relative RMS error (im2col's
    BLAS dot products of the same C*k*k terms) at every level, forward and input gradient."""
    rng = np.random.default_rng(5)
    x = _error_inputs(kind, dtype, n, c, 14)[0]
    w = rng.standard_normal((c, c, k, k)) * np.sqrt(2 / (k * k * c))
    if kind == "range":
        w *= 10.0 ** rng.uniform(-3, 3, w.shape)
    w = w.astype(dtype)
    p = k // 2
    geom = Geometry.from_args(x.shape, w.shape, padding=p)
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    for what, run, direct, exact in [
            ("forward", lambda: winograd.forward(x, w, geom), im2col.forward(x, w, geom), _exact(x, w, p)),
            ("grad_input", lambda: winograd.grad_input(x, w, geom), im2col.grad_input(x, w, geom), _exact(x, wt, p))]:
        direct_error = _rel_rms(direct, exact)
        for level in LEVELS:
            with precision(level):
                error = _rel_rms(run(), exact)
            assert error <= 2 * direct_error, f"{what} {level}: {error:.3g} > 2 x {direct_error:.3g}"


@large_tiles
@pytest.mark.parametrize(("kind", "n", "c", "k"), [("normal", 4, 64, 5), ("range", 4, 64, 7), ("normal", 2, 128, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_kernel_weight_gradient_error_within_a_direct_sums(kind, n, c, k, dtype):
    """The blocks' weight gradient (each block's F(2x2,3x3) adjoint, the slices added in float64)
    within 2x a direct sum's relative RMS error (im2col's BLAS dot products over every pixel)."""
    x = _error_inputs(kind, dtype, n, c, 14)[0]
    gy = _error_inputs(kind, dtype, n, c, 14, seed=1)[0]
    geom = Geometry.from_args(x.shape, (c, c, k, k), padding=k // 2)
    exact = _exact_gw(gy, x, k // 2, (k, k))
    direct_error = _rel_rms(im2col.grad_weight(gy, x, geom), exact)
    error = _rel_rms(winograd._grad_weight_large(gy, x, geom), exact)
    assert error <= 2 * direct_error, f"{error:.3g} > 2 x {direct_error:.3g}"


@large_tiles
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("pass_", ["forward", "grad_input"])
@pytest.mark.parametrize("n", [1, 3, 16])
def test_large_kernel_extra_memory_stays_under_budget(monkeypatch, budget, use_threads, pass_, threads, n):
    """Batches of 1 and 3 images (by channels on 2+ threads, where the whole batch's transformed
    input fits) and 16 (by items), 16 channels of 24x24 under a 5x5 kernel: an image's item is
    16 x 32 x 13 x 13 values (346 KiB) beside 64 KiB of the blocks' transformed filters; at 768 KiB
    fewer threads run, at 2 MiB more images an item."""
    use_threads(threads)
    geom = Geometry.from_args((n, 16, 24, 24), (16, 16, 5, 5), padding=2)
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    args = {"forward": (x, w), "grad_input": (gy, w)}[pass_]
    for limit in (768 * 2**10, 2 * 2**20):
        budget(limit)
        assert winograd._large_plan(x, 16, 16, (24, 24), (5, 5), geom, 4) is not None  # its own path runs
        extra, got = extra_bytes(lambda: getattr(winograd, pass_)(*args, geom))
        assert extra <= limit, f"{pass_}: {extra} bytes beyond the output, budget {limit}"
        assert_close(got, getattr(numba_jit, pass_)(*args, geom))


@large_tiles
def test_large_kernel_past_the_budget_runs_numbas_loops(monkeypatch, budget):
    """Where one image's item does not fit the memory budget, numba's direct loops run the call."""
    geom, x, w, b, gy = _arrays(np.random.default_rng(4), np.float32, (2, 16, 24, 24), (16, 16, 5, 5), 2, 1)
    budget(128 * 2**10)
    assert winograd._large_plan(x, 16, 16, (24, 24), (5, 5), geom, 4) is None
    ran = []
    monkeypatch.setattr(numba_jit, "forward", lambda *args: ran.append(True) or np.zeros(geom.y_shape, np.float32))
    winograd.forward(x, w, geom, b)
    assert ran


@large_tiles
def test_large_kernel_non_finite_values_rerun_directly():
    """inf or NaN in a result reruns the call on numba's direct sums, as for 3x3 kernels."""
    geom, x, w, b, gy = _arrays(np.random.default_rng(2), np.float32, (2, 8, 9, 9), (8, 8, 5, 5), 2, 1)
    x[0, 3, 4, 4] = np.inf
    np.testing.assert_array_equal(np.isnan(winograd.forward(x, w, geom, b)), np.isnan(numba_jit.forward(x, w, geom, b)))
