"""Porting SciPy filtering code to fastconv: the same results on a batch of images, and the time.

    python examples/scipy_port.py [--images 64] [--size 256] [--kernel 5]

Each SciPy call below filters one image at a time; the fastconv call filters the whole batch (and
could apply a bank of filters, or run under `fastconv.dask` on arrays larger than memory). The
mapping (README, "Coming from SciPy"): `correlate2d(mode="same", boundary=B)` is
`conv2d(padding="same", padding_mode=M)` with M = zeros/symmetric/circular for B = fill/symm/wrap;
`ndimage.correlate(mode=M)` pads `k // 2` before and the rest after on each axis, with
M = symmetric/reflect/replicate/circular/zeros for ndimage's reflect/mirror/nearest/wrap/constant;
`convolve*` is the same call with the kernel flipped.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage, signal

import fastconv as fc

SIGNAL_BOUNDARY = {"fill": "zeros", "symm": "symmetric", "wrap": "circular"}
NDIMAGE_MODE = {"reflect": "symmetric", "mirror": "reflect", "nearest": "replicate", "wrap": "circular",
                "constant": "zeros"}


def ndimage_padding(kernel_shape):
    """ndimage centres a kernel at ``k // 2``: that many before, the rest after, on each axis."""
    return tuple((k // 2, k - 1 - k // 2) for k in kernel_shape)


def ported(images, kernel):
    """Every SciPy call of the comparison and its fastconv port: name -> (scipy result, fastconv result)."""
    batch, k = images[:, np.newaxis], kernel[np.newaxis, np.newaxis]  # (N, 1, H, W) and (1, 1, kH, kW)
    out = {}
    for boundary, mode in SIGNAL_BOUNDARY.items():
        out[f"signal.correlate2d same {boundary}"] = (
            lambda b=boundary: np.stack([signal.correlate2d(im, kernel, mode="same", boundary=b) for im in images]),
            lambda m=mode: fc.conv2d(batch, k, padding="same", padding_mode=m)[:, 0])
        out[f"signal.convolve2d full {boundary}"] = (
            lambda b=boundary: np.stack([signal.convolve2d(im, kernel, mode="full", boundary=b) for im in images]),
            lambda m=mode: fc.conv2d(batch, k[..., ::-1, ::-1], padding=[(s - 1, s - 1) for s in kernel.shape],
                                     padding_mode=m)[:, 0])
    for nd_mode, mode in NDIMAGE_MODE.items():
        out[f"ndimage.correlate {nd_mode}"] = (
            lambda m=nd_mode: np.stack([ndimage.correlate(im, kernel, mode=m) for im in images]),
            lambda m=mode: fc.conv2d(batch, k, padding=ndimage_padding(kernel.shape), padding_mode=m)[:, 0])
    return out


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--kernel", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.images, args.size, args.size)).astype(np.float32)
    kernel = rng.standard_normal((args.kernel, args.kernel)).astype(np.float32)
    print(f"{args.images} images of {args.size}x{args.size}, float32, a {args.kernel}x{args.kernel} kernel, "
          f"{fc.get_num_threads()} threads for fastconv")
    for name, (scipy_call, fastconv_call) in ported(images, kernel).items():
        want, got = scipy_call(), fastconv_call()
        error = float(np.abs(got - want).max() / np.abs(want).max())
        speedup = best_of(scipy_call) / best_of(fastconv_call)
        print(f"{name:34s} largest difference {error:.1e} (relative)   fastconv {speedup:5.1f}x faster")


if __name__ == "__main__":
    main()
