"""numba's register-tiled matrix products for 1x1 kernels (``_numba_gemm``): which calls take them,
and every edge of their tiles (rows and columns past whole tiles, tiles across an image's end,
reductions of several blocks, slots, bias, non-finite values, 1-D and 3-D calls through the lift)
against a float64 (or longdouble) reference."""

import numpy as np
import pytest

import fastconv
from fastconv._results import _cpuinfo
from fastconv.backends import reference
from fastconv.geometry import Geometry
from tests.nrt_count import array_wrappers
from tests.quiet import ran_parts

pytest.importorskip("numba")
numba_jit = fastconv.backends.get("numba")
from fastconv.backends import _numba_gemm as gemm  # noqa: E402  (needs numba)

wide = pytest.mark.skipif(not gemm.WIDE, reason="the register tiles run only on CPUs with AVX-512")
tiles = pytest.mark.skipif(not gemm.TILES, reason="the register tiles need AVX-512, or AVX2 with FMA")
NO_SPANS = np.empty((0, 4), np.int64)  # every step


def _rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("kh, kw, padded, groups, c_in, c_out, takes", [
    (1, 1, False, 1, 256, 1024, True),
    (1, 1, False, 1, 8, 8, True),     # one tile's rows each side
    (1, 1, False, 1, 7, 64, False),   # fewer input channels than a tile's rows
    (1, 1, False, 1, 64, 5, False),
    (1, 1, True, 1, 64, 64, False),   # padded
    (1, 1, False, 2, 64, 64, False),  # groups
    (3, 1, False, 1, 64, 64, False),
    (1, 3, False, 1, 64, 64, False),
])
def test_which_calls_take_the_register_tiles(kh, kw, padded, groups, c_in, c_out, takes):
    assert gemm.applies(kh, kw, padded, groups, c_in, c_out) == (takes and gemm.WIDE)


@pytest.mark.skipif(not _cpuinfo().get("flags"), reason="no /proc/cpuinfo flags to compare with")
def test_the_tiles_run_where_the_cpu_has_avx512():
    """``WIDE`` as the kernel sees the CPU: a string test on LLVM's flattened feature list took
    "-avx512f" for AVX-512 and ran the 16-sum tiles on an AVX2 Zen 3."""
    flags = _cpuinfo()["flags"].split()
    assert gemm.WIDE == ("avx512f" in flags)
    # without AVX-512, AVX2's tiles (winograd's forward products): 6 rows x two 256-bit vectors,
    # 12 sums of its 16 registers
    assert gemm.TILES == ("avx512f" in flags or {"avx2", "fma"} <= set(flags))
    assert (gemm.MR, gemm.VBITS, gemm.tile_cols(4)) == ((8, 512, 32) if gemm.WIDE else (6, 256, 16))


# (x shape, c_out): channels past whole tiles of rows (MR) and columns (two vectors), images
# smaller than a tile's columns (so that tiles cross images' ends), reductions longer than KC
# (several blocks, the last one short; an A run block by block), pixels per image past KC (the
# weight gradient's blocks), and 1-D and 3-D calls
CASES = [
    pytest.param((2, 8, 3, 3), 8, {}, id="one-tile"),
    pytest.param((3, 17, 5, 7), 9, {}, id="ragged"),
    pytest.param((5, 40, 14, 14), 72, {}, id="r14"),
    # 49 columns an image: a whole panel, a half one (rows of whole tiles only) and one column
    # gathered with other images'
    pytest.param((5, 24, 7, 7), 16, {}, id="r7-half"),
    pytest.param((5, 24, 7, 7), 13, {}, id="r7-ragged"),
    # 99 columns an image: on three-vector panels (float32) a whole one, one of two vectors, one of
    # one and three columns gathered
    pytest.param((3, 24, 9, 11), 16, {}, id="r99-pieces"),
    pytest.param((2, 600, 4, 5), 20, {}, id="k-blocks"),
    # a packed A over COLS_L2_BYTES whose KC blocks fit COLS_BLOCK_BYTES (both dtypes): the forward
    # runs block by block over the panels
    pytest.param((3, 1100, 3, 5), 250, {}, id="a-blocks"),
    pytest.param((1, 24, 30, 31), 33, {}, id="p-blocks"),
    # images of fewer pixels than KC: the weight gradient's units of several whole images, with
    # rows and columns past whole tiles
    pytest.param((7, 19, 5, 5), 13, {}, id="image-units"),
    pytest.param((4, 300, 1, 1), 270, {}, id="1-pixel"),
    pytest.param((3, 20, 9, 10), 24, dict(stride=2), id="stride2"),  # the pixels it reads, copied
    pytest.param((2, 16, 7, 11), 8, dict(stride=(1, 3)), id="stride1x3"),
    pytest.param((3, 16, 70), 24, {}, id="1d"),
    pytest.param((2, 12, 3, 5, 6), 16, {}, id="3d"),
]
CONV = {3: (fastconv.conv1d, fastconv.conv1d_backward), 4: (fastconv.conv2d, fastconv.conv2d_backward),
        5: (fastconv.conv3d, fastconv.conv3d_backward)}


def _expected(x, w, bias, gy):
    """y, gx and gw of the unit-stride 1x1 convolution as products in longdouble."""
    n, c_in, c_out = x.shape[0], x.shape[1], w.shape[0]
    x3, w2, gy3 = (a.astype(np.longdouble) for a in (x.reshape(n, c_in, -1), w.reshape(c_out, c_in),
                                                     gy.reshape(n, c_out, -1)))
    y = np.einsum("kc,ncp->nkp", w2, x3) + bias.astype(np.longdouble)[:, None]
    gx = np.einsum("kc,nkp->ncp", w2, gy3)
    gw = np.einsum("nkp,ncp->kc", gy3, x3)
    return y.reshape(gy.shape), gx.reshape(x.shape), gw.reshape(w.shape)


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, c_out, kwargs", CASES)
def test_register_tiles_match_longdouble_products(monkeypatch, xs, c_out, kwargs, dtype):
    ws = (c_out, xs[1]) + (1,) * (len(xs) - 2)
    geom = Geometry.from_args(xs, ws, **kwargs)
    x, w, gy, bias = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, geom.y_shape, (c_out,))))
    strided = tuple(slice(None, None, s) for s in geom.stride)
    want_y, want_gx_read, want_gw = _expected(x[(..., *strided)], w, bias, gy)
    want_gx = np.zeros(xs, want_gx_read.dtype)
    want_gx[(..., *strided)] = want_gx_read  # the pixels never read get no gradient
    ran = ran_parts(monkeypatch)
    fwd, bwd = CONV[len(xs)]
    eps = np.finfo(dtype).eps
    for threads in (1, 2, 3):  # 3: slots that split columns and blocks unevenly
        with fastconv.threads(threads):
            got = fwd(x, w, bias, backend="numba", **kwargs), *bwd(gy, x, w, backend="numba", **kwargs)
        for g, want, reduction in zip(got, (want_y, want_gx, want_gw), (xs[1], c_out, gy.size // c_out)):
            # each element is one sum of `reduction` products: the error of a direct sum is within
            # ~ sqrt(reduction) * eps * sum|terms|; bounded here by reduction * eps * max|want| * 4
            scale = np.abs(want).max()
            assert np.abs(g - want).max() <= 4 * reduction * eps * scale + 1e-30, threads
    assert set(ran) == {gemm._cols_part, gemm._red_part}


@wide
@pytest.mark.parametrize("xs", [(6, 96, 20, 20), (40, 96, 7, 7)])  # 7x7: gw's units of several images
def test_every_slot_of_a_large_call_runs_in_pieces(monkeypatch, xs):
    # Over SERIAL_MAX_MACS: 2 threads x PIECES slots for the columns, 2 x RED_PIECES partial sums
    # of gw, added in slot order; the result has the same bits on every run with the same threads.
    geom = Geometry.from_args(xs, (72, 96, 1, 1))
    assert geom.macs > numba_jit.SERIAL_MAX_MACS
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    slots = ran_parts(monkeypatch, lambda part, kwargs: kwargs.get("pieces"))
    with fastconv.threads(2):
        first = numba_jit.forward(x, w, geom), numba_jit.grad_input(gy, w, geom), numba_jit.grad_weight(gy, x, geom)
        again = numba_jit.forward(x, w, geom), numba_jit.grad_input(gy, w, geom), numba_jit.grad_weight(gy, x, geom)
    assert slots[:3] == [gemm.PIECES, gemm.PIECES, gemm.RED_PIECES]
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    want = reference.forward(x, w, geom), reference.grad_input(gy, w, geom), reference.grad_weight(gy, x, geom)
    for got, ref, tol in zip(first, want, (2e-4, 2e-4, 2e-3)):
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_values_reach_only_their_own_sums(dtype):
    # An inf in x (and a NaN in gy) reaches exactly the outputs the reference gives inf or NaN;
    # the zero rows and columns that pad the last tiles never mix them into the others.
    geom = Geometry.from_args((3, 19, 5, 7), (13, 19, 1, 1))
    x, w, gy = (_rand(s, dtype, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    x[1, 4, 2, 3] = np.inf
    gy[2, 12, 4, 6] = np.nan
    w[12, 18] = -np.inf
    with np.errstate(invalid="ignore"):  # the reference's inf - inf
        pairs = ((numba_jit.forward(x, w, geom), reference.forward(x, w, geom)),
                 (numba_jit.grad_input(gy, w, geom), reference.grad_input(gy, w, geom)),
                 (numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom)))
    for got, want in pairs:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        fin = np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4, atol=1e-4)


@wide
def test_the_register_tiles_leave_their_inputs_alone_and_allocate_nothing_when_warm():
    geom = Geometry.from_args((4, 64, 16, 16), (96, 64, 1, 1))
    assert geom.macs >= numba_jit.SERIAL_MAX_MACS
    x, w, gy, bias = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape,
                                                                       (96,))))
    copies = [a.copy() for a in (x, w, gy, bias)]
    calls = ((numba_jit.forward, (x, w, geom, bias)), (numba_jit.grad_input, (gy, w, geom)),
             (numba_jit.grad_weight, (gy, x, geom)))
    with fastconv.threads(2):
        for fn, args in calls:
            fn(*args)  # warm: compiled, workspaces grown
        counts = array_wrappers(calls)
    # only the wrappers of the kernels' array arguments: 6 per call of prepare and of each of the
    # 2 x PIECES column slots; 5 per weight-gradient slot (2 x RED_PIECES) and for the finish
    assert counts == [6 * (1 + 2 * gemm.PIECES), 6 * (1 + 2 * gemm.PIECES), 5 * (2 * gemm.RED_PIECES + 1)]
    for a, b in zip((x, w, gy, bias), copies):
        assert np.array_equal(a, b)


@wide
def test_the_scratch_of_the_register_tiles_is_small():
    # The columns' scratch: the packed weight, the bias and per slot a B panel and a tile (KiB),
    # and its panels (ints, a few KiB); the weight gradient's: a block of x per slot and the
    # partial sums (one gw per extra slot).
    m, k, slots = 1024, 256, 8
    for columns, p_img in ((32 * 196, 196), (32 * 49, 49), (3136, 3136), (64, 1)):
        nfloat, nint = gemm.cols_scratch(m, k, slots, 4, columns, p_img)
        assert nfloat * 4 <= m * k * 4 + 64 * 1024 * slots and nint * 8 <= 8 * 1024 * slots
    nfloat, nint = gemm.red_scratch(m, k, slots, 4)
    assert nint == 0 and nfloat * 4 <= (slots - 1) * m * k * 4 + 300 * 1024 * slots


_EVERY = np.empty((0, 4), np.int64)  # no spans: every column


def _plan(spans):
    """``gemm.batch``'s plan of product i over the columns ``spans[i]`` (two ranges) with A_i."""
    plan = np.zeros((len(spans), gemm.PLAN_ENTRIES, 5), np.int64)
    plan[..., 0] = gemm.UNUSED
    for i, span in enumerate(spans):
        plan[i, 0] = (i, *span)
    return plan


def _batched(a, b, spans=_EVERY, plan=None):
    """``gemm.batch`` of a[i] @ b[i] (A packed, B contiguous) into NaNs: the spans' columns only,
    or all of them; or by ``plan``, any of a's matrices for any product of b's."""
    (count, m, k), p = a.shape, b.shape[2]
    packed = np.empty((count, gemm.packed_size(m, k)), a.dtype)
    for i in range(count):
        gemm._pack_a(a[i], packed[i])
    c = np.full((len(b), m, p), np.nan, a.dtype)
    scratch = np.empty(gemm.batch_scratch(m, a.itemsize), a.dtype)
    plan = (_plan(spans) if len(spans) else gemm.NO_PLAN) if plan is None else plan
    gemm.batch(packed, m, b.reshape(-1), c.reshape(-1), k, p, scratch, plan, k * p)
    return c


def _assert_only_spans(part, every, spans):
    """``part`` holds ``every``'s bits in the spans' columns and NaN elsewhere."""
    for i, (lo0, hi0, lo1, hi1) in enumerate(spans):
        cols = np.r_[lo0:hi0, lo1:hi1]
        assert np.array_equal(part[i][:, cols], every[i][:, cols])
        assert np.isnan(np.delete(part[i], cols, axis=1)).all()


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_products_match_longdouble(dtype):
    # winograd's products: one per transform point, each A packed once per call
    a, b = _rand((16, 20, 300), dtype, 0), _rand((16, 300, 45), dtype, 1)  # 300: two reduction blocks
    c = _batched(a, b)
    want = np.matmul(a.astype(np.longdouble), b.astype(np.longdouble))
    assert np.abs(c - want).max() <= 4 * 300 * np.finfo(dtype).eps * np.abs(want).max()
    # only the spans' columns (two ranges, either empty, starting mid-panel), the others untouched
    spans = np.array([[0, 45, 0, 0], [3, 40, 0, 0], [0, 10, 20, 45], [0, 0, 7, 9]] * 4, np.int64)
    _assert_only_spans(_batched(a, b, spans), c, spans)


@wide
@pytest.mark.parametrize("s0, s1", [(0, 700), (100, 700), (0, 300), (256, 512), (300, 600), (5, 6), (40, 40)])
def test_batched_products_over_a_range_of_steps(s0, s1):
    """``batch_steps``: steps s0 .. s1 of the reduction (winograd's 3-D products without the depth's
    padding), A packed for all 700 (blocks of ``KC``: ranges starting and ending mid-block): the
    same bits as the whole products with B zero past them; nothing at all where the range is empty."""
    a, b = _rand((3, 20, 700), np.float32, 10), _rand((3, 700, 45), np.float32, 11)
    zeroed = b.copy()
    zeroed[:, :s0] = zeroed[:, s1:] = 0
    want = _batched(a, zeroed)
    packed = np.empty((3, gemm.packed_size(20, 700)), np.float32)
    for i in range(3):
        gemm._pack_a(a[i], packed[i])
    c = np.full((3, 20, 45), np.nan, np.float32)
    scratch = np.empty(gemm.batch_scratch(20, 4), np.float32)
    gemm.batch_steps(packed, 20, b.reshape(-1), c.reshape(-1), 700, 45, scratch, 700 * 45, s0, s1)
    if s0 == s1:
        assert np.isnan(c).all()
    else:
        np.testing.assert_array_equal(c, want)


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_plan_runs_each_entry_with_its_own_matrix(dtype):
    """winograd's edge tiles: a plan's entries take any of ap2's matrices (more of them than
    products), zeros, or nothing, each over its two ranges, up to ``PLAN_ENTRIES`` a product: each
    column the bits of its own matrix's whole product, zeros, or left as it was."""
    a, b = _rand((5, 20, 300), dtype, 8), _rand((2, 300, 45), dtype, 9)
    whole = [_batched(a[j:j + 1], b[i:i + 1])[0] for i in range(2) for j in range(5)]  # A_j @ B_i at 5 i + j
    plan = _plan([[0, 10, 20, 24], [0, 0, 0, 0]])
    plan[0, 1:] = [[3, 10, 20, 30, 31], [gemm.ZERO, 24, 30, 31, 33], [4, 33, 45, 0, 0]]
    plan[1, 0] = (gemm.UNUSED, 0, 45, 0, 0)
    plan[1, 1:3] = [[4, 0, 1, 40, 45], [gemm.ZERO, 1, 3, 0, 0]]
    c = _batched(a, b, plan=plan)
    for (i, lo, hi), want in zip([(0, 0, 10), (0, 10, 20), (0, 20, 24), (0, 24, 30), (0, 30, 31), (0, 31, 33),
                                  (0, 33, 45), (1, 0, 1), (1, 1, 3), (1, 40, 45)],
                                 [0, 3, 0, None, 3, None, 4, 9, None, 9]):
        assert np.array_equal(c[i][:, lo:hi], 0 * c[i][:, lo:hi] if want is None else whole[want][:, lo:hi])
    assert np.isnan(c[1][:, 3:40]).all()


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_reading_a_where_it_lies_give_the_packed_bits(dtype):
    """``batch_rows`` (A's rows where they lie, whole tiles of rows) runs the same sums as ``batch``
    on A packed: every column count from one to past three panels (whole, half and masked tiles),
    over two reduction blocks, from rows of A inside a larger matrix (``lda`` past the row)."""
    m, k, lda = 3 * gemm.MR, 300, 310
    whole = _rand((m, lda), dtype, 6)
    a = whole[:, 5:5 + k]  # rows lda apart
    cols = 3 * gemm.batch_cols(np.dtype(dtype).itemsize) + 5
    scratch = np.empty(gemm.batch_scratch(m, np.dtype(dtype).itemsize), dtype)
    for p in range(1, cols + 1):
        b = _rand((k, p), dtype, p)
        c = np.full((m, p), np.nan, dtype)
        gemm.batch_rows(whole.reshape(-1)[5:], lda, m, b.reshape(-1), c.reshape(-1), k, p, scratch)
        assert np.array_equal(c, _batched(np.ascontiguousarray(a)[None], b[None])[0]), p


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [24, 20])  # whole panels of rows, then a part (whose tile takes a copy)
def test_spans_ending_on_half_panels_give_the_same_bits(dtype, m):
    """A span whose last columns are half a panel runs them on the half-width tile, straight into
    C (rows in whole panels), reading B only within the span (the last span ends at B's end): the
    same bits as the whole product, the columns outside left as they were."""
    half = gemm.tile_cols(np.dtype(dtype).itemsize) // 2
    p, k = 5 * half, 300  # two reduction blocks
    a, b = _rand((4, m, k), dtype, 2), _rand((4, k, p), dtype, 3)
    spans = np.array([[0, 3 * half, 4 * half, 5 * half], [0, half, 0, 0], [half, 2 * half, 3 * half, 5 * half],
                      [0, 0, 2 * half, 5 * half]], np.int64)
    _assert_only_spans(_batched(a, b, spans), _batched(a, b), spans)


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_span_width_gives_the_same_bits(dtype):
    """``batch`` cuts a span into tiles of ``BATCH_NV`` vectors, two for four vectors left, and
    runs the rest on the one-, two- or three-vector tiles, masked where ragged: every width from
    one column to past four panels, from B's first column and ending at its last, gives the whole
    product's bits in its columns and leaves the others."""
    lanes = gemm.batch_cols(np.dtype(dtype).itemsize) // gemm.BATCH_NV
    p, k, m = 4 * gemm.BATCH_NV * lanes + lanes + 3, 300, 20
    a, b = _rand((1, m, k), dtype, 4), _rand((1, k, p), dtype, 5)
    every = _batched(a, b)
    for width in range(1, p + 1):
        for spans in ([[0, width, 0, 0]], [[0, 0, p - width, p]]):
            spans = np.array(spans, np.int64)
            _assert_only_spans(_batched(a, b, spans), every, spans)


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "n", "p"), [(20, 45, 300), (8, 32, 256), (3, 70, 17), (9, 64, 40), (16, 100, 33),
                                           (8, 16, 20)])
def test_reduction_products_match_longdouble(m, n, p, dtype):
    # winograd's weight gradient: C[i] (+)= A[i] @ B[i].T, the reduction along both rows (two
    # blocks at 300), rows and columns past whole tiles (3 rows: fewer than a tile's), added or not;
    # columns in panels of three vectors, two and one (64: two of two; 100: two of three and one)
    a, b, c0 = _rand((16, m, p), dtype, 0), _rand((16, n, p), dtype, 1), _rand((16, m, n), dtype, 2)
    scratch = np.empty(gemm.red_batch_scratch(n, np.dtype(dtype).itemsize), dtype)
    wide_ = np.longdouble
    want = np.matmul(a.astype(wide_), b.astype(wide_).transpose(0, 2, 1))
    for add in (False, True):
        c = c0.copy()
        gemm.red_batch(a.reshape(-1), b.reshape(-1), c.reshape(-1), m, n, p, add, scratch, NO_SPANS)
        expect = want + c0 if add else want
        assert np.abs(c - expect).max() <= 4 * p * np.finfo(dtype).eps * np.abs(expect).max()


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "j0", "kc"), [(100, 0, 256), (100, 48, 37), (70, 64, 256), (40, 0, 3), (16, 0, 16)])
def test_b_panels_are_copied_exactly(dtype, n, j0, kc):
    # _red_unit's panels of B transposed: whole blocks of a vector's lanes in registers
    # (``_transpose``), the steps past them (kc not a multiple) and rows past n one by one
    lanes = gemm.VBITS // 8 // np.dtype(dtype).itemsize
    ldb, b0, base = kc + 5, 3, 7
    for nw in range(lanes, 3 * lanes + 1, lanes):
        b = _rand(b0 + n * ldb, dtype)
        bp = np.full(base + kc * nw + 4, np.nan, dtype)
        gemm._pack_panel(b, b0, ldb, n, j0, kc, bp, base, nw)
        rows = np.zeros((nw, kc), dtype)
        inside = min(nw, max(0, n - j0))
        rows[:inside] = b[b0:].reshape(n, ldb)[j0:j0 + inside, :kc]
        np.testing.assert_array_equal(bp[base:base + kc * nw].reshape(kc, nw), rows.T)
        assert np.isnan(bp[:base]).all() and np.isnan(bp[base + kc * nw:]).all()


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduction_products_only_over_their_spans(dtype):
    # winograd's weight gradient skips the steps (tiles) whose values at a transform point are
    # zeros: two ranges per product, across a block's end (KC), one empty, both empty
    m, n, p = 12, 40, 300
    a, b, c0 = _rand((5, m, p), dtype, 0), _rand((5, n, p), dtype, 1), _rand((5, m, n), dtype, 2)
    spans = np.array([[0, 300, 0, 0], [0, 140, 250, 300], [0, 0, 20, 280], [7, 9, 0, 0], [0, 0, 0, 0]], np.int64)
    scratch = np.empty(gemm.red_batch_scratch(n, np.dtype(dtype).itemsize), dtype)
    keep = np.zeros((5, 1, p), bool)
    for i, (s0, s1, s2, s3) in enumerate(spans):
        keep[i, 0, s0:s1] = keep[i, 0, s2:s3] = True
    wide_ = np.longdouble
    want = np.matmul(np.where(keep, a, 0).astype(wide_), b.astype(wide_).transpose(0, 2, 1))
    for add in (False, True):
        c = c0.copy()
        gemm.red_batch(a.reshape(-1), b.reshape(-1), c.reshape(-1), m, n, p, add, scratch, spans)
        expect = want + c0 if add else want
        assert np.abs(c - expect).max() <= 4 * p * np.finfo(dtype).eps * np.abs(expect).max()


@wide
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_on_the_register_tiles_agrees_with_its_blas_products(monkeypatch, dtype):
    winograd = fastconv.backends.get("winograd")
    geom = Geometry.from_args((3, 24, 10, 9), (16, 12, 3, 3), padding=1, groups=2)
    x, w, gy = (_rand(s, dtype, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    tiles = winograd.forward(x, w, geom), winograd.grad_input(gy, w, geom)
    monkeypatch.setattr(gemm, "WIDE", False)  # as on a CPU without AVX-512: NumPy's products
    blas = winograd.forward(x, w, geom), winograd.grad_input(gy, w, geom)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for a, b in zip(tiles, blas):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("n_img, p_img, slots, want", [
    (32, 49, 4, 4),   # 7x7: at most 5 images a unit, in whole rounds of the slots: 8 units of 4
    (5, 49, 1, 5),
    (7, 25, 6, 2),    # fewer images than slots could take: units of 2 (4 of the 6 slots busy)
    (3, 196, 4, 1),   # 14x14: one image already fills most of KC
    (2, 930, 2, 1),   # blocks of KC within an image
])
def test_the_weight_gradient_groups_small_images_into_units(n_img, p_img, slots, want):
    per = gemm._red_images(n_img, p_img, slots)
    assert per == want
    assert per == 1 or per * p_img <= gemm.KC
