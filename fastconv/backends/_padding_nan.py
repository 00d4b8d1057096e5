"""What the reference computes where a kernel that skips the zero padding meets inf or NaN.

The reference (and torch's forward) multiply every tap, padding included: a non-finite weight
times a padding zero is NaN in the output pixels whose tap reads the padding, and a non-finite
``gy`` times a padding zero is NaN in the weight gradient's taps that pair them. A backend whose
kernels run only over the taps inside the input (numba's, im2col's shifted GEMMs) puts those NaNs
back with :func:`padding_products`; a 3-D call whose 2-D calls leave out the taps in the depth's
padding (``_lift``) with :func:`depth_padding_products`. Rare, so plain NumPy.
"""

from __future__ import annotations

import math

import numpy as np


def all_finite(a) -> bool:
    """Whether ``a`` (C-contiguous) holds no inf or NaN, without a boolean mask of its size: any
    such element makes the sum of squares non-finite (one that overflows from finite values only
    sends the caller down its exact, slower path). A dot product, not ``a.sum()``: BLAS's is 0.5
    against 1.4 us on a small weight and 130 against 370 us on 2.4 M values. Not numba's
    ``_k._all_finite``: called from Python, a Numba function allocates a wrapper for its array
    argument, which the warm-call allocation test counts."""
    flat = a.reshape(-1)
    return math.isfinite(np.dot(flat, flat))


def not_finite(a, product, blind) -> bool:
    """Whether ``a`` (the forward's weight, or the weight gradient's gy) holds inf or NaN, found
    from ``product`` (y, or gw) where that is the smaller: a non-finite weight makes every output
    of its channel inf or NaN whose tap reads the input, a non-finite gy its channel's gradient at
    every tap that meets the input from its pixel. That is every one of them unless a tap reads
    only padding, or a pixel's window lies in the padding alone (``blind``:
    ``Geometry.has_blind_tap``, ``has_blind_output``), so a finite ``product`` vouches for ``a``.
    (One 7x7 image, 512 -> 512 channels: 25 K outputs scanned, not the weight's 2.4 M values,
    0.35-0.7 ms a call; a training batch, N=64 MNIST 5x5: 37 K values of gw, not 1.2 M of gy.)"""
    if product.size < a.size and not blind and all_finite(product):
        return False
    return not all_finite(a)


def in_padding(geom, ky, kx):
    """``(oh, ow)`` mask of the output pixels whose tap ``(ky, kx)`` reads the zero padding."""
    iy = np.arange(geom.oh) * geom.sh - geom.pt + ky * geom.dil_h
    ix = np.arange(geom.ow) * geom.sw - geom.pl + kx * geom.dil_w
    return ((iy < 0) | (iy >= geom.ih))[:, None] | ((ix < 0) | (ix >= geom.iw))[None, :]


def padding_products(out, bad, geom, forward):
    """NaN into ``out`` (the forward's ``y``, or the weight gradient) where the reference has
    ``inf * 0``; ``bad`` marks the non-finite weights (forward) or ``gy`` values (weight gradient)."""
    for idx in np.argwhere(bad):
        if forward:  # a non-finite weight w[co, ci, ky, kx]: every image, pixels reading padding
            co, _, ky, kx = idx
            out[:, co, in_padding(geom, ky, kx)] = np.nan
        else:  # a non-finite gy[n, co, oy, ox]: the weight taps whose input pixel is padding
            _, co, oy, ox = idx
            for ky in range(geom.kh):
                for kx in range(geom.kw):
                    if in_padding(geom, ky, kx)[oy, ox]:
                        out[co, :, ky, kx] = np.nan


def depth_padding_products(out, a, geom, runs, forward):
    """``padding_products`` of a 3-D call whose runs ``(o0, o1, k0, k1)`` of output planes left
    out their depth taps past ``k0:k1`` (all in the padding): NaN into y's planes of a run whose
    channel has a non-finite weight at those taps (``a`` the weight), or into the weight
    gradient's taps past ``k0:k1`` of a channel with a non-finite gy in the run's planes (``a``
    gy)."""
    kd = geom.kernel[0]
    for o0, o1, k0, k1 in runs:
        if (k0, k1) == (0, kd):
            continue
        if forward:  # w (C_out, Cg, kD, kH, kW): the taps left out
            left = np.concatenate([a[:, :, :k0], a[:, :, k1:]], axis=2)
            bad = ~np.isfinite(left).reshape(a.shape[0], -1).all(1)
            out[:, bad, o0:o1] = np.nan
        else:  # gy (N, C_out, OD, OH, OW): the run's planes
            bad = ~np.isfinite(a[:, :, o0:o1]).all(axis=(0, 2, 3, 4))
            out[bad, :, :k0] = np.nan
            out[bad, :, k1:] = np.nan
