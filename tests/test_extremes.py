"""Arguments at the limits (#15 items 5 and 7): every backend gives the same answer or the same
clear error, sizes are checked before any work, byte order and mixed dtypes follow API.md."""

import time

import numpy as np
import pytest

import fastconv
from tests.oracle import assert_close


def test_a_huge_legal_stride_gives_the_one_output(backend):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 3))
    y = fastconv.conv2d(x, w, stride=10**18, backend=backend)
    assert y.shape == (2, 4, 1, 1)
    assert_close(y, fastconv.conv2d(x, w, stride=1, backend="reference")[:, :, :1, :1], np.float64)
    g = fastconv.conv2d_backward(np.ones((2, 4, 1, 1)), x, w, stride=10**18, backend=backend)
    want = fastconv.conv2d_backward(np.ones((2, 4, 1, 1)), x[:, :, :3, :3], w, backend="reference")
    assert_close(g.input[:, :, :3, :3], want.input, np.float64)
    assert not g.input[:, :, 3:].any() and not g.input[:, :, :, 3:].any()
    assert_close(g.weight, want.weight, np.float64)


def test_a_stride_far_above_the_kernel_costs_what_the_outputs_cost(backend):
    if backend == "reference":
        pytest.skip("the reference loops over outputs; nothing to bound")
    x, w = np.ones((1, 2, 4003, 3)), np.ones((2, 2, 3, 3))
    fastconv.conv2d_backward(np.ones((1, 2, 3, 1)), x, w, stride=2000, backend=backend)  # warm
    start = time.perf_counter()
    g = fastconv.conv2d_backward(np.ones((1, 2, 3, 1)), x, w, stride=(2000, 2000), backend=backend)
    assert time.perf_counter() - start < 1.0  # was 4.6 s on numba (one call per empty stride phase)
    assert g.input[0, 0, 2000:2003, :3].sum() == 2 * 9 and g.input.sum() == 3 * 2 * 2 * 9


@pytest.mark.parametrize("fn, kwargs", [
    ("conv2d", dict(padding=2**63)),
    ("conv2d", dict(padding=((2**40, 0), (0, 2**40)))),
    ("conv2d_backward", dict(padding=2**62)),
    ("conv_transpose2d", dict(stride=2**40)),
])
def test_absurd_sizes_are_one_clear_error_before_any_work(backend, fn, kwargs, monkeypatch):
    for name in ("forward", "grad_input", "grad_weight"):
        monkeypatch.setattr(fastconv.backends.get(backend), name, lambda *a: pytest.fail("work started"))
    x, w = np.ones((1, 2, 4, 4)), np.ones((2, 2, 3, 3))
    args = (np.ones((1, 2, 1, 1)), x, w) if fn.endswith("backward") else (x, w)
    with pytest.raises(ValueError, match=rf"{fn}: .* would hold .* elements, more than fastconv allocates"):
        getattr(fastconv, fn)(*args, **kwargs, backend=backend)


def test_non_native_byte_order_is_accepted(backend):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    for dtype in (">f4", ">f8", ">i4"):
        y = fastconv.conv2d(x.astype(dtype), w.astype(dtype), padding=1, backend=backend)
        assert y.dtype.isnative and y.dtype.kind == "f"
        assert_close(y, fastconv.conv2d(x.astype(dtype).astype(y.dtype), w.astype(dtype).astype(y.dtype),
                                        padding=1, backend="reference"), y.dtype)


def test_a_wider_bias_widens_the_result():
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((3, 2, 3, 3), np.float32)
    assert fastconv.conv2d(x, w, np.ones(3, np.float64)).dtype == np.float64
    assert fastconv.conv2d(x, w, np.ones(3, np.float32)).dtype == np.float32
    assert fastconv.conv_transpose2d(np.ones((1, 3, 2, 2), np.float32), np.ones((3, 2, 3, 3), np.float32),
                                     np.ones(2, np.float64)).dtype == np.float64
