"""The backend registry: which implementations exist, loading them, and the ``"auto"`` rule.

A backend is a module exposing ``NAME``, ``forward(x, w, geom)``, ``grad_input(gy, w, geom)``,
``grad_weight(gy, x, geom)`` and ``warmup(dtype)``. The caller (``fastconv.api``) guarantees
C-contiguous float32/float64 arrays of one dtype that agree with ``geom``; a backend returns new
C-contiguous arrays of that dtype, never mutates its inputs, never validates and never adds bias.
Adding a backend is one module plus one entry in ``_MODULES``; tests and benchmarks find it here.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from ..geometry import Geometry

_MODULES = {
    "reference": "fastconv.backends.reference",
    "im2col": "fastconv.backends.im2col",
    "numba": "fastconv.backends.numba_jit",
}
NAMES: tuple[str, ...] = tuple(_MODULES)

_loaded: dict[str, ModuleType] = {}
_failed: dict[str, ImportError] = {}


def _load(name: str) -> ModuleType | None:
    if name not in _loaded and name not in _failed:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except ImportError as exc:  # an optional dependency (numba) or a backend not written yet
            _failed[name] = exc
    return _loaded.get(name)


def available() -> list[str]:
    """Names of the backends that import on this machine, in registry order."""
    return [name for name in NAMES if _load(name) is not None]


def check_name(name, fn: str = "conv2d") -> None:
    """Raise ``ValueError`` for anything but ``"auto"`` or a registered backend name."""
    if name != "auto" and name not in NAMES:
        choices = ", ".join(repr(n) for n in ("auto", *NAMES))
        raise ValueError(f"{fn}: unknown `backend` {name!r}; choose from {choices}")


def get(name: str) -> ModuleType:
    """The backend module for ``name``; ``ImportError`` saying what to install if it cannot load."""
    check_name(name)
    module = _load(name)
    if module is None:
        raise ImportError(f"backend {name!r} is not available: {_failed[name]}") from _failed[name]
    return module


def choose(geom: Geometry, dtype) -> str:
    """The ``"auto"`` rule: the fastest available backend for this call, never ``"reference"``
    while another is installed."""
    names = available()
    for preferred in ("im2col", "numba"):
        if preferred in names:
            return preferred
    return names[0]


class _CallableRegistry(ModuleType):
    """Lets ``fastconv.backends`` be both this registry module and the public ``backends()``.

    API.md makes ``fastconv.backends()`` a function, and the registry package has the same name;
    a callable module keeps ``fastconv.backends.NAMES`` and ``fastconv.backends()`` both working.
    """

    def __call__(self) -> list[str]:
        return available()


sys.modules[__name__].__class__ = _CallableRegistry
