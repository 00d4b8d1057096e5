"""Non-zero padding modes of :class:`fastconv.Conv2d` (torch's ``padding_mode``) and their gradients.

Each mode maps every padded row (column) to the input row (column) whose value it copies. The
forward pass gathers through that map; the backward pass scatter-adds through the same map, so
the gradient that lands in the border folds back onto the input positions it came from.
"""

from __future__ import annotations

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def source_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each of the ``before + size + after`` padded positions, the input position it copies."""
    pos = np.arange(-before, size + after)
    if mode == "reflect":  # mirror about the edge element, which is not repeated
        pos = np.abs(pos)
        return np.where(pos >= size, 2 * (size - 1) - pos, pos)
    if mode == "replicate":
        return np.clip(pos, 0, size - 1)
    if mode == "circular":
        return pos % size
    raise ValueError(f"unknown padding mode {mode!r}")


def check_size(size: int, before: int, after: int, mode: str, axis: str, fn: str) -> None:
    """torch's limits: reflect needs padding < size, circular padding <= size (one wrap at most)."""
    if mode == "reflect" and max(before, after) >= size:
        raise ValueError(f"{fn}: padding_mode='reflect' needs padding smaller than the input {axis} "
                         f"({size}); got padding {(before, after)}")
    if mode == "circular" and max(before, after) > size:
        raise ValueError(f"{fn}: padding_mode='circular' needs padding at most the input {axis} "
                         f"({size}); got padding {(before, after)}")


def pad(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``x`` (..., H, W) padded through the index maps of :func:`source_index`; a new array."""
    return np.ascontiguousarray(x[..., rows[:, np.newaxis], cols])


def fold(gxp: np.ndarray, rows: np.ndarray, cols: np.ndarray, ih: int, iw: int) -> np.ndarray:
    """The adjoint of :func:`pad`: each padded position's gradient added to the input it copies."""
    # One vectorised add per padded row, then per padded column: about twice as fast as np.add.at
    # with an index along one axis (measured on a 32x64x58x58 gradient), and as exact.
    g_rows = np.zeros((*gxp.shape[:-2], ih, gxp.shape[-1]), dtype=gxp.dtype)
    for p, src in enumerate(rows):
        g_rows[..., src, :] += gxp[..., p, :]
    gx = np.zeros((*gxp.shape[:-2], ih, iw), dtype=gxp.dtype)
    for p, src in enumerate(cols):
        gx[..., src] += g_rows[..., p]
    return gx
