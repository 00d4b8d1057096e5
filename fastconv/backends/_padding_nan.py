"""What the reference computes where a kernel that skips the zero padding meets inf or NaN.

The reference (and torch's forward) multiply every tap, padding included: a non-finite weight
times a padding zero is NaN in the output pixels whose tap reads the padding, and a non-finite
``gy`` times a padding zero is NaN in the weight gradient's taps that pair them. A backend whose
kernels run only over the taps inside the input (numba's, im2col's shifted GEMMs) puts those NaNs
back with :func:`padding_products`. Rare, so plain NumPy.
"""

from __future__ import annotations

import numpy as np


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
