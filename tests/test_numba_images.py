"""numba's forward over small images with the batch's images as the register tiles' columns
(``_numba_images``): which calls take it, every edge of its work (batches past and short of whole
panels, output channels past whole tiles, padding on any side, pixels that read only padding,
kernel rows dilated, a stride, 1-3 threads), the stride-1 input gradient as such a forward,
non-finite values, the memory budget, its inputs and warmup."""

import numpy as np
import pytest

import fastconv
from fastconv.backends import reference
from fastconv.geometry import Geometry
from tests.oracle import assert_close, extra_bytes

pytest.importorskip("numba")
numba_jit = fastconv.backends.get("numba")
from fastconv.backends import _numba_images as images  # noqa: E402  (needs numba)
from tests.test_numba_gemm import _rand, tiles  # noqa: E402  (the same tiles, the same skip)

LANES = images._gemm.VBITS // 32  # float32 values in a vector of the tiles' (two a panel)
# ... in a vector of the tiles' columns where numba takes it (half-width AVX-512, where it was
# measured): a batch of these fills one; its own tests run it on any tiles
VECTOR = images.LANE_BITS // 32
measured = pytest.mark.skipif(not numba_jit.IMAGES, reason="numba takes it on half-width AVX-512 only")


@pytest.fixture
def on(monkeypatch):
    """numba's images kernel on (any CPU with tiles), its kernels chosen afresh before and after."""
    monkeypatch.setattr(numba_jit, "IMAGES", True)
    numba_jit.forget_kernels()
    yield
    numba_jit.forget_kernels()


def _kernel(xs, ws, dtype=np.float32, **kwargs):
    return numba_jit.whole_choices(Geometry.from_args(xs, ws, **kwargs), dtype).forward


@measured
@pytest.mark.parametrize("xs, ws, kwargs, takes", [
    ((32, 256, 4, 4), (256, 256, 5, 5), dict(padding=2), True),       # half the taps read padding
    ((VECTOR, 64, 7, 7), (64, 64, 7, 7), dict(padding=3), True),     # a vector of images
    ((VECTOR, 64, 6, 6), (64, 64, 5, 5), dict(padding=2), True),     # ... 36 % padding
    ((VECTOR // 2, 64, 4, 4), (64, 64, 5, 5), dict(padding=2), True),  # half of one: 51 %
    ((VECTOR // 2, 64, 6, 6), (64, 64, 5, 5), dict(padding=2), False),  # ... 36 %
    ((VECTOR // 2 - 1, 64, 4, 4), (64, 64, 5, 5), dict(padding=2), False),
    ((32, 64, 10, 10), (64, 64, 3, 3), dict(padding=1), False),       # 13 % padding
    ((32, 64, 16, 16), (64, 64, 7, 7), dict(padding=3), True),        # 256 pixels an image, 19 %
    ((32, 64, 17, 17), (64, 64, 7, 7), dict(padding=3), False),       # 289
    ((32, 64, 4, 4), (64, 64, 5, 5), dict(padding=2, stride=2), False),
    ((32, 64, 4, 4), (64, 32, 5, 5), dict(padding=2, groups=2), False),
    ((32, 64, 6, 6), (64, 64, 3, 3), dict(padding=2, dilation=(1, 2)), False),
    ((32, 64, 6, 6), (64, 64, 3, 3), dict(padding=(2, 1), dilation=(2, 1)), True),
    ((32, 31, 4, 4), (64, 31, 5, 5), dict(padding=2), False),         # few input channels
    ((32, 64, 6, 6), (64, 64, 5, 5), {}, False),                      # unpadded: no tap reads padding
])
def test_which_calls_take_it(xs, ws, kwargs, takes):
    assert (_kernel(xs, ws, **kwargs) == "images") == takes


@measured
def test_float64_fills_a_vector_with_half_the_images():
    assert _kernel((VECTOR // 2, 64, 6, 6), (64, 64, 5, 5), np.float64, padding=2) == "images"


@measured
def test_auto_knows_where_it_runs():
    geom = Geometry.from_args((32, 256, 4, 4), (256, 256, 5, 5), padding=2)
    assert numba_jit.images(geom) and numba_jit.images_input(geom)
    geom = Geometry.from_args((32, 64, 28, 28), (64, 64, 5, 5), padding=2)
    assert not numba_jit.images(geom) and not numba_jit.images_input(geom)


@measured
@pytest.mark.parametrize("xs, ws, kwargs, picks", [
    ((32, 256, 4, 4), (256, 256, 5, 5), dict(padding=2), ("numba", "numba", "numba")),
    ((64, 384, 4, 4), (32, 384, 5, 5), dict(padding=2), ("numba", "numba", "numba")),  # BLAS's before
    ((32, 128, 3, 3), (192, 128, 3, 3), dict(padding=1), ("numba", "numba", "winograd")),  # 3x3: winograd's gw
    # 77 % of the taps read the image: 24 images fill three 256-bit vectors (numba's), 12 three quarters
    # of a 512-bit one (winograd's blocks)
    ((24, 96, 10, 10), (512, 96, 5, 5), dict(padding=2), ("numba", "numba", "numba")),
    ((12, 96, 10, 10), (512, 96, 5, 5), dict(padding=2), ("winograd", "winograd", "im2col")),
    ((8, 128, 6, 6), (128, 128, 7, 7), dict(padding=3), ("numba", "numba", "numba")),  # 8 images: one vector
    ((8, 256, 4, 4), (128, 256, 3, 3), dict(padding=1), ("numba", "winograd", "numba")),  # few tiles, 31 %
    ((24, 64, 16, 16), (64, 64, 7, 7), dict(padding=3), ("winograd", "winograd", "winograd")),  # 16x16
    ((64, 512, 6, 6), (64, 512, 3, 3), dict(padding=1), ("winograd", "winograd", "winograd")),  # 21 % at 3x3
])
def test_auto_runs_it_on_small_images_of_much_padding(xs, ws, kwargs, picks):
    geom = Geometry.from_args(xs, ws, **kwargs)  # (auto's ranking: ``choose`` waits for numba's compile)
    assert tuple(fastconv.backends.candidates(geom, np.dtype(np.float32), None, p)[0]
                 for p in fastconv.backends.PASSES) == picks


CASES = [
    ((20, 32, 4, 5), (72, 32, 3, 3), dict(padding=1)),                # 20 images: a vector and a ragged end
    ((2 * LANES + 3, 40, 3, 3), (36, 40, 5, 5), dict(padding=2)),     # past a whole panel of columns
    ((LANES, 33, 5, 4), (42, 33, 5, 3), dict(padding=((3, 1), (0, 2)))),  # uneven padding, rows past tiles
    ((LANES, 32, 3, 3), (34, 32, 3, 3), dict(padding=4)),             # pixels that read only padding
    ((LANES, 48, 6, 5), (32, 48, 3, 3), dict(padding=(2, 1), dilation=(2, 1))),
    ((LANES, 96, 2, 2), (32, 96, 7, 7), dict(padding=3)),             # runs across KC's blocks
    ((3 * LANES, 32, 7, 7), (40, 32, 3, 3), dict(padding=1)),         # a weight gradient's rows past KC
    # on half-width units, columns in 256-bit vectors: one (float64: half a 512-bit one), part of one,
    # three (float64: a 512-bit one and a half), part of three, a panel and one
    ((8, 32, 4, 4), (32, 32, 5, 5), dict(padding=2)),
    ((5, 40, 3, 4), (36, 40, 3, 3), dict(padding=1)),
    ((24, 32, 3, 3), (32, 32, 5, 5), dict(padding=2)),
    ((21, 32, 4, 3), (40, 32, 3, 3), dict(padding=1)),
    ((2 * LANES + 8, 36, 3, 3), (32, 36, 3, 3), dict(padding=1)),
]


@tiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES)
def test_every_pass_matches_the_reference_with_the_same_bits_on_any_threads(monkeypatch, on, xs, ws, kwargs, dtype):
    monkeypatch.setattr(numba_jit, "IMAGES_MIN_PADDING", 0.0)  # every case here, whatever its padding
    monkeypatch.setattr(numba_jit, "IMAGES_HALF_VECTOR_MIN_PADDING", 0.0)
    numba_jit.forget_kernels()
    geom = Geometry.from_args(xs, ws, **kwargs)
    x, w, gy, b = (_rand(s, dtype, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape,
                                                              (geom.c_out,))))
    ran = []
    for name in ("forward", "grad_weight"):
        real = getattr(images, name)
        monkeypatch.setattr(images, name, lambda *a, _r=real, _n=name, **k: ran.append((_n, a[0].shape)) or _r(*a, **k))
    wants = (reference.forward(x.astype(np.float64), w.astype(np.float64), geom, b.astype(np.float64)),
             reference.grad_input(gy.astype(np.float64), w.astype(np.float64), geom),
             reference.grad_weight(gy.astype(np.float64), x.astype(np.float64), geom))
    got = []
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            got.append((numba_jit.forward(x, w, geom, b), numba_jit.grad_input(gy, w, geom),
                        numba_jit.grad_weight(gy, x, geom)))
        for have, want, name in zip(got[-1], wants, ("forward", "input gradient", "weight gradient")):
            assert_close(have, want, dtype, what=f"{name}, {threads} threads")
    for later in got[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(got[0], later))
    # the forward, the input gradient's (of gy) and the weight gradient (of gy, by x) ran here
    assert {("forward", geom.x_shape), ("forward", geom.y_shape), ("grad_weight", geom.y_shape)} <= set(ran)
    numba_jit.forget_kernels()


@tiles
@pytest.mark.parametrize("stride", [(2, 2), (3, 1)])
def test_the_kernel_runs_a_stride_too(stride):
    # (``_images_fit`` gives it unit strides only: measured there)
    geom = Geometry.from_args((LANES + 1, 32, 7, 6), (40, 32, 3, 5), padding=(1, 2), stride=stride)
    x, w = _rand(geom.x_shape, np.float32, 0), _rand(geom.w_shape, np.float32, 1)
    y = np.empty(geom.y_shape, np.float32)
    assert images.forward(x, w, None, y, *stride, geom.pt, geom.pl, 1, 2, 2**30)
    assert_close(y, reference.forward(x.astype(np.float64), w.astype(np.float64), geom), np.float32)


@tiles
@pytest.mark.parametrize("where", ["w", "x", "gy"])
def test_non_finite_values_give_the_references_result(on, where):
    # the taps that read padding are not multiplied: the forward's inf x 0 there (and the weight
    # gradient's, of gy) is mended as after the other kernels (``padding_products``), to the
    # reference's NaN
    geom = Geometry.from_args((LANES, 32, 4, 4), (32, 32, 5, 5), padding=2)
    assert numba_jit.whole_choices(geom, np.float32).forward == "images"
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    {"w": w, "x": x, "gy": gy}[where].reshape(-1)[[5, 700]] = [np.inf, np.nan]
    if where == "gy":
        have = numba_jit.grad_weight(gy, x, geom)
        want = reference.grad_weight(gy.astype(np.float64), x.astype(np.float64), geom)
    else:
        have = numba_jit.forward(x, w, geom)
        want = reference.forward(x.astype(np.float64), w.astype(np.float64), geom)
    np.testing.assert_array_equal(np.isnan(have), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(have), np.isinf(want))
    fin = np.isfinite(want)
    assert_close(have[fin], want[fin], np.float32)


@tiles
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", ["forward", "grad_weight"])
def test_extra_memory_stays_under_budget(budget, use_threads, on, threads, name):
    # 2 MiB: the forward's input copy (256 KiB), per item its rows of the weight (at most 400 KiB)
    # and of the sums (at most 256 KiB); the weight gradient's input and gy copies (256 KiB each)
    # and the taps' sums (1.6 MiB)
    use_threads(threads)
    geom = Geometry.from_args((32, 128, 4, 4), (128, 128, 5, 5), padding=2)
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    budget(2 * 2**20 + 2**18)
    assert numba_jit.whole_choices(geom, np.float32).forward == "images"
    run = {"forward": lambda: numba_jit.forward(x, w, geom), "grad_weight": lambda: numba_jit.grad_weight(gy, x, geom)}
    ran = []
    real = getattr(images, name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, name, lambda *a, **k: ran.append(real(*a, **k)) or ran[-1])
        extra, got = extra_bytes(run[name])
    assert ran and all(ran), "it ran"
    assert extra <= 2 * 2**20 + 2**18, f"{extra} bytes beyond the output"
    want = (reference.forward(x.astype(np.float64), w.astype(np.float64), geom) if name == "forward"
            else reference.grad_weight(gy.astype(np.float64), x.astype(np.float64), geom))
    assert_close(got, want, np.float32)


@tiles
def test_a_call_whose_scratch_passes_the_budget_takes_another_kernel(budget, on):
    geom = Geometry.from_args((32, 128, 4, 4), (128, 128, 5, 5), padding=2)
    budget(256 * 2**10)  # the input's copy alone
    assert numba_jit.whole_choices(geom, np.float32).forward != "images"
    x, w = _rand(geom.x_shape, np.float32, 0), _rand(geom.w_shape, np.float32, 1)
    y = np.empty(geom.y_shape, np.float32)
    assert not images.forward(x, w, None, y, 1, 1, 2, 2, 1, 2, 256 * 2**10)


@tiles
def test_its_inputs_are_left_alone(on):
    geom = Geometry.from_args((LANES, 32, 4, 4), (40, 32, 5, 5), padding=2)
    x, w, gy, b = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape,
                                                                   (geom.c_out,))))
    copies = [a.copy() for a in (x, w, gy, b)]
    numba_jit.forward(x, w, geom, b)
    numba_jit.grad_input(gy, w, geom)
    numba_jit.grad_weight(gy, x, geom)
    for a, c in zip((x, w, gy, b), copies):
        assert np.array_equal(a, c)


@measured
def test_warmup_compiles_every_kernel_it_runs():
    # auto's first call must not wait for a compile: the forward's layouts and the input gradient's
    # (a transposed weight, no bias)
    numba_jit.warmup(np.float32)
    kernels = (images._runs, images._transpose_in, images._products, images._put, images._transpose_gy,
               images._gw_tap, images._gw_put)
    before = [len(k.signatures) for k in kernels]
    geom = Geometry.from_args((32, 64, 4, 4), (96, 64, 5, 5), padding=2)
    x, w, gy, b = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape,
                                                                   (geom.c_out,))))
    numba_jit.forward(x, w, geom, b)
    numba_jit.grad_input(gy, w, geom)
    numba_jit.grad_weight(gy, x, geom)
    assert [len(k.signatures) for k in kernels] == before
