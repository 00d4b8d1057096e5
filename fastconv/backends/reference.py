"""Reference backend: the tutorial's loop algorithm, generalised to 1, 2 or 3 spatial axes;
fastconv's executable spec.

For every output position and group, the receptive field of the padded input is one strided
slice per axis, and the forward pass is its dot product with the group's kernels; the backward
pass walks the same loop and adds each product's contribution (``gw += patch * gy``,
``gx_patch += w * gy``), exactly as the tutorial derives it. Extra memory: one padded copy of
the input (or of its gradient). Slow on purpose (a Python loop over every output position and
group); ``"auto"`` never picks it while another backend is installed, and it is the one to read
when in doubt about semantics.
"""

import itertools

import numpy as np

NAME = "reference"


def supports(geom, dtype, precision):
    """Every call: it is the specification."""
    return None


def _padded(x, geom):
    return np.pad(x, ((0, 0), (0, 0), *geom.padding))


def _windows(geom):
    """Yield ``(position, slices)``: each output position and the slices of its receptive field."""
    for pos in itertools.product(*map(range, geom.out_size)):
        # in padded coordinates, output o reads o*stride + k*dilation for k < kernel
        yield pos, tuple(slice(o * s, o * s + d * (k - 1) + 1, d)
                         for o, s, k, d in zip(pos, geom.stride, geom.kernel, geom.dilation))


def _group_slices(geom):
    """Yield ``(input-channel slice, output-channel slice)`` for each group."""
    for g in range(geom.groups):
        yield (slice(g * geom.c_in_g, (g + 1) * geom.c_in_g),
               slice(g * geom.c_out_g, (g + 1) * geom.c_out_g))


def forward(x, w, geom, bias=None):
    """y[n, co, pos] = sum over (ci, k...) of x_padded[n, ci, window] * w[co, ci, k...],
    plus ``bias[co]`` when given."""
    xp = _padded(x, geom)
    y = np.zeros(geom.y_shape, dtype=x.dtype)
    axes = list(range(1, geom.ndim + 2))  # (ci, k...) of a patch and of a kernel
    for ci, co in _group_slices(geom):
        for pos, window in _windows(geom):
            patch = xp[(slice(None), ci, *window)]  # (n, c_in_g, k...)
            y[(slice(None), co, *pos)] = np.tensordot(patch, w[co], axes=(axes, axes))
    if bias is not None:
        y += bias.reshape(-1, *(1,) * geom.ndim)
    return y


def grad_input(gy, w, geom):
    """Each output position sends ``w * gy`` back onto its receptive field; the padding is cut off."""
    gxp = np.zeros((geom.n, geom.c_in, *geom.padded_size), dtype=gy.dtype)
    for ci, co in _group_slices(geom):
        for pos, window in _windows(geom):
            gxp[(slice(None), ci, *window)] += np.tensordot(gy[(slice(None), co, *pos)], w[co], axes=([1], [0]))
    return np.ascontiguousarray(gxp[(slice(None), slice(None), *geom.interior)])


def grad_weight(gy, x, geom):
    """Each output position adds ``patch * gy`` to the gradient of the kernels that produced it."""
    xp = _padded(x, geom)
    gw = np.zeros(geom.w_shape, dtype=x.dtype)
    for ci, co in _group_slices(geom):
        for pos, window in _windows(geom):
            gw[co] += np.tensordot(gy[(slice(None), co, *pos)], xp[(slice(None), ci, *window)], axes=([0], [0]))
    return gw


def warmup(dtype):
    """Nothing to compile or prime."""
