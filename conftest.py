"""Shared by tests/ and bench/: the `backend` fixture runs a test body once per registered backend."""

import contextlib
import os
import sys

import pytest

import fastconv
from fastconv import _workers, backends

REFUSED = "does not support this call"  # the start of the ValueError that a partial backend's refusal raises


@pytest.fixture(params=backends.NAMES)
def backend(request):
    if request.param not in backends.available():
        pytest.skip(f"backend {request.param!r} is not installed")
    return request.param


@pytest.fixture
def depth_runs_always(monkeypatch):
    """3-D forwards and weight gradients by runs of planes wherever a tap reads the depth's padding
    (``backends/_lift.py``'s lines at zero), so that small test volumes take that path."""
    from fastconv.backends import _lift

    for line in ("RUNS_MIN_SAVED", "RUNS_MIN_SAVED_WEIGHT", "RUNS_MIN_FRACTION", "RUNS_MIN_MACS"):
        monkeypatch.setattr(_lift, line, 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A shared test body that a partial backend (winograd: 3x3 kernels at stride 1) refuses, with
    the ValueError of the contract, is skipped for that backend: the body holds every backend to
    every call it supports. Its own tests check that it supports what it claims."""
    outcome = yield
    excinfo = outcome.excinfo
    name = getattr(item, "callspec", None) and item.callspec.params.get("backend")
    if name and excinfo and excinfo[0] is ValueError and f"backend {name!r} {REFUSED}" in str(excinfo[1]):
        skip = pytest.skip.Exception(f"{name} refuses this call: {excinfo[1]}", _use_item_location=True)
        outcome.force_exception(skip)


@pytest.fixture(autouse=True)
def _fresh_numba_kernels():
    """numba keeps each call's kernel choice, and tests change its thresholds (``monkeypatch``):
    every test starts and ends with none kept (one that changes them mid-test calls
    ``numba_jit.forget_kernels`` itself)."""
    def forget():  # (numba_jit is imported only where numba is installed)
        getattr(sys.modules.get("fastconv.backends.numba_jit"), "forget_kernels", lambda: None)()

    forget()
    yield
    forget()


def required_backends() -> set[str]:
    """Backends whose absence fails the suite instead of skipping it (CI requires them all)."""
    return set(filter(None, os.environ.get("FASTCONV_REQUIRE", "reference").split(",")))


@pytest.fixture
def budget():
    """``budget(nbytes)``: the memory budget inside a test; the default rule is restored afterwards."""
    previous = _workers.set_memory_budget(None)
    yield _workers.set_memory_budget
    _workers.set_memory_budget(previous)


@pytest.fixture
def use_threads():
    """``use_threads(n)``: fastconv computes with ``n`` threads in this test (this thread's setting)."""
    with contextlib.ExitStack() as stack:
        yield lambda n: stack.enter_context(fastconv.threads(n))


@pytest.fixture(autouse=True)
def _no_settling_pauses(monkeypatch):
    """The timing harness's idle pause between implementations (``_timing.SETTLE_S``, 0.12 s a
    sample) is for real measurements; tests that time run without it unless they set it."""
    from fastconv import _timing

    monkeypatch.setattr(_timing, "SETTLE_S", 0.0)
