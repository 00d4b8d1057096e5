"""Numba kernels of the ``winograd`` backend: the three F(m x m, 3x3) transforms, m = 2 or 4.

1-D transforms of Lavin & Gray (2016), interpolation points 0, +-1, +-2 and infinity, for
``y = A^T [(G g) * (B^T d)]``; a 2-D transform applies one along columns, then along rows, each
as a loop over a whole row of tiles so that it runs in SIMD lanes. Values are float64 inside a
transform, rounded once when stored. Tile rows are numbered ``R = n * tiles_h + tr``; tile
``(tr, tc)`` reads input rows ``tr*m - pt ...`` and columns ``tc*m - pl ...`` (zero outside the
image) and writes output rows ``tr*m ...``, columns ``tc*m ...`` (dropped past the output's edge).
Work arrays ``v`` and ``mm`` are flat: value ``xi`` of channel ``c`` and the block's tile ``t`` sits
at ``(xi * channels + c) * tiles + t``, the layout of ``alpha^2`` stacked (channels, tiles) matrices.
"""

import numpy as np

from ._numba_kernels import _CACHE, njit

# fastmath stays off: the error bounds in the README were measured with IEEE arithmetic.
_JIT = dict(nogil=True, cache=_CACHE, fastmath=False, error_model="numpy")


@njit(**_JIT)
def _g_rows(m, f0, f1, f2, out, n):  # pragma: no cover
    """out[i, :n] = sum over k of G[i, k] * fk[:n]."""
    if m == 2:
        for s in range(n):
            g0, g1, g2 = f0[s], f1[s], f2[s]
            out[0, s], out[1, s], out[2, s], out[3, s] = g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2
    else:
        for s in range(n):
            g0, g1, g2 = f0[s], f1[s], f2[s]
            out[0, s], out[1, s], out[2, s] = 0.25 * g0, -(g0 + g1 + g2) / 6.0, -(g0 - g1 + g2) / 6.0
            out[3, s], out[4, s] = (g0 + 2.0 * g1 + 4.0 * g2) / 24.0, (g0 - 2.0 * g1 + 4.0 * g2) / 24.0
            out[5, s] = g2


@njit(**_JIT)
def _filter_transform(wv, m, r0, r1, u):  # pragma: no cover
    """u[g, xi, r, s] = (G f G^T)[xi] for f = wv[g, r, s] (3x3), for ``r0 <= g*R + r < r1``."""
    nr, ns = wv.shape[1], wv.shape[2]
    a = m + 2
    f = np.empty((9, ns))
    t = np.empty((a, 3, ns))  # G applied down the kernel's columns
    for rr in range(r0, r1):
        g, r = rr // nr, rr % nr
        for s in range(ns):
            for tap in range(9):
                f[tap, s] = wv[g, r, s, tap // 3, tap % 3]
        for kx in range(3):
            _g_rows(m, f[kx], f[3 + kx], f[6 + kx], t[:, kx], ns)
        for i in range(a):
            _g_rows(m, t[i, 0], t[i, 1], t[i, 2], u[g, i * a:(i + 1) * a, r], ns)


@njit(**_JIT)
def _bt_columns(m, rows, cols, n):  # pragma: no cover
    """cols[i, :n] = sum over k of B^T[i, k] * rows[k, :n]."""
    if m == 2:
        for q in range(n):
            d0, d1, d2, d3 = rows[0, q], rows[1, q], rows[2, q], rows[3, q]
            cols[0, q], cols[1, q], cols[2, q], cols[3, q] = d0 - d2, d1 + d2, d2 - d1, d1 - d3
    else:
        for q in range(n):
            d0, d1, d2, d3, d4, d5 = rows[0, q], rows[1, q], rows[2, q], rows[3, q], rows[4, q], rows[5, q]
            cols[0, q], cols[1, q] = 4.0 * d0 - 5.0 * d2 + d4, d3 + d4 - 4.0 * (d1 + d2)
            cols[2, q], cols[3, q] = 4.0 * (d1 - d2) + d4 - d3, 2.0 * (d3 - d1) + d4 - d2
            cols[4, q], cols[5, q] = 2.0 * (d1 - d3) + d4 - d2, 4.0 * d1 - 5.0 * d3 + d5


@njit(**_JIT)
def _bt_columns_inside(m, xc, iy0, pl, cols, lo, hi):  # pragma: no cover
    """``_bt_columns`` of input rows iy0 .. iy0 + m + 1, all inside the plane ``xc``, read in place
    (columns ``lo <= q < hi``: the others stay zero)."""
    if m == 2:
        r0, r1, r2, r3 = xc[iy0], xc[iy0 + 1], xc[iy0 + 2], xc[iy0 + 3]
        for q in range(lo, hi):
            d0, d1, d2, d3 = np.float64(r0[q - pl]), np.float64(r1[q - pl]), np.float64(r2[q - pl]), r3[q - pl]
            cols[0, q], cols[1, q], cols[2, q], cols[3, q] = d0 - d2, d1 + d2, d2 - d1, d1 - d3
    else:
        r0, r1, r2, r3, r4, r5 = xc[iy0], xc[iy0 + 1], xc[iy0 + 2], xc[iy0 + 3], xc[iy0 + 4], xc[iy0 + 5]
        for q in range(lo, hi):
            d0, d1, d2 = np.float64(r0[q - pl]), np.float64(r1[q - pl]), np.float64(r2[q - pl])
            d3, d4, d5 = np.float64(r3[q - pl]), np.float64(r4[q - pl]), r5[q - pl]
            cols[0, q], cols[1, q] = 4.0 * d0 - 5.0 * d2 + d4, d3 + d4 - 4.0 * (d1 + d2)
            cols[2, q], cols[3, q] = 4.0 * (d1 - d2) + d4 - d3, 2.0 * (d3 - d1) + d4 - d2
            cols[4, q], cols[5, q] = 2.0 * (d1 - d3) + d4 - d2, 4.0 * d1 - 5.0 * d3 + d5


@njit(**_JIT)
def _input_transform(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, m, v):  # pragma: no cover
    """v[xi, c, t] = (B^T d B)[xi], d the input tile t of channel c0 + c, tile rows r0 .. r1."""
    ih, iw = x.shape[2], x.shape[3]
    a = m + 2
    wp = tiles_w * m + 2  # input columns that a row of tiles reads
    nt = (r1 - r0) * tiles_w
    step = cg * nt  # from one xi to the next
    lo, hi = min(max(0, pl), wp), max(min(wp, iw + pl), 0)  # the columns inside the image
    hi = max(lo, hi)
    rows = np.zeros((a, wp))
    cols = np.zeros((a, wp))
    for c in range(cg):
        for rr in range(r0, r1):
            bn, iy0 = rr // tiles_h, (rr % tiles_h) * m - pt
            xc = x[bn, c0 + c]
            if iy0 >= 0 and iy0 + a <= ih:  # no row of padding: the columns read x in place
                _bt_columns_inside(m, xc, iy0, pl, cols, lo, hi)
            else:
                for k in range(a):
                    row = rows[k]
                    if iy0 + k < 0 or iy0 + k >= ih:
                        row[:] = 0.0
                        continue
                    src = xc[iy0 + k]
                    row[:lo] = 0.0
                    for q in range(lo, hi):
                        row[q] = src[q - pl]
                    row[hi:] = 0.0
                _bt_columns(m, rows, cols, wp)
            base = c * nt + (rr - r0) * tiles_w
            for i in range(a):
                d = cols[i]
                o = v[i * a * step + base:]
                if m == 2:
                    for tc in range(tiles_w):
                        d0, d1, d2, d3 = d[2 * tc], d[2 * tc + 1], d[2 * tc + 2], d[2 * tc + 3]
                        o[tc], o[step + tc], o[2 * step + tc], o[3 * step + tc] = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                else:
                    for tc in range(tiles_w):
                        q = 4 * tc
                        d0, d1, d2, d3, d4, d5 = d[q], d[q + 1], d[q + 2], d[q + 3], d[q + 4], d[q + 5]
                        o[tc], o[step + tc] = 4.0 * d0 - 5.0 * d2 + d4, d3 + d4 - 4.0 * (d1 + d2)
                        o[2 * step + tc], o[3 * step + tc] = 4.0 * (d1 - d2) + d4 - d3, 2.0 * (d3 - d1) + d4 - d2
                        o[4 * step + tc], o[5 * step + tc] = 2.0 * (d1 - d3) + d4 - d2, 4.0 * d1 - 5.0 * d3 + d5


@njit(**_JIT)
def _output_transform(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y):  # pragma: no cover
    """y[n, k0 + k, tile] = A^T M A (+ bias[k0 + k] when ``bias`` is not empty), M the products of
    output channel k and the tile in ``mm``, tile rows r0 .. r1; pixels past y's edge are dropped.
    Returns whether a value written is inf or NaN (the caller then recomputes directly)."""
    oh, ow = y.shape[2], y.shape[3]
    a = m + 2
    nt = (r1 - r0) * tiles_w
    step = kg * nt
    across = np.empty((a, m, tiles_w))  # A^T applied along each row of every tile
    out = np.empty((m, tiles_w * m))
    bad = False
    for k in range(kg):
        b = bias[k0 + k] if bias.size else 0.0
        for rr in range(r0, r1):
            bn, oy = rr // tiles_h, (rr % tiles_h) * m
            base = k * nt + (rr - r0) * tiles_w
            for i in range(a):
                s = mm[i * a * step + base:]
                h = across[i]
                if m == 2:
                    for tc in range(tiles_w):
                        s0, s1, s2, s3 = s[tc], s[step + tc], s[2 * step + tc], s[3 * step + tc]
                        h[0, tc], h[1, tc] = np.float64(s0) + s1 + s2, np.float64(s1) - s2 - s3
                else:
                    for tc in range(tiles_w):
                        s0, s1, s2 = np.float64(s[tc]), np.float64(s[step + tc]), np.float64(s[2 * step + tc])
                        s3, s4, s5 = np.float64(s[3 * step + tc]), np.float64(s[4 * step + tc]), s[5 * step + tc]
                        p, q, r, u = s1 + s2, s1 - s2, s3 + s4, s3 - s4
                        h[0, tc], h[1, tc], h[2, tc], h[3, tc] = s0 + p + r, q + 2.0 * u, p + 4.0 * r, q + 8.0 * u + s5
            for j in range(m):  # A^T down the columns: output column j of every tile
                if m == 2:
                    for tc in range(tiles_w):
                        e0, e1, e2, e3 = across[0, j, tc], across[1, j, tc], across[2, j, tc], across[3, j, tc]
                        out[0, 2 * tc + j], out[1, 2 * tc + j] = e0 + e1 + e2, e1 - e2 - e3
                else:
                    for tc in range(tiles_w):
                        e0, e1, e2 = across[0, j, tc], across[1, j, tc], across[2, j, tc]
                        e3, e4, e5 = across[3, j, tc], across[4, j, tc], across[5, j, tc]
                        p, q, r, u = e1 + e2, e1 - e2, e3 + e4, e3 - e4
                        out[0, 4 * tc + j], out[1, 4 * tc + j] = e0 + p + r, q + 2.0 * u
                        out[2, 4 * tc + j], out[3, 4 * tc + j] = p + 4.0 * r, q + 8.0 * u + e5
            for i in range(min(m, oh - oy)):
                yr, o = y[bn, k0 + k, oy + i], out[i]
                for q in range(ow):
                    yr[q] = o[q] + b
                    bad |= yr[q] - yr[q] != 0.0  # inf or NaN, after rounding (float32 overflows)
    return bad
