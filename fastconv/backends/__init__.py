"""The backend registry: which implementations exist, loading them, and ``"auto"``'s choice (its
table of rows: ``_auto_rules``).

The backend contract, written once (``tests/test_registry.py`` checks every registered backend
against ``CONTRACT`` with ``inspect.signature``). A backend is a module with::

    NAME = "name"                            # as in backend="name", the CLI and test ids
    def supports(geom, dtype, precision):    # None if it runs this call, else the reason (a short phrase)
    def forward(x, w, geom, bias=None):      # y: new array of geom.y_shape and x.dtype; adds the bias
    def grad_input(gy, w, geom):             # gx: new array shaped like x (also the transposed conv)
    def grad_weight(gy, x, geom):            # gw: new array shaped like w
    def warmup(dtype):                       # compile or prime caches on a tiny problem; may do nothing

and optionally (``OPTIONAL``)::

    def ready(dtype):                 # False while its kernels for dtype still compile: "auto" runs another
    def whole_choices(geom, dtype):   # the kernels it runs this call on, where size decides (picklable)
    def choosing_as(choices):         # a context: calls on this thread run those, whatever their size

``fastconv.dask`` asks ``whole_choices`` on the whole array and runs each chunk's call under
``choosing_as``, so that a chunk runs the kernels the whole array's call runs (and where those sum
each element's terms in one order, gives the same bits). The bias goes into ``forward`` because a
backend can add it while the output is in cache. The caller (``fastconv.api``) has validated the
call, asked ``supports`` (``precision`` is ``"highest"`` or ``"high"``, see ``fastconv._precision``)
and passes batched, C-contiguous, channels-first arrays of one float dtype (float32 or float64)
that agree with ``geom`` (1, 2 or 3 spatial axes); a backend never mutates its inputs and never
re-validates. Adding a backend is one module plus one entry in ``_MODULES`` (or, from another
package, an entry point in the group ``fastconv.backends``); tests, benchmarks, the gate and
``"auto"`` find it here.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from .._precision import get_precision
from .._threads import call_threads
from ..geometry import Geometry
from ._auto_rules import AUTO_DTYPE_RULES, AUTO_PASS_RULES, AUTO_RULES, _past_small

# (``_order`` reads auto's tables by the names above, in this module: a test or plugin replaces one here)

_MODULES = {
    "reference": "fastconv.backends.reference",
    "im2col": "fastconv.backends.im2col",
    "numba": "fastconv.backends.numba_jit",
    "winograd": "fastconv.backends.winograd",
}
ENTRY_POINT_GROUP = "fastconv.backends"  # installed packages add backends as name = "module.path"

# (function, its parameters): the contract above, as the test checks it.
CONTRACT = {
    "supports": ("geom", "dtype", "precision"),
    "forward": ("x", "w", "geom", "bias"),
    "grad_input": ("gy", "w", "geom"),
    "grad_weight": ("gy", "x", "geom"),
    "warmup": ("dtype",),
}
OPTIONAL = {
    "ready": ("dtype",),
    "whole_choices": ("geom", "dtype"),
    "choosing_as": ("choices",),
}


def _entry_points() -> dict[str, str]:
    """Backends that installed packages declare; none of them may replace a built-in name."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _MODULES}


_MODULES.update(_entry_points())
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


_available: list = [None, []]  # (what it was read from, the names): asked on every call (``generation``)


def available() -> list[str]:
    """Names of the backends that import on this machine, in registry order."""
    if _available[0] != (NAMES, len(_loaded), len(_failed)):  # once every name is tried, only a test changes these
        names = [name for name in NAMES if _load(name) is not None]
        _available[:] = (NAMES, len(_loaded), len(_failed)), names
    return list(_available[1])


def check_name(name, fn: str | None = None) -> None:
    """Raise ``ValueError`` for anything but ``"auto"`` or a registered backend name (the message
    starts with ``fn``, when given)."""
    if name != "auto" and name not in NAMES:
        choices = ", ".join(repr(n) for n in ("auto", *NAMES))
        raise ValueError(f"{fn + ': ' if fn else ''}unknown `backend` {name!r}; choose from {choices}")


def get(name: str) -> ModuleType:
    """The backend module for ``name``; ``ImportError`` saying what to install if it cannot load."""
    check_name(name)
    module = _load(name)
    if module is None:
        raise ImportError(f"backend {name!r} is not available: {_failed[name]}") from _failed[name]
    return module


def refusal(name: str, geom: Geometry, dtype, precision: str | None = None) -> str | None:
    """Why backend ``name`` cannot run this call (its ``supports``), or None when it can."""
    return get(name).supports(geom, dtype, precision or get_precision())


_ready_seen: set[tuple] = set()  # (backend, dtype) found ready: compiled code stays compiled


def _ready(name: str, dtype) -> bool:
    if (name, dtype) in _ready_seen:  # asked on every auto call: a set lookup, not a dtype's name
        return True
    ready = getattr(_load(name), "ready", None)
    if ready is None or ready(dtype):
        _ready_seen.add((name, dtype))
        return True
    return False


PASSES = ("forward", "grad_input", "grad_weight")  # auto's rows may differ by pass (``AUTO_PASS_RULES``)

AUTO_MEASURE_ENV = "FASTCONV_AUTO"  # "measure": time the candidates once per shape, cache the fastest

_measured: dict[str, str] = {}  # FASTCONV_AUTO=measure's choices, keyed by the call's repr


# The candidates' cache, keyed by (geometry, dtype, precision, pass, threads): ~10 us of a small
# call otherwise. The threads, because rules read them (numba's patches over few pixels split the
# output channels only among two or more, ``numba_jit.patch_rows``; ``pixel_tiles`` alike): a pick
# made on two threads had stayed after ``set_num_threads(1)``.
# Each entry: the ranked names and auto's settled pick (the best candidate, once it is ready: a
# compiled backend stays compiled). It holds for one object of each rule table and one list of
# available backends (``_ranked_for``; a test or plugin that changes either empties it). Not
# keyed by those two: hashing the rules' nested tuples on every call cost 2 us; auto's whole
# cost over the backend it picks went from 5 to about 2 us a call.
_ranked: dict[tuple, list] = {}
_ranked_for: list = [None, None, None, None, 0]  # the three rule tables and the names it holds for; a generation


def generation() -> int:
    """A number that changes whenever what auto's cached choices rest on may have changed (the
    rules, the available backends), emptying the cache then. ``fastconv.api`` keeps the calls it has
    validated, with their backend, for as long as this number stays (``api._validated``)."""
    names = available()
    if (_ranked_for[0] is not AUTO_RULES or _ranked_for[1] is not AUTO_PASS_RULES
            or _ranked_for[2] is not AUTO_DTYPE_RULES or _ranked_for[3] != names):
        _ranked.clear()
        _ranked_for[:] = AUTO_RULES, AUTO_PASS_RULES, AUTO_DTYPE_RULES, names, _ranked_for[4] + 1
    return _ranked_for[4]


def candidates(geom: Geometry, dtype, precision: str | None = None, pass_: str = "forward") -> list[str]:
    """The backends that ``"auto"`` may run for this call's ``pass_`` (one of ``PASSES``), best
    first by ``AUTO_DTYPE_RULES``, ``AUTO_PASS_RULES`` and ``AUTO_RULES`` (``_order``)."""
    return list(_entry(geom, dtype, precision, pass_)[0])


def _order(geom: Geometry, dtype, pass_: str) -> tuple[str, ...]:
    """The backends in ``"auto"``'s order for ``pass_``: the first row that holds, of
    ``AUTO_DTYPE_RULES`` for ``dtype`` and ``AUTO_PASS_RULES`` for the pass (past depthwise and
    small calls), then of ``AUTO_RULES``."""
    if pass_ not in PASSES:
        raise ValueError(f"pass must be one of {PASSES}; got {pass_!r}")
    past_small = _past_small(geom)
    if AUTO_DTYPE_RULES and past_small:
        import numpy as np

        name = np.dtype(dtype).name
        for rule_dtype, rule_pass, _, applies, order in AUTO_DTYPE_RULES:
            if rule_dtype == name and rule_pass in ("*", pass_) and applies(geom):
                return order
    if past_small:
        for rule_pass, _, applies, order in AUTO_PASS_RULES:
            if rule_pass == pass_ and applies(geom):
                return order
    return next(order for _, applies, order in AUTO_RULES if applies(geom))


def _entry(geom: Geometry, dtype, precision: str | None, pass_: str = "forward") -> list:
    """``[candidates, settled pick or None]``, the cached entry itself (``choose`` reads it on
    every auto call); its list of names is not to be changed."""
    precision = precision or get_precision()
    generation()
    key = (geom, getattr(dtype, "str", dtype), precision, pass_, call_threads())
    entry = _ranked.get(key)
    if entry is None:
        names = [name for name in _ranked_for[3] if _load(name).supports(geom, dtype, precision) is None]
        prefer = _order(geom, dtype, pass_)
        rank = {name: i for i, name in enumerate(prefer)}
        names.sort(key=lambda name: (name == "reference", rank.get(name, len(rank))))
        if len(_ranked) >= 1024:  # a bound, not an LRU: long-running callers see few shapes
            _ranked.clear()
        _ranked[key] = entry = [names, None]
    return entry


def choose(geom: Geometry, dtype, precision: str | None = None, pass_: str = "forward") -> str:
    """The ``"auto"`` rule: the best candidate for this call's ``pass_`` (``PASSES``; see
    ``_order``), never ``"reference"`` while another backend supports
    the call, and never one still compiling while another is ready.

    With ``FASTCONV_AUTO=measure`` in the environment, the fastest candidate timed on this call's
    shapes instead (forward and both gradients together: one backend for every pass), once per
    shape, dtype and precision.
    """
    entry = _entry(geom, dtype, precision, pass_)
    measure = measuring()
    if entry[1] is not None and not measure:
        return entry[1]
    names = entry[0]
    if not names:
        raise ValueError(f"no installed backend supports this call ({geom}); installed: {available()}")
    fast = names[:-1] if len(names) > 1 and names[-1] == "reference" else names  # (ranked last)
    if len(fast) > 1 and measure:
        return _measured_choice(geom, dtype, sorted(fast))  # every pass's order: one timing
    if _ready(fast[0], dtype):
        entry[1] = fast[0]  # settled
        return fast[0]
    return next((name for name in fast[1:] if _ready(name, dtype)), fast[0])


try:  # the variable as os.environ keeps it: bytes on POSIX, upper-case str on Windows
    _MEASURE_ITEM = os.environ.encodekey(AUTO_MEASURE_ENV), os.environ.encodevalue("measure")
except AttributeError:  # not CPython's os.environ
    _MEASURE_ITEM = None


def measuring() -> bool:
    """Whether ``FASTCONV_AUTO=measure`` is set now: auto then times its candidates.

    Asked on every repeated auto call (``api._validated``), so read from os.environ's own dict where
    it has one: ``os.environ.get`` raises and catches a KeyError when the variable is unset (1 us
    alone), which cost 4-5 us of single-r32-k3's 44 (2026-12-04, Zen 3, 7 interleaved rounds)."""
    data = getattr(os.environ, "_data", None)
    if data is None or _MEASURE_ITEM is None:
        return os.environ.get(AUTO_MEASURE_ENV) == "measure"
    return data.get(_MEASURE_ITEM[0]) == _MEASURE_ITEM[1]


def settled(geom: Geometry, dtype, pass_: str = "forward") -> str | None:
    """``"auto"``'s pick for this call's ``pass_`` at the current precision if it is final (its best
    candidate, ready), else None (still compiling, or measuring)."""
    return None if measuring() else _entry(geom, dtype, None, pass_)[1]


def time_candidates(geom: Geometry, dtype, names: list[str]) -> dict[str, float]:
    """Seconds of forward + both gradients on random data of ``geom``'s shapes, per backend: a
    warm-up call (compiling if need be), then the best of 3."""
    import time

    import numpy as np

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
    return best


def _measured_choice(geom: Geometry, dtype, names: list[str]) -> str:
    """The fastest candidate by :func:`time_candidates`, cached per geometry, dtype, precision and
    candidates, in memory and in the cache directory's ``auto-measured.json`` (so a choice survives
    the process; a file that cannot be read or written is ignored)."""
    import numpy as np

    key = repr((geom, np.dtype(dtype).str, get_precision(), tuple(names)))
    if not _measured:
        _measured.update(_saved_choices())
    if key not in _measured:
        best = time_candidates(geom, dtype, names)
        _measured[key] = min(best, key=best.get)
        _save_choices(_measured)
    return _measured[key]


def _choices_file():
    from .. import __version__
    from .._cache import cache_dir

    return cache_dir() / f"auto-measured-{__version__}.json"  # a version's rules and kernels may differ


def _saved_choices() -> dict[str, str]:
    import json

    try:
        saved = json.loads(_choices_file().read_text())
    except (OSError, ValueError):  # none yet, unreadable or damaged: measure again
        return {}
    return {k: v for k, v in saved.items() if isinstance(k, str) and v in NAMES} if isinstance(saved, dict) else {}


def _save_choices(choices: dict[str, str]) -> None:
    import json
    import tempfile

    try:
        path = _choices_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            json.dump(choices, tmp)
        os.replace(tmp.name, path)  # atomic: a reader never sees half a file
    except OSError:
        pass  # an unwritable cache: the choices live as long as the process


READY_WAIT_S = 5.0  # fastconv info's wait for kernels that load from the disk cache


def wait_ready(names, dtype, seconds: float = READY_WAIT_S) -> set[str]:
    """Wait up to ``seconds`` for the kernels of the backends ``names`` (asking starts their
    compile or load; those in the disk cache load in about a second); the names still not ready."""
    import time

    deadline = time.monotonic() + seconds
    while not all(_ready(name, dtype) for name in names) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {name for name in names if not _ready(name, dtype)}


def rule_check(geoms, dtype) -> tuple[list[tuple[Geometry, str, dict[str, float]]], set[str]]:
    """For ``fastconv info``: per geometry, what the rule picks and every compiled candidate's time
    here; and the candidates left out because their kernels are not compiled yet (timing them
    would first compile for seconds: `fastconv warmup` does that)."""
    out, compiling = [], set()
    for geom in geoms:
        names = [name for name in candidates(geom, dtype) if name != "reference"]
        compiling.update(wait_ready([name for name in names if name not in compiling], dtype))
        names = [name for name in names if name not in compiling]
        if len(names) > 1:
            out.append((geom, choose(geom, dtype), time_candidates(geom, dtype, names)))
    return out, compiling


class _CallableRegistry(ModuleType):
    """Lets ``fastconv.backends`` be both this registry module and the public ``backends()``.

    API.md makes ``fastconv.backends()`` a function, and the registry package has the same name;
    a callable module keeps ``fastconv.backends.NAMES`` and ``fastconv.backends()`` both working.
    """

    def __call__(self) -> list[str]:
        return available()


sys.modules[__name__].__class__ = _CallableRegistry
