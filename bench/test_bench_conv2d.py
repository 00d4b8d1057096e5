"""pytest-benchmark over backend x case x pass, with torch timed in the same session as the baseline.

Each group is one shape and pass, so pytest-benchmark's table compares implementations side by
side. ``make bench-pytest`` times the default suite and keeps the JSON under ``bench/results/``;
``make test`` runs this file with ``--benchmark-disable`` as a smoke test, on the tiny suite.
Pick another suite with ``FASTCONV_BENCH_SUITE=quick|full|1d|3d`` and the threads with
``FASTCONV_BENCH_THREADS`` (default: every usable CPU, for both torch and fastconv); time your
own implementations too with ``FASTCONV_BENCH_IMPL=pkg.module:function[,...]`` (as ``fastconv
bench --impl``). ``fastconv bench --pytest-benchmark PATH`` writes the same JSON format from the
CLI's interleaved rounds.
"""

import os

import pytest

from fastconv import _plugins, cases
from fastconv import _timing as timing

IMPLS = _plugins.load_all([s for s in os.environ.get("FASTCONV_BENCH_IMPL", "").split(",") if s.strip()])


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        # A smoke run calls each benchmark once: the tiny shapes prove the wiring in seconds.
        default = "tiny" if metafunc.config.getoption("benchmark_disable", False) else "default"
        suite = cases.SUITES[os.environ.get("FASTCONV_BENCH_SUITE", default)]
        metafunc.parametrize("case", suite, ids=cases.name)


@pytest.fixture(scope="module", autouse=True)
def pinned():
    with timing.pinned_threads(int(os.environ.get("FASTCONV_BENCH_THREADS", timing.default_threads()))):
        yield


@pytest.fixture(scope="module")
def problems():
    """One :class:`~fastconv._timing.Problem` per case, shared by every implementation and pass."""
    cache = {}
    return lambda case: cache.setdefault(case.name, timing.Problem(case))


def _bench(benchmark, problems, impl, case, pass_):
    reason = timing.skip_reason(impl, case) or timing.pass_skip_reason(impl, case, pass_)
    if reason:
        pytest.skip(reason)
    problem = problems(case)
    run = problem.runner(impl, pass_)  # inputs built outside the timer
    timing.warm_up(impl, problem.dtype)
    run()  # JIT compilation and first-touch allocations, outside the timer
    benchmark.group = f"{case.name}-{pass_}"
    benchmark.extra_info.update(macs=case.macs, pass_=pass_, impl=timing.name_of(impl))
    out = benchmark(run)
    if impl != timing.TORCH:  # fast and wrong is not fast
        err = problem.error(out, pass_)
        assert err is None or err <= timing.TOLERANCE[problem.dtype], f"{impl} {pass_} error {err:.2e}"


@pytest.mark.parametrize("pass_", timing.PASSES)
def test_conv2d(benchmark, problems, backend, case, pass_):
    _bench(benchmark, problems, backend, case, pass_)


if IMPLS:  # only when asked for: an empty parameter set would show as a skipped test
    @pytest.mark.parametrize("impl", IMPLS, ids=timing.name_of)
    @pytest.mark.parametrize("pass_", timing.PASSES)
    def test_impl(benchmark, problems, impl, case, pass_):
        _bench(benchmark, problems, impl, case, pass_)


@pytest.mark.parametrize("pass_", timing.PASSES)
def test_torch(benchmark, problems, case, pass_):
    if timing.torch_module() is None:
        pytest.skip("torch is not installed: no baseline")
    _bench(benchmark, problems, timing.TORCH, case, pass_)
