"""numba's strided and other multi-tap kernels with many channels as products of columns of patches
on the register tiles (``_numba_patches``): which calls take them, every edge of their work (strides,
dilation, padding on any side or cropped, groups, channels past whole tiles, items that cross
images, 1-3 threads), the input gradient as the forward's adjoint, non-finite values, the memory
budget and a warm call's allocations."""

import numpy as np
import pytest

import fastconv
from fastconv.backends import reference
from fastconv.geometry import Geometry
from tests.nrt_count import array_wrappers
from tests.oracle import assert_close, extra_bytes
from tests.quiet import ran_parts

pytest.importorskip("numba")
numba_jit = fastconv.backends.get("numba")
from fastconv.backends import _numba_kernels as packed  # noqa: E402  (needs numba)
from fastconv.backends import _numba_patches as patches  # noqa: E402
from tests.test_numba_gemm import _rand, tiles  # noqa: E402  (the same tiles, the same skip)

NARROW = not patches._gemm.WIDE  # calls that AVX2's limit takes and AVX-512's does not


@pytest.mark.parametrize("kh, kw, sh, sw, groups, c_in, c_out, ow, takes", [
    (3, 3, 2, 2, 1, 256, 512, 7, True),
    (3, 3, 2, 1, 1, 29, 64, 500, True),    # 261 reduction steps, any width at a stride
    (3, 3, 2, 2, 1, 28, 64, 7, False),     # 252: short of a whole block of the tiles' reduction
    (7, 7, 2, 2, 1, 3, 64, 112, False),    # ResNet's stem: 147
    (3, 3, 2, 2, 1, 64, 63, 7, NARROW),    # too few output channels with AVX-512 (64), not AVX2 (32)
    (3, 3, 2, 2, 1, 64, 31, 7, False),
    (3, 3, 2, 2, 2, 128, 128, 7, True),    # per group: 64 -> 64
    (3, 3, 2, 2, 4, 128, 128, 7, NARROW),  # per group: 32 -> 32
    (3, 3, 1, 1, 1, 64, 64, 7, True),      # stride 1: 576 steps for 7 columns (score 106)
    (3, 3, 1, 1, 1, 64, 64, 8, True),      # ... and 8 (90)
    (3, 3, 1, 1, 1, 64, 64, 10, False),    # ... not for 10 (69; the packed kernels' rows are long enough)
    (3, 3, 1, 1, 1, 96, 96, 14, True),     # 96+ output channels pass a lower bar: 71
    (3, 3, 1, 1, 1, 95, 95, 14, False),    # ... 95 do not
    (1, 7, 1, 1, 1, 128, 128, 17, True),   # Inception's 1x7: the packed rows 23 wide for 17 (71)
    (7, 1, 1, 1, 1, 128, 128, 17, False),  # its 7x1: rows not padded (53)
    (5, 5, 1, 1, 1, 64, 64, 28, False),    # 65, 64 channels
    (2, 2, 1, 1, 1, 512, 256, 7, True),    # a phase of a stride-2 3x3 layer's input gradient
    (1, 1, 2, 2, 1, 256, 256, 7, False),   # one tap: the 1x1 products
])
def test_which_calls_take_the_patches(kh, kw, sh, sw, groups, c_in, c_out, ow, takes):
    # at a stride on any register tiles; at stride 1 (measured there only) on AVX-512's
    gemm = patches._gemm
    assert patches.applies(kh, kw, sh, sw, groups, c_in, c_out, ow) == (
        takes and gemm.TILES and (sh * sw > 1 or gemm.WIDE))


def test_a_dilated_kernel_pads_the_packed_rows_more():
    # 3x3 over 10 columns: the packed rows 12 wide (score 69); at dilation 3, 16 (92)
    assert not patches.applies(3, 3, 1, 1, 1, 64, 64, 10)
    assert patches.applies(3, 3, 1, 1, 1, 64, 64, 10, dil_w=3) == patches._gemm.WIDE


def _spy(monkeypatch):
    """A list of the names of the patches' passes that ran (returned True) from now on."""
    ran = []
    for name in ("forward", "grad_input", "grad_weight"):
        real = getattr(patches, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            done = _real(*args, **kwargs)
            if done:
                ran.append(_name)
            return done
        monkeypatch.setattr(patches, name, spy)
    return ran


# (x shape, w shape, hyper-parameters): items that cross images (42 output pixels an image),
# strides that differ by axis, padding on one side, more than one item a thread, dilation, a 5x5
# kernel, groups, rows and reductions past whole tiles and KC blocks, a stride of 3 (input pixels
# no tap reads), a 2x2 kernel at stride 1, an input
# gradient over several chunks of the transposed kernels' rows (300 channels x 9 taps)
CASES = [
    pytest.param((3, 40, 13, 11), (72, 40, 3, 3), dict(stride=2, padding=1), id="s2-crossing-images"),
    pytest.param((2, 33, 12, 17), (64, 33, 3, 3), dict(stride=(2, 1), padding=((2, 0), (1, 3))), id="uneven"),
    pytest.param((5, 32, 20, 20), (70, 32, 3, 3), dict(stride=2, padding=1), id="several-items-ragged-rows"),
    pytest.param((2, 16, 21, 21), (64, 16, 5, 5), dict(stride=2, padding=4, dilation=2), id="5x5-dilated"),
    pytest.param((2, 8, 30, 30), (64, 8, 7, 7), dict(stride=2, padding=3), id="7x7-stem"),
    pytest.param((2, 128, 9, 9), (128, 64, 3, 3), dict(stride=2, groups=2), id="groups"),
    pytest.param((2, 40, 10, 10), (64, 40, 3, 3), dict(stride=3, padding=2), id="stride-3"),
    pytest.param((5, 160, 7, 7), (64, 160, 2, 2), {}, id="2x2-valid"),
    pytest.param((3, 72, 9, 9), (160, 72, 3, 3), dict(stride=2, padding=1), id="wide"),
    pytest.param((2, 300, 9, 9), (64, 300, 3, 3), dict(stride=2, padding=1), id="input-gradient-chunks"),
]
PASSES = {"forward": lambda x, w, gy, geom: numba_jit.forward(x, w, geom),
          "grad_input": lambda x, w, gy, geom: numba_jit.grad_input(gy, w, geom),
          "grad_weight": lambda x, w, gy, geom: numba_jit.grad_weight(gy, x, geom)}


@pytest.fixture
def no_phases(monkeypatch):
    """numba's strided forwards without the stacked phases (the stem's 32 stacked channels would take
    them in float32), its kernels chosen afresh before and after."""
    monkeypatch.setattr(numba_jit, "PHASES", False)
    numba_jit.forget_kernels()
    yield
    numba_jit.forget_kernels()


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES)
def test_the_patches_match_the_reference(monkeypatch, no_phases, xs, ws, kwargs, dtype):
    geom = Geometry.from_args(xs, ws, **kwargs)
    x, w, gy = (_rand(s, dtype, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    wants = {name: getattr(reference, name)(*(a.astype(np.float64) for a in args), geom) for name, args in (
        ("forward", (x, w)), ("grad_input", (gy, w)), ("grad_weight", (gy, x)))}
    ran = _spy(monkeypatch)
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            for name, run in PASSES.items():
                assert_close(run(x, w, gy, geom), wants[name], dtype, what=f"{name}, {threads} threads")
    strided = geom.stride != (1, 1)  # at stride 1: numba's implicit products, the one phase's forward
    assert ("forward" in ran) == (strided or patches._gemm.WIDE)  # at stride 1 with AVX-512 only
    assert ("grad_weight" in ran) == strided and ("grad_input" in ran) == strided


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", [
    ((3, 40, 13, 11), (72, 40, 3, 3), dict(stride=2, padding=1)),  # rows past whole tiles both ways
    ((2, 128, 9, 9), (128, 64, 3, 3), dict(stride=2, groups=2)),
    ((5, 32, 20, 20), (40, 32, 3, 3), dict(stride=2, padding=1))])  # several items and slices
def test_the_weight_gradient_packs_either_operand_with_the_same_bits(monkeypatch, xs, ws, kwargs, dtype):
    """gy's columns packed and the sums transposed (``_swaps``) or the patches packed: the same
    sums in the same order, so the same bits, and the reference's values."""
    geom = Geometry.from_args(xs, ws, **kwargs)
    x, gy = _rand(geom.x_shape, dtype, 0), _rand(geom.y_shape, dtype, 1)
    want = reference.grad_weight(gy.astype(np.float64), x.astype(np.float64), geom)
    got = {}
    for swapped in (False, True):
        monkeypatch.setattr(patches, "_swaps", lambda kg, kr, itemsize, _s=swapped: _s)
        with fastconv.threads(2):
            got[swapped] = numba_jit.grad_weight(gy, x, geom)
        assert_close(got[swapped], want, dtype, what=f"swapped {swapped}")
    assert np.array_equal(got[False], got[True])


@tiles
@pytest.mark.parametrize("n", [9, 2])  # 441 output pixels in items, or 98 in blocks of output channels
def test_the_forward_has_the_same_bits_on_any_number_of_threads_and_the_weight_gradient_on_the_same(n):
    # a forward sum is one tile's, whichever item or block of rows holds its pixel; the weight
    # gradient's slices are whole rounds of the threads, added in order
    geom = Geometry.from_args((n, 64, 14, 14), (96, 64, 3, 3), stride=2, padding=1)
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    ys, gws = [], []
    for threads in (1, 2, 3, 4):
        with fastconv.threads(threads):
            ys.append(numba_jit.forward(x, w, geom))
            gws.append((numba_jit.grad_weight(gy, x, geom), numba_jit.grad_weight(gy, x, geom)))
    for y in ys[1:]:
        assert np.array_equal(ys[0], y)
    for first, again in gws:
        assert np.array_equal(first, again)


@tiles
@pytest.mark.parametrize("where", ["w", "x", "gy"])
def test_non_finite_values_give_the_packed_kernels_result(monkeypatch, where):
    # the columns hold the padding's zeros, so inf * 0 gives NaN where the reference's sum over the
    # padded input has it, as the packed kernels (with their fix-ups) do
    geom = Geometry.from_args((3, 32, 9, 9), (64, 32, 3, 3), stride=2, padding=1)
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    {"w": w, "x": x, "gy": gy}[where].reshape(-1)[[5, 700]] = [np.inf, np.nan]
    ran = _spy(monkeypatch)
    got = [run(x, w, gy, geom) for run in PASSES.values()]
    assert ran
    monkeypatch.setattr(patches, "MIN_REDUCTION", 10**9)
    fastconv.backends.get("numba").forget_kernels()
    for name, run, have in zip(PASSES, PASSES.values(), got):
        want = run(x, w, gy, geom)
        np.testing.assert_array_equal(np.isnan(have), np.isnan(want), err_msg=name)
        np.testing.assert_array_equal(np.isinf(have), np.isinf(want), err_msg=name)
        fin = np.isfinite(want)
        np.testing.assert_allclose(have[fin], want[fin], rtol=1e-4, atol=1e-4 * np.abs(want[fin]).max(), err_msg=name)


@tiles
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", list(PASSES))
def test_extra_memory_stays_under_budget(budget, use_threads, monkeypatch, name, threads):
    # 4 MiB: the packed kernel (432 KiB), per thread an item's columns (3 KiB a pixel), the
    # tiles' scratch and NumPy's buffers; the weight gradient's reduction scratch (576 KiB a
    # thread) and its slices' sums (432 KiB each)
    use_threads(threads)
    geom = Geometry.from_args((4, 64, 16, 16), (192, 64, 3, 3), stride=2, padding=1)
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    ran = _spy(monkeypatch)
    budget(4 * 2**20)
    extra, got = extra_bytes(lambda: PASSES[name](x, w, gy, geom))
    assert extra <= 4 * 2**20, f"{name}: {extra} bytes beyond the output"
    assert ran
    assert_close(got, getattr(reference, name)(*((x, w) if name == "forward" else (gy, w) if name == "grad_input"
                                                   else (gy, x)), geom), np.float32)


@tiles
def test_a_call_whose_scratch_passes_the_budget_takes_the_packed_kernels(budget, monkeypatch):
    geom = Geometry.from_args((4, 64, 14, 14), (128, 64, 3, 3), stride=2, padding=1)
    x, w = _rand(geom.x_shape, np.float32, 0), _rand(geom.w_shape, np.float32, 1)
    ran = ran_parts(monkeypatch)
    spied = _spy(monkeypatch)
    budget(64 * 2**10)  # the packed kernel alone is 288 KiB
    low = numba_jit.forward(x, w, geom)
    assert ran == [packed._forward_part] and not spied
    budget(None)
    high = numba_jit.forward(x, w, geom)
    assert spied == ["forward"]
    np.testing.assert_allclose(low, high, rtol=1e-4, atol=1e-4 * np.abs(high).max())


# Only the wrappers of the kernels' array arguments are counted. One thread over 50 pixels (fewer
# than an item's) reads the weight where it lies: 5 for the columns, 4 for the products and 3 to
# put them (the weight gradient: 5 for the columns, 2 to take gy's and 5 for its sums, its steps'
# spans one). Over 289 pixels, two items and the packing in two parts: 2 a part to pack, and per
# item 5 for the columns, 5 for the products and 3 to put them (the weight gradient: per item as
# over 50 pixels).
@tiles
@pytest.mark.parametrize("size, forward_wrappers, weight_wrappers", [
    (9, 5 + 4 + 3, 5 + 2 + 5), (33, 2 * 2 + 2 * (5 + 5 + 3), 2 * (5 + 2 + 5))])
def test_the_patches_leave_their_inputs_alone_and_allocate_nothing_when_warm(size, forward_wrappers,
                                                                              weight_wrappers):
    geom = Geometry.from_args((2 if size == 9 else 1, 32, size, size), (64, 32, 3, 3), stride=2, padding=1)
    x, w, gy, bias = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape,
                                                                       (64,))))
    copies = [a.copy() for a in (x, w, gy, bias)]
    calls = ((numba_jit.forward, (x, w, geom, bias)), (numba_jit.grad_weight, (gy, x, geom)))
    with fastconv.threads(1):
        for fn, args in calls:
            fn(*args)  # warm: compiled, workspaces grown
        counts = array_wrappers(calls)
    assert counts == [forward_wrappers, weight_wrappers]
    for a, b in zip((x, w, gy, bias), copies):
        assert np.array_equal(a, b)


@tiles
def test_warmup_compiles_every_kernel_the_patches_run():
    # auto's first strided call must not wait for a compile: warmup's steps cover the layouts of
    # every argument (chunks of the transposed kernel's rows, a stride-1 input gradient's phase)
    numba_jit.warmup(np.float32)
    kernels = (patches.columns, patches.scatter, patches.put, patches.take, patches.pack, patches.pack_rows,
               patches._gemm.batch, patches._gemm.red_batch)
    before = [len(k.signatures) for k in kernels]
    for xs, ws, kwargs in (((2, 256, 14, 14), (512, 256, 3, 3), dict(stride=2, padding=1)),
                           ((2, 512, 7, 7), (512, 512, 3, 3), dict(padding=1))):
        geom = Geometry.from_args(xs, ws, **kwargs)
        x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
        for run in PASSES.values():
            run(x, w, gy, geom)
    assert [len(k.signatures) for k in kernels] == before
