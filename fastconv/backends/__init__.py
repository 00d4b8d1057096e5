"""The backend registry: which implementations exist, loading them, and the ``"auto"`` rule.

A backend is a module exposing ``NAME``, ``forward(x, w, geom)``, ``grad_input(gy, w, geom)``,
``grad_weight(gy, x, geom)`` and ``warmup(dtype)``. The caller (``fastconv.api``) guarantees
C-contiguous float32/float64 arrays of one dtype that agree with ``geom``; a backend returns new
C-contiguous arrays of that dtype, never mutates its inputs, never validates and never adds bias.
Adding a backend is one module plus one entry in ``_MODULES``; tests and benchmarks find it here.
"""

from __future__ import annotations

import importlib
import os
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


# The "auto" rule, from `fastconv bench --suite full --threads 2 --backends im2col,numba,torch
# --repeat 5`, two runs on the idle 2-core CI machine (2026-11-27 04:15, re-run 05:46 after
# im2col's depthwise and bias changes; the table is in the README's `backend="auto"` section).
# numba's packed direct loops are up to 1.7x faster than im2col on most shapes, depthwise ones
# 1.2-2.4x; im2col's GEMMs win where each image has few output pixels and many channels
# (r7-c512-k3: numba 1.5-2.2x slower; n1-r14-c256-k3, 196 pixels: 1.2-2.4x) and on 1x1 kernels
# (r14-c256-1x1-c1024: 1.15-1.24x), plain matrix products. r14-c256-k3 (196 pixels) is a tie.
# Calls of at most 1M multiply-accumulates go to numba whatever their shape: im2col's dozen
# NumPy calls cost more than the arithmetic there.
AUTO_NUMBA_MAX_MACS = 1_000_000  # at or below: numba (single-r32-k3 has 221k; mnist-r28-k5 29M)
AUTO_IM2COL_BELOW_PIXELS = 256  # output pixels per image below which im2col runs (r7: 49, r14: 196)
AUTO_MEASURE_ENV = "FASTCONV_AUTO"  # "measure": time the candidates once per shape, cache the fastest

_measured: dict[tuple, str] = {}


def choose(geom: Geometry, dtype) -> str:
    """The ``"auto"`` rule: the fastest available backend for this call, never ``"reference"``
    while another is installed.

    A cheap rule on the geometry (see the constants above), or with ``FASTCONV_AUTO=measure`` in
    the environment, the fastest candidate timed on this call's shapes, once per shape and dtype.
    """
    names = [name for name in available() if name != "reference"]
    if not names:
        return available()[0]
    if len(names) == 1:
        return names[0]
    if os.environ.get(AUTO_MEASURE_ENV) == "measure":
        return _measured_choice(geom, dtype, names)
    if "numba" in names and "im2col" in names:
        if geom.groups == geom.c_in > 1 or geom.macs <= AUTO_NUMBA_MAX_MACS:  # depthwise, or small
            return "numba"
        pointwise = geom.kh == geom.kw == 1
        return "im2col" if pointwise or geom.oh * geom.ow < AUTO_IM2COL_BELOW_PIXELS else "numba"
    return names[0]


def _measured_choice(geom: Geometry, dtype, names: list[str]) -> str:
    """The candidate with the least forward + both gradients time on random data of ``geom``'s
    shapes (a warm-up call, then the best of 3), cached per geometry and dtype."""
    import time

    import numpy as np

    key = (geom, np.dtype(dtype).str, tuple(names))
    if key not in _measured:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(geom.x_shape).astype(dtype)
        w = rng.standard_normal(geom.w_shape).astype(dtype)
        gy = rng.standard_normal(geom.y_shape).astype(dtype)
        best = {}
        for name in names:
            impl = get(name)
            impl.warmup(np.dtype(dtype))

            def run(impl=impl):
                impl.forward(x, w, geom)
                impl.grad_input(gy, w, geom)
                impl.grad_weight(gy, x, geom)
            run()
            times = []
            for _ in range(3):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            best[name] = min(times)
        _measured[key] = min(best, key=best.get)
    return _measured[key]


class _CallableRegistry(ModuleType):
    """Lets ``fastconv.backends`` be both this registry module and the public ``backends()``.

    API.md makes ``fastconv.backends()`` a function, and the registry package has the same name;
    a callable module keeps ``fastconv.backends.NAMES`` and ``fastconv.backends()`` both working.
    """

    def __call__(self) -> list[str]:
        return available()


sys.modules[__name__].__class__ = _CallableRegistry
