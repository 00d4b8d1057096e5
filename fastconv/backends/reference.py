"""Reference backend: the tutorial's loop algorithm, generalised; fastconv's executable spec.

For every output pixel ``(oy, ox)`` and group, the receptive field of the padded input is one
strided slice, and the forward pass is its dot product with the group's kernels; the backward
pass walks the same loop and adds each product's contribution (``gw += patch * gy``,
``gx_patch += w * gy``), exactly as the tutorial derives it. Extra memory: one padded copy of
the input (or of its gradient). Slow on purpose (a Python loop over ``oh*ow*groups``); it is
never chosen by ``"auto"`` and is the one to read when in doubt about semantics.
"""

import numpy as np

NAME = "reference"


def _padded(x, geom):
    return np.pad(x, ((0, 0), (0, 0), (geom.pt, geom.pb), (geom.pl, geom.pr)))


def _windows(geom):
    """Yield ``(oy, ox, rows, cols)``: each output pixel and the slices of its receptive field."""
    span_h = geom.dil_h * (geom.kh - 1) + 1
    span_w = geom.dil_w * (geom.kw - 1) + 1
    for oy in range(geom.oh):
        for ox in range(geom.ow):
            top, left = oy * geom.sh, ox * geom.sw  # in padded coordinates
            yield (oy, ox, slice(top, top + span_h, geom.dil_h), slice(left, left + span_w, geom.dil_w))


def _group_slices(geom):
    """Yield ``(input-channel slice, output-channel slice)`` for each group."""
    for g in range(geom.groups):
        yield (slice(g * geom.c_in_g, (g + 1) * geom.c_in_g),
               slice(g * geom.c_out_g, (g + 1) * geom.c_out_g))


def forward(x, w, geom, bias=None):
    """y[n, co, oy, ox] = sum over (ci, ky, kx) of x_padded[n, ci, window] * w[co, ci, ky, kx],
    plus ``bias[co]`` when given."""
    xp = _padded(x, geom)
    y = np.zeros(geom.y_shape, dtype=x.dtype)
    for ci, co in _group_slices(geom):
        for oy, ox, rows, cols in _windows(geom):
            patch = xp[:, ci, rows, cols]  # (n, c_in_g, kh, kw)
            y[:, co, oy, ox] = np.tensordot(patch, w[co], axes=([1, 2, 3], [1, 2, 3]))
    if bias is not None:
        y += bias.reshape(-1, 1, 1)
    return y


def grad_input(gy, w, geom):
    """Each output pixel sends ``w * gy`` back onto its receptive field; the padding is cut off."""
    gxp = np.zeros((geom.n, geom.c_in, geom.ih + geom.pt + geom.pb, geom.iw + geom.pl + geom.pr),
                   dtype=gy.dtype)
    for ci, co in _group_slices(geom):
        for oy, ox, rows, cols in _windows(geom):
            gxp[:, ci, rows, cols] += np.tensordot(gy[:, co, oy, ox], w[co], axes=([1], [0]))
    return np.ascontiguousarray(gxp[:, :, geom.pt:geom.pt + geom.ih, geom.pl:geom.pl + geom.iw])


def grad_weight(gy, x, geom):
    """Each output pixel adds ``patch * gy`` to the gradient of the kernels that produced it."""
    xp = _padded(x, geom)
    gw = np.zeros(geom.w_shape, dtype=x.dtype)
    for ci, co in _group_slices(geom):
        for oy, ox, rows, cols in _windows(geom):
            gw[co] += np.tensordot(gy[:, co, oy, ox], xp[:, ci, rows, cols], axes=([0], [0]))
    return gw


def warmup(dtype):
    """Nothing to compile or prime."""
