"""Numba kernels of the ``winograd`` backend: the three F(m x m, 3x3) transforms, m = 2 or 4.

1-D transforms (Lavin & Gray 2016, interpolation points 0, +-1, +-2 and infinity) for
``y = A^T [(G g) * (B^T d)]``; a 2-D transform applies one along rows, then along columns.
Each works on float64 scalars and rounds once on the store, so a transform adds one rounding to
each value it writes. Tiles are numbered ``t = (n * tiles_h + tr) * tiles_w + tc``; tile ``t``
reads input rows ``tr*m - pt ...`` and columns ``tc*m - pl ...`` (zero outside the image) and
writes output rows ``tr*m ...``, columns ``tc*m ...`` (dropped past the output's edge).
Work arrays ``v`` and ``mm`` are flat: value ``xi`` of channel ``c``, tile ``t0 + j`` sits at
``(xi * channels + c) * (t1 - t0) + j``, the layout of ``alpha^2`` stacked (channels, tiles) matrices.
"""

import numpy as np

from ._numba_kernels import _CACHE, njit

# fastmath stays off: the error bounds in the README were measured with IEEE arithmetic.
_JIT = dict(nogil=True, cache=_CACHE, fastmath=False, error_model="numpy")


# ------------------------------------------------------------------ 1-D transforms, m = 2 and 4

@njit(**_JIT)
def _g4(g0, g1, g2):  # pragma: no cover
    """G g for F(2, 3)."""
    return g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2


@njit(**_JIT)
def _g6(g0, g1, g2):  # pragma: no cover
    """G g for F(4, 3)."""
    return (0.25 * g0, -(g0 + g1 + g2) / 6.0, -(g0 - g1 + g2) / 6.0,
            (g0 + 2.0 * g1 + 4.0 * g2) / 24.0, (g0 - 2.0 * g1 + 4.0 * g2) / 24.0, g2)


@njit(**_JIT)
def _bt4(d0, d1, d2, d3):  # pragma: no cover
    """B^T d for F(2, 3)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(**_JIT)
def _bt6(d0, d1, d2, d3, d4, d5):  # pragma: no cover
    """B^T d for F(4, 3)."""
    return (4.0 * d0 - 5.0 * d2 + d4, d3 + d4 - 4.0 * (d1 + d2), 4.0 * (d1 - d2) + d4 - d3,
            2.0 * (d3 - d1) + d4 - d2, 2.0 * (d1 - d3) + d4 - d2, 4.0 * d1 - 5.0 * d3 + d5)


@njit(**_JIT)
def _at4(s0, s1, s2, s3):  # pragma: no cover
    """A^T s for F(2, 3)."""
    return s0 + s1 + s2, s1 - s2 - s3


@njit(**_JIT)
def _at6(s0, s1, s2, s3, s4, s5):  # pragma: no cover
    """A^T s for F(4, 3)."""
    p, q, r, u = s1 + s2, s1 - s2, s3 + s4, s3 - s4
    return s0 + p + r, q + 2.0 * u, p + 4.0 * r, q + 8.0 * u + s5


# ------------------------------------------------------------------------ filter transform

@njit(**_JIT)
def _filter_transform(w, groups, m, transposed, k0, k1, u):  # pragma: no cover
    """u[g, xi, k, c] = (G f G^T)[xi] with f = w[g*kg + k, c] for rows ``k0 <= g*kg + k < k1`` of w;
    ``transposed``: u[g, xi, c, k] with f flipped in both axes (the input gradient's kernel)."""
    kg, cg = w.shape[0] // groups, w.shape[1]
    fl = 2 if transposed else 0  # tap (i, j) of f is w's (|fl - i|, |fl - j|)
    for kk in range(k0, k1):
        g, k = kk // kg, kk % kg
        for c in range(cg):
            f = w[kk, c]
            dst = u[g, :, c, k] if transposed else u[g, :, k, c]
            f00, f01, f02 = np.float64(f[fl, fl]), np.float64(f[fl, 1]), np.float64(f[fl, 2 - fl])
            f10, f11, f12 = np.float64(f[1, fl]), np.float64(f[1, 1]), np.float64(f[1, 2 - fl])
            f20, f21, f22 = np.float64(f[2 - fl, fl]), np.float64(f[2 - fl, 1]), np.float64(f[2 - fl, 2 - fl])
            if m == 2:
                r0, r1, r2 = _g4(f00, f01, f02), _g4(f10, f11, f12), _g4(f20, f21, f22)
                for j in range(4):
                    col = _g4(r0[j], r1[j], r2[j])
                    for i in range(4):
                        dst[i * 4 + j] = col[i]
            else:
                r0, r1, r2 = _g6(f00, f01, f02), _g6(f10, f11, f12), _g6(f20, f21, f22)
                for j in range(6):
                    col = _g6(r0[j], r1[j], r2[j])
                    for i in range(6):
                        dst[i * 6 + j] = col[i]


# ------------------------------------------------------------------------- input transform

@njit(**_JIT)
def _px(xc, iy, ix, ih, iw, inside):  # pragma: no cover
    """Input pixel (iy, ix) of one channel plane as float64; zero outside unless ``inside``."""
    if inside or (0 <= iy < ih and 0 <= ix < iw):
        return np.float64(xc[iy, ix])
    return 0.0


@njit(**_JIT)
def _row4(xc, iy, ix, ih, iw, inside):  # pragma: no cover
    """B^T of the 4 pixels from (iy, ix) along a row."""
    return _bt4(_px(xc, iy, ix, ih, iw, inside), _px(xc, iy, ix + 1, ih, iw, inside),
                _px(xc, iy, ix + 2, ih, iw, inside), _px(xc, iy, ix + 3, ih, iw, inside))


@njit(**_JIT)
def _row6(xc, iy, ix, ih, iw, inside):  # pragma: no cover
    """B^T of the 6 pixels from (iy, ix) along a row."""
    return _bt6(_px(xc, iy, ix, ih, iw, inside), _px(xc, iy, ix + 1, ih, iw, inside),
                _px(xc, iy, ix + 2, ih, iw, inside), _px(xc, iy, ix + 3, ih, iw, inside),
                _px(xc, iy, ix + 4, ih, iw, inside), _px(xc, iy, ix + 5, ih, iw, inside))


@njit(**_JIT)
def _input_transform(x, c0, cg, t0, t1, tiles_h, tiles_w, pt, pl, m, v):  # pragma: no cover
    """v[xi, c, t - t0] = (B^T d B)[xi], d the tile t of input channel c0 + c (see the module)."""
    ih, iw = x.shape[2], x.shape[3]
    a = m + 2
    nt = t1 - t0
    step = cg * nt  # from one xi to the next
    for c in range(cg):
        for t in range(t0, t1):
            bn, r = t // (tiles_h * tiles_w), t % (tiles_h * tiles_w)
            iy, ix = (r // tiles_w) * m - pt, (r % tiles_w) * m - pl
            inside = iy >= 0 and ix >= 0 and iy + a <= ih and ix + a <= iw
            xc = x[bn, c0 + c]
            base = c * nt + t - t0
            if m == 2:
                q0, q1 = _row4(xc, iy, ix, ih, iw, inside), _row4(xc, iy + 1, ix, ih, iw, inside)
                q2, q3 = _row4(xc, iy + 2, ix, ih, iw, inside), _row4(xc, iy + 3, ix, ih, iw, inside)
                for j in range(4):
                    col = _bt4(q0[j], q1[j], q2[j], q3[j])
                    for i in range(4):
                        v[base + (i * 4 + j) * step] = col[i]
            else:
                q0, q1 = _row6(xc, iy, ix, ih, iw, inside), _row6(xc, iy + 1, ix, ih, iw, inside)
                q2, q3 = _row6(xc, iy + 2, ix, ih, iw, inside), _row6(xc, iy + 3, ix, ih, iw, inside)
                q4, q5 = _row6(xc, iy + 4, ix, ih, iw, inside), _row6(xc, iy + 5, ix, ih, iw, inside)
                for j in range(6):
                    col = _bt6(q0[j], q1[j], q2[j], q3[j], q4[j], q5[j])
                    for i in range(6):
                        v[base + (i * 6 + j) * step] = col[i]


# ------------------------------------------------------------------------ output transform

@njit(**_JIT)
def _output_transform(mm, k0, kg, t0, t1, tiles_h, tiles_w, m, bias, y):  # pragma: no cover
    """y[n, k0 + k, tile t] = A^T M A (+ bias[k0 + k] when ``bias`` is not empty), M the products
    of output channel k and tile t in ``mm`` (see the module); pixels past y's edge are dropped.
    Returns how many values written are inf or NaN (the caller then recomputes them directly)."""
    oh, ow = y.shape[2], y.shape[3]
    a = m + 2
    nt = t1 - t0
    step = kg * nt
    bad = 0
    for k in range(kg):
        b = np.float64(bias[k0 + k]) if bias.size else 0.0
        for t in range(t0, t1):
            bn, r = t // (tiles_h * tiles_w), t % (tiles_h * tiles_w)
            oy, ox = (r // tiles_w) * m, (r % tiles_w) * m
            yc = y[bn, k0 + k]
            s = mm[k * nt + t - t0:]
            if m == 2:
                q0 = _at4(np.float64(s[0]), np.float64(s[step]), np.float64(s[2 * step]), np.float64(s[3 * step]))
                q1 = _at4(np.float64(s[4 * step]), np.float64(s[5 * step]), np.float64(s[6 * step]), np.float64(s[7 * step]))
                q2 = _at4(np.float64(s[8 * step]), np.float64(s[9 * step]), np.float64(s[10 * step]), np.float64(s[11 * step]))
                q3 = _at4(np.float64(s[12 * step]), np.float64(s[13 * step]), np.float64(s[14 * step]), np.float64(s[15 * step]))
                for j in range(2):
                    col = _at4(q0[j], q1[j], q2[j], q3[j])
                    for i in range(2):
                        if oy + i < oh and ox + j < ow:
                            yc[oy + i, ox + j] = col[i] + b
                            bad += not np.isfinite(yc[oy + i, ox + j])  # after rounding: float32 overflows
            else:
                q0 = _at6(np.float64(s[0]), np.float64(s[step]), np.float64(s[2 * step]), np.float64(s[3 * step]),
                          np.float64(s[4 * step]), np.float64(s[5 * step]))
                q1 = _at6(np.float64(s[6 * step]), np.float64(s[7 * step]), np.float64(s[8 * step]), np.float64(s[9 * step]),
                          np.float64(s[10 * step]), np.float64(s[11 * step]))
                q2 = _at6(np.float64(s[12 * step]), np.float64(s[13 * step]), np.float64(s[14 * step]), np.float64(s[15 * step]),
                          np.float64(s[16 * step]), np.float64(s[17 * step]))
                q3 = _at6(np.float64(s[18 * step]), np.float64(s[19 * step]), np.float64(s[20 * step]), np.float64(s[21 * step]),
                          np.float64(s[22 * step]), np.float64(s[23 * step]))
                q4 = _at6(np.float64(s[24 * step]), np.float64(s[25 * step]), np.float64(s[26 * step]), np.float64(s[27 * step]),
                          np.float64(s[28 * step]), np.float64(s[29 * step]))
                q5 = _at6(np.float64(s[30 * step]), np.float64(s[31 * step]), np.float64(s[32 * step]), np.float64(s[33 * step]),
                          np.float64(s[34 * step]), np.float64(s[35 * step]))
                for j in range(4):
                    col = _at6(q0[j], q1[j], q2[j], q3[j], q4[j], q5[j])
                    for i in range(4):
                        if oy + i < oh and ox + j < ow:
                            yc[oy + i, ox + j] = col[i] + b
                            bad += not np.isfinite(yc[oy + i, ox + j])  # after rounding: float32 overflows
    return bad
