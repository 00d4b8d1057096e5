"""The README's "Coming from SciPy" mapping, checked against SciPy by running its example."""

import numpy as np
import pytest

pytest.importorskip("scipy")

from examples import scipy_port  # noqa: E402


@pytest.mark.parametrize("kernel_shape", [(3, 3), (4, 4), (2, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_mapped_call_equals_scipy(kernel_shape, dtype):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 9, 11)).astype(dtype)
    kernel = rng.standard_normal(kernel_shape).astype(dtype)
    for name, (scipy_call, fastconv_call) in scipy_port.ported(images, kernel).items():
        want, got = scipy_call(), fastconv_call()
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5, err_msg=name)


def test_the_example_runs(capsys):
    scipy_port.main(["--images", "2", "--size", "16", "--kernel", "3"])
    assert "ndimage.correlate mirror" in capsys.readouterr().out
