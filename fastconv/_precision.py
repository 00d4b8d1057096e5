"""How much rounding error fastconv's fast algorithms may add: ``"highest"`` or ``"high"``.

API.md's rule: error is the root-mean-square difference from an exact result, relative to the
result's root-mean-square, in each dtype's own epsilon. ``"highest"`` (the default) admits only
algorithms within twice a direct sum's error; ``"high"`` admits larger, documented bounds (Winograd
F(4x4,3x3)). Backends read the level through ``supports(geom, dtype, precision)``; the setting is
per thread, like :func:`fastconv.threads`, so that one thread's ``with precision("high")`` never
changes what another thread computes.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._threads import thread_local

PRECISIONS = ("highest", "high")
# Largest |got - want| / max|want| that counts as a correct result (the tests' oracle and the
# benchmark's check read this one table). float32 sums of a few thousand products carry relative
# errors near 1e-6 on each side; 1e-4 leaves room without hiding a bug (a wrong index gives
# errors of order 1). Winograd's larger, documented bounds are within it at both levels.
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
DEFAULT = "highest"

_default = DEFAULT  # set_precision's process-wide level, seen by threads that never chose one
_local = thread_local(level=None)  # a `with precision(...)` block's level, for its own thread only


def _check(level, fn: str) -> str:
    if level not in PRECISIONS:
        raise ValueError(f"{fn}: `level` must be one of {', '.join(map(repr, PRECISIONS))}; got {level!r}")
    return level


def get_precision() -> str:
    """The precision level that calls from this thread run at."""
    return _local.level or _default


def set_precision(level: str) -> None:
    """Set the precision level of every later call: ``"highest"`` (default) or ``"high"``.

    A ``with precision(...)`` block in progress keeps its own level until it ends.

    Raises
    ------
    ValueError
        When ``level`` is not one of ``"highest"``, ``"high"``.
    """
    global _default
    _default = _check(level, "set_precision")


@contextlib.contextmanager
def precision(level: str):
    """Run the calls inside the block, in this thread, at precision ``level``.

    Examples
    --------
    >>> import fastconv as fc
    >>> with fc.precision("high"):
    ...     fc.get_precision()
    'high'
    >>> fc.get_precision()
    'highest'
    """
    _check(level, "precision")
    previous = _local.level
    _local.level = level
    try:
        yield level
    finally:
        _local.level = previous
